//! BGP daemons for the upstream tests: GoBGP, the speaker filterctl drives,
//! in the victim's namespace, and BIRD 2 as the router in front of it,
//! peering over the router link (private ASNs, documentation addresses).
//! Each daemon is killed when its value drops, on panics too, and its log
//! is printed when a test fails.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;

use crate::net::{ROUTER_LINK_VICTIM_V4, ROUTER_V4, TestNet};

pub const VICTIM_ASN: u32 = 64513;
pub const ROUTER_ASN: u32 = 64512;

/// A daemon started by a test.
pub struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with its output in `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Daemon> {
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {name} (cargo xtask setup installs it)"))?;
        Ok(Daemon { name, child, log })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the daemon has exited.
    pub fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().expect("wait for a daemon") {
            panic!("{} exited ({st}):\n{}", self.name, self.log());
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for it to exit by itself (after a signal the test sent).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for a daemon")
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

/// gobgpd in the victim's namespace, its API on 127.0.0.1:`api_port`
/// there, peering with the router for IPv4/IPv6 unicast and FlowSpec.
pub fn gobgpd(net: &TestNet, dir: &Path, api_port: u16) -> anyhow::Result<Daemon> {
    let conf = dir.join("gobgpd.toml");
    let mut text = format!(
        "[global.config]\n  as = {VICTIM_ASN}\n  router-id = \"{ROUTER_LINK_VICTIM_V4}\"\n  port = 179\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{ROUTER_V4}\"\n    peer-as = {ROUTER_ASN}\n\
         \x20 [neighbors.timers.config]\n    connect-retry = 1\n"
    );
    for family in [
        "ipv4-unicast",
        "ipv6-unicast",
        "ipv4-flowspec",
        "ipv6-flowspec",
    ] {
        text.push_str(&format!(
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n"
        ));
    }
    std::fs::write(&conf, text)?;
    let mut cmd = TestNet::command_in(&net.victim_ns, "gobgpd");
    cmd.arg("-f").arg(&conf).args([
        "--api-hosts",
        &format!("127.0.0.1:{api_port}"),
        "--pprof-disable",
    ]);
    Daemon::spawn("gobgpd", cmd, dir.join("gobgpd.log"))
}

/// BIRD 2 in the router's namespace, importing everything the victim
/// announces into master4/master6 and the FlowSpec tables flowtab4/flowtab6.
pub struct Bird {
    pub daemon: Daemon,
    socket: PathBuf,
}

impl Bird {
    pub fn start(router_ns: &str, dir: &Path) -> anyhow::Result<Bird> {
        Bird::start_with(router_ns, dir, "none", "")
    }

    /// BIRD announcing the FlowSpec routes of its `flowtab4` to the victim:
    /// `statics` adds the protocols that put them there (a static protocol
    /// per route lets a test withdraw one with `birdc disable NAME`).
    pub fn start_announcing(router_ns: &str, dir: &Path, statics: &str) -> anyhow::Result<Bird> {
        Bird::start_with(router_ns, dir, "all", statics)
    }

    fn start_with(
        router_ns: &str,
        dir: &Path,
        flow4_export: &str,
        extra: &str,
    ) -> anyhow::Result<Bird> {
        let conf = dir.join("bird.conf");
        std::fs::write(
            &conf,
            format!(
                "router id {ROUTER_V4};\nlog stderr all;\nprotocol device {{}}\n\
                 flow4 table flowtab4;\nflow6 table flowtab6;\n\
                 protocol bgp victim {{\n  local {ROUTER_V4} as {ROUTER_ASN};\n  \
                 neighbor {ROUTER_LINK_VICTIM_V4} as {VICTIM_ASN};\n  connect retry time 1;\n  \
                 ipv4 {{ import all; export none; }};\n  \
                 flow4 {{ table flowtab4; import all; export {flow4_export}; }};\n  \
                 flow6 {{ table flowtab6; import all; export none; }};\n}}\n{extra}"
            ),
        )?;
        let socket = dir.join("bird.ctl");
        let mut cmd = TestNet::command_in(router_ns, "bird");
        cmd.arg("-f").arg("-c").arg(&conf).arg("-s").arg(&socket);
        let daemon = Daemon::spawn("bird", cmd, dir.join("bird.log"))?;
        Ok(Bird { daemon, socket })
    }

    /// What `birdc -s SOCK ARGS...` prints.
    pub fn birdc(&self, args: &[&str]) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `show route table TABLE all`.
    pub fn table(&self, table: &str) -> String {
        self.birdc(&["show", "route", "table", table, "all"])
    }

    pub fn established(&self) -> bool {
        self.birdc(&["show", "protocols", "victim"])
            .contains("Established")
    }
}
