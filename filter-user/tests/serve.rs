//! `filterctl serve` on a live interface: /metrics parsed as Prometheus text
//! and compared with `stats --json`, /stats, rule files reloaded on change
//! and on SIGHUP (and not when broken), SIGTERM leaving the filter attached.
//! Needs root.

mod common;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    process::Child,
    time::{Duration, Instant},
};

use common::cli::{TempDir, command, ok, run};
use filterctl::testnet::{Sink, TestNet, VICTIM_V4, ntp_monlist_reply, send_udp};
use serde_json::Value;

/// Kills the daemon on every exit path.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path` from the daemon, from inside the victim's namespace.
fn get(net: &TestNet, port: u16, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    TestNet::in_ns(&net.victim_ns, move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let status = resp.split_whitespace().nth(1)?.parse().ok()?;
        let body = resp.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    })
    .unwrap()
}

/// Samples of the Prometheus text format: (name, sorted labels) -> value.
fn parse_prometheus(text: &str) -> BTreeMap<(String, Vec<(String, String)>), f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label=value");
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .expect("quoted value");
            pairs.push((k.to_string(), v.to_string()));
        }
        pairs.sort();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name:?}"
        );
        out.insert((name.to_string(), pairs), value);
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn generation(net: &TestNet) -> u64 {
    let v: Value = serde_json::from_str(&ok(run(net, &["status", "--json"]))).unwrap();
    v[0]["generation"].as_u64().unwrap()
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_exposes_the_counters_and_follows_the_rule_file() {
    common::require_bpf();
    let net = TestNet::new("srv").expect("create test namespaces");
    let files = TempDir::new("serve");
    let default = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/default.toml"
    ))
    .unwrap();
    let rules = files.write("rules.toml", &default);
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));

    // Some traffic to count.
    let target = SocketAddr::new(IpAddr::V4(VICTIM_V4), 53);
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[target]))
        .unwrap()
        .unwrap();
    TestNet::in_ns(&net.attacker_ns, || {
        send_udp(
            (Ipv4Addr::new(198, 51, 100, 5), 123).into(),
            target,
            &ntp_monlist_reply(),
            30,
        )?;
        send_udp(
            (Ipv4Addr::new(198, 51, 100, 6), 4000).into(),
            target,
            b"query",
            20,
        )
    })
    .unwrap()
    .unwrap();
    assert_eq!(sink.drain()[&target], 20);

    let port = 19000 + (std::process::id() % 1000) as u16;
    let listen = format!("127.0.0.1:{port}");
    let watch = format!("{}={rules}", net.victim_if);
    let mut daemon = Daemon(
        command(&net, &["serve", "--listen", &listen, "--watch", &watch])
            .spawn()
            .expect("start filterctl serve"),
    );
    wait_until("serve to answer", 20, || {
        get(&net, port, "/stats").is_some()
    });

    // /metrics: valid Prometheus text with the numbers of `stats --json`.
    let (status, body) = get(&net, port, "/metrics").unwrap();
    assert_eq!(status, 200);
    let samples = parse_prometheus(&body);
    let stats: Value = serde_json::from_str(&ok(run(&net, &["stats", "--json"]))).unwrap();
    let i = &stats["interfaces"][0];
    let iface = net.victim_if.as_str();
    for (reason, r) in i["reasons"].as_object().unwrap() {
        let verdict = r["verdict"].as_str().unwrap();
        for (metric, field) in [
            ("filterctl_packets_total", "packets"),
            ("filterctl_bytes_total", "bytes"),
        ] {
            let key = (
                metric.to_string(),
                labels(&[
                    ("interface", iface),
                    ("reason", reason),
                    ("verdict", verdict),
                ]),
            );
            assert_eq!(
                samples.get(&key).copied(),
                Some(r[field].as_u64().unwrap() as f64),
                "{metric} for {reason}"
            );
        }
    }
    for r in i["rules"].as_array().unwrap() {
        let key = (
            "filterctl_rule_packets_total".to_string(),
            labels(&[
                ("interface", iface),
                ("rule", r["name"].as_str().unwrap()),
                ("action", r["action"].as_str().unwrap()),
            ]),
        );
        assert_eq!(
            samples.get(&key).copied(),
            Some(r["packets"].as_u64().unwrap() as f64)
        );
    }
    assert_eq!(i["reasons"]["rule_drop"]["packets"], 30);
    // /stats: the `stats --json` document.
    let (status, body) = get(&net, port, "/stats").unwrap();
    assert_eq!(status, 200);
    let served: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served["interfaces"][0]["reasons"], i["reasons"]);
    assert_eq!(served["interfaces"][0]["rules"], i["rules"]);

    // The file changes: reloaded.
    let g0 = generation(&net);
    files.write("rules.toml", &format!("{default}\n[[rule]]\nname = \"chargen\"\nprotocol = \"udp\"\nsrc_port = 19\naction = \"drop\"\n"));
    wait_until("a reload after the file changed", 20, || {
        generation(&net) == g0 + 1
    });
    // Unchanged: nothing happens; SIGHUP: reloaded anyway.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(generation(&net), g0 + 1);
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGHUP) };
    wait_until("a reload on SIGHUP", 20, || generation(&net) == g0 + 2);
    // Broken: not loaded, the old rules stay, the daemon keeps serving.
    files.write("rules.toml", "[[rule]]\nname = \"x\"\n");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(generation(&net), g0 + 2);
    assert_eq!(get(&net, port, "/metrics").unwrap().0, 200);

    // SIGTERM: a clean exit, the filter still attached and running.
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    let exit = loop {
        if let Some(st) = daemon.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "serve exited with {exit}");
    let link = std::process::Command::new("ip")
        .args(["-n", &net.victim_ns, "link", "show", "dev", &net.victim_if])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "SIGTERM detached the filter"
    );
    assert_eq!(generation(&net), g0 + 2);
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}
