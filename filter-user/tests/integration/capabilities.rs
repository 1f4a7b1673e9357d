//! filterctl as a dedicated non-root user with only the capabilities it
//! needs (as the systemd unit runs it): `apply` loads, leaves and reloads,
//! the reading and operator commands work on its own pins, and a user
//! without the capabilities is told which ones are missing. Also the exit
//! statuses of `apply`. Root and the service user share the service's
//! filter: root sees, reloads and unloads it, and what root made is handed
//! to the service user, who keeps working. Needs root (to hand the
//! capabilities out).

use crate::common;

use std::{
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Command, Output, Stdio},
};

use filter_testkit::net::TestNet;

use common::{
    cli::{FILTERCTL, TempDir, ok, run},
    daemon::{Daemon, free_port, get, wait_until},
};

/// nobody:nogroup, the user these tests run filterctl as.
const NOBODY: u32 = 65534;
/// A user with no name and no pins of its own: someone else on the host.
const STRANGER: u32 = 65533;
/// What `filterctl load`, `reload`, `apply` and `serve` need (see
/// `filterctl::privilege::LOAD`).
const LOAD_CAPS: &str = "+bpf,+net_admin,+perfmon";

/// filterctl in the victim's namespace as nobody, with exactly `caps`
/// (setpriv syntax, e.g. "+bpf,+net_admin"; "" for none) as its inheritable,
/// ambient and bounding sets: what `AmbientCapabilities=` gives a service.
fn as_nobody(net: &TestNet, caps: &str, args: &[&str]) -> Output {
    nobody_command(net, caps, args)
        .output()
        .expect("run setpriv (util-linux: cargo xtask setup)")
}

fn nobody_command(net: &TestNet, caps: &str, args: &[&str]) -> Command {
    user_command(net, NOBODY, caps, args)
}

fn user_command(net: &TestNet, uid: u32, caps: &str, args: &[&str]) -> Command {
    let set = |name: &str| {
        if caps.is_empty() {
            format!("--{name}=-all")
        } else {
            format!("--{name}=-all,{caps}")
        }
    };
    let mut cmd = TestNet::command_in(&net.victim_ns, "setpriv");
    cmd.args([
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        set("inh-caps"),
        set("ambient-caps"),
        set("bounding-set"),
    ])
    .arg(FILTERCTL)
    .arg("--pin-root")
    .arg(&net.pin_root)
    .args(args);
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed: {}", text(out)))
}

/// A pin root on bpffs that belongs to nobody, as the service's would.
fn pin_root_for_nobody(net: &TestNet) {
    std::fs::create_dir_all(&net.pin_root).expect("create the test pin root");
    std::os::unix::fs::chown(&net.pin_root, Some(NOBODY), Some(NOBODY))
        .expect("chown the test pin root");
}

/// Rule files readable by nobody.
fn rule_files(tag: &str) -> (TempDir, String, String, String) {
    let dir = TempDir::new(tag);
    let base = include_str!("../../../rules/default.toml");
    let a = dir.write("a.toml", base);
    let b = dir.write("b.toml", &base.replace("enforce", "monitor"));
    let broken = dir.write("broken.toml", "mode = \"sometimes\"\n");
    (dir, a, b, broken)
}

#[test]
fn without_capabilities_the_missing_ones_are_named() {
    common::require_bpf();
    let net = TestNet::new("cpn").expect("create test namespaces");
    pin_root_for_nobody(&net);
    let (_dir, a, _, _) = rule_files("caps-none");
    let iface = net.victim_if.as_str();

    let none = as_nobody(&net, "", &["apply", "--iface", iface, "--rules", &a]);
    assert_eq!(code(&none), 1, "{}", text(&none));
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        err.contains("needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON")
            && err.contains("missing: CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"),
        "{}",
        text(&none)
    );

    let some = as_nobody(&net, "+bpf,+net_admin", &["load", "--iface", iface]);
    assert_eq!(code(&some), 1, "{}", text(&some));
    assert!(
        String::from_utf8_lossy(&some.stderr).contains("(missing: CAP_PERFMON)"),
        "{}",
        text(&some)
    );
    let watch = format!("{iface}={a}");
    let serve = as_nobody(
        &net,
        "+bpf",
        &["serve", "--listen", "127.0.0.1:0", "--watch", &watch],
    );
    assert!(
        String::from_utf8_lossy(&serve.stderr)
            .contains("filterctl serve --watch needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON (missing: CAP_NET_ADMIN, CAP_PERFMON)"),
        "{}",
        text(&serve)
    );
    assert_eq!(
        std::fs::read_dir(&net.pin_root).unwrap().count(),
        0,
        "a refused command left pins behind"
    );
}

#[test]
fn with_its_capabilities_a_plain_user_loads_reloads_and_applies() {
    common::require_bpf();
    let net = TestNet::new("cpy").expect("create test namespaces");
    pin_root_for_nobody(&net);
    let (dir, a, b, broken) = rule_files("caps-some");
    let iface = net.victim_if.as_str();
    let apply = |rules: &str| {
        as_nobody(
            &net,
            LOAD_CAPS,
            &[
                "apply", "--iface", iface, "--rules", rules, "--mode", "generic",
            ],
        )
    };

    let loaded = apply(&a);
    assert_eq!(code(&loaded), 10, "first apply loads: {}", text(&loaded));
    let same = apply(&a);
    assert_eq!(code(&same), 0, "same file: nothing to do: {}", text(&same));
    assert!(text(&same).contains("unchanged"), "{}", text(&same));
    let reloaded = apply(&b);
    assert_eq!(
        code(&reloaded),
        11,
        "other file reloads: {}",
        text(&reloaded)
    );
    let bad = apply(&broken);
    assert_eq!(code(&bad), 1, "broken file: {}", text(&bad));

    // Reading and operating the filter needs access to its pins only.
    let status = as_nobody(&net, "", &["status", "--json"]);
    assert_eq!(code(&status), 0, "{}", text(&status));
    let s = String::from_utf8_lossy(&status.stdout);
    assert!(
        s.contains("\"mode\": \"monitor\"") && s.contains("\"generation\": 2"),
        "the broken file changed what runs: {s}"
    );
    for args in [
        vec!["reload", "--iface", iface, "--rules", &a],
        vec!["stats"],
        vec!["ban", "198.51.100.9", "--for", "1m"],
        vec!["top"],
        vec!["mode", "--iface", iface, "enforce"],
    ] {
        let caps = if args[0] == "reload" { LOAD_CAPS } else { "" };
        let out = as_nobody(&net, caps, &args);
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
    }
    // Metrics without a watched file: no capability at all.
    let port = free_port(&net);
    let listen = format!("127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let child = nobody_command(&net, "", &["serve", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start serve as nobody");
    let _serve = Daemon {
        name: "filterctl serve (nobody)",
        child,
        log,
    };
    wait_until("serve as nobody to answer /healthz", 10, || {
        get(&net, port, "/healthz").is_some_and(|r| r.status == 200)
    });
    let metrics = get(&net, port, "/metrics").expect("/metrics");
    assert!(metrics.body.contains("filterctl_up{"), "{}", metrics.body);
    let json = as_nobody(
        &net,
        "",
        &["apply", "--iface", iface, "--rules", &a, "--json"],
    );
    // Nothing to load: no capability is asked for.
    assert_eq!(code(&json), 0, "apply of what runs: {}", text(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("apply --json");
    assert_eq!(report["schema_version"], 1, "{report}");
    assert_eq!(report["action"], "unchanged", "{report}");
    let unload = as_nobody(&net, "", &["unload", "--iface", iface]);
    assert_eq!(code(&unload), 0, "{}", text(&unload));
    // Nothing but the marker that the unload was on purpose, the user's.
    let left: Vec<_> = std::fs::read_dir(&net.pin_root)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].file_name(), format!("unloaded:{iface}").as_str());
    assert_eq!(left[0].metadata().unwrap().uid(), NOBODY);
}

/// The first interface of `status --json` from `out`.
fn status_of(out: &Output) -> serde_json::Value {
    assert_eq!(code(out), 0, "{}", text(out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    doc["interfaces"][0].clone()
}

/// Files and folders under `dir` that `uid` does not own.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list the pin folder") {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.uid() != uid || meta.gid() != uid {
            out.push(format!(
                "{} ({}:{})",
                path.display(),
                meta.uid(),
                meta.gid()
            ));
        }
        if meta.is_dir() {
            out.extend(not_owned_by(&path, uid));
        }
    }
    out
}

#[test]
fn root_and_the_service_user_share_the_services_filter() {
    common::require_bpf();
    let net = TestNet::new("cpr").expect("create test namespaces");
    pin_root_for_nobody(&net);
    let (_dir, a, b, _) = rule_files("caps-root");
    let iface = net.victim_if.as_str();
    let loaded = as_nobody(
        &net,
        LOAD_CAPS,
        &["load", "--iface", iface, "--rules", &a, "--mode", "generic"],
    );
    assert_eq!(code(&loaded), 0, "the service loads: {}", text(&loaded));

    // Root sees the service's filter.
    let s = status_of(&run(&net, &["status", "--json"]));
    assert_eq!(s["interface"], iface, "root's status: {s}");
    assert_eq!(s["generation"], 1, "{s}");
    let stats: serde_json::Value =
        serde_json::from_str(&ok(run(&net, &["stats", "--json"]))).expect("stats --json");
    assert_eq!(
        stats["interfaces"].as_array().map(Vec::len),
        Some(1),
        "{stats}"
    );

    // Root reloads it: what root made is the service user's.
    ok(run(&net, &["reload", "--iface", iface, "--rules", &b]));
    let strays = not_owned_by(&net.pin_root, NOBODY);
    assert!(strays.is_empty(), "root left its own pins: {strays:?}");

    // The service keeps working.
    let s = status_of(&as_nobody(&net, "", &["status", "--json"]));
    assert_eq!(
        s["generation"], 2,
        "the service's status after root's reload: {s}"
    );
    assert_eq!(s["mode"], "monitor", "{s}");
    let reloaded = as_nobody(
        &net,
        LOAD_CAPS,
        &["reload", "--iface", iface, "--rules", &a],
    );
    assert_eq!(
        code(&reloaded),
        0,
        "the service reloads: {}",
        text(&reloaded)
    );
    let s = status_of(&as_nobody(&net, "", &["status", "--json"]));
    assert_eq!(s["generation"], 3, "{s}");

    // Someone else is told whose filter it is, not "no filter loaded".
    let other = user_command(&net, STRANGER, "", &["status"])
        .output()
        .expect("run setpriv");
    assert_eq!(code(&other), 1, "{}", text(&other));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("belongs to user 65534 (nobody), not to you (user 65533)")
            && err.contains("run filterctl as nobody or as root"),
        "{}",
        text(&other)
    );

    // A pin the service may not open (as root left them before it handed
    // them over) is named, with its owner, not taken for a stale one.
    let prog = net.pin_root.join(iface).join("gen-3").join("prog");
    std::os::unix::fs::lchown(&prog, Some(0), Some(0)).expect("chown a pin to root");
    let denied = as_nobody(&net, "", &["status"]);
    assert_eq!(code(&denied), 1, "{}", text(&denied));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains("belongs to user 0 (root), not to you (user 65534 (nobody))")
            && err.contains("run filterctl as root")
            && !err.contains("no generation folder holds"),
        "{}",
        text(&denied)
    );

    // Root takes it all down: the program is detached and the pins gone.
    let unload = run(&net, &["unload", "--all"]);
    assert_eq!(code(&unload), 0, "{}", text(&unload));
    let link = Command::new("ip")
        .args(["-n", &net.victim_ns, "link", "show", "dev", iface])
        .output()
        .expect("run ip");
    assert_eq!(code(&link), 0, "{}", text(&link));
    let shown = String::from_utf8_lossy(&link.stdout);
    assert!(
        !shown.contains("xdp"),
        "an XDP program is still attached: {shown}"
    );
    // Nothing but the marker that the unload was on purpose, handed to
    // the service user, whose next `load` or `apply` removes it.
    let left: Vec<_> = std::fs::read_dir(&net.pin_root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let marker = net.pin_root.join(format!("unloaded:{iface}"));
    assert_eq!(left, std::slice::from_ref(&marker), "unload left pins");
    assert_eq!(std::fs::metadata(&marker).unwrap().uid(), NOBODY);
}
