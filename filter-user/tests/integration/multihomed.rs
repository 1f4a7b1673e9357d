//! A dual-homed host: two filtered links to one far host, an ECMP default
//! route that spreads the host's flows over both (by their ports), its
//! service address on its loopback as the route's source, and a far host
//! that answers DNS by the first link only and NTP by the second. So a
//! DNS query that left by the second link is answered on the first, and
//! an NTP request that left by the first is answered on the second: each
//! interface lets in answers to requests that only the other one's
//! recorder saw. During a reflection flood of DNS and NTP replies from
//! spoofed sources over both links: every lookup answered, every NTP
//! exchange answered, chrony syncs, and under 1% of the flood delivered.
//! Needs root, BPF, dnsmasq, dig and chronyd (`cargo xtask setup`).

use crate::common;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    path::PathBuf,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::Duration,
};

use filter_testkit::net::{NS_PREFIX, PIN_PREFIX, TestNet, send_udp};
use serde_json::Value;

use common::{
    StopOnDrop,
    cli::{TempDir, ok, run as filterctl},
    peers::{Daemon, dnsmasq, spawn},
};

/// The host's service address, on its loopback: the source of its flows.
const SERVICE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The far host's resolver (answers by link 0) and time server (by link 1).
const RESOLVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const TIME_SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 123);
/// Each link a /30: the host's end, the far host's end, and their MACs.
const LINKS: [(&str, &str, &str, &str); 2] = [
    (
        "192.0.2.1",
        "192.0.2.2",
        "02:00:00:00:10:01",
        "02:00:00:00:10:02",
    ),
    (
        "192.0.2.5",
        "192.0.2.6",
        "02:00:00:00:11:01",
        "02:00:00:00:11:02",
    ),
];
/// The far host's routing table that leads back by link 1.
const BY_LINK_1: &str = "100";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes sysctls (`path=value`, under /proc/sys/net) in namespace `ns`.
fn sysctls(ns: &str, settings: &[&str]) {
    let script: Vec<String> = settings
        .iter()
        .map(|s| {
            let (path, value) = s.split_once('=').unwrap();
            format!("echo {value} > /proc/sys/net/{path}")
        })
        .collect();
    let ok = TestNet::command_in(ns, "sh")
        .args(["-c", &script.join(" && ")])
        .status()
        .expect("run nsenter");
    assert!(ok.success(), "cannot set {settings:?} in {ns}");
}

/// The lab: `victim_ns` the dual-homed host, `attacker_ns` the far host
/// (resolver, time server, and the reflectors), joined by two veth pairs;
/// `victim_if` the first of the host's links. The value removes both
/// namespaces (and the links with them) and the pin root when dropped.
struct Lab {
    net: TestNet,
    links: [String; 2],
}

impl Lab {
    fn new() -> Lab {
        let id = format!(
            "{}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let links = [format!("mh{id}v0"), format!("mh{id}v1")];
        let lab = Lab {
            net: TestNet {
                victim_ns: format!("{NS_PREFIX}mh-{id}-v"),
                attacker_ns: format!("{NS_PREFIX}mh-{id}-f"),
                victim_if: links[0].clone(),
                attacker_if: format!("mh{id}f0"),
                pin_root: PathBuf::from(format!("/sys/fs/bpf/{PIN_PREFIX}mh-{id}")),
            },
            links,
        };
        // From here on, a panic drops `lab`, which removes what was made.
        lab.build(&id);
        lab
    }

    fn build(&self, id: &str) {
        let (v, f) = (self.net.victim_ns.as_str(), self.net.attacker_ns.as_str());
        for ns in [v, f] {
            ip(&["netns", "add", ns]);
            // IPv4 only: no neighbour discovery or router solicitation on
            // the links, whose transmit counters then count the host's
            // requests; and no reverse-path check of flows that come back
            // by another link.
            sysctls(
                ns,
                &[
                    "ipv6/conf/all/disable_ipv6=1",
                    "ipv6/conf/default/disable_ipv6=1",
                    "ipv4/conf/all/rp_filter=0",
                    "ipv4/conf/default/rp_filter=0",
                ],
            );
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // The flows' ports in the hash: they spread over both links.
        sysctls(v, &["ipv4/fib_multipath_hash_policy=1"]);
        for (i, (mine, far, my_mac, far_mac)) in LINKS.iter().enumerate() {
            let (vi, fi) = (&self.links[i], format!("mh{id}f{i}"));
            ip(&[
                "link", "add", vi, "netns", v, "address", my_mac, "type", "veth", "peer", "name",
                &fi, "netns", f, "address", far_mac,
            ]);
            for (ns, dev, addr, peer, peer_mac) in [
                (v, vi.as_str(), mine, far, far_mac),
                (f, fi.as_str(), far, mine, my_mac),
            ] {
                ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
                // Nothing waits on ARP, whose frames the counters would see.
                ip(&[
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    peer,
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ]);
            }
        }
        let service = format!("{SERVICE}/32");
        ip(&["-n", v, "addr", "add", &service, "dev", "lo"]);
        ip(&[
            "-n",
            v,
            "route",
            "add",
            "default",
            "src",
            &SERVICE.to_string(),
            "nexthop",
            "via",
            LINKS[0].1,
            "dev",
            &self.links[0],
            "nexthop",
            "via",
            LINKS[1].1,
            "dev",
            &self.links[1],
        ]);
        for server in [RESOLVER, TIME_SERVER] {
            ip(&["-n", f, "addr", "add", &format!("{server}/32"), "dev", "lo"]);
        }
        // The reflectors: addresses local to the far host.
        for net in ["198.51.100.0/24", "203.0.113.0/24"] {
            ip(&["-n", f, "route", "add", "local", net, "dev", "lo"]);
        }
        // Back to the host by link 0, but from the time server and the
        // 203.0.113.0/24 reflectors by link 1.
        let (f0, f1) = (format!("mh{id}f0"), format!("mh{id}f1"));
        ip(&[
            "-n", f, "route", "add", &service, "via", LINKS[0].0, "dev", &f0,
        ]);
        ip(&[
            "-n", f, "route", "add", &service, "via", LINKS[1].0, "dev", &f1, "table", BY_LINK_1,
        ]);
        for from in [TIME_SERVER.to_string().as_str(), "203.0.113.0/24"] {
            ip(&["-n", f, "rule", "add", "from", from, "lookup", BY_LINK_1]);
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        ok(filterctl(&self.net, args))
    }

    /// `status --json` of the host's interface `iface`.
    fn status(&self, iface: &str) -> Value {
        let doc: Value = serde_json::from_str(&self.cli(&["status", "--json"])).unwrap();
        doc["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["interface"] == iface)
            .unwrap_or_else(|| panic!("no {iface} in {doc}"))
            .clone()
    }

    /// Every reason's packets, by interface.
    fn reasons(&self) -> HashMap<String, HashMap<String, u64>> {
        let doc: Value = serde_json::from_str(&self.cli(&["stats", "--json"])).unwrap();
        doc["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let reasons = i["reasons"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(name, r)| (name.clone(), r["packets"].as_u64().unwrap()))
                    .collect();
                (i["interface"].as_str().unwrap().to_string(), reasons)
            })
            .collect()
    }

    /// Frames each of the host's links sent: its requests, and nothing
    /// else (no IPv6, no ARP, nothing delivered to answer with an error).
    fn sent(&self) -> [u64; 2] {
        let dev = TestNet::in_ns(&self.net.victim_ns, || {
            std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()
        })
        .unwrap();
        self.links.clone().map(|link| {
            let line = dev
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{link}:")))
                .unwrap_or_else(|| panic!("no {link} in {dev}"));
            // Receive: bytes packets errs drop fifo frame compressed
            // multicast; then transmit: bytes packets ...
            line.split_whitespace().nth(9).unwrap().parse().unwrap()
        })
    }
}

/// The host's UDP datagrams that found no socket (NoPorts): what of a
/// flood aimed at its unused ports got through.
fn no_ports(net: &TestNet) -> u64 {
    TestNet::in_ns(&net.victim_ns, || {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (head, values) = (lines.next().unwrap(), lines.next().unwrap());
        let at = head
            .split_whitespace()
            .position(|h| h == "NoPorts")
            .unwrap();
        values.split_whitespace().nth(at).unwrap().parse().unwrap()
    })
    .unwrap()
}

/// The far host's resolver (its local zone answers any name under ok.test
/// with 198.51.100.10) and time server, each on an address of its own.
fn start_servers(net: &TestNet, files: &TempDir) -> [Daemon; 2] {
    let dns = dnsmasq(&net.attacker_ns, &RESOLVER.to_string(), &[]);
    let conf = files.write(
        "server.conf",
        &format!(
            "local stratum 1\nallow all\nbindaddress {TIME_SERVER}\ncmdport 0\npidfile {}/s.pid\n",
            files.path().display()
        ),
    );
    let ntp = spawn(
        &net.attacker_ns,
        "chronyd",
        &["-d", "-x", "-u", "root", "-f", &conf],
    );
    std::thread::sleep(Duration::from_millis(500));
    [dns, ntp]
}

/// `n` lookups of distinct names (each dig from a port of its own, so
/// they spread over the links): how many were answered.
fn lookups(net: &TestNet, round: &str, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let out = TestNet::command_in(&net.victim_ns, "dig")
                .arg(format!("@{RESOLVER}"))
                .arg(format!("q{i}-{round}.ok.test"))
                .args(["A", "+notcp", "+tries=1", "+time=2", "+short"])
                .output()
                .expect("run dig (cargo xtask setup installs it)");
            String::from_utf8_lossy(&out.stdout).trim() == "198.51.100.10"
        })
        .count()
}

/// `n` NTP client exchanges (mode 3), each from a socket of its own: how
/// many were answered (mode 4).
fn ntp_exchanges(net: &TestNet, n: usize) -> usize {
    TestNet::in_ns(&net.victim_ns, || {
        (0..n)
            .filter(|i| {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut request = [0u8; 48];
                request[0] = 0x23;
                request[40..48]
                    .copy_from_slice(&(0x1234_5678_9abc_0000u64 + *i as u64).to_be_bytes());
                s.send_to(&request, (TIME_SERVER, 123)).unwrap();
                let mut buf = [0u8; 128];
                // Below the default profile's limit of NTP replies per source.
                std::thread::sleep(Duration::from_millis(25));
                matches!(s.recv(&mut buf), Ok(48..) if buf[0] & 7 == 4)
            })
            .count()
    })
    .unwrap()
}

/// One chronyd -Q measurement from the host against the far time server
/// (the clock is never set): whether it synced.
fn chrony_sync(net: &TestNet, files: &TempDir) -> bool {
    let conf = files.write(
        "client.conf",
        &format!(
            "server {TIME_SERVER} iburst\ncmdport 0\npidfile {}/c.pid\n",
            files.path().display()
        ),
    );
    let out = TestNet::command_in(&net.victim_ns, "chronyd")
        .args(["-Q", "-u", "root", "-t", "10", "-f", &conf])
        .output()
        .expect("run chronyd (cargo xtask setup installs it)");
    out.status.success() && String::from_utf8_lossy(&out.stderr).contains("System clock wrong by")
}

/// DNS answers and NTP replies from the reflectors, one round over both
/// links (198.51.100.0/24 comes by link 0, 203.0.113.0/24 by link 1) to
/// ports of the host where nothing listens: the frames sent by each link.
fn flood_round(net: &TestNet) -> [u64; 2] {
    let mut dns = filter_testkit::frames::dns_query();
    dns[2] = 0x81;
    dns.resize(512, 0);
    let mut ntp = vec![0x24u8, 2, 6, 0xe7];
    ntp.resize(468, 0);
    TestNet::in_ns(&net.attacker_ns, || {
        for i in 1..=100u8 {
            for (j, src) in [
                Ipv4Addr::new(198, 51, 100, i),
                Ipv4Addr::new(203, 0, 113, i),
            ]
            .into_iter()
            .enumerate()
            {
                let to = SocketAddr::new(IpAddr::V4(SERVICE), 20000 + (2 * i as u16) + j as u16);
                send_udp(SocketAddr::new(src.into(), 53), to, &dns, 1).unwrap();
                send_udp(SocketAddr::new(src.into(), 123), to, &ntp, 1).unwrap();
            }
        }
    })
    .unwrap();
    [200, 200]
}

/// What each link carried while `f` ran: (its requests out, the counters'
/// growth by interface).
fn measure<T>(lab: &Lab, f: impl FnOnce() -> T) -> (T, [u64; 2], [HashMap<String, u64>; 2]) {
    let (sent, reasons) = (lab.sent(), lab.reasons());
    let out = f();
    let (sent_after, reasons_after) = (lab.sent(), lab.reasons());
    let grown = lab.links.clone().map(|link| {
        reasons_after[&link]
            .iter()
            .map(|(name, n)| (name.clone(), n - reasons[&link][name]))
            .collect()
    });
    (out, [0, 1].map(|i| sent_after[i] - sent[i]), grown)
}

#[test]
fn answers_return_by_either_link_while_a_reflection_flood_is_dropped_on_both() {
    common::require_bpf();
    let lab = Lab::new();
    let net = &lab.net;
    let files = TempDir::new("mh");
    let _servers = start_servers(net, &files);
    let [v0, v1] = &lab.links;
    for link in [v0, v1] {
        lab.cli(&["load", "--iface", link]);
    }
    // One table: the second load adopted the first one's and told it so.
    for (link, other) in [(v0, v1), (v1, v0)] {
        let s = lab.status(link);
        assert_eq!(s["requests_shared_with"], serde_json::json!([other]), "{s}");
        assert_eq!(s["requests_shared_flag"], true, "{s}");
    }
    let done = AtomicBool::new(false);
    let no_ports_before = no_ports(net);
    let (flooded, dns, ntp) = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            let mut sent = [0u64; 2];
            while !done.load(Ordering::Relaxed) {
                let round = flood_round(net);
                sent = [0, 1].map(|i| sent[i] + round[i]);
            }
            sent
        });
        let stop = StopOnDrop(&done);
        let dns = measure(&lab, || lookups(net, "a", 100));
        let ntp = measure(&lab, || (ntp_exchanges(net, 40), chrony_sync(net, &files)));
        drop(stop);
        (flood.join().unwrap(), dns, ntp)
    });
    let delivered = no_ports(net) - no_ports_before;
    let (answered, dns_sent, dns_counted) = dns;
    let ((exchanged, synced), ntp_sent, ntp_counted) = ntp;
    println!(
        "DNS: {answered}/100 answered, queries out by link 0/1: {dns_sent:?}; \
         NTP: {exchanged}/40 exchanges, requests out by link 0/1: {ntp_sent:?}, chrony synced: {synced}; \
         flood by link 0/1: {flooded:?}, {delivered} delivered"
    );
    assert_eq!(answered, 100, "DNS answers lost");
    assert_eq!(exchanged, 40, "NTP replies lost");
    assert!(synced, "chrony did not sync");
    // The cross cases happened: requests left by both links, and every
    // answer came back by the one link its server answers by.
    for (what, sent) in [("DNS queries", dns_sent), ("NTP requests", ntp_sent)] {
        assert!(
            sent.iter().all(|n| *n >= 5),
            "{what} did not spread over both links: {sent:?}"
        );
    }
    assert!(dns_counted[0]["solicited_reply"] >= 100, "{dns_counted:?}");
    assert_eq!(dns_counted[1]["solicited_reply"], 0, "{dns_counted:?}");
    assert!(ntp_counted[1]["solicited_reply"] >= 40, "{ntp_counted:?}");
    assert_eq!(ntp_counted[0]["solicited_reply"], 0, "{ntp_counted:?}");
    // The flood: dropped on both interfaces.
    let total: u64 = flooded.iter().sum();
    assert!(
        delivered * 100 < total,
        "{delivered} of {total} flood datagrams delivered"
    );
    let dropped: Vec<u64> = [v0, v1]
        .iter()
        .map(|link| lab.reasons()[link.as_str()]["unsolicited_reply"])
        .collect();
    for (i, link) in [v0, v1].iter().enumerate() {
        assert!(
            dropped[i] * 100 >= flooded[i] * 99,
            "{link} dropped {} of the {} flood datagrams it got",
            dropped[i],
            flooded[i]
        );
    }
    // Reloads keep the one table, and the flag.
    for link in [v0, v1] {
        lab.cli(&["reload", "--iface", link, "--rules", DEFAULT_RULES]);
    }
    let (again, sent, _) = measure(&lab, || (lookups(net, "b", 20), ntp_exchanges(net, 20)));
    assert_eq!(
        again,
        (20, 20),
        "answers lost after the reloads ({sent:?} out)"
    );
    for link in [v0, v1] {
        assert_eq!(lab.status(link)["requests_shared_flag"], true);
    }
    // Unloading one leaves the other's table (the same maps) working.
    lab.cli(&["unload", "--iface", v0]);
    let s = lab.status(v1);
    assert_eq!(s["requests_shared_with"], serde_json::json!([]), "{s}");
    lab.cli(&["reload", "--iface", v1, "--rules", DEFAULT_RULES]);
    lab.cli(&["unload", "--iface", v1]);
    for link in [v0, v1] {
        assert!(
            !net.pin_root.join(link).exists(),
            "unload left {link}'s pins behind"
        );
    }
}

const DEFAULT_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default.toml");

/// An interface loaded beside one whose request table another build made
/// (here: its LOCAL_PORTS pin swapped for a map of another shape) keeps a
/// table of its own, says so when it loads, and `status` names the
/// interface it shares nothing with.
#[test]
fn a_sibling_with_another_builds_table_is_kept_apart_and_named() {
    common::require_bpf();
    let lab = Lab::new();
    let [v0, v1] = &lab.links;
    lab.cli(&["load", "--iface", v0]);
    let dir = &lab.net.pin_root;
    let local_ports = dir.join(v0).join("LOCAL_PORTS");
    std::fs::remove_file(&local_ports).unwrap();
    // One u64 (V4_PREFIXES while no IPv4 prefix is listed): no table of
    // this build's.
    aya::maps::MapData::from_pin(dir.join(v0).join("gen-1/V4_PREFIXES"))
        .unwrap()
        .pin(&local_ports)
        .unwrap();
    let out = filterctl(&lab.net, &["load", "--iface", v1]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "shares no table of the host's requests with {v0} (its LOCAL_PORTS holds 1 entries of 8 bytes"
        )),
        "no warning: {stderr}"
    );
    for (link, other) in [(v1, v0), (v0, v1)] {
        let s = lab.status(link);
        assert_eq!(s["requests_shared_with"], serde_json::json!([]), "{s}");
        assert_eq!(s["requests_apart_from"], serde_json::json!([other]), "{s}");
        assert_eq!(s["requests_shared_flag"], false, "{s}");
    }
    let text = lab.cli(&["status"]);
    assert!(
        text.contains(&format!("requests apart from {v0} (another build's table)")),
        "{text}"
    );
    for link in [v0, v1] {
        lab.cli(&["unload", "--iface", link]);
    }
}
