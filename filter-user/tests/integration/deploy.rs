//! The deployment files checked against the binary they run: the systemd
//! unit verified by `systemd-analyze`, every filterctl command line in the
//! unit, the DaemonSet and the Containerfile parsed by filterctl's own
//! command-line parser and each of its flags found in `--help`, every path
//! they name found in the image or a volume, serve's address in the
//! DaemonSet whole for an IPv4 and an IPv6 node, its probes on the port it
//! listens on, the ConfigMap's rules equal to rules/default.toml byte for
//! byte, every Kubernetes manifest valid against the API's schema
//! (`kubernetes-validate --strict`), the memory limit covering serve and the
//! maps it may load, and the alerts checked and unit-tested by promtool;
//! the unit's runtime folder holding serve's upstream state file, written
//! there under a read-only /run as the unit sets it up, and its stop
//! timeout covering serve's own. Only that write needs root (for a mount
//! namespace).

use std::{
    collections::BTreeMap,
    ffi::CString,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use clap::Parser as _;
use filterctl::{
    EBPF_OBJECT,
    commands::args::Cli,
    filter::{
        lifecycle::program,
        observe::memory::{self, CPU_COLUMNS},
    },
    rules,
    serve::{http::Limits, listen::parse_listen, upstream::WITHDRAW_TIMEOUT},
    state::PinRoot,
    upstream::state::{self, RouteState, STATE_DIR, UpstreamState},
};
use serde_yaml::Value;

const FILTERCTL: &str = env!("CARGO_BIN_EXE_filterctl");
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Where the unit, the package and the image put the binary.
const INSTALLED: &str = "/usr/bin/filterctl";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{REPO}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (cargo xtask setup installs it): {e}"))
}

fn assert_clean(what: &str, out: &Output) {
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `filterctl [SUB] --help`.
fn help(sub: Option<&str>) -> String {
    let out = output(Command::new(FILTERCTL).args(sub).arg("--help"));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A filterctl command line from a deployment file: parsed by filterctl's
/// own parser, each flag in --help, the binary where the image has it.
fn check_command_line(place: &str, argv: &[String]) {
    assert_eq!(argv[0], INSTALLED, "{place}: {argv:?}");
    if let Err(e) = Cli::try_parse_from(argv) {
        panic!("{place}: filterctl refuses {argv:?}:\n{e}");
    }
    let sub = argv[1..].iter().find(|a| !a.starts_with('-'));
    let (top, sub_help) = (help(None), help(sub.map(String::as_str)));
    for flag in argv.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap();
        assert!(
            sub_help.contains(flag) || top.contains(flag),
            "{place}: {flag} is not in `filterctl {} --help`",
            sub.map_or("", |s| s)
        );
    }
}

/// Replaces ${NAME} (systemd) or $(NAME) (Kubernetes) with `env`'s values.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in env {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("$({k})"), v);
    }
    assert!(
        !out.contains("${") && !out.contains("$("),
        "unset variable in {out}"
    );
    out
}

/// Paths of `argv` (values starting with '/', also after `IF=`).
fn paths(argv: &[String]) -> Vec<String> {
    argv.iter()
        .skip(1)
        .filter_map(|a| {
            let v = a.rsplit('=').next().unwrap();
            v.starts_with('/').then(|| v.to_string())
        })
        .collect()
}

/// What the Containerfile puts where: destination path -> source.
fn image_layout() -> BTreeMap<String, String> {
    let mut layout = BTreeMap::new();
    for line in read("deploy/container/Containerfile").lines() {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let (dest, sources) = words.split_last().unwrap();
        for src in sources {
            let target = if dest.ends_with('/') {
                format!(
                    "{dest}{}",
                    Path::new(src).file_name().unwrap().to_str().unwrap()
                )
            } else {
                dest.to_string()
            };
            // target/ is built by `cargo xtask build --release` first.
            assert!(
                src.starts_with("target/") || Path::new(REPO).join(src).exists(),
                "the Containerfile copies {src}, which the repository lacks"
            );
            layout.insert(target, src.to_string());
        }
    }
    layout
}

#[test]
fn systemd_unit_verifies_and_runs_real_commands() {
    let unit = read("deploy/systemd/filterctl.service");
    let dir = std::env::temp_dir().join(format!("flt-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // systemd-analyze checks that the binary exists: point it at this build.
    let path = dir.join("filterctl.service");
    std::fs::write(&path, unit.replace(INSTALLED, FILTERCTL)).unwrap();
    let out = output(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
    );
    // Hardening: exposure at most 3.0 of 10 (`systemd-analyze security`
    // says 2.1, "OK", for this unit).
    let security = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=30", "--no-pager"])
            .arg(&path),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_clean("systemd-analyze verify", &out);
    assert!(
        security.status.success(),
        "the unit's exposure is above 3.0:\n{}",
        String::from_utf8_lossy(&security.stdout)
    );

    let mut env = BTreeMap::new();
    for line in unit.lines() {
        if let Some(kv) = line.strip_prefix("Environment=") {
            let (k, v) = kv.split_once('=').unwrap();
            env.insert(k.to_string(), v.to_string());
        }
    }
    let mut seen = 0;
    for line in unit.lines() {
        let Some((key, cmd)) = line.split_once('=') else {
            continue;
        };
        if !key.starts_with("Exec") || !cmd.starts_with(INSTALLED) {
            continue;
        }
        let argv: Vec<String> = expand(cmd, &env)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        check_command_line(&format!("filterctl.service {key}"), &argv);
        for p in paths(&argv) {
            assert!(
                p.starts_with("/etc/filterctl/") || p.starts_with("/sys/fs/bpf"),
                "{key} names {p}, which the package does not install"
            );
        }
        seen += 1;
    }
    assert_eq!(seen, 2, "ExecStartPre (apply) and ExecStart (serve)");
    for needed in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "User=filterctl",
    ] {
        assert!(unit.lines().any(|l| l == needed), "the unit lacks {needed}");
    }
}

/// The values of `key` in the unit, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// The one value of `key` in the unit.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    match unit_values(unit, key)[..] {
        [v] => v,
        ref all => panic!("the unit sets {key} {} times: {all:?}", all.len()),
    }
}

/// `Environment=NAME=VALUE` of the unit.
fn unit_env<'a>(unit: &'a str, name: &str) -> &'a str {
    unit_values(unit, "Environment")
        .into_iter()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("the unit sets no {name}"))
}

/// The folder the unit gets under /run (`RuntimeDirectory=`).
fn runtime_dir(unit: &str) -> String {
    let dir = unit_value(unit, "RuntimeDirectory");
    assert!(
        !dir.contains(char::is_whitespace),
        "one runtime folder: {dir}"
    );
    format!("/run/{dir}")
}

/// Time a stop may take beyond serve's drain and withdrawals: a reload in
/// progress finishing, the process exiting.
const STOP_ROOM: Duration = Duration::from_secs(10);

/// The upstream state file is in the unit's runtime folder, which outlives
/// a stop; a stop waits for serve's drain and withdrawals before killing.
#[test]
fn systemd_unit_keeps_upstream_state_and_waits_for_withdrawals() {
    let unit = read("deploy/systemd/filterctl.service");
    let run = runtime_dir(&unit);
    let root = PinRoot::new(unit_env(&unit, "FILTERCTL_PIN_ROOT"));
    let path = state::state_path(&root, unit_env(&unit, "FILTERCTL_IFACE"));
    assert!(
        Path::new(STATE_DIR).starts_with(&run) && path.starts_with(&run),
        "serve writes {} (STATE_DIR {STATE_DIR}), outside the unit's RuntimeDirectory {run}",
        path.display()
    );
    // Routes a killed serve left announced are listed there for the next
    // one to withdraw: a stop must not remove the folder.
    assert_eq!(unit_value(&unit, "RuntimeDirectoryPreserve"), "yes");

    let stop = unit_value(&unit, "TimeoutStopSec");
    let stop = Duration::from_secs(
        stop.parse()
            .unwrap_or_else(|_| panic!("TimeoutStopSec={stop}: write whole seconds")),
    );
    let needed = Limits::DEFAULT.drain + WITHDRAW_TIMEOUT + STOP_ROOM;
    assert!(
        stop >= needed,
        "TimeoutStopSec={stop:?} kills serve before its drain ({:?}) and withdrawals ({WITHDRAW_TIMEOUT:?}) end, with {STOP_ROOM:?} to spare",
        Limits::DEFAULT.drain
    );
}

/// Panics with the system's error when a libc call returned non-zero.
fn check_sys(what: &str, ret: libc::c_int) {
    assert_eq!(ret, 0, "{what}: {}", std::io::Error::last_os_error());
}

/// `mount(2)`; `None` for an absent source or type.
fn mount(src: Option<&str>, target: &str, fstype: Option<&str>, flags: libc::c_ulong) {
    let c = |s: &str| CString::new(s).unwrap();
    let (src, target, fstype) = (src.map(c), c(target), fstype.map(c));
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call, or null where mount(2) allows it; no data argument.
    let ret = unsafe {
        libc::mount(
            ptr(&src),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            std::ptr::null(),
        )
    };
    check_sys(&format!("mount {target:?} (flags {flags:#x})"), ret);
}

/// The unit's read-only /run rebuilt in a mount namespace of this thread
/// alone (ProtectSystem=strict, then the RuntimeDirectory mounted writable
/// over it, as systemd does): without the folder serve cannot write its
/// state file (the bug); with it, it can, and `filterctl upstream` reads it.
#[test]
fn upstream_state_is_written_under_a_read_only_run() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test makes a mount namespace and needs root: run `sudo cargo xtask test`"
    );
    let unit = read("deploy/systemd/filterctl.service");
    assert_eq!(
        unit_value(&unit, "ProtectSystem"),
        "strict",
        "/run read-only"
    );
    let run = runtime_dir(&unit);
    let (pin_root, iface) = (
        unit_env(&unit, "FILTERCTL_PIN_ROOT").to_string(),
        unit_env(&unit, "FILTERCTL_IFACE").to_string(),
    );
    let root = PinRoot::new(&pin_root);
    let written = UpstreamState {
        interface: iface.clone(),
        speaker: "gobgp 127.0.0.1:50051".into(),
        routes: vec![RouteState {
            kind: "flowspec".into(),
            route: "udp from port 123 to 192.0.2.1/32".into(),
            why: "ntp-reflection".into(),
            announced: true,
            selected_for_s: 3.0,
            pps: 50_000,
            bps: 400_000_000,
        }],
        ..UpstreamState::default()
    };
    // The mounts live and die with this thread's namespace: the host's
    // /run is never touched, on any path.
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare has no memory preconditions; CLONE_NEWNS moves
        // only this thread to a copy of the mount namespace.
        check_sys("unshare(CLONE_NEWNS)", unsafe {
            libc::unshare(libc::CLONE_NEWNS)
        });
        mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE);
        mount(Some("tmpfs"), "/run", Some("tmpfs"), 0);
        // systemd makes the folder before the service starts.
        std::fs::create_dir(&run).unwrap();
        mount(
            None,
            "/run",
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
        );
        let err = state::write(&root, &written).expect_err("/run is read-only");
        assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{err}");

        // RuntimeDirectory=: the folder writable over the read-only /run.
        mount(Some(&run), &run, None, libc::MS_BIND);
        mount(None, &run, None, libc::MS_REMOUNT | libc::MS_BIND);
        state::write(&root, &written)
            .unwrap_or_else(|e| panic!("serve cannot write its state file under {run}: {e}"));
        let err = std::fs::write("/run/elsewhere", "x").expect_err("/run is read-only");
        assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{err}");
        let read = state::read(&root, &iface).unwrap().expect("the state file");
        assert_eq!(read.routes[0].route, written.routes[0].route);

        // The command the operator runs, in this namespace too.
        let out = output(
            Command::new(FILTERCTL)
                .args(["upstream", "--json", "--iface", &iface])
                .env("FILTERCTL_PIN_ROOT", &pin_root),
        );
        assert!(out.status.success(), "filterctl upstream: {out:?}");
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            shown["interfaces"][0]["routes"][0]["route"],
            written.routes[0].route.as_str()
        );
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

fn yaml_docs(path: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Addresses a node may have: the DaemonSet's command lines are checked
/// with each as the value of every variable Kubernetes fills in
/// (`valueFrom`), as `$(NODE_IP)`.
const NODE_IPS: [&str; 2] = ["192.0.2.1", "2001:db8::5"];

/// A container's filterctl command line, its environment expanded, with
/// `node_ip` for what Kubernetes fills in.
fn container_argv(c: &Value, node_ip: &str) -> Vec<String> {
    let mut env = BTreeMap::new();
    for e in c["env"].as_sequence().unwrap() {
        let value = e["value"].as_str().unwrap_or(node_ip);
        env.insert(e["name"].as_str().unwrap().to_string(), value.to_string());
    }
    strings(&c["command"])
        .into_iter()
        .chain(strings(&c["args"]))
        .map(|a| expand(&a, &env))
        .collect()
}

/// A DaemonSet container: its command line, capabilities, the volume of
/// every path it names, its probes on the address it listens on.
fn check_container(c: &Value, volumes: &[Value], config_map: &Value) {
    let name = c["name"].as_str().unwrap();
    for ip in NODE_IPS {
        let argv = container_argv(c, ip);
        check_command_line(&format!("DaemonSet container {name}"), &argv);
        check_probes(c, &argv, ip);
    }
    let argv = container_argv(c, NODE_IPS[0]);
    let caps = strings(&c["securityContext"]["capabilities"]["add"]);
    assert_eq!(caps, ["BPF", "NET_ADMIN", "PERFMON"], "{name}");
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    for p in paths(&argv) {
        let mount = mounts
            .iter()
            .find(|m| p.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{name}: {p} is on no volume"));
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume");
        if volume["configMap"]["name"] == config_map["metadata"]["name"] {
            let key = p.rsplit('/').next().unwrap();
            assert!(
                config_map["data"][key].is_string(),
                "{name}: {p} is not a key of the ConfigMap"
            );
        }
    }
}

/// serve's probes: readiness on /healthz (the filter attached), liveness
/// on /livez (serve answers), both on the port serve listens on, at the
/// node's address (`node_ip`), which serve reads whole, IPv6 too.
fn check_probes(c: &Value, argv: &[String], node_ip: &str) {
    let Some(listen) = argv.iter().position(|a| a == "--listen") else {
        assert!(c.get("readinessProbe").is_none(), "a probe of no server");
        return;
    };
    let addr = parse_listen(&argv[listen + 1]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        addr.ip(),
        node_ip.parse::<std::net::IpAddr>().unwrap(),
        "serve listens elsewhere than on the node's address: {argv:?}"
    );
    for (probe, path) in [("readinessProbe", "/healthz"), ("livenessProbe", "/livez")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        // No host: the kubelet asks the pod's address, the node's.
        assert!(get.get("host").is_none(), "{probe}: {get:?}");
        assert_eq!(
            get["port"].as_u64(),
            Some(u64::from(addr.port())),
            "{probe}"
        );
    }
    let ports = c["ports"].as_sequence().unwrap();
    assert_eq!(
        ports[0]["containerPort"].as_u64(),
        Some(u64::from(addr.port()))
    );
}

/// Where the Kubernetes manifests are (`kubectl apply -f` of the folder).
const KUBERNETES: &str = "deploy/kubernetes";
/// The Prometheus configuration that scrapes the DaemonSet's pods (no
/// manifest: it lies apart, so that `kubectl apply -f` takes the folder).
const KUBERNETES_SCRAPE: &str = "deploy/prometheus/kubernetes.yml";

/// Every file of the Kubernetes folder, as paths from the repository.
fn kubernetes_manifests() -> Vec<String> {
    let mut paths: Vec<String> = std::fs::read_dir(format!("{REPO}/{KUBERNETES}"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            format!("{KUBERNETES}/{name}")
        })
        .collect();
    paths.sort();
    paths
}

#[test]
fn kubernetes_and_container_name_what_exists() {
    let layout = image_layout();
    for needed in [INSTALLED, "/etc/filterctl/rules.toml"] {
        assert!(layout.contains_key(needed), "the image lacks {needed}");
    }
    let containerfile = read("deploy/container/Containerfile");
    assert!(
        containerfile.contains(&format!("ENTRYPOINT [\"{INSTALLED}\"]")),
        "the image's entry point is not filterctl"
    );

    let mut manifests = BTreeMap::new();
    for path in kubernetes_manifests() {
        for doc in yaml_docs(&path) {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: a document without a kind"))
                .to_string();
            manifests.insert(kind, doc);
        }
    }
    let ds = &manifests["DaemonSet"];
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], Value::Bool(true));
    let volumes = spec["volumes"].as_sequence().unwrap();
    let config_map = &manifests["ConfigMap"];
    let containers: Vec<&Value> = spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(spec["containers"].as_sequence().unwrap())
        .collect();
    for c in &containers {
        check_container(c, volumes, config_map);
    }
    // serve's state file (STATE_DIR) on a volume of the host's, kept for
    // the next pod: the container's own file system is read-only.
    let serve = containers.iter().find(|c| c["name"] == "serve").unwrap();
    let mounts = serve["volumeMounts"].as_sequence().unwrap();
    let run = mounts
        .iter()
        .find(|m| Path::new(STATE_DIR).starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("serve writes {STATE_DIR}, on no volume"));
    assert_ne!(run["readOnly"], Value::Bool(true), "{run:?}");
    let volume = volumes.iter().find(|v| v["name"] == run["name"]).unwrap();
    assert!(volume["hostPath"]["path"].is_string(), "{volume:?}");

    // The ConfigMap's rules are valid.
    let dir = std::env::temp_dir().join(format!("flt-cm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, config_map["data"]["rules.toml"].as_str().unwrap()).unwrap();
    let check = output(Command::new(FILTERCTL).arg("check").arg(&rules));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(check.status.success(), "the ConfigMap's rules: {check:?}");

    // A stop waits for serve's drain and withdrawals, as the unit's does.
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    let needed = Limits::DEFAULT.drain + WITHDRAW_TIMEOUT + STOP_ROOM;
    assert!(
        Duration::from_secs(grace) >= needed,
        "terminationGracePeriodSeconds: {grace} kills serve before its drain and withdrawals end ({needed:?} with room)"
    );

    // The scrape config keeps the DaemonSet's pods and its metrics port.
    let scrape = &yaml_docs(KUBERNETES_SCRAPE)[0]["scrape_configs"][0];
    let keeps: Vec<&Value> = scrape["relabel_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "keep")
        .collect();
    let label = &ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"];
    assert_eq!(keeps[0]["regex"], *label);
    assert_eq!(
        keeps[1]["regex"], spec["containers"][0]["ports"][0]["name"],
        "the scrape config keeps another port"
    );
}

/// The ConfigMap holding the rules every node enforces.
const CONFIG_MAP: &str = "deploy/kubernetes/configmap.yaml";
/// The line of the ConfigMap after which the rules follow, indented.
const RULES_KEY: &str = "  rules.toml: |";
/// Set to rewrite the ConfigMap from rules/default.toml.
const REGENERATE: &str = "FILTERCTL_REGENERATE";

/// The ConfigMap `current` with `rules` as its rule file: everything up to
/// the `rules.toml` key kept, the rules after it indented as a YAML block.
fn config_map_with(current: &str, rules: &str) -> String {
    let key = current
        .find(&format!("\n{RULES_KEY}\n"))
        .unwrap_or_else(|| panic!("{CONFIG_MAP} has no line {RULES_KEY:?}"));
    let mut out = current[..key + RULES_KEY.len() + 2].to_string();
    for line in rules.lines() {
        if !line.is_empty() {
            out.push_str("    ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The ConfigMap's rules are rules/default.toml, byte for byte: the copy is
/// checked rather than generated at build time, so that the manifest stays
/// a plain file to `kubectl apply`, readable where it is; a change of the
/// default rules fails here until the ConfigMap is rewritten (the message
/// says how), and the YAML itself is read back to be sure it holds them.
#[test]
fn kubernetes_config_map_is_the_default_rules() {
    let default = read("rules/default.toml");
    let current = read(CONFIG_MAP);
    let wanted = config_map_with(&current, &default);
    if current != wanted {
        if std::env::var_os(REGENERATE).is_some() {
            std::fs::write(format!("{REPO}/{CONFIG_MAP}"), &wanted).unwrap();
            eprintln!("{CONFIG_MAP} rewritten from rules/default.toml");
        } else {
            panic!(
                "{CONFIG_MAP} does not hold rules/default.toml: rewrite it with `{REGENERATE}=1 cargo test -p filter-user --test integration -- deploy::kubernetes_config_map_is_the_default_rules`"
            );
        }
    }
    let doc = &yaml_docs(CONFIG_MAP)[0];
    let held = doc["data"]["rules.toml"]
        .as_str()
        .expect("data: rules.toml");
    if held != default {
        let line = held
            .lines()
            .zip(default.lines())
            .position(|(a, b)| a != b)
            .map_or(held.lines().count().min(default.lines().count()), |i| i);
        panic!(
            "{CONFIG_MAP}: its rules.toml, as YAML reads it, differs from rules/default.toml from line {} on (a file YAML's `|` block cannot hold as it is: leading blanks on its first line, or blank lines at its end)",
            line + 1
        );
    }
}

/// The Kubernetes versions the manifests are validated against: the oldest
/// the deployment guide names and the newest the validator knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// `kubernetes-validate --strict` (the API's OpenAPI schemas, bundled, so
/// no cluster and no network; unknown fields refused) on `files`, at each
/// of [`KUBERNETES_VERSIONS`]; the output of the runs that failed.
fn validate(files: &[String]) -> Result<(), String> {
    let mut failed = String::new();
    for version in KUBERNETES_VERSIONS {
        let out = output(
            Command::new("kubernetes-validate")
                .args(["--strict", "--kubernetes-version", version])
                .args(files),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // It skips nothing silently: one "passed" for each document.
        let passed = text.matches(" passed for resource ").count();
        let documents: usize = files
            .iter()
            .map(|f| {
                serde_yaml::Deserializer::from_str(&std::fs::read_to_string(f).unwrap()).count()
            })
            .sum();
        if !out.status.success() || passed != documents {
            failed += &format!(
                "kubernetes-validate at {version} ({}, {passed} of {documents} documents passed):\n{text}\n",
                out.status
            );
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed)
    }
}

/// Every manifest is valid for the API server, strictly: a misspelled
/// field (which `kubectl apply` drops with at most a warning) fails here,
/// as the broken copy shows.
#[test]
fn kubernetes_manifests_validate_against_the_schema() {
    let files: Vec<String> = kubernetes_manifests()
        .iter()
        .map(|p| format!("{REPO}/{p}"))
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    if let Err(e) = validate(&files) {
        panic!("{e}(kubernetes-validate comes from PyPI: `cargo xtask setup` installs it)");
    }

    let dir = std::env::temp_dir().join(format!("flt-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("daemonset.yaml");
    let daemonset = read("deploy/kubernetes/daemonset.yaml");
    assert!(daemonset.contains("readinessProbe:"));
    std::fs::write(
        &broken,
        daemonset.replace("readinessProbe:", "readinesProbe:"),
    )
    .unwrap();
    let result = validate(&[broken.display().to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
    let e = result.expect_err("a misspelled field passed the validator");
    assert!(e.contains("'readinesProbe' was unexpected"), "{e}");
}

/// Bytes of a Kubernetes quantity of memory ("256Mi", "300M", "1Gi").
fn quantity(q: &str) -> u64 {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("quantity {q:?}"));
    let scale = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => panic!("quantity {q:?}: write it in Ki, Mi, Gi, k, M or G"),
    };
    n * scale
}

/// What serve's resident memory may peak at (VmHWM) on one interface:
/// loads of the default rules, scrapes. Measured by
/// `serve::serve_loads_a_gone_filter_again_unless_unloaded_on_purpose`
/// (46 MB, 2026-12, the debug build the tests run), which fails when serve
/// goes over it; the DaemonSet's memory is sized with it.
pub const SERVE_PEAK_KB: u64 = 56 * 1024;
/// The node size the DaemonSet's memory limit is written for: per-CPU maps
/// grow with the CPUs (see docs/benchmarks.md, "Memory per interface").
const SIZED_FOR_CPUS: u32 = 64;

/// Kernel memory of the maps of one filter loaded with the ConfigMap's
/// rules (rules/default.toml, checked equal above) at `cpus`: all of them,
/// with the state tries full (bans fill them in a flood; the other tries,
/// allocated entry by entry, hold the file's lists, none here); and those a
/// reload makes anew (the generation's, besides the state maps that carry
/// over).
fn map_bytes(cpus: u32) -> (u64, u64) {
    let path = Path::new(REPO).join("rules/default.toml");
    let set = rules::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let defs = memory::definitions(EBPF_OBJECT).unwrap();
    let sizes = program::load_sizes(&set, &set.compile());
    let f = memory::footprint(&defs, &sizes, cpus);
    let column = CPU_COLUMNS.iter().position(|c| *c == cpus);
    let bytes = |r: &memory::Row| column.map_or(r.bytes_here, |i| r.bytes_at[i]);
    let state = |r: &memory::Row| filter_common::STATE_MAPS.contains(&r.map.as_str());
    let all = f
        .maps
        .iter()
        .filter(|r| !r.when_full || state(r))
        .map(bytes)
        .sum();
    let generation = f
        .maps
        .iter()
        .filter(|r| !r.when_full && !state(r))
        .map(bytes)
        .sum();
    (all, generation)
}

/// The memory the DaemonSet gives each container covers, on a node of
/// [`SIZED_FOR_CPUS`], what is charged to the pod: the maps of a filter it
/// loads (the kernel charges a map to whoever made it, and the charges of
/// the init container's maps stay with the pod), a reload's new generation
/// beside the old one, and serve's peak; the request covers serve on the
/// smallest node of [`CPU_COLUMNS`].
#[test]
fn kubernetes_memory_covers_serve_and_the_maps() {
    let docs = yaml_docs("deploy/kubernetes/daemonset.yaml");
    let spec = &docs[0]["spec"]["template"]["spec"];
    let (all, generation) = map_bytes(SIZED_FOR_CPUS);
    let (small, small_generation) = map_bytes(CPU_COLUMNS[0]);
    let limit_needed = all + generation + SERVE_PEAK_KB * 1024;
    let request_needed = small + small_generation + SERVE_PEAK_KB * 1024;
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "maps at {SIZED_FOR_CPUS} CPUs {:.1} MB (a generation {:.1} MB), at {} CPUs {:.1} MB ({:.1} MB), serve {:.1} MB: limit at least {:.1} MB, request {:.1} MB",
        mb(all),
        mb(generation),
        CPU_COLUMNS[0],
        mb(small),
        mb(small_generation),
        mb(SERVE_PEAK_KB * 1024),
        mb(limit_needed),
        mb(request_needed)
    );
    let containers = spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(spec["containers"].as_sequence().unwrap());
    for c in containers {
        let name = c["name"].as_str().unwrap();
        let resources = &c["resources"];
        let memory = |kind: &str| {
            let q = resources[kind]["memory"].as_str();
            quantity(q.unwrap_or_else(|| panic!("{name}: no memory in resources.{kind}")))
        };
        let (limit, request) = (memory("limits"), memory("requests"));
        assert!(
            limit >= limit_needed,
            "{name}: memory limit {:.1} MB, under the {:.1} MB a load of the filter and serve's peak take on a node of {SIZED_FOR_CPUS} CPUs",
            mb(limit),
            mb(limit_needed)
        );
        assert!(
            request >= request_needed && request <= limit,
            "{name}: memory request {:.1} MB: at least {:.1} MB, at most the limit",
            mb(request),
            mb(request_needed)
        );
    }
}

#[test]
fn promtool_checks_and_tests_the_alerts() {
    let dir = format!("{REPO}/deploy/prometheus");
    let promtool = |args: &[&str]| output(Command::new("promtool").args(args).current_dir(&dir));
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"],
        &["check", "config", "prometheus.yml"],
    ] {
        let out = promtool(args);
        assert!(out.status.success(), "promtool {args:?}: {out:?}");
    }
    check_resolves("FilterctlReloadFailed");
    // The unit tests cover every alert.
    let tests = read("deploy/prometheus/alerts_test.yml");
    for doc in yaml_docs("deploy/prometheus/alerts.yml") {
        for group in doc["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let name = rule["alert"].as_str().unwrap();
                assert!(
                    tests.contains(&format!("alertname: {name}")),
                    "alerts_test.yml does not test {name}"
                );
            }
        }
    }
}

/// Minutes of a promtool `eval_time` ("90s" is 1.5).
fn minutes(t: &str) -> f64 {
    let (n, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("eval_time {t}"));
    match unit {
        "s" => n / 60.0,
        "m" => n,
        "h" => n * 60.0,
        _ => panic!("eval_time {t}"),
    }
}

/// Some test of alerts_test.yml has `alert` firing, then silent again: it
/// clears once its cause is gone.
fn check_resolves(alert: &str) {
    let doc = &yaml_docs("deploy/prometheus/alerts_test.yml")[0];
    let resolves = doc["tests"].as_sequence().unwrap().iter().any(|test| {
        let evals: Vec<(f64, bool)> = test["alert_rule_test"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter(|e| e["alertname"] == alert)
            .map(|e| {
                let firing = e["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
                (minutes(e["eval_time"].as_str().unwrap()), firing)
            })
            .collect();
        evals
            .iter()
            .any(|(t0, fired)| *fired && evals.iter().any(|(t1, f)| t1 > t0 && !f))
    });
    assert!(
        resolves,
        "alerts_test.yml never shows {alert} firing and then resolved"
    );
}
