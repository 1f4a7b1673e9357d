//! tcpdump on a test host (`-i any`, Linux cooked v2), stopped like an
//! operator stops it (SIGINT, so the file is complete) or killed on every
//! other path, and the frames of its capture read with the cooked header's
//! facts (interface, direction) and the IP header's addresses: what a test
//! needs to tell which frames of a replay were benign and which attack.

use std::{
    io::{BufRead as _, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use filter_testkit::net::TestNet;

/// A running `tcpdump -i any -w FILE` in a namespace.
pub struct Tcpdump {
    child: Option<Child>,
    file: String,
    /// Everything tcpdump printed on stderr so far.
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// What tcpdump said when it stopped.
#[derive(Debug)]
pub struct Stopped {
    pub captured: u64,
    pub dropped_by_kernel: u64,
    pub log: String,
}

impl Tcpdump {
    /// Starts it in `ns`, writing `file`, and returns once it is capturing
    /// (it prints "listening on" after its socket is bound and its ring set
    /// up: every frame from then on is in the file).
    pub fn start(ns: &str, file: &str) -> Tcpdump {
        let mut child = TestNet::command_in(ns, "tcpdump")
            // --immediate-mode and -U: each frame handed over and written
            // when it is captured (libpcap otherwise holds frames in ring
            // blocks, and the last block's are lost at SIGINT); -Z root:
            // write the file as root (tcpdump drops to its own user
            // otherwise); -B: a 32 MiB ring, room for a burst while
            // tcpdump writes.
            .args(["-i", "any", "-y", "LINUX_SLL2", "-n"])
            .args(["--immediate-mode", "-U", "-Z", "root", "-B", "32768"])
            .args(["-w", file])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start tcpdump (cargo xtask setup installs it): {e}")
            });
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let reader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            })
        };
        let mut t = Tcpdump {
            child: Some(child),
            file: file.to_string(),
            log,
            reader: Some(reader),
        };
        let start = Instant::now();
        while !t.log_text().contains("listening on") {
            let exited = t.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && start.elapsed() < Duration::from_secs(10),
                "tcpdump did not start capturing ({exited:?}): {}",
                t.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Stops it with SIGINT once the file has stopped growing, and waits:
    /// the file is then complete, and tcpdump has said how many frames it
    /// captured and lost.
    pub fn stop(mut self) -> Stopped {
        let size = || std::fs::metadata(&self.file).map_or(0, |m| m.len());
        let start = Instant::now();
        let mut last = size();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = size();
            if now == last || start.elapsed() > Duration::from_secs(5) {
                break;
            }
            last = now;
        }
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let waited = filter_testkit::child::wait_bounded(&mut child, Duration::from_secs(20));
        self.reader.take().unwrap().join().unwrap();
        let log = self.log_text();
        assert!(waited.status.success(), "tcpdump failed: {log}");
        let count = |what: &str| {
            log.lines()
                .find_map(|l| l.strip_suffix(what)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("tcpdump did not say how many {what}: {log}"))
        };
        Stopped {
            captured: count("packets captured"),
            dropped_by_kernel: count("packets dropped by kernel"),
            log,
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Linux's PACKET_OUTGOING, a cooked header's packet type for sent frames.
pub const PACKET_OUTGOING: u8 = 4;
/// ARPHRD_LOOPBACK.
pub const ARPHRD_LOOPBACK: u16 = 772;

/// One frame of a cooked (SLL2) capture.
#[derive(Clone, Debug)]
pub struct Cooked {
    /// Counted from 1, as replay and Wireshark number frames.
    pub index: u64,
    /// Unix time.
    pub ts: Duration,
    pub ifindex: u32,
    pub hatype: u16,
    pub packet_type: u8,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: Option<u8>,
    /// None for a later fragment.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

impl Cooked {
    pub fn outgoing(&self) -> bool {
        self.packet_type == PACKET_OUTGOING
    }

    pub fn loopback(&self) -> bool {
        self.hatype == ARPHRD_LOOPBACK
    }

    pub fn secs(&self) -> f64 {
        self.ts.as_secs_f64()
    }
}

/// Every frame of a classic pcap file of link type LINUX_SLL2 (what
/// [`Tcpdump`] writes).
pub fn read_cooked(file: &str) -> Vec<Cooked> {
    use pcap_file::{DataLink, pcap::PcapReader};
    let f = std::fs::File::open(file).unwrap_or_else(|e| panic!("open {file}: {e}"));
    let mut r = PcapReader::new(f).unwrap_or_else(|e| panic!("{file} is no pcap: {e}"));
    assert_eq!(r.header().datalink, DataLink::LINUX_SLL2, "{file}");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{file}: corrupt record: {e}"));
        out.push(cooked(out.len() as u64 + 1, p.timestamp, &p.data));
    }
    out
}

fn cooked(index: u64, ts: Duration, d: &[u8]) -> Cooked {
    let be16 = |at: usize| d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut c = Cooked {
        index,
        ts,
        ifindex: d
            .get(4..8)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        hatype: be16(8).unwrap_or(0),
        packet_type: d.get(10).copied().unwrap_or(0),
        src: None,
        dst: None,
        proto: None,
        src_port: None,
        dst_port: None,
    };
    let ip = d.get(20..).unwrap_or(&[]);
    let l4 = match be16(0) {
        Some(0x0800) if ip.len() >= 20 => {
            let a = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
            c.src = Some(a(12).into());
            c.dst = Some(a(16).into());
            c.proto = Some(ip[9]);
            let first = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
            first.then(|| ip.get(usize::from(ip[0] & 0x0f) * 4..))
        }
        Some(0x86dd) if ip.len() >= 40 => {
            let a = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&ip[at..at + 16]).unwrap());
            c.src = Some(a(8).into());
            c.dst = Some(a(24).into());
            // Extension headers are not walked: the tests' IPv6 frames
            // carry none.
            c.proto = Some(ip[6]);
            Some(ip.get(40..))
        }
        _ => None,
    };
    if let (Some(Some(l4)), Some(6 | 17)) = (l4, c.proto) {
        let port = |at: usize| l4.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        c.src_port = port(0);
        c.dst_port = port(2);
    }
    c
}
