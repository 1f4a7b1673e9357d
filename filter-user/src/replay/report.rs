//! What a replay reports: the header, and the totals that add up as
//! frames stream past (memory does not grow with the capture).

use std::collections::BTreeMap;

use filter_common::{ACTION_DROP, ACTION_LIMIT, ACTION_PASS, Reason};
use serde::Serialize;

use super::{
    against::Changes, capture::Direction, clock::Timing, events::Event, result::FrameResult,
};
use crate::{
    filter::{
        observe::stats::Totals,
        simulator::{XDP_DROP, XDP_PASS},
    },
    rules::{Mode, RuleSet},
};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RuleTotals {
    pub(crate) name: String,
    pub(crate) action: &'static str,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Summary {
    pub(crate) frames: u64,
    /// Received frames, XDP's: `dropped` and `passed` add up to these
    /// (frames of unknown direction among them).
    pub(crate) incoming: u64,
    /// The host's own frames, run through the egress recorder.
    pub(crate) outgoing: u64,
    /// Frames whose direction neither the capture nor `--host` told: run
    /// as received.
    pub(crate) direction_unknown: u64,
    /// Loopback frames of a `tcpdump -i any` capture: not run.
    pub(crate) loopback: u64,
    pub(crate) dropped: Totals,
    pub(crate) passed: Totals,
    pub(crate) truncated: u64,
    pub(crate) not_run: u64,
    pub(crate) oversize: u64,
    /// From the first frame's timestamp to the last's.
    capture_span_s: f64,
    pub(crate) elapsed_s: f64,
    pub(crate) frames_per_s: f64,
    /// What the replay's timing did to the capture's rates, in words.
    pub(crate) timing_effect: String,
}

/// What a replay is of: the JSON document's first fields.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Header {
    pub(crate) capture: String,
    pub(crate) format: &'static str,
    pub(crate) rules_file: String,
    pub(crate) rules_digest: String,
    pub(crate) mode: Mode,
    pub(crate) timing: Timing,
    pub(crate) timing_note: &'static str,
    /// How each frame's direction is told: "capture" (its own marks, then
    /// `--host` for frames it left unmarked), "hosts", or "none".
    pub(crate) direction: &'static str,
}

/// What the whole replay added up to: the JSON document's last fields.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Totalled {
    pub(crate) totals: BTreeMap<&'static str, Totals>,
    pub(crate) rules: Vec<RuleTotals>,
    pub(crate) events: Vec<Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) changes: Option<Changes>,
    pub(crate) summary: Summary,
}

pub(crate) fn timing_note(t: Timing) -> &'static str {
    match t {
        Timing::Capture => {
            "capture: the program's clock is each frame's timestamp, so rate limits, bans, the reply window, fragment memory and surge detection run as during the capture"
        }
        Timing::Fast => {
            "fast: the program's clock is the kernel's and frames run as fast as it takes them, so rate limits, bans, the reply window and fragment memory see the capture compressed into the replay's time (see summary.timing_effect); surge detection is not simulated"
        }
    }
}

/// Totals kept while frames stream past.
pub(crate) struct Counts {
    reasons: BTreeMap<&'static str, Totals>,
    rules: Vec<Totals>,
    pub(crate) summary: Summary,
    first_ts: Option<f64>,
}

impl Counts {
    pub(crate) fn new(rules: usize) -> Self {
        Counts {
            reasons: Reason::ALL
                .iter()
                .map(|r| (r.name(), Totals::default()))
                .collect(),
            rules: vec![Totals::default(); rules],
            summary: Summary::default(),
            first_ts: None,
        }
    }

    pub(crate) fn add(&mut self, f: &FrameResult) {
        let s = &mut self.summary;
        s.frames += 1;
        let first = *self.first_ts.get_or_insert(f.timestamp);
        s.capture_span_s = s.capture_span_s.max(f.timestamp - first);
        s.truncated += u64::from(f.truncated);
        if f.loopback {
            s.loopback += 1;
            return;
        }
        if f.direction == Direction::Out {
            s.outgoing += 1;
            return;
        }
        s.incoming += 1;
        s.direction_unknown += u64::from(f.direction == Direction::Unknown);
        s.not_run += u64::from(!f.ran);
        s.oversize += u64::from(f.oversize);
        let wire = Totals {
            packets: 1,
            bytes: u64::from(f.len),
        };
        add(
            if f.action == "pass" {
                &mut s.passed
            } else {
                &mut s.dropped
            },
            wire,
        );
        add(self.reasons.entry(f.reason).or_default(), wire);
        if let Some(r) = f.rule_index {
            add(&mut self.rules[r], wire);
        }
    }

    pub(crate) fn finish(
        mut self,
        set: &RuleSet,
        timing: Timing,
        elapsed_s: f64,
        events: Vec<Event>,
        changes: Option<Changes>,
    ) -> Totalled {
        let s = &mut self.summary;
        s.elapsed_s = elapsed_s;
        s.frames_per_s = if elapsed_s > 0.0 {
            s.frames as f64 / elapsed_s
        } else {
            0.0
        };
        s.timing_effect = timing_effect(timing, s.capture_span_s, elapsed_s);
        Totalled {
            totals: self.reasons,
            rules: set
                .rules
                .iter()
                .zip(&self.rules)
                .map(|(spec, t)| RuleTotals {
                    name: spec.name.clone(),
                    action: rule_action_name(spec.rule.action),
                    packets: t.packets,
                    bytes: t.bytes,
                })
                .collect(),
            events,
            changes,
            summary: self.summary,
        }
    }
}

/// What the timing did to the capture's rates, in words.
fn timing_effect(timing: Timing, span_s: f64, elapsed_s: f64) -> String {
    match timing {
        Timing::Capture => format!(
            "none: the capture's {span_s:.3} s ran on its own clock (in {elapsed_s:.3} s of replay)"
        ),
        Timing::Fast if span_s > 0.0 && elapsed_s > 0.0 => format!(
            "the capture's {span_s:.3} s ran in {elapsed_s:.3} s: every source arrived {:.0}x as fast as it did, so per-source and aggregate limits dropped more, bans that need a source over its limit for a while came at other frames or not at all, and request windows and fragment memory outlasted their time",
            span_s / elapsed_s
        ),
        Timing::Fast => "the capture spans no time: nothing to compress".to_string(),
    }
}

pub(crate) fn add(t: &mut Totals, by: Totals) {
    t.packets += by.packets;
    t.bytes += by.bytes;
}

pub(crate) fn action_name(action: u32) -> &'static str {
    match action {
        XDP_DROP => "drop",
        XDP_PASS => "pass",
        _ => "other",
    }
}

fn rule_action_name(action: u8) -> &'static str {
    match action {
        ACTION_DROP => "drop",
        ACTION_PASS => "pass",
        ACTION_LIMIT => "limit",
        _ => "?",
    }
}
