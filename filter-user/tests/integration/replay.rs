//! `filterctl replay`: the verdict table written to a pcap file by hand and
//! replayed by the real binary through the real XDP program; truncated and
//! too-short frames; and the errors for files it cannot replay. Needs root
//! and BPF; fails (never skips) without them.

use crate::common;

use std::{
    process::{Output, Stdio},
    time::Duration,
};

use common::{
    cases,
    cli::{FILTERCTL, TempDir},
    frames::*,
    pcap::{cooked, pcap, pcap_header, pcap_record},
};
use filterctl::filter::simulator::XDP_DROP;
use serde_json::Value;

const DEFAULT_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default.toml");

/// An untagged Ethernet frame of an unfragmented IPv4 UDP datagram.
fn ipv4_frame(udp: &[u8]) -> Vec<u8> {
    ether(&[], ETH_IPV4, &ipv4(UDP, &[], Frag::default(), udp))
}

fn replay(args: &[&str]) -> Output {
    std::process::Command::new(FILTERCTL)
        .arg("replay")
        .args(args)
        .output()
        .expect("run filterctl")
}

/// The JSON report of a replay that must succeed.
fn replay_json(rules: &str, capture: &str) -> Value {
    let out = replay(&["--rules", rules, capture, "--json"]);
    assert!(
        out.status.success(),
        "filterctl replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("replay --json prints JSON")
}

/// Stderr of a replay that must fail.
fn replay_error(args: &[&str]) -> String {
    let out = replay(args);
    assert!(
        !out.status.success(),
        "filterctl replay should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Totals per reason add up to the frames, packets and bytes.
fn check_totals(report: &Value, frames: usize) {
    let totals = report["totals"].as_object().expect("totals");
    let packets: u64 = totals
        .values()
        .map(|t| t["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(packets, frames as u64, "totals add up to the frames");
    let bytes: u64 = totals.values().map(|t| t["bytes"].as_u64().unwrap()).sum();
    let wire: u64 = report["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["len"].as_u64().unwrap())
        .sum();
    assert_eq!(bytes, wire, "total bytes");
    let s = &report["summary"];
    assert_eq!(s["frames"].as_u64(), Some(frames as u64));
    assert_eq!(
        s["dropped"]["packets"].as_u64().unwrap() + s["passed"]["packets"].as_u64().unwrap(),
        frames as u64
    );
}

#[test]
fn replay_gives_every_frame_of_the_verdict_table_its_verdict() {
    common::require_bpf();
    let dir = TempDir::new("replay-table");
    let cases = cases::cases();
    let records: Vec<(u64, &[u8], u32)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                1_795_000_000_000_000 + i as u64 * 1000,
                c.frame.as_slice(),
                c.frame.len() as u32,
            )
        })
        .collect();
    let path = dir.path().join("table.pcap");
    std::fs::write(&path, pcap(1, &records)).unwrap();

    let rules = dir.path().join("table.toml");
    std::fs::write(&rules, cases::table_rules()).unwrap();
    let report = replay_json(rules.to_str().unwrap(), path.to_str().unwrap());
    let frames = report["frames"].as_array().expect("frames");
    assert_eq!(frames.len(), cases.len());
    for (i, (c, f)) in cases.iter().zip(frames).enumerate() {
        let want_action = if c.action == XDP_DROP { "drop" } else { "pass" };
        assert_eq!(f["index"].as_u64(), Some(i as u64 + 1), "{}: index", c.name);
        assert_eq!(
            f["action"].as_str(),
            Some(want_action),
            "{}: action",
            c.name
        );
        assert_eq!(
            f["reason"].as_str(),
            Some(c.reason.name()),
            "{}: reason",
            c.name
        );
        assert_eq!(f["rule"].as_str(), c.rule, "{}: rule", c.name);
        assert_eq!(f["len"].as_u64(), Some(c.frame.len() as u64), "{}", c.name);
        assert_eq!(f["truncated"], false, "{}", c.name);
        assert_eq!(f["ran"], true, "{}", c.name);
        let ts = f["timestamp"].as_f64().unwrap();
        let want = 1_795_000_000.0 + i as f64 * 0.001;
        assert!((ts - want).abs() < 1e-5, "{}: timestamp {ts}", c.name);
    }
    check_totals(&report, cases.len());
    for c in &cases {
        let n = cases.iter().filter(|o| o.reason == c.reason).count() as u64;
        assert_eq!(
            report["totals"][c.reason.name()]["packets"].as_u64(),
            Some(n),
            "total of {}",
            c.reason.name()
        );
    }
    for r in report["rules"].as_array().expect("rules") {
        let name = r["name"].as_str().unwrap();
        let n = cases.iter().filter(|c| c.rule == Some(name)).count() as u64;
        assert_eq!(r["packets"].as_u64(), Some(n), "rule {name}");
    }
    let digest = report["rules_digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "rules_digest is a SHA-256 in hex");
    assert_eq!(report["mode"], "enforce");
}

#[test]
fn linux_cooked_captures_replay_like_ethernet() {
    common::require_bpf();
    let dir = TempDir::new("replay-cooked");
    let cases = cases::cases();
    let verdicts = |linktype, frames: &[Vec<u8>]| {
        let records: Vec<(u64, &[u8], u32)> = frames
            .iter()
            .map(|f| (0, f.as_slice(), f.len() as u32))
            .collect();
        let path = dir.path().join(format!("{linktype}.pcap"));
        std::fs::write(&path, pcap(linktype, &records)).unwrap();
        let report = replay_json(DEFAULT_RULES, path.to_str().unwrap());
        report["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(|f| (f["action"].clone(), f["reason"].clone(), f["rule"].clone()))
            .collect::<Vec<_>>()
    };
    // Untagged frames: a cooked capture carries no VLAN header.
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .map(|c| c.frame.clone())
        .filter(|f| f.len() >= 14 && f[12..14] != [0x81, 0x00] && f[12..14] != [0x88, 0xa8])
        .collect();
    assert!(frames.len() > 10, "{} untagged cases", frames.len());
    let ethernet = verdicts(1, &frames);
    let sll: Vec<Vec<u8>> = frames.iter().map(|f| cooked(f, false)).collect();
    let sll2: Vec<Vec<u8>> = frames.iter().map(|f| cooked(f, true)).collect();
    assert_eq!(verdicts(113, &sll), ethernet, "SLL");
    assert_eq!(verdicts(276, &sll2), ethernet, "SLL2");
    assert!(
        ethernet.iter().any(|v| v.0 == "drop") && ethernet.iter().any(|v| v.0 == "pass"),
        "{ethernet:?}"
    );
}

#[test]
fn truncated_and_too_short_frames_are_reported() {
    common::require_bpf();
    let dir = TempDir::new("replay-cut");
    let ntp = ipv4_frame(&cases::ntp7());
    let dns = ipv4_frame(&udp(53000, 53, &dns_query()));
    let records: Vec<(u64, &[u8], u32)> = vec![
        // Cut after the UDP header: the IP length runs past the cut.
        (0, &ntp[..42], ntp.len() as u32),
        (1, &ntp, ntp.len() as u32),
        (2, &ntp[..10], 10),
        (3, &dns, dns.len() as u32),
    ];
    let path = dir.path().join("cut.pcap");
    std::fs::write(&path, pcap(1, &records)).unwrap();

    let report = replay_json(DEFAULT_RULES, path.to_str().unwrap());
    let f = report["frames"].as_array().unwrap();
    assert_eq!(f.len(), 4);
    assert_eq!(f[0]["truncated"], true);
    assert_eq!(f[0]["ran"], true);
    assert_eq!(f[0]["captured"].as_u64(), Some(42));
    assert_eq!(f[0]["len"].as_u64(), Some(ntp.len() as u64));
    assert_eq!(f[0]["reason"], "malformed");
    assert_eq!(f[1]["truncated"], false);
    // The shipped profile's reply guard takes it before any rule.
    assert_eq!(f[1]["reason"], "unsolicited_reply");
    assert!(f[1]["rule"].is_null(), "{}", f[1]);
    assert_eq!(f[2]["ran"], false, "a 10-byte frame is not run");
    assert_eq!(f[2]["reason"], "malformed");
    assert_eq!(f[2]["action"], "drop");
    assert_eq!(f[3]["reason"], "pass");
    assert_eq!(f[3]["action"], "pass");
    check_totals(&report, 4);
    assert_eq!(report["summary"]["truncated"].as_u64(), Some(1));
    assert_eq!(report["summary"]["not_run"].as_u64(), Some(1));

    // The human report says so too.
    let out = replay(&["--rules", DEFAULT_RULES, path.to_str().unwrap(), "-v"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("timing: capture"), "{text}");
    assert!(text.contains("truncated: 42 of"), "{text}");
    assert!(text.contains("not run"), "{text}");
}

#[test]
fn files_it_cannot_replay_are_refused_with_a_reason() {
    let dir = TempDir::new("replay-errors");
    let missing = dir.path().join("missing.pcap");
    let e = replay_error(&["--rules", DEFAULT_RULES, missing.to_str().unwrap()]);
    assert!(
        e.contains("missing.pcap") && e.contains("No such file"),
        "missing file: {e}"
    );

    let text = dir.path().join("notes.pcap");
    std::fs::write(&text, "these are my notes, not a capture\n").unwrap();
    let e = replay_error(&["--rules", DEFAULT_RULES, text.to_str().unwrap(), "--json"]);
    assert!(
        e.contains("notes.pcap") && e.contains("not a pcap or pcapng"),
        "not a pcap: {e}"
    );

    // Raw IP (link type 101): neither Ethernet nor Linux cooked.
    let sll = dir.path().join("raw.pcap");
    let frame = arp();
    std::fs::write(&sll, pcap(101, &[(0, &frame, frame.len() as u32)])).unwrap();
    let e = replay_error(&["--rules", DEFAULT_RULES, sll.to_str().unwrap()]);
    assert!(
        e.contains("raw.pcap") && e.contains("link type 101") && e.contains("Ethernet"),
        "link type: {e}"
    );

    // A capture cut in the middle of its second record.
    let cut = dir.path().join("cut.pcap");
    let mut bytes = pcap(1, &[(0, &frame, frame.len() as u32), (1, &frame, 42)]);
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&cut, bytes).unwrap();
    let e = replay_error(&["--rules", DEFAULT_RULES, cut.to_str().unwrap()]);
    assert!(
        e.contains("cut.pcap") && e.contains("frame 2"),
        "cut file: {e}"
    );

    // Invalid rules: FILE:LINE:COLUMN from the rule parser.
    let rules = dir.path().join("bad.toml");
    std::fs::write(&rules, "mode = \"enforce\"\nbogus = 1\n").unwrap();
    let e = replay_error(&["--rules", rules.to_str().unwrap(), sll.to_str().unwrap()]);
    assert!(e.contains("bad.toml:2:1"), "invalid rules: {e}");
}

#[test]
fn limit_rules_are_named_and_monitor_mode_passes_everything() {
    common::require_bpf();
    let dir = TempDir::new("replay-limit");
    let rules = dir.path().join("limit.toml");
    std::fs::write(
        &rules,
        r#"
mode = "monitor"
[limits.tiny]
pps = 1
burst_packets = 3
[[rule]]
name = "dns-limit"
protocol = "udp"
src_port = 53
action = "limit"
limit = "tiny"
[[rule]]
name = "ntp-reflection"
protocol = "udp"
src_port = 123
action = "drop"
"#,
    )
    .unwrap();
    let dns = ipv4_frame(&udp(53, 40000, &dns_query()));
    let ntp = ipv4_frame(&cases::ntp7());
    let mut records: Vec<(u64, &[u8], u32)> = (0..20)
        .map(|i| (i, dns.as_slice(), dns.len() as u32))
        .collect();
    records.push((20, &ntp, ntp.len() as u32));
    let path = dir.path().join("dns.pcap");
    std::fs::write(&path, pcap(1, &records)).unwrap();

    let report = replay_json(rules.to_str().unwrap(), path.to_str().unwrap());
    assert_eq!(report["mode"], "monitor");
    let f = report["frames"].as_array().unwrap();
    assert_eq!(f.len(), 21);
    for x in f {
        assert_eq!(x["action"], "pass", "monitor mode passes every frame");
    }
    // A limit rule that matched is named, whether the limiter passed the
    // frame or (would have) dropped it.
    assert_eq!(f[0]["reason"], "pass");
    assert_eq!(f[0]["rule"], "dns-limit");
    assert_eq!(f[19]["reason"], "rate_limit_drop");
    assert_eq!(f[19]["rule"], "dns-limit");
    assert_eq!(f[20]["reason"], "rule_drop");
    assert_eq!(f[20]["rule"], "ntp-reflection");
    check_totals(&report, 21);
    assert_eq!(report["rules"][0]["packets"].as_u64(), Some(20));
    assert_eq!(report["rules"][0]["action"], "limit");
    assert_eq!(report["summary"]["dropped"]["packets"].as_u64(), Some(0));
}

#[test]
fn an_oversize_frame_is_marked_and_the_others_judged() {
    common::require_bpf();
    let dir = TempDir::new("replay-oversize");
    let ntp = ipv4_frame(&cases::ntp7());
    let dns = ipv4_frame(&udp(53000, 53, &dns_query()));
    // A 70 KB frame, as a capture of GRO-merged traffic holds: more than
    // the kernel's test harness takes at all.
    let mut big = ntp.clone();
    big.resize(70 * 1024, 0);
    let records: Vec<(u64, &[u8], u32)> = vec![
        (0, &ntp, ntp.len() as u32),
        (1, &big, big.len() as u32),
        (2, &dns, dns.len() as u32),
        (3, &ntp, ntp.len() as u32),
    ];
    let path = dir.path().join("big.pcap");
    std::fs::write(&path, pcap(1, &records)).unwrap();

    let report = replay_json(DEFAULT_RULES, path.to_str().unwrap());
    let f = report["frames"].as_array().unwrap();
    assert_eq!(f.len(), 4, "the replay went on past the big frame");
    assert_eq!(f[1]["oversize"], true, "{}", f[1]);
    assert_eq!(f[1]["captured"].as_u64(), Some(70 * 1024));
    // The default profile's reply guard drops the unasked NTP reply.
    for (i, reason) in [
        (0, "unsolicited_reply"),
        (2, "pass"),
        (3, "unsolicited_reply"),
    ] {
        assert_eq!(f[i]["reason"], reason, "frame {}: {}", i + 1, f[i]);
        assert_eq!(f[i]["oversize"], false, "frame {}", i + 1);
        assert_eq!(f[i]["ran"], true, "frame {}", i + 1);
    }
    check_totals(&report, 4);
    assert_eq!(report["summary"]["oversize"].as_u64(), Some(1));
}

/// Peak memory of `replay --json` of `n` frames, its report in a file.
/// The capture is written a record at a time and the report read only at
/// its end: a child's ru_maxrss counts this process's memory until the
/// child's exec, so this process must stay smaller than filterctl.
fn replay_peak_kb(dir: &TempDir, frames: &[Vec<u8>], n: usize) -> u64 {
    use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
    let capture = dir.path().join(format!("{n}.pcap"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&capture).unwrap());
    w.write_all(&pcap_header(1)).unwrap();
    let mut record = Vec::new();
    for i in 0..n {
        let f = &frames[i % frames.len()];
        record.clear();
        pcap_record(&mut record, (i as u64, f, f.len() as u32));
        w.write_all(&record).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let report = dir.path().join(format!("{n}.json"));
    let mut child = std::process::Command::new(FILTERCTL)
        .args(["replay", "--json", "--rules", DEFAULT_RULES])
        .arg(&capture)
        .stdout(std::fs::File::create(&report).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run filterctl replay");
    let waited = filter_testkit::child::wait_bounded(&mut child, Duration::from_secs(600));
    assert!(
        waited.status.success(),
        "replay of {n} frames: {}",
        waited.status
    );
    // The whole document was written: its summary counts every frame.
    let mut file = std::fs::File::open(&report).unwrap();
    let size = file.seek(SeekFrom::End(0)).unwrap();
    file.seek(SeekFrom::Start(size.saturating_sub(2000)))
        .unwrap();
    let mut tail = String::new();
    file.read_to_string(&mut tail).unwrap();
    assert!(
        tail.contains(&format!("\"frames\":{n},")) && tail.trim_end().ends_with('}'),
        "replay of {n} frames: report ends {tail}"
    );
    std::fs::remove_file(&capture).unwrap();
    std::fs::remove_file(&report).unwrap();
    waited.max_rss_kb
}

/// Results stream out as they come: ten times the frames, about the same
/// peak memory. Holding every frame's result (some 340 bytes each with
/// --json) would add about 60 MB to the larger run.
#[test]
fn replay_memory_does_not_grow_with_the_capture() {
    common::require_bpf();
    let dir = TempDir::new("replay-memory");
    let frames: Vec<Vec<u8>> = [
        udp(123, 40000, &ntp_monlist_reply()),
        udp(53000, 53, &dns_query()),
        udp(1900, 40000, &ssdp_reply()),
    ]
    .iter()
    .map(|l4| ipv4_frame(l4))
    .collect();
    let small = replay_peak_kb(&dir, &frames, 20_000);
    let large = replay_peak_kb(&dir, &frames, 200_000);
    println!("replay peak memory: 20,000 frames {small} KiB, 200,000 frames {large} KiB");
    assert!(
        large * 2 <= small * 3,
        "peak memory grows with the capture: 20,000 frames {small} KiB, 200,000 frames {large} KiB"
    );
}
