//! `filterctl serve` under abuse, run as the real binary in the victim's
//! namespace with the filter loaded: 1,100 idle connections and a few
//! slow-loris ones (a header sent a byte at a time) neither stop a scrape
//! nor a reload of the watched rule file, and the server closes them; at
//! the open-file limit (lowered on the running daemon) accepting pauses
//! without spinning or dying and a reload that failed is retried once
//! files are back; and, on the accept loop itself with small limits, the
//! connection cap, the lifetime cap and the bounded drain. Needs root.

use crate::common;

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::cli::{TempDir, load_default, ok, run, status};
use common::daemon::{Daemon, free_port, serve_command, wait_until};
use filter_testkit::net::TestNet;

/// Idle connections opened against the daemon: more than the usual
/// 1024-file limit the daemon starts with.
const IDLE: usize = 1100;
const SLOW_LORIS: usize = 4;
/// The longest any connection may stay open once the server should have
/// closed it (its limits are 5 s for a header, 30 s in all).
const CLOSE_WITHIN: Duration = Duration::from_secs(40);

fn nofile(pid: libc::pid_t) -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid resource, no new limit, a writable old one.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut lim) };
    assert_eq!(rc, 0, "prlimit({pid}): {}", std::io::Error::last_os_error());
    lim
}

fn set_nofile(pid: libc::pid_t, lim: libc::rlimit) {
    // SAFETY: a valid resource and an initialised limit.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(
        rc,
        0,
        "prlimit({pid}, {}): {}",
        lim.rlim_cur,
        std::io::Error::last_os_error()
    );
}

impl Daemon {
    /// `serve` watching `rules` on a free loopback port, started with the
    /// usual soft limit of 1024 open files.
    fn start_limited(net: &TestNet, files: &TempDir, rules: &str) -> (Daemon, u16) {
        let port = free_port(net);
        let hard = nofile(0).rlim_max;
        let mut cmd = serve_command(net, port, rules);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: 1024.min(hard),
                    rlim_max: hard,
                };
                match libc::setrlimit(libc::RLIMIT_NOFILE, &lim) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            })
        };
        let mut daemon = Daemon::spawn(cmd, files.path().join("serve.log"));
        wait_until("serve to answer", 10, || {
            daemon.assert_running();
            scrape(net, port, "/").is_some()
        });
        (daemon, port)
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// User plus system CPU time so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// SIGTERM: must exit with status 0 within a few seconds.
    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        wait_until("serve to stop on SIGTERM", 10, || {
            self.child.try_wait().unwrap().is_some()
        });
        let st = self.child.try_wait().unwrap().unwrap();
        assert!(st.success(), "serve exited with {st}:\n{}", self.log());
    }
}

/// Connections to the daemon, opened in the victim's namespace.
fn connect(net: &TestNet, port: u16, n: usize) -> Vec<TcpStream> {
    TestNet::in_ns(&net.victim_ns, move || {
        (0..n)
            .map(|i| {
                TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
                    .unwrap_or_else(|e| panic!("connection {i} of {n}: {e}"))
            })
            .collect()
    })
    .unwrap()
}

/// The body of a 200 answer to GET `path`, by a client that gives up after
/// a few seconds; None when it got no such answer.
fn scrape(net: &TestNet, port: u16, path: &str) -> Option<String> {
    let mut s = connect_within(net, port)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let reply = read_reply(&mut s)?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    ok_status(head).then(|| body.to_string())
}

/// Whether an HTTP response head says 200, whatever its version.
fn ok_status(head: &str) -> bool {
    head.split_whitespace().nth(1) == Some("200")
}

fn connect_within(net: &TestNet, port: u16) -> Option<TcpStream> {
    TestNet::in_ns(&net.victim_ns, || {
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .ok()
    })
    .unwrap()
}

fn read_reply(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// Reads each connection until the server closes it (end of file, or a
/// reset when it closed with our bytes unread); returns what each got.
fn assert_closed_by_server(conns: Vec<TcpStream>, what: &str) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + CLOSE_WITHIN;
    conns
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let mut got = Vec::new();
            let mut buf = [0; 4096];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .unwrap();
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                    Err(e) => panic!(
                        "{what} connection {i} still open {CLOSE_WITHIN:?} after the test opened it ({e})"
                    ),
                }
            }
            got
        })
        .collect()
}

/// Slow-loris clients: a request line and then a header that never ends,
/// one byte every half second, until `done`.
fn slow_loris(conns: &[TcpStream], done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut conns: Vec<TcpStream> = conns.iter().map(|c| c.try_clone().unwrap()).collect();
    for c in &mut conns {
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .unwrap();
    }
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            for c in &mut conns {
                // Fails once the server has closed it: that is expected.
                let _ = c.write_all(b"a");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

fn digest(net: &TestNet) -> String {
    status(net)["rules_digest"].as_str().unwrap().to_string()
}

/// The default rules and one more: a new digest.
fn with_rule(default: &str, name: &str) -> String {
    format!(
        "{default}\n[[rule]]\nname = \"{name}\"\nprotocol = \"udp\"\nsrc_port = 19\naction = \"drop\"\n"
    )
}

#[test]
fn idle_and_slow_clients_starve_neither_scrapes_nor_reloads() {
    common::require_bpf();
    let mut own = nofile(0);
    assert!(
        own.rlim_max >= 2 * IDLE as u64,
        "this test holds {IDLE} connections: the hard open-file limit {} is too low",
        own.rlim_max
    );
    own.rlim_cur = own.rlim_max;
    set_nofile(0, own);

    let net = TestNet::new("lim").expect("create test namespaces");
    let files = TempDir::new("serve-limits");
    let (rules, default) = load_default(&net, &files);
    let (mut daemon, port) = Daemon::start_limited(&net, &files, &rules);
    let d0 = digest(&net);

    // A client that asks once on a kept-alive connection, then idles.
    let mut kept = connect(&net, port, 1);
    write!(kept[0], "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let loris = connect(&net, port, SLOW_LORIS);
    let done = Arc::new(AtomicBool::new(false));
    let trickle = slow_loris(&loris, done.clone());
    let idle = connect(&net, port, IDLE);

    // Scrapes may be refused while the idle clients hold every slot; they
    // must get through once the server has closed them.
    let mut body = None;
    wait_until("a scrape of /metrics to succeed", 60, || {
        daemon.assert_running();
        body = scrape(&net, port, "/metrics");
        body.is_some()
    });
    assert!(
        body.unwrap().ends_with("# EOF\n"),
        "a whole OpenMetrics text"
    );

    files.write("rules.toml", &with_rule(&default, "chargen"));
    wait_until("the watched rule file to be reloaded", 20, || {
        digest(&net) != d0
    });
    assert_eq!(status(&net)["rule_count"], 4);
    assert!(scrape(&net, port, "/metrics").is_some(), "a scrape after");

    assert_closed_by_server(idle, "idle");
    assert_closed_by_server(loris, "slow-loris");
    done.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    let kept = assert_closed_by_server(kept, "kept-alive");
    let answer = String::from_utf8_lossy(&kept[0]);
    assert!(
        ok_status(&answer),
        "the kept-alive client got its answer before the idle limit: {answer:?}"
    );
    daemon.assert_running();
    daemon.stop();
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}

/// The lowest `n` open-file numbers the process `pid` does not use: with
/// its soft limit set to the last of them plus one, it can open `n` more
/// files and no more.
fn limit_leaving(pid: libc::pid_t, n: usize) -> u64 {
    let used: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).filter(|fd| !used.contains(fd)).nth(n - 1).unwrap() + 1
}

#[test]
fn accepts_pause_and_reloads_retry_at_the_file_limit() {
    common::require_bpf();
    let net = TestNet::new("fdl").expect("create test namespaces");
    let files = TempDir::new("serve-fd");
    let (rules, default) = load_default(&net, &files);
    let (mut daemon, port) = Daemon::start_limited(&net, &files, &rules);
    let pid = daemon.pid();
    let normal = nofile(pid);
    let d0 = digest(&net);

    // Enough files to read the rule file, too few to load a program
    // generation: the reload fails, and is retried once files are back.
    set_nofile(
        pid,
        libc::rlimit {
            rlim_cur: limit_leaving(pid, 2),
            ..normal
        },
    );
    files.write("rules.toml", &with_rule(&default, "chargen"));
    wait_until("a reload failed for want of files", 20, || {
        daemon.log().contains("Too many open files")
    });
    assert_eq!(digest(&net), d0, "a failed reload changed the rules");
    set_nofile(pid, normal);
    wait_until("the failed reload to be retried", 20, || digest(&net) != d0);

    // No file at all: a connection waits in the backlog, and the accept
    // loop pauses between attempts rather than spinning or exiting.
    set_nofile(
        pid,
        libc::rlimit {
            rlim_cur: 0,
            ..normal
        },
    );
    let mut waiting = connect(&net, port, 1).remove(0);
    write!(waiting, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    wait_until("an accept failing for want of files", 20, || {
        daemon.log().contains("cannot accept connections")
    });
    let (ticks, t0) = (daemon.cpu_ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let busy = (daemon.cpu_ticks() - ticks) as f64 / hz / t0.elapsed().as_secs_f64();
    daemon.assert_running();
    assert!(
        busy < 0.25,
        "serve used {:.0}% of a CPU while it could not accept: it spins",
        busy * 100.0
    );
    let log = daemon.log();
    assert_eq!(
        log.matches("cannot accept connections").count(),
        1,
        "one message per burst:\n{log}"
    );
    set_nofile(pid, normal);
    let reply = {
        waiting
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut r = String::new();
        waiting.read_to_string(&mut r).expect("the waiting scrape");
        r
    };
    assert!(
        ok_status(&reply) && reply.ends_with("# EOF\n"),
        "the waiting scrape is served once files are back: {reply:?}"
    );
    wait_until("the end of the burst to be logged", 10, || {
        daemon.log().contains("accepting connections again")
    });
    daemon.stop();
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}

/// Whether the server has not closed `s` (nothing to read yet).
fn still_open(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let open = matches!(s.read(&mut [0; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

/// The limits that the flood above cannot reach, on the library's own
/// accept loop with small values and a handler that never answers: a
/// connection over the cap is closed at once while the others stay, a
/// request in progress is cut at the connection's lifetime, and a stop
/// returns after the drain even with a request still in progress.
#[test]
fn connections_are_capped_cut_at_their_lifetime_and_drained() {
    use axum::{Router, routing::get};
    use filterctl::serve::http::{Limits, serve};
    use std::sync::atomic::AtomicUsize;

    let net = TestNet::new("cap").expect("create test namespaces");
    // The socket belongs to the namespace it was made in, whichever thread
    // then serves it.
    let listener = TestNet::in_ns(&net.victim_ns, || {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    })
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let hanging = Arc::new(AtomicUsize::new(0));
    let entered = hanging.clone();
    let router = Router::new().route("/", get(|| async { "ok" })).route(
        "/hang",
        get(move || async move {
            entered.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<&'static str>().await
        }),
    );
    let limits = Limits {
        header_read: Duration::from_secs(5),
        lifetime: Duration::from_secs(6),
        max_connections: 2,
        drain: Duration::from_secs(1),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener, router, limits, async {
                let _ = stopped.await;
            })
            .await;
        });
    });

    let mut held = connect(&net, port, 2);
    for c in &mut held {
        write!(c, "GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    }
    wait_until("two requests in progress", 10, || {
        hanging.load(Ordering::SeqCst) == 2
    });
    let over = assert_closed_by_server(connect(&net, port, 1), "over-the-cap");
    assert!(over[0].is_empty(), "no answer over the cap: {over:?}");
    assert!(
        held.iter_mut().all(still_open),
        "the connections under the cap stay while a new one is refused"
    );
    for got in assert_closed_by_server(held, "in-progress") {
        assert!(got.is_empty(), "a request that never ends gets no answer");
    }
    assert!(
        scrape(&net, port, "/").is_some(),
        "slots free once the connections were cut"
    );

    let mut last = connect(&net, port, 1).remove(0);
    write!(last, "GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    wait_until("a third request in progress", 10, || {
        hanging.load(Ordering::SeqCst) == 3
    });
    stop.send(()).unwrap();
    wait_until("serve to return after its drain", 10, || {
        server.is_finished()
    });
    server.join().expect("the server thread");
}
