//! Verdict tests: crafted frames through the real XDP program with
//! BPF_PROG_TEST_RUN, each checked for its action, the one reason counter it
//! moved and the rule that matched. Needs root and BPF; fails (never skips)
//! without them.

use crate::common;

use common::{
    cases::{Case, case, cases, ntp7, table_rules},
    frames::*,
    model::Model,
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

/// The fragment memory an attacker cannot poison: a forged first fragment
/// (unsolicited, dropped) of a datagram's key does not turn away the later
/// fragments of the real answer whose first fragment passed, before or
/// after it; later fragments whose first was not seen pass from a peer the
/// host asked, and are dropped from any other source.
#[test]
fn a_solicited_first_fragment_beats_a_forged_one() {
    use Reason::*;
    let (runner, set) = guarded_runner();
    runner
        .record_request(&request(&udp(40053, 53, &dns_query()), SRC4))
        .unwrap();
    let frag = |more, offset, id, l4: &[u8]| {
        ether(
            &[],
            ETH_IPV4,
            &ipv4(UDP, &[], Frag { more, offset, id }, l4),
        )
    };
    let from = |mut f: Vec<u8>, src: [u8; 4]| {
        f[26..30].copy_from_slice(&src);
        f
    };
    // A 3 KB answer's first fragment: its UDP length is the datagram's.
    let first = |dst_port| {
        let mut l4 = udp(53, dst_port, &[0; 200]);
        l4[4..6].copy_from_slice(&3008u16.to_be_bytes());
        l4
    };
    let cases = [
        case(
            "a forged first fragment",
            frag(true, 0, 21, &first(40054)),
            UnsolicitedReply,
            None,
        ),
        case(
            "the real first fragment",
            frag(true, 0, 21, &first(40053)),
            SolicitedReply,
            None,
        ),
        case(
            "its later fragment",
            frag(true, 185, 21, &[0; 64]),
            FragmentPass,
            None,
        ),
        case(
            "a forged one after it",
            frag(true, 0, 21, &first(40054)),
            UnsolicitedReply,
            None,
        ),
        case(
            "the last fragment",
            frag(false, 370, 21, &[0; 64]),
            FragmentPass,
            None,
        ),
        case(
            "a later fragment, first unseen, from the asked peer",
            frag(false, 185, 22, &[0; 64]),
            FragmentPass,
            None,
        ),
        case(
            "a later fragment, first unseen, from a peer never asked",
            from(frag(false, 185, 22, &[0; 64]), [198, 51, 100, 9]),
            FragmentDrop,
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

/// The issue-27 false positives at frame level, on the program's virtual
/// clock, which reaches the far ends of the windows (tests/integration/
/// false_positives.rs waits in real time only seconds): requests recorded
/// by the real egress program, then the answers, early and late.
#[test]
fn group_requests_pairs_and_subscriptions_at_their_edges() {
    use Reason::*;
    use filter_testkit::net::TestNet;
    common::require_bpf();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default.toml");
    let set = rules::parse("default.toml", &std::fs::read_to_string(path).unwrap()).unwrap();
    let s = 1_000_000_000u64;
    let from = |src: [u8; 4], l4: &[u8]| with_src4(v4_udp(l4), src);
    let subnet_host = [192, 0, 2, 3];
    // The program asks the socket table of the namespace it runs in: an
    // SNMP manager there, on 162.
    let net = TestNet::new("fpv").expect("create test namespaces");
    TestNet::in_ns(&net.victim_ns, || {
        let _manager = std::net::UdpSocket::bind("[::]:162").unwrap();
        let mut runner = Simulator::with_virtual_clock(&set).unwrap();
        runner.set_clock(1000 * s).unwrap();
        // (a) A query to the subnet's broadcast address in a frame to the
        // broadcast MAC; the same address in a frame to a router's MAC (a
        // host of a wider prefix).
        let mut broadcast = request(&udp(41137, 137, b"query"), [192, 0, 2, 255]);
        broadcast[..6].copy_from_slice(&[0xff; 6]);
        runner.record_request(&broadcast).unwrap();
        let routed = request(&udp(41138, 137, b"query"), [192, 0, 2, 255]);
        runner.record_request(&routed).unwrap();
        // (e) A search and an mDNS query, to their groups.
        let search = b"M-SEARCH * HTTP/1.1\r\nMX: 120\r\n\r\n";
        let group = [239, 255, 255, 250];
        runner
            .record_request(&request(&udp(41900, 1900, search), group))
            .unwrap();
        let mdns = request(&udp(45353, 5353, &dns_query()), [224, 0, 0, 251]);
        runner.record_request(&mdns).unwrap();
        // (c) A registration with the Observe option, a plain GET.
        let observe = request(&udp(45683, 5683, &coap_get(true)), SRC4);
        runner.record_request(&observe).unwrap();
        let get = request(&udp(45684, 5683, &coap_get(false)), SRC4);
        runner.record_request(&get).unwrap();

        let nbns_answer = || from(subnet_host, &udp(137, 41137, b"answer"));
        let ssdp_answer = || v4_udp(&udp(1900, 41900, &ssdp_reply()));
        let notification = |seq| v4_udp(&udp(5683, 45683, &coap_notification(seq)));
        let trap = |version, pdu| v4_udp(&udp(161, 162, &snmp(version, pdu)));
        let mut now = vec![
            case(
                "a subnet host answers the broadcast",
                nbns_answer(),
                SolicitedReply,
                None,
            ),
            case(
                "a subnet host answers a query sent to a router",
                from(subnet_host, &udp(137, 41138, b"answer")),
                UnsolicitedReply,
                None,
            ),
            case("an SNMPv1 trap to the manager", trap(0, 0xa4), Pass, None),
            case("an SNMPv2 trap to the manager", trap(1, 0xa7), Pass, None),
            case("an inform to the manager", trap(1, 0xa6), Pass, None),
            case(
                "a GetResponse at the manager",
                trap(1, 0xa2),
                ReflectedToService,
                None,
            ),
            case(
                "a trap from another guarded port",
                v4_udp(&udp(53, 162, &snmp(1, 0xa7))),
                UnsolicitedReply,
                None,
            ),
        ];
        now.extend((0..20).map(|i| case("a notification", notification(i), SolicitedReply, None)));
        let answer = || v4_udp(&udp(5683, 45684, &coap_notification(0)));
        now.extend((0..8).map(|_| case("an answer to a GET", answer(), SolicitedReply, None)));
        now.push(case(
            "a ninth answer to a GET",
            answer(),
            ReplyOverBudget,
            None,
        ));
        check(&runner, &set, &now, false);

        let at = |runner: &mut Simulator, secs: u64, cases: &[Case]| {
            runner.set_clock((1000 + secs) * s).unwrap();
            check(runner, &set, cases, false);
        };
        at(
            &mut runner,
            6,
            &[
                case("SSDP after 6 s", ssdp_answer(), SolicitedReply, None),
                case(
                    "mDNS after 6 s",
                    v4_udp(&udp(5353, 45353, b"answer")),
                    UnsolicitedReply,
                    None,
                ),
                case(
                    "the broadcast's answer after 6 s",
                    nbns_answer(),
                    UnsolicitedReply,
                    None,
                ),
            ],
        );
        at(
            &mut runner,
            124,
            &[case(
                "SSDP after 124 s",
                ssdp_answer(),
                SolicitedReply,
                None,
            )],
        );
        at(
            &mut runner,
            126,
            &[case(
                "SSDP after 126 s",
                ssdp_answer(),
                UnsolicitedReply,
                None,
            )],
        );
        at(
            &mut runner,
            3599,
            &[case(
                "a notification after 59 min",
                notification(21),
                SolicitedReply,
                None,
            )],
        );
        at(
            &mut runner,
            3601,
            &[case(
                "a notification after 1 h",
                notification(22),
                UnsolicitedReply,
                None,
            )],
        );
    })
    .unwrap();
}

/// Per-source limits and bans for [`connections_and_udp_bans`]: tiny, on
/// a virtual clock.
const CONNECTION_RULES: &str = r#"
[per_source]
pps = 10
burst_packets = 2
[ban]
after = "20ms"
for = "10s"
"#;

/// A load balancer's address: the attacker namespace's.
const BALANCER: [u8; 4] = [192, 0, 2, 2];

/// A TCP segment with `flags` from the load balancer to the victim.
fn segment(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = tcp_syn(sport, dport);
    t[13] = flags;
    let ip = ipv4(TCP, &[], Frag::default(), &t);
    with_src4(ether(&[], ETH_IPV4, &ip), BALANCER)
}

/// Runs `frame` at `at` ns through the program and the reference model;
/// their reasons must agree. Returns the reason.
fn step(k: &mut Simulator, m: &mut Model, at: u64, frame: &[u8], what: &str) -> Reason {
    k.set_clock(at).unwrap();
    m.set_now(at);
    let before = k.reasons().unwrap();
    k.run(frame).unwrap();
    let after = k.reasons().unwrap();
    let got = Reason::ALL
        .into_iter()
        .find(|r| after[*r as usize].packets != before[*r as usize].packets)
        .unwrap();
    let want = m.decide(frame);
    assert_eq!(
        got.name(),
        want.name(),
        "{what} at {at} ns: kernel and model differ"
    );
    got
}

/// A TCP connection from the attacker namespace (the load balancer) to
/// port 443 of the victim's; runs `f` in the victim's namespace with the
/// connection's source port, the program and the model (told of it).
fn connections_and_udp_bans(f: impl FnOnce(u16, &mut Simulator, &mut Model) + Send) {
    use filter_testkit::net::TestNet;
    use std::net::{TcpListener, TcpStream};
    common::require_bpf();
    let set = rules::parse("test.toml", CONNECTION_RULES).expect("valid rules");
    let net = TestNet::new("cnb").expect("create test namespaces");
    let listener = TestNet::in_ns(&net.victim_ns, || TcpListener::bind("192.0.2.1:443"))
        .unwrap()
        .expect("listen on 192.0.2.1:443");
    let client = TestNet::in_ns(&net.attacker_ns, || TcpStream::connect("192.0.2.1:443"))
        .unwrap()
        .expect("connect to 192.0.2.1:443");
    let (_server, _) = listener.accept().unwrap();
    let port = client.local_addr().unwrap().port();
    TestNet::in_ns(&net.victim_ns, || {
        let mut k = Simulator::with_virtual_clock(&set).unwrap();
        let mut m = Model::new(&set);
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&BALANCER);
        m.connections.insert((addr, port, 443));
        f(port, &mut k, &mut m);
    })
    .unwrap();
}

const MS: u64 = 1_000_000;
const T0: u64 = 1_000 * 1_000 * MS;

#[test]
fn segments_of_a_connection_spend_no_limit_and_earn_no_ban() {
    use Reason::*;
    connections_and_udp_bans(|port, k, m| {
        let ack = segment(port, 443, 0x10);
        // 10 pps allowed, 1000 pps sent: without the exemption all but 2
        // would be refused, and the source banned after 20 ms.
        for i in 0..40 {
            let r = step(k, m, T0 + i * MS, &ack, "a connection's ACK");
            assert_eq!(r, Pass, "the connection's ACK {i}");
        }
        // An ACK of no connection (the listener on 443 is found, and is
        // none) is held to the limit: the source is over it from here on.
        let stray = segment(port.wrapping_add(1), 443, 0x10);
        assert_eq!(step(k, m, T0 + 40 * MS, &stray, "stray ACK"), RateLimitDrop);
        // The connection's segments record no refusal: 30 ms on (a ban
        // needs 20), nothing banned the source.
        for i in 41..70 {
            let r = step(k, m, T0 + i * MS, &ack, "a connection's ACK");
            assert_eq!(r, Pass, "the connection's ACK at {i} ms");
        }
        // The stray ACKs' own time over the limit bans it, from
        // everything (TCP earned it).
        assert_eq!(step(k, m, T0 + 70 * MS, &stray, "stray ACK"), RateLimitDrop);
        assert_eq!(
            step(k, m, T0 + 71 * MS, &ack, "a connection's ACK"),
            BanDrop
        );
    });
}

#[test]
fn a_ban_earned_by_udp_drops_only_udp() {
    use Reason::*;
    connections_and_udp_bans(|port, k, m| {
        let dns = with_src4(
            ether(
                &[],
                ETH_IPV4,
                &ipv4(UDP, &[], Frag::default(), &udp(53000, 53, &dns_query())),
            ),
            BALANCER,
        );
        let mut last = Pass;
        for i in 0..40 {
            last = step(k, m, T0 + i * MS, &dns, "forged UDP");
        }
        assert_eq!(last, BanDrop, "40 ms of UDP over the limit: banned");
        let ack = segment(port, 443, 0x10);
        let syn = segment(port.wrapping_add(7), 443, 0x02);
        // At once: the connection's segments pass; a new connection is
        // held to the limit the flood spent, but is not banned.
        assert_eq!(step(k, m, T0 + 40 * MS, &ack, "ACK"), Pass);
        assert_ne!(step(k, m, T0 + 41 * MS, &syn, "SYN"), BanDrop);
        assert_eq!(step(k, m, T0 + 42 * MS, &dns, "UDP"), BanDrop);
        // Two seconds on, the limit has refilled: new TCP and ICMP pass
        // (10 pps: 200 ms apart), UDP and its fragments are still banned.
        let later = T0 + 2_000 * MS;
        let icmp = with_src4(
            ether(
                &[],
                ETH_IPV4,
                &ipv4(ICMP, &[], Frag::default(), &icmp_echo()),
            ),
            BALANCER,
        );
        let fragment = Frag {
            more: false,
            offset: 64,
            id: 0x77,
        };
        let udp_rest = with_src4(
            ether(&[], ETH_IPV4, &ipv4(UDP, &[], fragment, &[0; 64])),
            BALANCER,
        );
        assert_eq!(step(k, m, later, &syn, "SYN"), Pass);
        assert_eq!(step(k, m, later + 200 * MS, &ack, "ACK"), Pass);
        assert_eq!(step(k, m, later + 400 * MS, &icmp, "ICMP echo"), Pass);
        assert_eq!(step(k, m, later + 401 * MS, &dns, "UDP"), BanDrop);
        assert_eq!(
            step(k, m, later + 402 * MS, &udp_rest, "UDP later fragment"),
            BanDrop
        );
    });
}
