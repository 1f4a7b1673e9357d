//! The fragment memory under attack, on a veth pair with the shipped
//! default profile: forged first fragments "from the resolver" cannot turn
//! away the later fragments of its real 3 KB answers, and a flood of later
//! fragments whose first was never seen does not reach the victim's
//! reassembly while real large answers still arrive.
//! The resolver is the test's own stand-in (raw frames out of the attacker's
//! interface), so that it chooses its answers' IP IDs.

use crate::common;

use std::{
    net::{SocketAddr, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use common::{
    cli::{ok, reason, run as filterctl},
    frames::{ETH_IPV4, Frag, ether, ipv4, udp},
    raw::RawSocket,
};
use filter_testkit::net::{ATTACKER_V4, TestNet, VICTIM_V4};

/// The victim's local port its lookups leave from.
const CLIENT_PORT: u16 = 40053;
/// The answer's UDP payload: 3,000 bytes, three fragments at a 1500 MTU.
const ANSWER_BYTES: usize = 3000;

/// A UDP datagram from `src:53` to the victim's `dst_port`, cut into IPv4
/// fragments of at most 1480 bytes with IP ID `id`, as frames.
fn fragments(src: [u8; 4], dst_port: u16, id: u16, payload: &[u8]) -> Vec<Vec<u8>> {
    let l4 = udp(53, dst_port, payload);
    l4.chunks(1480)
        .enumerate()
        .map(|(i, chunk)| {
            let more = (i + 1) * 1480 < l4.len();
            let offset = (i * 1480 / 8) as u16;
            frame(src, Frag { more, offset, id }, chunk)
        })
        .collect()
}

/// An IPv4 frame from `src` to the victim carrying `body` at `frag`, with a
/// valid header checksum (the victim's kernel checks it).
fn frame(src: [u8; 4], frag: Frag, body: &[u8]) -> Vec<u8> {
    let mut ip = ipv4(17, &[], frag, body);
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&VICTIM_V4.octets());
    ip[10..12].fill(0);
    let sum = ip[..20]
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ether(&[], ETH_IPV4, &ip)
}

/// Sends `frames` out of the attacker's interface (AF_PACKET), waiting for
/// the veth ring (256 frames) whenever it is full, until all are sent or
/// `stop`. Returns how many were sent.
fn send_frames(net: &TestNet, frames: &[Vec<u8>], stop: &AtomicBool) -> usize {
    let attacker_if = net.attacker_if.clone();
    TestNet::in_ns(&net.attacker_ns, move || {
        let sock = RawSocket::open(&attacker_if, frames[0][..6].try_into().unwrap());
        let mut sent = 0;
        for f in frames.iter().take_while(|_| !stop.load(Ordering::Relaxed)) {
            sock.send(f);
            sent += 1;
        }
        sent
    })
    .unwrap()
}

/// The victim's client socket and the resolver stand-in's, which takes in
/// the queries (so that no port-unreachable answers them).
struct Lookup {
    client: UdpSocket,
    _resolver: UdpSocket,
}

impl Lookup {
    fn new(net: &TestNet) -> Lookup {
        let resolver = TestNet::in_ns(&net.attacker_ns, || {
            UdpSocket::bind(SocketAddr::from((ATTACKER_V4, 53))).unwrap()
        })
        .unwrap();
        let client = TestNet::in_ns(&net.victim_ns, || {
            let s = UdpSocket::bind(SocketAddr::from((VICTIM_V4, CLIENT_PORT))).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s
        })
        .unwrap();
        Lookup {
            client,
            _resolver: resolver,
        }
    }

    /// A query (which the egress recorder records), then the resolver's
    /// 3 KB answer with IP ID `id`, sent by the stand-in: whether the
    /// victim's socket got it whole.
    fn answered(&self, net: &TestNet, id: u16) -> bool {
        let to = SocketAddr::from((ATTACKER_V4, 53));
        self.client.send_to(b"query", to).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let answer = vec![0xa5; ANSWER_BYTES];
        let frames = fragments(ATTACKER_V4.octets(), CLIENT_PORT, id, &answer);
        assert_eq!(frames.len(), 3);
        send_frames(net, &frames, &AtomicBool::new(false));
        let mut buf = vec![0u8; 4096];
        matches!(self.client.recv_from(&mut buf), Ok((n, _)) if n == ANSWER_BYTES)
    }
}

/// The victim's reassembly counters: Ip ReasmReqds and ReasmFails.
fn reassembly(net: &TestNet) -> (u64, u64) {
    TestNet::in_ns(&net.victim_ns, || {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
        let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (head, vals) = (lines.next().unwrap(), lines.next().unwrap());
        let field = |name: &str| -> u64 {
            let i = head.split_whitespace().position(|h| h == name).unwrap();
            vals.split_whitespace().nth(i).unwrap().parse().unwrap()
        };
        (field("ReasmReqds"), field("ReasmFails"))
    })
    .unwrap()
}

fn load(net: &TestNet) {
    let rules = format!("{}/../rules/default.toml", env!("CARGO_MANIFEST_DIR"));
    ok(filterctl(
        net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
}

/// 16,000 forged first fragments from the resolver's address, with the IP
/// IDs its next 10 answers use among them, sent before the answers: every
/// one of the 10 real 3 KB answers arrives.
#[test]
fn forged_first_fragments_do_not_poison_real_answers() {
    common::require_bpf();
    let net = TestNet::new("frp").expect("create test namespaces");
    load(&net);
    let lookup = Lookup::new(&net);
    let base = 1000u16;
    // Unsolicited (to ports where no request is open), so dropped, each
    // remembered for its datagram's key: the IDs base..base+16,000.
    let forged: Vec<Vec<u8>> = (0..16_000u16)
        .map(|i| {
            let mut l4 = udp(53, 20000 + i % 20000, &[0x5a; 100]);
            // The UDP length of a whole 3 KB answer.
            l4[4..6].copy_from_slice(&((8 + ANSWER_BYTES) as u16).to_be_bytes());
            let id = base.wrapping_add(i);
            frame(
                ATTACKER_V4.octets(),
                Frag {
                    more: true,
                    offset: 0,
                    id,
                },
                &l4,
            )
        })
        .collect();
    let sent = send_frames(&net, &forged, &AtomicBool::new(false));
    assert_eq!(sent, forged.len());
    let arrived = (0..10u16)
        .filter(|k| lookup.answered(&net, base + 1 + k * 1500))
        .count();
    let dropped = reason(&net, "fragment_follow_drop");
    println!("{arrived} of 10 answers arrived; fragment_follow_drop {dropped}");
    assert_eq!(
        arrived, 10,
        "real answers lost to forged first fragments (fragment_follow_drop {dropped})"
    );
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
}

/// With `fragments = "pass"` (the default profile's), 100,000 later
/// fragments without a first one, from spoofed sources the victim never
/// asked, do not reach its reassembly, while 8 real 3 KB answers sent
/// during the flood all arrive.
#[test]
fn a_later_fragment_flood_does_not_reach_reassembly() {
    common::require_bpf();
    let net = TestNet::new("frf").expect("create test namespaces");
    load(&net);
    let lookup = Lookup::new(&net);
    let flood: Vec<Vec<u8>> = (0..100_000u32)
        .map(|i| {
            let src = [198, 51, 100, 1 + (i % 200) as u8];
            let frag = Frag {
                more: i % 2 == 0,
                offset: 185,
                id: (i / 200) as u16,
            };
            frame(src, frag, &[0x33; 1000])
        })
        .collect();
    let before = reassembly(&net);
    let stop = AtomicBool::new(false);
    let (sent, arrived) = std::thread::scope(|s| {
        let flood = s.spawn(|| send_frames(&net, &flood, &stop));
        let arrived = (0..8u16)
            .filter(|k| {
                std::thread::sleep(Duration::from_millis(200));
                lookup.answered(&net, 30000 + k)
            })
            .count();
        // The flood runs to its end: it must outlast the answers.
        let sent = flood.join().unwrap();
        (sent, arrived)
    });
    let after = reassembly(&net);
    let (reqds, fails) = (after.0 - before.0, after.1 - before.1);
    println!(
        "{sent} later fragments sent; ReasmReqds +{reqds}, ReasmFails +{fails}; \
         {arrived} of 8 answers arrived; fragment_drop {}",
        reason(&net, "fragment_drop")
    );
    assert_eq!(sent, flood.len());
    // The 8 answers' own fragments, 3 each, are all that reach it.
    assert!(
        reqds <= 8 * 3,
        "{reqds} fragments reached the victim's reassembly"
    );
    assert_eq!(fails, 0, "reassembly failures");
    assert_eq!(arrived, 8, "real answers lost during the flood");
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
}
