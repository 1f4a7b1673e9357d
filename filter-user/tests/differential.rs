//! Differential test: a million generated frames (valid ones and structured
//! mutations: VLAN stacks, IPv4 options, IPv6 extension chains, fragments,
//! truncations, lying length fields) through the real XDP program with
//! BPF_PROG_TEST_RUN and through the reference model (tests/common/model.rs:
//! etherparse and the spec, feeding the same decision functions). Verdict and
//! reason must agree for every frame. Seeded and reproducible: DIFF_SEED and
//! DIFF_FRAMES override the defaults; a divergence prints the frame in hex.

mod common;

use common::model::Model;
use filter_common::Reason;
use filterctl::{
    rules::{self, RuleSet},
    testrun::{Runner, XDP_DROP, XDP_PASS},
};

/// The rule set the run is judged against: every step that does not depend
/// on time (no limits, no bans; fragments remembered for the whole run).
const RULES: &str = r#"
mode = "enforce"
fragments = "pass"
fragment_memory = "365d"
allow = ["192.0.2.0/28", "2001:db8:1::/48"]
deny = ["203.0.113.0/25", "2001:db8:dead::/48", "198.51.100.66"]

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
"#;

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

const SRC4: [[u8; 4]; 6] = [
    [192, 0, 2, 5],     // allowed
    [192, 0, 2, 77],    // neither
    [203, 0, 113, 9],   // denied
    [203, 0, 113, 200], // neither
    [198, 51, 100, 66], // denied host
    [198, 51, 100, 67], // neither
];
const SRC6_PREFIX: [[u8; 6]; 4] = [
    [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01], // allowed
    [0x20, 0x01, 0x0d, 0xb8, 0xde, 0xad], // denied
    [0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad],
    [0x20, 0x01, 0x0d, 0xb8, 0x00, 0x07],
];

fn l4_payload(r: &mut Rng) -> Vec<u8> {
    let len = r.pick(&[0usize, 1, 2, 3, 4, 5, 8, 48, 100, 468, 511, 512, 600]);
    let mut p = r.bytes(len);
    if !p.is_empty() {
        // NTP modes 3, 4, 6, 7 and random first bytes.
        p[0] = r.pick(&[0x23, 0x24, 0x1c, 0x16, 0x17, 0x97, p[0]]);
    }
    if p.len() >= 5 && r.chance(30) {
        p[2] = 0x17;
        p[4] = 0x29;
    }
    p
}

fn l4(r: &mut Rng, proto: u8) -> Vec<u8> {
    let port = |r: &mut Rng| {
        r.pick(&[
            123u16, 1900, 53, 19, 5000, 5005, 5010, 5011, 40000, 1024, 0, 65535,
        ])
        .wrapping_add(if r.chance(20) { r.below(3) as u16 } else { 0 })
    };
    match proto {
        17 => {
            let payload = l4_payload(r);
            let mut u = Vec::new();
            u.extend_from_slice(&port(r).to_be_bytes());
            u.extend_from_slice(&port(r).to_be_bytes());
            u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
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
            t.push(0x02);
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
    let body = l4(r, proto);
    let total = ihl * 4 + body.len();
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&(1 + r.below(4) as u16).to_be_bytes());
    h.extend_from_slice(&((if more { 0x2000 } else { 0 }) | offset).to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&r.pick(&SRC4));
    h.extend_from_slice(&[192, 0, 2, 1]);
    h.extend_from_slice(&vec![1; ihl * 4 - 20]);
    h.extend_from_slice(&body);
    h
}

fn ipv6(r: &mut Rng) -> Vec<u8> {
    let proto = r.pick(&[17u8, 17, 17, 6, 58, 59]);
    let n_ext = if r.chance(50) {
        0
    } else {
        1 + r.below(8) as usize
    };
    let exts: Vec<u8> = (0..n_ext)
        .map(|_| r.pick(&[0u8, 43, 60, 60, 51, 44]))
        .collect();
    let mut rest = Vec::new();
    for (i, t) in exts.iter().enumerate() {
        let next = exts.get(i + 1).copied().unwrap_or(proto);
        match t {
            44 => {
                let (offset, more) = match r.below(3) {
                    0 => (0u16, true),
                    1 => (1 + r.below(100) as u16, r.chance(50)),
                    _ => (0, false),
                };
                rest.push(next);
                rest.push(0);
                rest.extend_from_slice(&((offset << 3) | more as u16).to_be_bytes());
                rest.extend_from_slice(&(1 + r.below(4) as u32).to_be_bytes());
            }
            51 => {
                let units = 1 + r.below(3) as u8; // (units + 2) * 4 bytes
                rest.push(next);
                rest.push(units);
                rest.extend_from_slice(&vec![0; (units as usize + 2) * 4 - 2]);
            }
            _ => {
                let units = r.below(3) as u8; // (units + 1) * 8 bytes
                rest.push(next);
                rest.push(units);
                rest.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
                rest.extend_from_slice(&vec![0; units as usize * 8]);
            }
        }
    }
    rest.extend_from_slice(&l4(r, proto));
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.push(exts.first().copied().unwrap_or(proto));
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
    let (ethertype, body) = match r.below(20) {
        0..=10 => (0x0800u16, ipv4(r)),
        11..=17 => (0x86dd, ipv6(r)),
        18 => (
            r.pick(&[0x0806u16, 0x88cc, 0x0800, 0x86dd, 0x1234]),
            r.some_bytes(64),
        ),
        _ => (0x0806, r.bytes(28)),
    };
    let ip_at = f.len() + 2;
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&body);
    if r.chance(10) {
        // Ethernet padding after the packet.
        f.extend_from_slice(&vec![0; r.below(40) as usize]);
    }
    mutate(r, &mut f, ip_at, ethertype);
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
    if r.chance(3) {
        let at = r.below(len as u64) as usize;
        f[at] = r.next() as u8; // a random byte
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

/// Runs `frames` frames of `seed` through kernel and model; panics at the
/// first divergence with the frame in hex. Returns the model's reason counts.
fn run(set: &RuleSet, seed: u64, frames: usize, monitor: bool) -> (Runner, Vec<u64>) {
    let runner = Runner::new(set).unwrap_or_else(|e| panic!("cannot load the XDP program: {e:#}"));
    let mut model = Model::new(set);
    let mut rng = Rng(seed);
    let mut counts = vec![0u64; Reason::ALL.len()];
    let mut batch: Vec<(Vec<u8>, Reason)> = Vec::new();
    let mut kernel_before = runner.reasons().unwrap();
    for i in 0..frames {
        let f = frame(&mut rng);
        let want = model.decide(&f);
        counts[want as usize] += 1;
        let got = runner.run(&f).unwrap();
        if got != expected_action(want, monitor) {
            panic!(
                "seed {seed} frame {i}: kernel action {got}, model says {} ({})\nframe: {}",
                want.name(),
                expected_action(want, monitor),
                hex(&f)
            );
        }
        batch.push((f, want));
        if batch.len() == 1000 || i + 1 == frames {
            let kernel_after = runner.reasons().unwrap();
            let mut model_batch = vec![0u64; Reason::ALL.len()];
            for (_, r) in &batch {
                model_batch[*r as usize] += 1;
            }
            for r in Reason::ALL {
                let k = kernel_after[r as usize].packets - kernel_before[r as usize].packets;
                if k != model_batch[r as usize] {
                    report_batch(set, seed, i + 1 - batch.len(), &batch);
                }
            }
            kernel_before = kernel_after;
            batch.clear();
        }
    }
    (runner, counts)
}

/// Finds the frame of a batch whose reason differs: replays the run up to
/// the batch on a fresh program (the fragment memory depends on history),
/// then reads the counters after each frame of the batch.
fn report_batch(set: &RuleSet, seed: u64, first: usize, batch: &[(Vec<u8>, Reason)]) -> ! {
    let runner = Runner::new(set).unwrap();
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
    panic!("seed {seed}: batch from frame {first} diverged in its counts, but no single frame did");
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

#[test]
fn a_million_frames_agree_with_the_reference_model() {
    common::require_bpf();
    let set = rules::parse("differential.toml", RULES).expect("valid rules");
    let (seed, n) = (seed(), frames(1_000_000));
    println!("seed {seed}, {n} frames (DIFF_SEED, DIFF_FRAMES to change)");
    let (runner, counts) = run(&set, seed, n, false);
    let kernel: Vec<u64> = runner
        .reasons()
        .unwrap()
        .iter()
        .map(|t| t.packets)
        .collect();
    assert_eq!(kernel, counts);
    assert_eq!(
        kernel.iter().sum::<u64>(),
        n as u64,
        "counters add up to the frames seen"
    );
    // The run must have exercised every reason that does not need time
    // (FragmentDrop needs `fragments = "drop"`: the monitor run covers it).
    for r in Reason::ALL {
        let timed = matches!(
            r,
            Reason::BanDrop | Reason::RateLimitDrop | Reason::AggregateDrop
        );
        if !timed && r != Reason::FragmentDrop {
            assert!(
                counts[r as usize] > 0,
                "no frame got {}: the generator misses a case",
                r.name()
            );
        }
    }
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
    let (runner, counts) = run(&set, seed() ^ 1, frames(1_000_000) / 20, true);
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
