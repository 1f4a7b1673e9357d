//! `filterctl serve`: a long-running daemon that
//!
//! - serves Prometheus metrics (OpenMetrics text, encoded by
//!   prometheus-client) on GET /metrics and the `stats --json` document on
//!   GET /stats, both read fresh from the pinned maps at every request;
//! - keeps each watched interface's rules in step with a rule file: the file
//!   is checked every second (its bytes, and the size and times of the list
//!   files it names) and reloaded when its content digest differs from what
//!   runs, and every watched file is reloaded on SIGHUP; reloads go through
//!   the same atomic `loader::reload` and lockout guard as `filterctl
//!   reload`, so a broken file is logged (FILE:LINE:COLUMN) and not loaded;
//! - stops on SIGTERM or SIGINT, finishing a reload in progress, and leaves
//!   the filter attached with all its pins.

use std::{
    fmt,
    future::IntoFuture as _,
    net::SocketAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse as _, Response},
    routing::get,
};
use log::{debug, error, info, warn};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
    },
    registry::Registry,
};
use sha2::{Digest as _, Sha256};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{loader, lockout, pins::PinRoot, rules, stats, status};

/// Where `serve` listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9419";

/// The Content-Type of what /metrics returns: prometheus-client's text
/// encoder writes OpenMetrics 1.0 (counters as `NAME_total`, a closing
/// `# EOF`).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How often the watched rule files are checked.
const POLL: Duration = Duration::from_secs(1);

/// How long open connections get to finish once SIGTERM arrives.
const DRAIN: Duration = Duration::from_secs(5);

/// An interface whose rules follow a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub iface: String,
    pub rules: PathBuf,
}

/// Parses `IF=PATH` (the `--watch` form).
pub fn parse_watch(s: &str) -> Result<Watch, String> {
    match s.split_once('=') {
        Some((iface, path)) if !iface.is_empty() && !path.is_empty() => Ok(Watch {
            iface: iface.to_string(),
            rules: PathBuf::from(path),
        }),
        _ => Err(format!(
            "{s:?}: write IFACE=RULES_FILE, e.g. eth0=/etc/filterctl/rules.toml"
        )),
    }
}

/// The watched pairs from `--iface IF --rules PATH` pairs (in the order
/// given) and `--watch IF=PATH`; each interface at most once.
pub fn watches(
    ifaces: Vec<String>,
    rules: Vec<PathBuf>,
    more: Vec<Watch>,
) -> anyhow::Result<Vec<Watch>> {
    if ifaces.len() != rules.len() {
        bail!(
            "serve takes --iface and --rules in pairs (--iface IF --rules FILE, repeatable): got {} --iface and {} --rules",
            ifaces.len(),
            rules.len()
        );
    }
    let all: Vec<Watch> = ifaces
        .into_iter()
        .zip(rules)
        .map(|(iface, rules)| Watch { iface, rules })
        .chain(more)
        .collect();
    for (i, w) in all.iter().enumerate() {
        if all[..i].iter().any(|o| o.iface == w.iface) {
            bail!("{} is watched twice: one rule file per interface", w.iface);
        }
    }
    Ok(all)
}

/// What the metrics show of one interface, read at one scrape.
#[derive(Debug)]
struct Reading {
    stats: stats::InterfaceStats,
    generation: u32,
    digest: String,
}

/// Reads an interface's counters and the generation that runs. A reload
/// landing in the middle removes the generation being read: read again.
fn read_interface(root: &PinRoot, iface: &str) -> anyhow::Result<Reading> {
    let mut tries = 0;
    loop {
        let once = status::status(root, iface).and_then(|s| {
            Ok(Reading {
                stats: stats::read_interface(root, iface)?,
                generation: s.generation,
                digest: s.rules_digest,
            })
        });
        match once {
            Err(_) if tries < 2 => tries += 1,
            other => return other,
        }
    }
}

fn counter_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes every metric family of `readings` (prefixed `filterctl_` by the
/// registry).
fn encode_readings(
    enc: &mut DescriptorEncoder,
    readings: &[Reading],
    scrape_errors: u64,
) -> fmt::Result {
    let reasons = || {
        readings.iter().flat_map(|r| {
            r.stats.reasons.iter().map(move |(reason, s)| {
                (
                    [
                        ("interface", r.stats.interface.as_str()),
                        ("reason", *reason),
                        ("verdict", s.verdict),
                    ],
                    s,
                )
            })
        })
    };
    let rules = || {
        readings.iter().flat_map(|r| {
            r.stats.rules.iter().map(move |s| {
                (
                    [
                        ("interface", r.stats.interface.as_str()),
                        ("rule", s.name.as_str()),
                        ("action", s.action),
                    ],
                    s,
                )
            })
        })
    };
    counter_family(
        enc,
        "packets",
        "Frames the filter saw since load, by interface, reason and the reason's verdict in enforce mode.",
        reasons().map(|(l, s)| (l, s.packets)),
    )?;
    counter_family(
        enc,
        "bytes",
        "Bytes of the frames the filter saw since load (whole frames, Ethernet header included), by interface, reason and verdict.",
        reasons().map(|(l, s)| (l, s.bytes)),
    )?;
    counter_family(
        enc,
        "rule_packets",
        "Frames each rule of the running rule set matched since it was loaded.",
        rules().map(|(l, s)| (l, s.packets)),
    )?;
    counter_family(
        enc,
        "rule_bytes",
        "Bytes of the frames each rule of the running rule set matched since it was loaded.",
        rules().map(|(l, s)| (l, s.bytes)),
    )?;
    counter_family(
        enc,
        "monitor_passed_packets",
        "Frames a drop reason decided that passed because the filter was in monitor mode.",
        readings.iter().map(|r| {
            (
                [("interface", r.stats.interface.as_str())],
                r.stats.monitor_passed.packets,
            )
        }),
    )?;
    let mut info = enc.encode_descriptor(
        "rules",
        "The rule set each interface runs: SHA-256 of its files and program generation.",
        None,
        MetricType::Info,
    )?;
    for r in readings {
        let generation = r.generation.to_string();
        info.encode_info(&[
            ("interface", r.stats.interface.as_str()),
            ("digest", r.digest.as_str()),
            ("generation", generation.as_str()),
        ])?;
    }
    ConstCounter::new(scrape_errors).encode(enc.encode_descriptor(
        "scrape_errors",
        "Reads of the pinned maps that failed (a /metrics interface or a /stats request).",
        None,
        MetricType::Counter,
    )?)
}

/// Reads the pinned maps at every scrape: the values are the kernel's own
/// counters, exposed as they are, never accumulated here.
#[derive(Debug)]
struct FilterCollector {
    root: PinRoot,
    scrape_errors: Counter,
}

impl Collector for FilterCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let mut readings = Vec::new();
        match self.root.interfaces() {
            Ok(ifaces) => {
                for iface in ifaces {
                    match read_interface(&self.root, &iface) {
                        Ok(r) => readings.push(r),
                        Err(e) => {
                            self.scrape_errors.inc();
                            error!("{iface}: cannot read the counters: {e:#}");
                        }
                    }
                }
            }
            Err(e) => {
                self.scrape_errors.inc();
                error!("cannot list the loaded interfaces: {e:#}");
            }
        }
        encode_readings(&mut enc, &readings, self.scrape_errors.get())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    interface: String,
    /// ok, invalid (the file did not parse or the lockout guard refused
    /// it) or failed (the kernel or the pins refused it).
    result: String,
}

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
    "filterctl serve: GET /metrics (OpenMetrics), GET /stats (the `filterctl stats --json` document)\n"
}

/// What the poll compares: the rule file's bytes and, for each list file it
/// names, its identity, size and times. Cheap: the rule file is only parsed
/// when this changes.
#[derive(Default)]
struct Fingerprint {
    file_hash: Option<[u8; 32]>,
    lists: Vec<PathBuf>,
    value: Option<[u8; 32]>,
}

impl Fingerprint {
    /// Looks at the files again; true when anything changed since the last
    /// look (or this is the first).
    fn changed(&mut self, path: &Path) -> bool {
        let mut h = Sha256::new();
        match std::fs::read(path) {
            Ok(bytes) => {
                let file_hash: [u8; 32] = Sha256::digest(&bytes).into();
                if self.file_hash != Some(file_hash) {
                    self.file_hash = Some(file_hash);
                    self.lists = list_files(&bytes, path.parent().unwrap_or(Path::new(".")));
                }
                h.update(file_hash);
            }
            Err(e) => {
                self.file_hash = None;
                self.lists.clear();
                h.update(format!("unreadable: {:?}", e.kind()));
            }
        }
        for l in &self.lists {
            match std::fs::metadata(l) {
                Ok(m) => h.update(format!(
                    "{}:{}:{}:{}.{}:{}.{}",
                    m.dev(),
                    m.ino(),
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec()
                )),
                Err(e) => h.update(format!("missing: {:?}", e.kind())),
            }
            h.update([0]);
        }
        let value: [u8; 32] = h.finalize().into();
        let changed = self.value != Some(value);
        self.value = Some(value);
        changed
    }
}

/// The list files (`allow_files`, `deny_files`) a rule file names, relative
/// to its folder as the rule parser reads them; none when it is not TOML.
fn list_files(bytes: &[u8], base: &Path) -> Vec<PathBuf> {
    let Ok(table) = std::str::from_utf8(bytes)
        .map_err(|_| ())
        .and_then(|t| toml::from_str::<toml::Table>(t).map_err(|_| ()))
    else {
        return Vec::new();
    };
    ["allow_files", "deny_files"]
        .iter()
        .filter_map(|k| table.get(*k)?.as_array())
        .flatten()
        .filter_map(|v| v.as_str())
        .map(|f| base.join(f))
        .collect()
}

/// What an attempt to bring an interface in step with its file did.
enum Outcome {
    /// The file's digest is what runs already.
    Unchanged,
    Reloaded {
        digest: String,
    },
    /// Parse error or refused by the lockout guard: nothing loaded.
    Invalid,
    /// The reload itself failed: the previous rules keep enforcing.
    Failed,
}

/// Reloads `w` with its file unless the file's digest is `running` (or
/// always, when `force`); logs what it did. Blocking: run it off the
/// runtime.
fn apply(root: &PinRoot, w: &Watch, running: Option<&str>, force: bool) -> Outcome {
    let (iface, file) = (w.iface.as_str(), w.rules.display());
    let set = match rules::load_file(&w.rules) {
        Ok(s) => s,
        Err(e) => {
            error!("{iface}: {file} not loaded, the running rules stay: {e:#}");
            return Outcome::Invalid;
        }
    };
    let digest = set.digest_hex();
    if !force && running == Some(digest.as_str()) {
        debug!("{iface}: {file} changed on disk but its content is what runs: nothing to do");
        return Outcome::Unchanged;
    }
    if let Err(e) = lockout::check(&set, &lockout::protected_addresses()) {
        error!("{iface}: {file} not loaded, the running rules stay: {e}");
        return Outcome::Invalid;
    }
    match loader::reload(root, iface, &set, &w.rules) {
        Ok(generation) => {
            info!(
                "{iface}: reloaded {file}: generation {generation}, {} rules, digest {}",
                set.rules.len(),
                &digest[..16]
            );
            Outcome::Reloaded { digest }
        }
        Err(e) => {
            error!("{iface}: reload of {file} failed, the previous rules keep enforcing: {e:#}");
            Outcome::Failed
        }
    }
}

struct Watched {
    watch: Watch,
    /// Digest of the rule set that runs, as far as this daemon knows.
    running: Option<String>,
    seen: Fingerprint,
}

/// Checks the watched files every second and reloads on change, and all
/// of them on SIGHUP. Runs until aborted.
async fn watch_rules(
    root: PinRoot,
    watches: Vec<Watch>,
    mut hup: Signal,
    reloads: Family<ReloadLabels, Counter>,
) {
    let mut watched: Vec<Watched> = watches
        .into_iter()
        .map(|watch| {
            let running = match status::status(&root, &watch.iface) {
                Ok(s) => Some(s.rules_digest),
                Err(e) => {
                    warn!(
                        "{}: cannot read which rules run ({e:#}): the first check reloads {}",
                        watch.iface,
                        watch.rules.display()
                    );
                    None
                }
            };
            for result in ["ok", "invalid", "failed"] {
                // Every series from the start, at 0, so that rates work.
                drop(reloads.get_or_create(&ReloadLabels {
                    interface: watch.iface.clone(),
                    result: result.to_string(),
                }));
            }
            Watched {
                watch,
                running,
                seen: Fingerprint::default(),
            }
        })
        .collect();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            _ = tick.tick() => false,
            _ = hup.recv() => {
                info!("SIGHUP: reloading every watched rule file");
                true
            }
        };
        for w in &mut watched {
            let first = w.seen.value.is_none();
            if !w.seen.changed(&w.watch.rules) && !force {
                continue;
            }
            if !force && !first {
                info!("{}: {} changed", w.watch.iface, w.watch.rules.display());
            }
            let (root, watch, running) = (root.clone(), w.watch.clone(), w.running.clone());
            let outcome = tokio::task::spawn_blocking(move || {
                apply(&root, &watch, running.as_deref(), force)
            })
            .await
            .unwrap_or_else(|e| {
                error!("{}: the reload task failed: {e}", w.watch.iface);
                Outcome::Failed
            });
            let result = match outcome {
                Outcome::Unchanged => continue,
                Outcome::Reloaded { digest } => {
                    w.running = Some(digest);
                    "ok"
                }
                Outcome::Invalid => "invalid",
                Outcome::Failed => "failed",
            };
            reloads
                .get_or_create(&ReloadLabels {
                    interface: w.watch.iface.clone(),
                    result: result.to_string(),
                })
                .inc();
        }
    }
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
    loader::require_root("serve")?;
    // Signals first: from here on SIGTERM, SIGINT and SIGHUP never kill the
    // daemon with their default action.
    let mut stop = Stop::new()?;
    let hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;

    let scrape_errors = Counter::default();
    let reloads = Family::<ReloadLabels, Counter>::default();
    let mut registry = Registry::with_prefix("filterctl");
    registry.register(
        "reloads",
        // The registry ends registered help texts with a period.
        "Reloads of watched rule files by this daemon, by interface and result (ok, invalid, failed)",
        reloads.clone(),
    );
    registry.register_collector(Box::new(FilterCollector {
        root: root.clone(),
        scrape_errors: scrape_errors.clone(),
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
        .with_state(app);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_pairs() {
        let w = parse_watch("eth0=/etc/f/rules.toml").unwrap();
        assert_eq!(
            (w.iface.as_str(), w.rules.to_str().unwrap()),
            ("eth0", "/etc/f/rules.toml")
        );
        for bad in ["eth0", "=x", "eth0="] {
            assert!(parse_watch(bad).unwrap_err().contains("IFACE=RULES_FILE"));
        }
        let all = watches(
            vec!["a".into(), "b".into()],
            vec!["ra".into(), "rb".into()],
            vec![parse_watch("c=rc").unwrap()],
        )
        .unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|w| format!("{}={}", w.iface, w.rules.display()))
            .collect();
        assert_eq!(names, ["a=ra", "b=rb", "c=rc"]);
        let err = watches(vec!["a".into()], vec![], vec![]).unwrap_err();
        assert!(err.to_string().contains("in pairs"), "{err}");
        let err = watches(
            vec!["a".into()],
            vec!["x".into()],
            vec![parse_watch("a=y").unwrap()],
        )
        .unwrap_err();
        assert!(err.to_string().contains("watched twice"), "{err}");
    }

    #[derive(Debug)]
    struct Fixed(Vec<Reading>);

    impl Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            encode_readings(&mut enc, &self.0, 2)
        }
    }

    #[test]
    fn openmetrics_text() {
        let mut reasons = std::collections::BTreeMap::new();
        reasons.insert(
            "rule_drop",
            stats::ReasonStats {
                verdict: "drop",
                packets: 30,
                bytes: 15480,
            },
        );
        let t = stats::Totals::default();
        let reading = Reading {
            stats: stats::InterfaceStats {
                interface: "eth0".into(),
                mode: "enforce",
                rules_digest: "ab".repeat(32),
                seen: t,
                dropped: t,
                passed: t,
                monitor_passed: stats::Totals {
                    packets: 7,
                    bytes: 70,
                },
                reasons,
                rules: vec![stats::RuleStats {
                    name: "ntp-reflection".into(),
                    action: "drop",
                    packets: 30,
                    bytes: 15480,
                }],
            },
            generation: 3,
            digest: "ab".repeat(32),
        };
        let mut registry = Registry::with_prefix("filterctl");
        registry.register_collector(Box::new(Fixed(vec![reading])));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE filterctl_packets counter",
            r#"filterctl_packets_total{interface="eth0",reason="rule_drop",verdict="drop"} 30"#,
            r#"filterctl_bytes_total{interface="eth0",reason="rule_drop",verdict="drop"} 15480"#,
            r#"filterctl_rule_packets_total{interface="eth0",rule="ntp-reflection",action="drop"} 30"#,
            r#"filterctl_rule_bytes_total{interface="eth0",rule="ntp-reflection",action="drop"} 15480"#,
            r#"filterctl_monitor_passed_packets_total{interface="eth0"} 7"#,
            "# TYPE filterctl_rules info",
            &format!(
                r#"filterctl_rules_info{{interface="eth0",digest="{}",generation="3"}} 1"#,
                "ab".repeat(32)
            ),
            "filterctl_scrape_errors_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn fingerprint_follows_bytes_and_list_files() {
        let dir = std::env::temp_dir().join(format!("flt-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules.toml");
        let list = dir.join("deny.txt");
        std::fs::write(&list, "203.0.113.0/24\n").unwrap();
        std::fs::write(&file, "deny_files = [\"deny.txt\"]\n").unwrap();
        let mut fp = Fingerprint::default();
        assert!(fp.changed(&file), "the first look is a change");
        assert!(!fp.changed(&file));
        std::fs::write(&file, "deny_files = [\"deny.txt\"] \n").unwrap();
        assert!(fp.changed(&file), "new bytes");
        assert!(!fp.changed(&file));
        std::fs::write(&list, "203.0.113.128/25\n").unwrap();
        assert!(fp.changed(&file), "the list file was written");
        std::fs::remove_file(&file).unwrap();
        assert!(fp.changed(&file), "the file is gone");
        assert!(!fp.changed(&file));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
