//! The upstream task of `serve`: one `upstream::Worker` per watched
//! interface, stepped on a blocking thread at its `[upstream].interval`,
//! its state file and metrics refreshed after each step, a keeper process
//! started with the first route (it withdraws them on time if serve is
//! killed), and every route withdrawn when serve stops (a route nobody
//! maintains would outlive the attack). Its failures are logged and
//! counted; the filter never waits on it.

use std::{
    process::Child,
    time::{Duration, Instant},
};

use log::{error, warn};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::sync::watch::Receiver;

use super::{
    catalogue::{Kept, Series},
    watch::Watch,
};
use crate::{
    state::PinRoot,
    sys,
    upstream::{
        Worker, keeper,
        state::{self, UpstreamState},
    },
};

/// What the upstream task shows on /metrics (declared in
/// `metrics::METRICS`).
#[derive(Clone)]
pub(crate) struct UpstreamMetrics {
    routes: Series<Gauge>,
    selected: Series<Gauge>,
    errors: Series<Counter>,
    blackhole: Series<Gauge>,
}

impl UpstreamMetrics {
    pub(crate) fn new(kept: &Kept) -> UpstreamMetrics {
        UpstreamMetrics {
            routes: kept.gauge("upstream_routes"),
            selected: kept.gauge("upstream_selected_routes"),
            errors: kept.counter("upstream_speaker_errors"),
            blackhole: kept.gauge("upstream_blackhole_active"),
        }
    }

    fn update(&self, s: &UpstreamState, new_errors: u64) {
        let iface = s.interface.as_str();
        for kind in ["flowspec", "blackhole"] {
            self.routes
                .get(&[iface, kind])
                .set(s.count(kind, true) as i64);
            self.selected
                .get(&[iface, kind])
                .set(s.count(kind, false) as i64);
        }
        self.errors.get(&[iface]).inc_by(new_errors);
        self.blackhole
            .get(&[iface])
            .set(i64::from(s.count("blackhole", true) > 0));
    }
}

/// Runs every watched interface's worker until `stop` turns true.
pub(crate) async fn run_upstream(
    root: PinRoot,
    watches: Vec<Watch>,
    metrics: UpstreamMetrics,
    stop: Receiver<bool>,
) {
    let tasks: Vec<_> = watches
        .into_iter()
        .map(|w| tokio::spawn(drive(root.clone(), w, metrics.clone(), stop.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// The keeper this serve started for one interface (`upstream::keeper`).
#[derive(Default)]
struct Keeper {
    child: Option<Child>,
    started: Option<Instant>,
    said: bool,
}

/// A keeper that exited (it should not while serve runs) is started again,
/// no sooner than this after the last one.
const KEEPER_RESTART: Duration = Duration::from_secs(1);

impl Keeper {
    /// Starts one unless it runs.
    fn ensure(&mut self, root: &PinRoot, iface: &str) {
        if let Some(c) = self.child.as_mut()
            && matches!(c.try_wait(), Ok(None))
        {
            return;
        }
        if self.started.is_some_and(|t| t.elapsed() < KEEPER_RESTART) {
            return;
        }
        self.started = Some(Instant::now());
        match keeper::spawn(root, iface) {
            Ok(c) => {
                self.child = Some(c);
                self.said = false;
            }
            Err(e) => {
                self.child = None;
                if !self.said {
                    warn!(
                        "upstream {iface}: cannot start the keeper of its routes: {e}: if serve is killed, they stay announced until a serve starts again"
                    );
                }
                self.said = true;
            }
        }
    }

    /// Tells it to go, nothing being left to keep, and reaps it.
    fn dismiss(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = sys::terminate(c.id());
            let _ = c.wait();
        }
    }
}

async fn drive(root: PinRoot, w: Watch, metrics: UpstreamMetrics, mut stop: Receiver<bool>) {
    let mut worker = Worker::new(&w.iface, w.rules.clone());
    let mut keeper = Keeper::default();
    let mut counted = 0;
    let mut write_failed = false;
    loop {
        let r = tokio::task::spawn_blocking({
            let root = root.clone();
            move || {
                let r = worker.step(&root);
                (worker, r)
            }
        })
        .await;
        let Ok((back, result)) = r else {
            error!("upstream {}: a step panicked; upstream stopped", w.iface);
            return;
        };
        worker = back;
        match result {
            Ok(Some(s)) if worker.config().is_some() => {
                metrics.update(&s, worker.errors() - counted);
                counted = worker.errors();
                match state::write(&root, &s) {
                    Err(e) if !write_failed => {
                        warn!("upstream {}: cannot write its state file: {e}", w.iface);
                        write_failed = true;
                    }
                    r => write_failed &= r.is_err(),
                }
            }
            Ok(Some(_)) => state::remove(&root, &w.iface),
            // Another process acts on the routes, or there are none.
            Ok(None) => {}
            Err(e) => warn!("upstream {}: cannot read the filter: {e:#}", w.iface),
        }
        // After the state file is written: the keeper reads it. Started
        // with the first route, it stays until serve stops.
        if worker.needs_keeper() {
            keeper.ensure(&root, &w.iface);
        }
        tokio::select! {
            _ = tokio::time::sleep(worker.interval()) => {}
            _ = stop.changed() => break,
        }
    }
    let _ = tokio::task::spawn_blocking(move || {
        // Routes the speaker would not withdraw stay the keeper's.
        if worker.finish(&root) == 0 {
            keeper.dismiss();
        }
    })
    .await;
}

/// How long serve waits for the withdrawals when it stops.
pub const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(20);
