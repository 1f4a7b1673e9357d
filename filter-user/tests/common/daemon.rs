//! A long-running filterctl (`serve`) started by a test: killed on every
//! exit path, its log printed when the test fails.

use std::{
    fs::File,
    net::TcpListener,
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
        Daemon { child, log }
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
            panic!("serve exited ({st}):\n{}", self.log());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- filterctl serve log ---\n{}", self.log());
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
