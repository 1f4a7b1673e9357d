//! Real programs on the test hosts: daemons stopped on every path, the
//! resolver (dnsmasq) and time server (chronyd) on the attacker side, dig
//! and chronyd's one-shot client on the victim's.

use std::process::{Child, Stdio};

use filter_testkit::net::{ATTACKER_V4, ATTACKER_V6, TestNet};

use crate::common::cli::TempDir;

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

/// The victim's time server: chronyd serving its local clock at the
/// attacker side's addresses (IPv4 and IPv6), its files in `files`.
pub fn time_server(net: &TestNet, files: &TempDir) -> Daemon {
    let conf = files.write(
        "server.conf",
        &format!(
            "local stratum 1\nallow all\nbindaddress {ATTACKER_V4}\nbindaddress {ATTACKER_V6}\ncmdport 0\npidfile {}/s.pid\n",
            files.path().display()
        ),
    );
    let d = spawn(
        &net.attacker_ns,
        "chronyd",
        &["-d", "-x", "-u", "root", "-f", &conf],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    d
}

/// One chronyd -Q measurement in namespace `ns` against the time server
/// (the clock is never set), from `port` when given: whether it synced.
pub fn chrony_sync(ns: &str, files: &TempDir, port: Option<u16>) -> bool {
    let mut conf = format!(
        "server {ATTACKER_V4} iburst\ncmdport 0\npidfile {}/c.pid\n",
        files.path().display()
    );
    if let Some(p) = port {
        conf.push_str(&format!("acquisitionport {p}\n"));
    }
    let path = files.write("client.conf", &conf);
    let out = TestNet::command_in(ns, "chronyd")
        .args(["-Q", "-u", "root", "-t", "10", "-f", &path])
        .output()
        .expect("run chronyd (cargo xtask setup installs it)");
    let text = String::from_utf8_lossy(&out.stderr);
    out.status.success() && text.contains("System clock wrong by")
}

/// dnsmasq (a local zone with a TXT answer, big.test, larger than the
/// MTU: it arrives fragmented) and the time server on the attacker side,
/// the victim's resolver and time server.
pub fn start_peers(net: &TestNet, files: &TempDir) -> [Daemon; 2] {
    let big: String = (0..12)
        .map(|i| format!("\"{}\"", char::from(b'a' + i).to_string().repeat(250)))
        .collect::<Vec<_>>()
        .join(",");
    let dns = resolver(
        net,
        &[
            "--edns-packet-max=4096",
            &format!("--txt-record=big.test,{big}"),
        ],
    );
    [dns, time_server(net, files)]
}
