//! The demo behind `cargo xtask demo`: builds two test hosts, loads the
//! filter on the victim (a DNS server) with rules/default.toml, sends a
//! reflection attack that switches vectors (NTP, SSDP, memcached, which no
//! rule names, then DNS answers and memcached replies aimed at the port
//! the victim serves) from spoofed sources, plus the victim's own traffic
//! and its DNS clients' queries, and shows what got through in each phase
//! and what `filterctl stats` counted. Cleans up on exit, failure or
//! Ctrl-C.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail};
use filter_testkit::frames::{ntp_monlist_reply, ntp_time_reply};
use filter_testkit::net::{
    ATTACKER_V4, Cleanup, Sink, TestNet, VICTIM_V4, VICTIM_V6, ping, send_udp,
};

const PER_SOURCE: usize = 20;

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

/// Blocks SIGINT and SIGTERM in every thread and waits for them on one
/// thread that removes the test hosts before exiting.
fn cleanup_on_signal(cleanup: Cleanup) {
    // SAFETY: sigset manipulation on a local set; called before any other
    // thread starts, so every thread inherits the mask.
    let set = unsafe {
        // An ignored signal is discarded before sigwait could see it, and
        // SIG_IGN is inherited: undo it in case our parent set it.
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: valid set and out-pointer.
        unsafe { libc::sigwait(&set, &mut sig) };
        eprintln!("\ninterrupted: removing the test hosts");
        cleanup.run();
        std::process::exit(130);
    });
}

fn filterctl_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::args().nth(1) {
        return Ok(PathBuf::from(p));
    }
    // target/<profile>/examples/demo -> target/<profile>/filterctl
    let exe = std::env::current_exe()?;
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("filterctl"))
        .context("cannot find filterctl next to the demo")?;
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build -p filter-user`",
            p.display()
        );
    }
    Ok(p)
}

fn filterctl(net: &TestNet, bin: &PathBuf, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--netns")
        .arg(&net.victim_ns)
        .arg("--pin-root")
        .arg(&net.pin_root)
        .args(args);
    println!("$ filterctl --netns {} {}", net.victim_ns, args.join(" "));
    let out = cmd.output().context("cannot run filterctl")?;
    if !out.status.success() {
        bail!(
            "filterctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One wave of the attack: a vector, its reflectors, the victim's port.
struct Phase<'a> {
    what: &'static str,
    from: &'a [IpAddr],
    port: u16,
    payload: Vec<u8>,
    to: SocketAddr,
}

/// Sends the phases one after another and prints what reached the victim
/// in each; returns the datagrams sent and delivered in all.
fn wave(net: &TestNet, sink: &Sink, phases: &[Phase<'_>]) -> anyhow::Result<(u64, u64)> {
    println!("   {:<38} {:>6} {:>10}", "phase", "sent", "delivered");
    let (mut flood, mut leaked) = (0, 0);
    for p in phases {
        TestNet::in_ns(&net.attacker_ns, || -> anyhow::Result<()> {
            for &s in p.from {
                send_udp(SocketAddr::new(s, p.port), p.to, &p.payload, PER_SOURCE)?;
            }
            Ok(())
        })??;
        let sent = (p.from.len() * PER_SOURCE) as u64;
        let got = sink.drain()[&p.to];
        println!("   {:<38} {sent:>6} {got:>10}", p.what);
        flood += sent;
        leaked += got;
    }
    Ok((flood, leaked))
}

/// The victim's own traffic meanwhile: time sync (its requests, then the
/// replies), DNS queries to it, a TCP connection, pings. Prints what got
/// through; true if all of it did.
fn host_traffic(
    net: &TestNet,
    sink: &Sink,
    listener: &TcpListener,
    time: SocketAddr,
    dns: SocketAddr,
) -> anyhow::Result<bool> {
    let v4 = |port| SocketAddr::new(IpAddr::V4(VICTIM_V4), port);
    let server = SocketAddr::new(ATTACKER_V4.into(), 123);
    for _ in 0..4 {
        sink.send_from(time, server, &[0x23; 48])?;
        std::thread::sleep(Duration::from_millis(20));
        TestNet::in_ns(&net.attacker_ns, || {
            send_udp(server, time, &ntp_time_reply(), 5)
        })??;
    }
    let pings = TestNet::in_ns(&net.attacker_ns, || -> anyhow::Result<u16> {
        send_udp(
            SocketAddr::new(ATTACKER_V4.into(), 41000),
            dns,
            b"\x12\x34\x01\x00",
            100,
        )?;
        let mut c = TcpStream::connect_timeout(&v4(8080), Duration::from_secs(5))?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        ping(VICTIM_V4, 5)
    })??;
    let (mut conn, _) = listener.accept()?;
    let mut req = [0u8; 18];
    conn.read_exact(&mut req)?;
    let got = sink.drain();
    println!("   {:<38} {:>6} {:>10}", "traffic", "sent", "delivered");
    for (what, sent, addr) in [
        ("NTP time replies (to 4 requests)", 20, time),
        ("DNS queries to the victim's server", 100, dns),
    ] {
        println!("   {what:<38} {sent:>6} {:>10}", got[&addr]);
    }
    println!(
        "   {:<38} {:>6} {:>10}",
        "TCP connection (bytes)",
        18,
        req.len()
    );
    println!("   {:<38} {:>6} {:>10}", "ping", 5, pings);
    Ok(got[&time] == 20 && got[&dns] == 100 && pings == 5)
}

fn run() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and loads XDP: run it as root");
    }
    let bin = filterctl_path()?;
    println!("== creating two test hosts: victim 192.0.2.1 / 2001:db8::1, attacker 192.0.2.2");
    let net = TestNet::new("dem")?;
    cleanup_on_signal(net.cleanup_handle());
    println!(
        "   namespaces {} and {}, veth {} <-> {}",
        net.victim_ns, net.attacker_ns, net.victim_if, net.attacker_if
    );

    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default.toml");
    println!("\n== loading the filter on the victim with rules/default.toml");
    print!(
        "{}",
        filterctl(
            &net,
            &bin,
            &["load", "--iface", &net.victim_if, "--rules", rules]
        )?
    );
    print!("{}", filterctl(&net, &bin, &["status"])?);

    let v4 = |port| SocketAddr::new(IpAddr::V4(VICTIM_V4), port);
    let v6 = |port| SocketAddr::new(IpAddr::V6(VICTIM_V6), port);
    let (ntp, ntp6, ssdp, memcached, time, dns) = (
        v4(40000),
        v6(40000),
        v4(50000),
        v4(50001),
        v4(40001),
        v4(53),
    );
    let sink = TestNet::in_ns(&net.victim_ns, || {
        Sink::bind(&[ntp, ntp6, ssdp, memcached, time, dns])
    })??;
    let listener = TestNet::in_ns(&net.victim_ns, || TcpListener::bind(v4(8080)))??;

    let sources: Vec<IpAddr> = (1..=100)
        .flat_map(|i| {
            [
                Ipv4Addr::new(198, 51, 100, i).into(),
                Ipv4Addr::new(203, 0, 113, i).into(),
            ]
        })
        .collect();
    let sources6: Vec<IpAddr> = (1..=50)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, i).into())
        .collect();
    let mut memcached_reply = b"VALUE a 0 1400\r\n".to_vec();
    memcached_reply.resize(1400, b'x');
    let ssdp_reply =
        b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: upnp:rootdevice\r\n\r\n".to_vec();
    // A DNS answer (QR=1, one answer) as open resolvers send them, and a
    // memcached reply, aimed at the victim's own DNS server.
    let mut dns_answer = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    dns_answer.resize(512, 0);
    let mut memcached_at_dns = b"\0\x01\0\0\0\x01\0\0VALUE a 0 1400\r\n".to_vec();
    memcached_at_dns.resize(1400, b'x');
    let phases = [
        Phase {
            what: "NTP monlist (port 123)",
            from: &sources,
            port: 123,
            payload: ntp_monlist_reply(),
            to: ntp,
        },
        Phase {
            what: "NTP monlist over IPv6",
            from: &sources6,
            port: 123,
            payload: ntp_monlist_reply(),
            to: ntp6,
        },
        Phase {
            what: "SSDP (port 1900)",
            from: &sources,
            port: 1900,
            payload: ssdp_reply,
            to: ssdp,
        },
        Phase {
            what: "memcached (11211): no rule names it",
            from: &sources,
            port: 11211,
            payload: memcached_reply,
            to: memcached,
        },
        Phase {
            what: "DNS answers at the victim's DNS server",
            from: &sources,
            port: 53,
            payload: dns_answer,
            to: dns,
        },
        Phase {
            what: "memcached at the victim's DNS server",
            from: &sources,
            port: 11211,
            payload: memcached_at_dns,
            to: dns,
        },
    ];
    println!(
        "\n== the attack comes in waves, each from {} spoofed IPv4 (or {} IPv6) reflectors, {PER_SOURCE} replies each",
        sources.len(),
        sources6.len()
    );
    let (flood, leaked) = wave(&net, &sink, &phases)?;

    println!(
        "\n== meanwhile the victim's own traffic: time sync (requests, then replies), DNS, TCP, ping"
    );
    let benign_ok = host_traffic(&net, &sink, &listener, time, dns)?;

    println!("\n== what the filter counted");
    print!(
        "{}",
        filterctl(&net, &bin, &["stats", "--iface", &net.victim_if])?
    );

    let json: serde_json::Value = serde_json::from_str(&filterctl(
        &net,
        &bin,
        &["stats", "--json", "--iface", &net.victim_if],
    )?)?;
    let dropped = json["interfaces"][0]["dropped"]["packets"]
        .as_u64()
        .unwrap_or(0);

    println!("\n== unloading and removing the test hosts");
    print!(
        "{}",
        filterctl(&net, &bin, &["unload", "--iface", &net.victim_if])?
    );
    let dropped_ok = leaked == 0 && dropped == flood;
    drop(net);
    if !(dropped_ok && benign_ok) {
        bail!(
            "unexpected result: filter dropped {dropped} of {flood} reflection packets \
             (all and none delivered: {dropped_ok}); benign traffic delivered: {benign_ok}"
        );
    }
    println!("done: reflection traffic dropped, benign traffic delivered, nothing left behind");
    Ok(())
}
