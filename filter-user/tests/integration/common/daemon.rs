//! `filterctl serve` as the tests run it: the daemon process (killed on
//! every exit path, its log printed when the test fails), HTTP GETs from
//! inside the victim's namespace, and a strict OpenMetrics parser.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use filter_testkit::net::TestNet;

use crate::common::cli::command;

/// A free loopback port in the victim's namespace.
pub fn free_port(net: &TestNet) -> u16 {
    TestNet::in_ns(&net.victim_ns, || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
    .unwrap()
}

/// `filterctl serve` on loopback `port` in the victim's namespace, its
/// interface's rules following `rules`.
pub fn serve_command(net: &TestNet, port: u16, rules: &str) -> Command {
    command(
        net,
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--iface",
            &net.victim_if,
            "--rules",
            rules,
        ],
    )
}

pub struct Daemon {
    /// What the log is of, for the failure message.
    pub name: &'static str,
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with its stderr in `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Daemon {
        let child = cmd
            // The daemon's own default log level (info) is under test.
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start filterctl serve");
        Daemon {
            name: "filterctl serve",
            child,
            log,
        }
    }

    /// `filterctl serve` on a free loopback port of the victim, with
    /// `args` after it and its log in `log`, answering HTTP; and its port.
    pub fn start(net: &TestNet, log: PathBuf, args: &[&str]) -> (Daemon, u16) {
        let port = free_port(net);
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec!["serve", "--listen", &listen];
        all.extend_from_slice(args);
        let mut daemon = Daemon::spawn(command(net, &all), log);
        wait_until("serve to answer", 10, || {
            daemon.assert_running();
            get(net, port, "/").is_some_and(|r| r.status == 200)
        });
        (daemon, port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: a signal to our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    pub fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("{} exited ({st}):\n{}", self.name, self.log());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
    }
}

/// Polls `cond` until it holds; panics after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// HTTP/1.0 GET from a thread inside the victim's namespace, where the
/// daemon listens on loopback. None when nothing answers.
pub fn get(net: &TestNet, port: u16, path: &str) -> Option<Reply> {
    let path = path.to_string();
    TestNet::in_ns(&net.victim_ns, move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let (head, body) = resp.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let content_type = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map_or(String::new(), |(_, v)| v.trim().to_string());
        Some(Reply {
            status,
            content_type,
            body: body.to_string(),
        })
    })
    .unwrap()
}

pub type Series = (String, Vec<(String, String)>);

/// An OpenMetrics text exposition, checked as it is parsed: every family
/// has HELP and TYPE before its samples, every sample belongs to the family
/// before it with the suffix its type requires, no series twice, `# EOF`
/// last.
pub struct Exposition {
    /// Family name -> type.
    pub types: BTreeMap<String, String>,
    pub samples: BTreeMap<Series, f64>,
}

pub fn parse_labels(mut s: &str, line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {key:?} in {line:?}"
        );
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        out.push((key.to_string(), value));
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    out.sort();
    out
}

pub fn parse_openmetrics(text: &str) -> Exposition {
    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("no closing # EOF:\n{text}"));
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let mut family: Option<(String, String)> = None;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.trim().is_empty(), "empty help: {line:?}");
            assert!(
                helps.insert(name.to_string(), help.to_string()).is_none(),
                "HELP twice for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            assert!(
                [
                    "counter",
                    "gauge",
                    "info",
                    "histogram",
                    "summary",
                    "unknown"
                ]
                .contains(&ty),
                "bad type in {line:?}"
            );
            assert!(helps.contains_key(name), "TYPE before HELP: {line:?}");
            assert!(
                types.insert(name.to_string(), ty.to_string()).is_none(),
                "TYPE twice for {name}"
            );
            family = Some((name.to_string(), ty.to_string()));
        } else if line.starts_with('#') {
            panic!("unexpected comment line {line:?} (or # EOF before the end)");
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (
                    n,
                    parse_labels(
                        rest.strip_suffix('}').expect("closing brace of the labels"),
                        line,
                    ),
                ),
                None => (series, Vec::new()),
            };
            assert!(
                name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            let (fam, ty) = family.as_ref().expect("sample before any TYPE");
            let suffix = match ty.as_str() {
                "counter" => "_total",
                "info" => "_info",
                "gauge" => "",
                other => panic!("unexpected type {other}"),
            };
            assert_eq!(
                name,
                format!("{fam}{suffix}"),
                "sample outside its family: {line:?}"
            );
            if ty == "counter" {
                assert!(value >= 0.0 && value.fract() == 0.0, "{line:?}");
            }
            assert!(
                samples.insert((name.to_string(), labels), value).is_none(),
                "series twice: {line:?}"
            );
        }
    }
    Exposition { types, samples }
}

pub fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    (name.to_string(), l)
}

/// filterctl_reloads_total of the interface: ok, invalid, failed.
pub fn reloads(net: &TestNet, port: u16) -> [u64; 3] {
    let m = get(net, port, "/metrics").expect("/metrics answers");
    let expo = parse_openmetrics(&m.body);
    ["ok", "invalid", "failed"].map(|r| {
        expo.samples[&series(
            "filterctl_reloads_total",
            &[("interface", &net.victim_if), ("result", r)],
        )] as u64
    })
}
