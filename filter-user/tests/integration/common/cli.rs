//! Running the real filterctl binary on a test host, and the temporary
//! files the tests give it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use filter_testkit::net::TestNet;

pub const FILTERCTL: &str = env!("CARGO_BIN_EXE_filterctl");

/// filterctl on the victim's namespace (`--netns`), on the test's own pin
/// root.
pub fn command(net: &TestNet, args: &[&str]) -> Command {
    let mut c = Command::new(FILTERCTL);
    c.arg("--netns")
        .arg(&net.victim_ns)
        .arg("--pin-root")
        .arg(&net.pin_root)
        .args(args);
    c
}

pub fn run(net: &TestNet, args: &[&str]) -> Output {
    command(net, args).output().expect("run filterctl")
}

/// Packets counted for a reason on the test's interface.
pub fn reason(net: &TestNet, name: &str) -> u64 {
    let out = ok(run(net, &["stats", "--json", "--iface", &net.victim_if]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["interfaces"][0]["reasons"][name]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no reason {name} in {out}"))
}

/// Stdout of a command that must succeed.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "filterctl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Stderr of a command that must fail.
pub fn failed(out: Output) -> String {
    assert!(!out.status.success(), "filterctl should have failed");
    String::from_utf8(out.stderr).unwrap()
}

/// The default rules, loaded on the victim's interface from a file in
/// `files`; returns that file's path and the rules' text.
pub fn load_default(net: &TestNet, files: &TempDir) -> (String, String) {
    let default = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/default.toml"
    ))
    .unwrap();
    let rules = files.write("rules.toml", &default);
    ok(run(
        net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    (rules, default)
}

/// A folder of rule files, removed on every exit path.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("flt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// Writes `name` and returns its path as a string for the command line.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first interface of `status --json`.
pub fn status(net: &TestNet) -> serde_json::Value {
    let doc: serde_json::Value =
        serde_json::from_str(&ok(run(net, &["status", "--json"]))).expect("status --json is JSON");
    doc["interfaces"][0].clone()
}

/// Names and ids of the programs on the victim interface's TC egress.
pub fn egress_programs(net: &TestNet) -> Vec<(String, u32)> {
    let mut progs = TestNet::in_ns(&net.victim_ns, || {
        let (_, progs) = aya::programs::SchedClassifier::query_tcx(
            &net.victim_if,
            aya::programs::TcAttachType::Egress,
        )
        .expect("query TCX egress");
        progs
            .iter()
            .map(|p| (p.name_as_str().unwrap_or("?").to_string(), p.id()))
            .collect::<Vec<_>>()
    })
    .unwrap();
    progs.extend(clsact_egress_programs(net));
    progs
}

/// The BPF filters on the victim interface's clsact egress hook (where
/// the recorder runs when TCX is off), as `tc filter show` lists them:
/// `... bpf chain 0 handle 0x2 requests direct-action not_in_hw id 41 ...`.
pub fn clsact_egress_programs(net: &TestNet) -> Vec<(String, u32)> {
    let out = TestNet::command_in(&net.victim_ns, "tc")
        .args(["filter", "show", "dev", &net.victim_if, "egress"])
        .output()
        .expect("run tc");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let after = |w: &str| {
                let i = words.iter().position(|x| *x == w)?;
                words.get(i + 1).copied()
            };
            let name = words.get(words.iter().position(|x| *x == "handle")? + 2)?;
            let id = after("id")?.parse().ok()?;
            Some((name.to_string(), id))
        })
        .collect()
}
