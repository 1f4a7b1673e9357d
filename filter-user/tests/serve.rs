//! `filterctl serve` on a live interface, run as the real binary in the
//! victim's namespace: /metrics parsed as OpenMetrics text and equal to
//! `stats --json`, /stats equal to it too, the watched rule file reloaded
//! when its content changes and on SIGHUP (and not when only touched, nor
//! when broken), SIGTERM ending the daemon with status 0 and the filter
//! still attached. Needs root.

mod common;

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant, SystemTime},
};

use common::cli::{TempDir, command, ok, run};
use filter_testkit::frames::{ntp_monlist_reply, ntp_time_reply};
use filter_testkit::net::{Sink, TestNet, VICTIM_V4, send_udp};
use serde_json::Value;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The daemon, killed on every exit path; its log is printed when the test
/// fails.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: a signal to our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("serve exited ({st}):\n{}", self.log());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- filterctl serve log ---\n{}", self.log());
        }
    }
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

/// HTTP/1.0 GET from a thread inside the victim's namespace, where the
/// daemon listens on loopback. None when nothing answers.
fn get(net: &TestNet, port: u16, path: &str) -> Option<Reply> {
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
        let (head, body) = resp.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let content_type = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map_or(String::new(), |(_, v)| v.trim().to_string());
        Some(Reply {
            status,
            content_type,
            body: body.to_string(),
        })
    })
    .unwrap()
}

/// A free loopback port in the victim's namespace.
fn free_port(net: &TestNet) -> u16 {
    TestNet::in_ns(&net.victim_ns, || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
    .unwrap()
}

type Series = (String, Vec<(String, String)>);

/// An OpenMetrics text exposition, checked as it is parsed: every family
/// has HELP and TYPE before its samples, every sample belongs to the family
/// before it with the suffix its type requires, no series twice, `# EOF`
/// last.
struct Exposition {
    /// Family name -> type.
    types: BTreeMap<String, String>,
    samples: BTreeMap<Series, f64>,
}

fn parse_labels(mut s: &str, line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {key:?} in {line:?}"
        );
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        out.push((key.to_string(), value));
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    out.sort();
    out
}

fn parse_openmetrics(text: &str) -> Exposition {
    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("no closing # EOF:\n{text}"));
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut family: Option<(String, String)> = None;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.trim().is_empty(), "empty help: {line:?}");
            assert!(
                helps.insert(name.to_string(), help.to_string()).is_none(),
                "HELP twice for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            assert!(
                [
                    "counter",
                    "gauge",
                    "info",
                    "histogram",
                    "summary",
                    "unknown"
                ]
                .contains(&ty),
                "bad type in {line:?}"
            );
            assert!(helps.contains_key(name), "TYPE before HELP: {line:?}");
            assert!(
                types.insert(name.to_string(), ty.to_string()).is_none(),
                "TYPE twice for {name}"
            );
            family = Some((name.to_string(), ty.to_string()));
        } else if line.starts_with('#') {
            panic!("unexpected comment line {line:?} (or # EOF before the end)");
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (
                    n,
                    parse_labels(
                        rest.strip_suffix('}').expect("closing brace of the labels"),
                        line,
                    ),
                ),
                None => (series, Vec::new()),
            };
            assert!(
                name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            let (fam, ty) = family.as_ref().expect("sample before any TYPE");
            let suffix = match ty.as_str() {
                "counter" => "_total",
                "info" => "_info",
                "gauge" => "",
                other => panic!("unexpected type {other}"),
            };
            assert_eq!(
                name,
                format!("{fam}{suffix}"),
                "sample outside its family: {line:?}"
            );
            if ty == "counter" {
                assert!(value >= 0.0 && value.fract() == 0.0, "{line:?}");
            }
            assert!(
                samples.insert((name.to_string(), labels), value).is_none(),
                "series twice: {line:?}"
            );
        }
    }
    Exposition { types, samples }
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    (name.to_string(), l)
}

fn json(out: std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// `status --json` of the one interface.
fn status(net: &TestNet) -> Value {
    json(run(net, &["status", "--json"]))[0].clone()
}

/// Every series /metrics must have, from `stats --json` and `status
/// --json`, and the reloads this daemon did so far.
fn expected_samples(stats: &Value, status: &Value, reloads: [u64; 3]) -> BTreeMap<Series, f64> {
    let mut e = BTreeMap::new();
    let ifaces = stats["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 1);
    let i = &ifaces[0];
    let iface = i["interface"].as_str().unwrap();
    let num = |v: &Value| v.as_u64().unwrap() as f64;
    for (reason, r) in i["reasons"].as_object().unwrap() {
        let verdict = r["verdict"].as_str().unwrap();
        let l = [
            ("interface", iface),
            ("reason", reason.as_str()),
            ("verdict", verdict),
        ];
        e.insert(series("filterctl_packets_total", &l), num(&r["packets"]));
        e.insert(series("filterctl_bytes_total", &l), num(&r["bytes"]));
    }
    for r in i["rules"].as_array().unwrap() {
        let l = [
            ("interface", iface),
            ("rule", r["name"].as_str().unwrap()),
            ("action", r["action"].as_str().unwrap()),
        ];
        e.insert(
            series("filterctl_rule_packets_total", &l),
            num(&r["packets"]),
        );
        e.insert(series("filterctl_rule_bytes_total", &l), num(&r["bytes"]));
    }
    e.insert(
        series(
            "filterctl_monitor_passed_packets_total",
            &[("interface", iface)],
        ),
        num(&i["monitor_passed"]["packets"]),
    );
    assert_eq!(status["interface"], iface);
    let generation = status["generation"].to_string();
    e.insert(
        series(
            "filterctl_rules_info",
            &[
                ("interface", iface),
                ("digest", status["rules_digest"].as_str().unwrap()),
                ("generation", &generation),
            ],
        ),
        1.0,
    );
    e.insert(series("filterctl_scrape_errors_total", &[]), 0.0);
    for (result, n) in ["ok", "invalid", "failed"].iter().zip(reloads) {
        e.insert(
            series(
                "filterctl_reloads_total",
                &[("interface", iface), ("result", result)],
            ),
            n as f64,
        );
    }
    e
}

fn without_timestamp(mut v: Value) -> Value {
    let ts = v
        .as_object_mut()
        .unwrap()
        .remove("timestamp_unix_ms")
        .expect("timestamp_unix_ms");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        now.abs_diff(ts.as_u64().unwrap()) < 60_000,
        "timestamp {ts}"
    );
    v
}

/// /metrics and /stats checked against `stats --json`, read before and
/// after them: when nothing was counted in between (a stray frame, such as
/// a router solicitation from the other side, retries), both must equal it
/// exactly.
fn check_against_stats(net: &TestNet, port: u16, reloads: [u64; 3]) -> Exposition {
    for _ in 0..5 {
        let before = without_timestamp(json(run(net, &["stats", "--json"])));
        let st = status(net);
        let metrics = get(net, port, "/metrics").expect("/metrics answers");
        let served = get(net, port, "/stats").expect("/stats answers");
        let after = without_timestamp(json(run(net, &["stats", "--json"])));
        if before != after {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        assert_eq!(metrics.status, 200, "{}", metrics.body);
        assert_eq!(metrics.content_type, OPENMETRICS);
        let expo = parse_openmetrics(&metrics.body);
        for (family, ty) in [
            ("filterctl_packets", "counter"),
            ("filterctl_bytes", "counter"),
            ("filterctl_rule_packets", "counter"),
            ("filterctl_rule_bytes", "counter"),
            ("filterctl_monitor_passed_packets", "counter"),
            ("filterctl_rules", "info"),
            ("filterctl_scrape_errors", "counter"),
            ("filterctl_reloads", "counter"),
        ] {
            assert_eq!(expo.types.get(family).map(String::as_str), Some(ty));
        }
        let expected = expected_samples(&after, &st, reloads);
        for (k, v) in &expected {
            assert_eq!(expo.samples.get(k), Some(v), "{k:?}");
        }
        assert_eq!(expo.samples, expected, "extra series in /metrics");

        assert_eq!(served.status, 200, "{}", served.body);
        assert!(served.content_type.starts_with("application/json"));
        let served: Value = serde_json::from_str(&served.body).unwrap();
        assert_eq!(without_timestamp(served), after, "/stats differs");
        return expo;
    }
    panic!("the counters never stood still for one scrape");
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// filterctl_reloads_total of the interface: ok, invalid, failed.
fn reloads(net: &TestNet, port: u16) -> [u64; 3] {
    let m = get(net, port, "/metrics").expect("/metrics answers");
    let expo = parse_openmetrics(&m.body);
    ["ok", "invalid", "failed"].map(|r| {
        expo.samples[&series(
            "filterctl_reloads_total",
            &[("interface", &net.victim_if), ("result", r)],
        )] as u64
    })
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

    // Reflection (NTP monlist, SSDP), NTP time replies and other traffic.
    let v4 = |port| SocketAddr::new(IpAddr::V4(VICTIM_V4), port);
    let (reflect, time, dns) = (v4(40000), v4(40001), v4(53));
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[reflect, time, dns]))
        .unwrap()
        .unwrap();
    TestNet::in_ns(&net.attacker_ns, || -> anyhow::Result<()> {
        let src = |last, port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)), port);
        send_udp(src(5, 123), reflect, &ntp_monlist_reply(), 30)?;
        send_udp(
            src(6, 1900),
            reflect,
            b"HTTP/1.1 200 OK\r\nST: ssdp:all\r\n\r\n",
            10,
        )?;
        // The host's time sync: three requests, five replies each (the
        // reply guard passes only answers).
        for _ in 0..3 {
            sink.send_from(time, src(7, 123), &[0x23; 48])?;
            std::thread::sleep(std::time::Duration::from_millis(20));
            send_udp(src(7, 123), time, &ntp_time_reply(), 5)?;
        }
        send_udp(src(8, 4000), dns, b"query", 20)
    })
    .unwrap()
    .unwrap();
    let got = sink.drain();
    assert_eq!((got[&reflect], got[&time], got[&dns]), (0, 15, 20));

    let port = free_port(&net);
    let log = files.path().join("serve.log");
    let mut daemon = Daemon {
        child: command(
            &net,
            &[
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--iface",
                &net.victim_if,
                "--rules",
                &rules,
            ],
        )
        // The daemon's own default log level (info) is under test.
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("start filterctl serve"),
        log,
    };
    wait_until("serve to answer", 10, || {
        daemon.assert_running();
        get(&net, port, "/").is_some_and(|r| r.status == 200)
    });

    // 1 and 2: /metrics and /stats are `stats --json`.
    let expo = check_against_stats(&net, port, [0, 0, 0]);
    let iface = net.victim_if.as_str();
    let value = |name, labels: &[(&str, &str)]| expo.samples[&series(name, labels)];
    let reason = |r| [("interface", iface), ("reason", r), ("verdict", "drop")];
    assert_eq!(
        value("filterctl_packets_total", &reason("unsolicited_reply")),
        40.0
    );
    let rule = |r, a| [("interface", iface), ("rule", r), ("action", a)];
    for (name, action, n) in [
        ("ntp-reflection", "drop", 0.0),
        ("ssdp-reflection", "drop", 0.0),
        ("ntp-time-replies", "limit", 15.0),
    ] {
        assert_eq!(
            value("filterctl_rule_packets_total", &rule(name, action)),
            n
        );
    }
    let before = status(&net);
    let (g0, d0) = (
        before["generation"].as_u64().unwrap(),
        before["rules_digest"].as_str().unwrap().to_string(),
    );

    // 3: the file's content changes: reloaded within a few seconds.
    let changed = format!(
        "{default}\n[[rule]]\nname = \"chargen\"\nprotocol = \"udp\"\nsrc_port = 19\naction = \"drop\"\n"
    );
    files.write("rules.toml", &changed);
    wait_until("a reload after the file changed", 10, || {
        let s = status(&net);
        s["generation"].as_u64() == Some(g0 + 1) && s["rules_digest"] != d0.as_str()
    });
    let s1 = status(&net);
    assert_eq!(s1["rule_count"], 4);
    let d1 = s1["rules_digest"].as_str().unwrap().to_string();
    let expo = check_against_stats(&net, port, [1, 0, 0]);
    assert_eq!(
        expo.samples[&series("filterctl_rule_packets_total", &rule("chargen", "drop"))],
        0.0
    );

    // Touched, the same bytes: nothing happens.
    files.write("rules.toml", &changed);
    File::options()
        .append(true)
        .open(&rules)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(status(&net)["generation"].as_u64(), Some(g0 + 1));
    assert_eq!(reloads(&net, port), [1, 0, 0]);

    // Broken: not loaded, neither by the poll nor on SIGHUP; still serving.
    files.write(
        "rules.toml",
        "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = 99999\naction = \"drop\"\n",
    );
    wait_until("the broken file to be noticed", 10, || {
        reloads(&net, port) == [1, 1, 0]
    });
    daemon.signal(libc::SIGHUP);
    wait_until("SIGHUP to be handled", 10, || {
        reloads(&net, port) == [1, 2, 0]
    });
    let s = status(&net);
    assert_eq!(s["generation"].as_u64(), Some(g0 + 1));
    assert_eq!(s["rules_digest"], d1.as_str());
    daemon.assert_running();
    let log_text = daemon.log();
    assert!(
        log_text.contains("rules.toml:4:12: src_port 99999 out of range"),
        "the parse error with its place is logged:\n{log_text}"
    );

    // Fixed back to what runs: nothing to reload. SIGHUP: reloaded anyway.
    files.write("rules.toml", &changed);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(status(&net)["generation"].as_u64(), Some(g0 + 1));
    assert_eq!(reloads(&net, port), [1, 2, 0]);
    daemon.signal(libc::SIGHUP);
    wait_until("a reload on SIGHUP", 10, || {
        status(&net)["generation"].as_u64() == Some(g0 + 2)
    });
    assert_eq!(status(&net)["rules_digest"], d1.as_str());
    check_against_stats(&net, port, [2, 2, 0]);

    // 4: SIGTERM: exit status 0 within a few seconds, the filter attached.
    daemon.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let exit = loop {
        if let Some(st) = daemon.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "serve did not stop within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
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
    let s = status(&net);
    assert_eq!(s["generation"].as_u64(), Some(g0 + 2));
    assert_eq!(s["rules_digest"], d1.as_str());
    let log_text = daemon.log();
    for line in [
        "reloaded",
        "SIGHUP: reloading every watched rule file",
        "SIGTERM: stopping; the filter stays attached",
    ] {
        assert!(
            log_text.contains(line),
            "no {line:?} in the log:\n{log_text}"
        );
    }
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}
