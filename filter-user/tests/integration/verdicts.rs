//! Verdict tests: crafted frames through the real XDP program with
//! BPF_PROG_TEST_RUN, each checked for its action, the one reason counter it
//! moved and the rule that matched. Needs root and BPF; fails (never skips)
//! without them.

use crate::common;

use common::{
    cases::{Case, case, cases, ntp7, table_rules},
    frames::*,
};
use filter_common::Reason;
use filterctl::{
    filter::simulator::{Simulator, XDP_DROP, XDP_PASS},
    rules,
};

fn runner(text: &str) -> (Simulator, rules::RuleSet) {
    common::require_bpf();
    let set = rules::parse("test.toml", text).expect("valid rules");
    let runner =
        Simulator::new(&set).unwrap_or_else(|e| panic!("cannot load the XDP program: {e:#}"));
    (runner, set)
}

fn default_rules() -> String {
    table_rules()
}

/// Runs every case, checking that exactly the expected reason counter (and
/// rule counter) moved by one packet of the frame's size.
fn check(runner: &Simulator, set: &rules::RuleSet, cases: &[Case], monitor: bool) {
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

/// The shipped profile, reply guard on.
fn guarded_runner() -> (Simulator, rules::RuleSet) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default.toml");
    runner(&std::fs::read_to_string(path).unwrap())
}

fn v4_udp(l4: &[u8]) -> Vec<u8> {
    ether(&[], ETH_IPV4, &ipv4(UDP, &[], Frag::default(), l4))
}

/// A request from this host (DST4) to `to`, as the egress program sees it.
fn request(l4: &[u8], to: [u8; 4]) -> Vec<u8> {
    let mut ip = ipv4(UDP, &[], Frag::default(), l4);
    ip[12..16].copy_from_slice(&DST4);
    ip[16..20].copy_from_slice(&to);
    ether(&[], ETH_IPV4, &ip)
}

/// Replies nobody asked for, from guarded ports: dropped before any rule,
/// later fragments with their first; benign traffic untouched.
#[test]
fn the_guard_drops_unasked_replies() {
    use Reason::*;
    let (runner, set) = guarded_runner();
    let frag = |more, offset, l4: &[u8]| {
        let f = Frag {
            more,
            offset,
            id: 9,
        };
        ether(&[], ETH_IPV4, &ipv4(UDP, &[], f, l4))
    };
    let memcached = v4_udp(&udp(11211, 40000, b"VALUE a"));
    let cases = [
        case(
            "memcached reply nobody asked for",
            memcached,
            UnsolicitedReply,
            None,
        ),
        case(
            "ntp monlist nobody asked for",
            v4_udp(&ntp7()),
            UnsolicitedReply,
            None,
        ),
        case(
            "dns any, first fragment, unasked",
            frag(true, 0, &udp(53, 40000, &[0; 100])),
            UnsolicitedReply,
            None,
        ),
        case(
            "its later fragment follows it",
            frag(false, 100, &[0; 64]),
            FragmentFollowDrop,
            None,
        ),
        case(
            "dns query to this host",
            v4_udp(&udp(53000, 53, &dns_query())),
            Pass,
            None,
        ),
    ];
    check(&runner, &set, &cases, false);
}

/// Replies to requests the real egress program recorded: passed within
/// their budget (8), then dropped; a group request answered by a device.
#[test]
fn the_guard_passes_asked_replies_within_their_budget() {
    use Reason::*;
    let (runner, set) = guarded_runner();
    let dns = request(&udp(40053, 53, &dns_query()), SRC4);
    runner.record_request(&dns).unwrap();
    let search = request(&udp(41900, 1900, b"M-SEARCH"), [239, 255, 255, 250]);
    runner.record_request(&search).unwrap();
    let answer = || v4_udp(&udp(53, 40053, &dns_query()));
    let mut cases: Vec<Case> = (0..8)
        .map(|_| case("dns answer", answer(), SolicitedReply, None))
        .collect();
    cases.extend([
        case("a ninth answer", answer(), ReplyOverBudget, None),
        case(
            "ssdp answer to a search",
            v4_udp(&udp(1900, 41900, &ssdp_reply())),
            SolicitedReply,
            None,
        ),
        case(
            "an answer from another port",
            v4_udp(&udp(123, 40053, &ntp_time_reply())),
            UnsolicitedReply,
            None,
        ),
    ]);
    check(&runner, &set, &cases, false);
}

/// `serve`'s adaptive blocks hold a port's flood, not the host's own
/// answers on it nor its service's clients: a block of port 53 keeps the
/// answers to the host's lookups and the queries to its DNS server, while
/// replies aimed at that server (from 53 or from memcached's 11211) go as
/// reflections; a block of an unguarded port drops what comes from it.
#[test]
fn adaptive_blocks_spare_the_hosts_answers_and_its_services_clients() {
    use Reason::*;
    use filter_testkit::net::TestNet;
    use filterctl::rules::adaptive::{AdaptiveBlock, with_blocks};
    common::require_bpf();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default.toml");
    let set = rules::parse("default.toml", &std::fs::read_to_string(path).unwrap()).unwrap();
    let block = |port| AdaptiveBlock {
        port,
        since_unix: 1,
        trigger_pps: 50_000,
        trigger_share_percent: 90,
    };
    let blocked = with_blocks(&set, &[block(53), block(4500)]).unwrap();
    // The program asks the socket table of the namespace it runs in.
    let net = TestNet::new("adb").expect("create test namespaces");
    TestNet::in_ns(&net.victim_ns, || {
        let _server = std::net::UdpSocket::bind("[::]:53").unwrap();
        let runner = Simulator::new(&blocked).unwrap();
        let lookup = request(&udp(40053, 53, &dns_query()), SRC4);
        runner.record_request(&lookup).unwrap();
        let mut answer = dns_query();
        answer[2] = 0x81;
        answer[7] = 1;
        let memcached = b"\0\x01\0\0\0\x01\0\0VALUE k 0 5\r\n".to_vec();
        let cases = [
            case(
                "the answer to the host's lookup",
                v4_udp(&udp(53, 40053, &answer)),
                SolicitedReply,
                None,
            ),
            case(
                "a query to the host's DNS server from port 53",
                v4_udp(&udp(53, 53, &dns_query())),
                Pass,
                None,
            ),
            case(
                "an answer aimed at the DNS server",
                v4_udp(&udp(53, 53, &answer)),
                ReflectedToService,
                None,
            ),
            case(
                "a memcached reply aimed at the DNS server",
                v4_udp(&udp(11211, 53, &memcached)),
                ReflectedToService,
                None,
            ),
            case(
                "from the blocked unguarded port",
                v4_udp(&udp(4500, 9999, b"x")),
                RuleDrop,
                Some("adaptive-udp-4500"),
            ),
        ];
        check(&runner, &blocked, &cases, false);
    })
    .unwrap();
}
