//! What an operator does under fire, on a live interface: ban and unban
//! sources and prefixes, see who is limited or banned, switch to monitor mode
//! and back without a reload. Needs root.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use filter_testkit::net::{Sink, TestNet, VICTIM_V4, send_udp};
use serde_json::Value;

use common::cli::{FILTERCTL, TempDir, ok, run};

/// Sends 10 datagrams from `src` and returns how many arrived.
fn delivered(net: &TestNet, src: Ipv4Addr, sport: u16) -> u64 {
    let target = SocketAddr::new(IpAddr::V4(VICTIM_V4), 9000);
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[target]))
        .unwrap()
        .unwrap();
    TestNet::in_ns(&net.attacker_ns, || {
        send_udp(SocketAddr::new(src.into(), sport), target, b"hello", 10)
    })
    .unwrap()
    .unwrap();
    sink.drain()[&target]
}

fn reason(net: &TestNet, name: &str) -> u64 {
    let v: Value = serde_json::from_str(&ok(run(net, &["stats", "--json"]))).unwrap();
    assert_eq!(v["schema_version"], 1, "{v}");
    v["interfaces"][0]["reasons"][name]["packets"]
        .as_u64()
        .unwrap()
}

#[test]
fn bans_apply_at_once_survive_reloads_and_lift() {
    common::require_bpf();
    let net = TestNet::new("ban").expect("create test namespaces");
    let rules = format!("{}/../rules/default.toml", env!("CARGO_MANIFEST_DIR"));
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    let host = Ipv4Addr::new(198, 51, 100, 77);
    let in_prefix = Ipv4Addr::new(203, 0, 113, 5);
    assert_eq!(delivered(&net, host, 5000), 10);

    let out = ok(run(&net, &["ban", "198.51.100.77", "--for", "10m"]));
    assert!(out.contains("banned 198.51.100.77/32 for 10m"), "{out}");
    ok(run(&net, &["ban", "203.0.113.0/24", "--for", "1h"]));
    assert_eq!(delivered(&net, host, 5000), 0);
    assert_eq!(delivered(&net, in_prefix, 5000), 0);
    assert_eq!(reason(&net, "ban_drop"), 20);
    // Unasked NTP replies from the banned prefix are the ban's, although
    // the early verdict judges such frames before the full parse: the ban
    // set its hint bits.
    assert_eq!(delivered(&net, Ipv4Addr::new(203, 0, 113, 9), 123), 0);
    assert_eq!(reason(&net, "ban_drop"), 30);
    assert_eq!(delivered(&net, Ipv4Addr::new(198, 51, 100, 78), 5000), 10);

    let top: Value = serde_json::from_str(&ok(run(&net, &["top", "--json"]))).unwrap();
    assert_eq!(top["schema_version"], 1, "{top}");
    let top = &top["interfaces"][0];
    let sources: Vec<&str> = top["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"198.51.100.77/32"), "{top}");
    assert!(sources.contains(&"203.0.113.0/24"), "{top}");
    let left = top["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "198.51.100.77/32")
        .unwrap()["banned_for_s"]
        .as_f64()
        .unwrap();
    assert!(left > 590.0 && left <= 600.0, "{left}");

    // Bans are state: a reload keeps them, and the new generation's copy
    // of the ban flag says so to its early verdict.
    ok(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &rules],
    ));
    assert_eq!(delivered(&net, host, 5000), 0);
    let before = reason(&net, "ban_drop");
    assert_eq!(delivered(&net, Ipv4Addr::new(203, 0, 113, 9), 123), 0);
    assert_eq!(reason(&net, "ban_drop"), before + 10);

    // A generation of a build before ban hints has no BAN_HINTS pin: a
    // reload makes one, without --reset-state, and its bans, which have
    // no hint bits, still hold against unasked replies (the early verdict
    // stays off for bans, as it was then).
    let hints = net.pin_root.join(&net.victim_if).join("BAN_HINTS");
    std::fs::remove_file(&hints).unwrap();
    ok(run(
        &net,
        &["reload", "--iface", &net.victim_if, "--rules", &rules],
    ));
    assert!(hints.exists(), "BAN_HINTS not made again");
    let before = reason(&net, "ban_drop");
    assert_eq!(delivered(&net, Ipv4Addr::new(203, 0, 113, 9), 123), 0);
    assert_eq!(reason(&net, "ban_drop"), before + 10);

    ok(run(&net, &["unban", "198.51.100.77"]));
    assert_eq!(delivered(&net, host, 5000), 10);
    ok(run(&net, &["unban", "203.0.113.0/24"]));
    assert_eq!(delivered(&net, in_prefix, 5000), 10);
    let err = run(&net, &["unban", "203.0.113.0/24"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("is not banned"));
    let bad = run(&net, &["ban", "203.0.113.0/24", "--for", "forever"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown unit \"forever\""));
    ok(run(&net, &["unload", "--all"]));
}

#[test]
fn monitor_mode_switches_at_once_without_a_reload() {
    common::require_bpf();
    let net = TestNet::new("mon").expect("create test namespaces");
    let rules = format!("{}/../rules/default.toml", env!("CARGO_MANIFEST_DIR"));
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    let st = |net: &TestNet| -> Value {
        serde_json::from_str::<Value>(&ok(run(net, &["status", "--json"]))).unwrap()["interfaces"]
            [0]
        .clone()
    };
    let generation = st(&net)["generation"].clone();
    let reflector = Ipv4Addr::new(198, 51, 100, 9);
    assert_eq!(delivered(&net, reflector, 1900), 0);

    ok(run(&net, &["mode", "--iface", &net.victim_if, "monitor"]));
    assert_eq!(st(&net)["mode"], "monitor");
    assert_eq!(st(&net)["generation"], generation, "mode switch reloaded");
    assert_eq!(delivered(&net, reflector, 1900), 10);
    let v: Value = serde_json::from_str(&ok(run(&net, &["stats", "--json"]))).unwrap();
    let i = &v["interfaces"][0];
    assert_eq!(i["monitor_passed"]["packets"], 10);
    // SSDP replies nobody asked for: the reply guard's drops.
    assert_eq!(
        i["reasons"]["unsolicited_reply"]["packets"], 20,
        "would-drops counted"
    );
    assert_eq!(i["dropped"]["packets"], 10);

    ok(run(&net, &["mode", "--iface", &net.victim_if, "enforce"]));
    assert_eq!(delivered(&net, reflector, 1900), 0);

    // The program reads its mode through the generation's MODE pin: with
    // that pin removed by hand a switch could not reach it, and says so.
    let gen_dir = net
        .pin_root
        .join(&net.victim_if)
        .join(format!("gen-{}", st(&net)["generation"]));
    std::fs::remove_file(gen_dir.join("MODE")).unwrap();
    let out = run(&net, &["mode", "--iface", &net.victim_if, "monitor"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("MODE is missing"),
        "{err}"
    );
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}

#[test]
fn lockout_guard_refuses_rules_that_cut_off_the_host_or_the_operator() {
    common::require_bpf();
    let net = TestNet::new("lck").expect("create test namespaces");
    let files = TempDir::new("lockout");
    let dir = files.path();
    let rule = "[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n";
    // The victim's own address is 192.0.2.1.
    let own = dir.join("own.toml");
    std::fs::write(&own, format!("deny = [\"192.0.2.0/24\"]\n{rule}")).unwrap();
    let out = run(
        &net,
        &[
            "load",
            "--iface",
            &net.victim_if,
            "--rules",
            own.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lock you out") && err.contains("192.0.2.1"),
        "{err}"
    );
    assert!(
        !net.pin_root.join(&net.victim_if).exists(),
        "a refused load left pins"
    );

    // An operator connected over SSH from 198.51.100.50.
    let ssh = dir.join("ssh.toml");
    std::fs::write(
        &ssh,
        format!("{rule}[[rule]]\nname = \"no-ssh\"\nprotocol = \"tcp\"\ndst_port = 22\naction = \"drop\"\n"),
    )
    .unwrap();
    // `load` of the rule dropping the session, from an SSH session: run by
    // `program` with `args` before filterctl's own.
    let load_ssh = |program: &str, args: &[&str]| {
        TestNet::command_in(&net.victim_ns, program)
            .args(args)
            .arg("--pin-root")
            .arg(&net.pin_root)
            .args(["load", "--iface", &net.victim_if, "--rules"])
            .arg(&ssh)
            .env("SSH_CONNECTION", "198.51.100.50 51234 192.0.2.1 22")
            .output()
            .unwrap()
    };
    let out = load_ssh(FILTERCTL, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rule \"no-ssh\"") && err.contains("SSH session"),
        "{err}"
    );
    // Under sudo, whose env_reset drops SSH_CONNECTION: its parents hold it.
    let sudo = [
        "-c",
        "env -u SSH_CONNECTION \"$@\"; exit $?",
        "sh",
        FILTERCTL,
    ];
    let out = load_ssh("sh", &sudo);
    assert!(!out.status.success(), "loaded a rule dropping the session");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rule \"no-ssh\"") && err.contains("a parent of filterctl"),
        "{err}"
    );

    // Forced, it loads; a reload is guarded the same way.
    ok(run(
        &net,
        &[
            "load",
            "--iface",
            &net.victim_if,
            "--rules",
            own.to_str().unwrap(),
            "--force",
        ],
    ));
    let safe = dir.join("safe.toml");
    std::fs::write(&safe, rule).unwrap();
    ok(run(
        &net,
        &[
            "reload",
            "--iface",
            &net.victim_if,
            "--rules",
            safe.to_str().unwrap(),
        ],
    ));
    let out = run(
        &net,
        &[
            "reload",
            "--iface",
            &net.victim_if,
            "--rules",
            own.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}

#[test]
fn diff_plans_a_reload_and_interfaces_keep_their_own_rules() {
    common::require_bpf();
    let net = TestNet::new("dif").expect("create test namespaces");
    // A second interface on the victim, with a rule set of its own.
    let second = format!("{}x", net.victim_if);
    let peer = format!("{}x", net.attacker_if);
    let ip = |args: &[&str]| {
        assert!(
            std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success(),
            "ip {args:?}"
        );
    };
    ip(&[
        "link",
        "add",
        &second,
        "netns",
        &net.victim_ns,
        "type",
        "veth",
        "peer",
        "name",
        &peer,
        "netns",
        &net.attacker_ns,
    ]);
    ip(&["-n", &net.victim_ns, "link", "set", &second, "up"]);
    ip(&["-n", &net.attacker_ns, "link", "set", &peer, "up"]);

    let files = TempDir::new("diff");
    let a = files.write("a.toml", "allow = [\"198.51.100.0/28\"]\n[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n[[rule]]\nname = \"ssdp\"\nprotocol = \"udp\"\nsrc_port = 1900\naction = \"drop\"\n");
    let b = files.write("b.toml", "mode = \"monitor\"\ndeny = [\"203.0.113.0/24\"]\n[[rule]]\nname = \"ssdp\"\nprotocol = \"udp\"\nsrc_port = 1900\naction = \"pass\"\n[[rule]]\nname = \"chargen\"\nprotocol = \"udp\"\nsrc_port = 19\naction = \"drop\"\n");
    let (a, b) = (a.as_str(), b.as_str());
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", a],
    ));
    ok(run(&net, &["load", "--iface", &second, "--rules", b]));

    let plan = ok(run(
        &net,
        &["diff", "--iface", &net.victim_if, "--rules", b],
    ));
    for line in [
        "~ mode: enforce -> monitor",
        "- rule ntp",
        "+ rule chargen",
        "~ rule ssdp: action drop -> pass",
        "- allow 198.51.100.0/28",
        "+ deny 203.0.113.0/24",
    ] {
        assert!(plan.contains(line), "missing {line:?} in:\n{plan}");
    }
    assert_eq!(
        ok(run(&net, &["diff", "--iface", &second, "--rules", b])),
        "no changes\n"
    );
    let json: Value = serde_json::from_str(&ok(run(
        &net,
        &["diff", "--iface", &net.victim_if, "--rules", b, "--json"],
    )))
    .expect("diff --json");
    assert_eq!(json["schema_version"], 1, "{json}");
    let plan = &json["plan"];
    assert!(
        plan["settings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "mode" && c["old"] == "enforce" && c["new"] == "monitor"),
        "{json}"
    );
    assert_eq!(plan["changed"][0]["rule"], "ssdp", "{json}");
    assert_eq!(plan["changed"][0]["fields"][0]["name"], "action", "{json}");

    let status: Value = serde_json::from_str(&ok(run(&net, &["status", "--json"]))).unwrap();
    let by_iface = |i: &str| {
        status["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["interface"] == i)
            .unwrap()
            .clone()
    };
    assert_eq!(by_iface(&net.victim_if)["mode"], "enforce");
    assert_eq!(by_iface(&second)["mode"], "monitor");
    assert_eq!(by_iface(&second)["rule_count"], 2);

    let out = ok(run(&net, &["unload", "--all"]));
    assert!(
        out.contains(&net.victim_if) && out.contains(&second),
        "{out}"
    );
    assert_eq!(ok(run(&net, &["status"])).trim(), "no filter loaded");
}

/// `--netns NAME` runs every command on the interfaces of a named network
/// namespace, with no nsenter or `ip netns exec` around filterctl.
#[test]
fn netns_option_loads_reports_and_unloads_in_a_named_namespace() {
    common::require_bpf();
    let net = TestNet::new("nsn").expect("create test namespaces");
    let filterctl = |args: &[&str]| {
        std::process::Command::new(FILTERCTL)
            .arg("--netns")
            .arg(&net.victim_ns)
            .arg("--pin-root")
            .arg(&net.pin_root)
            .args(args)
            .output()
            .unwrap()
    };
    ok(filterctl(&["load", "--iface", &net.victim_if]));
    let status: Value = serde_json::from_str(&ok(filterctl(&["status", "--json"]))).unwrap();
    let s = &status["interfaces"][0];
    assert_eq!(s["interface"], net.victim_if.as_str(), "{status}");
    assert_eq!(s["interface_present"], true, "{status}");
    // An NTP monlist-sized reply from a reflector, unasked: dropped.
    let reflector = Ipv4Addr::new(198, 51, 100, 7);
    assert_eq!(delivered(&net, reflector, 123), 0);
    let stats: Value = serde_json::from_str(&ok(filterctl(&["stats", "--json"]))).unwrap();
    let dropped = stats["interfaces"][0]["reasons"]["unsolicited_reply"]["packets"]
        .as_u64()
        .unwrap_or(0)
        + stats["interfaces"][0]["reasons"]["rule_drop"]["packets"]
            .as_u64()
            .unwrap_or(0);
    assert_eq!(dropped, 10, "{stats}");
    ok(filterctl(&["unload", "--iface", &net.victim_if]));
    let link = TestNet::command_in(&net.victim_ns, "ip")
        .args(["-d", "link", "show", &net.victim_if])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&link.stdout).contains("prog/xdp"));
    // An unknown namespace is an error that names it.
    let out = std::process::Command::new(FILTERCTL)
        .args(["--netns", "flt-no-such-ns", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no network namespace flt-no-such-ns"),
        "{out:?}"
    );
}

/// `doctor` reports what this machine does, checked against the test's
/// own tries, and each feature that a test fakes off as refused, with the
/// consequence (the reply guard moves to clsact, then stops).
#[test]
fn doctor_reports_this_machine_and_features_forced_off() {
    common::require_bpf();
    let doctor = |fake: &str| -> Value {
        let out = std::process::Command::new(FILTERCTL)
            .args(["doctor", "--json"])
            .env("FILTERCTL_FAKE", fake)
            .output()
            .unwrap();
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|e| panic!("{e}: {out:?}"))
    };
    let runs = |doc: &Value, name: &str| -> Value {
        doc["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {doc}"))["runs"]
            .clone()
    };
    let here = doctor("");
    let tcx_here =
        aya::programs::SchedClassifier::query_tcx("lo", aya::programs::TcAttachType::Egress)
            .is_ok();
    assert_eq!(runs(&here, "tcx"), tcx_here, "{here}");
    assert_eq!(runs(&here, "xdp filter"), true, "{here}");
    assert_eq!(runs(&here, "reply guard"), true, "{here}");
    assert_eq!(runs(&here, "live frames"), live_frames_run(), "{here}");

    let no_tcx = doctor("tcx");
    assert_eq!(runs(&no_tcx, "tcx"), false, "{no_tcx}");
    assert_eq!(runs(&no_tcx, "clsact"), true, "{no_tcx}");
    assert_eq!(runs(&no_tcx, "reply guard"), true, "{no_tcx}");
    let guard = no_tcx["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "reply guard")
        .unwrap()["why"]
        .to_string();
    assert!(guard.contains("clsact"), "{guard}");

    let bare = doctor("tcx,clsact,live-frames,ringbuf,bpf_xdp_load_bytes");
    for off in ["tcx", "clsact", "reply guard", "live frames", "ring buffer"] {
        assert_eq!(runs(&bare, off), false, "{off}: {bare}");
    }
    assert_eq!(runs(&bare, "bpf_xdp_load_bytes"), false, "{bare}");
}

/// Whether this kernel runs BPF_F_TEST_XDP_LIVE_FRAMES, tried by the test
/// itself with a floor program in a test namespace.
fn live_frames_run() -> bool {
    use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp};
    let net = TestNet::new("lvf").expect("create test namespaces");
    TestNet::in_ns(&net.victim_ns, || {
        let mut floors = aya::Ebpf::load(filter_testkit::FLOORS_OBJECT).unwrap();
        let p: &mut Xdp = floors.program_mut("pass_all").unwrap().try_into().unwrap();
        p.load().unwrap();
        let frame = [0u8; 64];
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&64u32.to_ne_bytes());
        ctx[12..16].copy_from_slice(&1u32.to_ne_bytes());
        p.test_run(TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: 1,
            attrs: TestRunAttrs::new().xdp_live_frames(1),
            ..TestRunOptions::new()
        })
        .is_ok()
    })
    .unwrap()
}

/// The never-ban entries of the filter on the victim: the pinned IPv4 trie.
fn never_ban_v4(net: &TestNet) -> Vec<(u32, [u8; 4])> {
    let path = net.pin_root.join(&net.victim_if).join("NEVER_BAN_V4");
    let map = aya::maps::MapData::from_pin(&path).unwrap();
    let trie: aya::maps::LpmTrie<_, [u8; 4], u8> =
        aya::maps::LpmTrie::try_from(aya::maps::Map::LpmTrie(map)).unwrap();
    trie.keys()
        .map(|k| {
            let k = k.unwrap();
            (k.prefix_len(), k.data())
        })
        .collect()
}

/// The operator's SSH client, recorded at load, stays in the never-ban set
/// through a reload from a shell without SSH (and serve's refresh, which
/// syncs the same way); the file's entries follow the file.
#[test]
fn the_ssh_client_recorded_at_load_stays_never_ban() {
    common::require_bpf();
    let net = TestNet::new("ssh").expect("create test namespaces");
    let files = TempDir::new("ssh");
    let rule = "[per_source]\npps = 100000\n";
    let a = files.write(
        "a.toml",
        &format!("never_ban = [\"198.51.100.44\"]\n{rule}"),
    );
    let b = files.write("b.toml", rule);
    let client = "203.0.113.77";
    ok(
        common::cli::command(&net, &["load", "--iface", &net.victim_if, "--rules", &a])
            .env("SSH_CONNECTION", format!("{client} 50000 192.0.2.1 22"))
            .output()
            .unwrap(),
    );
    let has = |net: &TestNet, addr: [u8; 4]| never_ban_v4(net).contains(&(32, addr));
    assert!(has(&net, [203, 0, 113, 77]), "{:?}", never_ban_v4(&net));
    assert!(has(&net, [198, 51, 100, 44]));
    ok(
        common::cli::command(&net, &["reload", "--iface", &net.victim_if, "--rules", &b])
            .env_remove("SSH_CONNECTION")
            .env_remove("SSH_CLIENT")
            .output()
            .unwrap(),
    );
    assert!(has(&net, [203, 0, 113, 77]), "{:?}", never_ban_v4(&net));
    assert!(!has(&net, [198, 51, 100, 44]), "{:?}", never_ban_v4(&net));
}
