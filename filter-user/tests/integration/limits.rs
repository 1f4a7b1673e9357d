//! The steps around the rules, through the real program with
//! BPF_PROG_TEST_RUN: allow and deny lists, per-source and aggregate rate
//! limits, bans that start and expire by themselves. Needs root and BPF.

use crate::common;

use std::time::Duration;

use common::frames::*;
use filter_common::{FAMILY_V4, Reason, decide::addr_v4, limiter::Source};
use filterctl::{
    filter::simulator::{Simulator, XDP_DROP, XDP_PASS},
    rules,
};

fn runner(text: &str) -> Simulator {
    common::require_bpf();
    let set = rules::parse("test.toml", text).expect("valid rules");
    Simulator::new(&set).unwrap_or_else(|e| panic!("cannot load the XDP program: {e:#}"))
}

fn dns_from(src: [u8; 4]) -> Vec<u8> {
    with_src4(
        ether(
            &[],
            ETH_IPV4,
            &ipv4(UDP, &[], Frag::default(), &udp(53000, 53, &dns_query())),
        ),
        src,
    )
}

fn dns6_from(src: [u8; 16]) -> Vec<u8> {
    with_src6(
        ether(
            &[],
            ETH_IPV6,
            &ipv6(UDP, &[], &udp(53000, 53, &dns_query())),
        ),
        src,
    )
}

fn ntp_from(src: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0x97, 0, 3, 0x2a];
    p.resize(468, 0);
    with_src4(
        ether(
            &[],
            ETH_IPV4,
            &ipv4(UDP, &[], Frag::default(), &udp(123, 4000, &p)),
        ),
        src,
    )
}

fn first_fragment_from(src: [u8; 4]) -> Vec<u8> {
    let first = Frag {
        more: true,
        offset: 0,
        id: 0x4242,
    };
    let mut p = vec![0x97, 0, 3, 0x2a];
    p.resize(468, 0);
    let l4 = udp(123, 4000, &p);
    with_src4(
        ether(&[], ETH_IPV4, &ipv4(UDP, &[], first, &l4[..200])),
        src,
    )
}

fn count(r: &Simulator, reason: Reason) -> u64 {
    r.reason(reason).unwrap().packets
}

/// Runs `frame` `n` times; returns how many passed.
fn passed(r: &Simulator, frame: &[u8], n: usize) -> usize {
    (0..n).filter(|_| r.run(frame).unwrap() == XDP_PASS).count()
}

/// Most a limiter of `rate` per second and `burst` may admit over
/// `elapsed`: the burst, what refilled meanwhile, and one clock tick of
/// slack (the program reads the coarse clock).
fn most(burst: u64, rate: f64, elapsed: Duration) -> usize {
    (burst as f64 + rate * (elapsed.as_secs_f64() + 0.010)).ceil() as usize
}

/// Like `passed`, with the bound on what may pass given the time it took.
fn passed_within(r: &Simulator, frame: &[u8], n: usize, burst: u64, rate: f64) -> (usize, usize) {
    let t0 = std::time::Instant::now();
    let ok = passed(r, frame, n);
    (ok, most(burst, rate, t0.elapsed()))
}

#[test]
fn allow_beats_every_rule_and_deny_beats_the_rest() {
    let r = runner(
        r#"
allow = ["192.0.2.0/28", "2001:db8:1::/48"]
deny = ["203.0.113.0/25", "2001:db8:bad::/48", "198.51.100.66"]
[[rule]]
name = "ntp"
protocol = "udp"
src_port = 123
action = "drop"
"#,
    );
    // Allowed: even reflection passes, with no further check.
    assert_eq!(r.run(&ntp_from([192, 0, 2, 5])).unwrap(), XDP_PASS);
    assert_eq!(count(&r, Reason::AllowPass), 1);
    assert_eq!(count(&r, Reason::RuleDrop), 0);
    // Just outside the allowed /28: the rule applies.
    assert_eq!(r.run(&ntp_from([192, 0, 2, 16])).unwrap(), XDP_DROP);
    assert_eq!(count(&r, Reason::RuleDrop), 1);
    // Denied, benign or not.
    assert_eq!(r.run(&dns_from([203, 0, 113, 7])).unwrap(), XDP_DROP);
    assert_eq!(r.run(&dns_from([198, 51, 100, 66])).unwrap(), XDP_DROP);
    assert_eq!(count(&r, Reason::DenyDrop), 2);
    assert_eq!(r.run(&dns_from([198, 51, 100, 67])).unwrap(), XDP_PASS);
    assert_eq!(r.run(&dns_from([203, 0, 113, 128])).unwrap(), XDP_PASS);
    let mut v6 = [0u8; 16];
    v6[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad]);
    v6[15] = 9;
    assert_eq!(r.run(&dns6_from(v6)).unwrap(), XDP_DROP);
    v6[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01]);
    assert_eq!(r.run(&dns6_from(v6)).unwrap(), XDP_PASS);
    // Neighbour discovery is IPv6's ARP: it passes even from a denied
    // source, or the host loses its link.
    let mut ns_src = [0u8; 16];
    ns_src[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad]);
    let solicit = with_src6(
        ether(&[], ETH_IPV6, &ipv6(58, &[], &[135, 0, 0, 0, 0, 0, 0, 0])),
        ns_src,
    );
    assert_eq!(r.run(&solicit).unwrap(), XDP_PASS);
    assert_eq!(count(&r, Reason::NonIp), 1);
    let echo = with_src6(
        ether(&[], ETH_IPV6, &ipv6(58, &[], &[128, 0, 0, 0, 0, 0, 0, 0])),
        ns_src,
    );
    assert_eq!(
        r.run(&echo).unwrap(),
        XDP_DROP,
        "ICMPv6 echo from a denied source"
    );
    assert_eq!(count(&r, Reason::DenyDrop), 4);
    assert_eq!(count(&r, Reason::AllowPass), 2);
    assert_eq!(count(&r, Reason::Pass), 2);
}

#[test]
fn per_source_limit_admits_the_burst_then_the_rate() {
    // 100 packets/s, burst 10. Test runs take a few microseconds each, so a
    // few hundred frames take milliseconds: the burst passes and at most a
    // token or two refills meanwhile.
    let r = runner(
        r#"
[per_source]
pps = 100
burst_packets = 10
"#,
    );
    let a = dns_from([198, 51, 100, 1]);
    let (ok, max) = passed_within(&r, &a, 300, 10, 100.0);
    assert!(
        (10..=max).contains(&ok),
        "source A passed {ok} of 300 (10 to {max} allowed)"
    );
    assert_eq!(count(&r, Reason::RateLimitDrop), 300 - ok as u64);
    // Another source has its own bucket.
    let (ok_b, max) = passed_within(&r, &dns_from([198, 51, 100, 2]), 300, 10, 100.0);
    assert!(
        (10..=max).contains(&ok_b),
        "source B passed {ok_b} of 300 (10 to {max} allowed)"
    );
    // IPv6 sources are keyed by /64: two hosts of one /64 share a bucket.
    let mut h1 = [0u8; 16];
    h1[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    h1[15] = 1;
    let mut h2 = h1;
    h2[15] = 2;
    let t0 = std::time::Instant::now();
    let ok1 = passed(&r, &dns6_from(h1), 8);
    let ok2 = passed(&r, &dns6_from(h2), 300);
    let max = most(10, 100.0, t0.elapsed());
    assert_eq!(ok1, 8);
    assert!(
        (2..=max - 8).contains(&ok2),
        "second host of the /64 passed {ok2}: the /64 shares one bucket of 10"
    );
}

#[test]
fn bit_rate_limit_counts_bytes() {
    // 80 kbit/s = 10 kB/s, burst 5000 bytes: 10 NTP-sized (510-byte)
    // frames fit, the 11th does not.
    let r = runner(
        r#"
[per_source]
bps = "80kbit"
burst_bytes = 5000
"#,
    );
    let big = with_src4(
        ether(
            &[],
            ETH_IPV4,
            &ipv4(UDP, &[], Frag::default(), &udp(4000, 4000, &[0; 468])),
        ),
        [198, 51, 100, 3],
    );
    assert_eq!(big.len(), 510);
    // 10 frames fill the 5000-byte burst (the 10th starts inside it);
    // refill is 10 kB/s, about 20 frames per second.
    let (ok, max) = passed_within(&r, &big, 50, 10, 20.0);
    assert!(
        (10..=max).contains(&ok),
        "passed {ok} (10 to {max} allowed)"
    );
}

#[test]
fn over_limit_sources_get_banned_and_bans_expire() {
    let r = runner(
        r#"
[per_source]
pps = 10
burst_packets = 2
[ban]
after = "20ms"
for = "300ms"
[reply_guard]
packets = 8
expiry = "10s"
"#,
    );
    let a = dns_from([198, 51, 100, 9]);
    assert_eq!(passed(&r, &a, 50), 2, "burst of 2");
    assert_eq!(count(&r, Reason::BanDrop), 0);
    // Still over its limit 50 ms later: banned.
    std::thread::sleep(Duration::from_millis(50));
    passed(&r, &a, 50);
    let banned = count(&r, Reason::BanDrop);
    assert!(banned > 0, "no ban after 50 ms over the limit");
    // Everything from it is dropped while banned, whatever the limiter says.
    assert_eq!(passed(&r, &a, 20), 0);
    assert_eq!(count(&r, Reason::BanDrop), banned + 20);
    // Another source is not affected.
    assert_eq!(passed(&r, &dns_from([198, 51, 100, 10]), 2), 2);
    // Unasked NTP replies, which the early verdict judges before the full
    // parse: from the banned source they are the ban's (its hint bit is
    // set), from another source they are unsolicited, whole or fragmented.
    for (frame, what) in [
        (ntp_from([198, 51, 100, 9]), "reply"),
        (first_fragment_from([198, 51, 100, 9]), "first fragment"),
    ] {
        let before = count(&r, Reason::BanDrop);
        assert_eq!(r.run(&frame).unwrap(), XDP_DROP);
        assert_eq!(
            count(&r, Reason::BanDrop),
            before + 1,
            "a banned source's unasked {what} not counted as banned"
        );
    }
    let unsolicited = count(&r, Reason::UnsolicitedReply);
    assert_eq!(r.run(&ntp_from([198, 51, 100, 10])).unwrap(), XDP_DROP);
    assert_eq!(count(&r, Reason::UnsolicitedReply), unsolicited + 1);
    // The ban runs out by itself; the bucket has refilled meanwhile.
    std::thread::sleep(Duration::from_millis(400));
    let before = count(&r, Reason::BanDrop);
    assert_eq!(passed(&r, &a, 1), 1, "ban did not expire");
    assert_eq!(count(&r, Reason::BanDrop), before);
}

#[test]
fn aggregate_limit_bounds_a_flood_from_random_sources() {
    // Per-source keys are useless against spoofed random sources; the
    // aggregate limit caps what the whole rule lets through.
    let r = runner(
        r#"
[[rule]]
name = "dns-replies"
protocol = "udp"
src_port = 53
action = "limit"
aggregate_pps = 100
aggregate_burst = 20
"#,
    );
    let mut ok = 0;
    let t0 = std::time::Instant::now();
    for i in 0..1000u32 {
        let src = [198, 51, (100 + i / 250) as u8, (i % 250) as u8 + 1];
        let f = with_src4(
            ether(
                &[],
                ETH_IPV4,
                &ipv4(UDP, &[], Frag::default(), &udp(53, 4000, &dns_query())),
            ),
            src,
        );
        ok += usize::from(r.run(&f).unwrap() == XDP_PASS);
    }
    let max = most(20, 100.0, t0.elapsed());
    assert!(
        (20..=max).contains(&ok),
        "aggregate let {ok} of 1000 through (20 to {max} allowed)"
    );
    assert_eq!(count(&r, Reason::AggregateDrop), 1000 - ok as u64);
    // Traffic the rule does not match is not limited.
    assert_eq!(passed(&r, &dns_from([198, 51, 100, 1]), 100), 100);
}

#[test]
fn limiter_table_full_of_sources_breaks_nothing() {
    // An LRU of 1024 sources fed 2048 distinct ones, twice: old entries are
    // evicted, every packet still gets a verdict, counters add up.
    let r = runner(
        r#"
[sources]
table_size = 1024
[per_source]
pps = 1000
burst_packets = 5
"#,
    );
    let mut frames = 0;
    for _round in 0..2 {
        for i in 0..2048u32 {
            // A distinct /64 of 2001:db8::/32 each.
            let mut src = [0u8; 16];
            src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            src[6..8].copy_from_slice(&(i as u16).to_be_bytes());
            src[15] = 1;
            let f = dns6_from(src);
            assert_eq!(
                r.run(&f).unwrap(),
                XDP_PASS,
                "source {i} under its limit was dropped"
            );
            frames += 1;
        }
    }
    let seen: u64 = r.reasons().unwrap().iter().map(|t| t.packets).sum();
    assert_eq!(seen, frames);
}

#[test]
fn forged_sources_of_one_packet_never_enter_the_limiter() {
    // A spoofed flood's sources each send one packet: the doorkeeper
    // remembers it in a slot instead of inserting the source into the
    // limiter table. A source enters on its second packet, with the state
    // both packets leave, so its limit holds as if it had entered at once.
    let r = runner(
        r#"
[sources]
table_size = 1024
[per_source]
pps = 1
burst_packets = 5
"#,
    );
    // On one CPU: the doorkeeper's slots are per CPU.
    pin_to_one_cpu();
    let real = dns_from([198, 51, 100, 7]);
    assert_eq!(r.run(&real).unwrap(), XDP_PASS);
    assert_eq!(
        r.limiter_sources().unwrap(),
        0,
        "entered on its first packet"
    );
    for _ in 0..9 {
        r.run(&real).unwrap();
    }
    assert_eq!(
        r.limiter_sources().unwrap(),
        1,
        "not entered on its second packet"
    );
    // Burst 5: the first packet counted although it entered on the second.
    assert_eq!(count(&r, Reason::RateLimitDrop), 5, "10 packets at burst 5");
    let forged = |i: u32| {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        src[4..8].copy_from_slice(&i.to_be_bytes());
        src[15] = 1;
        dns6_from(src)
    };
    for i in 0..20_000u32 {
        assert_eq!(r.run(&forged(i)).unwrap(), XDP_PASS, "forged source {i}");
    }
    assert_eq!(count(&r, Reason::RateLimitDrop), 5);
    assert_eq!(r.limiter_sources().unwrap(), 1, "forged sources entered");
    assert_eq!(r.run(&real).unwrap(), XDP_DROP, "the real source forgotten");
    // A forged source that sends again enters like any other.
    r.run(&forged(19_999)).unwrap();
    assert_eq!(r.limiter_sources().unwrap(), 2);
}

/// Keeps the calling thread (where BPF_PROG_TEST_RUN runs the program) on
/// the CPU it is on.
fn pin_to_one_cpu() {
    // SAFETY: plain syscalls on a zeroed cpu_set_t owned here.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu failed");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity failed");
    }
}

#[test]
fn a_full_set_of_the_limiter_table_forgets_its_least_recent_source() {
    // The table keeps a source in one of the two slots of the set its hash
    // picks. Three sources of one set: the third to enter takes the slot of
    // the one whose allowance runs out first, the other stays limited.
    let r = runner(
        r#"
[sources]
table_size = 1024
[per_source]
pps = 1
burst_packets = 2
"#,
    );
    pin_to_one_cpu();
    let set_of = |a: [u8; 4]| {
        let src = Source {
            addr: addr_v4(a),
            family: FAMILY_V4,
            // The default limit is the rule set's first.
            limit: 1,
        };
        (src.hash() >> 32) as u32 & (1024 - 1) & !1
    };
    let mut by_set: std::collections::HashMap<u32, Vec<[u8; 4]>> = Default::default();
    for net in [[192, 0, 2], [198, 51, 100], [203, 0, 113]] {
        for host in 1..=254u8 {
            let a = [net[0], net[1], net[2], host];
            by_set.entry(set_of(a)).or_default().push(a);
        }
    }
    let three = by_set
        .values()
        .find(|v| v.len() >= 3)
        .expect("three documentation addresses in one set");
    let (a, b, c) = (dns_from(three[0]), dns_from(three[1]), dns_from(three[2]));
    for f in [&a, &b] {
        assert_eq!(passed(&r, f, 5), 2, "burst of 2");
    }
    assert_eq!(r.limiter_sources().unwrap(), 2);
    // c enters on its second packet, in a's slot: a's allowance ran out
    // first (it sent first).
    assert_eq!(passed(&r, &c, 2), 2);
    assert_eq!(r.limiter_sources().unwrap(), 2);
    assert_eq!(r.run(&b).unwrap(), XDP_DROP, "b was forgotten");
    assert_eq!(
        r.run(&a).unwrap(),
        XDP_PASS,
        "a still limited: c took another slot"
    );
}
