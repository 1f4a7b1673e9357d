//! `filterctl capture` on a live interface: a flood of reflection and
//! denied traffic, with benign traffic beside it; the pcapng file opened
//! with tshark holds no more frames than --max-pps allows, only dropped
//! ones, each with its reason (and rule) in its comment; a capture of one
//! reason holds only it; a capture runs on across a reload; and
//! `filterctl replay` of the file gives every frame the verdict its comment
//! records. Capture files are new files of mode 0600 (a symbolic link
//! planted where one goes is refused, its target untouched; a failed
//! capture removes its file); a capture outlives five reloads in a row whose
//! old generations vanish while it reads them; and during adaptive blocks
//! stats, /metrics and capture comments name every rule, the blocks' and
//! the file's. Needs root.

use crate::common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use filter_common::CAPTURE_FLAG;
use filter_testkit::{
    frames::ntp_monlist_reply,
    net::{TestNet, VICTIM_V4, send_udp},
};
use filterctl::{
    filter::lifecycle::reload::reload,
    rules::{
        self,
        adaptive::{AdaptiveBlock, with_blocks},
    },
    state::{PinRoot, layout::generation_dir},
};
use serde_json::Value;

use common::{
    cli::{TempDir, command, failed, ok, run, status},
    daemon::{Daemon, get, parse_openmetrics, series},
};

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
                send_udp(from([198, 51, 100, 12], 5353), to(53), b"benign", 20)?;
                // Dropped only while an adaptive block holds its port.
                send_udp(from([198, 51, 100, 14], 4500), to(9002), b"ike", 20)
            })
            .unwrap()
            .expect("send traffic");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
}

/// One field of every frame of a pcapng file, read by tshark.
fn tshark_field(file: &str, field: &str) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-r", file, "-T", "fields", "-e", field])
        .output()
        .expect("run tshark (Debian package tshark: cargo xtask setup)");
    assert!(out.status.success(), "tshark: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Frame comments of a pcapng file.
fn comments(file: &str) -> Vec<String> {
    tshark_field(file, "frame.comment")
}

/// Times (seconds since the epoch) of the frames of a pcapng file.
fn frame_times(file: &str) -> Vec<f64> {
    tshark_field(file, "frame.time_epoch")
        .iter()
        .map(|t| t.parse().unwrap_or_else(|_| panic!("a frame time: {t:?}")))
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
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
            std::thread::sleep(Duration::from_secs(1));
            ok(run(&net, &["reload", "--iface", &iface, "--rules", &rules]));
            unix_now()
        },
    );
    let after = frame_times(across)
        .into_iter()
        .filter(|t| *t > reloaded + 0.5)
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

/// A pin of the generation running on the test's interface.
fn running_pin(net: &TestNet, name: &str) -> PathBuf {
    let generation = status(net)["generation"].as_u64().unwrap() as u32;
    generation_dir(
        &PinRoot::new(&net.pin_root).iface_dir(&net.victim_if),
        generation,
    )
    .join(name)
}

/// What an overwrite or a change of owner or mode would change.
fn fingerprint(path: &Path) -> (u32, u32, u32, u64, i64, i64, Vec<u8>) {
    let m = std::fs::metadata(path).unwrap();
    (
        m.uid(),
        m.gid(),
        m.mode(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        std::fs::read(path).unwrap(),
    )
}

#[test]
fn capture_files_are_new_and_private_and_captures_outlive_reloads() {
    common::require_bpf();
    let net = TestNet::new("cpf").expect("create test namespaces");
    let dir = TempDir::new("capture-files");
    let rules = dir.write("rules.toml", RULES);
    let iface = net.victim_if.clone();
    ok(run(&net, &["load", "--iface", &iface, "--rules", &rules]));

    // 1: a symbolic link, another user's, planted where the file goes and
    // pointing at that user's file; and the file itself: both refused by
    // name, the file untouched.
    let decoy = dir.write("decoy", "another user's file\n");
    std::os::unix::fs::chown(&decoy, Some(65534), Some(65534)).unwrap();
    let link = dir.path().join("link.pcapng");
    std::os::unix::fs::symlink(&decoy, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let before = fingerprint(Path::new(&decoy));
    for (path, what) in [
        (link.to_str().unwrap(), "is a symbolic link"),
        (decoy.as_str(), "already exists"),
    ] {
        let err = failed(run(
            &net,
            &["capture", "--iface", &iface, "--duration", "1", "-w", path],
        ));
        assert!(err.contains(path) && err.contains(what), "{err}");
    }
    assert_eq!(fingerprint(Path::new(&decoy)), before, "the decoy changed");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());

    // 2: a capture that fails removes its file, and says so.
    let none = dir.path().join("none.pcapng");
    let err = failed(run(
        &net,
        &[
            "capture",
            "--iface",
            "nosuch0",
            "-w",
            none.to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains("no filter loaded on nosuch0") && err.contains("was removed"),
        "{err}"
    );
    assert!(!none.exists(), "a failed capture left its file");

    // 3: five reloads in a row during a capture. Before each, the running
    // generation's capture switch is unpinned, as a reload unpins the old
    // generation: the capture's reads of it fail until the new generation
    // runs, and are then made there.
    let across = dir.path().join("reloads.pcapng");
    let across = across.to_str().unwrap();
    let t0 = Instant::now();
    let (said, reloaded) = capture_with_traffic(
        &net,
        &[
            "capture",
            "--iface",
            &iface,
            "--duration",
            "12",
            "-w",
            across,
        ],
        || {
            std::thread::sleep(Duration::from_millis(500));
            for _ in 0..5 {
                std::fs::remove_file(running_pin(&net, CAPTURE_FLAG.symbol))
                    .expect("unpin the running generation's capture switch");
                std::thread::sleep(Duration::from_millis(300));
                ok(run(&net, &["reload", "--iface", &iface, "--rules", &rules]));
            }
            (unix_now(), t0.elapsed())
        },
    );
    let (last_reload, took) = reloaded;
    eprintln!("five reloads in {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the reloads took {took:?}: the 12 s capture may end before frames after them are copied"
    );
    assert!(said.contains("dropped frames written"), "{said}");
    let got = comments(across);
    for c in &got {
        assert!(
            c == "reason=rule_drop rule=ntp-reflection" || c == "reason=deny_drop",
            "{c:?}"
        );
    }
    let after = frame_times(across)
        .into_iter()
        .filter(|t| *t > last_reload + 0.5)
        .count();
    assert!(after > 0, "no frame copied after the last reload: {said}");
    let mode = std::fs::metadata(across).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "capture file mode {mode:o}");

    // 4: a switch that stays unpinned (no reload makes it again) ends the
    // capture after a few seconds, with the reason, and its file goes.
    std::fs::remove_file(running_pin(&net, CAPTURE_FLAG.symbol)).unwrap();
    let stuck = dir.path().join("stuck.pcapng");
    let started = Instant::now();
    let err = failed(run(
        &net,
        &[
            "capture",
            "--iface",
            &iface,
            "--duration",
            "30",
            "-w",
            stuck.to_str().unwrap(),
        ],
    ));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("stayed unreadable")
            && err.contains(CAPTURE_FLAG.symbol)
            && err.contains("was removed"),
        "{err}"
    );
    assert!(!stuck.exists(), "a failed capture left its file");
}

const ADAPTIVE_RULES: &str = r#"deny = ["203.0.113.0/24"]

[adaptive]

[[rule]]
name = "ssdp-reflection"
protocol = "udp"
src_port = 1900
action = "drop"

[[rule]]
name = "ntp-reflection"
protocol = "udp"
src_port = 123
action = "drop"
"#;

#[test]
fn every_rule_is_named_during_adaptive_blocks() {
    common::require_bpf();
    let net = TestNet::new("cpa").expect("create test namespaces");
    let dir = TempDir::new("capture-adaptive");
    let path = dir.write("rules.toml", ADAPTIVE_RULES);
    let iface = net.victim_if.clone();
    ok(run(&net, &["load", "--iface", &iface, "--rules", &path]));

    // The reload serve makes for a surge from UDP source port 4500: no pass
    // rule matches it, so the block comes first, before the file's rules.
    let set = rules::parse("rules.toml", ADAPTIVE_RULES).expect("valid rules");
    let block = AdaptiveBlock {
        port: 4500,
        since_unix: unix_now() as u64,
        trigger_pps: 50_000,
        trigger_share_percent: 90,
    };
    let blocked = with_blocks(&set, &[block]).expect("rules with the block");
    let root = PinRoot::new(&net.pin_root);
    TestNet::in_ns(&net.victim_ns, || {
        reload(&root, &iface, &blocked, Path::new(&path))
            .unwrap_or_else(|e| panic!("reload with the block: {e:?}"))
    })
    .unwrap();

    // status counts the file's rules and lists the block apart.
    let st = status(&net);
    assert_eq!(st["rule_count"], 2, "{st}");
    assert_eq!(st["adaptive_blocks"][0]["port"], 4500, "{st}");

    // stats: the block, then every rule of the file.
    let stats: Value = serde_json::from_str(&ok(run(&net, &["stats", "--json"]))).unwrap();
    let names: Vec<&str> = stats["interfaces"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let expected = ["adaptive-udp-4500", "ssdp-reflection", "ntp-reflection"];
    assert_eq!(names, expected, "{stats}");

    // Capture comments: the block's frames and the last file rule's frames
    // by their rules' names; no rule drop without a rule.
    let file = dir.path().join("blocked.pcapng");
    let file = file.to_str().unwrap();
    capture_with_traffic(
        &net,
        &[
            "capture",
            "--iface",
            &iface,
            "--reason",
            "rule_drop",
            "--duration",
            "2",
            "-w",
            file,
        ],
        || (),
    );
    let got = comments(file);
    for rule in ["adaptive-udp-4500", "ntp-reflection"] {
        let c = format!("reason=rule_drop rule={rule}");
        assert!(got.contains(&c), "no {c:?} in {got:?}");
    }
    for c in &got {
        assert!(c.contains(" rule="), "a rule drop without a rule: {c:?}");
    }

    // /metrics: a series for every rule.
    let (_daemon, port) = Daemon::start(
        &net,
        dir.path().join("serve.log"),
        &["--iface", &iface, "--rules", &path],
    );
    let m = get(&net, port, "/metrics").expect("/metrics answers");
    assert_eq!(m.status, 200, "{}", m.body);
    let expo = parse_openmetrics(&m.body);
    for rule in expected {
        let s = series(
            "filterctl_rule_packets_total",
            &[("interface", &iface), ("rule", rule), ("action", "drop")],
        );
        assert!(expo.samples.contains_key(&s), "no {s:?} in\n{}", m.body);
    }
}
