//! `filterctl capture` on a live interface: a flood of reflection and
//! denied traffic, with benign traffic beside it; the pcapng file opened
//! with tshark holds no more frames than --max-pps allows, only dropped
//! ones, each with its reason (and rule) in its comment; a capture of one
//! reason holds only it; a capture runs on across a reload; and
//! `filterctl replay` of the file gives every frame the verdict its comment
//! records. Needs root.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use filter_testkit::{
    frames::ntp_monlist_reply,
    net::{TestNet, VICTIM_V4, send_udp},
};
use serde_json::Value;

use common::cli::{TempDir, command, ok, run};

const RULES: &str = r#"deny = ["203.0.113.0/24"]
[[rule]]
name = "ntp-reflection"
protocol = "udp"
src_port = 123
action = "drop"
"#;

/// Reflection, denied and benign datagrams, in bursts until `stop`.
fn traffic(ns: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let to = |port| SocketAddr::new(IpAddr::V4(VICTIM_V4), port);
        let from = |ip: [u8; 4], port| SocketAddr::new(Ipv4Addr::from(ip).into(), port);
        let monlist = ntp_monlist_reply();
        while !stop.load(Ordering::Relaxed) {
            TestNet::in_ns(&ns, || -> anyhow::Result<()> {
                send_udp(from([198, 51, 100, 10], 123), to(9000), &monlist, 20)?;
                send_udp(from([203, 0, 113, 5], 5000), to(9001), b"denied", 20)?;
                send_udp(from([198, 51, 100, 12], 5353), to(53), b"benign", 20)
            })
            .unwrap()
            .expect("send traffic");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
}

/// Frame comments of a pcapng file, read by tshark.
fn comments(file: &str) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-r", file, "-T", "fields", "-e", "frame.comment"])
        .output()
        .expect("run tshark (Debian package tshark: cargo xtask setup)");
    assert!(out.status.success(), "tshark: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs a capture while traffic flows, and `during` beside it; returns
/// what the capture said and what `during` returned.
fn capture_with_traffic<T>(
    net: &TestNet,
    args: &[&str],
    during: impl FnOnce() -> T,
) -> (String, T) {
    let stop = Arc::new(AtomicBool::new(false));
    let sender = traffic(net.attacker_ns.clone(), stop.clone());
    let capture = command(net, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start filterctl capture");
    let done = during();
    let out = capture
        .wait_with_output()
        .expect("wait for filterctl capture");
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    (ok(out), done)
}

/// `replay` of `file` with `rules` gives every frame the verdict its
/// comment in `comments` records.
fn replays_to(net: &TestNet, rules: &str, file: &str, comments: &[String]) {
    let replay: Value =
        serde_json::from_str(&ok(run(net, &["replay", "--rules", rules, "--json", file])))
            .expect("replay --json");
    assert_eq!(replay["schema_version"], 1);
    let frames = replay["frames"].as_array().expect("frames");
    assert_eq!(frames.len(), comments.len());
    for (f, c) in frames.iter().zip(comments) {
        assert_eq!(f["action"], "drop", "{f}");
        let expected = match f["rule"].as_str() {
            Some(rule) => format!("reason={} rule={rule}", f["reason"].as_str().unwrap()),
            None => format!("reason={}", f["reason"].as_str().unwrap()),
        };
        assert_eq!(&expected, c, "{f}");
    }
}

#[test]
fn captures_are_bounded_labelled_and_replay_to_their_verdicts() {
    common::require_bpf();
    let net = TestNet::new("cap").expect("create test namespaces");
    let dir = TempDir::new("capture");
    let rules = dir.write("rules.toml", RULES);
    let iface = net.victim_if.clone();
    ok(run(&net, &["load", "--iface", &iface, "--rules", &rules]));

    // 1: everything dropped, at most 25 frames a second for 2 seconds.
    let all = dir.path().join("all.pcapng");
    let all = all.to_str().unwrap();
    let (said, ()) = capture_with_traffic(
        &net,
        &[
            "capture",
            "--iface",
            &iface,
            "--max-pps",
            "25",
            "--duration",
            "2",
            "-w",
            all,
        ],
        || (),
    );
    let got = comments(all);
    // Two seconds can span three one-second windows of the bound.
    assert!(
        (10..=75).contains(&got.len()),
        "{} frames for --max-pps 25 over 2 s: {said}",
        got.len()
    );
    assert!(
        said.contains(&format!("{} dropped frames", got.len())),
        "{said}"
    );
    for c in &got {
        assert!(
            c == "reason=rule_drop rule=ntp-reflection" || c == "reason=deny_drop",
            "a frame that was not dropped, or unlabelled: {c:?}"
        );
    }
    assert!(got.iter().any(|c| c.contains("rule_drop")), "{got:?}");
    assert!(got.iter().any(|c| c.contains("deny_drop")), "{got:?}");

    // 2: one reason, a fixed count.
    let denied = dir.path().join("denied.pcapng");
    let denied = denied.to_str().unwrap();
    capture_with_traffic(
        &net,
        &[
            "capture",
            "--iface",
            &iface,
            "--reason",
            "deny_drop",
            "--count",
            "5",
            "--duration",
            "20",
            "-w",
            denied,
        ],
        || (),
    );
    assert_eq!(comments(denied), vec!["reason=deny_drop"; 5]);

    // 3: the capture replays to the verdicts it records.
    replays_to(&net, &rules, all, &got);

    // 4: a capture runs on across a reload: the new generation copies
    // frames as soon as it enforces (each generation has its own switch).
    let across = dir.path().join("across.pcapng");
    let across = across.to_str().unwrap();
    let (_, reloaded) = capture_with_traffic(
        &net,
        &[
            "capture",
            "--iface",
            &iface,
            "--duration",
            "4",
            "-w",
            across,
        ],
        || {
            std::thread::sleep(std::time::Duration::from_secs(1));
            ok(run(&net, &["reload", "--iface", &iface, "--rules", &rules]));
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        },
    );
    let times = Command::new("tshark")
        .args(["-r", across, "-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .expect("run tshark");
    let after = String::from_utf8(times.stdout)
        .unwrap()
        .lines()
        .filter(|t| t.parse::<f64>().is_ok_and(|t| t > reloaded + 0.5))
        .count();
    // Half a second after: copies of the old generation are written out
    // by then. And the frames' times are the file's own (tshark reads
    // them with the resolution the file states).
    assert!(after > 0, "no frame copied after the reload");

    // 5: an unknown reason is refused with the allowed ones.
    let bad = run(
        &net,
        &["capture", "--iface", &iface, "--reason", "oops", "-w", all],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("allowed are"),
        "{err}"
    );
}
