//! The reply guard with the shipped default profile on a veth pair: every
//! guarded reflection vector of the catalogue (IPv4 and IPv6, the big ones
//! fragmented) from hundreds of spoofed sources is kept from the victim's
//! UDP layer while, in the same run, real DNS resolution (dnsmasq
//! answering, dig asking, a large EDNS answer that arrives fragmented),
//! chrony time sync (from an ephemeral port and from port 123) and a UDP
//! service on the victim lose nothing.
//! Needs root, BPF, dnsmasq, dig and chronyd (`cargo xtask setup`).

use crate::common;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use filter_testkit::net::{ATTACKER_V4, Sink, TestNet, VICTIM_V4, VICTIM_V6, send_udp};

use filterctl::rules::vectors::{CATALOGUE, Vector, guarded};

use common::{
    cli::{
        TempDir, clsact_egress_programs, command, egress_programs, ok, reason, run as filterctl,
        status,
    },
    peers::{chrony_sync, dig, dnsmasq, spawn, start_peers},
};

/// The vectors the default profile guards: every one of the catalogue but
/// the streams (`CATALOGUE` in filter-user/src/rules/vectors.rs), each
/// flooded with replies of its `reply_bytes` (CLDAP and DNS ANY replies
/// are larger than the MTU: the kernel fragments them).
fn vectors() -> impl Iterator<Item = &'static Vector> {
    guarded(CATALOGUE)
}

/// The victim's UDP counters: (InDatagrams, NoPorts) of IPv4 and of IPv6,
/// read in the calling thread's namespace.
fn udp_counters() -> [u64; 4] {
    let field = |text: &str, prefix: &str, name: &str| -> u64 {
        let mut lines = text.lines().filter(|l| l.starts_with(prefix));
        let (head, vals) = (lines.next().unwrap(), lines.next().unwrap());
        let i = head.split_whitespace().position(|h| h == name).unwrap();
        vals.split_whitespace().nth(i).unwrap().parse().unwrap()
    };
    let v6 = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap()
    };
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
    let snmp6 = std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap();
    [
        field(&snmp, "Udp:", "InDatagrams"),
        field(&snmp, "Udp:", "NoPorts"),
        v6(&snmp6, "Udp6InDatagrams"),
        v6(&snmp6, "Udp6NoPorts"),
    ]
}

/// One vector from every spoofed source, two replies each, to ports where
/// the victim has no socket: whatever reaches its UDP layer shows in
/// NoPorts. Returns (IPv4 sent, delivered, IPv6 sent, delivered).
fn flood_vector(net: &TestNet, port: u16, size: usize) -> [u64; 4] {
    let sources4: Vec<IpAddr> = (1..=128)
        .flat_map(|i| {
            [
                Ipv4Addr::new(198, 51, 100, i).into(),
                Ipv4Addr::new(203, 0, 113, i).into(),
            ]
        })
        .collect();
    let sources6: Vec<IpAddr> = (1..=64)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, i).into())
        .collect();
    let before = TestNet::in_ns(&net.victim_ns, udp_counters).unwrap();
    let payload = vec![0x17u8; size];
    TestNet::in_ns(&net.attacker_ns, || {
        for (victim, sources) in [
            (IpAddr::from(VICTIM_V4), &sources4),
            (VICTIM_V6.into(), &sources6),
        ] {
            for (j, src) in sources.iter().enumerate() {
                let to = SocketAddr::new(victim, 20000 + j as u16);
                send_udp(SocketAddr::new(*src, port), to, &payload, 2).unwrap();
            }
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let after = TestNet::in_ns(&net.victim_ns, udp_counters).unwrap();
    [
        2 * sources4.len() as u64,
        after[1] - before[1],
        2 * sources6.len() as u64,
        after[3] - before[3],
    ]
}

/// The victim's own traffic while the flood runs: every lookup answered
/// (a large one arriving fragmented), both time syncs done, every datagram
/// to its service delivered.
fn host_traffic(net: &TestNet, files: &TempDir) {
    let service = SocketAddr::new(IpAddr::V4(VICTIM_V4), 9999);
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[service]))
        .unwrap()
        .unwrap();
    for _ in 0..10 {
        let small = dig(net, "ok.test", "A", 2);
        assert_eq!(
            small.as_deref().map(str::trim),
            Some("198.51.100.10"),
            "DNS lost"
        );
        let large = dig(net, "big.test", "TXT", 2).expect("large DNS answer lost");
        assert!(
            large.len() > 3000,
            "truncated answer: {} bytes",
            large.len()
        );
    }
    assert!(
        chrony_sync(&net.victim_ns, files, None),
        "chrony sync failed"
    );
    assert!(
        chrony_sync(&net.victim_ns, files, Some(123)),
        "chrony sync from port 123 failed"
    );
    TestNet::in_ns(&net.attacker_ns, || {
        send_udp(
            SocketAddr::new(ATTACKER_V4.into(), 45000),
            service,
            b"service request",
            100,
        )
    })
    .unwrap()
    .unwrap();
    let counts = sink.drain();
    assert_eq!(
        counts[&service], 100,
        "the victim's UDP service lost datagrams"
    );
}

#[test]
fn every_guarded_vector_held_off_while_dns_ntp_and_a_service_keep_working() {
    common::require_bpf();
    let net = TestNet::new("rg").expect("create test namespaces");
    let files = TempDir::new("rg");
    let _peers = start_peers(&net, &files);
    let rules = format!("{}/../rules/default.toml", env!("CARGO_MANIFEST_DIR"));
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    // The flood, one vector after another, on its own thread; the host's
    // own traffic meanwhile.
    let results = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            vectors()
                .map(|v| (v.name, flood_vector(&net, v.port, v.reply_bytes)))
                .collect::<Vec<_>>()
        });
        host_traffic(&net, &files);
        flood.join().unwrap()
    });
    // The counters do see a flood the guard has no say in (an unguarded
    // source port): the figures above are not zero by construction.
    let [sent4, seen4, sent6, seen6] = flood_vector(&net, 4444, 100);
    assert_eq!(
        (seen4, seen6),
        (sent4, sent6),
        "NoPorts does not count the victim's datagrams"
    );
    for (name, [sent4, leak4, sent6, leak6]) in results {
        println!("{name}: IPv4 {leak4} of {sent4} delivered, IPv6 {leak6} of {sent6}");
        assert!(
            leak4 * 100 < sent4,
            "{name}: {leak4} of {sent4} IPv4 datagrams delivered"
        );
        assert!(
            leak6 * 100 < sent6,
            "{name}: {leak6} of {sent6} IPv6 datagrams delivered"
        );
    }
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
}

/// A UDP socket on the victim that sends a request and counts the replies.
fn ask(ns: &str, from: SocketAddr, to: SocketAddr) -> std::net::UdpSocket {
    TestNet::in_ns(ns, || {
        let s = std::net::UdpSocket::bind(from).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.send_to(b"request", to).unwrap();
        s
    })
    .unwrap()
}

fn replies(s: &std::net::UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    std::iter::from_fn(|| s.recv_from(&mut buf).ok()).count()
}

fn victim(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VICTIM_V4), port)
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ATTACKER_V4), port)
}

/// `count` replies from `from` to `to`, sent on the attacker side.
fn reply(net: &TestNet, from: SocketAddr, to: SocketAddr, count: usize) {
    TestNet::in_ns(&net.attacker_ns, || send_udp(from, to, b"reply", count))
        .unwrap()
        .unwrap();
}

/// SNMP polling with the real agent and poller.
fn snmp_poll(net: &TestNet, files: &TempDir) {
    let snmpd_conf = files.write("snmpd.conf", "rocommunity public\n");
    let _snmpd = spawn(
        &net.attacker_ns,
        "snmpd",
        &["-f", "-Lo", "-C", "-c", &snmpd_conf, "udp:192.0.2.2:161"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = TestNet::command_in(&net.victim_ns, "snmpget")
        .args(["-v2c", "-c", "public", "-t", "2", "-r", "1"])
        .args(["192.0.2.2", "1.3.6.1.2.1.1.5.0"])
        .output()
        .expect("run snmpget (cargo xtask setup installs snmp)");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1.5.0 = STRING"),
        "SNMP poll failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An LDAP (CLDAP) query over UDP: its reply passes, and a stream riding
/// on it stops at the request's budget of 8 replies.
fn cldap_budget(net: &TestNet) {
    let q = ask(&net.victim_ns, victim(41389), peer(389));
    reply(net, peer(389), victim(41389), 1);
    assert_eq!(replies(&q), 1, "CLDAP reply lost");
    reply(net, peer(389), victim(41389), 12);
    assert_eq!(replies(&q), 7, "a request's budget is 8 replies");
}

/// SSDP discovery: a search sent to the group, answered by a device from
/// its own address.
fn ssdp_discovery(net: &TestNet) {
    let route = [
        "-n",
        &net.victim_ns,
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        &net.victim_if,
    ];
    ip(&route);
    let group = "239.255.255.250:1900".parse().unwrap();
    let search = ask(&net.victim_ns, victim(41900), group);
    reply(net, peer(1900), victim(41900), 3);
    assert_eq!(replies(&search), 3, "SSDP discovery answers lost");
    // mDNS, asked from an ordinary port (a one-shot query).
    let group = "224.0.0.251:5353".parse().unwrap();
    let query = ask(&net.victim_ns, victim(45353), group);
    reply(net, peer(5353), victim(45353), 2);
    assert_eq!(replies(&query), 2, "mDNS answers lost");
}

/// A host that serves NTP: the real chronyd on the victim, a chronyd
/// client from port 123 on the peer; and symmetric peers, 123 to 123.
fn serves_ntp(net: &TestNet, files: &TempDir) {
    let conf = format!(
        "local stratum 1\nallow all\nbindaddress {VICTIM_V4}\ncmdport 0\npidfile {}/v.pid\n",
        files.path().display()
    );
    let conf = files.write("victim-ntp.conf", &conf);
    let server = spawn(
        &net.victim_ns,
        "chronyd",
        &["-d", "-x", "-u", "root", "-f", &conf],
    );
    std::thread::sleep(Duration::from_millis(500));
    let client = files.write(
        "peer-client.conf",
        &format!(
            "server {VICTIM_V4} iburst\nacquisitionport 123\ncmdport 0\npidfile {}/p.pid\n",
            files.path().display()
        ),
    );
    let out = TestNet::command_in(&net.attacker_ns, "chronyd")
        .args(["-Q", "-u", "root", "-t", "10", "-f", &client])
        .output()
        .expect("run chronyd");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("System clock wrong by"),
        "a client from port 123 could not sync with the victim's server"
    );
    drop(server);
    // Symmetric: the victim's peer socket on 123 talks to the peer's 123.
    let sym = ask(&net.victim_ns, victim(123), peer(123));
    reply(net, peer(123), victim(123), 1);
    assert_eq!(replies(&sym), 1, "symmetric NTP 123<->123 lost");
}

/// A DNS server on the victim, asked by another server from port 53.
fn serves_dns(net: &TestNet) {
    let _dns = dnsmasq(&net.victim_ns, "192.0.2.1", &[]);
    let out = TestNet::command_in(&net.attacker_ns, "dig")
        .args(["-b", "192.0.2.2#53", "@192.0.2.1", "ok.test", "A"])
        .args(["+tries=1", "+time=2", "+short"])
        .output()
        .expect("run dig");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "198.51.100.10",
        "a query from port 53 to the victim's DNS server went unanswered"
    );
}

/// A request sent before a reload still gets its answer after it; the
/// reload replaced the recorder (one recorder, the new one).
fn reload_keeps_requests(net: &TestNet, rules: &str) {
    let pending = ask(&net.victim_ns, victim(41053), peer(53));
    let before = egress_programs(net);
    assert_eq!(before.len(), 1, "one request recorder: {before:?}");
    assert_eq!(before[0].0, "requests");
    ok(filterctl(
        net,
        &["reload", "--iface", &net.victim_if, "--rules", rules],
    ));
    let after = egress_programs(net);
    assert_eq!(after.len(), 1, "one recorder after a reload: {after:?}");
    assert_eq!(status(net)["request_recorder"], expected_hook());
    assert_ne!(
        after[0].1, before[0].1,
        "the reload did not switch the recorder"
    );
    reply(net, peer(53), victim(41053), 1);
    assert_eq!(
        replies(&pending),
        1,
        "an answer to a request sent before a reload was lost"
    );
}

/// Unasked replies: dropped and counted; in monitor mode passed and counted.
fn monitor_mode(net: &TestNet) {
    let sink = TestNet::in_ns(&net.victim_ns, || Sink::bind(&[victim(42000)]))
        .unwrap()
        .unwrap();
    let memcached = "198.51.100.9:11211".parse().unwrap();
    let before = reason(net, "unsolicited_reply");
    reply(net, memcached, victim(42000), 10);
    assert_eq!(
        sink.drain()[&victim(42000)],
        0,
        "memcached reflection delivered"
    );
    assert_eq!(reason(net, "unsolicited_reply"), before + 10);
    ok(filterctl(
        net,
        &["mode", "--iface", &net.victim_if, "monitor"],
    ));
    reply(net, memcached, victim(42000), 10);
    assert_eq!(sink.drain()[&victim(42000)], 10, "monitor mode dropped");
    assert_eq!(reason(net, "unsolicited_reply"), before + 20);
}

#[test]
fn polls_discovery_servers_reloads_and_monitor_mode() {
    common::require_bpf();
    let net = TestNet::new("rgp").expect("create test namespaces");
    let files = TempDir::new("rgp");
    let rules = format!("{}/../rules/default.toml", env!("CARGO_MANIFEST_DIR"));
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    snmp_poll(&net, &files);
    cldap_budget(&net);
    ssdp_discovery(&net);
    serves_ntp(&net, &files);
    serves_dns(&net);
    reload_keeps_requests(&net, &rules);
    monitor_mode(&net);
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
    assert!(
        egress_programs(&net).is_empty(),
        "unload left the recorder attached"
    );
}

/// Requests that leave while the rules are swapped, each from a port of
/// its own, all get their answers, which a slow server sends 400 ms later:
/// the early verdict reads its generation's own copy of the open requests,
/// and a reload must not switch to a copy that misses one (the copy is
/// filled from LOCAL_PORTS, and the new recorder runs beside the old one
/// from before that until after the switch).
#[test]
fn answers_to_requests_sent_during_reloads_all_arrive() {
    common::require_bpf();
    let net = TestNet::new("rgs").expect("create test namespaces");
    let rules = format!("{}/../rules/default.toml", env!("CARGO_MANIFEST_DIR"));
    ok(filterctl(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    ));
    let server = TestNet::in_ns(&net.attacker_ns, || UdpSocket::bind(peer(53)))
        .unwrap()
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let delay = Duration::from_millis(400);
    let done = AtomicBool::new(false);
    let sockets = std::thread::scope(|s| {
        // Answers each request from port 53, `delay` after it came.
        let answering = s.spawn(|| {
            let mut due = std::collections::VecDeque::new();
            let mut buf = [0u8; 64];
            loop {
                if let Ok((n, from)) = server.recv_from(&mut buf) {
                    due.push_back((Instant::now() + delay, from, buf[..n].to_vec()));
                }
                while due.front().is_some_and(|(at, _, _)| *at <= Instant::now()) {
                    let (_, to, data) = due.pop_front().unwrap();
                    server.send_to(&data, to).unwrap();
                }
                if due.is_empty() && done.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
        let asking = s.spawn(|| {
            TestNet::in_ns(&net.victim_ns, || {
                let mut sockets = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    // A fresh port: no earlier request's deadline covers it.
                    let sock = UdpSocket::bind(victim(0)).unwrap();
                    sock.send_to(b"request", peer(53)).unwrap();
                    sockets.push(sock);
                    std::thread::sleep(Duration::from_millis(5));
                }
                sockets
            })
            .unwrap()
        });
        let stop = common::StopOnDrop(&done);
        for _ in 0..6 {
            ok(filterctl(
                &net,
                &["reload", "--iface", &net.victim_if, "--rules", &rules],
            ));
        }
        drop(stop);
        let sockets = asking.join().unwrap();
        answering.join().unwrap();
        sockets
    });
    let mut buf = [0u8; 64];
    let lost = sockets
        .iter()
        .filter(|sock| {
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            sock.recv_from(&mut buf).is_err()
        })
        .count();
    assert!(
        sockets.len() > 200,
        "too few requests during the reloads: {}",
        sockets.len()
    );
    assert_eq!(
        lost,
        0,
        "answers to {lost} of {} requests sent during reloads were dropped",
        sockets.len()
    );
    assert_eq!(
        egress_programs(&net).len(),
        1,
        "one recorder after the reloads"
    );
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The hook the recorder should be on in this run: clsact when the run
/// fakes a kernel without TCX (`cargo xtask test` runs this file a second
/// time with FILTERCTL_FAKE=tcx), TCX otherwise.
fn expected_hook() -> &'static str {
    let faked = std::env::var("FILTERCTL_FAKE").unwrap_or_default();
    if faked.split(',').any(|w| w == "tcx") {
        "clsact"
    } else {
        "tcx"
    }
}

/// On a kernel without TCX (faked), the recorder is a clsact filter that
/// follows the reloads as the TCX link does: one recorder at a time, the
/// new one beside the old until the switch, answers to requests sent
/// before a reload still let in; a reload on a kernel with TCX moves it
/// back to a TCX link, and unload leaves neither.
#[test]
fn recorder_on_clsact_follows_reloads_and_unload() {
    common::require_bpf();
    let net = TestNet::new("rgc").expect("create test namespaces");
    let rules = format!("{}/../rules/default.toml", env!("CARGO_MANIFEST_DIR"));
    let run = |fake: &str, args: &[&str]| {
        ok(command(&net, args)
            .env("FILTERCTL_FAKE", fake)
            .output()
            .unwrap())
    };
    let reload = ["reload", "--iface", &net.victim_if, "--rules", &rules];
    run(
        "tcx",
        &["load", "--iface", &net.victim_if, "--rules", &rules],
    );
    assert_eq!(status(&net)["request_recorder"], "clsact");
    let mut last = clsact_egress_programs(&net);
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].0, "requests");
    for round in 0..3 {
        let pending = ask(&net.victim_ns, victim(41100 + round), peer(53));
        run("tcx", &reload);
        let now = clsact_egress_programs(&net);
        assert_eq!(now.len(), 1, "one clsact recorder after a reload: {now:?}");
        assert_ne!(
            now[0].1, last[0].1,
            "the reload did not switch the recorder"
        );
        reply(&net, peer(53), victim(41100 + round), 1);
        assert_eq!(replies(&pending), 1, "an answer was lost across a reload");
        last = now;
    }
    // Unasked replies still go.
    assert_eq!(flood_vector(&net, 11211, 1400)[1], 0);
    // The same filter reloaded where TCX works: the clsact filter goes.
    run("", &reload);
    assert_eq!(status(&net)["request_recorder"], "tcx");
    assert!(clsact_egress_programs(&net).is_empty());
    assert_eq!(egress_programs(&net).len(), 1);
    // And back.
    run("tcx", &reload);
    assert_eq!(status(&net)["request_recorder"], "clsact");
    assert_eq!(egress_programs(&net).len(), 1);
    run("tcx", &["unload", "--iface", &net.victim_if]);
    assert!(egress_programs(&net).is_empty(), "unload left a recorder");
}

/// A protocol the victim serves: its port, a request a client sends, and
/// a reply a reflector sends (a DNS answer, an NTP mode 4, an SNMP
/// GetResponse...).
struct Served {
    port: u16,
    request: Vec<u8>,
    reply: Vec<u8>,
}

fn served_protocols() -> Vec<Served> {
    let memcached = |cmd: &[u8]| [b"\x00\x01\x00\x00\x00\x01\x00\x00".as_slice(), cmd].concat();
    let mut dns_answer = filter_testkit::frames::dns_query();
    dns_answer[2] = 0x81;
    dns_answer[7] = 1;
    let snmp = |pdu: u8| {
        let mut m = b"\x30\x26\x02\x01\x01\x04\x06public".to_vec();
        m.extend([pdu, 0x19, 0x02, 0x04, 0, 0, 0, 1]);
        m
    };
    let cldap = |op: u8| {
        let mut m = b"\x30\x84\x00\x00\x00\x40\x02\x01\x01".to_vec();
        m.extend([op, 0x84, 0, 0, 0, 0x3a]);
        m
    };
    let ntp = |first: u8| {
        let mut m = vec![first, 2, 6, 0xe7];
        m.resize(48, 0);
        m
    };
    vec![
        Served {
            port: 53,
            request: filter_testkit::frames::dns_query(),
            reply: dns_answer,
        },
        Served {
            port: 123,
            request: ntp(0x23),
            reply: ntp(0x24),
        },
        Served {
            port: 161,
            request: snmp(0xa0),
            reply: snmp(0xa2),
        },
        Served {
            port: 389,
            request: cldap(0x63),
            reply: cldap(0x64),
        },
        Served {
            port: 1900,
            request: b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\n\r\n".to_vec(),
            reply: filter_testkit::frames::ssdp_reply(),
        },
        Served {
            port: 5683,
            request: vec![0x40, 0x01, 0, 1],
            reply: vec![0x60, 0x45, 0, 1],
        },
        Served {
            port: 11211,
            request: memcached(b"get k\r\n"),
            reply: memcached(b"VALUE k 0 1\r\nx\r\nEND\r\n"),
        },
    ]
}

/// Datagrams that reached the victim's server sockets, by whether they came
/// from the real client (the attacker host's own address) or from anyone
/// else (the spoofed reflectors).
fn drain_servers(servers: &[UdpSocket]) -> (u64, u64) {
    let (mut client, mut others) = (0, 0);
    let mut buf = [0u8; 4096];
    for s in servers {
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            if from.ip() == IpAddr::from(ATTACKER_V4) {
                client += 1;
            } else {
                others += 1;
            }
        }
    }
    (client, others)
}

/// The victim serves every guarded protocol with a request shape. Floods
/// of each protocol's replies aimed at its served port (source port =
/// destination port), and across ports (a memcached reply at the DNS
/// server, a DNS answer at the NTP server), from 200 spoofed reflectors,
/// and a flood of 3 KB fragmented DNS answers at the DNS server: under 1%
/// reaches a server. A client's requests, from the protocol's own port to
/// the same port (NTP 123 to 123, DNS 53 to 53) and from an ephemeral
/// port, sent between the floods: every one arrives.
#[test]
fn servers_keep_their_clients_and_lose_the_reflections_aimed_at_them() {
    common::require_bpf();
    let net = TestNet::new("svr").expect("create test namespaces");
    ok(filterctl(&net, &["load", "--iface", &net.victim_if]));
    let protocols = served_protocols();
    let servers: Vec<UdpSocket> = TestNet::in_ns(&net.victim_ns, || {
        protocols
            .iter()
            .map(|p| {
                let s = UdpSocket::bind(victim(p.port)).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect()
    })
    .unwrap();
    let reflectors: Vec<IpAddr> = (1..=100)
        .flat_map(|i| {
            [
                Ipv4Addr::new(198, 51, 100, i).into(),
                Ipv4Addr::new(203, 0, 113, i).into(),
            ]
        })
        .collect();
    let mut big_answer = vec![0u8; 3000];
    big_answer[..12].copy_from_slice(&protocols[0].reply[..12]);
    let (mut flooded, mut asked) = (0u64, 0u64);
    for (i, p) in protocols.iter().enumerate() {
        let cross = &protocols[(i + 1) % protocols.len()];
        TestNet::in_ns(&net.attacker_ns, || {
            for src in &reflectors {
                // At the served port, from the same port and from another
                // guarded protocol's port.
                send_udp(SocketAddr::new(*src, p.port), victim(p.port), &p.reply, 2).unwrap();
                send_udp(
                    SocketAddr::new(*src, cross.port),
                    victim(p.port),
                    &cross.reply,
                    1,
                )
                .unwrap();
            }
            // The client: from the protocol's own port and an ephemeral one.
            let own = SocketAddr::new(ATTACKER_V4.into(), p.port);
            let ephemeral = SocketAddr::new(ATTACKER_V4.into(), 40000 + p.port % 1000);
            send_udp(own, victim(p.port), &p.request, 5).unwrap();
            send_udp(ephemeral, victim(p.port), &p.request, 5).unwrap();
        })
        .unwrap();
        flooded += 3 * reflectors.len() as u64;
        asked += 10;
    }
    TestNet::in_ns(&net.attacker_ns, || {
        for src in &reflectors[..50] {
            send_udp(SocketAddr::new(*src, 53), victim(53), &big_answer, 2).unwrap();
        }
    })
    .unwrap();
    flooded += 100;
    std::thread::sleep(Duration::from_millis(300));
    let (client, others) = drain_servers(&servers);
    assert_eq!(client, asked, "requests to the victim's servers were lost");
    assert!(
        others * 100 <= flooded,
        "{others} of {flooded} reflected datagrams reached a server"
    );
    assert!(reason(&net, "reflected_to_service") >= flooded - 100);
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
}
