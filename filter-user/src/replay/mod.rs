//! `filterctl replay`: every frame of a capture through the real XDP program
//! with BPF_PROG_TEST_RUN (loaded with the rule set into fresh, unpinned
//! maps and attached nowhere), and what each frame would get.
//!
//! Both directions run, in capture order: each received frame through the
//! XDP program, each frame the host sent through the egress recorder (the
//! TC program that records the host's requests, so that their answers are
//! told from reflections as the live filter tells them). A frame's
//! direction comes from the capture (a cooked header's packet type, pcapng's
//! `epb_flags`) or, for plain Ethernet frames, from the host's addresses
//! (`--host`, `--iface`): sent from one is outgoing, sent to one incoming.
//! Frames neither tells run as received and are counted as
//! `direction_unknown`; loopback frames of `tcpdump -i any` are skipped and
//! counted (XDP on a network interface never sees them).
//!
//! Timing ([`Timing`]): by default the program's clock is the capture's
//! (each frame's timestamp, [`filter_common::CONFIG_VIRTUAL_CLOCK`]), so
//! per-source and aggregate limits, bans, the reply window and fragment
//! memory behave as they did live, and the adaptive layer's surge blocks
//! are simulated from the program's per-port counters once a second of
//! capture time (reported as events, not applied). `--timing fast` runs on
//! the kernel's clock as fast as it takes the frames, and says what that
//! did to the capture's rates.
//!
//! `--against OLD` runs a second copy with the old rules beside the first,
//! frame by frame, and lists what the change newly drops and passes.
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
//!   "timing": "capture",
//!   "timing_note": "capture: the program's clock is each frame's timestamp, …",
//!   "direction": "capture",
//!   "frames": [
//!     { "index": 1, "timestamp": 1795000000.123456, "time_s": 0.0,
//!       "direction": "out", "len": 82, "captured": 82, "truncated": false,
//!       "ran": true, "oversize": false, "action": "sent", "reason": "outgoing",
//!       "rule": null },
//!     { "index": 2, "timestamp": 1795000000.123501, "time_s": 0.000045,
//!       "direction": "in", "len": 482, "captured": 482, "truncated": false,
//!       "ran": true, "oversize": false, "action": "drop",
//!       "reason": "rule_drop", "rule": "ntp-reflection" }
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
//!   "events": [
//!     { "time_s": 10.2, "frame": 5012, "kind": "ban", "source": "198.51.100.7", "port": null }
//!   ],
//!   "changes": { "old_rules": "…", "newly_dropped": 0, "newly_passed": 1, "…": "with --against" },
//!   "summary": {
//!     "frames": 2, "incoming": 1, "outgoing": 1, "direction_unknown": 0,
//!     "loopback": 0, "dropped": { "packets": 1, "bytes": 482 },
//!     "passed": { "packets": 0, "bytes": 0 }, "truncated": 0, "not_run": 0,
//!     "oversize": 0, "capture_span_s": 0.000045, "elapsed_s": 0.0123,
//!     "frames_per_s": 162.6, "timing_effect": "none: …"
//!   }
//! }
//! ```
//!
//! - `frames`: one record per frame, in capture order. `index` counts from
//!   1 like Wireshark's frame numbers; `timestamp` is the capture's, in
//!   Unix seconds (microsecond precision), `time_s` the seconds since the
//!   first frame; `direction` is `in`, `out` (the host's own: `action`
//!   `sent`, `reason` `outgoing`, run through the egress recorder) or
//!   `unknown` (run as `in`); loopback frames have `reason` `loopback`
//!   and did not run; `len` is the frame's length on
//!   the wire, `captured` the bytes in the capture, which are what ran
//!   (`truncated` when fewer than `len`); `ran` is false for frames shorter
//!   than 14 bytes, which did not run and count as `malformed`; `oversize`
//!   is true when the program saw fewer bytes than `captured`. `action` is
//!   the XDP action the program returned (`"drop"` or `"pass"`; in monitor
//!   mode always `"pass"`, while `reason` still says what enforce mode would
//!   do); `reason` is one of the reasons of `filterctl stats`; `rule` is the
//!   name of the rule that matched, or null: set for `rule_pass` and
//!   `rule_drop`, and for `pass`, `rate_limit_drop`, `aggregate_drop` and
//!   `solicited_reply` when a `limit` rule matched.
//! - `totals`: received frames and bytes per reason; bytes are wire
//!   lengths (`len`). They add up to `summary.incoming`. `rules`: per rule, in file order,
//!   the frames it matched. `summary.dropped` and `passed` follow `action`;
//!   `truncated`, `not_run` and `oversize` count the frames so marked;
//!   `elapsed_s` and `frames_per_s` time the replay (reading included).
//! - `events`: on the capture's clock (`time_s`), each source's first frame
//!   dropped over its limit (`limit`) and as banned (`ban`), at most 1,000
//!   sources of each; `surge_block` and `surge_lift` of a UDP source port
//!   (`port`) when the rule file enables `[adaptive]` and the timing is the
//!   capture's.
//! - `changes` (with `--against`): received frames whose action, reason
//!   or rule differ (`frames`, the first 10,000; `frames_not_listed`),
//!   counts of `newly_dropped`, `newly_passed`, `reason_changed`, and per
//!   reason and rule the frames under each set where they differ.
//! - New fields may be added; existing ones keep their names and meaning.

pub(crate) mod against;
pub mod capture;
pub(crate) mod clock;
pub(crate) mod events;
pub(crate) mod expect;
pub(crate) mod frame;
pub(crate) mod report;
pub(crate) mod result;
mod tracker;

use std::{net::IpAddr, path::Path, time::Instant};

use anyhow::Context as _;
use filter_common::Reason;

use self::{
    against::Changes,
    capture::{Capture, Direction, RawFrame},
    clock::{Timing, VirtualClock},
    events::Events,
    frame::FrameFacts,
    report::{Counts, Header, Totalled, action_name},
    result::{FrameResult, LOOPBACK, OUTGOING},
    tracker::Tracker,
};
use crate::{
    filter::simulator::{Simulator, XDP_DROP},
    rules::RuleSet,
};

/// Shortest frame the kernel's test harness runs: an Ethernet header.
const ETH_HLEN: usize = 14;
/// Frames longer than this may be refused by the kernel's test harness.
const MAX_HARNESS_FRAME: usize = 3520;

/// How to replay, beyond the rules and the capture.
#[derive(Default)]
pub(crate) struct Options<'a> {
    pub(crate) timing: Timing,
    /// The host's addresses, for telling the direction of frames the
    /// capture does not mark.
    pub(crate) hosts: Vec<IpAddr>,
    /// The old rules and their file's name, to compare against.
    pub(crate) against: Option<(&'a RuleSet, String)>,
}

/// One rule set's copy of the program, and what it counted.
struct Side<'a> {
    set: &'a RuleSet,
    sim: Simulator,
    tracker: Tracker,
    counts: Counts,
}

impl<'a> Side<'a> {
    fn new(set: &'a RuleSet, timing: Timing) -> anyhow::Result<Self> {
        let sim = match timing {
            Timing::Capture => Simulator::with_virtual_clock(set),
            Timing::Fast => Simulator::new(set),
        }
        .context("cannot load the XDP program to replay the capture")?;
        Ok(Side {
            tracker: Tracker::new(&sim, set)?,
            counts: Counts::new(set.rules.len()),
            set,
            sim,
        })
    }
}

/// A capture opened and a copy of the program loaded, ready to replay.
pub(crate) struct Replay<'a> {
    pub(crate) header: Header,
    reader: Capture,
    timing: Timing,
    hosts: Vec<IpAddr>,
    new: Side<'a>,
    old: Option<(Side<'a>, Changes)>,
}

impl<'a> Replay<'a> {
    pub(crate) fn open(
        set: &'a RuleSet,
        rules_file: &str,
        capture: &Path,
        options: Options<'a>,
    ) -> anyhow::Result<Self> {
        let reader = Capture::open(capture)?;
        crate::privilege::require("replay", crate::privilege::LOAD)?;
        let timing = options.timing;
        let new = Side::new(set, timing)?;
        let old = match options.against {
            Some((old_set, name)) => Some((Side::new(old_set, timing)?, Changes::new(name))),
            None => None,
        };
        let direction = if reader.marks_direction() {
            "capture"
        } else if !options.hosts.is_empty() {
            "hosts"
        } else {
            "none"
        };
        Ok(Replay {
            header: Header {
                capture: capture.display().to_string(),
                format: reader.format(),
                rules_file: rules_file.to_string(),
                rules_digest: set.digest_hex(),
                mode: set.mode,
                timing,
                timing_note: report::timing_note(timing),
                direction,
            },
            reader,
            timing,
            hosts: options.hosts,
            new,
            old,
        })
    }

    /// Runs every frame, hands each result (and what its headers say) to
    /// `each` as it comes (memory does not grow with the capture), and
    /// returns the totals.
    pub(crate) fn run(
        mut self,
        mut each: impl FnMut(&FrameResult, &FrameFacts) -> anyhow::Result<()>,
    ) -> anyhow::Result<Totalled> {
        let name = self.header.capture.clone();
        let adaptive = self.new.set.adaptive.as_ref();
        let mut events = Events::new(adaptive.filter(|_| self.timing == Timing::Capture));
        let mut clock = VirtualClock::default();
        let mut first_ts = None;
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
            let facts = frame::facts(&frame.data);
            let first = *first_ts.get_or_insert(frame.timestamp);
            let time_s = frame.timestamp.saturating_sub(first).as_secs_f64();
            let direction = frame
                .direction
                .unwrap_or_else(|| by_hosts(&self.hosts, &facts));
            if self.timing == Timing::Capture && !frame.loopback {
                let now = clock.at(frame.timestamp);
                events.before(&self.new.sim, now, index - 1)?;
                self.new.sim.set_clock(now)?;
                if let Some((old, _)) = &mut self.old {
                    old.sim.set_clock(now)?;
                }
            }
            let at = Place {
                index,
                time_s,
                direction,
            };
            let result = run_frame(&mut self.new, &at, &frame)
                .with_context(|| format!("{name}: frame {index}"))?;
            if let Some((old, changes)) = &mut self.old {
                let was = run_frame(old, &at, &frame)
                    .with_context(|| format!("{name}: frame {index} (old rules)"))?;
                changes.add(&was, &result);
            }
            if result.judged() {
                events.frame(&result, &facts);
            }
            each(&result, &facts)?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        self.new.tracker.verify(&self.new.sim)?;
        let changes = match self.old {
            Some((old, changes)) => {
                old.tracker.verify(&old.sim)?;
                Some(changes.finish())
            }
            None => None,
        };
        let set = self.new.set;
        Ok(self
            .new
            .counts
            .finish(set, self.timing, elapsed, events.finish(), changes))
    }
}

/// A frame's direction from the host's addresses: sent from one of them,
/// or to one of them.
fn by_hosts(hosts: &[IpAddr], f: &FrameFacts) -> Direction {
    let is_host = |a: Option<IpAddr>| a.is_some_and(|a| hosts.contains(&a));
    if is_host(f.src) {
        Direction::Out
    } else if is_host(f.dst) {
        Direction::In
    } else {
        Direction::Unknown
    }
}

/// Where a frame is in the capture.
struct Place {
    index: u64,
    time_s: f64,
    direction: Direction,
}

/// Runs one frame through one side and reads what it got.
fn run_frame(side: &mut Side<'_>, at: &Place, frame: &RawFrame<'_>) -> anyhow::Result<FrameResult> {
    let captured = frame.data.len() as u32;
    let len = frame.len.max(captured);
    let mut result = FrameResult {
        index: at.index,
        timestamp: frame.timestamp.as_secs_f64(),
        time_s: at.time_s,
        direction: at.direction,
        len,
        captured,
        truncated: captured < len,
        ran: false,
        oversize: false,
        action: action_name(XDP_DROP),
        reason: Reason::Malformed.name(),
        rule: None,
        rule_index: None,
        loopback: frame.loopback,
    };
    if frame.loopback {
        result.action = "none";
        result.reason = LOOPBACK;
    } else if at.direction == Direction::Out {
        result.action = "sent";
        result.reason = OUTGOING;
        record(side, &mut result, &frame.data)?;
    } else {
        judge(side, &mut result, &frame.data)?;
    }
    side.counts.add(&result);
    Ok(result)
}

/// A frame the host sent, through the egress recorder.
fn record(side: &Side<'_>, result: &mut FrameResult, data: &[u8]) -> anyhow::Result<()> {
    if data.len() < ETH_HLEN {
        return Ok(());
    }
    match side.sim.record_request(data) {
        Ok(()) => result.ran = true,
        Err(_) if data.len() > MAX_HARNESS_FRAME => result.oversize = true,
        Err(e) => {
            let n = data.len();
            return Err(e.context(format!("the kernel refused to run it ({n} bytes)")));
        }
    }
    Ok(())
}

/// A received frame, through XDP.
fn judge(side: &mut Side<'_>, result: &mut FrameResult, data: &[u8]) -> anyhow::Result<()> {
    if data.len() < ETH_HLEN {
        return Ok(());
    }
    let captured = data.len();
    let action = match side.sim.run(data) {
        Ok(a) => a,
        // The harness refuses frames longer than it can hand XDP (about
        // 64 KB): one such frame is not a reason to stop the replay.
        Err(_) if captured > MAX_HARNESS_FRAME => {
            result.oversize = true;
            return Ok(());
        }
        Err(e) => return Err(e.context(format!("the kernel refused to run it ({captured} bytes)"))),
    };
    let v = side.tracker.after_run(&side.sim, action)?;
    result.ran = true;
    // BPF_PROG_TEST_RUN hands an XDP program one page, less headroom and
    // tailroom, and the rest of a longer frame as fragments that this
    // program never reads.
    result.oversize = v.seen < captured as u64;
    result.action = action_name(action);
    result.reason = v.reason.name();
    result.rule = v.rule.map(|r| side.set.rules[r].name.clone());
    result.rule_index = v.rule;
    Ok(())
}
