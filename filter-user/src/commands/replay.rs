//! `replay`: every frame of a capture through the program, streamed out as
//! it runs (the JSON document of `replay/mod.rs`, or a human report).

use std::{
    fmt::Write as _,
    io::{BufWriter, Write as _},
    path::PathBuf,
};

use super::table;
use crate::{
    replay::{FrameResult, Header, Replay, Totalled},
    rules::{self, Mode},
};

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Rule file (TOML) to test.
    #[arg(long)]
    rules: PathBuf,
    /// Capture file (.pcap or .pcapng).
    capture: PathBuf,
    /// Print the report as JSON (every frame, totals per reason and rule).
    #[arg(long)]
    json: bool,
    /// List every frame in the human report.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(a: ReplayArgs) -> anyhow::Result<u8> {
    let (json, verbose) = (a.json, a.verbose);
    let set = rules::load_file(&a.rules)?;
    let replay = Replay::open(&set, &a.rules.display().to_string(), &a.capture)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if json {
        // One document, its frames written as they run.
        let header = serde_json::to_value(&replay.header)?;
        let header = header.as_object().expect("a struct");
        write!(
            out,
            "{{\n  \"schema_version\": {},",
            crate::JSON_SCHEMA_VERSION
        )?;
        for (k, v) in header {
            write!(out, "\n  {}: {},", serde_json::to_string(k)?, v)?;
        }
        write!(out, "\n  \"frames\": [")?;
        let mut first = true;
        let totals = replay.run(|f| {
            let sep = if std::mem::take(&mut first) { "" } else { "," };
            write!(out, "{sep}\n    {}", serde_json::to_string(f)?)?;
            Ok(())
        })?;
        let tail = serde_json::to_value(&totals)?;
        write!(out, "\n  ],")?;
        let tail = tail.as_object().expect("a struct");
        let n = tail.len();
        for (i, (k, v)) in tail.iter().enumerate() {
            let sep = if i + 1 < n { "," } else { "" };
            write!(out, "\n  {}: {}{sep}", serde_json::to_string(k)?, v)?;
        }
        writeln!(out, "\n}}")?;
    } else {
        write!(out, "{}", render_header(&replay.header, verbose))?;
        let totals = replay.run(|f| {
            if verbose {
                write!(out, "{}", render_frame(f))?;
            }
            Ok(())
        })?;
        write!(out, "{}", render_totals(&totals, verbose))?;
    }
    out.flush()?;
    Ok(0)
}

fn render_header(h: &Header, verbose: bool) -> String {
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
    let _ = writeln!(out, "timing: {}", h.timing);
    if verbose {
        let _ = writeln!(
            out,
            "\n{:>8} {:>20} {:>6} {:>6} {:<20} rule",
            "frame", "timestamp", "len", "action", "reason"
        );
    }
    out
}

fn render_frame(f: &FrameResult) -> String {
    let mut note = String::new();
    if f.truncated {
        let _ = write!(note, " (truncated: {} of {} bytes ran)", f.captured, f.len);
    }
    if !f.ran && !f.oversize {
        note.push_str(" (shorter than an Ethernet header: not run)");
    }
    if f.oversize {
        note.push_str(" (oversize: the program saw only its first part, or none of it)");
    }
    format!(
        "{:>8} {:>20.6} {:>6} {:>6} {:<20} {}{note}\n",
        f.index,
        f.timestamp,
        f.len,
        f.action,
        f.reason,
        f.rule.as_deref().unwrap_or("-")
    )
}

fn render_totals(t: &Totalled, verbose: bool) -> String {
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
        Some(s.frames),
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
        "\n{} frames: {} dropped ({} bytes), {} passed ({} bytes)",
        s.frames, s.dropped.packets, s.dropped.bytes, s.passed.packets, s.passed.bytes,
    );
    out.push_str(&notes(s));
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
fn notes(s: &crate::replay::Summary) -> String {
    let mut out = String::new();
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
            "{} frames shorter than an Ethernet header or too long for the test harness were not run (counted as malformed)",
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
    out
}
