//! Real programs on the test hosts: daemons stopped on every path, the
//! resolver (dnsmasq) on the attacker side and dig on the victim's.

use std::process::{Child, Stdio};

use filter_testkit::net::TestNet;

/// A daemon in a test namespace, stopped (by its own pid) on every path.
pub struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(ns: &str, program: &str, args: &[&str]) -> Daemon {
    let child = TestNet::command_in(ns, program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} (cargo xtask setup installs it): {e}"));
    Daemon(child)
}

/// dnsmasq answering a local zone (ok.test A 198.51.100.10) on `listen`
/// in namespace `ns`, plus `extra` options.
pub fn dnsmasq(ns: &str, listen: &str, extra: &[&str]) -> Daemon {
    let listen = format!("--listen-address={listen}");
    let mut args = vec![
        "-k",
        "--conf-file=/dev/null",
        "--user=root",
        "--pid-file=",
        &listen,
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--address=/ok.test/198.51.100.10",
    ];
    args.extend_from_slice(extra);
    let d = spawn(ns, "dnsmasq", &args);
    std::thread::sleep(std::time::Duration::from_millis(300));
    d
}

/// The victim's resolver: dnsmasq at 192.0.2.2, on the attacker side.
pub fn resolver(net: &TestNet, extra: &[&str]) -> Daemon {
    dnsmasq(&net.attacker_ns, "192.0.2.2", extra)
}

/// dig at the resolver from the victim, one try of `secs` seconds over UDP
/// (EDNS buffer 4096): the short answer, if any.
pub fn dig(net: &TestNet, name: &str, kind: &str, secs: u32) -> Option<String> {
    let out = TestNet::command_in(&net.victim_ns, "dig")
        .args([
            "@192.0.2.2",
            name,
            kind,
            "+bufsize=4096",
            "+notcp",
            "+ignore",
        ])
        .arg("+tries=1")
        .arg(format!("+time={secs}"))
        .arg("+short")
        .output()
        .expect("run dig (cargo xtask setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.trim().is_empty()).then_some(text)
}
