//! The surge side of `serve`: once a second, for each watched interface
//! whose file has `[adaptive]`, reads the kernel's UDP counters by source
//! port, feeds the surge detector, and brings the running rules in step
//! with its blocks through the same atomic reload as everything else (the
//! file's rule set plus synthetic `adaptive-udp-PORT` rules). In monitor
//! mode it reports surges and blocks nothing. One log line when a surge
//! starts and one when its block is lifted; metrics for both.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use log::{debug, error, info, warn};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

use super::{
    catalogue::{Kept, Series},
    watch::{FileSets, Watch},
};
use crate::{
    filter::{
        guard::surge::{Change, Detector},
        lifecycle::reload,
        observe::{
            counters,
            status::{self, Status},
        },
    },
    rules::{
        adaptive::{Adaptive, AdaptiveBlock, with_blocks},
        imports::with_imports,
    },
    state::PinRoot,
    sys,
};

/// How often the counters are read: rates are per second.
const POLL: Duration = Duration::from_secs(1);

/// What surge detection shows on /metrics (declared in
/// `metrics::METRICS`).
#[derive(Clone)]
pub(crate) struct AdaptiveMetrics {
    /// By interface, port and state: enforced (a rule drops or limits the
    /// port) or monitor (reported only: the filter runs in monitor mode).
    blocks: Series<Gauge>,
    since: Series<Gauge>,
    /// By interface and event: installed, lifted, reported (a surge seen
    /// in monitor mode) or failed (a reload that did not go through).
    events: Series<Counter>,
}

impl AdaptiveMetrics {
    pub(crate) fn new(kept: &Kept) -> AdaptiveMetrics {
        AdaptiveMetrics {
            blocks: kept.gauge("adaptive_blocks"),
            since: kept.gauge("adaptive_block_since_seconds"),
            events: kept.counter("adaptive_block_events"),
        }
    }

    fn event(&self, iface: &str, event: &str) {
        self.events.get(&[iface, event]).inc();
    }

    /// Takes a surge's block series out of the scrapes.
    fn hide(&self, iface: &str, port: u16, state: &str) {
        let labels = [iface, &port.to_string(), state];
        self.blocks.remove(&labels);
        self.since.remove(&labels);
    }
}

/// One watched interface's surges.
struct Surges {
    watch: Watch,
    detector: Detector,
    /// Whether the blocks found running have been taken over.
    adopted: bool,
    /// The state label of each current surge's series, by port.
    shown: BTreeMap<u16, &'static str>,
    /// The last block set that failed to install, logged once.
    failed: Option<Vec<AdaptiveBlock>>,
}

/// Runs until aborted.
pub(crate) async fn watch_surges(
    root: PinRoot,
    watches: Vec<Watch>,
    files: FileSets,
    metrics: AdaptiveMetrics,
) {
    let mut all: Vec<Surges> = watches
        .into_iter()
        .map(|watch| Surges {
            watch,
            detector: Detector::default(),
            adopted: false,
            shown: BTreeMap::new(),
            failed: None,
        })
        .collect();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (root, files, metrics) = (root.clone(), files.clone(), metrics.clone());
        let step = tokio::task::spawn_blocking(move || {
            for s in &mut all {
                s.step(&root, &files, &metrics);
            }
            all
        });
        all = match step.await {
            Ok(all) => all,
            Err(e) => {
                error!("surge detection stopped: {e}");
                return;
            }
        };
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Surges {
    /// One observation: read, detect, report, and install what changed.
    fn step(&mut self, root: &PinRoot, files: &FileSets, metrics: &AdaptiveMetrics) {
        let iface = self.watch.iface.clone();
        let packets = match counters::packets(root, &iface) {
            Ok(p) => p,
            Err(e) => return warn!("{iface}: cannot read the UDP port counters: {e:#}"),
        };
        let now = sys::monotonic_coarse_ns();
        let cfg = files
            .lock()
            .get(&iface)
            .and_then(|set| set.adaptive.clone())
            .filter(|a| a.enabled);
        let Some(cfg) = cfg else {
            // No [adaptive] (any more): the watcher's reload of the file
            // dropped the blocks; forget the surges.
            if !self.shown.is_empty() {
                info!("{iface}: surge detection is off in the rule file: its blocks are gone");
            }
            for (port, state) in std::mem::take(&mut self.shown) {
                metrics.hide(&iface, port, state);
            }
            self.detector = Detector::default();
            // The baseline of the first interval judged once the file
            // (read by the watcher, maybe right now) says what to judge.
            self.detector.rebase(now, packets);
            return;
        };
        let running = match status::status(root, &iface) {
            Ok(s) => s,
            Err(e) => return debug!("{iface}: surge check skipped: {e:#}"),
        };
        if !self.adopted {
            self.adopted = true;
            self.detector.adopt(&running.adaptive_blocks, now);
            for b in &running.adaptive_blocks {
                info!(
                    "{iface}: adaptive block on UDP source port {} (since {}) found running: held as if its surge were still on",
                    b.port, b.since_unix
                );
                self.show(metrics, b, "enforced");
            }
        }
        let monitor = running.mode == "monitor";
        for change in self.detector.observe(&cfg, now, unix_now(), packets) {
            self.report(metrics, &cfg, &change, monitor);
        }
        let desired = if monitor {
            Vec::new()
        } else {
            self.detector.active()
        };
        if desired != running.adaptive_blocks {
            self.install(root, files, metrics, &running, desired);
        }
    }

    fn show(&mut self, metrics: &AdaptiveMetrics, b: &AdaptiveBlock, state: &'static str) {
        let labels = [self.watch.iface.as_str(), &b.port.to_string(), state];
        metrics.blocks.get(&labels).set(1);
        metrics.since.get(&labels).set(b.since_unix as i64);
        self.shown.insert(b.port, state);
    }

    /// The log line and metrics of a surge that started or ended.
    fn report(
        &mut self,
        metrics: &AdaptiveMetrics,
        cfg: &Adaptive,
        change: &Change,
        monitor: bool,
    ) {
        let iface = self.watch.iface.clone();
        let hold = Duration::from_nanos(cfg.hold_ns);
        match change {
            Change::Started(b) if monitor => {
                info!(
                    "{iface}: surge from UDP source port {}: {} frames/s (normal {}), {}% of UDP; monitor mode: reported, not blocked",
                    b.port,
                    b.trigger_pps,
                    self.detector.normal_pps(b.port),
                    b.trigger_share_percent
                );
                metrics.event(&iface, "reported");
                self.show(metrics, b, "monitor");
            }
            Change::Started(b) => {
                info!(
                    "{iface}: surge from UDP source port {}: {} frames/s (normal {}), {}% of UDP; blocking it ({}) until {hold:?} after it ends",
                    b.port,
                    b.trigger_pps,
                    self.detector.normal_pps(b.port),
                    b.trigger_share_percent,
                    b.rule_name()
                );
                self.show(metrics, b, "enforced");
            }
            Change::Ended(b, lasted) => {
                info!(
                    "{iface}: surge from UDP source port {} over for {hold:?}: {} after {}s",
                    b.port,
                    if monitor {
                        "no longer reported"
                    } else {
                        "block lifted"
                    },
                    lasted / 1_000_000_000
                );
                if let Some(state) = self.shown.remove(&b.port) {
                    metrics.hide(&iface, b.port, state);
                }
            }
        }
    }

    /// Reloads the interface with the file's rules and `desired` blocks.
    fn install(
        &mut self,
        root: &PinRoot,
        files: &FileSets,
        metrics: &AdaptiveMetrics,
        running: &Status,
        desired: Vec<AdaptiveBlock>,
    ) {
        let iface = self.watch.iface.clone();
        let result = (|| -> anyhow::Result<u32> {
            let files = files.lock();
            let set = files
                .get(&iface)
                .context("the rule file has not been read yet")?;
            let with = with_blocks(set, &desired)?;
            // The imported routes that run stay (read under the lock, which
            // their task holds for its reloads too).
            let imports = status::status(root, &iface)?.flowspec_imports;
            let with = match with_imports(&with, &imports) {
                Ok(both) if !imports.is_empty() => both,
                _ => with,
            };
            Ok(reload::reload(root, &iface, &with, &self.watch.rules)?)
        })();
        match result {
            Ok(generation) => {
                debug!(
                    "{iface}: generation {generation} runs {} adaptive blocks",
                    desired.len()
                );
                let had = |b: &AdaptiveBlock, list: &[AdaptiveBlock]| {
                    list.iter().any(|o| o.port == b.port)
                };
                for b in desired.iter().filter(|b| !had(b, &running.adaptive_blocks)) {
                    debug!("{iface}: {} installed", b.rule_name());
                    metrics.event(&iface, "installed");
                }
                for b in running.adaptive_blocks.iter().filter(|b| !had(b, &desired)) {
                    debug!("{iface}: {} lifted", b.rule_name());
                    metrics.event(&iface, "lifted");
                }
                self.failed = None;
            }
            Err(e) => {
                metrics.event(&iface, "failed");
                if self.failed.as_ref() != Some(&desired) {
                    error!("{iface}: adaptive blocks not installed, the running rules stay: {e:#}");
                }
                self.failed = Some(desired);
            }
        }
    }
}
