//! The CI template of a rules repository (deploy/rules-ci/) on a throwaway
//! repository: its rules the shipped default profile, its `replay.toml` the
//! template's example, its captures written by hand (a reflection attack,
//! and a host's ordinary traffic recorded with `tcpdump -i any`: its own
//! DNS lookups and time syncs with their answers, and clients of its web
//! server). `rules-gate.sh` passes a harmless change and fails one that
//! `filterctl check --strict` finds nothing wrong with but that drops the
//! host's DNS answers. Replay loads the program: needs root and BPF; fails
//! (never skips) without them.

use crate::common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::{
    cli::{FILTERCTL, TempDir},
    frames::*,
    pcap::{LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, PACKET_OUTGOING, cooked, cooked_as, pcap_of},
};
use serde_json::Value;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const GATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/rules-ci/rules-gate.sh"
);

const HOST: [u8; 4] = [192, 0, 2, 1];
const RESOLVER: [u8; 4] = [198, 51, 100, 53];
const TIME_SERVER: [u8; 4] = [198, 51, 100, 123];
const WEB_CLIENT: [u8; 4] = [198, 51, 100, 80];

/// Frames of the attack capture: NTP monlist and SSDP replies from a
/// reflector network.
const ATTACK_FRAMES: usize = 40;
/// Incoming frames of the baseline capture (its outgoing ones are the
/// host's requests): per round a DNS answer, an NTP time reply and a TCP
/// SYN to port 443.
const ROUNDS: u64 = 3;

/// The template's `rules` and captures, as this repository lays them out.
const RULES: &str = "rules/edge.toml";
const ATTACK: &str = "captures/attack-ntp-ssdp.pcap";
const BASELINE: &str = "captures/baseline-day.pcap";

/// An untagged Ethernet IPv4 frame from `src` to `dst`.
fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = ether(&[], ETH_IPV4, &ipv4(proto, &[], Frag::default(), l4));
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    // The header checksum, over the new addresses.
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = f[14..34]
        .chunks(2)
        .fold(0u32, |s, c| s + u32::from(u16::from_be_bytes([c[0], c[1]])));
    let sum = (sum & 0xffff) + (sum >> 16);
    f[24..26].copy_from_slice(&(!((sum & 0xffff) + (sum >> 16)) as u16).to_be_bytes());
    f
}

/// Reflected replies from 203.0.113.0/24 to the host, one every 10 ms,
/// as `tcpdump -i any` (Linux cooked v2) records them.
fn attack_capture() -> Vec<u8> {
    let frames: Vec<(u64, Vec<u8>)> = (0..ATTACK_FRAMES)
        .map(|i| {
            let reflector = [203, 0, 113, 10 + (i % 20) as u8];
            let l4 = if i % 2 == 0 {
                udp(123, 40000 + i as u16, &ntp_monlist_reply())
            } else {
                udp(1900, 40000 + i as u16, &ssdp_reply())
            };
            let f = v4(reflector, HOST, UDP, &l4);
            (1_795_000_000_000_000 + i as u64 * 10_000, cooked(&f, true))
        })
        .collect();
    pcap_of(LINKTYPE_LINUX_SLL2, &frames)
}

/// The host's ordinary traffic as `tcpdump -i any` (Linux cooked v1)
/// records it: its DNS lookups and NTP requests (sent: packet type 4),
/// their answers, and a client of its HTTPS server; a round a second.
fn baseline_capture() -> Vec<u8> {
    let mut dns_answer = dns_query();
    dns_answer[2] = 0x81; // QR: a response
    dns_answer[3] = 0x80;
    let mut ntp_request = vec![0x23]; // version 4, mode 3 (client)
    ntp_request.resize(48, 0);
    let mut frames = Vec::new();
    for round in 0..ROUNDS {
        let t = 1_795_000_100_000_000 + round * 1_000_000;
        let (dns_port, ntp_port) = (41000 + round as u16, 42000 + round as u16);
        let sent = |f: Vec<u8>| cooked_as(&f, false, PACKET_OUTGOING);
        let received = |f: Vec<u8>| cooked(&f, false);
        frames.extend([
            (
                t,
                sent(v4(HOST, RESOLVER, UDP, &udp(dns_port, 53, &dns_query()))),
            ),
            (
                t + 20_000,
                received(v4(RESOLVER, HOST, UDP, &udp(53, dns_port, &dns_answer))),
            ),
            (
                t + 100_000,
                sent(v4(
                    HOST,
                    TIME_SERVER,
                    UDP,
                    &udp(ntp_port, 123, &ntp_request),
                )),
            ),
            (
                t + 130_000,
                received(v4(
                    TIME_SERVER,
                    HOST,
                    UDP,
                    &udp(123, ntp_port, &ntp_time_reply()),
                )),
            ),
            (
                t + 500_000,
                received(v4(
                    WEB_CLIENT,
                    HOST,
                    TCP,
                    &tcp_syn(50000 + round as u16, 443),
                )),
            ),
        ]);
    }
    pcap_of(LINKTYPE_LINUX_SLL, &frames)
}

/// A rules repository: the shipped default profile as `rules/edge.toml`
/// with `extra` appended, the captures, and the template's replay.toml;
/// beside it, `base/rules/edge.toml`, the profile before the change.
fn repository(tag: &str, extra: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let root = dir.path();
    let default = std::fs::read_to_string(format!("{REPO}/rules/default.toml")).unwrap();
    for sub in ["repo/rules", "repo/captures", "base/rules"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let write = |path: &str, bytes: &[u8]| std::fs::write(root.join(path), bytes).unwrap();
    write(
        &format!("repo/{RULES}"),
        format!("{default}{extra}").as_bytes(),
    );
    write(&format!("base/{RULES}"), default.as_bytes());
    write(&format!("repo/{ATTACK}"), &attack_capture());
    write(&format!("repo/{BASELINE}"), &baseline_capture());
    let example = std::fs::read(format!("{REPO}/deploy/rules-ci/replay.toml")).unwrap();
    write("repo/replay.toml", &example);
    dir
}

fn repo(dir: &TempDir) -> PathBuf {
    dir.path().join("repo")
}

fn against(dir: &TempDir) -> String {
    dir.path()
        .join("base")
        .join(RULES)
        .to_str()
        .unwrap()
        .to_string()
}

/// `sh rules-gate.sh ARGS` in `cwd`, with the filterctl under test; its
/// output (stdout then stderr) and exit status.
fn gate(cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out: Output = Command::new("sh")
        .arg(GATE)
        .args(args)
        .current_dir(cwd)
        .env("FILTERCTL", FILTERCTL)
        .output()
        .expect("run sh rules-gate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --nocapture: what a CI log shows.
    println!("rules-gate.sh {args:?}: {}\n{text}", out.status);
    (out.status.code(), text)
}

const HARMLESS: &str = r#"
# CharGEN reflection (UDP from port 19): never wanted.
[[rule]]
name = "chargen-reflection"
protocol = "udp"
src_port = 19
action = "drop"
"#;

/// Valid, and no warning: only the replay shows what it breaks.
const DROPS_DNS_ANSWERS: &str = r#"
# "DNS reflection": every datagram from port 53, the host's own answers too.
[[rule]]
name = "dns-reflection"
protocol = "udp"
src_port = 53
action = "drop"
"#;

#[test]
fn a_harmless_change_passes_the_gate() {
    common::require_bpf();
    let dir = repository("gate-good", HARMLESS);
    let (status, out) = gate(&repo(&dir), &["--against", &against(&dir)]);
    assert_eq!(status, Some(0), "rules-gate.sh:\n{out}");
    assert!(out.contains("edge.toml: ok, 4 rules"), "{out}");
    assert!(out.contains("rules-gate: passed"), "{out}");

    // The gate judged something: every frame labelled as the captures
    // say, the attack dropped, nothing of the baseline.
    let doc = expect_json(&repo(&dir), &[]);
    assert_eq!(doc["passed"], true, "{doc}");
    let captures = doc["captures"].as_array().expect("captures");
    let tally = |file: &str, kind: &str| {
        let c = captures
            .iter()
            .find(|c| c["capture"].as_str().is_some_and(|n| n.ends_with(file)))
            .unwrap_or_else(|| panic!("no capture {file} in {doc}"));
        (
            c[kind]["frames"].as_u64().unwrap(),
            c[kind]["dropped"].as_u64().unwrap(),
        )
    };
    let n = ATTACK_FRAMES as u64;
    assert_eq!(tally(ATTACK, "attack"), (n, n), "{doc}");
    assert_eq!(tally(ATTACK, "benign"), (0, 0), "{doc}");
    assert_eq!(tally(BASELINE, "attack"), (0, 0), "{doc}");
    assert_eq!(
        tally(BASELINE, "benign"),
        (3 * ROUNDS, 0),
        "the host's answers and clients, not its requests: {doc}"
    );
}

#[test]
fn a_change_that_drops_the_hosts_dns_answers_fails_the_gate() {
    common::require_bpf();
    let dir = repository("gate-bad", DROPS_DNS_ANSWERS);
    // From anywhere, naming the repository.
    let repo_arg = repo(&dir);
    let (status, out) = gate(
        dir.path(),
        &["--against", &against(&dir), repo_arg.to_str().unwrap()],
    );
    assert_eq!(status, Some(1), "rules-gate.sh:\n{out}");
    assert!(
        out.contains("edge.toml: ok, 4 rules"),
        "check --strict finds nothing wrong: {out}"
    );
    assert!(out.contains("max_benign_drop"), "the failed check: {out}");
    assert!(out.contains("rules-gate: FAILED"), "{out}");
    assert!(out.contains("the gate failed"), "{out}");
    assert!(
        !out.contains("filterctl check --strict: a rule file"),
        "{out}"
    );

    let doc = expect_json(&repo_arg, &["--against", &against(&dir)]);
    assert_eq!(doc["passed"], false, "{doc}");
    let failed: Vec<&Value> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{doc}");
    assert_eq!(failed[0]["check"], "max_benign_drop");
    assert_eq!(failed[0]["value"].as_u64(), Some(ROUNDS), "the DNS answers");
    assert!(
        failed[0]["capture"]
            .as_str()
            .is_some_and(|c| c.ends_with(BASELINE)),
        "{doc}"
    );
}

#[test]
fn an_invalid_rule_file_fails_the_gate_and_the_replay_still_runs() {
    common::require_bpf();
    let dir = repository("gate-check", HARMLESS);
    let typo = repo(&dir).join("rules/typo.toml");
    std::fs::write(
        &typo,
        "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_prot = 53\naction = \"drop\"\n",
    )
    .unwrap();
    let (status, out) = gate(&repo(&dir), &[]);
    assert_eq!(status, Some(1), "rules-gate.sh:\n{out}");
    assert!(out.contains("typo.toml:4:1"), "{out}");
    assert!(
        out.contains("filterctl check --strict: a rule file is invalid"),
        "{out}"
    );
    assert!(
        !out.contains("the gate failed") && !out.contains("could not judge"),
        "the replay passed: {out}"
    );
}

/// `filterctl replay --expect repo/replay.toml --json`, which must run (it
/// may fail the gate: exit status 0 or 3).
fn expect_json(repo: &Path, args: &[&str]) -> Value {
    let out = Command::new(FILTERCTL)
        .arg("replay")
        .arg("--expect")
        .arg(repo.join("replay.toml"))
        .arg("--json")
        .args(args)
        .output()
        .expect("run filterctl replay");
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "filterctl replay --expect: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("replay --expect --json is JSON");
    assert_eq!(
        doc["passed"],
        out.status.code() == Some(0),
        "exit status and `passed` agree: {doc}"
    );
    doc
}

/// The workflow judges the rule file the example gate names, and runs the
/// script where the README says to copy it.
#[test]
fn the_workflow_and_the_example_agree() {
    let workflow: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{REPO}/deploy/rules-ci/github-workflow.yml")).unwrap(),
    )
    .expect("github-workflow.yml is YAML");
    let job = &workflow["jobs"]["gate"];
    assert_eq!(job["env"]["RULES"].as_str(), Some(RULES), "{job:?}");
    let example: toml::Table = toml::from_str(
        &std::fs::read_to_string(format!("{REPO}/deploy/rules-ci/replay.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(example["rules"].as_str(), Some(RULES));
    let files: Vec<&str> = example["capture"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, [ATTACK, BASELINE]);
    let runs: Vec<&str> = job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    assert!(
        runs.iter().any(|r| r.contains("sh ci/rules-gate.sh")),
        "{runs:?}"
    );
    let readme = std::fs::read_to_string(format!("{REPO}/deploy/rules-ci/README.md")).unwrap();
    assert!(
        readme.contains("Copy to `ci/`"),
        "README says where the script goes"
    );
}
