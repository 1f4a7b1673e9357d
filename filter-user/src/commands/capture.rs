//! `capture`: dropped frames to a pcapng file until told to stop.

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    filter::capture::{Capture, PcapngSink, Selection, create_file, parse_reason, remove_partial},
    state::PinRoot,
};

#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    #[arg(long)]
    iface: String,
    /// Only frames dropped for this reason (repeatable; e.g. rule_drop,
    /// rate_limit_drop, deny_drop); all drop reasons when absent.
    #[arg(long = "reason", value_name = "REASON")]
    reasons: Vec<String>,
    /// Only frames this rule matched (of the rule set running when the
    /// capture starts: restart it after a reload that reorders rules).
    #[arg(long)]
    rule: Option<String>,
    /// Copy one frame in N (per CPU).
    #[arg(long, value_name = "N", default_value_t = 1)]
    sample: u32,
    /// At most this many frames per second are written.
    #[arg(long, value_name = "M", default_value_t = 1000)]
    max_pps: u32,
    /// Bytes of each frame to keep (at most 1528).
    #[arg(long, value_name = "B", default_value_t = 1528)]
    snaplen: u32,
    /// The pcapng file to write: a new file, readable by its owner only
    /// (mode 0600); an existing path is refused, a symbolic link included.
    /// A capture that fails removes what it wrote (and says so); one
    /// stopped by --duration, --count, Ctrl-C or SIGTERM keeps it. Reloads
    /// meanwhile do not stop it; a filter unreadable for 5 s does.
    #[arg(short = 'w', value_name = "FILE")]
    write: PathBuf,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// When the capture ends (besides Ctrl-C or SIGTERM).
#[derive(Debug, Clone, Copy)]
struct Stop {
    duration: Option<u64>,
    count: Option<u64>,
}

fn selection(a: &CaptureArgs) -> anyhow::Result<Selection> {
    anyhow::ensure!(a.sample >= 1, "--sample must be 1 or more");
    anyhow::ensure!(a.max_pps >= 1, "--max-pps must be 1 or more");
    Ok(Selection {
        reasons: a
            .reasons
            .iter()
            .map(|r| parse_reason(r))
            .collect::<anyhow::Result<_>>()?,
        rule: a.rule.clone(),
        sample: a.sample,
        max_pps: a.max_pps,
        snaplen: a.snaplen,
    })
}

/// What a capture wrote.
#[derive(Debug, Default)]
struct Written {
    frames: u64,
    /// Copies over --max-pps, not written.
    over_bound: u64,
}

pub(crate) async fn run(root: PinRoot, a: CaptureArgs) -> anyhow::Result<u8> {
    let sel = selection(&a)?;
    let stop = Stop {
        duration: a.duration,
        count: a.count,
    };
    let (iface, path) = (a.iface, a.write);
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let (file, iface_name) = (path.clone(), iface.clone());
    let mut run =
        tokio::task::spawn_blocking(move || record(&root, &iface, &sel, &file, stop, &flag));
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let written = tokio::select! {
        r = &mut run => r?,
        _ = int.recv() => { interrupted.store(true, Ordering::Relaxed); run.await? }
        _ = term.recv() => { interrupted.store(true, Ordering::Relaxed); run.await? }
    }?;
    println!(
        "{iface_name}: {} dropped frames written to {}{}",
        written.frames,
        path.display(),
        if written.over_bound > 0 {
            format!(" ({} more over --max-pps not written)", written.over_bound)
        } else {
            String::new()
        }
    );
    Ok(0)
}

/// Creates `path` and captures into it; removes it if the capture fails.
fn record(
    root: &PinRoot,
    iface: &str,
    sel: &Selection,
    path: &Path,
    stop: Stop,
    interrupted: &AtomicBool,
) -> anyhow::Result<Written> {
    let out = create_file(path)?;
    record_into(root, iface, sel, &out, stop, interrupted).map_err(|e| {
        let file = path.display();
        match remove_partial(path, &out) {
            Ok(true) => e.context(format!("the capture failed; {file} was removed")),
            Ok(false) => e.context(format!(
                "the capture failed; {file} is no longer the file it wrote, left as it is"
            )),
            Err(io) => e.context(format!(
                "the capture failed, and its partial {file} could not be removed: {io}"
            )),
        }
    })
}

/// The capture loop, blocking: reads copies, bounds them to --max-pps per
/// second, writes them, until a stop condition.
fn record_into(
    root: &PinRoot,
    iface: &str,
    sel: &Selection,
    out: &File,
    stop: Stop,
    interrupted: &AtomicBool,
) -> anyhow::Result<Written> {
    let mut sink = PcapngSink::new(std::io::BufWriter::new(out), sel.snaplen)?;
    let mut capture = Capture::start(root, iface, sel)?;
    let started = Instant::now();
    let (mut window, mut in_window) = (Instant::now(), 0u32);
    let mut w = Written::default();
    let done = |w: &Written| {
        interrupted.load(Ordering::Relaxed)
            || stop.count.is_some_and(|n| w.frames >= n)
            || stop
                .duration
                .is_some_and(|d| started.elapsed() >= Duration::from_secs(d))
    };
    while !done(&w) {
        capture.keep_alive()?;
        capture.wait(Duration::from_millis(100))?;
        for frame in capture.drain() {
            if window.elapsed() >= Duration::from_secs(1) {
                (window, in_window) = (Instant::now(), 0);
            }
            if in_window >= sel.max_pps || done(&w) {
                w.over_bound += 1;
                continue;
            }
            in_window += 1;
            sink.write(&frame)?;
            w.frames += 1;
        }
    }
    drop(capture);
    sink.finish()?;
    Ok(w)
}
