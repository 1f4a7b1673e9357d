//! `filterctl serve` with its watched rule file replaced, in turn, by what
//! would freeze or bloat a careless reader: a FIFO (a blocking open waits
//! for a writer), a symlink to /dev/zero (a read never ends) and a 256 MiB
//! sparse file. Throughout, /metrics answers (nine in ten within 100 ms)
//! and the daemon stays under 50 MB; each is refused once, logged once and counted as an
//! invalid reload while the running rules stay; a good file put back is
//! reloaded; with a FIFO there again, SIGHUP is handled and SIGTERM stops
//! the daemon within 2 s. Needs root.

use crate::common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use common::cli::{TempDir, load_default, ok, run, status};
use common::daemon::{Daemon, reloads, wait_until};
use filter_testkit::net::TestNet;

/// The slowest a scrape may be, whatever is at the watched path: a frozen
/// daemon never answers, and a busy 2-core CI machine may delay one
/// answer well past its usual 10 ms.
const SCRAPE_WITHIN: Duration = Duration::from_secs(1);
/// What nine scrapes in ten take at most (the 100 ms).
const P90_WITHIN: Duration = Duration::from_millis(100);
/// The most memory the daemon may hold, whatever is at the watched path.
const RSS_UNDER_KB: u64 = 50 * 1024;
/// How long each file stays at the path: three checks of it and more.
const HOLD: Duration = Duration::from_millis(3500);
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// What a stretch of back-to-back scrapes saw.
struct Probe {
    scrapes: usize,
    /// How long each whole answer took.
    took: Vec<Duration>,
    /// Scrapes without a whole answer, or slower than `SCRAPE_WITHIN`.
    bad: Vec<String>,
    peak_rss_kb: u64,
}

impl Probe {
    fn assert_responsive(&self, what: &str) {
        let mut took = self.took.clone();
        took.sort();
        let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        eprintln!(
            "{what}: {} scrapes, median {:.1} ms, slowest {:.1} ms, peak VmRSS {} kB",
            self.scrapes,
            ms(took.get(took.len() / 2)),
            ms(took.last()),
            self.peak_rss_kb
        );
        let p90 = took.get(took.len() * 9 / 10).copied().unwrap_or_default();
        assert!(
            p90 < P90_WITHIN,
            "{what}: one scrape in ten took {:.1} ms or more",
            p90.as_secs_f64() * 1e3
        );
        assert!(
            self.bad.is_empty(),
            "{what}: {} of {} scrapes failed or took over {SCRAPE_WITHIN:?}: {:?}",
            self.bad.len(),
            self.scrapes,
            self.bad
        );
        assert!(
            self.peak_rss_kb < RSS_UNDER_KB,
            "{what}: serve held {} kB (VmRSS), over {RSS_UNDER_KB} kB",
            self.peak_rss_kb
        );
    }
}

/// The resident memory of process `pid`, in kB.
fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// One GET /metrics, timed from the connection to the end of the answer;
/// the answer must be a whole OpenMetrics text.
fn timed_scrape(port: u16) -> Result<Duration, String> {
    let t0 = Instant::now();
    let give_up = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), give_up)
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(give_up)).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("no answer within {give_up:?}: {e}"))?;
    let took = t0.elapsed();
    if !(reply.starts_with("HTTP/1.0 200") && reply.ends_with("# EOF\n")) {
        let head = reply.lines().next().unwrap_or("nothing");
        return Err(format!("not a whole OpenMetrics answer: {head:?}"));
    }
    Ok(took)
}

/// Scrapes /metrics back to back for `how_long`, from inside the victim's
/// namespace, and reads the daemon's memory after each.
fn probe(net: &TestNet, port: u16, pid: u32, how_long: Duration) -> Probe {
    TestNet::in_ns(&net.victim_ns, move || {
        let end = Instant::now() + how_long;
        let mut p = Probe {
            scrapes: 0,
            took: Vec::new(),
            bad: Vec::new(),
            peak_rss_kb: 0,
        };
        while Instant::now() < end {
            p.scrapes += 1;
            match timed_scrape(port) {
                Ok(took) => {
                    if took >= SCRAPE_WITHIN {
                        p.bad.push(format!("{:.1} ms", took.as_secs_f64() * 1e3));
                    }
                    p.took.push(took);
                }
                Err(e) => p.bad.push(e),
            }
            p.peak_rss_kb = p.peak_rss_kb.max(vm_rss_kb(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    })
    .unwrap()
}

/// Puts what `make` creates at `rules` in one step (a rename), as an
/// editor or a deployment would.
fn replace(rules: &Path, make: impl FnOnce(&Path)) {
    let next = rules.with_file_name("next");
    let _ = std::fs::remove_file(&next);
    make(&next);
    std::fs::rename(&next, rules).unwrap();
}

/// What is put at the watched path, and what the log says of it.
struct Hostile {
    what: &'static str,
    make: fn(&Path),
    refusal: &'static str,
}

const HOSTILE: [Hostile; 3] = [
    Hostile {
        what: "a FIFO",
        make: fifo,
        refusal: "is a FIFO, not a regular file",
    },
    Hostile {
        what: "a symlink to /dev/zero",
        make: dev_zero,
        refusal: "is a device, not a regular file",
    },
    Hostile {
        what: "a 256 MiB sparse file",
        make: sparse,
        refusal: "is larger than 1048576 bytes",
    },
];

fn fifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn dev_zero(p: &Path) {
    std::os::unix::fs::symlink("/dev/zero", p).unwrap();
}

fn sparse(p: &Path) {
    std::fs::File::create(p)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
}

fn digest(net: &TestNet) -> String {
    status(net)["rules_digest"].as_str().unwrap().to_string()
}

#[test]
fn whatever_is_at_the_watched_path_serve_stays_responsive() {
    common::require_bpf();
    let net = TestNet::new("sfl").expect("create test namespaces");
    let files = TempDir::new("serve-files");
    let (rules, default) = load_default(&net, &files);
    let path = Path::new(&rules);
    let (mut daemon, port) = Daemon::start(
        &net,
        files.path().join("serve.log"),
        &["--iface", &net.victim_if, "--rules", &rules],
    );
    let pid = daemon.child.id();
    let d0 = digest(&net);
    probe(&net, port, pid, HOLD).assert_responsive("a good rule file");
    assert_eq!(reloads(&net, port), [0, 0, 0], "what runs is the file");

    for (n, h) in (1..).zip(HOSTILE) {
        let what = h.what;
        replace(path, h.make);
        probe(&net, port, pid, HOLD).assert_responsive(what);
        daemon.assert_running();
        assert_eq!(
            reloads(&net, port),
            [0, n, 0],
            "{what}: one invalid reload over {HOLD:?} of checks"
        );
        let log = daemon.log();
        assert_eq!(
            log.matches(h.refusal).count(),
            1,
            "{what}: refused and logged once:\n{log}"
        );
        assert_eq!(digest(&net), d0, "{what}: the running rules stay");
    }

    // A good file put back, with a rule more: reloaded.
    let good = format!(
        "{default}\n[[rule]]\nname = \"chargen\"\nprotocol = \"udp\"\nsrc_port = 19\naction = \"drop\"\n"
    );
    replace(path, |p| std::fs::write(p, &good).unwrap());
    wait_until("the good file to be reloaded", 10, || digest(&net) != d0);
    assert_eq!(status(&net)["rule_count"], 4);
    assert_eq!(reloads(&net, port), [1, 3, 0]);

    // A FIFO again, and SIGHUP: each an invalid reload, still serving.
    replace(path, fifo);
    wait_until("the FIFO to be noticed", 10, || {
        reloads(&net, port) == [1, 4, 0]
    });
    daemon.signal(libc::SIGHUP);
    probe(&net, port, pid, HOLD).assert_responsive("a FIFO and SIGHUP");
    assert_eq!(reloads(&net, port), [1, 5, 0], "SIGHUP tried the FIFO");

    daemon.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let exit = loop {
        if let Some(st) = daemon.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < STOP_WITHIN,
            "serve did not stop within {STOP_WITHIN:?} of SIGTERM with a FIFO at its watched path"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!(
        "SIGTERM with a FIFO at the path: stopped in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        exit.success(),
        "serve exited with {exit}:\n{}",
        daemon.log()
    );
    ok(run(&net, &["unload", "--iface", &net.victim_if]));
}
