//! Surge detection end to end: the real filterctl binary loads the filter on
//! the victim of a veth pair and runs `serve` on it; a flood from UDP source
//! port 33848 (no catalogue names it) hits a port where the victim really
//! listens. In enforce mode it is blocked within 3 s of its start (no flood
//! datagram sent 3 s or later after the start reaches the socket: each
//! carries its send time), other senders to the same socket lose nothing,
//! status, diff and /metrics show the block, a reload of the changed rule
//! file keeps it, a restarted serve takes it over, and it is lifted once the
//! flood has stopped for the hold time. In monitor mode the surge is
//! reported and nothing is blocked. Needs root.

use crate::common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use common::{
    cli::{TempDir, ok, run, status},
    daemon::{Daemon, Exposition, get, parse_openmetrics, series, wait_until},
};
use filter_testkit::net::{TestNet, VICTIM_V4};
use serde_json::Value;

const FLOOD_PORT: u16 = 33848;
const BENIGN_PORT: u16 = 40001;
const SERVICE: u16 = 5000;
const HOLD_S: u64 = 3;

fn rules(mode: &str) -> String {
    format!(
        r#"mode = "{mode}"

[adaptive]
min_pps = 1000
min_share = 0.5
hold = "{HOLD_S}s"

[[rule]]
name = "ntp-reflection"
protocol = "udp"
src_port = 123
action = "drop"
"#
    )
}

/// What the victim's service socket got from one source port.
#[derive(Default, Debug)]
struct Received {
    datagrams: u64,
    /// Latest send time (ns after the flood started) among them.
    latest_sent_ns: u64,
}

/// The victim's service: a socket that counts what reaches it, by source
/// port, until the flag is set.
fn listen(net: &TestNet) -> (Arc<AtomicBool>, JoinHandle<[Received; 2]>) {
    let sock = TestNet::in_ns(&net.victim_ns, || {
        UdpSocket::bind(SocketAddr::new(IpAddr::V4(VICTIM_V4), SERVICE))
    })
    .unwrap()
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let receiver = std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut got: [Received; 2] = Default::default();
        let mut buf = [0u8; 2048];
        while !flag.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let i = match from.port() {
                FLOOD_PORT => 0,
                BENIGN_PORT => 1,
                _ => continue,
            };
            assert!(n >= 8, "short datagram from {from}");
            let sent = u64::from_be_bytes(buf[..8].try_into().unwrap());
            got[i].datagrams += 1;
            got[i].latest_sent_ns = got[i].latest_sent_ns.max(sent);
        }
        got
    });
    (stop, receiver)
}

/// Sends from `sock` to the service, each datagram stamped with its send
/// time after `t0`, `per_10ms` datagrams every 10 ms, for `secs`; returns
/// how many it sent.
fn send(sock: UdpSocket, t0: Instant, per_10ms: u32, secs: f64) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let to = SocketAddr::new(IpAddr::V4(VICTIM_V4), SERVICE);
        let mut sent = 0;
        let mut payload = [0u8; 64];
        while t0.elapsed().as_secs_f64() < secs {
            for _ in 0..per_10ms {
                let at = t0.elapsed().as_nanos() as u64;
                payload[..8].copy_from_slice(&at.to_be_bytes());
                sock.send_to(&payload, to).expect("send");
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    })
}

/// A bound socket in the attacker's namespace, source 198.51.100.9:port.
fn attacker_socket(net: &TestNet, port: u16) -> UdpSocket {
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), port);
    TestNet::in_ns(&net.attacker_ns, || UdpSocket::bind(from))
        .unwrap()
        .unwrap_or_else(|e| panic!("bind {from}: {e}"))
}

fn metrics(net: &TestNet, port: u16) -> Exposition {
    let m = get(net, port, "/metrics").expect("/metrics answers");
    assert_eq!(m.status, 200, "{}", m.body);
    parse_openmetrics(&m.body)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A test host with the filter loaded from `rules(mode)` and serve on it.
fn setup(tag: &str, mode: &str) -> (TestNet, TempDir, String, Daemon, u16) {
    common::require_bpf();
    let net = TestNet::new(tag).expect("create test namespaces");
    let files = TempDir::new(tag);
    let path = files.write("rules.toml", &rules(mode));
    ok(run(
        &net,
        &["load", "--iface", &net.victim_if, "--rules", &path],
    ));
    let (daemon, port) = Daemon::start(
        &net,
        files.path().join("serve.log"),
        &["--iface", &net.victim_if, "--rules", &path],
    );
    (net, files, path, daemon, port)
}

fn block_series(net: &TestNet, name: &str, state: &str) -> common::daemon::Series {
    let port = FLOOD_PORT.to_string();
    series(
        name,
        &[
            ("interface", &net.victim_if),
            ("port", &port),
            ("state", state),
        ],
    )
}

fn event(expo: &Exposition, net: &TestNet, event: &str) -> f64 {
    let s = series(
        "filterctl_adaptive_block_events_total",
        &[("interface", &net.victim_if), ("event", event)],
    );
    expo.samples.get(&s).copied().unwrap_or(0.0)
}

#[test]
fn a_surge_from_one_source_port_is_blocked_then_lifted() {
    let (net, files, path, mut daemon, port) = setup("sug", "enforce");
    let g0 = status(&net)["generation"].as_u64().unwrap();
    let (stop, receiver) = listen(&net);
    let (flood_sock, benign_sock) = (
        attacker_socket(&net, FLOOD_PORT),
        attacker_socket(&net, BENIGN_PORT),
    );

    // About 4,000 datagrams/s for 6 s from the flood port; 200/s from
    // another port of the same host, to the same socket.
    let (t0, start_unix) = (Instant::now(), unix_now());
    let flood = send(flood_sock, t0, 40, 6.0);
    let benign = send(benign_sock, t0, 2, 6.0);
    wait_until("an adaptive block in status", 10, || {
        daemon.assert_running();
        !status(&net)["adaptive_blocks"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let st = status(&net);
    let block = &st["adaptive_blocks"][0];
    assert_eq!(block["port"], FLOOD_PORT, "{st}");
    let since = block["since_unix"].as_u64().unwrap();
    assert!(
        since >= start_unix && since <= start_unix + 3,
        "block since {since}, flood started at {start_unix}: {st}"
    );
    assert!(block["trigger_pps"].as_u64().unwrap() >= 1000, "{st}");
    assert!(st["generation"].as_u64().unwrap() > g0, "{st}");
    assert_eq!(st["rule_count"], 1, "the file's rules only: {st}");
    let expo = metrics(&net, port);
    let enforced = block_series(&net, "filterctl_adaptive_blocks", "enforced");
    assert_eq!(
        expo.samples.get(&enforced),
        Some(&1.0),
        "{:?}",
        expo.samples
    );
    let since_series = block_series(&net, "filterctl_adaptive_block_since_seconds", "enforced");
    assert_eq!(expo.samples.get(&since_series), Some(&(since as f64)));
    assert_eq!(event(&expo, &net, "installed"), 1.0);
    let diff = ok(run(
        &net,
        &["diff", "--iface", &net.victim_if, "--rules", &path],
    ));
    assert!(
        diff.contains("no changes") && diff.contains("= adaptive block adaptive-udp-33848"),
        "{diff}"
    );

    // The file changes during the block: the watcher's reload keeps it.
    let digest = st["rules_digest"].as_str().unwrap().to_string();
    std::fs::write(
        &path,
        format!("{}\n[[rule]]\nname = \"chargen\"\nprotocol = \"udp\"\nsrc_port = 19\naction = \"drop\"\n", rules("enforce")),
    )
    .unwrap();
    wait_until("the watcher to reload the changed file", 10, || {
        status(&net)["rules_digest"] != digest.as_str()
    });
    let after = status(&net);
    assert_eq!(after["rule_count"], 2, "{after}");
    assert_eq!(after["adaptive_blocks"], st["adaptive_blocks"], "{after}");

    // serve restarts during the block: the new one takes it over (and
    // lifts it below), the old one logged its start.
    let log = daemon.log();
    for needle in [
        "surge from UDP source port 33848",
        "blocking it (adaptive-udp-33848)",
    ] {
        assert!(log.contains(needle), "no {needle:?} in the log:\n{log}");
    }
    daemon.signal(libc::SIGTERM);
    let exit = daemon.child.wait().unwrap();
    assert!(exit.success(), "serve on SIGTERM: {exit}\n{log}");
    let (mut daemon, port) = Daemon::start(
        &net,
        files.path().join("serve-2.log"),
        &["--iface", &net.victim_if, "--rules", &path],
    );

    let (flood_sent, benign_sent) = (flood.join().unwrap(), benign.join().unwrap());
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let [flood_got, benign_got] = receiver.join().unwrap();
    let stats: Value = serde_json::from_str(&ok(run(&net, &["stats", "--json"]))).unwrap();
    let rule = stats["interfaces"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "adaptive-udp-33848")
        .unwrap_or_else(|| panic!("no adaptive rule in the stats: {stats}"))
        .clone();
    eprintln!(
        "flood: {flood_sent} sent, {flood_got:?}; benign: {benign_sent} sent, {benign_got:?}; rule {rule}"
    );
    assert!(
        flood_got.datagrams > 0,
        "the flood never arrived: {flood_got:?}"
    );
    assert!(
        flood_got.latest_sent_ns < 3_000_000_000,
        "a flood datagram sent {} ms after the start was delivered",
        flood_got.latest_sent_ns / 1_000_000
    );
    assert!(rule["packets"].as_u64().unwrap() > 0, "{rule}");
    assert_eq!(
        benign_got.datagrams, benign_sent,
        "the other source port lost datagrams"
    );

    // The flood stopped: lifted once it has been over for the hold time (the
    // last second of counters may still include flood, hence - 1 s).
    wait_until("the block to be lifted", 15, || {
        daemon.assert_running();
        status(&net)["adaptive_blocks"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let held = stopped.elapsed();
    assert!(
        held >= Duration::from_secs(HOLD_S - 1),
        "lifted {held:?} after the flood stopped, hold is {HOLD_S} s"
    );
    let expo = metrics(&net, port);
    assert_eq!(expo.samples.get(&enforced), None, "gauge still there");
    assert_eq!(
        event(&expo, &net, "installed"),
        0.0,
        "taken over, not installed"
    );
    assert_eq!(event(&expo, &net, "lifted"), 1.0);
    assert_eq!(event(&expo, &net, "failed"), 0.0);
    let log = daemon.log();
    for needle in [
        "adaptive block on UDP source port 33848 (since",
        "found running",
        "block lifted",
    ] {
        assert!(log.contains(needle), "no {needle:?} in the log:\n{log}");
    }
}

#[test]
fn monitor_mode_reports_a_surge_and_blocks_nothing() {
    let (net, _files, _path, mut daemon, port) = setup("sum", "monitor");
    let g0 = status(&net)["generation"].as_u64().unwrap();
    let (stop, receiver) = listen(&net);
    let t0 = Instant::now();
    let flood = send(attacker_socket(&net, FLOOD_PORT), t0, 40, 5.0);
    let reported = block_series(&net, "filterctl_adaptive_blocks", "monitor");
    wait_until("the surge reported in /metrics", 10, || {
        daemon.assert_running();
        metrics(&net, port).samples.get(&reported) == Some(&1.0)
    });
    flood.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let [flood_got, _] = receiver.join().unwrap();
    assert!(
        flood_got.latest_sent_ns > 4_500_000_000,
        "monitor mode blocked the flood: the last datagram delivered was sent at {} ms",
        flood_got.latest_sent_ns / 1_000_000
    );
    let st = status(&net);
    assert_eq!(st["generation"].as_u64().unwrap(), g0, "reloaded: {st}");
    assert!(st["adaptive_blocks"].as_array().unwrap().is_empty(), "{st}");
    let expo = metrics(&net, port);
    assert_eq!(event(&expo, &net, "reported"), 1.0);
    assert_eq!(event(&expo, &net, "installed"), 0.0);
    let log = daemon.log();
    assert!(
        log.contains("surge from UDP source port 33848") && log.contains("reported, not blocked"),
        "{log}"
    );
}
