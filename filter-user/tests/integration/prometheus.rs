//! The dashboard and the alerts against a real Prometheus (Debian's
//! package): it scrapes `filterctl serve` on the victim's loopback every
//! second while reflection, a flooding source and benign traffic flow
//! through the filter, and evaluates its alert rules; then every dashboard
//! query and every alert expression is run through Prometheus's HTTP API:
//! no errors, and data for every dashboard panel. /healthz and /top are
//! checked on the way, and a rule file broken then restored raises then
//! clears FilterctlReloadFailed. Needs root.

use crate::common;

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use filter_testkit::{
    frames::ntp_monlist_reply,
    net::{TestNet, VICTIM_V4, send_udp},
};
use filterctl::serve::metrics::METRICS;
use serde_json::Value;

use common::{
    cli::{TempDir, command, run},
    daemon::{Daemon, free_port, get, wait_until},
};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// Rules under which the test's flood is limited.
fn rules(pps: u32) -> String {
    format!(
        r#"mode = "enforce"
[per_source]
pps = {pps}
[[rule]]
name = "ntp-reflection"
protocol = "udp"
src_port = 123
action = "drop"
[[rule]]
name = "dns"
protocol = "udp"
dst_port = 53
action = "pass"
"#
    )
}

fn spawn(net: &TestNet, name: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} in {}: {e}", net.victim_ns));
    Daemon { name, child, log }
}

/// Prometheus scraping `target` every second and evaluating alerts.yml.
fn prometheus(net: &TestNet, dir: &Path, target: u16, port: u16) -> Daemon {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{DEPLOY}/prometheus/alerts.yml]\n\
             scrape_configs:\n  - job_name: filterctl\n    static_configs:\n      \
             - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let mut cmd = TestNet::command_in(&net.victim_ns, "prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    spawn(net, "prometheus", &mut cmd, dir.join("prometheus.log"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query's result vector; panics with Prometheus's error.
fn query(net: &TestNet, port: u16, expr: &str) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}", percent_encode(expr));
    let reply = get(net, port, &path).expect("Prometheus answers");
    let v: Value = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("{expr}: not JSON ({e}): {}", reply.body));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// A dashboard query as Grafana would send it with every host and
/// interface selected.
fn grafana_to_promql(expr: &str) -> String {
    let expr = expr
        .replace("$instance", ".*")
        .replace("$interface", ".*")
        .replace("$__rate_interval", "10s");
    // Template variable queries: label_values(QUERY, LABEL) asks QUERY.
    match expr.strip_prefix("label_values(") {
        Some(rest) => rest[..rest.rfind(',').unwrap()].to_string(),
        None => expr,
    }
}

/// Every query of the dashboard: (where, PromQL).
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{DEPLOY}/grafana/dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let mut out = Vec::new();
    for var in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            out.push((format!("variable {}", var["name"]), grafana_to_promql(q)));
        }
    }
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            out.push((
                format!("panel {} {}", panel["title"], t["refId"]),
                grafana_to_promql(expr),
            ));
        }
    }
    assert!(out.len() > 10, "{out:?}");
    out
}

fn alert_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{DEPLOY}/prometheus/alerts.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("alerts.yml is YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push((
                rule["alert"].as_str().unwrap().to_string(),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The `filterctl_*` names a PromQL expression asks for.
fn metric_names(expr: &str) -> Vec<&str> {
    expr.match_indices("filterctl_")
        .map(|(at, _)| {
            let rest = &expr[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Every series the dashboard and the alerts ask for is one serve's metric
/// table declares: a renamed metric fails here rather than leave a panel
/// empty or an alert silent. Needs no root.
#[test]
fn dashboard_and_alerts_ask_only_for_declared_metrics() {
    let declared: Vec<String> = METRICS.iter().map(|d| d.sample_name()).collect();
    let all: Vec<_> = dashboard_queries()
        .into_iter()
        .chain(alert_expressions())
        .collect();
    let mut asked = 0;
    for (place, expr) in &all {
        for name in metric_names(expr) {
            asked += 1;
            assert!(
                declared.iter().any(|d| d == name),
                "{place}: {name} is not a series of serve's metric table (METRICS in filter-user/src/serve/metrics.rs): {expr}"
            );
        }
    }
    assert!(
        asked >= all.len(),
        "{asked} names in {} expressions",
        all.len()
    );
}

/// Reflection, a flood from one source and DNS, in bursts until `stop`.
fn traffic(ns: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let to = |port| SocketAddr::new(IpAddr::V4(VICTIM_V4), port);
        let from = |host, port| SocketAddr::new(Ipv4Addr::new(198, 51, 100, host).into(), port);
        let monlist = ntp_monlist_reply();
        while !stop.load(Ordering::Relaxed) {
            TestNet::in_ns(&ns, || -> anyhow::Result<()> {
                send_udp(from(10, 123), to(9000), &monlist, 20)?;
                send_udp(from(11, 5000), to(9001), b"flood", 200)?;
                send_udp(from(12, 5353), to(53), b"query", 5)
            })
            .unwrap()
            .expect("send traffic");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    })
}

/// Stops the traffic on every exit path.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Waits until Prometheus has data for every query of `ready`.
fn wait_for_data(net: &TestNet, prom_port: u16, ready: &[&str]) {
    let mut missing = Vec::new();
    let t0 = std::time::Instant::now();
    while !(get(net, prom_port, "/-/ready").is_some_and(|r| r.status == 200) && {
        missing = ready
            .iter()
            .filter(|q| query(net, prom_port, q).is_empty())
            .collect();
        missing.is_empty()
    }) {
        assert!(
            t0.elapsed().as_secs() < 60,
            "after 60 s Prometheus still has no data for {missing:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Every dashboard query has data; every alert expression evaluates, and
/// Prometheus's own evaluation of the alert rules reports no error.
fn check_queries(net: &TestNet, prom_port: u16) {
    for (place, expr) in dashboard_queries() {
        let result = query(net, prom_port, &expr);
        assert!(!result.is_empty(), "{place}: no data for {expr}");
    }
    for (alert, expr) in alert_expressions() {
        // Whether they fire does not matter here (promtool's unit tests
        // cover that): they must evaluate.
        let _ = (alert, query(net, prom_port, &expr));
    }
    wait_until("every alert rule to be evaluated", 30, || {
        let reply = get(net, prom_port, "/api/v1/rules").expect("rules API");
        let v: Value = serde_json::from_str(&reply.body).unwrap();
        let rules: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        for r in &rules {
            assert_ne!(r["health"], "err", "alert rule fails: {r}");
        }
        rules.len() == alert_expressions().len() && rules.iter().all(|r| r["health"] == "ok")
    });
}

/// /healthz healthy, /top naming the flooding source.
fn check_endpoints(net: &TestNet, port: u16) {
    let health = get(net, port, "/healthz").expect("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    let h: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(
        (h["schema_version"].as_u64(), h["healthy"].as_bool()),
        (Some(1), Some(true)),
        "{h}"
    );
    let top = get(net, port, "/top?n=5").expect("/top");
    let t: Value = serde_json::from_str(&top.body).unwrap();
    assert_eq!(t["schema_version"], 1, "{t}");
    let sources = t["interfaces"][0]["sources"].as_array().unwrap();
    assert!(
        sources.iter().any(|s| s["source"] == "198.51.100.11/32"),
        "the flooding source is not on /top: {t}"
    );
}

/// `file` (holding `running`, the rules that run) broken: the reload
/// fails and FilterctlReloadFailed is pending; restored as it was, which
/// serve finds running already: the success is back and the alert gone.
fn check_broken_then_restored(net: &TestNet, prom_port: u16, file: &str, running: &str) {
    const ALERT: &str = "ALERTS{alertname=\"FilterctlReloadFailed\"}";
    std::fs::write(
        file,
        "[[rule]]\nname = \"x\"\nsrc_port = 99999\naction = \"drop\"\n",
    )
    .unwrap();
    wait_for_data(
        net,
        prom_port,
        &["filterctl_last_reload_success == 0", ALERT],
    );
    std::fs::write(file, running).unwrap();
    wait_until(
        "FilterctlReloadFailed to clear after the file was restored",
        30,
        || {
            !query(net, prom_port, "filterctl_last_reload_success == 1").is_empty()
                && query(net, prom_port, ALERT).is_empty()
        },
    );
}

#[test]
fn dashboard_and_alerts_evaluate_on_a_real_prometheus() {
    common::require_bpf();
    assert!(
        Command::new("prometheus").arg("--version").output().is_ok(),
        "no prometheus binary: run `cargo xtask setup` (Debian package prometheus)"
    );
    let net = TestNet::new("prm").expect("create test namespaces");
    let dir = TempDir::new("prometheus");
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, rules(50)).unwrap();
    let file = file.to_str().unwrap().to_string();
    let iface = net.victim_if.clone();
    let loaded = run(&net, &["apply", "--iface", &iface, "--rules", &file]);
    assert_eq!(loaded.status.code(), Some(10), "{loaded:?}");

    let port = free_port(&net);
    let watch = format!("{iface}={file}");
    let listen = format!("127.0.0.1:{port}");
    let mut serve_cmd = command(&net, &["serve", "--listen", &listen, "--watch", &watch]);
    let log = dir.path().join("serve.log");
    let _serve = spawn(&net, "filterctl serve", &mut serve_cmd, log);
    wait_until("serve to answer", 10, || {
        get(&net, port, "/healthz").is_some()
    });

    let prom_port = free_port(&net);
    let _prom = prometheus(&net, dir.path(), port, prom_port);
    let stop = Stop(Arc::new(AtomicBool::new(false)));
    let sender = traffic(net.attacker_ns.clone(), stop.0.clone());

    // A ban, and a reload by the daemon, for their series.
    let ban = run(&net, &["ban", "203.0.113.0/24", "--for", "10m"]);
    assert!(ban.status.success(), "{ban:?}");
    std::fs::write(&file, rules(60)).unwrap();
    wait_for_data(
        &net,
        prom_port,
        &[
            "filterctl_last_reload_success == 1",
            "rate(filterctl_packets_total{reason=\"rate_limit_drop\"}[10s]) > 0",
            "rate(filterctl_rule_packets_total{rule=\"ntp-reflection\"}[10s]) > 0",
            "filterctl_top_source_dropped_packets",
            "filterctl_bans_active > 0",
        ],
    );
    check_queries(&net, prom_port);
    check_endpoints(&net, port);
    check_broken_then_restored(&net, prom_port, &file, &rules(60));

    drop(stop);
    sender.join().unwrap();
    // With the filter gone, /healthz says so.
    assert!(run(&net, &["unload", "--iface", &iface]).status.success());
    let gone = get(&net, port, "/healthz").expect("/healthz");
    assert_eq!(gone.status, 503, "{}", gone.body);
}
