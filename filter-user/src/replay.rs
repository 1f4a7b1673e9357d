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
//! pcapng, both with Ethernet frames (link type 1, DLT_EN10MB). Frames
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

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fs::File,
    io::Read as _,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use filter_common::{ACTION_DROP, ACTION_LIMIT, ACTION_PASS, REASON_COUNT, Reason};
use pcap_file::{
    DataLink, TsResolution,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader, blocks::interface_description::InterfaceDescriptionOption},
};
use serde::Serialize;

use crate::{
    loader,
    rules::{self, Mode, RuleSet},
    stats::Totals,
    testrun::{Runner, XDP_DROP, XDP_PASS},
};

/// The note printed in the header and put in the JSON.
pub const TIMING_NOTE: &str = "replay speed: rate limits, bans and fragment memory are evaluated at the speed of the replay, not at the capture's timestamps";

/// Shortest frame the kernel's test harness runs: an Ethernet header.
const ETH_HLEN: usize = 14;
/// Largest record a sane capture holds (libpcap's own limit, and then some).
const MAX_RECORD: u32 = 256 * 1024;

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
    /// False for frames shorter than an Ethernet header.
    pub ran: bool,
    /// The program saw only the first part of the frame (see the JSON doc).
    pub oversize: bool,
    pub action: &'static str,
    pub reason: &'static str,
    pub rule: Option<String>,
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

/// The whole replay; serializes to the JSON documented above.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub capture: String,
    pub format: &'static str,
    pub rules_file: String,
    pub rules_digest: String,
    pub mode: Mode,
    pub timing: &'static str,
    pub frames: Vec<FrameResult>,
    pub totals: BTreeMap<&'static str, Totals>,
    pub rules: Vec<RuleTotals>,
    pub summary: Summary,
}

/// `filterctl replay`: validates the rules, replays the capture, prints.
pub fn command(rules_path: &Path, capture: &Path, json: bool, verbose: bool) -> anyhow::Result<()> {
    let set = rules::load_file(rules_path)?;
    let report = replay(&set, &rules_path.display().to_string(), capture)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, verbose));
    }
    Ok(())
}

/// Runs every frame of `capture` through a fresh copy of the program
/// loaded with `set`.
pub fn replay(set: &RuleSet, rules_file: &str, capture: &Path) -> anyhow::Result<Report> {
    let name = capture.display().to_string();
    let mut reader = Capture::open(capture)?;
    loader::require_root("replay")?;
    let runner = Runner::new(set).context("cannot load the XDP program to replay the capture")?;
    let mut tracker = Tracker::new(&runner, set)?;

    let mut frames = Vec::new();
    let mut totals = [Totals::default(); REASON_COUNT as usize];
    let mut rule_totals = vec![Totals::default(); set.rules.len()];
    let mut summary = Summary::default();
    let started = Instant::now();
    let mut index = 0u64;
    loop {
        index += 1;
        let Some(frame) = reader
            .next()
            .with_context(|| format!("{name}: frame {index}"))?
        else {
            break;
        };
        let len = frame.len.max(frame.data.len() as u32);
        let captured = frame.data.len() as u32;
        let (ran, action, v) = if frame.data.len() < ETH_HLEN {
            let v = Verdict {
                reason: Reason::Malformed,
                rule: None,
                seen: 0,
            };
            (false, XDP_DROP, v)
        } else {
            let action = runner.run(&frame.data).with_context(|| {
                format!("{name}: frame {index} ({captured} bytes): the kernel refused to run it")
            })?;
            let v = tracker
                .after_run(action)
                .with_context(|| format!("{name}: frame {index}"))?;
            (true, action, v)
        };
        let (reason, rule) = (v.reason, v.rule);
        // BPF_PROG_TEST_RUN hands an XDP program one page, less headroom
        // and tailroom, and the rest of a longer frame as fragments that
        // this program never reads.
        let oversize = ran && v.seen < u64::from(captured);
        let t = &mut totals[reason as usize];
        t.packets += 1;
        t.bytes += u64::from(len);
        if let Some(r) = rule {
            rule_totals[r].packets += 1;
            rule_totals[r].bytes += u64::from(len);
        }
        let side = if action == XDP_PASS {
            &mut summary.passed
        } else {
            &mut summary.dropped
        };
        side.packets += 1;
        side.bytes += u64::from(len);
        summary.truncated += u64::from(captured < len);
        summary.not_run += u64::from(!ran);
        summary.oversize += u64::from(oversize);
        frames.push(FrameResult {
            index,
            timestamp: frame.timestamp.as_secs_f64(),
            len,
            captured,
            truncated: captured < len,
            ran,
            oversize,
            action: action_name(action),
            reason: reason.name(),
            rule: rule.map(|r| set.rules[r].name.clone()),
        });
    }
    let elapsed = started.elapsed();
    tracker.verify()?;

    summary.frames = frames.len() as u64;
    summary.elapsed_s = elapsed.as_secs_f64();
    summary.frames_per_s = if elapsed.is_zero() {
        0.0
    } else {
        summary.frames as f64 / elapsed.as_secs_f64()
    };
    Ok(Report {
        capture: name,
        format: reader.format(),
        rules_file: rules_file.to_string(),
        rules_digest: set.digest_hex(),
        mode: set.mode,
        timing: TIMING_NOTE,
        frames,
        totals: Reason::ALL
            .iter()
            .map(|r| (r.name(), totals[*r as usize]))
            .collect(),
        rules: set
            .rules
            .iter()
            .zip(&rule_totals)
            .map(|(spec, t)| RuleTotals {
                name: spec.name.clone(),
                action: rule_action_name(spec.rule.action),
                packets: t.packets,
                bytes: t.bytes,
            })
            .collect(),
        summary,
    })
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
    runner: &'a Runner,
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
    fn new(runner: &'a Runner, set: &RuleSet) -> anyhow::Result<Self> {
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

/// One frame read from a capture, borrowing the reader's buffer.
struct RawFrame<'a> {
    timestamp: Duration,
    len: u32,
    data: Cow<'a, [u8]>,
}

/// Per pcapng interface: link type and timestamp units.
struct Interface {
    linktype: DataLink,
    /// Timestamp units per second (if_tsresol; 10^6 by default).
    units: u64,
    /// Seconds added to every timestamp (if_tsoffset).
    offset: u64,
}

enum Capture {
    Pcap {
        reader: PcapReader<File>,
        nanos: bool,
    },
    PcapNg {
        reader: PcapNgReader<File>,
        interfaces: Vec<Interface>,
    },
}

impl Capture {
    fn open(path: &Path) -> anyhow::Result<Capture> {
        let name = path.display();
        let mut magic = [0u8; 4];
        let mut file = File::open(path).with_context(|| format!("cannot open capture {name}"))?;
        let n = file
            .read(&mut magic)
            .with_context(|| format!("cannot read capture {name}"))?;
        if n == 0 {
            bail!("{name}: empty file, not a pcap or pcapng capture");
        }
        let file = File::open(path).with_context(|| format!("cannot open capture {name}"))?;
        match magic {
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => {
                let reader = PcapReader::new(file)
                    .map_err(|e| anyhow!("{name}: not a valid pcap file: {}", describe(e)))?;
                let header = reader.header();
                check_link(header.datalink).map_err(|e| anyhow!("{name}: {e}"))?;
                Ok(Capture::Pcap {
                    nanos: header.ts_resolution == TsResolution::NanoSecond,
                    reader,
                })
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                let reader = PcapNgReader::new(file)
                    .map_err(|e| anyhow!("{name}: not a valid pcapng file: {}", describe(e)))?;
                Ok(Capture::PcapNg {
                    reader,
                    interfaces: Vec::new(),
                })
            }
            [0x1f, 0x8b, ..] => bail!("{name}: gzip-compressed; decompress it first (gunzip)"),
            _ => bail!(
                "{name}: not a pcap or pcapng capture (it starts with {:02x}{:02x}{:02x}{:02x}; \
                 a pcap starts with a1b2c3d4 or d4c3b2a1, a pcapng with 0a0d0d0a)",
                magic[0],
                magic[1],
                magic[2],
                magic[3]
            ),
        }
    }

    fn format(&self) -> &'static str {
        match self {
            Capture::Pcap { .. } => "pcap",
            Capture::PcapNg { .. } => "pcapng",
        }
    }

    /// The next frame, or None at the end.
    fn next(&mut self) -> anyhow::Result<Option<RawFrame<'_>>> {
        match self {
            Capture::Pcap { reader, nanos } => {
                // Raw records: the validated ones refuse a frame longer on
                // the wire than the snap length, which is what a capture
                // with a short snap length is made of.
                let Some(raw) = reader.next_raw_packet() else {
                    return Ok(None);
                };
                let raw = raw.map_err(|e| anyhow!("corrupt record: {}", describe(e)))?;
                let ns = if *nanos {
                    u64::from(raw.ts_frac)
                } else {
                    u64::from(raw.ts_frac) * 1000
                };
                if ns >= 1_000_000_000 {
                    bail!("corrupt record: fraction of a second out of range");
                }
                if raw.incl_len > MAX_RECORD {
                    bail!("corrupt record: captured length {} bytes", raw.incl_len);
                }
                Ok(Some(RawFrame {
                    timestamp: Duration::new(u64::from(raw.ts_sec), ns as u32),
                    len: raw.orig_len,
                    data: raw.data,
                }))
            }
            Capture::PcapNg { reader, interfaces } => loop {
                let Some(block) = reader.next_block() else {
                    return Ok(None);
                };
                let block = block.map_err(|e| anyhow!("corrupt block: {}", describe(e)))?;
                let (iface, units, len, data) = match block {
                    Block::SectionHeader(_) => {
                        interfaces.clear();
                        continue;
                    }
                    Block::InterfaceDescription(idb) => {
                        let mut units = 1_000_000;
                        let mut offset = 0;
                        for o in &idb.options {
                            match o {
                                InterfaceDescriptionOption::IfTsResol(r) => {
                                    units = ts_units(*r)?;
                                }
                                InterfaceDescriptionOption::IfTsOffset(s) => offset = *s,
                                _ => {}
                            }
                        }
                        interfaces.push(Interface {
                            linktype: idb.linktype,
                            units,
                            offset,
                        });
                        continue;
                    }
                    // pcap-file 2.0 turns the raw units into nanoseconds
                    // as if they were: take them back.
                    Block::EnhancedPacket(p) => (
                        p.interface_id,
                        Some(p.timestamp.as_nanos() as u64),
                        p.original_len,
                        p.data,
                    ),
                    Block::Packet(p) => (
                        u32::from(p.interface_id),
                        Some(p.timestamp),
                        p.original_len,
                        p.data,
                    ),
                    Block::SimplePacket(p) => (0, None, p.original_len, p.data),
                    _ => continue,
                };
                let iface_info = interfaces.get(iface as usize).ok_or_else(|| {
                    anyhow!("packet of interface {iface}, which no interface block described")
                })?;
                check_link(iface_info.linktype).map_err(|e| anyhow!("interface {iface}: {e}"))?;
                let timestamp = units.map_or(Duration::ZERO, |u| {
                    let secs = u / iface_info.units + iface_info.offset;
                    let frac = u % iface_info.units;
                    let ns =
                        (u128::from(frac) * 1_000_000_000 / u128::from(iface_info.units)) as u32;
                    Duration::new(secs, ns)
                });
                if data.len() > MAX_RECORD as usize {
                    bail!("corrupt block: captured length {} bytes", data.len());
                }
                // Owned: a borrow of the reader returned from inside the
                // loop is more than today's borrow checker accepts.
                return Ok(Some(RawFrame {
                    timestamp,
                    len,
                    data: Cow::Owned(data.into_owned()),
                }));
            },
        }
    }
}

/// Units per second of a pcapng if_tsresol option.
fn ts_units(resol: u8) -> anyhow::Result<u64> {
    let exp = u32::from(resol & 0x7f);
    let units = if resol & 0x80 == 0 {
        10u64.checked_pow(exp)
    } else {
        2u64.checked_pow(exp)
    };
    units
        .filter(|u| *u > 0)
        .ok_or_else(|| anyhow!("interface timestamp resolution {resol:#04x} out of range"))
}

fn check_link(link: DataLink) -> anyhow::Result<()> {
    if link == DataLink::ETHERNET {
        return Ok(());
    }
    let number = u32::from(link);
    let hint = match number {
        113 | 276 => {
            " (Linux cooked capture, what `tcpdump -i any` records: capture on one interface, `tcpdump -i IFACE`)"
        }
        _ => "",
    };
    bail!(
        "link type {number} ({link:?}) is not supported{hint}: replay runs Ethernet frames \
         (link type 1, DLT_EN10MB) through the XDP program"
    )
}

fn describe(e: pcap_file::PcapError) -> String {
    match e {
        pcap_file::PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends too early (cut short?)".to_string()
        }
        e => e.to_string(),
    }
}

/// The human report: header, per-frame lines with `verbose`, totals.
pub fn render(report: &Report, verbose: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mode = match report.mode {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    };
    let _ = writeln!(
        out,
        "replay of {} ({}) with {} (digest {}, {} mode)",
        report.capture,
        report.format,
        report.rules_file,
        &report.rules_digest[..16],
        mode
    );
    let _ = writeln!(out, "timing: {}", report.timing);
    if verbose {
        let _ = writeln!(
            out,
            "\n{:>8} {:>20} {:>6} {:>6} {:<20} rule",
            "frame", "timestamp", "len", "action", "reason"
        );
        for f in &report.frames {
            let mut note = String::new();
            if f.truncated {
                let _ = write!(note, " (truncated: {} of {} bytes ran)", f.captured, f.len);
            }
            if !f.ran {
                note.push_str(" (shorter than an Ethernet header: not run)");
            }
            if f.oversize {
                note.push_str(" (oversize: the program saw only its first part)");
            }
            let _ = writeln!(
                out,
                "{:>8} {:>20.6} {:>6} {:>6} {:<20} {}{note}",
                f.index,
                f.timestamp,
                f.len,
                f.action,
                f.reason,
                f.rule.as_deref().unwrap_or("-")
            );
        }
    }
    let s = &report.summary;
    let pct = |n: u64| {
        if s.frames == 0 {
            0.0
        } else {
            100.0 * n as f64 / s.frames as f64
        }
    };
    let _ = writeln!(
        out,
        "\n{:<22} {:>7} {:>12} {:>7} {:>14}",
        "reason", "verdict", "frames", "%", "bytes"
    );
    for r in Reason::ALL {
        let t = report.totals[r.name()];
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>12} {:>6.1}% {:>14}",
            r.name(),
            if r.drops() { "drop" } else { "pass" },
            t.packets,
            pct(t.packets),
            t.bytes
        );
    }
    if !report.rules.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<32} {:>6} {:>12} {:>14}",
            "rule", "action", "frames", "bytes"
        );
        for r in &report.rules {
            let _ = writeln!(
                out,
                "{:<32} {:>6} {:>12} {:>14}",
                r.name, r.action, r.packets, r.bytes
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{} frames: {} dropped ({} bytes), {} passed ({} bytes)",
        s.frames, s.dropped.packets, s.dropped.bytes, s.passed.packets, s.passed.bytes,
    );
    if s.truncated > 0 {
        let _ = writeln!(
            out,
            "{} frames truncated by the capture's snap length ran as captured: \
             an IP length past the cut makes them malformed",
            s.truncated
        );
    }
    if s.not_run > 0 {
        let _ = writeln!(
            out,
            "{} frames shorter than an Ethernet header were not run (counted as malformed)",
            s.not_run
        );
    }
    if s.oversize > 0 {
        let _ = writeln!(
            out,
            "{} frames longer than the test harness hands XDP in one piece (~3.5 KB) were \
             seen only in part: their verdicts say nothing about the live filter",
            s.oversize
        );
    }
    let _ = writeln!(
        out,
        "replayed in {:.3} s: {:.0} frames/s",
        s.elapsed_s, s.frames_per_s
    );
    if !verbose && s.frames > 0 {
        let _ = writeln!(out, "(--verbose lists every frame)");
    }
    out
}
