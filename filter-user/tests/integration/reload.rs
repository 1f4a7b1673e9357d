//! Reloads on a live interface: rule sets swapped many times under traffic
//! without a benign drop or a reflection pass, failed reloads that change
//! nothing, and a controller killed in the middle of a reload. Needs root.

use crate::common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use filter_testkit::net::{Sink, TestNet, VICTIM_V4};
use serde_json::Value;

use common::cli::{TempDir as Files, command as filterctl_cmd, egress_programs, ok, run};

fn status(net: &TestNet) -> Value {
    serde_json::from_str::<Value>(&ok(run(net, &["status", "--json"]))).unwrap()["interfaces"][0]
        .clone()
}

/// Two rule sets that agree on what is reflection and what is benign but
/// differ in every other way: rule order, names, extra rules, limits.
const RULES_A: &str = r#"
[[rule]]
name = "ntp-a"
protocol = "udp"
src_port = 123
action = "drop"
[[rule]]
name = "ssdp-a"
protocol = "udp"
src_port = 1900
action = "drop"
"#;

const RULES_B: &str = r#"
[per_source]
pps = 100000
[[rule]]
name = "chargen-b"
protocol = "udp"
src_port = 19
action = "drop"
[[rule]]
name = "ssdp-b"
protocol = "udp"
src_port = 1900
action = "drop"
[[rule]]
name = "dns-b"
protocol = "udp"
src_port = 41000
action = "pass"
[[rule]]
name = "ntp-b"
protocol = "udp"
src_port = "120-125"
action = "drop"
"#;

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn swaps_under_traffic_drop_no_benign_and_pass_no_reflection() {
    common::require_bpf();
    let net = TestNet::new("rld").expect("create test namespaces");
    let files = Files::new("swap");
    let (a, b) = (
        files.write("a.toml", RULES_A),
        files.write("b.toml", RULES_B),
    );
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &a],
    ));

    let dns = SocketAddr::new(IpAddr::V4(VICTIM_V4), 53);
    let reflect = SocketAddr::new(IpAddr::V4(VICTIM_V4), 40000);
    let sinks: Vec<Sink> = [dns, reflect]
        .iter()
        .map(|addr| {
            TestNet::in_ns(&net.victim_ns, || Sink::bind(&[*addr]))
                .unwrap()
                .unwrap()
        })
        .collect();
    let done = AtomicBool::new(false);
    let (sent, delivered, reloads) = std::thread::scope(|s| {
        let readers: Vec<_> = sinks
            .iter()
            .map(|k| s.spawn(move || k.drain_after(Duration::from_secs(5))))
            .collect();
        let sender = s.spawn(|| {
            TestNet::in_ns(&net.attacker_ns, || {
                let benign = std::net::UdpSocket::bind("192.0.2.2:41000").unwrap();
                let ntp: Vec<_> = (1..=20u8)
                    .map(|i| {
                        std::net::UdpSocket::bind((Ipv4Addr::new(198, 51, 100, i), 123)).unwrap()
                    })
                    .collect();
                let (mut nb, mut nr) = (0u64, 0u64);
                while !done.load(Ordering::Relaxed) {
                    for sock in &ntp {
                        sock.send_to(&[0x17; 200], reflect).unwrap();
                        nr += 1;
                    }
                    for _ in 0..5 {
                        benign.send_to(b"\x12\x34\x01\x00", dns).unwrap();
                        nb += 1;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                (nb, nr)
            })
            .unwrap()
        });
        let stop = common::StopOnDrop(&done);
        let mut reloads = 0;
        for i in 0..20 {
            let file = if i % 2 == 0 { &b } else { &a };
            ok(run(
                &net,
                &["reload", "--iface", &net.victim_if, "--rules", file],
            ));
            reloads += 1;
        }
        drop(stop);
        let sent = sender.join().unwrap();
        let delivered: Vec<u64> = readers
            .into_iter()
            .map(|h| h.join().unwrap().into_values().sum())
            .collect();
        (sent, delivered, reloads)
    });
    assert_eq!(reloads, 20);
    assert!(
        sent.0 > 1000 && sent.1 > 1000,
        "too little traffic during the swaps: {sent:?}"
    );
    assert_eq!(delivered[0], sent.0, "benign packets lost during reloads");
    assert_eq!(
        delivered[1], 0,
        "reflection packets delivered during reloads"
    );

    let st = status(&net);
    assert_eq!(st["generation"], 21);
    assert_eq!(st["stale_generations"].as_array().unwrap().len(), 0);
    assert!(st["rules_source"].as_str().unwrap().ends_with("a.toml"));
    // Counters live in the state maps: they span every generation.
    let stats: Value = serde_json::from_str(&ok(run(&net, &["stats", "--json"]))).unwrap();
    let reasons = &stats["interfaces"][0]["reasons"];
    assert_eq!(reasons["rule_drop"]["packets"].as_u64().unwrap(), sent.1);
    // Only this generation's pins remain.
    let dir = net.pin_root.join(&net.victim_if);
    let gens: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    assert_eq!(gens, vec!["gen-21".to_string()]);
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}

#[test]
fn failed_reloads_leave_the_old_rules_enforcing() {
    common::require_bpf();
    let net = TestNet::new("rlf").expect("create test namespaces");
    let files = Files::new("fail");
    let a = files.write("a.toml", RULES_A);
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &a],
    ));
    let before = status(&net);

    // Invalid file: refused before anything is built.
    let bad = files.write(
        "bad.toml",
        "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = \"200-100\"\naction = \"drop\"\n",
    );
    let out = run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &bad],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4:12:"), "{err}");
    // A failure while building the new generation (after the kernel loaded
    // and verified it).
    let out = filterctl_cmd(
        &net,
        &[
            "reload",
            "--iface",
            &net.victim_if,
            "--rules",
            &files.write("b.toml", RULES_B),
        ],
    )
    .env("FILTERCTL_FAILPOINT", "after-prepare:fail")
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("previous rules are still enforcing"), "{err}");

    let after = status(&net);
    assert_eq!(after["generation"], before["generation"]);
    assert_eq!(after["program_id"], before["program_id"]);
    assert_eq!(after["rules_digest"], before["rules_digest"]);
    assert_eq!(after["stale_generations"].as_array().unwrap().len(), 0);
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}

/// Starts a reload that pauses at `point`, waits until it is there, kills
/// it with SIGKILL.
fn kill_reload_at(net: &TestNet, rules: &str, point: &str) {
    let mut child = filterctl_cmd(
        net,
        &["reload", "--iface", &net.victim_if, "--rules", rules],
    )
    .env("FILTERCTL_FAILPOINT", format!("{point}:pause"))
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    wait_for(&format!("the reload to reach {point}"), || {
        use std::io::Read as _;
        let mut buf = [0u8; 256];
        if let Ok(n) = stderr.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.contains("pausing")
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

fn reflection_still_dropped(net: &TestNet) -> bool {
    let target = SocketAddr::new(IpAddr::V4(VICTIM_V4), 40001);
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[target]))
        .unwrap()
        .unwrap();
    TestNet::in_ns(&net.attacker_ns, || {
        filter_testkit::net::send_udp(
            (Ipv4Addr::new(198, 51, 100, 77), 123).into(),
            target,
            &[0x17; 100],
            20,
        )
    })
    .unwrap()
    .unwrap();
    sink.drain()[&target] == 0
}

#[test]
fn a_reload_killed_midway_leaves_a_complete_rule_set_and_status_tells_which() {
    common::require_bpf();
    let net = TestNet::new("rlk").expect("create test namespaces");
    let files = Files::new("kill");
    let (a, b) = (
        files.write("a.toml", RULES_A),
        files.write("b.toml", RULES_B),
    );
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &a],
    ));

    // Killed with the new generation built and pinned, before the switch:
    // the old rules run, and status says so.
    kill_reload_at(&net, &b, "before-switch");
    let st = status(&net);
    assert_eq!(st["generation"], 1);
    assert!(st["rules_source"].as_str().unwrap().ends_with("a.toml"));
    assert_eq!(st["stale_generations"], serde_json::json!([2]));
    assert!(reflection_still_dropped(&net));

    // Killed right after the switch, before the old pins were removed: the
    // new rules run, and status says so. Its request recorder runs too
    // (beside the others: the killed reloads pinned theirs with their
    // generations), or the running program would miss new requests.
    let recorders = egress_programs(&net).len();
    kill_reload_at(&net, &b, "after-switch");
    let st = status(&net);
    assert_eq!(st["generation"], 3);
    assert!(st["rules_source"].as_str().unwrap().ends_with("b.toml"));
    assert_eq!(st["stale_generations"], serde_json::json!([1, 2]));
    assert!(reflection_still_dropped(&net));
    assert_eq!(
        egress_programs(&net).len(),
        recorders + 1,
        "the running generation's recorder is not attached"
    );

    // The next reload cleans up what the killed ones left.
    ok(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &a],
    ));
    let st = status(&net);
    assert_eq!(st["generation"], 4);
    assert_eq!(st["stale_generations"], serde_json::json!([]));
    assert_eq!(
        egress_programs(&net).len(),
        1,
        "the killed reloads' recorders outlived their generations"
    );
    assert!(
        Path::new(&net.pin_root)
            .join(&net.victim_if)
            .join("gen-4")
            .exists()
    );
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}

/// Counters only grow across 20 reloads that reorder the rules and add and
/// remove one before them: each rule keeps its counter by name, each
/// reason its own, and every datagram is counted once.
#[test]
fn rule_and_reason_counters_only_grow_across_twenty_reloads() {
    use filter_testkit::net::send_udp;
    common::require_bpf();
    let net = TestNet::new("mon").expect("create test namespaces");
    let files = Files::new("mon");
    let ntp = "[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n";
    let ssdp =
        "[[rule]]\nname = \"ssdp\"\nprotocol = \"udp\"\nsrc_port = 1900\naction = \"drop\"\n";
    let extra =
        "[[rule]]\nname = \"chargen\"\nprotocol = \"udp\"\nsrc_port = 19\naction = \"drop\"\n";
    let sets = [
        files.write("a.toml", &format!("{ntp}{ssdp}")),
        files.write("b.toml", &format!("{extra}{ssdp}{ntp}")),
        files.write("c.toml", &format!("{ssdp}{extra}{ntp}")),
    ];
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &sets[0]],
    ));
    let snapshot = |net: &TestNet| -> Value {
        serde_json::from_str::<Value>(&ok(run(net, &["stats", "--json"]))).unwrap()["interfaces"][0]
            .clone()
    };
    let rule = |s: &Value, name: &str| -> u64 {
        s["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map_or(0, |r| r["packets"].as_u64().unwrap())
    };
    let to = SocketAddr::new(VICTIM_V4.into(), 9999);
    let mut before = snapshot(&net);
    for round in 0..20u64 {
        TestNet::in_ns(&net.attacker_ns, || {
            for port in [123, 1900] {
                let from = SocketAddr::new(Ipv4Addr::new(198, 51, 100, 9).into(), port);
                send_udp(from, to, b"reply", 5).unwrap();
            }
        })
        .unwrap();
        let set = &sets[(round as usize + 1) % sets.len()];
        ok(run(
            &net,
            &["reload", "--iface", &net.victim_if, "--rules", set],
        ));
        let now = snapshot(&net);
        for name in ["ntp", "ssdp"] {
            assert_eq!(
                rule(&now, name),
                5 * (round + 1),
                "{name} after reload {round}: {now}"
            );
        }
        for (reason, v) in now["reasons"].as_object().unwrap() {
            let was = before["reasons"][reason]["packets"].as_u64().unwrap();
            assert!(
                v["packets"].as_u64().unwrap() >= was,
                "{reason} went down: {now}"
            );
        }
        before = now;
    }
}
