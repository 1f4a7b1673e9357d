//! Daemons the tests start (filterctl serve, Prometheus) in the victim's
//! namespace, and HTTP to them on its loopback.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::Child,
    time::{Duration, Instant},
};

use filter_testkit::net::TestNet;

/// The daemon, killed on every exit path; its log is printed when the test
/// fails.
pub struct Daemon {
    /// What the log is of, for the failure message.
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
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

/// Polls `cond` every 100 ms; panics naming `what` after `secs` seconds.
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
