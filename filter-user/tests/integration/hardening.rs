//! The control plane under concurrent writers, tampered pins and careless
//! commands: one writer at a time per interface, state that is never lost
//! silently, bans behind the lockout guard, pin folders nobody else can
//! plant, no bpffs mounted where it would vanish. Needs root.

use crate::common;

use std::{
    fs::Permissions,
    os::unix::fs::{PermissionsExt as _, chown},
    path::Path,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use aya::maps::MapData;
use filter_testkit::net::TestNet;
use serde_json::Value;

use common::{
    cli::{TempDir, command, failed, ok, reason, run, status},
    daemon::Daemon,
};

const RULES_A: &str = r#"
[[rule]]
name = "ntp-a"
protocol = "udp"
src_port = 123
action = "drop"
"#;

const RULES_B: &str = r#"
[per_source]
pps = 100000
[[rule]]
name = "ssdp-b"
protocol = "udp"
src_port = 1900
action = "drop"
"#;

/// The generation folders of the interface's pins.
fn generation_dirs(net: &TestNet) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(net.pin_root.join(&net.victim_if))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every command that reads or writes the interface works, and exactly one
/// complete generation is pinned: the one the link runs.
fn assert_one_complete_generation(net: &TestNet, rules: &str) {
    let s = status(net);
    assert_eq!(s["stale_generations"], Value::Array(vec![]), "{s}");
    assert_eq!(
        generation_dirs(net),
        vec![format!("gen-{}", s["generation"])],
        "{s}"
    );
    ok(run(net, &["stats", "--json"]));
    ok(run(net, &["top"]));
    ok(run(
        net,
        &["diff", "--iface", &net.victim_if, "--rules", rules],
    ));
    ok(run(net, &["ban", "198.51.100.77", "--for", "1m"]));
    ok(run(net, &["unban", "198.51.100.77"]));
    ok(run(net, &["mode", "--iface", &net.victim_if, "enforce"]));
}

/// `filterctl serve` following `watched` for the victim's interface.
fn serve_watching(net: &TestNet, files: &TempDir, watched: &str) -> Daemon {
    Daemon::spawn(
        command(
            net,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--watch",
                &format!("{}={watched}", net.victim_if),
            ],
        ),
        files.path().join("serve.log"),
    )
}

/// A reload either ran or was told why not; never anything else.
fn reload_outcome(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("another filterctl"),
        "a concurrent reload failed otherwise: {err}"
    );
}

#[test]
fn concurrent_writers_leave_exactly_one_complete_generation() {
    common::require_bpf();
    let net = TestNet::new("cnc").unwrap();
    let files = TempDir::new("cnc");
    let a = files.write("a.toml", RULES_A);
    let b = files.write("b.toml", RULES_B);
    let watched = files.write("watched.toml", RULES_A);
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &a],
    ));
    let mut daemon = serve_watching(&net, &files, &watched);
    for round in 0..6 {
        // The watched file changes while operators reload by hand.
        let next = if round % 2 == 0 { RULES_B } else { RULES_A };
        std::fs::write(&watched, format!("{next}\n# round {round}\n")).unwrap();
        let children: Vec<_> = (0..4)
            .map(|i| {
                let file = if i % 2 == 0 { &a } else { &b };
                command(
                    &net,
                    &["reload", "--iface", &net.victim_if, "--rules", file],
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        for c in children {
            reload_outcome(&c.wait_with_output().unwrap());
        }
        // Let serve's reload of the changed file land too.
        std::thread::sleep(Duration::from_millis(1500));
        daemon.assert_running();
        assert_one_complete_generation(&net, &a);
    }
    drop(daemon);

    // Unload racing reloads: either order is fine, a half state is not.
    let racers: Vec<_> = (0..3)
        .map(|i| {
            let args: Vec<&str> = if i == 1 {
                vec!["unload", "--iface", &net.victim_if]
            } else {
                vec!["reload", "--iface", &net.victim_if, "--rules", &b]
            };
            command(&net, &args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in racers {
        let out = r.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("no filter") || err.contains("another filterctl"),
            "{err}"
        );
    }
    assert!(
        !net.pin_root.join(&net.victim_if).exists(),
        "unload left pins behind"
    );
    let ip = TestNet::command_in(&net.victim_ns, "ip")
        .args(["-d", "link", "show", &net.victim_if])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&ip.stdout);
    assert!(
        !link.contains("prog/xdp"),
        "an XDP program stayed attached: {link}"
    );
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &a],
    ));
    assert_one_complete_generation(&net, &a);
}

#[test]
fn lost_state_pins_and_resized_limiters_are_never_silent() {
    common::require_bpf();
    let net = TestNet::new("sta").unwrap();
    let files = TempDir::new("sta");
    let a = files.write("a.toml", RULES_A);
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &a],
    ));
    let dir = net.pin_root.join(&net.victim_if);

    // A reload after the COUNTERS pin was deleted would start the counters
    // from zero: refused unless asked for.
    let before = status(&net)["generation"].clone();
    std::fs::remove_file(dir.join("COUNTERS")).unwrap();
    let err = failed(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &a],
    ));
    assert!(err.contains("state maps COUNTERS are missing"), "{err}");
    assert!(err.contains("previous rules are still enforcing"), "{err}");
    assert_eq!(status(&net)["generation"], before);
    ok(run(
        &net,
        &[
            "reload",
            "--iface",
            &net.victim_if,
            "--rules",
            &a,
            "--reset-state",
        ],
    ));
    assert!(dir.join("COUNTERS").exists());

    // A new table size rebuilds the limiter, and diff says so first.
    let size = |dir: &Path| {
        MapData::from_pin(dir.join("SOURCES"))
            .unwrap()
            .info()
            .unwrap()
            .max_entries()
    };
    let resized = files.write(
        "r.toml",
        &format!("[sources]\ntable_size = 4096\n{RULES_A}"),
    );
    assert_ne!(size(&dir), 4096);
    let plan = ok(run(
        &net,
        &["diff", "--iface", &net.victim_if, "--rules", &resized],
    ));
    assert!(plan.contains("~ sources.table_size:"), "{plan}");
    assert!(plan.contains("-> 4096"), "{plan}");
    ok(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &resized],
    ));
    assert_eq!(size(&dir), 4096);
    let plan = ok(run(
        &net,
        &["diff", "--iface", &net.victim_if, "--rules", &resized],
    ));
    assert_eq!(plan, "no changes\n");
    ok(run(&net, &["top"]));

    // An older build kept its counters in two maps: per-CPU STATS by
    // reason, and UDP_PORTS, a shard of port counters per CPU. The reload
    // that upgrades carries their totals over and removes them.
    let cpus = aya::util::nr_cpus().unwrap();
    std::fs::remove_file(dir.join("COUNTERS")).unwrap();
    let mut stats = aya::maps::PerCpuArray::<MapData, [u64; 2]>::create(17, 0).unwrap();
    let per_cpu = |v: [u64; 2]| aya::maps::PerCpuValues::try_from(vec![v; cpus]).unwrap();
    stats.set(0, per_cpu([5, 500]), 0).unwrap();
    stats.set(13, per_cpu([7, 700]), 0).unwrap();
    stats.pin(dir.join("STATS")).unwrap();
    let mut ports = aya::maps::Array::<MapData, u64>::create(65536 * cpus as u32, 1 << 10).unwrap();
    ports.set(123, 9, 0).unwrap();
    ports.pin(dir.join("UDP_PORTS")).unwrap();
    ok(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &a],
    ));
    assert!(!dir.join("STATS").exists() && !dir.join("UDP_PORTS").exists());
    // Neighbour discovery on the link passes meanwhile; nothing here is
    // unsolicited.
    assert!(reason(&net, "pass") >= 5 * cpus as u64);
    assert_eq!(reason(&net, "unsolicited_reply"), 7 * cpus as u64);
    let counters = MapData::from_pin(dir.join("COUNTERS")).unwrap();
    let packets = filterctl::filter::observe::counters::read_packets(&counters).unwrap();
    assert_eq!(packets[123], 9);
    // Once carried over, they stay, once: the next reload adopts nothing.
    ok(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &a],
    ));
    assert_eq!(reason(&net, "unsolicited_reply"), 7 * cpus as u64);

    // A build with one reason fewer (16 and the monitor slot), on a
    // machine with one CPU more: its blocks are of another shape, and the
    // reload that upgrades makes the array anew with their totals.
    const OLD_WORDS: usize = 2 * 17 + 65536;
    std::fs::remove_file(dir.join("COUNTERS")).unwrap();
    let mut old =
        aya::maps::Array::<MapData, [u64; OLD_WORDS]>::create(cpus as u32 + 2, 1 << 10).unwrap();
    let mut block: Box<[u64; OLD_WORDS]> = vec![0u64; OLD_WORDS].try_into().unwrap();
    block[2 * 13] = 11; // unsolicited_reply
    block[2 * 16] = 3; // the monitor slot
    block[2 * 17 + 123] = 4; // packets from port 123
    old.set(0, block.as_ref(), 0).unwrap();
    old.set(cpus as u32 + 1, block.as_ref(), 0).unwrap();
    old.pin(dir.join("COUNTERS")).unwrap();
    ok(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &a],
    ));
    assert_eq!(reason(&net, "unsolicited_reply"), 22);
    assert_eq!(reason(&net, "reflected_to_service"), 0);
    let stats: Value = serde_json::from_str(&ok(run(&net, &["stats", "--json"]))).unwrap();
    assert_eq!(
        stats["interfaces"][0]["monitor_passed"]["packets"], 6,
        "{stats}"
    );
    let counters = MapData::from_pin(dir.join("COUNTERS")).unwrap();
    let packets = filterctl::filter::observe::counters::read_packets(&counters).unwrap();
    assert_eq!(packets[123], 8);
}

#[test]
fn a_failure_after_the_switch_says_the_new_rules_run() {
    common::require_bpf();
    let net = TestNet::new("aft").unwrap();
    let files = TempDir::new("aft");
    let a = files.write("a.toml", RULES_A);
    let b = files.write("b.toml", RULES_B);
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &a],
    ));
    let out = command(&net, &["reload", "--iface", &net.victim_if, "--rules", &b])
        .env("FILTERCTL_FAILPOINT", "after-switch:fail")
        .output()
        .unwrap();
    let err = failed(out);
    assert!(err.contains("runs the new rules"), "{err}");
    assert!(!err.contains("previous rules are still enforcing"), "{err}");
    assert_eq!(status(&net)["rules_source"].as_str().unwrap(), b);
}

#[test]
fn bans_go_through_the_lockout_guard() {
    common::require_bpf();
    let net = TestNet::new("ban").unwrap();
    ok(run(&net, &["load", "--iface", &net.victim_if]));
    let err = failed(run(&net, &["ban", "0.0.0.0/0", "--for", "1m"]));
    assert!(err.contains("covers every source"), "{err}");
    // 192.0.2.1 is the victim's own address.
    let err = failed(run(&net, &["ban", "192.0.2.0/24", "--for", "1m"]));
    assert!(
        err.contains("covers 192.0.2.1, an address of this host"),
        "{err}"
    );
    // A neighbour's /128, which the kernel keys by its /64: the victim's.
    let err = failed(run(&net, &["ban", "2001:db8::5", "--for", "1m"]));
    assert!(err.contains("2001:db8::1"), "{err}");
    let top: Value = serde_json::from_str(&ok(run(&net, &["top", "--json"]))).unwrap();
    assert_eq!(
        top["interfaces"][0]["sources"],
        Value::Array(vec![]),
        "{top}"
    );
    ok(run(
        &net,
        &["ban", "192.0.2.0/24", "--for", "1m", "--force"],
    ));
    ok(run(&net, &["unban", "192.0.2.0/24"]));
}

#[test]
fn status_says_when_the_interface_is_gone() {
    common::require_bpf();
    let net = TestNet::new("gon").unwrap();
    ok(run(&net, &["load", "--iface", &net.victim_if]));
    assert_eq!(status(&net)["interface_present"], true);
    let del = TestNet::command_in(&net.victim_ns, "ip")
        .args(["link", "del", &net.victim_if])
        .status()
        .unwrap();
    assert!(del.success());
    assert_eq!(status(&net)["interface_present"], false);
    let text = ok(run(&net, &["status"]));
    assert!(
        text.contains("is gone: the filter is attached to nothing"),
        "{text}"
    );
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}

#[test]
fn serve_restores_the_watched_rules_after_an_out_of_band_reload() {
    common::require_bpf();
    let net = TestNet::new("oob").unwrap();
    let files = TempDir::new("oob");
    files.write("deny.txt", "203.0.113.0/24\n");
    let watched = files.write("w.toml", &format!("deny_files = [\"deny.txt\"]\n{RULES_A}"));
    let other = files.write("o.toml", RULES_B);
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &watched],
    ));
    let digest = status(&net)["rules_digest"].clone();
    let mut daemon = serve_watching(&net, &files, &watched);
    std::thread::sleep(Duration::from_millis(1500));
    ok(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &other],
    ));
    assert_ne!(status(&net)["rules_digest"], digest);
    // The list file is written again with the same content: the rule set's
    // digest is the one serve loaded, but not the one that runs.
    std::fs::write(files.path().join("deny.txt"), "203.0.113.0/24\n").unwrap();
    wait_for("serve to restore the watched rules", 10, || {
        daemon.assert_running();
        status(&net)["rules_digest"] == digest
    });
}

#[test]
fn pin_folders_someone_else_made_are_refused_or_ignored() {
    common::require_bpf();
    let net = TestNet::new("sqt").unwrap();
    // A pin root others can write to: load refuses it. (One that another
    // user owns is that user's, the service's: root acts on it and hands
    // what it makes to that user; see capabilities.rs.)
    std::fs::create_dir_all(&net.pin_root).unwrap();
    let mode = |m| std::fs::set_permissions(&net.pin_root, Permissions::from_mode(m)).unwrap();
    mode(0o777);
    let err = failed(run(&net, &["load", "--iface", &net.victim_if]));
    assert!(err.contains("can be written by other users"), "{err}");
    assert!(!net.pin_root.join(&net.victim_if).exists());
    mode(0o700);

    // A decoy interface folder: every command still works for the real one.
    ok(run(&net, &["load", "--iface", &net.victim_if]));
    let decoy = net.pin_root.join("decoy0");
    std::fs::create_dir(&decoy).unwrap();
    chown(&decoy, Some(65534), Some(65534)).unwrap();
    let all: Value = serde_json::from_str(&ok(run(&net, &["status", "--json"]))).unwrap();
    assert_eq!(all["interfaces"].as_array().unwrap().len(), 1, "{all}");
    ok(run(&net, &["stats"]));
    ok(run(&net, &["ban", "198.51.100.9", "--for", "1m"]));
    // A decoy planted where the interface's own folder would go.
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
    let planted = net.pin_root.join(&net.victim_if);
    std::fs::create_dir(&planted).unwrap();
    chown(&planted, Some(65534), Some(65534)).unwrap();
    let err = failed(run(&net, &["load", "--iface", &net.victim_if]));
    assert!(err.contains("belongs to user 65534"), "{err}");
}

#[test]
fn load_refuses_a_bpffs_that_would_vanish_with_its_mount_namespace() {
    common::require_bpf();
    let net = TestNet::new("mnt").unwrap();
    // A private mount namespace without the host's bpffs, as in a container
    // that was not given /sys/fs/bpf.
    let script = format!(
        "while mountpoint -q /sys/fs/bpf; do umount -l /sys/fs/bpf || exit 9; done; \
         exec {} --pin-root {} load --iface {}",
        common::cli::FILTERCTL,
        net.pin_root.display(),
        net.victim_if
    );
    let out = TestNet::command_in(&net.victim_ns, "unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = failed(out);
    assert!(err.contains("in this mount namespace"), "{err}");
    // Nothing was attached either.
    let ip = TestNet::command_in(&net.victim_ns, "ip")
        .args(["-d", "link", "show", &net.victim_if])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&ip.stdout).contains("prog/xdp"));
}

#[test]
fn top_stops_counting_the_over_time_of_a_source_that_stopped() {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use filter_testkit::net::{Sink, VICTIM_V4, send_udp};

    common::require_bpf();
    let net = TestNet::new("top").unwrap();
    let files = TempDir::new("top");
    let rules = files.write(
        "r.toml",
        &format!("[per_source]\npps = 10\nburst_packets = 1\n{RULES_A}"),
    );
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    let target = SocketAddr::new(IpAddr::V4(VICTIM_V4), 9000);
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[target]))
        .unwrap()
        .unwrap();
    let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 80)), 5000);
    TestNet::in_ns(&net.attacker_ns, || send_udp(src, target, b"x", 50))
        .unwrap()
        .unwrap();
    assert!(sink.drain()[&target] < 50);
    let entry = |net: &TestNet| -> Value {
        let top: Value = serde_json::from_str(&ok(run(net, &["top", "--json"]))).unwrap();
        top["interfaces"][0]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == "198.51.100.80/32")
            .cloned()
            .unwrap_or_else(|| panic!("no entry for the source: {top}"))
    };
    assert!(entry(&net)["over_for_s"].is_f64(), "{}", entry(&net));
    // A tenth of a second per packet: a second after its allowance ran
    // out, the source is no longer over; its drops stay counted.
    std::thread::sleep(Duration::from_millis(2500));
    let e = entry(&net);
    assert!(e["over_for_s"].is_null(), "{e}");
    assert!(e["dropped"].as_u64().unwrap() > 0, "{e}");
}

/// As on a fresh VM: nothing mounted at /sys/fs/bpf, and PID 1's mount
/// namespace unreadable even for root (faked here: most machines can read
/// it), filterctl started from a shell of the namespace it runs in. Then
/// `load` mounts a bpffs, says why in one line, and the filter runs.
#[test]
fn load_mounts_a_bpffs_where_pid_1_cannot_be_read() {
    common::require_bpf();
    let net = TestNet::new("mnr").unwrap();
    let (f, root, i) = (
        common::cli::FILTERCTL,
        net.pin_root.display().to_string(),
        &net.victim_if,
    );
    // Not `exec`: filterctl's parent is the shell, in the same namespace.
    let script = format!(
        "while mountpoint -q /sys/fs/bpf; do umount -l /sys/fs/bpf || exit 9; done; \
         {f} --pin-root {root} load --iface {i} || exit 1; \
         mountpoint -q /sys/fs/bpf || exit 2; \
         {f} --pin-root {root} status | grep -q 'generation 1' || exit 3; \
         {f} --pin-root {root} unload --iface {i} || exit 4"
    );
    let out = TestNet::command_in(&net.victim_ns, "unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("FILTERCTL_FAKE", "init-ns-unreadable")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(
        err.contains("mounted a bpffs at /sys/fs/bpf") && err.contains("cannot be read"),
        "{err}"
    );
}

/// `ip netns exec` hides the host's bpffs behind a /sys of its own: load
/// is refused, and status does not claim that no filter runs; both name
/// --netns, which works.
#[test]
fn ip_netns_exec_is_refused_naming_the_netns_option() {
    common::require_bpf();
    let net = TestNet::new("ipx").unwrap();
    let in_ip_netns_exec = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &net.victim_ns, common::cli::FILTERCTL])
            .arg("--pin-root")
            .arg(&net.pin_root)
            .args(args)
            .output()
            .unwrap()
    };
    let hint = format!("filterctl --netns {}", net.victim_ns);
    let err = failed(in_ip_netns_exec(&["load", "--iface", &net.victim_if]));
    assert!(err.contains(&hint), "{err}");
    let err = failed(in_ip_netns_exec(&["status"]));
    assert!(err.contains(&hint), "{err}");
    assert!(!net.pin_root.join(&net.victim_if).exists());
}

// What git does as root with a repository that someone else controls (see
// filter::lifecycle::provenance): root's own repository is read and its
// fsmonitor hook does not run; another user's is not trusted.
mod provenance {
    use std::{
        os::unix::fs::{PermissionsExt as _, chown},
        path::Path,
        process::Command,
    };

    use filterctl::filter::lifecycle::provenance::{git_state, git_state_in};

    fn sh(dir: &Path, script: &str) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }

    /// A repository whose fsmonitor hook leaves a mark when git runs it.
    fn hostile_repo(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("flt-git-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mark = dir.with_extension("pwned");
        let _ = std::fs::remove_file(&mark);
        std::fs::write(dir.join("rules.toml"), "# rules\n").unwrap();
        std::fs::write(
            dir.join("hook.sh"),
            format!("#!/bin/sh\ntouch {}\n", mark.display()),
        )
        .unwrap();
        std::fs::set_permissions(dir.join("hook.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        sh(
            &dir,
            "git init -q . && git -c user.name=t -c user.email=t@example.org commit -q --allow-empty -m x \
             && git add rules.toml && git -c user.name=t -c user.email=t@example.org commit -q -m rules \
             && git config core.fsmonitor \"$PWD/hook.sh\"",
        );
        (dir, mark)
    }

    #[test]
    fn a_hostile_repository_runs_nothing_and_another_users_is_not_trusted() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test checks what git does as root: run `sudo cargo xtask test`");
        }
        // Root's own repository: read, and its fsmonitor hook does not run.
        let (dir, mark) = hostile_repo("root");
        let (commit, modified) = git_state(&dir.join("rules.toml")).expect("a commit");
        assert_eq!(commit.len(), 40);
        assert!(!modified);
        assert!(!mark.exists(), "the fsmonitor hook ran");
        // The same hook also has to be harmless when a user owns the
        // repository and root runs under that user's sudo.
        for entry in walk(&dir) {
            chown(&entry, Some(65534), Some(65534)).unwrap();
        }
        let state = git_state_in(&dir.join("rules.toml"), &[("HOME", dir.to_str().unwrap())]);
        assert_eq!(state, None, "git trusted a repository root does not own");
        assert!(!mark.exists(), "the fsmonitor hook ran");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![dir.to_path_buf()];
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
