//! The main table of crafted frames and what the default rules
//! (`rules/default.toml`, reply guard off: [`table_rules`]) must do with each, run in this order (later
//! fragments rely on the first fragments before them): shared by the tests
//! that run it through BPF_PROG_TEST_RUN directly and through
//! `filterctl replay`.
#![allow(dead_code)]

use filter_common::Reason;
use filterctl::filter::simulator::{XDP_DROP, XDP_PASS};

use crate::common::frames::*;

pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub action: u32,
    pub reason: Reason,
    pub rule: Option<&'static str>,
}

pub fn case(
    name: &'static str,
    frame: Vec<u8>,
    reason: Reason,
    rule: Option<&'static str>,
) -> Case {
    let action = if reason.drops() { XDP_DROP } else { XDP_PASS };
    Case {
        name,
        frame,
        action,
        reason,
        rule,
    }
}

/// The rules the table is judged against: rules/default.toml with the
/// reply guard off, so that each case meets the rules (the guard has its
/// own cases in verdicts.rs).
pub fn table_rules() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/default.toml"
    ))
    .unwrap();
    let off = text.replace("[reply_guard]\n", "[reply_guard]\nenabled = false\n");
    assert_ne!(off, text, "rules/default.toml has no [reply_guard]");
    off
}

pub fn ntp7() -> Vec<u8> {
    udp(123, 40000, &ntp_monlist_reply())
}

/// The main table, in enforce mode with the default rules.
pub fn cases() -> Vec<Case> {
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
            Pass,
            Some("ntp-time-replies"),
        ),
        case(
            "ntp server to server (123 -> 123) time reply",
            v4(&udp(123, 123, &ntp_time_reply()), UDP),
            Pass,
            Some("ntp-time-replies"),
        ),
        case(
            "ssdp reply",
            v4(&udp(1900, 1900, &ssdp_reply()), UDP),
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
                &ipv4(
                    UDP,
                    &opts40,
                    Frag::default(),
                    &udp(1900, 1900, &ssdp_reply()),
                ),
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
            v6(&udp(1900, 1900, &ssdp_reply()), UDP),
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
                &ipv6(UDP, &[(43, ext_options())], &udp(1900, 1900, &ssdp_reply())),
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
