//! Upstream mitigation end to end, with real components: the filter on the
//! victim, `filterctl serve` driving GoBGP (gobgpd in the victim's
//! namespace), and BIRD 2 as the router in a third namespace peering with
//! it. A reflection flood through the filter must put the expected FlowSpec
//! routes in BIRD's flow4/flow6 tables with their action, withdrawn after
//! the hold time once the flood stops; a blackhole route with community
//! 65535:666 only past its threshold; no more routes than max_routes for a
//! flood from many banned sources; nothing in dry-run mode; a dead speaker
//! reported while the filter keeps dropping; a killed serve's routes
//! withdrawn each at its own deadline by the keeper it left, or taken over
//! by a serve started in time without the router seeing a withdrawal.
//! Needs root.

use crate::common;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{
    cli::{TempDir, command, ok, run},
    lab::{free_port, poll},
};
use filter_testkit::{
    bgp::{Bird, Daemon, gobgpd},
    frames::{ntp_monlist_reply, ssdp_reply},
    net::{Router, TestNet, VICTIM_V4},
};
use serde_json::Value;

impl Drop for Lab {
    /// Serve removes its state file when it stops, and its keeper exits;
    /// a test that failed killed serve first, and the keeper may still
    /// wait for the routes' deadlines.
    fn drop(&mut self) {
        for pid in self.keepers() {
            // SAFETY: a signal to a keeper of this lab's serve, found by
            // its command line.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            self.keepers().is_empty()
        });
        if !gone && !std::thread::panicking() {
            panic!("keepers {:?} outlived SIGKILL", self.keepers());
        }
        let root = filterctl::state::PinRoot::new(&self.net.pin_root);
        let _ = std::fs::remove_dir_all(filterctl::upstream::state::state_dir(&root));
    }
}

/// Drop rules for SSDP and NTP monlist replies, and `[upstream]` with
/// `settings` on top of short test thresholds.
fn rules(api_port: u16, settings: &str) -> String {
    format!(
        r#"
[[rule]]
name = "ssdp-reflection"
protocol = "udp"
src_port = 1900
action = "drop"

[[rule]]
name = "ntp-monlist"
protocol = "udp"
src_port = 123
payload_len = "100-65535"
action = "drop"

[upstream]
speaker = "gobgp"
api = "127.0.0.1:{api_port}"
peers = ["192.0.2.254 AS 64512 (BIRD, the router namespace)"]
interval = "250ms"
min_pps = 200
min_bps = "0"
sustain = "1s"
hold = "3s"
{settings}
"#
    )
}

/// Victim with the filter, GoBGP beside it, BIRD in the router namespace,
/// the BGP session up.
struct Lab {
    bird: Bird,
    _gobgp: Daemon,
    api_port: u16,
    _router: Router,
    files: TempDir,
    net: TestNet,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        common::require_bpf();
        let net = TestNet::new(tag).expect("test hosts");
        let router = net.add_router().expect("router host");
        let files = TempDir::new(&format!("upstream-{tag}"));
        let api_port = free_port(&net);
        let gobgp = gobgpd(&net, files.path(), api_port).expect("start gobgpd");
        let mut bird = Bird::start(&router.ns, files.path()).expect("start bird");
        poll("BGP session between GoBGP and BIRD", 60, || {
            bird.daemon.assert_running();
            bird.established()
        });
        let first = files.write("load.toml", &rules(api_port, ""));
        ok(run(
            &net,
            &["load", "--iface", &net.victim_if, "--rules", &first],
        ));
        Lab {
            bird,
            _gobgp: gobgp,
            api_port,
            _router: router,
            files,
            net,
        }
    }

    /// `filterctl serve` following `name` (written with `settings`).
    fn serve(&self, name: &str, settings: &str) -> Serve {
        self.serve_api(name, self.api_port, settings)
    }

    /// The same, with GoBGP's API at `api_port`.
    fn serve_api(&self, name: &str, api_port: u16, settings: &str) -> Serve {
        self.serve_text(name, &rules(api_port, settings))
    }

    /// `filterctl serve` following `name`, written with `text`.
    fn serve_text(&self, name: &str, text: &str) -> Serve {
        let path = self.files.write(name, text);
        let port = free_port(&self.net);
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = command(
            &self.net,
            &[
                "serve",
                "--listen",
                &listen,
                "--iface",
                &self.net.victim_if,
                "--rules",
                &path,
            ],
        );
        cmd.env("RUST_LOG", "info");
        let daemon = Daemon::spawn(
            "filterctl serve",
            cmd,
            self.files.path().join(format!("{name}.log")),
        )
        .expect("start filterctl serve");
        Serve { daemon, port }
    }

    /// Stops serve with SIGTERM, which withdraws what it announced.
    fn stop(&self, mut serve: Serve) {
        let d = &mut serve.daemon;
        // SAFETY: a signal to our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) }, 0);
        let st = d.wait();
        assert!(st.success(), "serve exited with {st}:\n{}", d.log());
    }

    /// `filterctl upstream --json` for the victim: its one state, if any.
    fn upstream(&self) -> Option<Value> {
        let out = ok(run(
            &self.net,
            &["upstream", "--iface", &self.net.victim_if, "--json"],
        ));
        let v: Value = serde_json::from_str(&out).expect("upstream --json is JSON");
        assert_eq!(v["schema_version"], 1, "{v}");
        v["interfaces"]
            .as_array()
            .expect("an array")
            .first()
            .cloned()
    }

    /// FlowSpec routes (their NLRI line) with their attributes, of a BIRD
    /// table.
    fn flows(&self, table: &str) -> Vec<(String, String)> {
        let text = self.bird.table(table);
        let mut out: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.starts_with("flow") {
                let nlri = line.split("  [").next().unwrap_or(line).trim().to_string();
                out.push((nlri, String::new()));
            } else if let Some((_, attrs)) = out.last_mut() {
                attrs.push_str(line.trim());
                attrs.push('\n');
            }
        }
        out
    }

    /// The keepers serve started for this lab, by their command line
    /// (`upstream keep` under its pin root); a zombie has none.
    fn keepers(&self) -> Vec<u32> {
        let root = self.net.pin_root.display().to_string();
        let entries = std::fs::read_dir("/proc").expect("list /proc");
        entries
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
                let has = |s: &str| args.contains(&s.as_bytes());
                (has("upstream") && has("keep") && has(&root)).then_some(pid)
            })
            .collect()
    }

    /// Every route BIRD holds from the victim: FlowSpec by its NLRI, the
    /// blackhole as `blackhole PREFIX`; each with its first line, which
    /// has the time BIRD learned it (a withdrawal and a new announcement
    /// change it).
    fn router_routes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for table in ["flowtab4", "flowtab6", "master4"] {
            // A birdc that did not get through says nothing, which is not
            // an empty table: its answers start with BIRD's banner.
            let mut text = String::new();
            let answered = (0..20).any(|_| {
                text = self.bird.table(table);
                let ok = text.starts_with("BIRD");
                if !ok {
                    std::thread::sleep(Duration::from_millis(50));
                }
                ok
            });
            assert!(answered, "birdc show route table {table}: {text:?}");
            let mut blocks: Vec<(String, String)> = Vec::new();
            for line in text.lines() {
                let head = !line.starts_with(char::is_whitespace)
                    && !line.starts_with("BIRD")
                    && !line.starts_with("Table")
                    && !line.trim().is_empty();
                if head {
                    blocks.push((line.to_string(), String::new()));
                } else if let Some((_, attrs)) = blocks.last_mut() {
                    attrs.push_str(line);
                    attrs.push('\n');
                }
            }
            for (head, attrs) in blocks {
                let nlri = head.split("  ").next().unwrap_or(&head).trim().to_string();
                if table != "master4" {
                    out.insert(nlri, head);
                } else if attrs.contains(BLACKHOLE) {
                    out.insert(format!("blackhole {nlri}"), head);
                }
            }
        }
        out
    }

    fn gobgp_rib(&self, family: &str) -> String {
        let out = TestNet::command_in(&self.net.victim_ns, "gobgp")
            .args(["-u", "127.0.0.1", "-p", &self.api_port.to_string()])
            .args(["global", "rib", "-a", family])
            .output()
            .expect("run gobgp");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `filterctl stats --json` packets of a rule.
    fn rule_packets(&self, rule: &str) -> u64 {
        let out = ok(run(
            &self.net,
            &["stats", "--iface", &self.net.victim_if, "--json"],
        ));
        let v: Value = serde_json::from_str(&out).expect("stats --json is JSON");
        v["interfaces"][0]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["name"] == rule)
            .and_then(|r| r["packets"].as_u64())
            .unwrap_or_else(|| panic!("no rule {rule} in stats"))
    }

    /// One GET of serve's /metrics, from the victim's namespace.
    fn metrics(&self, serve: &Serve) -> String {
        let port = serve.port;
        TestNet::in_ns(&self.net.victim_ns, move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to serve");
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .expect("send a request");
            let mut body = String::new();
            s.read_to_string(&mut body).expect("read the reply");
            body
        })
        .expect("enter the victim namespace")
    }
}

/// filterctl serve and the port of its /metrics.
struct Serve {
    daemon: Daemon,
    port: u16,
}

impl Serve {
    fn log(&self) -> String {
        self.daemon.log()
    }

    /// SIGKILL: no chance to withdraw anything.
    fn kill(&mut self) {
        let d = &mut self.daemon;
        // SAFETY: a signal to our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGKILL) }, 0);
        d.wait();
    }
}

/// CLOCK_MONOTONIC in ns: the clock of the deadlines in serve's state file.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Reflected replies from `sources` to the victim until dropped: SSDP
/// from port 1900 and NTP monlist from 123, `burst` of each per source
/// every 20 ms or so.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    fn start(net: &TestNet, sources: Vec<Ipv4Addr>, burst: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = net.attacker_ns.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            TestNet::in_ns(&ns, || {
                let to = SocketAddr::new(IpAddr::V4(VICTIM_V4), 5000);
                let (ssdp, ntp) = (ssdp_reply(), ntp_monlist_reply());
                // Bound once: the flood never waits on a port's release.
                let socket = |src, port| {
                    let from = SocketAddr::new(IpAddr::V4(src), port);
                    UdpSocket::bind(from).unwrap_or_else(|e| panic!("cannot bind {from}: {e}"))
                };
                let sockets: Vec<(UdpSocket, &[u8])> = sources
                    .iter()
                    .flat_map(|&src| [(socket(src, 1900), &ssdp[..]), (socket(src, 123), &ntp[..])])
                    .collect();
                while !flag.load(Ordering::Relaxed) {
                    for (sock, payload) in &sockets {
                        for _ in 0..burst {
                            // A full veth ring refuses some: a flood either way.
                            let _ = sock.send_to(payload, to);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .expect("enter the attacker namespace");
        });
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sending; returns when the last packet is out.
    fn stop(mut self) -> Instant {
        self.halt();
        Instant::now()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
            && !std::thread::panicking()
        {
            // A second panic while unwinding would abort before the
            // namespaces and daemons are cleaned up.
            panic!("the flood thread failed");
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.halt();
    }
}

const SSDP4: &str = "flow4 { dst 192.0.2.1/32; proto 17; sport 1900; }";
/// payload_len 100-65535 as IPv4 total length: + 8 (UDP) + 20 (IPv4).
const NTP4: &str = "flow4 { dst 192.0.2.1/32; proto 17; sport 123; length 128..65535; }";
const SSDP6: &str = "flow6 { dst 2001:db8::1/128; next header 17; sport 1900; }";
/// As IPv6 payload length: + 8 (UDP).
const NTP6: &str = "flow6 { dst 2001:db8::1/128; next header 17; sport 123; length 108..65535; }";
/// traffic-rate 0: discard.
const DISCARD: &str = "BGP.ext_community: (generic, 0x80060000, 0x0)";
const BLACKHOLE: &str = "BGP.community: (65535,666)";

fn nlris(flows: &[(String, String)]) -> Vec<&str> {
    let mut v: Vec<&str> = flows.iter().map(|(n, _)| n.as_str()).collect();
    v.sort();
    v
}

#[test]
fn a_flood_becomes_flowspec_routes_then_a_blackhole_past_its_threshold() {
    let lab = Lab::new("upf");
    flowspec_announced_and_withdrawn_after_the_hold_time(&lab);
    blackhole_past_its_threshold(&lab);
    assert!(lab.upstream().is_none(), "serve left its state file");
}

/// The blackhole's threshold far above the flood: FlowSpec only.
fn flowspec_announced_and_withdrawn_after_the_hold_time(lab: &Lab) {
    let serve = lab.serve(
        "flowspec.toml",
        "[upstream.blackhole]\nlink_capacity = \"100Gbit\"\nshare = 50\nsustain = \"1s\"\nhold = \"3s\"\n",
    );
    let flood = Flood::start(&lab.net, vec![Ipv4Addr::new(198, 51, 100, 10)], 30);
    poll("FlowSpec routes in BIRD", 60, || {
        lab.flows("flowtab4").len() == 2 && lab.flows("flowtab6").len() == 2
    });
    let (v4, v6) = (lab.flows("flowtab4"), lab.flows("flowtab6"));
    let mut want4 = vec![NTP4, SSDP4];
    want4.sort();
    let mut want6 = vec![NTP6, SSDP6];
    want6.sort();
    assert_eq!(nlris(&v4), want4);
    assert_eq!(nlris(&v6), want6);
    for (nlri, attrs) in v4.iter().chain(&v6) {
        assert!(attrs.contains(DISCARD), "{nlri} is not discard:\n{attrs}");
    }
    assert!(
        !lab.bird.table("master4").contains(BLACKHOLE),
        "blackhole below its threshold:\n{}",
        lab.bird.table("master4")
    );
    // What is announced and why, in the state file, status and metrics.
    let state = lab.upstream().expect("serve's upstream state");
    let routes = state["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 4, "{state:#}");
    assert!(routes.iter().all(|r| r["announced"] == true), "{state:#}");
    assert!(
        routes.iter().any(|r| r["why"]
            .as_str()
            .unwrap()
            .contains("rule ssdp-reflection (discard)")),
        "{state:#}"
    );
    let status = ok(run(&lab.net, &["status"]));
    assert!(
        status.contains("upstream: 4 flowspec, 0 blackhole announced via gobgp"),
        "{status}"
    );
    let metrics = lab.metrics(&serve);
    let series = format!(
        "filterctl_upstream_routes{{interface=\"{}\",kind=\"flowspec\"}} 4",
        lab.net.victim_if
    );
    assert!(metrics.contains(&series), "no {series} in:\n{metrics}");

    // The flood stops: withdrawn, and not before the hold time (3 s,
    // less one 250 ms step for the last rate measured).
    let stopped = flood.stop();
    poll("FlowSpec withdrawal", 60, || {
        lab.flows("flowtab4").is_empty() && lab.flows("flowtab6").is_empty()
    });
    let after = stopped.elapsed();
    assert!(
        after >= Duration::from_millis(2750),
        "withdrawn after {after:?}, hold is 3 s"
    );
    lab.stop(serve);
}

/// A threshold the flood passes (10% of 1 Mbit/s).
fn blackhole_past_its_threshold(lab: &Lab) {
    let serve = lab.serve(
        "blackhole.toml",
        "[upstream.blackhole]\nlink_capacity = \"1Mbit\"\nshare = 10\nsustain = \"1s\"\nhold = \"3s\"\n",
    );
    let flood = Flood::start(&lab.net, vec![Ipv4Addr::new(198, 51, 100, 10)], 30);
    poll("a blackhole route in BIRD", 60, || {
        lab.bird.table("master4").contains(BLACKHOLE)
    });
    let master = lab.bird.table("master4");
    assert!(master.contains("192.0.2.1/32"), "{master}");
    let log = serve.log();
    assert!(
        log.contains("BLACKHOLE: announce blackhole 192.0.2.1/32"),
        "{log}"
    );
    // The route reaches BIRD while serve's step is still announcing; the
    // gauges follow when the step ends.
    let series = format!(
        "filterctl_upstream_blackhole_active{{interface=\"{}\"}} 1",
        lab.net.victim_if
    );
    let mut metrics = String::new();
    let seen = (0..100).any(|_| {
        metrics = lab.metrics(&serve);
        let found = metrics.contains(&series);
        if !found {
            std::thread::sleep(Duration::from_millis(100));
        }
        found
    });
    assert!(
        seen,
        "no {series} within 10 s of the route in BIRD:\n{metrics}"
    );
    flood.stop();
    poll("blackhole withdrawal", 60, || {
        !lab.bird.table("master4").contains(BLACKHOLE)
    });
    lab.stop(serve);
}

/// The shipped default profile (the reply guard drops the reflection, no
/// rule does) with `[upstream]`: FlowSpec after 3 s, a blackhole whose
/// threshold the flood passes after 1 s more.
fn guarded_rules(api_port: u16) -> String {
    let default = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/default.toml"
    ))
    .expect("rules/default.toml");
    format!(
        r#"{default}
[upstream]
speaker = "gobgp"
api = "127.0.0.1:{api_port}"
interval = "250ms"
min_pps = 200
min_bps = "0"
sustain = "3s"
hold = "3s"

[upstream.blackhole]
link_capacity = "1Mbit"
share = 10
sustain = "1s"
hold = "3s"
"#
    )
}

/// An NTP server in the attacker's namespace at 198.51.100.2 answering
/// each request with a plain time reply (90-byte frame) and an
/// NTS-authenticated one (342-byte frame), and the victim asking every
/// 100 ms: the host is a client of port 123. Returns how many replies
/// the victim got so far.
struct TimeClient {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    received: Arc<std::sync::atomic::AtomicU64>,
}

const TIME_SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

impl TimeClient {
    fn start(net: &TestNet) -> TimeClient {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let server_ns = net.attacker_ns.clone();
        let flag = stop.clone();
        let server = std::thread::spawn(move || {
            TestNet::in_ns(&server_ns, || {
                let sock = UdpSocket::bind((TIME_SERVER, 123)).expect("bind the time server");
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let time = filter_testkit::frames::ntp_time_reply();
                let mut nts = time.clone();
                nts.resize(300, 0x5a);
                let mut buf = [0u8; 512];
                while !flag.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&time, from);
                        let _ = sock.send_to(&nts, from);
                    }
                }
            })
            .expect("enter the attacker namespace");
        });
        let client_ns = net.victim_ns.clone();
        let (flag, count) = (stop.clone(), received.clone());
        let client = std::thread::spawn(move || {
            TestNet::in_ns(&client_ns, || {
                let sock = UdpSocket::bind((VICTIM_V4, 0)).expect("bind the time client");
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let mut request = vec![0x23u8];
                request.resize(48, 0);
                let mut buf = [0u8; 512];
                while !flag.load(Ordering::Relaxed) {
                    let _ = sock.send_to(&request, (TIME_SERVER, 123));
                    let until = Instant::now() + Duration::from_millis(100);
                    while Instant::now() < until {
                        if sock.recv_from(&mut buf).is_ok() {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
            .expect("enter the victim namespace");
        });
        TimeClient {
            stop,
            threads: vec![server, client],
            received,
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for TimeClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The shipped profile drops the reflection with the reply guard, which
/// no rule says: the routes come from the guard's length counters, shaped
/// so that the host's own time replies (plain and NTS-sized) match none,
/// SSDP (of which the host is no client) discarded whole; the blackhole
/// comes only after FlowSpec, whose sustain is the longer.
#[test]
fn guard_drops_go_upstream_as_flowspec_that_spares_the_hosts_answers() {
    let lab = Lab::new("upg");
    let time = TimeClient::start(&lab.net);
    poll("time replies to the victim's requests", 20, || {
        time.received() >= 10
    });
    let serve = lab.serve_text("guarded.toml", &guarded_rules(lab.api_port));
    // The daemon reads the counters before the flood: the host's own
    // answers are in them by the time a route is shaped.
    std::thread::sleep(Duration::from_millis(1500));
    let flood = Flood::start(&lab.net, vec![Ipv4Addr::new(198, 51, 100, 10)], 30);
    let ntp = "flow4 { dst 192.0.2.1/32; proto 17; sport 123; length 370..65535; }";
    let ssdp = SSDP4;
    poll("the reply guard's FlowSpec routes in BIRD", 60, || {
        lab.flows("flowtab4").len() == 2
    });
    let flows = lab.flows("flowtab4");
    let mut want = vec![ntp, ssdp];
    want.sort();
    assert_eq!(nlris(&flows), want, "{flows:?}");
    for (nlri, attrs) in &flows {
        assert!(
            attrs.contains(DISCARD),
            "{nlri} is not discard:
{attrs}"
        );
    }
    // The ladder: no blackhole before the FlowSpec routes, though its own
    // sustain (1 s) is shorter than theirs (3 s).
    let log = serve.log();
    assert!(
        !log.contains("BLACKHOLE"),
        "a blackhole before FlowSpec:
{log}"
    );
    poll("a blackhole once FlowSpec did not help", 60, || {
        lab.bird.table("master4").contains(BLACKHOLE)
    });
    // The host's own answers: frames of 90 and 342 bytes, IPv4 lengths 76
    // and 328, under the route's 370; and still arriving.
    let before = time.received();
    poll("time replies during the flood", 20, || {
        time.received() > before + 10
    });
    let state = lab.upstream().expect("serve's upstream state");
    let why = state["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["route"].as_str().unwrap().contains("==123"))
        .map(|r| r["why"].as_str().unwrap().to_string())
        .expect("the NTP route in the state");
    assert!(
        why.contains("own answers from the port were frames under 384 bytes"),
        "{why}"
    );
    flood.stop();
    lab.stop(serve);
}

fn banned_sources() -> Vec<Ipv4Addr> {
    (100..140).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect()
}

#[test]
fn a_flood_from_many_banned_sources_stays_under_max_routes() {
    let lab = Lab::new("upc");
    let sources = banned_sources();
    for s in &sources {
        ok(run(
            &lab.net,
            &[
                "ban",
                &s.to_string(),
                "--for",
                "10m",
                "--iface",
                &lab.net.victim_if,
            ],
        ));
    }
    let serve = lab.serve("caps.toml", "max_routes = 3\n");
    let flood = Flood::start(&lab.net, sources, 3);
    poll("capped routes", 60, || {
        lab.upstream()
            .is_some_and(|s| s["over_cap"].as_u64() > Some(0))
            && lab.flows("flowtab4").len() == 3
    });
    // Stays capped while the flood goes on.
    std::thread::sleep(Duration::from_secs(2));
    let v4 = lab.flows("flowtab4");
    assert_eq!(v4.len(), 3, "{v4:#?}");
    assert!(lab.flows("flowtab6").is_empty(), "bans are IPv4 only");
    for (nlri, _) in &v4 {
        assert!(
            nlri.contains("src 198.51.100."),
            "not a banned source: {nlri}"
        );
    }
    let log = serve.log();
    assert!(
        log.contains("more routes qualify than max_routes = 3"),
        "{log}"
    );
    flood.stop();

    // Killed without a chance to withdraw: the routes stay announced for
    // their hold (3 s), then the keeper serve left withdraws them.
    drop(serve);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.flows("flowtab4").len(), 3, "withdrawn before the hold");
    poll("leftover routes withdrawn", 30, || {
        lab.flows("flowtab4").is_empty()
    });
    let serve = lab.serve("caps.toml", "max_routes = 3\n");
    // Flooded again, then stopped with SIGTERM: withdrawn on the way out.
    let flood = Flood::start(&lab.net, banned_sources(), 3);
    poll("capped routes again", 60, || {
        lab.flows("flowtab4").len() == 3
    });
    flood.stop();
    lab.stop(serve);
    poll("withdrawal on SIGTERM", 30, || {
        lab.flows("flowtab4").is_empty()
    });
}

#[test]
fn dry_run_announces_nothing_and_a_dead_speaker_leaves_the_filter_dropping() {
    let lab = Lab::new("upd");
    let serve = lab.serve("dry.toml", "dry_run = true\n");
    let flood = Flood::start(&lab.net, vec![Ipv4Addr::new(198, 51, 100, 10)], 30);
    poll("dry-run selection", 60, || {
        lab.upstream()
            .is_some_and(|s| s["routes"].as_array().is_some_and(|r| r.len() == 4))
    });
    let state = lab.upstream().expect("state");
    assert_eq!(state["dry_run"], true);
    assert!(
        state["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["announced"] == false),
        "{state:#}"
    );
    let log = serve.log();
    assert!(
        log.contains("dry run: would announce flowspec destination 192.0.2.1/32"),
        "{log}"
    );
    assert!(lab.flows("flowtab4").is_empty() && lab.flows("flowtab6").is_empty());
    assert!(
        lab.gobgp_rib("ipv4-flowspec")
            .contains("Network not in table")
    );
    lab.stop(serve);

    // A speaker that is not there: errors logged and counted, drops go on.
    let mut serve = lab.serve_api("dead.toml", 1, "");
    poll("speaker errors", 60, || {
        lab.upstream()
            .is_some_and(|s| s["speaker_errors"].as_u64() > Some(0))
    });
    let before = lab.rule_packets("ssdp-reflection");
    poll("drops going on", 30, || {
        lab.rule_packets("ssdp-reflection") > before + 100
    });
    serve.daemon.assert_running();
    let log = serve.log();
    assert!(
        log.contains("the BGP speaker failed (the XDP filter is unaffected"),
        "{log}"
    );
    let metrics = lab.metrics(&serve);
    assert!(
        metrics.lines().any(
            |l| l.starts_with("filterctl_upstream_speaker_errors_total{") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    assert!(lab.flows("flowtab4").is_empty());
    flood.stop();
    lab.stop(serve);
}

/// FlowSpec routes held 6 s, a blackhole (the flood passes 10% of 1 Mbit/s)
/// held 12 s: each route with a deadline of its own.
const FLOW_HOLD: Duration = Duration::from_secs(6);
const HOLE_HOLD: Duration = Duration::from_secs(12);

fn held_rules(api_port: u16) -> String {
    rules(
        api_port,
        "[upstream.blackhole]\nlink_capacity = \"1Mbit\"\nshare = 10\nsustain = \"1s\"\nhold = \"12s\"\n",
    )
    .replace("hold = \"3s\"", "hold = \"6s\"")
}

/// The route of a state file's `applied` entry as `short_key` names it
/// (families and source ports tell this test's FlowSpec routes apart).
fn router_key(route: &Value) -> String {
    if let Some(dst) = route["blackhole"]["dst"].as_str() {
        return format!("blackhole {dst}");
    }
    let f = &route["flow-spec"];
    let dst = f["dst"].as_str().expect("a FlowSpec destination");
    let sport = f["src_ports"][0].as_u64().expect("a source port");
    let family = if dst.contains(':') { "flow6" } else { "flow4" };
    format!("{family} sport {sport}")
}

/// A key of `router_routes`, shortened as `router_key` says it.
fn short_key(key: &str) -> String {
    if key.starts_with("blackhole") {
        return key.to_string();
    }
    let family = &key[..5];
    let sport = key
        .split("sport ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no sport in {key}"));
    format!("{family} sport {sport}")
}

/// The flood's five routes in BIRD (FlowSpec for SSDP and NTP in both
/// families, the IPv4 blackhole) and in serve's state file: BIRD's routes.
fn all_routes_announced(lab: &Lab, serve: &Serve) -> BTreeMap<String, String> {
    poll("FlowSpec routes and a blackhole in BIRD", 60, || {
        lab.router_routes().len() == 5
    });
    // The blackhole reaches BIRD while serve's step is still announcing:
    // its state file follows when the step ends. Both blackholes (IPv6
    // too, which BIRD does not import) and the four FlowSpec routes.
    poll("the routes in serve's state file", 10, || {
        lab.upstream()
            .is_some_and(|s| s["applied"].as_array().is_some_and(|a| a.len() == 6))
    });
    let routes = lab.router_routes();
    assert!(
        routes.contains_key("blackhole 192.0.2.1/32"),
        "{routes:#?}\n{}",
        serve.log()
    );
    routes
}

/// When BIRD learned a route, from its line (`[victim 01:51:10.754 ...]`),
/// in ms of the day.
fn learned_ms(line: &str) -> u64 {
    let time = line
        .split("[victim ")
        .nth(1)
        .and_then(|r| r.split([' ', ']']).next())
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let n: Vec<u64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    ((n[0] * 60 + n[1]) * 60 + n[2]) * 1000 + ms.parse::<u64>().unwrap()
}

/// The same routes, learned at the same time: BIRD prints a route's time
/// from its monotonic clock through the wall clock's offset now, which
/// moves by a millisecond now and then; a withdrawal and a new
/// announcement would be a second or more later (the sustain time).
fn same_routes(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, la), (kb, lb))| ka == kb && learned_ms(la).abs_diff(learned_ms(lb)) <= 250)
}

/// The deadline of each route in the state file, by `router_key`.
fn deadlines(state: &Value) -> BTreeMap<String, u64> {
    state["applied"]
        .as_array()
        .expect("applied routes")
        .iter()
        .map(|h| {
            let deadline = h["deadline_ns"]
                .as_u64()
                .unwrap_or_else(|| panic!("no deadline in {h}"));
            (router_key(&h["route"]), deadline)
        })
        .collect()
}

/// Serve killed (SIGKILL) while its routes are announced: the keeper it
/// left withdraws each at its own deadline (the last time serve saw its
/// flood, plus its hold), not before, not long after, and exits.
#[test]
fn a_killed_serve_leaves_each_route_until_its_own_deadline() {
    let lab = Lab::new("upk");
    let mut serve = lab.serve_text("held.toml", &held_rules(lab.api_port));
    let flood = Flood::start(&lab.net, vec![Ipv4Addr::new(198, 51, 100, 10)], 30);
    let announced = all_routes_announced(&lab, &serve);
    serve.kill();
    let killed = monotonic_ns();
    flood.stop();
    let state = lab.upstream().expect("the state file a killed serve left");

    // Polled every ~200 ms until the last hold has passed, with room.
    let until = killed + (HOLE_HOLD + Duration::from_secs(8)).as_nanos() as u64;
    let mut gone: BTreeMap<String, u64> = BTreeMap::new();
    while monotonic_ns() < until && gone.len() < announced.len() {
        let now = lab.router_routes();
        let seen = monotonic_ns();
        for key in announced.keys() {
            match (now.contains_key(key), gone.contains_key(key)) {
                (false, false) => {
                    gone.insert(key.clone(), seen);
                }
                (true, true) => panic!("{key} came back:\n{}", serve.log()),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The issue's measure: each gone at serve's death plus its hold, give
    // or take 5 s (the flood ran until serve was killed).
    for key in announced.keys() {
        let hold = if key.starts_with("blackhole") {
            HOLE_HOLD
        } else {
            FLOW_HOLD
        };
        let Some(at) = gone.get(key) else {
            panic!(
                "{key} still announced {:?} after serve was killed, its hold is {hold:?}:\n{}",
                Duration::from_nanos(monotonic_ns() - killed),
                serve.log()
            );
        };
        let after = Duration::from_nanos(at - killed);
        assert!(
            after + Duration::from_secs(5) >= hold && after <= hold + Duration::from_secs(5),
            "{key} withdrawn {after:?} after serve was killed, its hold is {hold:?}"
        );
    }
    // And each at the deadline serve wrote for it: never before, within
    // 5 s after (the keeper wakes at the deadline; BIRD hears at once).
    let deadlines = deadlines(&state);
    for (key, at) in &gone {
        let deadline = deadlines[&short_key(key)];
        assert!(
            *at >= deadline && *at - deadline <= 5_000_000_000,
            "{key} withdrawn {} ms after its deadline",
            (*at as i64 - deadline as i64) / 1_000_000
        );
    }
    let log = serve.log();
    assert!(
        log.contains("stopped without withdrawing 6 routes: withdrawing each at its deadline"),
        "{log}"
    );
    assert!(
        log.contains("withdrew blackhole 192.0.2.1/32 community 65535:666 at its deadline"),
        "{log}"
    );
    // Nothing left: the IPv6 blackhole went too, then the file and the
    // keeper.
    poll("the keeper's exit", 10, || lab.keepers().is_empty());
    assert!(lab.upstream().is_none(), "the keeper left the state file");
    let rib = lab.gobgp_rib("ipv6");
    assert!(rib.contains("Network not in table"), "{rib}");
}

/// Serve killed, its keeper holding the routes; a new serve started
/// before their deadlines while the flood goes on takes them over: BIRD's
/// routes, polled every ~200 ms until well past the old deadlines, are the
/// same ones learned at the same time (no withdrawal, no new announcement),
/// and the new serve owns them.
#[test]
fn a_serve_restarted_in_time_takes_the_routes_over_unseen_by_the_router() {
    let lab = Lab::new("upr");
    let text = held_rules(lab.api_port);
    let mut first = lab.serve_text("first.toml", &text);
    let flood = Flood::start(&lab.net, vec![Ipv4Addr::new(198, 51, 100, 10)], 30);
    let announced = all_routes_announced(&lab, &first);
    first.kill();
    let killed = monotonic_ns();
    let deadlines = deadlines(&lab.upstream().expect("the state file a killed serve left"));
    poll("the keeper holding the routes", 10, || {
        lab.upstream()
            .is_some_and(|s| s["owner"]["role"] == "keeper")
    });
    let keeper = lab.upstream().expect("state")["owner"]["pid"]
        .as_u64()
        .expect("the keeper's pid") as u32;

    let second = lab.serve_text("second.toml", &text);
    let last = *deadlines.values().max().expect("deadlines");
    let until = last + 8_000_000_000;
    while monotonic_ns() < until {
        let now = lab.router_routes();
        assert!(
            same_routes(&now, &announced),
            "BIRD's routes changed {} ms after the first serve was killed: {now:#?}, were {announced:#?}\n{}",
            (monotonic_ns() - killed) / 1_000_000,
            second.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let state = lab.upstream().expect("the new serve's state");
    assert_eq!(state["owner"]["role"], "serve", "{state:#}");
    assert_eq!(state["owner"]["pid"], second.daemon.pid(), "{state:#}");
    assert_eq!(
        state["applied"].as_array().map(Vec::len),
        Some(6),
        "{state:#}"
    );
    assert!(
        !lab.keepers().contains(&keeper),
        "the old keeper (pid {keeper}) still runs"
    );
    let log = second.log();
    assert!(
        log.contains("6 routes left announced by a serve that stopped without withdrawing them: taking them over"),
        "{log}"
    );
    // The keeper writes where the serve that started it did.
    let kept = first.log();
    assert!(
        kept.contains("leaving its 6 routes to the next serve"),
        "{kept}"
    );

    // Stopped cleanly: everything withdrawn, its keeper gone.
    flood.stop();
    lab.stop(second);
    poll("withdrawal on SIGTERM", 30, || {
        lab.router_routes().is_empty()
    });
    poll("the keeper's exit", 10, || lab.keepers().is_empty());
    assert!(lab.upstream().is_none(), "serve left its state file");
}
