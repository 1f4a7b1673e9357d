//! The human report of a replay.

use std::fmt::Write as _;

use crate::{
    commands::table,
    replay::{
        against::Changes,
        capture::Direction,
        events::{Event, Kind},
        report::{Header, Summary, Totalled},
        result::FrameResult,
    },
    rules::Mode,
};

pub(crate) fn header(h: &Header, verbose: bool) -> String {
    let mut out = String::new();
    let mode = match h.mode {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    };
    let _ = writeln!(
        out,
        "replay of {} ({}) with {} (digest {}, {} mode)",
        h.capture,
        h.format,
        h.rules_file,
        &h.rules_digest[..16],
        mode
    );
    let _ = writeln!(out, "timing: {}", h.timing_note);
    let _ = writeln!(
        out,
        "direction: {}",
        match h.direction {
            "capture" => "as the capture marks it (host addresses for frames it leaves unmarked)",
            "hosts" => "from the host addresses given",
            _ =>
                "not known: every frame runs as received (give --host or --iface, or capture with tcpdump -i any)",
        }
    );
    if verbose {
        let _ = writeln!(
            out,
            "\n{:>8} {:>12} {:>4} {:>6} {:>6} {:<20} rule",
            "frame", "time_s", "dir", "len", "action", "reason"
        );
    }
    out
}

pub(crate) fn frame(f: &FrameResult) -> String {
    let mut note = String::new();
    if f.truncated {
        let _ = write!(note, " (truncated: {} of {} bytes ran)", f.captured, f.len);
    }
    if !f.ran && !f.oversize && !f.loopback {
        note.push_str(" (shorter than an Ethernet header: not run)");
    }
    if f.oversize {
        note.push_str(" (oversize: the program saw only its first part, or none of it)");
    }
    let dir = match f.direction {
        Direction::In => "in",
        Direction::Out => "out",
        Direction::Unknown => "?",
    };
    format!(
        "{:>8} {:>12.6} {:>4} {:>6} {:>6} {:<20} {}{note}\n",
        f.index,
        f.time_s,
        dir,
        f.len,
        f.action,
        f.reason,
        f.rule.as_deref().unwrap_or("-")
    )
}

pub(crate) fn totals(t: &Totalled, verbose: bool) -> String {
    let mut out = String::from("\n");
    let s = &t.summary;
    out.push_str(&table::reasons(
        filter_common::Reason::ALL.iter().map(|r| {
            (
                r.name(),
                r.drops(),
                t.totals.get(r.name()).copied().unwrap_or_default(),
            )
        }),
        "frames",
        Some(s.incoming),
        "",
    ));
    if !t.rules.is_empty() {
        out.push('\n');
        out.push_str(&table::rules(
            t.rules
                .iter()
                .map(|r| (r.name.as_str(), r.action, r.packets, r.bytes)),
            "frames",
            "",
        ));
    }
    let _ = writeln!(
        out,
        "\n{} frames: {} received, {} dropped ({} bytes), {} passed ({} bytes); {} sent by the host (run through the request recorder)",
        s.frames,
        s.incoming,
        s.dropped.packets,
        s.dropped.bytes,
        s.passed.packets,
        s.passed.bytes,
        s.outgoing,
    );
    out.push_str(&notes(s));
    out.push_str(&events(&t.events));
    if let Some(c) = &t.changes {
        out.push_str(&changes(c, verbose));
    }
    let _ = writeln!(out, "timing: {}", s.timing_effect);
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

/// What the marked frames mean.
fn notes(s: &Summary) -> String {
    let notes: [(u64, &str); 5] = [
        (
            s.direction_unknown,
            "frames of unknown direction ran as received (give --host or --iface, or capture with `tcpdump -i any`)",
        ),
        (
            s.loopback,
            "loopback frames were skipped: XDP on a network interface never sees them",
        ),
        (
            s.truncated,
            "frames truncated by the capture's snap length ran as captured: an IP length past the cut makes them malformed",
        ),
        (
            s.not_run,
            "frames shorter than an Ethernet header or too long for the test harness were not run (counted as malformed)",
        ),
        (
            s.oversize,
            "frames longer than the test harness hands XDP in one piece (~3.5 KB) were seen only in part: their verdicts say nothing about the live filter",
        ),
    ];
    notes
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}\n"))
        .collect()
}

fn events(list: &[Event]) -> String {
    let mut out = String::new();
    if list.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nevents (capture time):");
    for e in list {
        let what = match (e.kind, e.source, e.port) {
            (Kind::Limit, Some(s), _) => format!("{s} first dropped over its limit"),
            (Kind::Ban, Some(s), _) => format!("{s} first dropped as banned"),
            (Kind::SurgeBlock, _, Some(p)) => {
                format!("surge: UDP source port {p} would be blocked (simulated, not applied)")
            }
            (Kind::SurgeLift, _, Some(p)) => format!("surge: block of UDP source port {p} lifted"),
            _ => continue,
        };
        let _ = writeln!(out, "  {:>10.3} s  frame {:<8} {what}", e.time_s, e.frame);
    }
    out
}

pub(crate) fn changes(c: &Changes, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nagainst {}: {} frames newly dropped, {} newly passed, {} with another reason or rule",
        c.old_rules, c.newly_dropped, c.newly_passed, c.reason_changed
    );
    for (r, p) in &c.reasons {
        let _ = writeln!(out, "  reason {r:<22} {:>8} -> {}", p.old, p.new);
    }
    for (r, p) in &c.rules {
        let _ = writeln!(out, "  rule {r:<24} {:>8} -> {}", p.old, p.new);
    }
    let shown = if verbose {
        c.frames.len()
    } else {
        c.frames.len().min(20)
    };
    for f in &c.frames[..shown] {
        let _ = writeln!(
            out,
            "  frame {:<8} {:>10.3} s  {} {}{} -> {} {}{}",
            f.index,
            f.time_s,
            f.old.action,
            f.old.reason,
            rule_suffix(&f.old.rule),
            f.new.action,
            f.new.reason,
            rule_suffix(&f.new.rule),
        );
    }
    let more = (c.frames.len() - shown) as u64 + c.frames_not_listed;
    if more > 0 {
        let _ = writeln!(
            out,
            "  ... and {more} more (--verbose or --json lists them)"
        );
    }
    out
}

fn rule_suffix(rule: &Option<String>) -> String {
    rule.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
}
