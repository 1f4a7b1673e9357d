//! The upstream task of `serve`: one `upstream::Worker` per watched
//! interface, stepped on a blocking thread at its `[upstream].interval`,
//! its state file and metrics refreshed after each step, and every route
//! withdrawn when serve stops (a route nobody maintains would outlive the
//! attack). Its failures are logged and counted; the filter never waits
//! on it.

use std::time::Duration;

use log::{error, warn};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::watch::Receiver;

use super::watch::Watch;
use crate::{
    state::PinRoot,
    upstream::{
        Worker,
        state::{self, UpstreamState},
    },
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub interface: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IfaceLabels {
    pub interface: String,
}

#[derive(Clone, Default)]
pub struct UpstreamMetrics {
    routes: Family<KindLabels, Gauge>,
    selected: Family<KindLabels, Gauge>,
    errors: Family<IfaceLabels, Counter>,
    blackhole: Family<IfaceLabels, Gauge>,
}

impl UpstreamMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "upstream_routes",
            "Routes the BGP speaker announces for this interface now, by kind (flowspec, blackhole)",
            self.routes.clone(),
        );
        registry.register(
            "upstream_selected_routes",
            "Routes selected for announcement, by kind; in dry-run mode none of them is announced",
            self.selected.clone(),
        );
        registry.register(
            "upstream_speaker_errors",
            "Failed calls to the BGP speaker (the XDP filter is unaffected)",
            self.errors.clone(),
        );
        registry.register(
            "upstream_blackhole_active",
            "1 while this host's addresses are blackholed upstream: all traffic to them is dropped",
            self.blackhole.clone(),
        );
    }

    fn update(&self, s: &UpstreamState, new_errors: u64) {
        for kind in ["flowspec", "blackhole"] {
            let labels = KindLabels {
                interface: s.interface.clone(),
                kind: kind.to_string(),
            };
            self.routes
                .get_or_create(&labels)
                .set(s.count(kind, true) as i64);
            self.selected
                .get_or_create(&labels)
                .set(s.count(kind, false) as i64);
        }
        let iface = IfaceLabels {
            interface: s.interface.clone(),
        };
        self.errors.get_or_create(&iface).inc_by(new_errors);
        self.blackhole
            .get_or_create(&iface)
            .set(i64::from(s.count("blackhole", true) > 0));
    }
}

/// Runs every watched interface's worker until `stop` turns true.
pub async fn run_upstream(
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

async fn drive(root: PinRoot, w: Watch, metrics: UpstreamMetrics, mut stop: Receiver<bool>) {
    let mut worker = Worker::new(&w.iface, w.rules.clone());
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
            Ok(s) if worker.config().is_some() => {
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
            Ok(_) => state::remove(&root, &w.iface),
            Err(e) => warn!("upstream {}: cannot read the filter: {e:#}", w.iface),
        }
        tokio::select! {
            _ = tokio::time::sleep(worker.interval()) => {}
            _ = stop.changed() => break,
        }
    }
    let _ = tokio::task::spawn_blocking(move || {
        worker.stop();
        state::remove(&root, &w.iface);
    })
    .await;
}

/// How long serve waits for the withdrawals when it stops.
pub const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(20);
