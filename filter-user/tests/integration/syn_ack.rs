//! TCP's reflection: spoofed SYNs sent to thousands of servers make their
//! SYN-ACKs flood the victim, and the victim answers each with a RST,
//! adding its own outbound flood to the inbound one. With the reply guard
//! on (the default profile), a SYN-ACK that matches no connection the host
//! is opening goes before the kernel sees it, while the host's own
//! connections (whose SYN-ACKs answer its SYNs) open.
//! Needs root, BPF and curl (`cargo xtask setup`).

use crate::common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use filter_testkit::net::{ATTACKER_V4, TestNet, VICTIM_V4};

use common::{
    cli::{ok, reason, run as filterctl},
    raw::{Paced, RawSocket},
};

/// The sizes: 50k SYN-ACKs a second from 300 reflectors.
const RATE: u64 = 50_000;
const REFLECTORS: u16 = 300;

#[test]
fn syn_ack_reflection_draws_no_rsts_and_own_connections_open() {
    common::require_bpf();
    let net = TestNet::new("syn").expect("create test namespaces");
    // Without the filter, the victim answers them: the test can fail.
    let before = TestNet::in_ns(&net.victim_ns, tcp_out_rsts).unwrap();
    let sent = flood(&net, 100, 5_000, &AtomicBool::new(false), 100);
    std::thread::sleep(Duration::from_millis(200));
    let unfiltered = TestNet::in_ns(&net.victim_ns, tcp_out_rsts).unwrap() - before;
    assert!(
        unfiltered * 10 >= sent.frames * 9,
        "{unfiltered} RSTs for {} SYN-ACKs without the filter",
        sent.frames
    );

    ok(filterctl(&net, &["load", "--iface", &net.victim_if]));
    let server = SocketAddr::new(ATTACKER_V4.into(), 8080);
    let listener = TestNet::in_ns(&net.attacker_ns, || TcpListener::bind(server))
        .unwrap()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let (stop, flooding) = (AtomicBool::new(false), AtomicBool::new(false));
    let before = TestNet::in_ns(&net.victim_ns, tcp_out_rsts).unwrap();
    let (sent, fetched) = std::thread::scope(|s| {
        let _stop = common::StopOnDrop(&stop);
        s.spawn(|| serve_http(&listener, &stop));
        let flood = s.spawn(|| {
            flooding.store(true, Ordering::Relaxed);
            flood(&net, REFLECTORS, RATE, &stop, u64::MAX)
        });
        while !flooding.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The flood's first second runs before the first connection.
        std::thread::sleep(Duration::from_secs(1));
        let fetched =
            TestNet::in_ns(&net.victim_ns, || (0..100).filter(|_| curl(server)).count()).unwrap();
        stop.store(true, Ordering::Relaxed);
        (flood.join().unwrap(), fetched)
    });
    std::thread::sleep(Duration::from_millis(200));
    let rsts = TestNet::in_ns(&net.victim_ns, tcp_out_rsts).unwrap() - before;
    println!(
        "{} SYN-ACKs from {REFLECTORS} reflectors in {:.1} s ({:.0} a second): {rsts} RSTs, {fetched}/100 fetches",
        sent.frames,
        sent.seconds,
        sent.frames as f64 / sent.seconds
    );
    assert_eq!(
        fetched, 100,
        "the victim's own connections failed during the flood"
    );
    assert!(
        rsts * 1000 <= sent.frames,
        "{rsts} RSTs for {} SYN-ACKs",
        sent.frames
    );
    assert!(
        reason(&net, "unsolicited_reply") >= sent.frames,
        "SYN-ACKs not counted"
    );
    ok(filterctl(&net, &["unload", "--iface", &net.victim_if]));
}

/// `TcpOutRsts` of the calling thread's namespace (what `nstat` reads).
fn tcp_out_rsts() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "OutRsts")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// One GET with curl, a process of the calling thread's namespace.
fn curl(server: SocketAddr) -> bool {
    Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "--max-time", "3"])
        .arg(format!("http://{server}/"))
        .status()
        .is_ok_and(|s| s.success())
}

/// A web server of one page, until `stop`.
fn serve_http(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut conn, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut request = [0; 1024];
        let _ = conn.read(&mut request);
        let _ =
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
}

/// SYN-ACKs from `reflectors` spoofed servers (ports 443 and 80) to
/// random ports of the victim, as raw frames with valid checksums out of
/// the attacker's interface, paced at `rate` a second until `stop` or
/// `most` frames.
fn flood(net: &TestNet, reflectors: u16, rate: u64, stop: &AtomicBool, most: u64) -> Paced {
    let frames = syn_acks(reflectors);
    let attacker_if = net.attacker_if.clone();
    TestNet::in_ns(&net.attacker_ns, move || {
        RawSocket::open(&attacker_if, VICTIM_MAC).send_paced(&frames, rate, |sent, _| {
            sent < most && !stop.load(Ordering::Relaxed)
        })
    })
    .unwrap()
}

const VICTIM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// Eight SYN-ACKs per reflector, to random-looking ports of the victim,
/// interleaved so that consecutive frames come from different reflectors.
fn syn_acks(reflectors: u16) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for i in 0..8u16 {
        for s in 0..reflectors {
            let half = s / 2;
            let src = if s % 2 == 0 {
                [198, 51, 100, 1 + half as u8]
            } else {
                [203, 0, 113, 1 + half as u8]
            };
            let sport = if s % 3 == 0 { 80 } else { 443 };
            let dport = 20000 + (i.wrapping_mul(7919).wrapping_add(s) % 40000);
            let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], VICTIM_MAC)
                .ipv4(src, VICTIM_V4.octets(), 64)
                .tcp(sport, dport, 1000 + i as u32, 64240)
                .syn()
                .ack(4242);
            let mut frame = Vec::with_capacity(builder.size(0));
            builder.write(&mut frame, &[]).unwrap();
            frames.push(frame);
        }
    }
    frames
}
