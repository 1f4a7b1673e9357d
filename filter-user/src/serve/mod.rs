//! `filterctl serve`: a long-running daemon that
//!
//! - serves Prometheus metrics (OpenMetrics text, encoded by
//!   prometheus-client) on GET /metrics and the `stats --json` document on
//!   GET /stats, both read fresh from the pinned maps at every request;
//!   /healthz and /top (see `endpoints`);
//! - keeps each watched interface's rules in step with a rule file: the file
//!   is checked every second (its bytes, and the size and times of the list
//!   files it names) and reloaded when its content digest differs from what
//!   runs, and every watched file is reloaded on SIGHUP; reloads go through
//!   the same atomic `loader::reload` and lockout guard as `filterctl
//!   reload`, so a broken file is logged (FILE:LINE:COLUMN) and not loaded;
//! - stops on SIGTERM or SIGINT, finishing a reload in progress, and leaves
//!   the filter attached with all its pins.

mod endpoints;
pub mod metrics;
pub mod watch;

use std::{future::IntoFuture as _, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, anyhow};
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse as _, Response},
    routing::get,
};
use log::{error, info, warn};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio::signal::unix::{Signal, SignalKind, signal};

use self::{
    metrics::FilterCollector,
    watch::{ReloadMetrics, Watch, watch_rules},
};
use crate::{filter::stats, state::PinRoot};

/// Where `serve` listens unless told otherwise: loopback only.
/// Port 19419: the exporter range Prometheus allocates (9100-9999) is full
/// (9419 is the RabbitMQ exporter's), and the allocations that go on above
/// it start at 10000; see README.md.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:19419";

/// The Content-Type of what /metrics returns: prometheus-client's text
/// encoder writes OpenMetrics 1.0 (counters as `NAME_total`, a closing
/// `# EOF`).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long open connections get to finish once SIGTERM arrives.
const DRAIN: Duration = Duration::from_secs(5);

struct App {
    root: PinRoot,
    registry: Registry,
    scrape_errors: Counter,
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            error!("cannot encode the metrics: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
                .into_response()
        }
    }
}

async fn stats_json(State(app): State<Arc<App>>) -> Response {
    match stats::snapshot(&app.root, None) {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => {
            app.scrape_errors.inc();
            error!("cannot read the counters: {e:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
        }
    }
}

async fn index() -> &'static str {
    "filterctl serve: GET /metrics (OpenMetrics), GET /stats (the `filterctl stats --json` document), GET /top (`top --json`), GET /healthz (200 when every loaded or watched interface runs the filter)\n"
}

/// SIGTERM or SIGINT, whichever comes first.
struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    fn new() -> anyhow::Result<Stop> {
        Ok(Stop {
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// `filterctl serve`: runs until SIGTERM or SIGINT, then returns Ok.
pub async fn serve(root: PinRoot, listen: SocketAddr, watches: Vec<Watch>) -> anyhow::Result<()> {
    // Reloading watched files loads programs; serving metrics alone needs
    // only read access to the pins.
    if !watches.is_empty() {
        crate::privilege::require("serve --watch", crate::privilege::LOAD)?;
    }
    // Signals first: from here on SIGTERM, SIGINT and SIGHUP never kill the
    // daemon with their default action.
    let mut stop = Stop::new()?;
    let hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;

    let scrape_errors = Counter::default();
    let reloads = ReloadMetrics::default();
    let mut registry = Registry::with_prefix("filterctl");
    reloads.register(&mut registry);
    let watched: Vec<String> = watches.iter().map(|w| w.iface.clone()).collect();
    registry.register_collector(Box::new(FilterCollector {
        root: root.clone(),
        scrape_errors: scrape_errors.clone(),
        watched: watched.clone(),
    }));
    let app = Arc::new(App {
        root: root.clone(),
        registry,
        scrape_errors,
    });
    let router = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats_json))
        .with_state(app)
        .merge(endpoints::router(root.clone(), watched));

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!("serving /metrics and /stats on http://{listen}");
    if !listen.ip().is_loopback() {
        warn!("{listen} is not a loopback address: whoever reaches it can read the counters");
    }
    if watches.is_empty() {
        info!("no rule file watched (--iface IF --rules FILE): SIGHUP does nothing");
    }
    for w in &watches {
        info!("watching {} for {}", w.rules.display(), w.iface);
    }
    let watcher = tokio::spawn(watch_rules(root, watches, hup, reloads));

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = drain_rx.await;
        })
        .into_future();
    let mut server = std::pin::pin!(server);
    let result = tokio::select! {
        r = &mut server => r.map_err(|e| anyhow!("the HTTP server stopped: {e}")),
        which = stop.recv() => {
            info!("{which}: stopping; the filter stays attached");
            let _ = drain_tx.send(());
            if tokio::time::timeout(DRAIN, &mut server).await.is_err() {
                warn!("connections still open after {DRAIN:?}: closing them");
            }
            Ok(())
        }
    };
    // A reload in progress runs on a blocking thread and finishes before
    // the process exits (the runtime waits for it): it is atomic either way.
    watcher.abort();
    result
}
