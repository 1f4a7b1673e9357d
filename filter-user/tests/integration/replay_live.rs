//! `filterctl replay` against the live filter: traffic captured with
//! tcpdump on a victim whose filter runs in monitor mode (so that every
//! frame the filter would drop still reaches the capture) and replayed
//! afterwards must get the verdicts the live filter gave it: per reason,
//! frame by frame for the benign and attack frames, and a ban at the second
//! it fell live when the replay runs on the capture's clock.
//! Needs root, BPF, tcpdump, dnsmasq, dig and chronyd (`cargo xtask setup`).

use crate::common;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    process::Output,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{
    StopOnDrop,
    cli::{TempDir, command, ok, run as filterctl, status},
    frames::{ntp_monlist_reply, ssdp_reply},
    peers::{chrony_sync, dig, start_peers},
    tcpdump::{Cooked, Tcpdump, read_cooked},
};
use filter_testkit::net::{ATTACKER_V4, ATTACKER_V6, TestNet, VICTIM_V4, VICTIM_V6};
use serde_json::Value;

const DEFAULT_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default.toml");

/// `text` (a rule file) with its top-level mode set to `mode`.
fn with_mode(text: &str, mode: &str) -> String {
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if !found && l.trim_start().starts_with("mode =") {
                found = true;
                format!("mode = \"{mode}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "no `mode =` line in the rule file");
    out.join("\n") + "\n"
}

/// One datagram sent again and again from `from` to `to`.
struct Stream {
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

/// Sends one datagram of every stream per round, `rounds_per_s` rounds a
/// second, until `stop` is set or `limit` has passed (call it in the
/// attacker's namespace, whose spoofed prefixes are local). Returns the
/// datagrams sent of each stream.
fn flood(streams: &[Stream], rounds_per_s: u64, limit: Duration, stop: &AtomicBool) -> Vec<u64> {
    let sockets: Vec<UdpSocket> = streams
        .iter()
        .map(|s| UdpSocket::bind(s.from).unwrap_or_else(|e| panic!("bind {}: {e}", s.from)))
        .collect();
    let start = Instant::now();
    let mut rounds = 0;
    let mut sent = vec![0; streams.len()];
    while start.elapsed() < limit && !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rounds_per_s as f64) as u64;
        // Rounds missed while this thread was not scheduled are skipped,
        // not sent in one burst: a burst overflows the veth's ring (256
        // frames), which would lose frames before XDP and tcpdump see them.
        rounds = rounds.max(due.saturating_sub(2));
        while rounds < due {
            for ((sock, s), n) in sockets.iter().zip(streams).zip(&mut sent) {
                *n += sock.send_to(&s.payload, s.to).is_ok() as u64;
            }
            rounds += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

/// The victim interface's counters: per reason (its verdict, packets),
/// per rule (packets).
#[derive(Debug, Default)]
struct Counters {
    reasons: BTreeMap<String, (String, u64)>,
    rules: BTreeMap<String, u64>,
}

fn live_counters(net: &TestNet) -> Counters {
    let out = ok(filterctl(
        net,
        &["stats", "--json", "--iface", &net.victim_if],
    ));
    let doc: Value = serde_json::from_str(&out).expect("stats --json is JSON");
    let iface = &doc["interfaces"][0];
    let reasons = iface["reasons"]
        .as_object()
        .unwrap_or_else(|| panic!("no reasons in {out}"))
        .iter()
        .map(|(k, v)| {
            let verdict = v["verdict"].as_str().unwrap().to_string();
            (k.clone(), (verdict, v["packets"].as_u64().unwrap()))
        })
        .collect();
    let rules = iface["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no rules in {out}"))
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap().to_string();
            (name, r["packets"].as_u64().unwrap())
        })
        .collect();
    Counters { reasons, rules }
}

/// What the live filter counted between two snapshots.
fn delta(before: &Counters, after: &Counters) -> Counters {
    Counters {
        reasons: after
            .reasons
            .iter()
            .map(|(k, (verdict, n))| {
                let was = before.reasons.get(k).map_or(0, |b| b.1);
                (k.clone(), (verdict.clone(), n - was))
            })
            .collect(),
        rules: after
            .rules
            .iter()
            .map(|(k, n)| (k.clone(), n - before.rules.get(k).copied().unwrap_or(0)))
            .collect(),
    }
}

/// `filterctl replay` in the victim's namespace: the program's socket
/// lookups (the reply guard's "a server listens on this port") then see
/// the victim's sockets, as the live filter did, not the test machine's.
fn replay(net: &TestNet, args: &[&str]) -> Output {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    command(net, &all).output().expect("run filterctl replay")
}

fn replay_json(net: &TestNet, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = replay(net, &all);
    // Not `ok`: stdout may hold megabytes of frames.
    assert!(
        out.status.success(),
        "filterctl replay {} failed ({}): {}",
        all.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("replay --json is not JSON ({e})"))
}

/// Replay's frames by index.
fn frames_by_index(doc: &Value) -> HashMap<u64, &Value> {
    doc["frames"]
        .as_array()
        .expect("replay --json has frames")
        .iter()
        .map(|f| (f["index"].as_u64().unwrap(), f))
        .collect()
}

fn victim_ifindex(net: &TestNet) -> u32 {
    TestNet::in_ns(&net.victim_ns, || filterctl::sys::ifindex(&net.victim_if))
        .unwrap()
        .expect("victim interface index")
}

/// Whether `a` is in one of the attacker's spoofed prefixes (the
/// reflectors of these tests).
fn spoofed(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.octets()[..3] == [203, 0, 113] || a.octets()[..3] == [198, 51, 100],
        IpAddr::V6(a) => a.segments()[..3] == [0x2001, 0xdb8, 0xbad],
    }
}

/// The victim's own peers: its resolver and time server.
fn benign(a: IpAddr) -> bool {
    a == IpAddr::V4(ATTACKER_V4) || a == IpAddr::V6(ATTACKER_V6)
}

fn describe(c: &Cooked, r: Option<&Value>) -> String {
    let port = |p: Option<u16>| p.map_or("-".to_string(), |p| p.to_string());
    format!(
        "frame {} (t {:.6}) {:?}:{} -> {:?}:{} proto {:?}: replay {}",
        c.index,
        c.secs(),
        c.src,
        port(c.src_port),
        c.dst,
        port(c.dst_port),
        c.proto,
        r.map_or("missing".to_string(), |r| format!(
            "direction {} action {} reason {} rule {}",
            r["direction"], r["action"], r["reason"], r["rule"]
        ))
    )
}

/// The victim's own traffic during the flood: lookups (one answer larger
/// than the MTU, which arrives fragmented) and a time sync. Returns what
/// failed.
fn host_traffic(net: &TestNet, files: &TempDir) -> Vec<String> {
    let mut failed = Vec::new();
    let answered = |name: &str, kind: &str, ok: fn(&str) -> bool| {
        dig(net, name, kind, 2).is_some_and(|a| ok(&a))
    };
    let small = |a: &str| a.trim() == "198.51.100.10";
    for i in 0..5 {
        if !answered("ok.test", "A", small) {
            failed.push(format!("lookup {i} of ok.test"));
        }
        if !answered("big.test", "TXT", |a| a.len() > 3000) {
            failed.push(format!("lookup {i} of big.test"));
        }
    }
    if !chrony_sync(&net.victim_ns, files, None) {
        failed.push("time sync".into());
    }
    for i in 5..8 {
        if !answered("ok.test", "A", small) {
            failed.push(format!("lookup {i} of ok.test"));
        }
    }
    failed
}

/// Frames a datagram of `s` takes on the veth (IPv4, MTU 1500).
fn frames_per_datagram(s: &Stream) -> u64 {
    (8 + s.payload.len() as u64).div_ceil(1480)
}

/// The spoofed reflection flood of the first test: NTP monlist replies
/// (IPv4 and IPv6) and SSDP replies at port 1900 from eight reflectors,
/// and DNS answers larger than the MTU (the first fragment is an
/// unsolicited reply, the others follow its drop) from a ninth.
fn reflection_streams() -> Vec<Stream> {
    let mut big_answer = vec![0u8; 3000];
    big_answer[..12].copy_from_slice(&[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    let mut streams = vec![Stream {
        from: SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 53),
        to: SocketAddr::new(VICTIM_V4.into(), 33053),
        payload: big_answer,
    }];
    for i in 1..=8u8 {
        let reflector = IpAddr::V4(Ipv4Addr::new(203, 0, 113, i));
        streams.push(Stream {
            from: SocketAddr::new(reflector, 123),
            to: SocketAddr::new(VICTIM_V4.into(), 33000 + u16::from(i)),
            payload: ntp_monlist_reply(),
        });
        streams.push(Stream {
            from: SocketAddr::new(reflector, 1900),
            to: SocketAddr::new(VICTIM_V4.into(), 1900),
            payload: ssdp_reply(),
        });
    }
    streams.push(Stream {
        from: SocketAddr::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 7).into(),
            123,
        ),
        to: SocketAddr::new(VICTIM_V6.into(), 33100),
        payload: ntp_monlist_reply(),
    });
    streams
}

/// The "done when": a capture of live traffic (tcpdump -i any on
/// the victim while it resolves names, syncs its time and is flooded with
/// spoofed NTP and SSDP reflection replies) replayed through the default
/// profile drops no benign frame and every reflection frame, and its drop
/// count per reason matches the live filter's within 1%.
#[test]
fn a_replayed_live_capture_drops_what_the_live_filter_did() {
    common::require_bpf();
    let t0 = Instant::now();
    let net = TestNet::new("rpl").expect("create test namespaces");
    let files = TempDir::new("replay-live");
    let _peers = start_peers(&net, &files);
    // Monitor mode: the frames the filter would drop still reach tcpdump,
    // and its counters still say why it would drop them.
    let default = std::fs::read_to_string(DEFAULT_RULES).unwrap();
    let monitor = files.write("monitor.toml", &with_mode(&default, "monitor"));
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &monitor],
    ));
    assert_eq!(status(&net)["mode"], "monitor");
    let capture = files.path().join("live.pcap").to_str().unwrap().to_string();
    let tcpdump = Tcpdump::start(&net.victim_ns, &capture);
    let before = live_counters(&net);
    let streams = reflection_streams();
    let stop = AtomicBool::new(false);
    let (sent, failed) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let flood = s.spawn(|| {
            TestNet::in_ns(&net.attacker_ns, || {
                flood(&streams, 100, Duration::from_secs(40), &stop)
            })
            .unwrap()
        });
        let failed = host_traffic(&net, &files);
        stop.store(true, Ordering::Relaxed);
        let sent = flood.join().unwrap();
        let frames: u64 = streams
            .iter()
            .zip(&sent)
            .map(|(s, n)| n * frames_per_datagram(s))
            .sum();
        (frames, failed)
    });
    std::thread::sleep(Duration::from_millis(300));
    let live = delta(&before, &live_counters(&net));
    let stopped = tcpdump.stop();
    let live_run = t0.elapsed();
    assert!(
        failed.is_empty(),
        "the victim's own traffic failed with the filter in monitor mode \
         (which drops nothing: the test hosts are broken): {failed:?}"
    );
    assert_eq!(
        stopped.dropped_by_kernel, 0,
        "tcpdump lost frames, the capture is not what the filter saw: {}",
        stopped.log
    );

    let cooked = read_cooked(&capture);
    let ifindex = victim_ifindex(&net);
    let on_victim = |c: &&Cooked| c.ifindex == ifindex && !c.loopback();
    let incoming: Vec<&Cooked> = cooked
        .iter()
        .filter(on_victim)
        .filter(|c| !c.outgoing())
        .collect();
    let outgoing = cooked.iter().filter(on_victim).count() - incoming.len();
    let loopback = cooked.iter().filter(|c| c.loopback()).count();
    let attack: Vec<&Cooked> = incoming
        .iter()
        .copied()
        .filter(|c| c.src.is_some_and(spoofed))
        .collect();
    let good: Vec<&Cooked> = incoming
        .iter()
        .copied()
        .filter(|c| c.src.is_some_and(benign))
        .collect();
    println!(
        "live run {live_run:?}: {sent} reflection frames sent; capture: {} frames, \
         {} incoming ({} attack, {} benign), {outgoing} outgoing, {loopback} loopback",
        cooked.len(),
        incoming.len(),
        attack.len(),
        good.len()
    );
    // Frames lost before the victim (a full veth ring) are seen by
    // neither the filter nor tcpdump; most must arrive for the test to
    // test something.
    assert!(
        attack.len() as u64 * 10 >= sent * 9,
        "{} of {sent} reflection frames reached the victim",
        attack.len()
    );
    assert!(good.len() > 20, "too few benign frames captured");

    // The same rules in enforce mode, as an operator would replay them.
    let t1 = Instant::now();
    let doc = replay_json(&net, &["--rules", DEFAULT_RULES, &capture]);
    println!("replay took {:?}", t1.elapsed());
    let frames = frames_by_index(&doc);
    let mut wrong = Vec::new();
    for c in cooked.iter().filter(on_victim) {
        let r = frames.get(&c.index).copied();
        let want = if c.outgoing() { "out" } else { "in" };
        let bad = match r {
            None => true,
            Some(r) if r["direction"] != want => true,
            Some(r) if c.outgoing() => r["action"] != "sent",
            Some(r) if c.src.is_some_and(spoofed) => r["action"] != "drop",
            Some(r) if c.src.is_some_and(benign) => r["action"] != "pass",
            Some(_) => false,
        };
        if bad {
            wrong.push(describe(c, r));
        }
    }
    // Per reason: the live counters against the replay's totals.
    let mut mismatched = Vec::new();
    println!("{:<22} {:>6} {:>8} {:>8}", "reason", "", "live", "replay");
    for (reason, (verdict, l)) in &live.reasons {
        let r = doc["totals"][reason]["packets"].as_u64().unwrap_or(0);
        println!("{reason:<22} {verdict:>6} {l:>8} {r:>8}");
        if verdict == "drop" && r.abs_diff(*l) * 100 > *l {
            mismatched.push(format!("{reason}: live {l}, replay {r}"));
        }
    }
    let replay_rules: BTreeMap<&str, u64> = doc["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("?"),
                r["packets"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for (rule, l) in &live.rules {
        let r = replay_rules.get(rule.as_str()).copied().unwrap_or(0);
        println!("rule {rule:<17} {:>6} {l:>8} {r:>8}", "");
        if r.abs_diff(*l) * 100 > *l {
            mismatched.push(format!("rule {rule}: live {l}, replay {r}"));
        }
    }
    let seen: u64 = live.reasons.values().map(|v| v.1).sum();
    println!("live seen {seen}; replay summary {}", doc["summary"]);
    for w in wrong.iter().take(20) {
        println!("  {w}");
    }
    assert_eq!(doc["mode"], "enforce");
    assert_eq!(doc["timing"], "capture");
    let summary = &doc["summary"];
    for (field, n) in [
        ("incoming", incoming.len()),
        ("outgoing", outgoing),
        ("loopback", loopback),
        ("direction_unknown", 0),
    ] {
        assert_eq!(summary[field], n as u64, "summary.{field}");
    }
    assert!(
        wrong.is_empty(),
        "{} frames got the wrong direction or verdict (benign must pass, \
         reflections drop, sent frames be \"sent\"), first: {:?}",
        wrong.len(),
        wrong.first()
    );
    assert!(
        mismatched.is_empty(),
        "drop counts (per reason) or rule counts differ from the live filter's by more \
         than 1%: {mismatched:?}"
    );
    assert!(
        seen.abs_diff(incoming.len() as u64) * 100 <= seen,
        "the live filter saw {seen} frames, the capture holds {} incoming: \
         they did not see the same traffic",
        incoming.len()
    );
    assert_eq!(
        doc["direction"], "capture",
        "a Linux cooked capture marks each frame's direction itself"
    );
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
    println!("test took {:?}", t0.elapsed());
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// When the live filter banned a source: the Unix time the ban began
/// (from `top`'s time left of a ban of `ban_for_s`) and the time of the
/// first poll that saw it.
#[derive(Debug)]
struct LiveBan {
    began_unix: f64,
    seen_unix: f64,
}

/// Polls `top` every 100 ms until `source` is banned or `stop` is set.
fn watch_ban(net: &TestNet, source: &str, ban_for_s: f64, stop: &AtomicBool) -> Option<LiveBan> {
    while !stop.load(Ordering::Relaxed) {
        let asked = unix_now();
        let out = ok(filterctl(
            net,
            &["top", "--json", "--iface", &net.victim_if],
        ));
        let answered = unix_now();
        let doc: Value = serde_json::from_str(&out).expect("top --json is JSON");
        let left = doc["interfaces"][0]["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["source"].as_str().unwrap_or("").split('/').next() == Some(source))
            .find_map(|e| e["banned_for_s"].as_f64());
        if let Some(left) = left {
            return Some(LiveBan {
                began_unix: (asked + answered) / 2.0 - (ban_for_s - left),
                seen_unix: answered,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The `ban` event of `source` in a replay's JSON: (time_s, frame).
fn ban_event(doc: &Value, source: &str) -> Option<(f64, u64)> {
    doc["events"]
        .as_array()
        .expect("replay --json has events")
        .iter()
        .find(|e| {
            e["kind"] == "ban"
                && e["source"].as_str().and_then(|s| s.split('/').next()) == Some(source)
        })
        .map(|e| (e["time_s"].as_f64().unwrap(), e["frame"].as_u64().unwrap()))
}

/// The second "done when": a source over its per-source limit for
/// 12 s, captured live, replayed on the capture's clock shows the ban at
/// the second the live filter banned it (±1 s); replayed at `--timing
/// fast` it shows another time or none, and the output says why.
#[test]
fn a_replayed_ban_lands_on_the_capture_clock_when_the_live_one_did() {
    common::require_bpf();
    let t0 = Instant::now();
    let net = TestNet::new("rpb").expect("create test namespaces");
    let files = TempDir::new("replay-ban");
    let rules = |mode: &str| {
        format!(
            "mode = \"{mode}\"\n[per_source]\npps = 100\nburst_packets = 10\n\
             [ban]\nafter = \"5s\"\nfor = \"10m\"\n"
        )
    };
    let ban_for_s = 600.0;
    let monitor = files.write("monitor.toml", &rules("monitor"));
    let enforce = files.write("enforce.toml", &rules("enforce"));
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &monitor],
    ));
    let capture = files.path().join("ban.pcap").to_str().unwrap().to_string();
    let tcpdump = Tcpdump::start(&net.victim_ns, &capture);
    let before = live_counters(&net);
    let source = "198.51.100.7";
    let stream = Stream {
        from: SocketAddr::new(source.parse().unwrap(), 4444),
        to: SocketAddr::new(VICTIM_V4.into(), 9999),
        payload: b"over the limit".to_vec(),
    };
    // Five times the limit for 12 s.
    let stop = AtomicBool::new(false);
    let (sent, live_ban) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let watch = s.spawn(|| watch_ban(&net, source, ban_for_s, &stop));
        let sent = TestNet::in_ns(&net.attacker_ns, || {
            flood(
                std::slice::from_ref(&stream),
                500,
                Duration::from_secs(12),
                &AtomicBool::new(false),
            )[0]
        })
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        (sent, watch.join().unwrap())
    });
    std::thread::sleep(Duration::from_millis(300));
    let live = delta(&before, &live_counters(&net));
    let stopped = tcpdump.stop();
    assert_eq!(
        stopped.dropped_by_kernel, 0,
        "tcpdump lost frames: {}",
        stopped.log
    );
    let cooked = read_cooked(&capture);
    let first = cooked.first().expect("an empty capture").secs();
    let first_flood = cooked
        .iter()
        .find(|c| c.src == Some(stream.from.ip()) && !c.outgoing())
        .expect("no flood frame captured")
        .secs();
    let live_ban = live_ban.unwrap_or_else(|| {
        panic!("the live filter never banned {source} ({sent} sent; counted {live:?})")
    });
    let live_at = live_ban.began_unix - first;
    println!(
        "live: {sent} sent in {:?}; banned {live_at:.3} s after the capture's first frame \
         ({:.3} s after the flood's; first seen by top at {:.3} s); capture {} frames",
        t0.elapsed(),
        live_ban.began_unix - first_flood,
        live_ban.seen_unix - first,
        cooked.len()
    );

    let doc = replay_json(
        &net,
        &["--rules", &enforce, "--timing", "capture", &capture],
    );
    println!(
        "capture timing: events {} note {}",
        doc["events"], doc["timing_note"]
    );
    assert_eq!(doc["timing"], "capture");
    // On the capture's clock the limiter admits and refuses what it did
    // live, give or take the frames around a second's edge.
    let mut mismatched = Vec::new();
    for reason in ["rate_limit_drop", "ban_drop", "pass"] {
        let l = live.reasons.get(reason).map_or(0, |v| v.1);
        let r = doc["totals"][reason]["packets"].as_u64().unwrap_or(0);
        println!("{reason}: live {l}, replay {r}");
        if r.abs_diff(l) * 100 > l {
            mismatched.push(format!("{reason}: live {l}, replay {r}"));
        }
    }
    let (at, frame) = ban_event(&doc, source)
        .unwrap_or_else(|| panic!("no ban of {source} in the replay: {}", doc["events"]));
    let frame_at = cooked
        .get(frame as usize - 1)
        .unwrap_or_else(|| panic!("the ban event's frame {frame} is not in the capture"))
        .secs()
        - first;
    assert!(
        (at - frame_at).abs() < 0.01,
        "the ban event says {at:.3} s, its frame {frame} was captured {frame_at:.3} s \
         after the first frame"
    );
    assert!(
        (at - live_at).abs() <= 1.0,
        "the replay bans {source} at {at:.3} s (frame {frame}), the live filter did at \
         {live_at:.3} s"
    );

    assert!(
        mismatched.is_empty(),
        "on the capture's clock the replay counts differ from the live filter's by more \
         than 1%: {mismatched:?}"
    );

    let fast = replay_json(&net, &["--rules", &enforce, "--timing", "fast", &capture]);
    println!(
        "fast timing: events {} note {} summary {}",
        fast["events"], fast["timing_note"], fast["summary"]
    );
    assert_eq!(fast["timing"], "fast");
    let note = fast["timing_note"].as_str().unwrap_or("");
    assert!(
        !note.is_empty() && fast["timing_note"] != doc["timing_note"],
        "the fast replay does not explain its timing: {:?}",
        fast["timing_note"]
    );
    if let Some((fast_at, _)) = ban_event(&fast, source) {
        assert!(
            (fast_at - live_at).abs() > 1.0,
            "at --timing fast the ban ({fast_at:.3} s) fell when the live one did \
             ({live_at:.3} s): the fast clock made no difference"
        );
    }
    let human = ok(replay(
        &net,
        &["--rules", &enforce, "--timing", "fast", &capture],
    ));
    let line = human
        .lines()
        .find(|l| l.trim_start().starts_with("timing:"))
        .unwrap_or_else(|| panic!("no timing: line in the human report:\n{human}"));
    println!("human report's {line}");
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
    println!("test took {:?}", t0.elapsed());
}
