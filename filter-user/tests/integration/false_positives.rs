//! The reply guard's false positives on hosts that serve or manage things
//! (issue 27): legitimate UDP from guarded ports that is no plain answer
//! to a plain request, with the shipped default profile on a veth pair.
//! Each is delivered whole, and the attack it could hide is still dropped:
//! (a) answers to a subnet-directed broadcast, (b) SNMP traps to a manager
//! on 162, (c) CoAP Observe notifications, (d) a game server's bursts to
//! its client, (e) SSDP answers late within M-SEARCH's MX.
//! Needs root and BPF; the windows' far ends are in verdicts.rs (virtual
//! clock).

use crate::common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use filter_testkit::{
    frames::{coap_get, coap_notification, dns_query, snmp, ssdp_reply},
    net::{ATTACKER_V4, TestNet, VICTIM_V4, big_receive_buffer, send_udp},
};

use common::cli::{TempDir, load_default, ok, reason, run as filterctl};

/// The victim with rules/default.toml loaded; unloaded when dropped (the
/// namespaces go with the TestNet, on every path).
struct Lab {
    net: TestNet,
    _files: TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        common::require_bpf();
        let net = TestNet::new(tag).expect("create test namespaces");
        let files = TempDir::new(tag);
        load_default(&net, &files);
        Lab { net, _files: files }
    }

    /// A victim socket on `port`, reading with a short timeout, with room
    /// for a burst of a thousand datagrams.
    fn socket(&self, port: u16) -> UdpSocket {
        TestNet::in_ns(&self.net.victim_ns, || {
            let s = UdpSocket::bind(victim(port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            big_receive_buffer(&s).unwrap();
            s
        })
        .unwrap()
    }

    /// `count` datagrams of `payload` from `from` (an address of the
    /// attacker's namespace) to `to`.
    fn send(&self, from: SocketAddr, to: SocketAddr, payload: &[u8], count: usize) {
        TestNet::in_ns(&self.net.attacker_ns, || send_udp(from, to, payload, count))
            .unwrap()
            .unwrap();
    }

    fn reason(&self, name: &str) -> u64 {
        reason(&self.net, name)
    }

    fn ip(&self, ns: &str, args: &[&str]) {
        let out = std::process::Command::new("ip")
            .args(["-n", ns])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip -n {ns} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            ok(filterctl(
                &self.net,
                &["unload", "--iface", &self.net.victim_if],
            ));
        }
    }
}

fn victim(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VICTIM_V4), port)
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ATTACKER_V4), port)
}

/// Datagrams waiting on `s` (each read waits at most its timeout).
fn received(s: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    std::iter::from_fn(|| s.recv_from(&mut buf).ok()).count()
}

/// The replies per request the default profile gives `port`.
fn budget(port: u16) -> usize {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default.toml");
    let set = filterctl::rules::load_file(std::path::Path::new(path)).unwrap();
    set.reply_guard.expect("the default profile guards").ports[&port].packets as usize
}

/// A NetBIOS name query (what Windows broadcasts to its subnet).
fn nbns_query() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0x20];
    q.extend([b'A'; 32]);
    q.extend([0, 0, 0x20, 0, 1]);
    q
}

/// (a) A request to the subnet's broadcast address (192.0.2.255 on the
/// victim's /24) is answered by hosts of the subnet, each from its own
/// address: both answers arrive. Answers from 137 at a port that asked
/// nothing are still dropped.
#[test]
fn answers_to_a_subnet_broadcast_arrive() {
    let lab = Lab::new("fpa");
    let net = &lab.net;
    // A second host on the subnet.
    lab.ip(
        &net.attacker_ns,
        &["addr", "add", "192.0.2.3/24", "dev", &net.attacker_if],
    );
    let asker = lab.socket(41137);
    asker.set_broadcast(true).unwrap();
    asker
        .send_to(&nbns_query(), "192.0.2.255:137")
        .expect("broadcast to the subnet");
    for host in [ATTACKER_V4, Ipv4Addr::new(192, 0, 2, 3)] {
        lab.send(
            SocketAddr::new(host.into(), 137),
            victim(41137),
            b"answer",
            1,
        );
    }
    assert_eq!(
        received(&asker),
        2,
        "answers to a subnet-directed broadcast lost"
    );
    // The attack: the same answers at a port that asked nothing.
    let idle = lab.socket(42137);
    let before = lab.reason("unsolicited_reply");
    lab.send(peer(137), victim(42137), b"answer", 5);
    assert_eq!(received(&idle), 0, "unasked NetBIOS answers delivered");
    assert_eq!(lab.reason("unsolicited_reply"), before + 5);
}

/// (b) A trap receiver on the victim (a manager on 162): traps and
/// informs from an agent's port 161 arrive (SNMPv1 Trap, SNMPv2 Trap,
/// InformRequest); a GetResponse from 161, which is what an SNMP
/// reflection sends, is dropped at the manager as `reflected_to_service`.
#[test]
fn snmp_traps_reach_the_manager() {
    let lab = Lab::new("fpb");
    let manager = lab.socket(162);
    for (version, pdu) in [(0, 0xa4), (1, 0xa7), (1, 0xa6)] {
        lab.send(peer(161), victim(162), &snmp(version, pdu), 1);
    }
    assert_eq!(received(&manager), 3, "traps to the manager lost");
    let before = lab.reason("reflected_to_service");
    lab.send(peer(161), victim(162), &snmp(1, 0xa2), 5);
    for i in 1..=5 {
        let reflector = SocketAddr::new(Ipv4Addr::new(198, 51, 100, i).into(), 161);
        lab.send(reflector, victim(162), &snmp(1, 0xa2), 1);
    }
    assert_eq!(received(&manager), 0, "GetResponses reached the manager");
    assert_eq!(lab.reason("reflected_to_service"), before + 10);
}

/// (c) A CoAP client on the victim registers with the Observe option;
/// the server's 20 notifications all arrive. A plain GET still gets its
/// budget's worth of answers, no more.
#[test]
fn coap_observe_notifications_arrive() {
    let lab = Lab::new("fpc");
    let observer = lab.socket(45683);
    observer.send_to(&coap_get(true), peer(5683)).unwrap();
    for seq in 0..20 {
        lab.send(peer(5683), victim(45683), &coap_notification(seq), 1);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(received(&observer), 20, "CoAP notifications lost");
    // A forged stream riding on a plain GET stops at the budget.
    let poller = lab.socket(45684);
    poller.send_to(&coap_get(false), peer(5683)).unwrap();
    let before = lab.reason("reply_over_budget");
    lab.send(peer(5683), victim(45684), &coap_notification(0), 20);
    let budget = budget(5683);
    assert_eq!(received(&poller), budget, "a plain GET's answers");
    assert_eq!(lab.reason("reply_over_budget"), before + 20 - budget as u64);
}

/// (d) A game client on the victim plays on a server at 27015 (guarded:
/// Steam's server queries): the server's bursts of 64 packets per client
/// packet all arrive, each client packet renewing the flow. A stream
/// forged on the flow stops at the budget between two client packets; the
/// same packets at a port that sent nothing are dropped.
#[test]
fn a_game_servers_bursts_reach_its_client() {
    let lab = Lab::new("fpd");
    let client = lab.socket(47015);
    for _ in 0..3 {
        client.send_to(b"usercmd", peer(27015)).unwrap();
        lab.send(peer(27015), victim(47015), b"snapshot", 64);
        assert_eq!(received(&client), 64, "a game server's burst was cut");
    }
    client.send_to(b"usercmd", peer(27015)).unwrap();
    let budget = budget(27015);
    let before = lab.reason("reply_over_budget");
    lab.send(peer(27015), victim(47015), b"snapshot", budget + 10);
    assert_eq!(received(&client), budget, "the flow's budget");
    assert_eq!(lab.reason("reply_over_budget"), before + 10);
    let idle = lab.socket(47016);
    let before = lab.reason("unsolicited_reply");
    lab.send(peer(27015), victim(47016), b"snapshot", 64);
    assert_eq!(received(&idle), 0);
    assert_eq!(lab.reason("unsolicited_reply"), before + 64);
}

/// (e) A UPnP control point on the victim searches with MX: 10; devices
/// answer within MX seconds, here after 6 (past the group window of other
/// discovery, 5 s): the answers arrive. An mDNS query's answers after the
/// same 6 s are dropped: the longer window is SSDP's alone.
#[test]
fn ssdp_answers_within_mx_arrive() {
    let lab = Lab::new("fpe");
    let net = &lab.net;
    lab.ip(
        &net.victim_ns,
        &["route", "add", "224.0.0.0/4", "dev", &net.victim_if],
    );
    let search = lab.socket(41900);
    let m_search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\
        MAN: \"ssdp:discover\"\r\nMX: 10\r\nST: ssdp:all\r\n\r\n";
    search
        .send_to(m_search, "239.255.255.250:1900")
        .expect("search the group");
    let query = lab.socket(45353);
    query
        .send_to(&dns_query(), "224.0.0.251:5353")
        .expect("ask the mDNS group");
    std::thread::sleep(Duration::from_secs(6));
    let reply = ssdp_reply();
    lab.send(peer(1900), victim(41900), &reply, 3);
    assert_eq!(received(&search), 3, "SSDP answers within MX lost");
    let before = lab.reason("unsolicited_reply");
    lab.send(peer(5353), victim(45353), b"late answer", 2);
    assert_eq!(received(&query), 0, "mDNS answers after its window");
    assert_eq!(lab.reason("unsolicited_reply"), before + 2);
}
