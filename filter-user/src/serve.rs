//! `filterctl serve`: a long-running daemon that serves Prometheus metrics on
//! /metrics and the `stats --json` document on /stats, reloads watched rule
//! files when they change or on SIGHUP (atomically, through the same reload
//! as `filterctl reload`), and on SIGTERM stops serving without detaching
//! the filter.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, anyhow};
use axum::{
    Router,
    http::{StatusCode, header},
    response::{IntoResponse as _, Response},
    routing::get,
};
use log::{error, info, warn};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::signal::unix::{SignalKind, signal};

use crate::{loader, lockout, pins::PinRoot, rules, stats};

/// An interface whose rules follow a file.
#[derive(Clone, Debug)]
pub struct Watch {
    pub iface: String,
    pub rules: PathBuf,
}

/// Parses `IF=PATH`.
pub fn parse_watch(s: &str) -> Result<Watch, String> {
    let (iface, path) = s.split_once('=').ok_or_else(|| {
        format!("{s:?}: write IFACE=RULES_FILE, e.g. eth0=/etc/filter/rules.toml")
    })?;
    Ok(Watch {
        iface: iface.to_string(),
        rules: PathBuf::from(path),
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    interface: String,
    reason: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    interface: String,
    rule: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RulesetLabels {
    interface: String,
    digest: String,
}

/// The Prometheus text for a snapshot. Counters are the kernel's own
/// totals since load, written as they are at scrape time.
pub fn metrics_text(snap: &stats::Snapshot) -> anyhow::Result<String> {
    let mut registry = Registry::with_prefix("filterctl");
    let packets = Family::<ReasonLabels, Counter>::default();
    let bytes = Family::<ReasonLabels, Counter>::default();
    let rule_packets = Family::<RuleLabels, Counter>::default();
    let rule_bytes = Family::<RuleLabels, Counter>::default();
    let monitor = Family::<InterfaceLabels, Counter>::default();
    let ruleset = Family::<RulesetLabels, Gauge>::default();
    for i in &snap.interfaces {
        for (reason, r) in &i.reasons {
            let l = ReasonLabels {
                interface: i.interface.clone(),
                reason: reason.to_string(),
                verdict: r.verdict.to_string(),
            };
            packets.get_or_create(&l).inc_by(r.packets);
            bytes.get_or_create(&l).inc_by(r.bytes);
        }
        for r in &i.rules {
            let l = RuleLabels {
                interface: i.interface.clone(),
                rule: r.name.clone(),
                action: r.action.to_string(),
            };
            rule_packets.get_or_create(&l).inc_by(r.packets);
            rule_bytes.get_or_create(&l).inc_by(r.bytes);
        }
        monitor
            .get_or_create(&InterfaceLabels {
                interface: i.interface.clone(),
            })
            .inc_by(i.monitor_passed.packets);
        ruleset
            .get_or_create(&RulesetLabels {
                interface: i.interface.clone(),
                digest: i.rules_digest.clone(),
            })
            .set(1);
    }
    registry.register(
        "packets",
        "Frames by interface, reason and verdict",
        packets,
    );
    registry.register(
        "bytes",
        "Bytes of frames by interface, reason and verdict",
        bytes,
    );
    registry.register("rule_packets", "Frames each rule matched", rule_packets);
    registry.register(
        "rule_bytes",
        "Bytes of frames each rule matched",
        rule_bytes,
    );
    registry.register(
        "monitor_passed_packets",
        "Frames passed only because the filter is in monitor mode",
        monitor,
    );
    registry.register(
        "rules_info",
        "The rule set each interface runs (by digest)",
        ruleset,
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .map_err(|e| anyhow!("cannot encode metrics: {e}"))?;
    Ok(out)
}

/// The counters now, or the error response to send.
fn snapshot(root: &PinRoot) -> Result<stats::Snapshot, Box<Response>> {
    stats::snapshot(root, None).map_err(|e| {
        error!("cannot read counters: {e:#}");
        Box::new((StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response())
    })
}

/// Reloads `w` if its file's content differs from `applied` (or always when
/// `force`); returns the digest now applied, or the failed one so that a
/// broken file is reported once, not every second.
fn reload_if_changed(root: &PinRoot, w: &Watch, applied: &str, force: bool) -> String {
    let set = match rules::load_file(&w.rules) {
        Ok(s) => s,
        Err(e) => {
            let failed = format!("unreadable {e}");
            if failed != applied {
                warn!(
                    "{}: not reloading, the rule file is invalid: {e:#}",
                    w.iface
                );
            }
            return failed;
        }
    };
    let digest = set.digest_hex();
    if digest == applied && !force {
        return digest;
    }
    if let Err(e) = lockout::check(&set, &lockout::protected_addresses()) {
        warn!("{}: not reloading {}: {e}", w.iface, w.rules.display());
        return digest;
    }
    match loader::reload(root, &w.iface, &set, &w.rules) {
        Ok(generation) => info!(
            "{}: reloaded {} (generation {generation}, digest {})",
            w.iface,
            w.rules.display(),
            &digest[..16]
        ),
        Err(e) => error!(
            "{}: reload of {} failed, the previous rules keep enforcing: {e:#}",
            w.iface,
            w.rules.display()
        ),
    }
    digest
}

/// Watches the rule files: a reload when content changes (checked every
/// second) or on SIGHUP.
async fn watch_rules(root: PinRoot, watches: Vec<Watch>) -> anyhow::Result<()> {
    let mut applied: Vec<String> = watches
        .iter()
        .map(|w| match crate::status::status(&root, &w.iface) {
            Ok(s) => s.rules_digest,
            Err(e) => {
                warn!(
                    "{}: cannot read what runs ({e:#}): the first check reloads it",
                    w.iface
                );
                String::new()
            }
        })
        .collect();
    let mut hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let force = tokio::select! {
            _ = tick.tick() => false,
            _ = hup.recv() => {
                info!("SIGHUP: reloading every watched rule file");
                true
            }
        };
        for (w, last) in watches.iter().zip(applied.iter_mut()) {
            *last = reload_if_changed(&root, w, last, force);
        }
    }
}

async fn shutdown() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping; the filter stays attached"),
        _ = int.recv() => info!("SIGINT: stopping; the filter stays attached"),
    }
}

pub async fn serve(root: PinRoot, listen: SocketAddr, watches: Vec<Watch>) -> anyhow::Result<()> {
    loader::require_root("serve")?;
    let metrics_root = root.clone();
    let stats_root = root.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let root = metrics_root.clone();
                async move {
                    let snap = match snapshot(&root) {
                        Ok(s) => s,
                        Err(r) => return *r,
                    };
                    match metrics_text(&snap) {
                        Ok(text) => (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/stats",
            get(move || {
                let root = stats_root.clone();
                async move {
                    match snapshot(&root) {
                        Ok(s) => axum::Json(s).into_response(),
                        Err(r) => *r,
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!("serving /metrics and /stats on http://{listen}");
    for w in &watches {
        info!("watching {} for {}", w.rules.display(), w.iface);
    }
    let watcher = tokio::spawn(watch_rules(root, watches));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .context("HTTP server failed")?;
    watcher.abort();
    Ok(())
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
        assert!(
            parse_watch("eth0")
                .unwrap_err()
                .contains("IFACE=RULES_FILE")
        );
    }
}
