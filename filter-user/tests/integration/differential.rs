//! Differential test: a million generated frames (valid ones and structured
//! mutations: VLAN stacks, IPv4 options, IPv6 extension chains up to and
//! across the 1024-byte L4 bound, fragments, truncations, lying length
//! fields, random bytes) through the real XDP program with BPF_PROG_TEST_RUN
//! and through the reference model (tests/integration/common/model.rs: etherparse and
//! the spec, feeding the same decision functions). Verdict and reason must
//! agree for every frame. Seeded and reproducible: DIFF_SEED and DIFF_FRAMES
//! override the defaults; a divergence prints the frame in hex.

use crate::common;

use std::{
    collections::{HashMap, HashSet},
    net::{Ipv6Addr, SocketAddr, UdpSocket},
};

use filter_testkit::net::TestNet;

use common::model::Model;
use filter_common::{
    FragKey, MAX_FRAGS, Reason,
    decide::{Frag, Parsed},
    frags::datagram,
};
use filterctl::{
    filter::simulator::{Simulator, XDP_DROP, XDP_PASS},
    rules::{self, RuleSet},
};

/// The rule set the run is judged against: every step that does not depend
/// on time (no limits, no bans; fragments remembered for the whole run).
const RULES: &str = r#"
mode = "enforce"
fragments = "pass"
fragment_memory = "365d"
allow = ["192.0.2.0/28", "2001:db8:1::/48", "100.64.1.1"]
deny = ["203.0.113.0/25", "2001:db8:dead::/48", "198.51.100.66", "100.64.0.0/10"]

[[rule]]
name = "ntp-time"
protocol = "udp"
src_port = 123
payload = { offset = 0, mask = "07", value = "04" }
action = "pass"

[[rule]]
name = "ntp"
protocol = "udp"
src_port = 123
action = "drop"

[[rule]]
name = "ssdp"
protocol = "udp"
src_port = 1900
action = "drop"

[[rule]]
name = "big-dns"
protocol = "udp"
src_port = 53
dst_port = "1024-65535"
payload_len = "512-65535"
action = "drop"

[[rule]]
name = "deep-match"
protocol = "udp"
src_port = "5000-5010"
payload = { offset = 2, mask = "ff00ff", value = "170029" }
action = "drop"

[[rule]]
name = "tcp-19"
protocol = "tcp"
src_port = 19
action = "drop"

[[rule]]
name = "dns-ok"
protocol = "udp"
src_port = 53
action = "pass"

[reply_guard]
ports = [19, 161, 1900, 5005, 5683, 40000]
packets = 3
expiry = "40d"
multicast_expiry = "40d"

[reply_guard.port.5005]
packets = 1000000

# Over the catalogue's own (256, 125 s): no entry may expire during a run.
[reply_guard.port.1900]
packets = 3
multicast_expiry = "40d"

[reply_guard.port.5683]
observe_packets = 6
observe_expiry = "40d"
"#;

/// Guarded ports where the run's namespace has a server (a UDP socket on
/// the wildcard address), as the model is told: datagrams from guarded
/// ports to them take the served-port decisions (a request from the same
/// port, by its shape where the protocol has one; a reflection aimed at
/// the service otherwise). And SNMP's manager port, 162, the other port of
/// a pair: from 161 a trap's shape passes there.
const SERVED: [u16; 4] = [19, 162, 1900, 5005];

/// The kernel asks its socket table whether a reply from a guarded port to
/// a guarded port reaches a server; the model knows only of [`SERVED`]. Any
/// other UDP socket bound on one of these ports in the run's namespace
/// would make them differ: say so instead of reporting a divergence.
fn assert_no_udp_server_on_guarded_ports() {
    let guarded = [161u16, 5683, 40000];
    for table in ["udp", "udp6"] {
        let path = format!("/proc/thread-self/net/{table}");
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().skip(1) {
            let local = line.split_whitespace().nth(1).unwrap_or("");
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let Some(p) = port.filter(|p| guarded.contains(p)) {
                panic!(
                    "a UDP socket is bound on port {p} ({path}): the kernel would count it as a server and differ from the model; stop it or run elsewhere"
                );
            }
        }
    }
}

/// Requests the host sent before the run (victim 192.0.2.1, local port
/// 40000): to a unicast peer on ports 19 and 5005, to the SSDP group, to
/// the subnet's broadcast address on 161 (a group request by its frame's
/// broadcast MAC), to 198.51.100.255 on 19 in a frame to a router's MAC
/// (a host of a wider prefix), and a CoAP Observe registration to 5683
/// followed by its acknowledgement (a plain request that leaves the
/// subscription's budget).
fn requests() -> Vec<Vec<u8>> {
    use filter_testkit::frames::{Frag, ether, ipv4, udp};
    let observe = [
        0x42, 0x01, 0x12, 0x34, 0xaa, 0xbb, 0x60, 0x54, b't', b'e', b'm', b'p',
    ];
    let ack = [0x60, 0x00, 0x40, 0x01];
    [
        ([192, 0, 2, 77], 19u16, &b"request"[..], false),
        ([198, 51, 100, 67], 5005, b"request", false),
        ([239, 255, 255, 250], 1900, b"request", false),
        ([192, 0, 2, 255], 161, b"request", true),
        ([198, 51, 100, 255], 19, b"request", false),
        ([198, 51, 100, 67], 5683, &observe, false),
        ([198, 51, 100, 67], 5683, &ack, false),
    ]
    .iter()
    .map(|(dst, port, payload, broadcast)| {
        let mut ip = ipv4(17, &[], Frag::default(), &udp(40000, *port, payload));
        ip[16..20].copy_from_slice(dst);
        let mut f = ether(&[], 0x0800, &ip);
        if *broadcast {
            f[..6].copy_from_slice(&[0xff; 6]);
        }
        f
    })
    .collect()
}

/// The longest frame BPF_PROG_TEST_RUN hands an XDP program whole: a page
/// less XDP headroom and skb_shared_info. Longer ones get silently split
/// into fragments that a program without frags support never sees.
const MAX_FRAME: usize = 3520;

/// splitmix64: small, seedable, good enough to spread test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Up to `max - 1` random bytes.
    fn some_bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
}

/// Sources in and beside the lists: each /24 below is listed in part, but
/// 100.65.0.0/24, which a deny prefix covers whole.
const SRC4: [[u8; 4]; 9] = [
    [192, 0, 2, 5],     // allowed
    [192, 0, 2, 77],    // neither
    [203, 0, 113, 9],   // denied
    [203, 0, 113, 200], // neither
    [198, 51, 100, 66], // denied host
    [198, 51, 100, 67], // neither
    [100, 64, 1, 1],    // allowed inside a denied /10
    [100, 64, 1, 2],    // denied, beside it
    [100, 65, 0, 1],    // denied
];
const SRC6_PREFIX: [[u8; 6]; 4] = [
    [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01], // allowed
    [0x20, 0x01, 0x0d, 0xb8, 0xde, 0xad], // denied
    [0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad],
    [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x07],
];

fn l4_payload(r: &mut Rng) -> Vec<u8> {
    let len = if r.chance(2) {
        // Large datagrams (see MAX_FRAME).
        1000 + r.below(1200) as usize
    } else {
        r.pick(&[0usize, 1, 2, 3, 4, 5, 8, 48, 100, 468, 511, 512, 600])
    };
    let mut p = r.bytes(len);
    if !p.is_empty() {
        // NTP modes 3, 4, 6, 7 and random first bytes.
        p[0] = r.pick(&[0x23, 0x24, 0x1c, 0x16, 0x17, 0x97, p[0]]);
    }
    if p.len() >= 5 && r.chance(30) {
        p[2] = 0x17;
        p[4] = 0x29;
    }
    // SSDP requests, for a server on 1900 (see SERVED).
    if p.len() >= 8 && r.chance(10) {
        p[..8].copy_from_slice(r.pick(&[b"M-SEARCH", b"NOTIFY *", b"HTTP/1.1"]));
    }
    // SNMP messages: traps and informs, which pass from 161 to a manager
    // on 162 (see SERVED), and the rest, which don't.
    if p.len() >= 16 && r.chance(5) {
        let pdu = r.pick(&[0xa4u8, 0xa6, 0xa7, 0xa2, 0xa0]);
        let len = (p.len() - 2).min(0x7f) as u8;
        p[..16].copy_from_slice(&[
            0x30, len, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', pdu, 0x19,
            0x02,
        ]);
    }
    p
}

/// The L4 header and payload; for a first fragment (`first`), a UDP length
/// that often covers a whole datagram longer than the fragment.
fn l4(r: &mut Rng, proto: u8, first: bool) -> Vec<u8> {
    let port = |r: &mut Rng| {
        r.pick(&[
            123u16, 1900, 53, 19, 161, 162, 5000, 5005, 5010, 5011, 5683, 40000, 1024, 0, 65535,
        ])
        .wrapping_add(if r.chance(20) { r.below(3) as u16 } else { 0 })
    };
    match proto {
        17 => {
            let payload = l4_payload(r);
            let mut ulen = 8 + payload.len();
            if first && r.chance(60) {
                ulen += 1 + r.below(1500) as usize;
            }
            let mut u = Vec::new();
            u.extend_from_slice(&port(r).to_be_bytes());
            u.extend_from_slice(&port(r).to_be_bytes());
            u.extend_from_slice(&(ulen as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u.extend_from_slice(&payload);
            u
        }
        6 => {
            let doff = r.pick(&[5u8, 5, 5, 6, 8, 15]);
            let mut t = Vec::new();
            t.extend_from_slice(&port(r).to_be_bytes());
            t.extend_from_slice(&port(r).to_be_bytes());
            t.extend_from_slice(&r.bytes(8));
            t.push(doff << 4);
            // SYN, SYN-ACK (unasked: the run holds no connection), ACK,
            // RST-ACK, PSH-ACK.
            t.push(r.pick(&[0x02u8, 0x12, 0x10, 0x14, 0x18, 0x13]));
            t.extend_from_slice(&r.bytes(6));
            t.extend_from_slice(&vec![1; (doff as usize - 5) * 4]);
            t.extend_from_slice(&l4_payload(r));
            t
        }
        1 | 58 => {
            let mut i = vec![r.pick(&[8u8, 128, 133, 134, 135, 136, 137, 138]), 0, 0, 0];
            i.extend_from_slice(&r.some_bytes(30));
            i
        }
        _ => r.some_bytes(60),
    }
}

fn ipv4(r: &mut Rng) -> Vec<u8> {
    let proto = r.pick(&[17u8, 17, 17, 6, 1, 47, 58]);
    let ihl = if r.chance(80) {
        5
    } else {
        5 + r.below(11) as usize
    };
    let (more, offset) = match r.below(10) {
        0 => (true, 0u16),
        1 => (r.chance(50), 1 + r.below(200) as u16),
        _ => (false, 0),
    };
    let body = l4(r, proto, more && offset == 0);
    let total = ihl * 4 + body.len();
    // DF and the reserved bit mean nothing to the parser.
    let flags = r.pick(&[0u16, 0, 0x4000, 0x8000]);
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&(1 + r.below(4) as u16).to_be_bytes());
    h.extend_from_slice(&((if more { 0x2000 } else { 0 }) | offset | flags).to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&r.pick(&SRC4));
    h.extend_from_slice(&[192, 0, 2, 1]);
    h.extend_from_slice(&vec![1; ihl * 4 - 20]);
    h.extend_from_slice(&body);
    h
}

/// An IPv6 extension header as generated: its type and its whole length.
#[derive(Clone, Copy)]
struct Ext {
    kind: u8,
    len: usize,
}

/// The length of an AH (4-byte units) or of another extension header
/// (8-byte units, fragment header fixed), small or now and then long.
fn ext_of(r: &mut Rng, kind: u8) -> Ext {
    let long = r.chance(3);
    let len = match kind {
        44 => 8,
        51 if long => (r.below(256) as usize + 2) * 4,
        51 => (r.below(4) as usize + 2) * 4,
        _ if long => (r.below(128) as usize + 1) * 8,
        _ => (r.below(3) as usize + 1) * 8,
    };
    Ext { kind, len }
}

/// A chain whose L4 header starts a few bytes before or after
/// MAX_L4_OFFSET (1024): the bound on both sides. `ip_at` is the IPv6
/// header's offset in the frame.
fn ext_chain_at_the_bound(r: &mut Rng, ip_at: usize) -> Vec<Ext> {
    let mut exts = Vec::new();
    if r.chance(50) {
        exts.push(Ext { kind: 0, len: 8 });
    }
    if r.chance(30) {
        exts.push(Ext { kind: 44, len: 8 });
    }
    // Offsets 14 + 4k + 40 + 4-byte multiples: the L4 header starts at
    // 2 mod 4, so 1022 is the last start allowed and 1026 the first refused.
    let l4_at = (1024 + r.pick(&[-10i64, -6, -2, 2, 6])) as usize;
    let used: usize = exts.iter().map(|e| e.len).sum();
    let mut rest = l4_at - ip_at - 40 - used;
    let one_ah = rest <= 1028 && (r.chance(30) || (rest % 8 == 4 && r.chance(50)));
    if one_ah {
        exts.push(Ext {
            kind: 51,
            len: rest,
        });
    } else {
        if rest % 8 == 4 {
            exts.push(Ext { kind: 51, len: 12 });
            rest -= 12;
        }
        exts.push(Ext {
            kind: r.pick(&[60, 43, 0]),
            len: rest,
        });
    }
    exts
}

fn ipv6(r: &mut Rng, ip_at: usize) -> Vec<u8> {
    let proto = r.pick(&[17u8, 17, 17, 6, 58, 59]);
    let exts: Vec<Ext> = if r.chance(4) {
        ext_chain_at_the_bound(r, ip_at)
    } else {
        let n_ext = if r.chance(50) {
            0
        } else {
            1 + r.below(8) as usize
        };
        (0..n_ext)
            .map(|_| {
                let kind = r.pick(&[0u8, 43, 60, 60, 51, 44]);
                ext_of(r, kind)
            })
            .collect()
    };
    let mut first = false;
    let mut rest = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |n| n.kind);
        let start = rest.len();
        rest.push(next);
        match e.kind {
            44 => {
                let (offset, more) = match r.below(3) {
                    0 => (0u16, true),
                    1 => (1 + r.below(100) as u16, r.chance(50)),
                    _ => (0, false),
                };
                first |= offset == 0 && more;
                // Reserved byte and the two reserved bits: ignored.
                rest.push(if r.chance(10) { r.next() as u8 } else { 0 });
                let reserved = if r.chance(10) { r.below(4) as u16 } else { 0 } << 1;
                rest.extend_from_slice(&((offset << 3) | reserved | more as u16).to_be_bytes());
                rest.extend_from_slice(&(1 + r.below(4) as u32).to_be_bytes());
            }
            51 => {
                rest.push((e.len / 4 - 2) as u8);
                rest.resize(start + e.len, 0);
            }
            _ => {
                rest.push((e.len / 8 - 1) as u8);
                rest.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
                rest.resize(start + e.len, 0);
            }
        }
    }
    rest.extend_from_slice(&l4(r, proto, first));
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.push(exts.first().map_or(proto, |e| e.kind));
    h.push(64);
    let mut src = [0u8; 16];
    src[..6].copy_from_slice(&r.pick(&SRC6_PREFIX));
    src[15] = 1 + r.below(3) as u8;
    h.extend_from_slice(&src);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&rest);
    h
}

fn frame(r: &mut Rng) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    let tags = match r.below(20) {
        0..=13 => 0,
        14..=16 => 1,
        17..=18 => 2,
        _ => 3,
    };
    for _ in 0..tags {
        f.extend_from_slice(&r.pick(&[0x8100u16, 0x88a8]).to_be_bytes());
        f.extend_from_slice(&[0, 7]);
    }
    let ip_at = f.len() + 2;
    let (ethertype, body) = match r.below(40) {
        0..=21 => (0x0800u16, ipv4(r)),
        22..=35 => (0x86dd, ipv6(r, ip_at)),
        36 => (
            r.pick(&[0x0806u16, 0x88cc, 0x0800, 0x86dd, 0x1234]),
            r.some_bytes(64),
        ),
        37 => (0x0806, r.bytes(28)),
        38 => random_ip(r),
        _ => return random_frame(r),
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&body);
    if r.chance(10) {
        // Ethernet padding after the packet.
        f.extend_from_slice(&vec![0; r.below(40) as usize]);
    }
    mutate(r, &mut f, ip_at, ethertype);
    // Longer frames would reach the program cut to this length (the rest
    // in fragments it does not see), while the model saw them whole.
    f.truncate(MAX_FRAME);
    f
}

/// An IP header of random bytes whose version and length fields hold
/// together often enough to reach the protocol and extension walks.
fn random_ip(r: &mut Rng) -> (u16, Vec<u8>) {
    if r.chance(50) {
        let n = 20 + r.below(100) as usize;
        let mut b = r.bytes(n);
        if r.chance(80) {
            b[0] = 0x40 | (5 + r.below(11) as u8);
        }
        if r.chance(80) {
            let total = n - r.below(8).min(n as u64 - 20) as usize;
            b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        }
        if r.chance(70) {
            b[9] = r.pick(&[17, 6, 1, 58]);
        }
        b[12..16].copy_from_slice(&r.pick(&SRC4));
        (0x0800, b)
    } else {
        let n = 40 + r.below(120) as usize;
        let mut b = r.bytes(n);
        if r.chance(80) {
            b[0] = 0x60 | (b[0] & 0x0f);
        }
        if r.chance(80) {
            b[4..6].copy_from_slice(&((n - 40) as u16).to_be_bytes());
        }
        // Next headers from the set the walk knows, and random ones.
        let kinds = [0u8, 43, 44, 51, 60, 17, 6, 58, 59];
        b[6] = r.pick(&kinds);
        let mut at = 40;
        while at + 2 <= b.len() && r.chance(70) {
            b[at] = r.pick(&kinds);
            b[at + 1] = r.below(3) as u8;
            at += 8 * (1 + r.below(3) as usize);
        }
        b[8..14].copy_from_slice(&r.pick(&SRC6_PREFIX));
        (0x86dd, b)
    }
}

/// Random bytes, Ethernet header included; often with an IP or VLAN
/// ethertype so that the parser goes past it.
fn random_frame(r: &mut Rng) -> Vec<u8> {
    let n = 14 + r.below(200) as usize;
    let mut f = r.bytes(n);
    if r.chance(70) {
        let t = r.pick(&[0x0800u16, 0x86dd, 0x8100, 0x88a8]);
        f[12..14].copy_from_slice(&t.to_be_bytes());
    }
    f
}

/// Structured lies and damage, each with a small probability.
fn mutate(r: &mut Rng, f: &mut Vec<u8>, ip: usize, ethertype: u16) {
    let len = f.len();
    let set16 = |f: &mut Vec<u8>, at: usize, v: u16| {
        if at + 2 <= f.len() {
            f[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
    };
    if ethertype == 0x0800 && len > ip + 20 {
        if r.chance(4) {
            let v = r.next() as u16 % 1600;
            set16(f, ip + 2, v); // total length lies
        }
        if r.chance(3) {
            f[ip] = 0x40 | (r.below(16) as u8); // IHL lies
        }
        if r.chance(1) {
            f[ip] = (r.below(16) as u8) << 4 | (f[ip] & 0x0f); // version lies
        }
        let ihl = (f[ip] & 0x0f) as usize * 4;
        if r.chance(4) && len > ip + ihl + 8 {
            let v = r.next() as u16 % 1600;
            set16(f, ip + ihl + 4, v); // UDP length lies
        }
        if r.chance(3) && len > ip + ihl + 13 {
            f[ip + ihl + 12] = (r.below(16) as u8) << 4; // TCP data offset lies
        }
    }
    if ethertype == 0x86dd && len > ip + 40 && r.chance(5) {
        let v = r.next() as u16 % 1600;
        set16(f, ip + 4, v); // IPv6 payload length lies
    }
    if ethertype == 0x86dd && len > ip + 42 && r.chance(3) {
        f[ip + 41] = r.next() as u8; // first extension header's length lies
    }
    if r.chance(3) {
        let at = r.below(len as u64) as usize;
        f[at] = r.next() as u8; // a random byte
    }
    if r.chance(3) {
        // A few random bytes in the headers.
        for _ in 0..=r.below(4) {
            let at = r.below(len.min(ip + 64) as u64) as usize;
            f[at] = r.next() as u8;
        }
    }
    if r.chance(8) && len > 14 {
        f.truncate(14 + r.below((len - 14) as u64) as usize); // cut short
    }
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

fn expected_action(reason: Reason, monitor: bool) -> u32 {
    if reason.drops() && !monitor {
        XDP_DROP
    } else {
        XDP_PASS
    }
}

/// What a run covered besides its reasons.
struct Coverage {
    /// Reasons the model gave, indexed like [`Reason::ALL`].
    counts: Vec<u64>,
    /// Datagrams whose first fragment (dropped or passed) the kernel must
    /// remember: far fewer than FRAGS holds (16384), or LRU eviction would
    /// tell kernel and model apart (the model forgets nothing).
    frag_keys: HashSet<FragKey>,
    /// IP packets whose L4 payload starts past MAX_L4_OFFSET (1024): the
    /// L4 header sat right at the bound.
    deep: u64,
    /// Later fragments passed after first fragments of their datagram were
    /// both dropped and passed: a remembered pass beats a drop.
    overridden: u64,
}

/// Runs `frames` frames of `seed` through kernel and model; panics at the
/// first divergence with the frame in hex.
fn run(set: &RuleSet, seed: u64, frames: usize, monitor: bool) -> (Simulator, Coverage) {
    // A namespace of the run's own, with servers on SERVED: the program's
    // socket lookups (run on its loopback) find them.
    let net = TestNet::new("dif").expect("create test namespaces");
    TestNet::in_ns(&net.victim_ns, || {
        let servers: Vec<UdpSocket> = SERVED
            .iter()
            .map(|p| UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, *p))).unwrap())
            .collect();
        let out = run_here(set, seed, frames, monitor);
        drop(servers);
        out
    })
    .unwrap()
}

fn run_here(set: &RuleSet, seed: u64, frames: usize, monitor: bool) -> (Simulator, Coverage) {
    let runner =
        Simulator::new(set).unwrap_or_else(|e| panic!("cannot load the XDP program: {e:#}"));
    assert_no_udp_server_on_guarded_ports();
    let mut model = Model::new(set);
    model.listening.extend(SERVED);
    for r in requests() {
        runner.record_request(&r).unwrap();
        model.record_request(&r);
    }
    let mut rng = Rng(seed);
    let mut cov = Coverage {
        counts: vec![0u64; Reason::ALL.len()],
        frag_keys: HashSet::new(),
        deep: 0,
        overridden: 0,
    };
    // Per datagram: whether a first fragment of it was dropped, passed.
    let mut firsts: HashMap<FragKey, (bool, bool)> = HashMap::new();
    let mut batch: Vec<(Vec<u8>, Reason)> = Vec::new();
    let mut kernel_before = runner.reasons().unwrap();
    for i in 0..frames {
        let f = frame(&mut rng);
        let want = model.decide(&f);
        cov.counts[want as usize] += 1;
        let (parsed, p) = common::model::parse(&f);
        if parsed == Parsed::Ip {
            let key = datagram(&p).key();
            if p.frag == Frag::First {
                cov.frag_keys.insert(key);
                let seen = firsts.entry(key).or_default();
                *seen = (seen.0 || want.drops(), seen.1 || !want.drops());
            }
            if p.frag == Frag::Later && want == Reason::FragmentPass {
                cov.overridden += (firsts.get(&key) == Some(&(true, true))) as u64;
            }
            cov.deep += (p.frag != Frag::Later && p.payload_off > 1024) as u64;
        }
        let got = runner.run(&f).unwrap();
        let first = i - batch.len();
        batch.push((f, want));
        if got != expected_action(want, monitor) {
            eprintln!(
                "seed {seed} frame {i}: kernel action {got}, model {} (action {})",
                want.name(),
                expected_action(want, monitor),
            );
            report_batch(set, seed, first, &batch);
        }
        if batch.len() == 1000 || i + 1 == frames {
            let kernel_after = runner.reasons().unwrap();
            let mut model_batch = vec![0u64; Reason::ALL.len()];
            for (_, r) in &batch {
                model_batch[*r as usize] += 1;
            }
            for r in Reason::ALL {
                let k = kernel_after[r as usize].packets - kernel_before[r as usize].packets;
                if k != model_batch[r as usize] {
                    eprintln!("seed {seed}: the reason counts of frames {first}..={i} differ");
                    report_batch(set, seed, first, &batch);
                }
            }
            kernel_before = kernel_after;
            batch.clear();
        }
    }
    // A common LRU starts evicting only near its size (each CPU caches at
    // most 128 free entries): half of it leaves a wide margin. The
    // generator adds about 300 datagrams a million frames.
    assert!(
        cov.frag_keys.len() < MAX_FRAGS as usize / 2,
        "{} remembered datagrams: FRAGS could evict some, and kernel and model \
         would differ for it; run fewer frames",
        cov.frag_keys.len()
    );
    (runner, cov)
}

/// Finds the frame of a batch whose reason differs: replays the run up to
/// the batch on a fresh program that recorded the same requests (the
/// fragment memory and the budgets depend on history),
/// then reads the counters after each frame of the batch.
fn report_batch(set: &RuleSet, seed: u64, first: usize, batch: &[(Vec<u8>, Reason)]) -> ! {
    let runner = Simulator::new(set).unwrap();
    for r in requests() {
        runner.record_request(&r).unwrap();
    }
    let mut rng = Rng(seed);
    for _ in 0..first {
        runner.run(&frame(&mut rng)).unwrap();
    }
    for (n, (f, want)) in batch.iter().enumerate() {
        let before = runner.reasons().unwrap();
        runner.run(f).unwrap();
        let after = runner.reasons().unwrap();
        let got = Reason::ALL
            .into_iter()
            .find(|r| after[*r as usize].packets != before[*r as usize].packets)
            .unwrap();
        if got != *want {
            panic!(
                "seed {seed} frame {}: kernel reason {}, model reason {}\nframe: {}",
                first + n,
                got.name(),
                want.name(),
                hex(f)
            );
        }
    }
    let (f, want) = batch.last().unwrap();
    panic!(
        "seed {seed}: no single frame of {first}..{} differs in its reason on replay; \
         last frame (model reason {}): {}",
        first + batch.len(),
        want.name(),
        hex(f)
    );
}

fn seed() -> u64 {
    std::env::var("DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d)
}

fn frames(default: usize) -> usize {
    std::env::var("DIFF_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The kernel's reason counters equal the model's, and add up to the frames.
fn assert_counters(runner: &Simulator, counts: &[u64], frames: usize) {
    let kernel: Vec<u64> = runner
        .reasons()
        .unwrap()
        .iter()
        .map(|t| t.packets)
        .collect();
    assert_eq!(kernel, counts);
    assert_eq!(
        kernel.iter().sum::<u64>(),
        frames as u64,
        "counters add up to the frames seen"
    );
}

#[test]
fn a_million_frames_agree_with_the_reference_model() {
    common::require_bpf();
    let set = rules::parse("differential.toml", RULES).expect("valid rules");
    let (seed, n) = (seed(), frames(1_000_000));
    println!("seed {seed}, {n} frames (DIFF_SEED, DIFF_FRAMES to change)");
    let (runner, cov) = run(&set, seed, n, false);
    let counts = cov.counts;
    assert_counters(&runner, &counts, n);
    // The run must have exercised every reason that does not need time
    // (FragmentDrop: under "pass", a later fragment whose first was not
    // seen, from a source the host did not ask).
    for r in Reason::ALL {
        let timed = matches!(
            r,
            Reason::BanDrop | Reason::RateLimitDrop | Reason::AggregateDrop
        );
        if !timed {
            assert!(
                counts[r as usize] > 0,
                "no frame got {}: the generator misses a case",
                r.name()
            );
        }
    }
    assert!(
        cov.deep > 0,
        "no L4 header right at the 1024-byte bound: the generator misses a case"
    );
    assert!(
        cov.overridden > 0,
        "no later fragment followed a pass written over a drop: the generator misses a case"
    );
    println!(
        "{} remembered datagrams, {} L4 headers at the bound, {} later fragments \
         passed where a first was dropped and one passed",
        cov.frag_keys.len(),
        cov.deep,
        cov.overridden
    );
    println!(
        "{}",
        Reason::ALL
            .iter()
            .map(|r| format!("{} {}", r.name(), counts[*r as usize]))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn monitor_mode_and_fragment_drop_policy() {
    common::require_bpf();
    let text = RULES
        .replace("mode = \"enforce\"", "mode = \"monitor\"")
        .replace("fragments = \"pass\"", "fragments = \"drop\"");
    let set = rules::parse("differential.toml", &text).expect("valid rules");
    let (seed, n) = (seed() ^ 1, frames(1_000_000) / 20);
    println!("monitor run: seed {seed}, {n} frames");
    let (runner, cov) = run(&set, seed, n, true);
    let counts = cov.counts;
    assert_counters(&runner, &counts, n);
    let would_drop: u64 = Reason::ALL
        .iter()
        .filter(|r| r.drops())
        .map(|r| counts[*r as usize])
        .sum();
    assert!(
        counts[Reason::FragmentDrop as usize] > 0,
        "no later fragment met the drop policy"
    );
    assert_eq!(counts[Reason::FragmentPass as usize], 0);
    assert_eq!(runner.monitor_passed().unwrap().packets, would_drop);
}

/// An unasked UDP reply from a guarded port, from a source that no listed
/// prefix may cover, is decided by the program's early verdict, before the
/// full parse: the same frames, judged by the same model, must get the same
/// reasons.
#[test]
fn the_early_verdict_agrees_with_the_full_decision() {
    common::require_bpf();
    // Port 40000, where the run's requests left from, unguarded: replies to
    // it are then the early verdict's to judge, open request or not. Lists
    // that leave 192.0.2.0/24, 203.0.113.0/24 and two of the IPv6 /48s to
    // the early verdict, and the rest (sources their hints cover) to the
    // full path.
    let text: String = RULES
        .replace(
            r#"allow = ["192.0.2.0/28", "2001:db8:1::/48", "100.64.1.1"]"#,
            r#"allow = ["2001:db8:1::/48"]"#,
        )
        .replace(
            r#"deny = ["203.0.113.0/25", "2001:db8:dead::/48", "198.51.100.66", "100.64.0.0/10"]"#,
            r#"deny = ["2001:db8:dead::/48", "198.51.100.66"]"#,
        )
        .replace(
            "ports = [19, 161, 1900, 5005, 5683, 40000]",
            "ports = [19, 161, 1900, 5005, 5683]",
        );
    let set = rules::parse("differential.toml", &text).expect("valid rules");
    let (seed, n) = (seed() ^ 2, frames(1_000_000) / 5);
    println!("early-verdict run: seed {seed}, {n} frames");
    let (runner, cov) = run(&set, seed, n, false);
    let counts = cov.counts;
    assert_counters(&runner, &counts, n);
    assert!(
        counts[Reason::UnsolicitedReply as usize] > 1000,
        "too few unasked replies to exercise the early verdict: {}",
        counts[Reason::UnsolicitedReply as usize]
    );
    for reason in [Reason::AllowPass, Reason::DenyDrop] {
        assert!(
            counts[reason as usize] > 100,
            "the lists took no part: {reason:?} {}",
            counts[reason as usize]
        );
    }
    // Later fragments of dropped datagrams, which the early verdict also
    // judges.
    assert!(
        counts[Reason::FragmentFollowDrop as usize] > 100,
        "too few followed fragments: {}",
        counts[Reason::FragmentFollowDrop as usize]
    );
}
