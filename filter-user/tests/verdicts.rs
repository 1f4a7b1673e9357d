//! Verdict tests: crafted frames through the real XDP program with
//! BPF_PROG_TEST_RUN, each checked for its action, the one reason counter it
//! moved and the rule that matched. Needs root and BPF; fails (never skips)
//! without them.

mod common;

use common::frames::*;
use filter_common::Reason;
use filterctl::{
    rules,
    testrun::{Runner, XDP_DROP, XDP_PASS},
};

fn runner(text: &str) -> (Runner, rules::RuleSet) {
    common::require_bpf();
    let set = rules::parse("test.toml", text).expect("valid rules");
    let runner = Runner::new(&set).unwrap_or_else(|e| panic!("cannot load the XDP program: {e:#}"));
    (runner, set)
}

fn default_rules() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/default.toml"
    ))
    .unwrap()
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    action: u32,
    reason: Reason,
    rule: Option<&'static str>,
}

fn case(name: &'static str, frame: Vec<u8>, reason: Reason, rule: Option<&'static str>) -> Case {
    let action = if reason.drops() { XDP_DROP } else { XDP_PASS };
    Case {
        name,
        frame,
        action,
        reason,
        rule,
    }
}

/// Runs every case, checking that exactly the expected reason counter (and
/// rule counter) moved by one packet of the frame's size.
fn check(runner: &Runner, set: &rules::RuleSet, cases: &[Case], monitor: bool) {
    for c in cases {
        let before = runner.reasons().unwrap();
        let rules_before: Vec<_> = (0..set.rules.len() as u32)
            .map(|i| runner.rule(i).unwrap())
            .collect();
        let mon_before = runner.monitor_passed().unwrap();

        let action = runner.run(&c.frame).unwrap();

        let expected_action = if monitor { XDP_PASS } else { c.action };
        assert_eq!(action, expected_action, "{}: action", c.name);
        let after = runner.reasons().unwrap();
        for r in Reason::ALL {
            let d = after[r as usize].packets - before[r as usize].packets;
            let want = u64::from(r == c.reason);
            assert_eq!(
                d,
                want,
                "{}: counter {} moved by {d}, expected {want}",
                c.name,
                r.name()
            );
            if r == c.reason {
                let bytes = after[r as usize].bytes - before[r as usize].bytes;
                assert_eq!(
                    bytes,
                    c.frame.len() as u64,
                    "{}: bytes of {}",
                    c.name,
                    r.name()
                );
            }
        }
        for (i, spec) in set.rules.iter().enumerate() {
            let d = runner.rule(i as u32).unwrap().packets - rules_before[i].packets;
            let want = u64::from(c.rule == Some(spec.name.as_str()));
            assert_eq!(
                d, want,
                "{}: rule {} counter moved by {d}",
                c.name, spec.name
            );
        }
        let mon = runner.monitor_passed().unwrap().packets - mon_before.packets;
        let want = u64::from(monitor && c.reason.drops());
        assert_eq!(mon, want, "{}: monitor counter", c.name);
    }
}

fn ntp7() -> Vec<u8> {
    udp(123, 40000, &ntp_monlist_reply())
}

fn cases() -> Vec<Case> {
    use Reason::*;
    let v4 = |l4: &[u8], proto| ether(&[], ETH_IPV4, &ipv4(proto, &[], Frag::default(), l4));
    let v6 = |l4: &[u8], proto| ether(&[], ETH_IPV6, &ipv6(proto, &[], l4));
    // Options whose bytes, read as if the header were 20 bytes long, say
    // "source port 123": a parser that ignores IHL would drop this.
    let fake_ports = [0x00, 0x7b, 0x9c, 0x40];
    // A record-route-ish option block of 8 bytes (IHL 7).
    let opts8 = [0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00];
    // The longest legal header: IHL 15, 40 bytes of NOP options.
    let opts40 = [0x01; 40];
    vec![
        case(
            "ntp monlist reply",
            v4(&ntp7(), UDP),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "ntp time reply kept for time sync",
            v4(&udp(123, 40000, &ntp_time_reply()), UDP),
            RulePass,
            Some("ntp-time-replies"),
        ),
        case(
            "ntp server to server (123 -> 123) time reply",
            v4(&udp(123, 123, &ntp_time_reply()), UDP),
            RulePass,
            Some("ntp-time-replies"),
        ),
        case(
            "ssdp reply",
            v4(&udp(1900, 50000, &ssdp_reply()), UDP),
            RuleDrop,
            Some("ssdp-reflection"),
        ),
        case(
            "dns query",
            v4(&udp(53000, 53, &dns_query()), UDP),
            Pass,
            None,
        ),
        case(
            "dns reply",
            v4(&udp(53, 53000, &dns_query()), UDP),
            Pass,
            None,
        ),
        case(
            "udp to port 123",
            v4(&udp(40000, 123, &ntp_monlist_reply()), UDP),
            Pass,
            None,
        ),
        case(
            "udp to port 1900",
            v4(&udp(40000, 1900, b"M-SEARCH * HTTP/1.1\r\n"), UDP),
            Pass,
            None,
        ),
        case("tcp from port 123", v4(&tcp_syn(123, 443), TCP), Pass, None),
        case(
            "tcp from port 1900",
            v4(&tcp_syn(1900, 80), TCP),
            Pass,
            None,
        ),
        case("icmp echo", v4(&icmp_echo(), ICMP), Pass, None),
        case("arp", arp(), NonIp, None),
        case(
            "ipv4 options ihl 7 ntp",
            ether(&[], ETH_IPV4, &ipv4(UDP, &opts8, Frag::default(), &ntp7())),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "ipv4 options ihl 15 ssdp",
            ether(
                &[],
                ETH_IPV4,
                &ipv4(UDP, &opts40, Frag::default(), &udp(1900, 5, &ssdp_reply())),
            ),
            RuleDrop,
            Some("ssdp-reflection"),
        ),
        case(
            "ipv4 options that look like port 123",
            ether(
                &[],
                ETH_IPV4,
                &ipv4(
                    UDP,
                    &fake_ports,
                    Frag::default(),
                    &udp(5353, 5353, &dns_query()),
                ),
            ),
            Pass,
            None,
        ),
        case(
            "vlan ntp",
            ether(
                &[TPID_8021Q],
                ETH_IPV4,
                &ipv4(UDP, &[], Frag::default(), &ntp7()),
            ),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "qinq ntp",
            ether(
                &[TPID_8021AD, TPID_8021Q],
                ETH_IPV4,
                &ipv4(UDP, &[], Frag::default(), &ntp7()),
            ),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "vlan dns",
            ether(
                &[TPID_8021Q],
                ETH_IPV4,
                &ipv4(UDP, &[], Frag::default(), &udp(53000, 53, &dns_query())),
            ),
            Pass,
            None,
        ),
        case(
            "three vlan tags",
            ether(
                &[TPID_8021AD, TPID_8021Q, TPID_8021Q],
                ETH_IPV4,
                &ipv4(UDP, &[], Frag::default(), &ntp7()),
            ),
            Malformed,
            None,
        ),
        case(
            "vlan arp",
            ether(&[TPID_8021Q], ETH_ARP, &arp()[14..]),
            NonIp,
            None,
        ),
        case(
            "ipv6 ntp",
            v6(&ntp7(), UDP),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "ipv6 ssdp",
            v6(&udp(1900, 5, &ssdp_reply()), UDP),
            RuleDrop,
            Some("ssdp-reflection"),
        ),
        case(
            "ipv6 dns",
            v6(&udp(53000, 53, &dns_query()), UDP),
            Pass,
            None,
        ),
        case(
            "ipv6 vlan ntp",
            ether(&[TPID_8021Q], ETH_IPV6, &ipv6(UDP, &[], &ntp7())),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "ipv6 hop-by-hop + dest opts ntp",
            ether(
                &[],
                ETH_IPV6,
                &ipv6(UDP, &[(0, ext_options()), (60, ext_options())], &ntp7()),
            ),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "ipv6 routing header ssdp",
            ether(
                &[],
                ETH_IPV6,
                &ipv6(UDP, &[(43, ext_options())], &udp(1900, 5, &ssdp_reply())),
            ),
            RuleDrop,
            Some("ssdp-reflection"),
        ),
        case(
            "ipv6 six extension headers ntp",
            ether(
                &[],
                ETH_IPV6,
                &ipv6(
                    UDP,
                    &[
                        (0, ext_options()),
                        (60, ext_options()),
                        (43, ext_options()),
                        (60, ext_options()),
                        (60, ext_options()),
                        (60, ext_options()),
                    ],
                    &ntp7(),
                ),
            ),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "ipv6 seven extension headers",
            ether(
                &[],
                ETH_IPV6,
                &ipv6(
                    UDP,
                    &[
                        (0, ext_options()),
                        (60, ext_options()),
                        (43, ext_options()),
                        (60, ext_options()),
                        (60, ext_options()),
                        (60, ext_options()),
                        (60, ext_options()),
                    ],
                    &ntp7(),
                ),
            ),
            Malformed,
            None,
        ),
        case(
            "ipv6 first fragment ntp",
            ether(
                &[],
                ETH_IPV6,
                &ipv6(UDP, &[(44, ext_fragment(0, true))], &ntp7()[..200]),
            ),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "ipv6 later fragment of the dropped datagram",
            ether(
                &[],
                ETH_IPV6,
                &ipv6(UDP, &[(44, ext_fragment(25, false))], &[0x7b; 100]),
            ),
            FragmentFollowDrop,
            None,
        ),
        case(
            "ipv6 later fragment of another datagram",
            ether(
                &[],
                ETH_IPV6,
                &ipv6(UDP, &[(44, ext_fragment_id(25, false, 77))], &[0x7b; 100]),
            ),
            FragmentPass,
            None,
        ),
        case(
            "ipv6 no next header",
            ether(&[], ETH_IPV6, &ipv6(59, &[], &[])),
            Pass,
            None,
        ),
        case(
            "ipv4 first fragment ntp",
            ether(
                &[],
                ETH_IPV4,
                &ipv4(
                    UDP,
                    &[],
                    Frag {
                        more: true,
                        offset: 0,
                        id: 7,
                    },
                    &ntp7()[..200],
                ),
            ),
            RuleDrop,
            Some("ntp-reflection"),
        ),
        case(
            "ipv4 later fragment of the dropped datagram",
            ether(
                &[],
                ETH_IPV4,
                &ipv4(
                    UDP,
                    &[],
                    Frag {
                        more: false,
                        offset: 25,
                        id: 7,
                    },
                    &[0; 64],
                ),
            ),
            FragmentFollowDrop,
            None,
        ),
        case(
            "ipv4 later fragment with port-123-looking bytes",
            ether(
                &[],
                ETH_IPV4,
                &ipv4(
                    UDP,
                    &[],
                    Frag {
                        more: false,
                        offset: 25,
                        id: 8,
                    },
                    &udp(123, 123, &[0; 64]),
                ),
            ),
            FragmentPass,
            None,
        ),
        case(
            "ipv4 first fragment too short for udp",
            ether(
                &[],
                ETH_IPV4,
                &ipv4(
                    UDP,
                    &[],
                    Frag {
                        more: true,
                        offset: 0,
                        id: 9,
                    },
                    &[0, 123, 0],
                ),
            ),
            Malformed,
            None,
        ),
        case(
            "ipv4 ihl 4",
            {
                let mut f = v4(&ntp7(), UDP);
                f[14] = 0x44;
                f
            },
            Malformed,
            None,
        ),
        case(
            "ipv4 ihl past the end",
            {
                let mut f = v4(&udp(1, 2, &[]), UDP);
                f[14] = 0x4f;
                f
            },
            Malformed,
            None,
        ),
        case(
            "ipv4 total length longer than frame",
            {
                let mut f = v4(&ntp7(), UDP);
                f[16] = 0xff;
                f[17] = 0xff;
                f
            },
            Malformed,
            None,
        ),
        case(
            "ipv4 total length shorter than header",
            {
                let mut f = v4(&ntp7(), UDP);
                f[16] = 0;
                f[17] = 19;
                f
            },
            Malformed,
            None,
        ),
        case(
            "ipv4 version 6 in an ipv4 frame",
            {
                let mut f = v4(&ntp7(), UDP);
                f[14] = 0x65;
                f
            },
            Malformed,
            None,
        ),
        case(
            "udp length below 8",
            {
                let mut f = v4(&ntp7(), UDP);
                f[38] = 0;
                f[39] = 7;
                f
            },
            Malformed,
            None,
        ),
        case(
            "udp length past ip end",
            {
                let mut f = v4(&ntp7(), UDP);
                f[38] = 0xff;
                f
            },
            Malformed,
            None,
        ),
        case(
            "tcp data offset below 5",
            {
                let mut f = v4(&tcp_syn(123, 80), TCP);
                f[46] = 0x40;
                f
            },
            Malformed,
            None,
        ),
        case(
            "ethernet padding after a short udp packet",
            {
                let mut f = v4(&udp(53000, 53, b"x"), UDP);
                f.resize(60, 0);
                f
            },
            Pass,
            None,
        ),
        case(
            "ipv6 payload length past frame",
            {
                let mut f = v6(&ntp7(), UDP);
                f[18] = 0xff;
                f
            },
            Malformed,
            None,
        ),
    ]
}

#[test]
fn verdicts_in_enforce_mode() {
    let (runner, set) = runner(&default_rules());
    let cases = cases();
    check(&runner, &set, &cases, false);
    // Counters add up: every frame landed in exactly one reason.
    let seen: u64 = runner.reasons().unwrap().iter().map(|t| t.packets).sum();
    assert_eq!(seen, cases.len() as u64);
}

#[test]
fn verdicts_in_monitor_mode() {
    let text = default_rules().replace("mode = \"enforce\"", "mode = \"monitor\"");
    assert!(text.contains("mode = \"monitor\""));
    let (runner, set) = runner(&text);
    check(&runner, &set, &cases(), true);
}

#[test]
fn fragment_drop_policy() {
    let text = default_rules().replace("fragments = \"pass\"", "fragments = \"drop\"");
    let (runner, set) = runner(&text);
    let later = Case {
        name: "later fragment under fragments = drop",
        frame: ether(
            &[],
            ETH_IPV4,
            &ipv4(
                UDP,
                &[],
                Frag {
                    more: true,
                    offset: 100,
                    id: 1,
                },
                &[1; 64],
            ),
        ),
        action: XDP_DROP,
        reason: Reason::FragmentDrop,
        rule: None,
    };
    let later6 = Case {
        name: "ipv6 later fragment under fragments = drop",
        frame: ether(
            &[],
            ETH_IPV6,
            &ipv6(UDP, &[(44, ext_fragment(8, true))], &[1; 64]),
        ),
        ..later
    };
    let first = case(
        "first fragment of dns still passes",
        ether(
            &[],
            ETH_IPV4,
            &ipv4(
                UDP,
                &[],
                Frag {
                    more: true,
                    offset: 0,
                    id: 2,
                },
                &udp(53, 4000, &[0; 100]),
            ),
        ),
        Reason::Pass,
        None,
    );
    check(&runner, &set, &[later, later6, first], false);
}

#[test]
fn truncated_frames_never_crash_and_count_as_malformed() {
    let (runner, set) = runner(&default_rules());
    let frames = [
        ether(
            &[],
            ETH_IPV4,
            &ipv4(UDP, &[0x01; 8], Frag::default(), &ntp7()),
        ),
        ether(
            &[TPID_8021AD, TPID_8021Q],
            ETH_IPV6,
            &ipv6(
                UDP,
                &[(0, ext_options()), (44, ext_fragment(0, true))],
                &ntp7(),
            ),
        ),
        ether(
            &[],
            ETH_IPV4,
            &ipv4(TCP, &[], Frag::default(), &tcp_syn(1, 2)),
        ),
    ];
    let mut cases = Vec::new();
    for full in &frames {
        // The kernel's test harness refuses frames shorter than an Ethernet
        // header; every longer prefix cuts some header or lies about length.
        for len in 14..full.len() {
            cases.push(case(
                "truncated",
                full[..len].to_vec(),
                Reason::Malformed,
                None,
            ));
        }
    }
    // Ethernet header of a VLAN frame cut inside the tag.
    cases.push(case(
        "cut inside vlan tag",
        ether(&[TPID_8021Q], ETH_IPV4, &[])[..16].to_vec(),
        Reason::Malformed,
        None,
    ));
    check(&runner, &set, &cases, false);
}

#[test]
fn payload_match_reads_only_inside_the_payload() {
    // A one-byte UDP payload cannot match a rule on its 2nd..4th bytes, even
    // though the frame's Ethernet padding holds bytes there.
    let text = r#"
[[rule]]
name = "deep"
protocol = "udp"
src_port = 9
payload = { offset = 1, mask = "ffff", value = "0000" }
action = "drop"
"#;
    let (runner, set) = runner(text);
    let mut short = ether(
        &[],
        ETH_IPV4,
        &ipv4(UDP, &[], Frag::default(), &udp(9, 9, &[0])),
    );
    short.resize(60, 0);
    let long = ether(
        &[],
        ETH_IPV4,
        &ipv4(UDP, &[], Frag::default(), &udp(9, 9, &[0, 0, 0])),
    );
    check(
        &runner,
        &set,
        &[
            case("payload too short for the match", short, Reason::Pass, None),
            case("payload long enough", long, Reason::RuleDrop, Some("deep")),
        ],
        false,
    );
}

#[test]
fn dst_port_and_length_ranges() {
    let text = r#"
[[rule]]
name = "big-dns-replies"
protocol = "udp"
src_port = 53
dst_port = "1024-65535"
payload_len = "512-65535"
action = "drop"
"#;
    let (runner, set) = runner(text);
    let v4 = |l4: &[u8]| ether(&[], ETH_IPV4, &ipv4(UDP, &[], Frag::default(), l4));
    check(
        &runner,
        &set,
        &[
            case(
                "large reply to ephemeral port",
                v4(&udp(53, 40000, &[0; 512])),
                Reason::RuleDrop,
                Some("big-dns-replies"),
            ),
            case(
                "small reply",
                v4(&udp(53, 40000, &[0; 511])),
                Reason::Pass,
                None,
            ),
            case(
                "large reply to port 53",
                v4(&udp(53, 53, &[0; 600])),
                Reason::Pass,
                None,
            ),
        ],
        false,
    );
}
