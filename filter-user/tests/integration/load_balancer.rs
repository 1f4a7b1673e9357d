//! The site's own load balancer under a forged flood of its address: its
//! TCP connections to the victim are neither limited nor banned (segments
//! of a connection the host holds pass over the limit), and the UDP forged
//! with its address earns a ban of UDP only. Default profile (20k packets/s
//! a source, banned after 10 s over it). Needs root and BPF.

use crate::common;

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use filter_common::{BAN_UDP_ONLY, SrcKey};
use filter_testkit::net::{ATTACKER_V4, TestNet, VICTIM_V4};

use common::{
    cli::{ok, reason, run as filterctl},
    raw::{Paced, RawSocket},
};

/// The sizes: 64 connections carrying 30k segments a second, the
/// balancer's address forged in 50k UDP packets a second for 15 s.
const CONNECTIONS: usize = 64;
const SEGMENTS: u64 = 30_000;
const FORGED: u64 = 50_000;
const FLOOD: Duration = Duration::from_secs(15);
/// How long the throughput is measured before the flood.
const BEFORE: Duration = Duration::from_secs(3);

const VICTIM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const ATTACKER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

#[test]
fn a_load_balancer_under_a_forged_flood_is_never_banned_and_keeps_its_throughput() {
    common::require_bpf();
    let net = TestNet::new("lbl").expect("create test namespaces");
    ok(filterctl(&net, &["load", "--iface", &net.victim_if]));
    let server = SocketAddr::new(VICTIM_V4.into(), 443);
    let listener = TestNet::in_ns(&net.victim_ns, || TcpListener::bind(server))
        .unwrap()
        .expect("listen on the victim's 443");
    let clients: Vec<TcpStream> = TestNet::in_ns(&net.attacker_ns, || {
        (0..CONNECTIONS)
            .map(|_| TcpStream::connect(server).expect("connect to the victim's 443"))
            .collect()
    })
    .unwrap();
    let servers: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| listener.accept().unwrap().0)
        .collect();
    let (stop, received) = (AtomicBool::new(false), AtomicU64::new(0));
    let (full_ban, udp_ban) = (AtomicBool::new(false), AtomicBool::new(false));
    let (before, during, flood) = std::thread::scope(|s| {
        let _stop = common::StopOnDrop(&stop);
        for conn in &servers {
            s.spawn(|| drain(conn, &received, &stop));
        }
        s.spawn(|| write_paced(&clients, &stop));
        s.spawn(|| watch_bans(&net, &stop, &full_ban, &udp_ban));
        // A second to settle, then the throughput without a flood.
        std::thread::sleep(Duration::from_secs(1));
        let before = rate(&received, BEFORE);
        let flood = s.spawn(|| forge_udp(&net, FORGED, FLOOD));
        // Its first half second aside (the window starts with it), the
        // throughput during the flood, ban time included.
        std::thread::sleep(Duration::from_millis(500));
        let during = rate(&received, FLOOD - Duration::from_secs(1));
        let flood = flood.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        (before, during, flood)
    });
    let (bans, limited) = (reason(&net, "ban_drop"), reason(&net, "rate_limit_drop"));
    println!(
        "{CONNECTIONS} connections: {before:.0} B/s before, {during:.0} B/s during {} forged \
         UDP packets in {:.1} s ({:.0}/s); ban_drop {bans}, rate_limit_drop {limited}; \
         UDP-only ban: {}",
        flood.frames,
        flood.seconds,
        flood.frames as f64 / flood.seconds,
        udp_ban.load(Ordering::Relaxed)
    );
    assert!(
        !full_ban.load(Ordering::Relaxed),
        "the load balancer {ATTACKER_V4} was banned from everything"
    );
    // The flood did earn its ban (of UDP): the test reached the ban path.
    assert!(
        udp_ban.load(Ordering::Relaxed),
        "{:.0} forged packets/s for {FLOOD:?} earned no ban of UDP",
        flood.frames as f64 / flood.seconds
    );
    assert!(
        during >= before * 0.9,
        "throughput fell from {before:.0} to {during:.0} B/s during the flood"
    );
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
}

/// Bytes a second `received` grows by over `window`.
fn rate(received: &AtomicU64, window: Duration) -> f64 {
    let start = received.load(Ordering::Relaxed);
    std::thread::sleep(window);
    (received.load(Ordering::Relaxed) - start) as f64 / window.as_secs_f64()
}

/// Reads a connection until `stop`, adding what it reads to `received`.
fn drain(conn: &TcpStream, received: &AtomicU64, stop: &AtomicBool) {
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 65536];
    let mut conn = conn;
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading a connection: {e}"),
        }
    }
}

/// Small writes (one segment each, no Nagle) round the connections, paced
/// at [`SEGMENTS`] a second in 1 ms bursts, until `stop`. Non-blocking: a
/// connection whose segments are dropped backs up and is skipped, and the
/// bytes received show it.
fn write_paced(clients: &[TcpStream], stop: &AtomicBool) {
    for c in clients {
        c.set_nodelay(true).unwrap();
        c.set_nonblocking(true).unwrap();
    }
    let payload = [0x5a_u8; 64];
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = start.elapsed().as_micros() as u64 * SEGMENTS / 1_000_000;
        while sent < due {
            let mut c = &clients[sent as usize % clients.len()];
            match c.write(&payload) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("writing a connection: {e}"),
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Polls the filter's bans until `stop`: whether the balancer was ever
/// banned from everything, or from UDP only.
fn watch_bans(net: &TestNet, stop: &AtomicBool, full: &AtomicBool, udp: &AtomicBool) {
    let path = net.pin_root.join(&net.victim_if).join("BANS");
    let map = aya::maps::MapData::from_pin(&path).unwrap();
    let bans: aya::maps::HashMap<_, SrcKey, u64> =
        aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(map)).unwrap();
    while !stop.load(Ordering::Relaxed) {
        for item in bans.iter() {
            let Ok((key, until)) = item else { continue };
            if key.addr[..4] != ATTACKER_V4.octets() {
                continue;
            }
            if until & BAN_UDP_ONLY != 0 {
                udp.store(true, Ordering::Relaxed);
            } else {
                full.store(true, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn forge_udp(net: &TestNet, rate: u64, length: Duration) -> Paced {
    let frames: Vec<Vec<u8>> = (0..256u16)
        .map(|i| {
            let builder = etherparse::PacketBuilder::ethernet2(ATTACKER_MAC, VICTIM_MAC)
                .ipv4(ATTACKER_V4.octets(), VICTIM_V4.octets(), 64)
                .udp(40000 + i, 20000 + i * 97);
            let mut frame = Vec::with_capacity(builder.size(32));
            builder.write(&mut frame, &[0x42; 32]).unwrap();
            frame
        })
        .collect();
    let attacker_if = net.attacker_if.clone();
    TestNet::in_ns(&net.attacker_ns, move || {
        RawSocket::open(&attacker_if, VICTIM_MAC).send_paced(&frames, rate, |_, t| t < length)
    })
    .unwrap()
}
