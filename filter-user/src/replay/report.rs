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
pub struct RuleTotals {
    pub name: String,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub frames: u64,
    /// Received frames, XDP's: `dropped` and `passed` add up to these
    /// (frames of unknown direction among them).
    pub incoming: u64,
    /// The host's own frames, run through the egress recorder.
    pub outgoing: u64,
    /// Frames whose direction neither the capture nor `--host` told: run
    /// as received.
    pub direction_unknown: u64,
    /// Loopback frames of a `tcpdump -i any` capture: not run.
    pub loopback: u64,
    pub dropped: Totals,
    pub passed: Totals,
    pub truncated: u64,
    pub not_run: u64,
    pub oversize: u64,
    /// From the first frame's timestamp to the last's.
    pub capture_span_s: f64,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    /// What the replay's timing did to the capture's rates, in words.
    pub timing_effect: String,
}

/// What a replay is of: the JSON document's first fields.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub capture: String,
    pub format: &'static str,
    pub rules_file: String,
    pub rules_digest: String,
    pub mode: Mode,
    pub timing: Timing,
    pub timing_note: &'static str,
    /// How each frame's direction is told: "capture" (its own marks, then
    /// `--host` for frames it left unmarked), "hosts", or "none".
    pub direction: &'static str,
}

/// What the whole replay added up to: the JSON document's last fields.
#[derive(Debug, Clone, Serialize)]
pub struct Totalled {
    pub totals: BTreeMap<&'static str, Totals>,
    pub rules: Vec<RuleTotals>,
    pub events: Vec<Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    pub summary: Summary,
}

pub fn timing_note(t: Timing) -> &'static str {
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
pub struct Counts {
    reasons: BTreeMap<&'static str, Totals>,
    rules: Vec<Totals>,
    pub summary: Summary,
    first_ts: Option<f64>,
}

impl Counts {
    pub fn new(rules: usize) -> Self {
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

    pub fn add(&mut self, f: &FrameResult) {
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

    pub fn finish(
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

pub fn add(t: &mut Totals, by: Totals) {
    t.packets += by.packets;
    t.bytes += by.bytes;
}

pub fn action_name(action: u32) -> &'static str {
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
