//! End to end on real interfaces: two network namespaces joined by veth, the
//! filter loaded by the filterctl binary on the victim side, traffic sent
//! with ordinary sockets from the attacker side. Needs root; never skips.

use crate::common;

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use filter_testkit::frames::{ntp_monlist_reply, ntp_time_reply};
use filter_testkit::net::{ATTACKER_V4, Sink, TestNet, VICTIM_V4, VICTIM_V6, ping, send_udp};
use serde_json::Value;

use common::cli::{TempDir, failed, ok, run as filterctl};

fn rules_path(name: &str) -> String {
    format!("{}/../rules/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn xdp_attached(net: &TestNet) -> bool {
    let out = std::process::Command::new("ip")
        .args(["-n", &net.victim_ns, "link", "show", "dev", &net.victim_if])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn reflection_dropped_benign_delivered_and_unload_leaves_nothing() {
    common::require_bpf();
    let net = TestNet::new("e2e").expect("create test namespaces");

    // Refusals that must change nothing.
    let err = failed(filterctl(&net, &["load", "--iface", "nosuch0"]));
    assert!(err.contains("no such interface: nosuch0"), "{err}");
    let files = TempDir::new("e2e");
    let bad = files.write(
        "bad.toml",
        "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = 99999\naction = \"drop\"\n",
    );
    let err = failed(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &bad],
    ));
    assert!(err.contains(":4:12: src_port 99999 out of range"), "{err}");
    assert!(!net.pin_root.join(&net.victim_if).exists());
    assert!(!xdp_attached(&net));

    let out = ok(filterctl(
        &net,
        &[
            "load",
            "--iface",
            &net.victim_if,
            "--rules",
            &rules_path("default.toml"),
        ],
    ));
    assert!(
        out.contains("native mode"),
        "veth supports native XDP: {out}"
    );
    assert!(xdp_attached(&net));
    let err = failed(filterctl(&net, &["load", "--iface", &net.victim_if]));
    assert!(err.contains("already loaded"), "{err}");

    let status: Value = serde_json::from_str(&ok(filterctl(&net, &["status", "--json"]))).unwrap();
    assert_eq!(status["schema_version"], 1, "{status}");
    let s = &status["interfaces"][0];
    assert_eq!(s["interface"], net.victim_if.as_str());
    assert_eq!(s["attach_mode"], "native");
    assert_eq!(s["mode"], "enforce");
    assert_eq!(s["rule_count"], 3);
    assert!(s["program_id"].as_u64().unwrap() > 0);
    assert!(
        s["rules_source"]
            .as_str()
            .unwrap()
            .ends_with("rules/default.toml")
    );
    assert_eq!(s["rules_digest"].as_str().unwrap().len(), 64);

    let v4 = |port| SocketAddr::new(IpAddr::V4(VICTIM_V4), port);
    let v6 = |port| SocketAddr::new(IpAddr::V6(VICTIM_V6), port);
    let (reflect, time, ssdp, dns, reflect6, dns6) =
        (v4(40000), v4(40001), v4(50000), v4(53), v6(40000), v6(53));
    let sink = TestNet::in_ns(&net.victim_ns, || {
        Sink::bind(&[reflect, time, ssdp, dns, reflect6, dns6])
    })
    .unwrap()
    .unwrap();
    let listener = TestNet::in_ns(&net.victim_ns, || TcpListener::bind(v4(8080)))
        .unwrap()
        .unwrap();

    // 50 reflectors in each spoofed /24, 4 replies each; the host's own time
    // sync and ordinary traffic alongside.
    const PER_SOURCE: usize = 4;
    let sources: Vec<Ipv4Addr> = (1..=50)
        .flat_map(|i| {
            [
                Ipv4Addr::new(198, 51, 100, i),
                Ipv4Addr::new(203, 0, 113, i),
            ]
        })
        .collect();
    let sources6: Vec<Ipv6Addr> = (1..=20)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, i))
        .collect();
    TestNet::in_ns(&net.attacker_ns, || {
        for &s in &sources {
            send_udp(
                SocketAddr::new(s.into(), 123),
                reflect,
                &ntp_monlist_reply(),
                PER_SOURCE,
            )
            .unwrap();
            send_udp(
                SocketAddr::new(s.into(), 1900),
                ssdp,
                b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n",
                PER_SOURCE,
            )
            .unwrap();
        }
        for &s in &sources6 {
            send_udp(
                SocketAddr::new(s.into(), 123),
                reflect6,
                &ntp_monlist_reply(),
                PER_SOURCE,
            )
            .unwrap();
        }
        // The host's own time sync: its requests first (the reply guard
        // lets only answers in), two of them, five replies each.
        for _ in 0..2 {
            let server = SocketAddr::new(ATTACKER_V4.into(), 123);
            sink.send_from(time, server, &[0x23; 48]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            send_udp(server, time, &ntp_time_reply(), 5).unwrap();
        }
        send_udp(
            SocketAddr::new(ATTACKER_V4.into(), 41000),
            dns,
            b"\x12\x34\x01\x00",
            10,
        )
        .unwrap();
        send_udp(
            SocketAddr::new(sources6[0].into(), 41000),
            dns6,
            b"\x12\x34\x01\x00",
            10,
        )
        .unwrap();
        assert_eq!(ping(VICTIM_V4, 3).unwrap(), 3, "ICMP echo lost");
        // Benign TCP: a connection and a few bytes each way.
        let mut c = TcpStream::connect_timeout(&v4(8080), Duration::from_secs(5)).unwrap();
        c.write_all(b"hello").unwrap();
    })
    .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = [0u8; 5];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");

    let counts = sink.drain();
    assert_eq!(counts[&reflect], 0, "NTP reflection delivered");
    assert_eq!(counts[&ssdp], 0, "SSDP reflection delivered");
    assert_eq!(counts[&reflect6], 0, "IPv6 NTP reflection delivered");
    assert_eq!(counts[&time], 10, "NTP time replies (time sync) lost");
    assert_eq!(counts[&dns], 10, "DNS lost");
    assert_eq!(counts[&dns6], 10, "IPv6 DNS lost");

    let stats: Value = serde_json::from_str(&ok(filterctl(
        &net,
        &["stats", "--json", "--iface", &net.victim_if],
    )))
    .unwrap();
    let i = &stats["interfaces"][0];
    let rule = |name: &str| {
        i["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["packets"]
            .as_u64()
            .unwrap()
    };
    let ntp_sent = ((sources.len() + sources6.len()) * PER_SOURCE) as u64;
    let ssdp_sent = (sources.len() * PER_SOURCE) as u64;
    // Reflected replies answer no request: the reply guard drops them
    // before any rule.
    assert_eq!(rule("ntp-reflection"), 0);
    assert_eq!(rule("ssdp-reflection"), 0);
    assert_eq!(rule("ntp-time-replies"), 10);
    assert_eq!(
        i["reasons"]["unsolicited_reply"]["packets"]
            .as_u64()
            .unwrap(),
        ntp_sent + ssdp_sent
    );
    assert_eq!(
        i["reasons"]["solicited_reply"]["packets"].as_u64().unwrap(),
        10
    );
    assert_eq!(
        i["dropped"]["packets"].as_u64().unwrap(),
        ntp_sent + ssdp_sent
    );
    assert!(
        i["reasons"]["pass"]["packets"].as_u64().unwrap() >= 20 + 3,
        "DNS and TCP counted as pass"
    );
    let seen = i["seen"]["packets"].as_u64().unwrap();
    let by_reason: u64 = i["reasons"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(seen, by_reason);
    assert_eq!(
        seen,
        i["dropped"]["packets"].as_u64().unwrap() + i["passed"]["packets"].as_u64().unwrap()
    );
    assert!(stats["timestamp_unix_ms"].as_u64().unwrap() > 0);

    let table = ok(filterctl(&net, &["stats"]));
    assert!(table.contains("ntp-reflection"), "{table}");

    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
    assert!(!xdp_attached(&net), "XDP still attached after unload");
    assert!(
        !net.pin_root.join(&net.victim_if).exists(),
        "pins left after unload"
    );
    // Nothing but the marker that the unload was on purpose.
    let left: Vec<String> = std::fs::read_dir(&net.pin_root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [format!("unloaded:{}", net.victim_if)]);
    let err = failed(filterctl(&net, &["unload", "--iface", &net.victim_if]));
    assert!(err.contains("no filter loaded"), "{err}");
    assert_eq!(ok(filterctl(&net, &["status"])).trim(), "no filter loaded");
    drop(net);
}

#[test]
fn test_hosts_are_removed_on_panic() {
    common::require_bpf();
    let names = std::panic::catch_unwind(|| {
        let net = TestNet::new("pan").expect("create test namespaces");
        std::fs::create_dir_all(&net.pin_root).unwrap();
        let names = (
            net.victim_ns.clone(),
            net.attacker_ns.clone(),
            net.pin_root.clone(),
        );
        std::panic::panic_any(names);
    })
    .expect_err("panicked")
    .downcast::<(String, String, std::path::PathBuf)>()
    .unwrap();
    assert!(!Path::new("/run/netns").join(&names.0).exists());
    assert!(!Path::new("/run/netns").join(&names.1).exists());
    assert!(!names.2.exists());
}

#[test]
fn rate_limit_on_a_veth_cuts_a_source_to_its_limit() {
    common::require_bpf();
    let net = TestNet::new("rl").expect("create test namespaces");
    let files = TempDir::new("rl");
    let rules = files.write("rl.toml", "[per_source]\npps = 1000\nburst_packets = 100\n");
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));

    let (fast, slow) = (
        SocketAddr::new(IpAddr::V4(VICTIM_V4), 7000),
        SocketAddr::new(IpAddr::V4(VICTIM_V4), 7001),
    );
    // One receiving thread per socket, reading while the test sends, so no
    // socket buffer overflows and every admitted packet is counted.
    let sinks: Vec<Sink> = [fast, slow]
        .iter()
        .map(|a| {
            TestNet::in_ns(&net.victim_ns, || Sink::bind(&[*a]))
                .unwrap()
                .unwrap()
        })
        .collect();
    let (fast_src, slow_src) = (
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)), 5000),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11)), 5000),
    );
    let (counts, sent, seconds) = std::thread::scope(|s| {
        let readers: Vec<_> = sinks
            .iter()
            .map(|k| s.spawn(move || k.drain_after(Duration::from_secs(5))))
            .collect();
        // 3000 packets/s from one source (three times its limit), 500/s
        // from another (half its limit), for 1.5 seconds, in 10 ms steps.
        let (sent, seconds) = TestNet::in_ns(&net.attacker_ns, || {
            let f = std::net::UdpSocket::bind(fast_src).unwrap();
            let w = std::net::UdpSocket::bind(slow_src).unwrap();
            let t0 = std::time::Instant::now();
            let (mut nf, mut nw) = (0u64, 0u64);
            for step in 1..=150u32 {
                for _ in 0..30 {
                    f.send_to(b"flood", fast).unwrap();
                    nf += 1;
                }
                for _ in 0..5 {
                    w.send_to(b"fine", slow).unwrap();
                    nw += 1;
                }
                let next = t0 + Duration::from_millis(10 * step as u64);
                std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
            }
            ((nf, nw), t0.elapsed().as_secs_f64())
        })
        .unwrap();
        let counts: Vec<u64> = readers
            .into_iter()
            .map(|h| h.join().unwrap().into_values().sum())
            .collect();
        (counts, sent, seconds)
    });
    let expected = 100.0 + 1000.0 * seconds;
    let got = counts[0] as f64;
    assert!(
        (got - expected).abs() <= 0.10 * expected,
        "source over its limit: {got} delivered of {} sent in {seconds:.2}s, expected {expected:.0} +-10%",
        sent.0
    );
    assert_eq!(counts[1], sent.1, "source under its limit lost packets");

    let stats: Value = serde_json::from_str(&ok(filterctl(&net, &["stats", "--json"]))).unwrap();
    let limited = stats["interfaces"][0]["reasons"]["rate_limit_drop"]["packets"]
        .as_u64()
        .unwrap();
    assert_eq!(limited, sent.0 - counts[0], "rate_limit_drop counter");
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
}
