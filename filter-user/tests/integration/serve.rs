//! `filterctl serve` on a live interface, run as the real binary in the
//! victim's namespace: /metrics parsed as OpenMetrics text and equal to
//! `stats --json`, /stats equal to it too, the watched rule file reloaded
//! when its content changes and on SIGHUP (and not when only touched, nor
//! when broken), SIGTERM ending the daemon with status 0 and the filter
//! still attached; a watched filter that is gone loaded again, unless an
//! operator's `unload` left it off on purpose. Needs root.

use crate::common;

use std::{
    collections::BTreeMap,
    fs::File,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant, SystemTime},
};

use common::{
    cli::{TempDir, load_default, ok, run},
    daemon::{Daemon, Exposition, Series, get, parse_openmetrics, reloads, series, wait_until},
};
use filter_testkit::frames::{ntp_monlist_reply, ntp_time_reply};
use filter_testkit::net::{Sink, TestNet, VICTIM_V4, send_udp};
use filterctl::serve::{
    catalogue::{PREFIX, Source},
    metrics::METRICS,
};
use serde_json::Value;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn json(out: std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// `status --json` of the one interface.
fn status(net: &TestNet) -> Value {
    json(run(net, &["status", "--json"]))["interfaces"][0].clone()
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

/// The state gauges, checked against `status --json`; the limiter's
/// occupancy and the daemon's reload time only for their range.
fn expected_gauges(expo: &Exposition, status: &Value, reloads: [u64; 3]) -> Vec<(Series, f64)> {
    let iface = status["interface"].as_str().unwrap();
    let on = [("interface", iface)];
    let capacity = 65536.0;
    let entries = expo.samples[&series("filterctl_limiter_entries", &on)];
    assert!(
        (0.0..=capacity).contains(&entries),
        "limiter entries {entries}"
    );
    let mut e = vec![
        (series("filterctl_up", &on), 1.0),
        (
            series(
                "filterctl_attach_info",
                &[
                    ("interface", iface),
                    ("attach_mode", status["attach_mode"].as_str().unwrap()),
                    ("mode", status["mode"].as_str().unwrap()),
                ],
            ),
            1.0,
        ),
        (
            series("filterctl_loaded_timestamp_seconds", &on),
            status["loaded_at_unix"].as_f64().unwrap(),
        ),
        (series("filterctl_bans_active", &on), 0.0),
        (series("filterctl_limiter_capacity", &on), capacity),
        (series("filterctl_limiter_entries", &on), entries),
        (
            series(
                "filterctl_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))],
            ),
            1.0,
        ),
    ];
    let top: Vec<_> = expo
        .samples
        .iter()
        .filter(|((name, _), _)| name == "filterctl_top_source_dropped_packets")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(top.len() <= 10, "{top:?}");
    e.extend(top);
    if reloads.iter().sum::<u64>() > 0 {
        let at = expo.samples[&series("filterctl_last_reload_timestamp_seconds", &on)];
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (now - 600.0..=now + 1.0).contains(&at),
            "last reload at {at}"
        );
        e.push((series("filterctl_last_reload_timestamp_seconds", &on), at));
        // The test's last reload of each step is the one its counts end on.
        let ok = expo.samples[&series("filterctl_last_reload_success", &on)];
        assert!(ok == 0.0 || ok == 1.0, "last reload success {ok}");
        e.push((series("filterctl_last_reload_success", &on), ok));
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
        check_families(&expo);
        let mut expected = expected_samples(&after, &st, reloads);
        expected.extend(expected_gauges(&expo, &st, reloads));
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

/// Every family served is one serve's metric table declares, with its
/// type; every family read at scrape time is served, and the reloads this
/// daemon keeps.
fn check_families(expo: &Exposition) {
    for (family, ty) in &expo.types {
        let def = METRICS
            .iter()
            .find(|d| format!("{PREFIX}_{}", d.name) == *family)
            .unwrap_or_else(|| panic!("{family} is served but not in METRICS"));
        assert_eq!(def.kind.as_str(), ty, "type of {family}");
    }
    for def in METRICS
        .iter()
        .filter(|d| matches!(d.source, Source::Scrape(_)) || d.name == "reloads")
    {
        let family = format!("{PREFIX}_{}", def.name);
        assert!(expo.types.contains_key(&family), "{family} not served");
    }
}

#[test]
fn serve_exposes_the_counters_and_follows_the_rule_file() {
    common::require_bpf();
    let net = TestNet::new("srv").expect("create test namespaces");
    let files = TempDir::new("serve");
    let (rules, default) = load_default(&net, &files);

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

    let (mut daemon, port) = Daemon::start(
        &net,
        files.path().join("serve.log"),
        &["--iface", &net.victim_if, "--rules", &rules],
    );

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

/// NTP monlist replies from a reflector reaching the victim: how many
/// of `n` got through (none while a filter runs: unsolicited replies).
fn reflection_through(net: &TestNet, n: usize) -> u64 {
    let sink_addr = SocketAddr::new(IpAddr::V4(VICTIM_V4), 40010);
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[sink_addr]))
        .unwrap()
        .unwrap();
    let reflector = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), 123);
    TestNet::in_ns(&net.attacker_ns, || {
        send_udp(reflector, sink_addr, &ntp_monlist_reply(), n)
    })
    .unwrap()
    .unwrap();
    sink.drain()[&sink_addr]
}

/// /healthz of the daemon: its status and its one interface.
fn health(net: &TestNet, port: u16) -> (u16, Value) {
    let h = get(net, port, "/healthz").expect("/healthz answers");
    let doc: Value = serde_json::from_str(&h.body).unwrap_or_else(|e| panic!("{e}: {}", h.body));
    (h.status, doc["interfaces"][0].clone())
}

/// The peak resident memory of process `pid` (VmHWM), in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// The path back: a watched interface whose pins are removed by hand (as a
/// new bpffs after a reboot would) gets its file loaded again by serve
/// within a few polls and filters again; after an operator's `unload`,
/// which leaves its marker, serve leaves it off and /healthz says why; an
/// `apply` removes the marker, and serve restores the filter again after
/// that. The daemon's peak memory over all this is what the DaemonSet's
/// memory limit is sized from.
#[test]
fn serve_loads_a_gone_filter_again_unless_unloaded_on_purpose() {
    common::require_bpf();
    let net = TestNet::new("srr").expect("create test namespaces");
    let files = TempDir::new("serve-restore");
    let (rules, _) = load_default(&net, &files);
    let iface = net.victim_if.clone();
    let (mut daemon, port) = Daemon::start(
        &net,
        files.path().join("serve.log"),
        &["--iface", &iface, "--rules", &rules],
    );
    assert_eq!(health(&net, port).0, 200);
    assert_eq!(reflection_through(&net, 20), 0, "the filter drops them");
    let digest = status(&net)["rules_digest"].as_str().unwrap().to_string();
    let pins = net.pin_root.join(&iface);
    let marker = net.pin_root.join(format!("unloaded:{iface}"));

    // 1: the pins removed by hand: the filter detaches with its link pin,
    // and nothing says it was on purpose. serve loads the file again.
    std::fs::remove_dir_all(&pins).unwrap();
    wait_until("serve to load the gone filter again", 15, || {
        pins.is_dir() && run(&net, &["status", "--json"]).status.success() && {
            let s = status(&net);
            s["generation"] == 1 && s["rules_digest"] == digest.as_str()
        }
    });
    assert_eq!(reflection_through(&net, 20), 0, "filtering again");
    wait_until("/healthz to say so", 10, || health(&net, port).0 == 200);
    assert_eq!(
        reloads(&net, port),
        [1, 0, 0],
        "the load counts as a reload"
    );
    assert!(
        daemon.log().contains("loaded") && daemon.log().contains("again"),
        "{}",
        daemon.log()
    );

    // 2: the operator's `unload`: the marker stays, serve leaves it off.
    ok(run(&net, &["unload", "--iface", &iface]));
    assert!(
        marker.is_dir(),
        "unload left no marker at {}",
        marker.display()
    );
    // Several polls of serve's.
    std::thread::sleep(Duration::from_secs(4));
    assert!(!pins.exists(), "serve loaded it again despite the marker");
    assert_eq!(reflection_through(&net, 20), 20, "no filter: all through");
    let (code, doc) = health(&net, port);
    assert_eq!(code, 503, "{doc}");
    assert_eq!(
        (&doc["running"], &doc["unloaded_on_purpose"]),
        (&Value::from(false), &Value::from(true)),
        "{doc}"
    );
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("unloaded on purpose"),
        "{doc}"
    );
    assert_eq!(reloads(&net, port), [1, 0, 0], "nothing tried");
    assert!(
        daemon.log().contains("unloaded on purpose"),
        "{}",
        daemon.log()
    );

    // 3: `apply` brings it back and removes the marker: a later loss is
    // restored again.
    let apply = run(&net, &["apply", "--iface", &iface, "--rules", &rules]);
    assert_eq!(apply.status.code(), Some(10), "apply loads: {apply:?}");
    assert!(!marker.exists(), "apply left the marker");
    wait_until("/healthz after apply", 10, || health(&net, port).0 == 200);
    std::fs::remove_dir_all(&pins).unwrap();
    wait_until("serve to load it again after apply", 15, || {
        pins.is_dir() && run(&net, &["status", "--json"]).status.success()
    });
    assert_eq!(reflection_through(&net, 20), 0, "filtering again");
    daemon.assert_running();

    let peak = peak_rss_kb(daemon.child.id());
    eprintln!("serve's peak resident memory (VmHWM), three loads and scrapes: {peak} kB");
    assert!(
        peak < crate::deploy::SERVE_PEAK_KB,
        "serve held {peak} kB at its peak, over the {} kB the DaemonSet's memory limit is sized with",
        crate::deploy::SERVE_PEAK_KB
    );
    ok(run(&net, &["unload", "--iface", &iface]));
}
