//! `filterctl serve`: a long-running daemon that
//!
//! - serves Prometheus metrics (OpenMetrics text, encoded by
//!   prometheus-client) on GET /metrics and the `stats --json` document on
//!   GET /stats, both read fresh from the pinned maps at every request;
//!   /healthz, /livez and /top (see `endpoints`);
//! - keeps each watched interface's rules in step with a rule file: the file
//!   is checked every second (its bytes, and the size and times of the list
//!   files it names) and reloaded when its content digest differs from what
//!   runs, and every watched file is reloaded on SIGHUP; reloads go through
//!   the same atomic `lifecycle::reload` and lockout guard as `filterctl
//!   reload`, so a broken file is logged (FILE:LINE:COLUMN) and not loaded;
//! - drives the BGP speaker of each watched file's `[upstream]` section
//!   (`upstream.rs`), withdrawing its routes when it stops;
//! - runs surge detection for each watched file with `[adaptive]` (see
//!   `adaptive.rs`): temporary blocks of a flooding UDP source port, added
//!   to the file's rules through the same atomic reload;
//! - enforces the FlowSpec routes its GoBGP speaker learned from its peers
//!   when the file has `[upstream.import]` (`import.rs`), as `flowspec-...`
//!   rules added through the same atomic reload;
//! - stops on SIGTERM or SIGINT, finishing a reload in progress and letting
//!   open connections finish for at most 5 s, and leaves the filter
//!   attached with all its pins.
//!
//! Limits, so that idle or slow clients cannot starve the scrapes or the
//! reloads (`http::Limits`): a request header must arrive within 5 s of the
//! connection (or of the previous response, on a kept-alive one), after
//! which the connection is closed; no connection lives longer than 30 s; at
//! most 64 connections are served at once, and the ones over that are
//! closed as soon as they are accepted, so that a scrape fails at once
//! rather than hangs. At start the soft open-file limit is raised to the
//! hard one, and the cap lowered when needed to leave 256 files for the
//! rest, reloads above all. When `accept` fails for want of files or
//! memory, the server pauses 100 ms between attempts and logs once per
//! burst; a reload that fails for want of files is retried at the next
//! check.

pub(crate) mod adaptive;
pub mod catalogue;
mod endpoints;
pub mod http;
pub mod import;
pub mod listen;
pub mod metrics;
pub mod upstream;
pub mod watch;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
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
    adaptive::{AdaptiveMetrics, watch_surges},
    catalogue::Kept,
    metrics::{FilterCollector, METRICS},
    upstream::{UpstreamMetrics, WITHDRAW_TIMEOUT, run_upstream},
    watch::{FileSets, ReloadMetrics, Watch, watch_rules},
};
use crate::{filter::observe::stats, state::PinRoot, sys};

/// Where `serve` listens unless told otherwise: loopback only.
/// Port 19419: the exporter range Prometheus allocates (9100-9999) is full
/// (9419 is the RabbitMQ exporter's), and the allocations that go on above
/// it start at 10000; see README.md.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:19419";

/// The Content-Type of what /metrics returns: prometheus-client's text
/// encoder writes OpenMetrics 1.0 (counters as `NAME_total`, a closing
/// `# EOF`).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    "filterctl serve: GET /metrics (OpenMetrics), GET /stats (the `filterctl stats --json` document), GET /top (`top --json`), GET /healthz (200 when every loaded or watched interface runs the filter), GET /livez (200 while serve answers)\n"
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

/// The metrics the daemon's own tasks keep.
struct DaemonMetrics {
    reloads: ReloadMetrics,
    upstream: UpstreamMetrics,
    adaptive: AdaptiveMetrics,
}

/// The HTTP routes, with every metric family registered.
fn router(root: &PinRoot, watches: &[Watch]) -> (Router, DaemonMetrics) {
    let scrape_errors = Counter::default();
    let mut registry = Registry::with_prefix(catalogue::PREFIX);
    let kept = Kept::register(&mut registry, METRICS);
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
    (
        router,
        DaemonMetrics {
            reloads: ReloadMetrics::new(&kept),
            upstream: UpstreamMetrics::new(&kept),
            adaptive: AdaptiveMetrics::new(&kept),
        },
    )
}

/// The routes as `serve` builds them, called without a socket: for the
/// cargo-fuzz target of serve's request handling (filter-user/fuzz/).
#[cfg(feature = "fuzzing")]
pub fn fuzzing_router(root: &PinRoot, watches: &[Watch]) -> Router {
    router(root, watches).0
}

/// `filterctl serve`: runs until SIGTERM or SIGINT, then returns Ok.
pub(crate) async fn serve(
    root: PinRoot,
    listen: SocketAddr,
    watches: Vec<Watch>,
) -> anyhow::Result<()> {
    // Reloading watched files loads programs; serving metrics alone needs
    // only read access to the pins.
    if !watches.is_empty() {
        crate::privilege::require("serve --watch", crate::privilege::LOAD)?;
    }
    // Signals first: from here on SIGTERM, SIGINT and SIGHUP never kill the
    // daemon with their default action.
    let mut stop = Stop::new()?;
    let hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;

    let (router, metrics) = router(&root, &watches);

    let limits = http::Limits::DEFAULT.within_files(open_file_limit());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!(
        "serving /metrics and /stats on http://{listen}, at most {} connections at once",
        limits.max_connections
    );
    if !listen.ip().is_loopback() {
        warn!("{listen} is not a loopback address: whoever reaches it can read the counters");
    }
    if watches.is_empty() {
        info!("no rule file watched (--iface IF --rules FILE): SIGHUP does nothing");
    }
    for w in &watches {
        info!("watching {} for {}", w.rules.display(), w.iface);
    }
    let (upstream_stop, stopped) = tokio::sync::watch::channel(false);
    let upstream = tokio::spawn(run_upstream(
        root.clone(),
        watches.clone(),
        metrics.upstream,
        stopped,
    ));
    let files = FileSets::default();
    let surges = tokio::spawn(watch_surges(
        root.clone(),
        watches.clone(),
        files.clone(),
        metrics.adaptive,
    ));
    let imports = tokio::spawn(import::watch_imports(
        root.clone(),
        watches.clone(),
        files.clone(),
    ));
    let watcher = tokio::spawn(watch_rules(root, watches, hup, metrics.reloads, files));

    let stopping = async move {
        let which = stop.recv().await;
        info!("{which}: stopping; the filter stays attached");
    };
    http::serve(listener, router, limits, stopping).await;
    // A reload in progress runs on a blocking thread and finishes before
    // the process exits (the runtime waits for it): it is atomic either way.
    watcher.abort();
    surges.abort();
    imports.abort();
    let _ = upstream_stop.send(true);
    if tokio::time::timeout(WITHDRAW_TIMEOUT, upstream)
        .await
        .is_err()
    {
        warn!("upstream routes not all withdrawn after {WITHDRAW_TIMEOUT:?}");
    }
    Ok(())
}

/// The open-file limit, raised to the hard one: idle clients are capped
/// well under it, so that reloads always have files to open.
fn open_file_limit() -> u64 {
    // aya probes the kernel's features once per process, on first use,
    // and keeps the answer: probed while out of file descriptors, every
    // later load would fail. Probe now, while there are descriptors.
    let _ = aya::features();
    match sys::raise_nofile_limit() {
        Ok(n) => {
            info!("open-file limit: {n}");
            n
        }
        Err(e @ sys::SysError::NoFileLimit { soft, .. }) if soft > 0 => {
            warn!("{e}: staying at {soft}");
            soft
        }
        Err(e) => {
            // The usual default: the cap then leaves room for reloads.
            warn!("{e}: assuming 1024");
            1024
        }
    }
}

/// The router called in-process (`oneshot`): no socket, no daemon, no
/// filter; what serve answers when there is none to read, or only a broken
/// one.
#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::{
        body::Body,
        http::{Method, Request},
    };
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::{catalogue::Source, *};

    /// A pin root of its own, removed when the test ends.
    struct Pins(PathBuf);

    impl Pins {
        fn new(name: &str) -> Pins {
            let dir =
                std::env::temp_dir().join(format!("flt-router-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Pins(dir)
        }

        fn root(&self) -> PinRoot {
            PinRoot::new(&self.0)
        }
    }

    impl Drop for Pins {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    struct Reply {
        status: StatusCode,
        content_type: String,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
        }
    }

    async fn call(router: &Router, method: Method, uri: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            content_type,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    fn watch(iface: &str) -> Watch {
        Watch {
            iface: iface.to_string(),
            rules: PathBuf::from("/nonexistent/rules.toml"),
        }
    }

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[tokio::test]
    async fn metrics_without_a_filter() {
        let pins = Pins::new("metrics");
        let (app, _) = router(&pins.root(), &[watch("flt-gone0")]);
        let m = call(&app, Method::GET, "/metrics").await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        assert_eq!(m.content_type, METRICS_CONTENT_TYPE);
        // Families from the table only; every scrape family, empty or not;
        // no kept family, since no task has written one yet.
        catalogue::check_exposition(METRICS, &m.body, false);
        for def in METRICS {
            let shown = m
                .body
                .contains(&format!("# TYPE {}_{} ", catalogue::PREFIX, def.name));
            let scraped = matches!(def.source, Source::Scrape(_));
            assert_eq!(shown, scraped, "{def:?} in\n{}", m.body);
        }
        // The watched interface has no pins: down, and a failed read.
        assert!(
            has_line(&m.body, r#"filterctl_up{interface="flt-gone0"} 0"#),
            "{}",
            m.body
        );
        assert!(
            has_line(&m.body, "filterctl_scrape_errors_total 1"),
            "{}",
            m.body
        );
        let again = call(&app, Method::GET, "/metrics").await;
        assert!(
            has_line(&again.body, "filterctl_scrape_errors_total 2"),
            "{}",
            again.body
        );
    }

    #[tokio::test]
    async fn healthz_without_a_filter() {
        let pins = Pins::new("healthz");
        let (app, _) = router(&pins.root(), &[]);
        let h = call(&app, Method::GET, "/healthz").await;
        assert_eq!(
            h.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "no filter is not healthy"
        );
        assert!(
            h.content_type.starts_with("application/json"),
            "{}",
            h.content_type
        );
        let doc = h.json();
        assert_eq!(doc["schema_version"], crate::JSON_SCHEMA_VERSION, "{doc}");
        assert_eq!(doc["healthy"], false, "{doc}");
        assert_eq!(doc["interfaces"], serde_json::json!([]), "{doc}");

        let (app, _) = router(&pins.root(), &[watch("flt-gone0")]);
        let doc = call(&app, Method::GET, "/healthz").await.json();
        let iface = &doc["interfaces"][0];
        assert_eq!(
            (&iface["interface"], &iface["running"], &iface["generation"]),
            (&Value::from("flt-gone0"), &Value::from(false), &Value::Null),
            "{doc}"
        );
        assert!(iface["error"].is_string(), "{doc}");
        assert_eq!(iface["unloaded_on_purpose"], false, "{doc}");

        // An operator's `unload` left it off: still not healthy, and why.
        crate::state::unloaded::mark(&pins.root(), "flt-gone0").unwrap();
        let h = call(&app, Method::GET, "/healthz").await;
        assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.body);
        let iface = &h.json()["interfaces"][0];
        assert_eq!(iface["unloaded_on_purpose"], true, "{}", h.body);
        assert!(
            iface["error"].as_str().unwrap().contains("on purpose"),
            "{}",
            h.body
        );
        let live = call(&app, Method::GET, "/livez").await;
        assert_eq!(live.status, StatusCode::OK, "serve itself is alive");
    }

    #[tokio::test]
    async fn stats_and_top_without_a_filter() {
        let pins = Pins::new("stats");
        let (app, _) = router(&pins.root(), &[]);
        let s = call(&app, Method::GET, "/stats").await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.body);
        assert_eq!(s.json()["interfaces"], serde_json::json!([]), "{}", s.body);
        let t = call(&app, Method::GET, "/top?n=3").await;
        assert_eq!(t.status, StatusCode::OK, "{}", t.body);
        assert_eq!(t.json()["interfaces"], serde_json::json!([]), "{}", t.body);
        let bad = call(&app, Method::GET, "/top?n=many").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("n=\"many\""), "{}", bad.body);
    }

    /// An interface folder without its pins (a filter half removed, a
    /// stray mkdir): every endpoint says so, and the failed reads count.
    #[tokio::test]
    async fn broken_pins_are_reported_and_counted() {
        let pins = Pins::new("broken");
        std::fs::create_dir(pins.0.join("flt-broken0")).unwrap();
        let (app, _) = router(&pins.root(), &[]);
        let s = call(&app, Method::GET, "/stats").await;
        assert_eq!(s.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", s.body);
        assert!(s.body.contains("flt-broken0"), "{}", s.body);
        let t = call(&app, Method::GET, "/top").await;
        assert_eq!(t.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", t.body);
        let h = call(&app, Method::GET, "/healthz").await;
        assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.body);
        assert_eq!(h.json()["interfaces"][0]["running"], false, "{}", h.body);
        let m = call(&app, Method::GET, "/metrics").await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        assert!(
            has_line(&m.body, r#"filterctl_up{interface="flt-broken0"} 0"#),
            "{}",
            m.body
        );
        // The failed /stats and this scrape's own read.
        assert!(
            has_line(&m.body, "filterctl_scrape_errors_total 2"),
            "{}",
            m.body
        );
    }

    #[tokio::test]
    async fn routes_and_methods() {
        let pins = Pins::new("routes");
        let (app, _) = router(&pins.root(), &[]);
        let index = call(&app, Method::GET, "/").await;
        assert_eq!(index.status, StatusCode::OK);
        for path in ["/metrics", "/stats", "/top", "/healthz", "/livez"] {
            assert!(index.body.contains(path), "{path} in {}", index.body);
        }
        assert_eq!(
            call(&app, Method::GET, "/nope").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&app, Method::GET, "/metrics/").await.status,
            StatusCode::NOT_FOUND
        );
        for path in ["/", "/metrics", "/stats", "/top", "/healthz", "/livez"] {
            for method in [Method::POST, Method::PUT, Method::DELETE] {
                let r = call(&app, method.clone(), path).await;
                assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            }
            // axum answers HEAD wherever it answers GET, without a body.
            let head = call(&app, Method::HEAD, path).await;
            assert!(head.body.is_empty(), "HEAD {path}: {}", head.body);
        }
    }

    #[test]
    fn the_tasks_find_their_families_in_the_table() {
        // The tasks fetch their kept families by name: a name missing from
        // the table panics here rather than in a daemon.
        let pins = Pins::new("kept");
        let _ = router(&pins.root(), &[watch("flt-gone0")]);
    }
}
