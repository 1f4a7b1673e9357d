//! Test hosts for the end-to-end tests, the demo and the benchmarks: a victim
//! and an attacker network namespace joined by a veth pair, documentation
//! addresses only, and a bpffs pin root of their own. Everything is removed
//! when the value drops, on panics too.

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};

pub const VICTIM_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const VICTIM_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const ATTACKER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Prefixes the attacker can send from with ordinary sockets (they are
/// local to its namespace), standing in for spoofed and reflector sources.
pub const SPOOFED_V4: [&str; 2] = ["198.51.100.0/24", "203.0.113.0/24"];
pub const SPOOFED_V6: &str = "2001:db8:bad::/48";

/// Prefix of every namespace this module makes: the test runner checks
/// that none is left after the suite.
pub const NS_PREFIX: &str = "flt-";
/// Prefix of every pin root this module makes under /sys/fs/bpf.
pub const PIN_PREFIX: &str = "filterctl-test-";

static SEQ: AtomicU32 = AtomicU32::new(0);
static SENT: AtomicU32 = AtomicU32::new(0);

const VICTIM_MAC: &str = "02:00:00:00:00:01";
const ATTACKER_MAC: &str = "02:00:00:00:00:02";

pub struct TestNet {
    pub victim_ns: String,
    pub attacker_ns: String,
    pub victim_if: String,
    pub attacker_if: String,
    pub pin_root: PathBuf,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2: cargo xtask setup)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl TestNet {
    /// Creates the two hosts; `tag` (a few letters) makes names readable.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let id = format!(
            "{}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        // Interface names are limited to 15 bytes.
        let tag: String = tag.chars().take(3).collect();
        let net = TestNet {
            victim_ns: format!("{NS_PREFIX}{tag}-{id}-v"),
            attacker_ns: format!("{NS_PREFIX}{tag}-{id}-a"),
            victim_if: format!("{tag}{id}v"),
            attacker_if: format!("{tag}{id}a"),
            pin_root: PathBuf::from(format!("/sys/fs/bpf/{PIN_PREFIX}{tag}-{id}")),
        };
        anyhow::ensure!(net.victim_if.len() <= 15, "interface name too long");
        // From here on, Drop cleans up whatever part was made.
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> anyhow::Result<()> {
        let (v, a) = (self.victim_ns.as_str(), self.attacker_ns.as_str());
        let (vi, ai) = (self.victim_if.as_str(), self.attacker_if.as_str());
        ip(&["netns", "add", v])?;
        ip(&["netns", "add", a])?;
        // Before the veth exists: no duplicate address detection, so
        // link-local addresses (and neighbour discovery) work at once; and
        // IPv6, unlike IPv4, refuses to bind addresses that a local route
        // covers but no interface holds unless told otherwise.
        for ns in [v, a] {
            let set = Self::command_in(ns, "sh")
                .args([
                    "-c",
                    "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad && \
                     echo 1 > /proc/sys/net/ipv6/ip_nonlocal_bind",
                ])
                .status()
                .context("cannot run nsenter (install util-linux: cargo xtask setup)")?;
            anyhow::ensure!(set.success(), "cannot set IPv6 sysctls in {ns}");
        }
        ip(&[
            "link",
            "add",
            vi,
            "netns",
            v,
            "address",
            VICTIM_MAC,
            "type",
            "veth",
            "peer",
            "name",
            ai,
            "netns",
            a,
            "address",
            ATTACKER_MAC,
        ])?;
        let v4 = |addr: Ipv4Addr| format!("{addr}/24");
        let v6 = |addr: Ipv6Addr| format!("{addr}/64");
        for (ns, dev, a4, a6) in [
            (v, vi, v4(VICTIM_V4), v6(VICTIM_V6)),
            (a, ai, v4(ATTACKER_V4), v6(ATTACKER_V6)),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &a4, "dev", dev])?;
            ip(&["-n", ns, "-6", "addr", "add", &a6, "dev", dev, "nodad"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        // Static neighbours: nothing waits on ARP or neighbour discovery
        // (whose first packets could be lost behind a burst), so tests
        // count exactly what they send.
        for (ns, dev, peer4, peer6, mac) in [
            (
                v,
                vi,
                ATTACKER_V4.to_string(),
                ATTACKER_V6.to_string(),
                ATTACKER_MAC,
            ),
            (
                a,
                ai,
                VICTIM_V4.to_string(),
                VICTIM_V6.to_string(),
                VICTIM_MAC,
            ),
        ] {
            for peer in [&peer4, &peer6] {
                ip(&[
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    peer,
                    "lladdr",
                    mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ])?;
            }
        }
        let (att4, att6) = (ATTACKER_V4.to_string(), ATTACKER_V6.to_string());
        for net in SPOOFED_V4 {
            ip(&["-n", a, "route", "add", "local", net, "dev", "lo"])?;
            ip(&["-n", v, "route", "add", net, "via", &att4])?;
        }
        ip(&[
            "-n", a, "-6", "route", "add", "local", SPOOFED_V6, "dev", "lo",
        ])?;

        ip(&["-n", v, "-6", "route", "add", SPOOFED_V6, "via", &att6])?;
        Ok(())
    }

    /// Runs `f` on a thread that lives in namespace `ns`: sockets it opens
    /// belong to that namespace, and bpffs stays visible (unlike with `ip
    /// netns exec`, which remounts /sys).
    pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let path = Path::new("/run/netns").join(ns);
        let file = File::open(&path).with_context(|| format!("no namespace {}", path.display()))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: a valid namespace fd; setns only changes this thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!(
                        "setns into {ns} failed: {}",
                        std::io::Error::last_os_error()
                    );
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A command run in namespace `ns` through nsenter.
    pub fn command_in(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{ns}"))
            .arg("--")
            .arg(program);
        c
    }

    /// What removes these hosts, for a signal handler's thread.
    pub fn cleanup_handle(&self) -> Cleanup {
        Cleanup {
            namespaces: vec![self.victim_ns.clone(), self.attacker_ns.clone()],
            pin_root: self.pin_root.clone(),
        }
    }

    pub fn cleanup(&self) {
        self.cleanup_handle().run();
    }
}

/// Names of everything a TestNet made.
#[derive(Clone, Debug)]
pub struct Cleanup {
    namespaces: Vec<String>,
    pin_root: PathBuf,
}

impl Cleanup {
    /// Removes it all; safe to run twice.
    pub fn run(&self) {
        for ns in &self.namespaces {
            if Path::new("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
        // Deleting the namespaces deleted the veth pair and detached XDP;
        // the pins would still hold the program and maps alive.
        if self.pin_root.exists() {
            let _ = std::fs::remove_dir_all(&self.pin_root);
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The victim's end of the link to the router (a point-to-point /32 pair,
/// more specific than the victim's /24 toward the attacker).
pub const ROUTER_LINK_VICTIM_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 253);
pub const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

/// A third host: a router in front of the victim, in its own namespace,
/// joined to the victim by a second veth pair. Removed when dropped (its
/// namespace takes the veth pair with it), before or after its TestNet.
pub struct Router {
    pub ns: String,
    /// The victim's end of the link.
    pub victim_if: String,
    pub router_if: String,
}

impl TestNet {
    /// Adds the router host next to the victim.
    pub fn add_router(&self) -> anyhow::Result<Router> {
        let base = self.victim_if.trim_end_matches('v');
        let r = Router {
            ns: format!("{}r", self.victim_ns.trim_end_matches('v')),
            victim_if: format!("{base}x"),
            router_if: format!("{base}r"),
        };
        ip(&["netns", "add", &r.ns])?;
        ip(&[
            "link",
            "add",
            &r.victim_if,
            "netns",
            &self.victim_ns,
            "type",
            "veth",
            "peer",
            "name",
            &r.router_if,
            "netns",
            &r.ns,
        ])?;
        let (v4, r4) = (ROUTER_LINK_VICTIM_V4.to_string(), ROUTER_V4.to_string());
        for (ns, dev, local, peer) in [
            (self.victim_ns.as_str(), r.victim_if.as_str(), &v4, &r4),
            (r.ns.as_str(), r.router_if.as_str(), &r4, &v4),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{local}/32"),
                "peer",
                &format!("{peer}/32"),
                "dev",
                dev,
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(r)
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if Path::new("/run/netns").join(&self.ns).exists() {
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
    }
}

/// Sends `count` datagrams of `payload` from `from` to `to` with an ordinary
/// UDP socket (call it inside the sending namespace).
pub fn send_udp(
    from: std::net::SocketAddr,
    to: std::net::SocketAddr,
    payload: &[u8],
    count: usize,
) -> anyhow::Result<()> {
    let sock = std::net::UdpSocket::bind(from).with_context(|| format!("cannot bind {from}"))?;
    for _ in 0..count {
        sock.send_to(payload, to)
            .with_context(|| format!("cannot send from {from} to {to}"))?;
        // A veth with native XDP hands frames over through a 256-slot ring
        // and drops when it is full: pace bursts so that tests count exactly.
        if SENT.fetch_add(1, Ordering::Relaxed) % 32 == 31 {
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
    }
    Ok(())
}

/// UDP sockets bound on the victim that count what reaches them.
pub struct Sink {
    sockets: Vec<(std::net::SocketAddr, std::net::UdpSocket)>,
}

/// Room for bursts: the tests count every datagram, and a reader that a
/// busy machine schedules late must not lose any to a full socket buffer.
pub fn big_receive_buffer(s: &std::net::UdpSocket) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let size: libc::c_int = 16 << 20;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    anyhow::ensure!(
        rc == 0,
        "cannot enlarge a socket's receive buffer: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

impl Sink {
    /// Binds every address (call it inside the receiving namespace).
    pub fn bind(addrs: &[std::net::SocketAddr]) -> anyhow::Result<Sink> {
        let mut sockets = Vec::new();
        for &a in addrs {
            let s = std::net::UdpSocket::bind(a).with_context(|| format!("cannot bind {a}"))?;
            s.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
            big_receive_buffer(&s)?;
            sockets.push((a, s));
        }
        Ok(Sink { sockets })
    }

    /// Sends from the socket bound to `from` (a request whose replies the
    /// sink then counts).
    pub fn send_from(
        &self,
        from: std::net::SocketAddr,
        to: std::net::SocketAddr,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let (_, sock) = self
            .sockets
            .iter()
            .find(|(a, _)| *a == from)
            .with_context(|| format!("no socket bound to {from}"))?;
        sock.send_to(payload, to)
            .with_context(|| format!("cannot send from {from} to {to}"))?;
        Ok(())
    }

    /// Datagrams received per bound address, reading until each socket has
    /// been quiet for 200 ms.
    pub fn drain(&self) -> std::collections::HashMap<std::net::SocketAddr, u64> {
        self.drain_after(std::time::Duration::ZERO)
    }

    /// Like `drain`, but a socket's quiet time only ends its reading once
    /// it has received something or `first` has passed: for readers started
    /// before the sender.
    pub fn drain_after(
        &self,
        first: std::time::Duration,
    ) -> std::collections::HashMap<std::net::SocketAddr, u64> {
        let start = std::time::Instant::now();
        let mut counts = std::collections::HashMap::new();
        let mut buf = [0u8; 2048];
        for (addr, sock) in &self.sockets {
            let mut n = 0;
            loop {
                match sock.recv_from(&mut buf) {
                    Ok(_) => n += 1,
                    Err(_) if n == 0 && start.elapsed() < first => {}
                    Err(_) => break,
                }
            }
            counts.insert(*addr, n);
        }
        counts
    }
}

/// Sends `count` ICMP echo requests to `dst` from a raw socket and returns
/// how many replies came back (call it inside the sending namespace).
pub fn ping(dst: Ipv4Addr, count: u16) -> anyhow::Result<u16> {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        bail!(
            "cannot open a raw ICMP socket: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 300_000,
    };
    // SAFETY: valid fd and a timeval of the size given.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    let mut replies = 0;
    for seq in 0..count {
        let mut echo = [8u8, 0, 0, 0, 0x12, 0x34, 0, 0, b'f', b'l', b't', b'!'];
        echo[6..8].copy_from_slice(&seq.to_be_bytes());
        let mut sum: u32 = echo
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        echo[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        // SAFETY: valid fd, buffer and address of the sizes given.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                echo.as_ptr().cast(),
                echo.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if sent < 0 {
            bail!(
                "cannot send an echo request to {dst}: {}",
                std::io::Error::last_os_error()
            );
        }
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: valid fd and buffer.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                break;
            }
            // A raw socket sees the IP header; the reply's ICMP type is 0.
            let ihl = (buf[0] & 0x0f) as usize * 4;
            if n as usize >= ihl + 8 && buf[ihl] == 0 && buf[ihl + 6..ihl + 8] == seq.to_be_bytes()
            {
                replies += 1;
                break;
            }
        }
    }
    Ok(replies)
}
