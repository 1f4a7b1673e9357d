//! `filterctl replay`: every frame of a capture through the real XDP program
//! with BPF_PROG_TEST_RUN (loaded with the rule set into fresh, unpinned
//! maps and attached nowhere), and what each frame would get.
//!
//! The frames run one after the other as fast as the kernel takes them, in
//! capture order: state that depends on time (per-source and aggregate rate
//! limits, bans, fragment memory) is evaluated at replay speed, not at the
//! capture's own timing. A capture of a flood replays faster or slower than
//! it arrived, so its rate-limit and ban verdicts can differ from the live
//! ones; rule, allow, deny and parsing verdicts cannot.
//!
//! Captures: classic pcap (microsecond or nanosecond, either byte order) and
//! pcapng, both with Ethernet frames (link type 1, DLT_EN10MB) or Linux
//! cooked captures (SLL, 113, and SLL2, 276: `tcpdump -i any`), whose
//! frames are given an Ethernet header (source: the sender's link address;
//! destination zero; EtherType: the cooked header's protocol). Frames
//! shorter than an Ethernet header (14 bytes) are not run (the kernel's test
//! harness refuses them): they are reported as `malformed`, dropped, which
//! is what the program does with any frame it cannot parse. Frames cut by
//! the capture's snap length run as captured, marked `truncated` (an IP
//! length that runs past the cut makes most of them `malformed`). Frames
//! longer than one page less the test harness's head- and tailroom (about
//! 3.5 KB on 4 KB pages; a capture of GRO-merged traffic holds such frames,
//! a standard-MTU interface never hands them to XDP) reach the program only
//! in part: they are marked `oversize`, and their verdict, usually
//! `malformed`, says nothing about the live filter.
//!
//! # JSON (`--json`)
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "capture": "attack.pcap",
//!   "format": "pcap",
//!   "rules_file": "rules/default.toml",
//!   "rules_digest": "1129b945…",
//!   "mode": "enforce",
//!   "timing": "replay speed: rate limits, bans and fragment memory are evaluated at the speed of the replay, not at the capture's timestamps",
//!   "frames": [
//!     { "index": 1, "timestamp": 1795000000.123456, "len": 482, "captured": 482,
//!       "truncated": false, "ran": true, "oversize": false, "action": "drop",
//!       "reason": "rule_drop", "rule": "ntp-reflection" },
//!     { "index": 2, "timestamp": 1795000000.123501, "len": 78, "captured": 64,
//!       "truncated": true, "ran": true, "oversize": false, "action": "pass",
//!       "reason": "pass", "rule": null }
//!   ],
//!   "totals": {
//!     "allow_pass": { "packets": 0, "bytes": 0 },
//!     "rule_drop":  { "packets": 1, "bytes": 482 },
//!     "pass":       { "packets": 1, "bytes": 78 },
//!     "...":        "every reason of `stats --json`, zeros included"
//!   },
//!   "rules": [
//!     { "name": "ntp-time-replies", "action": "pass", "packets": 0, "bytes": 0 },
//!     { "name": "ntp-reflection",   "action": "drop", "packets": 1, "bytes": 482 }
//!   ],
//!   "summary": {
//!     "frames": 2, "dropped": { "packets": 1, "bytes": 482 },
//!     "passed": { "packets": 1, "bytes": 78 }, "truncated": 1, "not_run": 0,
//!     "oversize": 0, "elapsed_s": 0.0123, "frames_per_s": 162.6
//!   }
//! }
//! ```
//!
//! - `frames`: one record per frame, in capture order. `index` counts from
//!   1 like Wireshark's frame numbers; `timestamp` is the capture's, in
//!   Unix seconds (microsecond precision); `len` is the frame's length on
//!   the wire, `captured` the bytes in the capture, which are what ran
//!   (`truncated` when fewer than `len`); `ran` is false for frames shorter
//!   than 14 bytes, which did not run and count as `malformed`; `oversize`
//!   is true when the program saw fewer bytes than `captured`. `action` is
//!   the XDP action the program returned (`"drop"` or `"pass"`; in monitor
//!   mode always `"pass"`, while `reason` still says what enforce mode would
//!   do); `reason` is one of the reasons of `filterctl stats`; `rule` is the
//!   name of the rule that matched, or null: set for `rule_pass` and
//!   `rule_drop`, and for `pass`, `rate_limit_drop` and `aggregate_drop`
//!   when a `limit` rule matched.
//! - `totals`: frames and bytes per reason; bytes are wire lengths (`len`).
//!   They add up to the number of frames. `rules`: per rule, in file order,
//!   the frames it matched. `summary.dropped` and `passed` follow `action`;
//!   `truncated`, `not_run` and `oversize` count the frames so marked;
//!   `elapsed_s` and `frames_per_s` time the replay (reading included).
//! - New fields may be added; existing ones keep their names and meaning.

pub mod capture;

use std::{collections::BTreeMap, path::Path, time::Instant};

use anyhow::{Context as _, anyhow, bail};
use filter_common::{ACTION_DROP, ACTION_LIMIT, ACTION_PASS, REASON_COUNT, Reason};
use serde::Serialize;

use self::capture::{Capture, RawFrame};
use crate::{
    filter::{
        observe::stats::Totals,
        simulator::{Simulator, XDP_DROP, XDP_PASS},
    },
    rules::{Mode, RuleSet},
};

/// The note printed in the header and put in the JSON.
pub const TIMING_NOTE: &str = "replay speed: rate limits, bans and fragment memory are evaluated at the speed of the replay, not at the capture's timestamps";

/// Shortest frame the kernel's test harness runs: an Ethernet header.
const ETH_HLEN: usize = 14;

/// What one frame got.
#[derive(Debug, Clone, Serialize)]
pub struct FrameResult {
    pub index: u64,
    /// Unix seconds, as in the capture.
    pub timestamp: f64,
    /// Length on the wire.
    pub len: u32,
    /// Bytes in the capture: what ran.
    pub captured: u32,
    pub truncated: bool,
    /// False for frames the kernel's test harness does not take: shorter
    /// than an Ethernet header, or too long for it.
    pub ran: bool,
    /// The program saw only the first part of the frame, or none of it
    /// (see the JSON doc).
    pub oversize: bool,
    pub action: &'static str,
    pub reason: &'static str,
    pub rule: Option<String>,
    /// Index of `rule` in the rule set.
    #[serde(skip)]
    pub rule_index: Option<usize>,
}

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
    pub dropped: Totals,
    pub passed: Totals,
    pub truncated: u64,
    pub not_run: u64,
    pub oversize: u64,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
}

/// What a replay is of: the JSON document's first fields.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub capture: String,
    pub format: &'static str,
    pub rules_file: String,
    pub rules_digest: String,
    pub mode: Mode,
    pub timing: &'static str,
}

/// What the whole replay added up to: the JSON document's last fields.
#[derive(Debug, Clone, Serialize)]
pub struct Totalled {
    pub totals: BTreeMap<&'static str, Totals>,
    pub rules: Vec<RuleTotals>,
    pub summary: Summary,
}

/// A capture opened and a copy of the program loaded, ready to replay.
pub struct Replay<'a> {
    set: &'a RuleSet,
    pub header: Header,
    reader: Capture,
    sim: Simulator,
}

impl<'a> Replay<'a> {
    pub fn open(set: &'a RuleSet, rules_file: &str, capture: &Path) -> anyhow::Result<Self> {
        let reader = Capture::open(capture)?;
        crate::privilege::require("replay", crate::privilege::LOAD)?;
        let sim =
            Simulator::new(set).context("cannot load the XDP program to replay the capture")?;
        Ok(Replay {
            set,
            header: Header {
                capture: capture.display().to_string(),
                format: reader.format(),
                rules_file: rules_file.to_string(),
                rules_digest: set.digest_hex(),
                mode: set.mode,
                timing: TIMING_NOTE,
            },
            reader,
            sim,
        })
    }

    /// Runs every frame, hands each result to `each` as it comes (memory
    /// does not grow with the capture), and returns the totals.
    pub fn run(
        mut self,
        mut each: impl FnMut(&FrameResult) -> anyhow::Result<()>,
    ) -> anyhow::Result<Totalled> {
        let set = self.set;
        let name = self.header.capture.clone();
        let mut tracker = Tracker::new(&self.sim, set)?;
        let mut count = Counts::new(set.rules.len());
        let started = Instant::now();
        let mut index = 0u64;
        loop {
            index += 1;
            let Some(frame) = self
                .reader
                .next_frame()
                .with_context(|| format!("{name}: frame {index}"))?
            else {
                break;
            };
            let result = run_frame(&self.sim, &mut tracker, set, index, &frame)
                .with_context(|| format!("{name}: frame {index}"))?;
            count.add(&result);
            each(&result)?;
        }
        let elapsed = started.elapsed();
        tracker.verify()?;
        Ok(count.finish(set, elapsed.as_secs_f64()))
    }
}

/// Runs one frame and reads what it got.
fn run_frame(
    sim: &Simulator,
    tracker: &mut Tracker<'_>,
    set: &RuleSet,
    index: u64,
    frame: &RawFrame<'_>,
) -> anyhow::Result<FrameResult> {
    let captured = frame.data.len() as u32;
    let len = frame.len.max(captured);
    let mut result = FrameResult {
        index,
        timestamp: frame.timestamp.as_secs_f64(),
        len,
        captured,
        truncated: captured < len,
        ran: false,
        oversize: false,
        action: action_name(XDP_DROP),
        reason: Reason::Malformed.name(),
        rule: None,
        rule_index: None,
    };
    if frame.data.len() < ETH_HLEN {
        return Ok(result);
    }
    let action = match sim.run(&frame.data) {
        Ok(a) => a,
        // The harness refuses frames longer than it can hand XDP (about
        // 64 KB): one such frame is not a reason to stop the replay.
        Err(_) if frame.data.len() > MAX_HARNESS_FRAME => {
            result.oversize = true;
            return Ok(result);
        }
        Err(e) => return Err(e.context(format!("the kernel refused to run it ({captured} bytes)"))),
    };
    let v = tracker.after_run(action)?;
    result.ran = true;
    // BPF_PROG_TEST_RUN hands an XDP program one page, less headroom and
    // tailroom, and the rest of a longer frame as fragments that this
    // program never reads.
    result.oversize = v.seen < u64::from(captured);
    result.action = action_name(action);
    result.reason = v.reason.name();
    result.rule = v.rule.map(|r| set.rules[r].name.clone());
    result.rule_index = v.rule;
    Ok(result)
}

/// Frames longer than this may be refused by the kernel's test harness.
const MAX_HARNESS_FRAME: usize = 3520;

/// Totals kept while frames stream past.
struct Counts {
    reasons: BTreeMap<&'static str, Totals>,
    rules: Vec<Totals>,
    summary: Summary,
}

impl Counts {
    fn new(rules: usize) -> Self {
        Counts {
            reasons: Reason::ALL
                .iter()
                .map(|r| (r.name(), Totals::default()))
                .collect(),
            rules: vec![Totals::default(); rules],
            summary: Summary::default(),
        }
    }

    fn add(&mut self, f: &FrameResult) {
        let wire = Totals {
            packets: 1,
            bytes: u64::from(f.len),
        };
        add(self.reasons.entry(f.reason).or_default(), wire);
        if let Some(r) = f.rule_index {
            add(&mut self.rules[r], wire);
        }
        let s = &mut self.summary;
        s.frames += 1;
        add(
            if f.action == "pass" {
                &mut s.passed
            } else {
                &mut s.dropped
            },
            wire,
        );
        s.truncated += u64::from(f.truncated);
        s.not_run += u64::from(!f.ran);
        s.oversize += u64::from(f.oversize);
    }

    fn finish(mut self, set: &RuleSet, elapsed_s: f64) -> Totalled {
        self.summary.elapsed_s = elapsed_s;
        self.summary.frames_per_s = if elapsed_s > 0.0 {
            self.summary.frames as f64 / elapsed_s
        } else {
            0.0
        };
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
            summary: self.summary,
        }
    }
}

fn add(t: &mut Totals, by: Totals) {
    t.packets += by.packets;
    t.bytes += by.bytes;
}

fn action_name(action: u32) -> &'static str {
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

/// What one run of the program did, read from its counters.
struct Verdict {
    reason: Reason,
    rule: Option<usize>,
    /// Bytes the program saw (its own `data_end - data`).
    seen: u64,
}

/// Finds which reason (and rule) counter one run moved, reading as few
/// per-CPU counters as it can: exactly one reason counter moves per frame,
/// so it reads the previous frame's reason first (a flood is mostly one
/// kind of frame), then only the reasons that fit the action, and stops at
/// the first that moved. Rule counters are read only for reasons a rule
/// can lead to, and only those of rules with a fitting action. `verify`
/// checks every counter at the end.
struct Tracker<'a> {
    runner: &'a Simulator,
    monitor: bool,
    /// Last value read of each reason counter.
    reasons: [Totals; REASON_COUNT as usize],
    /// Last packet count read of each rule.
    rules: Vec<u64>,
    /// Rule indexes by action (ACTION_PASS, ACTION_DROP, ACTION_LIMIT).
    by_action: [Vec<usize>; 3],
    last_reason: Reason,
    last_rule: [Option<usize>; 3],
}

impl<'a> Tracker<'a> {
    fn new(runner: &'a Simulator, set: &RuleSet) -> anyhow::Result<Self> {
        let mut by_action: [Vec<usize>; 3] = Default::default();
        for (i, spec) in set.rules.iter().enumerate() {
            if let Some(v) = by_action.get_mut(usize::from(spec.rule.action)) {
                v.push(i);
            }
        }
        let mut reasons = [Totals::default(); REASON_COUNT as usize];
        for (slot, t) in reasons.iter_mut().zip(runner.reasons()?) {
            *slot = t;
        }
        let rules = (0..set.rules.len() as u32)
            .map(|i| Ok(runner.rule(i)?.packets))
            .collect::<anyhow::Result<_>>()?;
        Ok(Tracker {
            runner,
            monitor: set.mode == Mode::Monitor,
            reasons,
            rules,
            by_action,
            last_reason: Reason::Pass,
            last_rule: [None; 3],
        })
    }

    /// The bytes counted under `r` since it was last read, if it moved.
    fn moved(&mut self, r: Reason) -> anyhow::Result<Option<u64>> {
        let now = self.runner.reason(r)?;
        let old = std::mem::replace(&mut self.reasons[r as usize], now);
        Ok((now.packets != old.packets).then(|| now.bytes.wrapping_sub(old.bytes)))
    }

    fn after_run(&mut self, action: u32) -> anyhow::Result<Verdict> {
        // In enforce mode the action tells drop reasons from pass reasons;
        // in monitor mode every frame passes.
        let monitor = self.monitor;
        let fits = |r: Reason| monitor || r.drops() == (action == XDP_DROP);
        let order = std::iter::once(self.last_reason)
            .chain(Reason::ALL.into_iter().filter(|r| *r != self.last_reason))
            .filter(|r| fits(*r));
        let mut found = None;
        for r in order.collect::<Vec<_>>() {
            if let Some(seen) = self.moved(r)? {
                found = Some((r, seen));
                break;
            }
        }
        let (reason, seen) = found
            .ok_or_else(|| anyhow!("no reason counter moved for action {}", action_name(action)))?;
        self.last_reason = reason;
        let class = match reason {
            Reason::RulePass => ACTION_PASS,
            Reason::RuleDrop => ACTION_DROP,
            Reason::Pass | Reason::RateLimitDrop | Reason::AggregateDrop => ACTION_LIMIT,
            _ => {
                return Ok(Verdict {
                    reason,
                    rule: None,
                    seen,
                });
            }
        };
        let rule = self.moved_rule(class)?;
        if rule.is_none() && class != ACTION_LIMIT {
            bail!("reason {} but no rule counter moved", reason.name());
        }
        Ok(Verdict { reason, rule, seen })
    }

    /// The rule of `class` (an action) whose counter moved, if any.
    fn moved_rule(&mut self, class: u8) -> anyhow::Result<Option<usize>> {
        let class = usize::from(class);
        let last = self.last_rule[class];
        let order = last.into_iter().chain(
            self.by_action[class]
                .iter()
                .copied()
                .filter(|i| Some(*i) != last),
        );
        for i in order.collect::<Vec<_>>() {
            let now = self.runner.rule(i as u32)?.packets;
            let old = std::mem::replace(&mut self.rules[i], now);
            if now != old {
                self.last_rule[class] = Some(i);
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Every counter against what was read frame by frame: a frame that
    /// moved two counters, or one that was not looked at, shows here.
    fn verify(&self) -> anyhow::Result<()> {
        for (r, t) in Reason::ALL.iter().zip(self.runner.reasons()?) {
            let seen = self.reasons[*r as usize];
            if t != seen {
                bail!(
                    "internal error: the {} counter says {} frames, the replay saw {}",
                    r.name(),
                    t.packets,
                    seen.packets
                );
            }
        }
        for (i, seen) in self.rules.iter().enumerate() {
            let t = self.runner.rule(i as u32)?;
            if t.packets != *seen {
                bail!(
                    "internal error: rule {i} counter says {} frames, the replay saw {seen}",
                    t.packets
                );
            }
        }
        Ok(())
    }
}
