//! `capture`: dropped frames to a pcapng file until told to stop.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    filter::capture::{Capture, PcapngSink, Selection, parse_reason},
    state::PinRoot,
};

/// When the capture ends (besides Ctrl-C or SIGTERM).
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    pub duration: Option<u64>,
    pub count: Option<u64>,
}

pub fn selection(
    reasons: &[String],
    rule: Option<String>,
    sample: u32,
    max_pps: u32,
    snaplen: u32,
) -> anyhow::Result<Selection> {
    anyhow::ensure!(sample >= 1, "--sample must be 1 or more");
    anyhow::ensure!(max_pps >= 1, "--max-pps must be 1 or more");
    Ok(Selection {
        reasons: reasons
            .iter()
            .map(|r| parse_reason(r))
            .collect::<anyhow::Result<_>>()?,
        rule,
        sample,
        max_pps,
        snaplen,
    })
}

/// What a capture wrote.
#[derive(Debug, Default)]
struct Written {
    frames: u64,
    /// Copies over --max-pps, not written.
    over_bound: u64,
}

pub async fn capture(
    root: PinRoot,
    iface: String,
    sel: Selection,
    path: PathBuf,
    stop: Stop,
) -> anyhow::Result<()> {
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
    Ok(())
}

/// The capture loop, blocking: reads copies, bounds them to --max-pps per
/// second, writes them, until a stop condition.
fn record(
    root: &PinRoot,
    iface: &str,
    sel: &Selection,
    path: &PathBuf,
    stop: Stop,
    interrupted: &AtomicBool,
) -> anyhow::Result<Written> {
    let out =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
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
