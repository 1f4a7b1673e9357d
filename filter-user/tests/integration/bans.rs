//! Bans on a veth pair: a source that stays over its limit for `after` is
//! banned (at the default profile's numbers), and a flood forging the
//! host's resolver can neither ban it nor spend its answers' budget.
//! Needs root, BPF, dnsmasq and dig (`cargo xtask setup`).

use crate::common;

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use common::{
    cli::{TempDir, ok, reason, run as filterctl},
    peers::{dig, resolver},
};
use filter_testkit::net::{ATTACKER_V4, TestNet, VICTIM_V4};

/// Sends from `from` to `to` at `pps` for `secs`, in 1 ms slices (call it
/// in the attacker's namespace). Returns the datagrams sent.
fn send_at(from: SocketAddr, to: SocketAddr, pps: u64, secs: f64) -> u64 {
    let sock = UdpSocket::bind(from).unwrap();
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed().as_secs_f64() < secs {
        let due = (start.elapsed().as_secs_f64() * pps as f64) as u64;
        while sent < due {
            // The veth ring may be full for a moment: that frame is lost
            // before XDP, which only slows the flood a little.
            let _ = sock.send_to(b"flood", to);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    sent
}

#[test]
fn a_source_over_the_default_limit_is_banned_after_ten_seconds() {
    common::require_bpf();
    let net = TestNet::new("ban").expect("create test namespaces");
    let rules = format!("{}/../rules/default.toml", env!("CARGO_MANIFEST_DIR"));
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    let from = SocketAddr::new(Ipv4Addr::new(198, 51, 100, 7).into(), 4444);
    let to = SocketAddr::new(VICTIM_V4.into(), 9999);
    // Twice the default 20000 pps: one packet in two is still admitted,
    // which must not count as a break.
    TestNet::in_ns(&net.attacker_ns, || send_at(from, to, 40_000, 8.0)).unwrap();
    assert_eq!(reason(&net, "ban_drop"), 0, "banned before `after` (10 s)");
    assert!(
        reason(&net, "rate_limit_drop") > 0,
        "the flood was not over its limit"
    );
    TestNet::in_ns(&net.attacker_ns, || send_at(from, to, 40_000, 4.0)).unwrap();
    assert!(
        reason(&net, "ban_drop") > 0,
        "12 s at twice the limit and no ban"
    );
}

fn resolves(net: &TestNet) -> bool {
    dig(net, "ok.test", "A", 1).is_some_and(|a| a.trim() == "198.51.100.10")
}

/// Queries during a forged flood of the resolver's address (3x its limit,
/// longer than the ban delay) and after it: (answered during, of, after).
/// With `gateway`, the resolver is also the victim's default gateway, which
/// filterctl finds on the host by itself. Without `ask`, the victim asks the
/// resolver nothing during the flood (nothing it sends protects it then).
fn forged_flood(never_ban: &str, gateway: bool, ask: bool) -> (usize, usize, usize) {
    let net = TestNet::new("fgd").expect("create test namespaces");
    if gateway {
        let out = std::process::Command::new("ip")
            .args([
                "-n",
                &net.victim_ns,
                "route",
                "add",
                "default",
                "via",
                "192.0.2.2",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _dns = resolver(&net, &[]);
    let files = TempDir::new(&format!("fgd{}{gateway}", never_ban.len()));
    let rules = files.write(
        "rules.toml",
        &format!(
            "never_ban = [{never_ban}]\n\
             [per_source]\npps = 1000\n[ban]\nafter = \"2s\"\nfor = \"10m\"\n\
             [reply_guard]\n\
             [[rule]]\nname = \"qotd\"\nprotocol = \"udp\"\nsrc_port = 17\naction = \"drop\"\n"
        ),
    );
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    let during = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            TestNet::in_ns(&net.attacker_ns, || {
                // From a guarded port (dnsmasq holds 53 itself) and from an
                // unguarded one.
                let to = SocketAddr::new(VICTIM_V4.into(), 9999);
                let a = SocketAddr::new(ATTACKER_V4.into(), 1434);
                let b = SocketAddr::new(ATTACKER_V4.into(), 4444);
                std::thread::scope(|s| {
                    s.spawn(|| send_at(a, to, 1500, 4.0));
                    send_at(b, to, 3000, 4.0)
                })
            })
            .unwrap()
        });
        let mut answered = 0;
        for _ in 0..20 {
            answered += (ask && resolves(&net)) as usize;
            std::thread::sleep(Duration::from_millis(150));
        }
        flood.join().unwrap();
        answered
    });
    let after = (0..10).filter(|_| resolves(&net)).count();
    (during, if ask { 20 } else { 0 }, after)
}

#[test]
fn a_flood_forging_the_resolver_neither_bans_it_nor_spends_its_answers() {
    common::require_bpf();
    let (during, of, after) = forged_flood("\"192.0.2.2\"", false, false);
    assert_eq!(after, 10, "answers lost after the flood: {during} of {of}");
    // The same flood without the never-ban entry bans the resolver when
    // the host asks it nothing meanwhile: the entry made the difference.
    let (_, _, after) = forged_flood("", false, false);
    assert_eq!(after, 0, "the forged flood did not get the resolver banned");
}

/// Without any never-ban entry: the resolver the host keeps asking is a
/// peer it uses (its requests protect it), so a forged stream of its
/// address is dropped over the limit but never bans it, and its answers
/// keep coming during the flood and after.
#[test]
fn a_flood_forging_a_peer_the_host_asks_never_bans_it() {
    common::require_bpf();
    let (during, of, after) = forged_flood("", false, true);
    assert!(
        during * 100 >= of * 95,
        "{during} of {of} answered during the flood"
    );
    assert_eq!(after, 10, "the resolver the host asks got banned");
}

#[test]
fn the_default_gateway_is_never_banned_without_being_listed() {
    common::require_bpf();
    // Not asked during the flood: the gateway's own protection, alone.
    let (_, _, after) = forged_flood("", true, false);
    assert_eq!(after, 10, "the default gateway got banned");
}

/// The kernel bans a source's /64; the never-ban set holds a /128. A
/// forged stream of a neighbour of a never-ban peer (same /64), over its
/// limit for longer than `after`, must not ban the /64 that holds the
/// peer: the peer's datagrams still arrive after it.
#[test]
fn a_forged_neighbour_of_an_ipv6_never_ban_peer_bans_nothing() {
    use std::net::{IpAddr, Ipv6Addr};

    use filter_testkit::net::{ATTACKER_V6, Sink, VICTIM_V6, send_udp};
    common::require_bpf();
    let net = TestNet::new("nb6").expect("create test namespaces");
    let files = TempDir::new("nb6");
    let rules = files.write(
        "r.toml",
        &format!(
            "never_ban = [\"{ATTACKER_V6}\"]\n[per_source]\npps = 100\nburst_packets = 10\n\
             [ban]\nafter = \"1s\"\nfor = \"10m\"\n"
        ),
    );
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    let to = SocketAddr::new(VICTIM_V6.into(), 9999);
    let forged = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99)),
        4444,
    );
    TestNet::in_ns(&net.attacker_ns, || send_at(forged, to, 1_000, 2.5)).unwrap();
    assert!(
        reason(&net, "rate_limit_drop") > 0,
        "the flood was not over its limit"
    );
    assert_eq!(
        reason(&net, "ban_drop"),
        0,
        "the never-ban peer's /64 was banned"
    );
    let top: serde_json::Value =
        serde_json::from_str(&ok(filterctl(&net, &["top", "--json"]))).unwrap();
    assert!(!top.to_string().contains("\"banned\":true"), "{top}");
    // The peer itself, after its limit's tenth of a second: all arrive.
    std::thread::sleep(Duration::from_millis(200));
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[to]))
        .unwrap()
        .unwrap();
    let peer = SocketAddr::new(ATTACKER_V6.into(), 5555);
    TestNet::in_ns(&net.attacker_ns, || send_udp(peer, to, b"hello", 5))
        .unwrap()
        .unwrap();
    assert_eq!(sink.drain()[&to], 5);
}
