//! The veth flood's traffic generators (section 6): live frames from the
//! kernel where it allows them, AF_PACKET sockets where it refuses them
//! (BPF_F_TEST_XDP_LIVE_FRAMES needs 5.18, and some kernels answer EPERM).
//! A run uses one generator for every case, so that its ratios compare like
//! with like.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{ProgramError, TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};
use filter_testkit::net::TestNet;

/// Set (to anything but 0) to measure with the AF_PACKET generator on a
/// kernel that allows live frames: `cargo xtask bench` passes no flags.
pub const FORCE_ENV: &str = "BENCH_NO_LIVE_FRAMES";

/// `PACKET_QDISC_BYPASS` from linux/if_packet.h (the libc crate lacks it):
/// frames go straight to the driver, past the qdisc layer and its lock.
const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// Frames per sendmmsg call: one system call for many frames.
const BATCH: usize = 64;

/// What `--generator` or [`FORCE_ENV`] asked for.
#[derive(Clone, Copy, Debug)]
pub enum Choice {
    /// Live frames, AF_PACKET if the kernel refuses them.
    Auto,
    /// Live frames or nothing.
    Live,
    /// AF_PACKET, and what forced it.
    AfPacket(&'static str),
}

impl Choice {
    /// The `--generator` flag's value.
    pub fn parse(value: &str) -> anyhow::Result<Choice> {
        match value {
            "auto" => Ok(Choice::Auto),
            "live" => Ok(Choice::Live),
            "afpacket" => Ok(Choice::AfPacket("--generator afpacket")),
            other => anyhow::bail!("unknown generator {other}: use auto, live or afpacket"),
        }
    }

    /// What the environment asks for when no flag does.
    pub fn from_env() -> Choice {
        match std::env::var(FORCE_ENV) {
            Ok(v) if !v.is_empty() && v != "0" => Choice::AfPacket("BENCH_NO_LIVE_FRAMES=1"),
            _ => Choice::Auto,
        }
    }
}

/// How the flood is sent from the attacker's namespace.
pub enum Generator {
    /// BPF_PROG_TEST_RUN live frames with an XDP_TX program: in the kernel,
    /// never the bottleneck.
    LiveFrames,
    /// Raw AF_PACKET sockets bypassing the qdisc, one per thread; `why`
    /// says why not live frames.
    AfPacket { threads: usize, why: String },
}

impl Generator {
    /// Live frames unless `choice` rules them out or the kernel refuses
    /// them (probed with one frame, so the refusal costs nothing).
    pub fn choose(net: &TestNet, frame: &[u8], choice: Choice) -> anyhow::Result<Generator> {
        let why = match choice {
            Choice::AfPacket(forced) => format!("forced by {forced}"),
            Choice::Live | Choice::Auto => match live_frames(net, frame, 1, 0.0)? {
                Ok(_) => return Ok(Generator::LiveFrames),
                Err(e) if matches!(choice, Choice::Auto) && refused(&e) => {
                    let e = anyhow::Error::from(e);
                    format!("the kernel refuses live frames: {e:#}")
                }
                Err(e) => return Err(e).context("live-frames test run"),
            },
        };
        Ok(Generator::AfPacket {
            threads: sender_threads(),
            why,
        })
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        match self {
            Generator::LiveFrames => format!(
                "live frames (XDP_TX test run); {FORCE_ENV}=1 or --generator afpacket measures with the AF_PACKET fallback"
            ),
            Generator::AfPacket { threads, why } => {
                format!("AF_PACKET, {threads} threads, qdisc bypass ({why})")
            }
        }
    }

    /// Sends `frame` out of the attacker's veth for `secs`; returns the
    /// frames offered (generated, whether or not the veth's ring had room
    /// for them).
    pub fn run(&self, net: &TestNet, frame: &[u8], secs: f64) -> anyhow::Result<u64> {
        match self {
            Generator::LiveFrames => live_frames(net, frame, 200_000, secs)?
                .map_err(anyhow::Error::from)
                .context("live-frames test run"),
            Generator::AfPacket { threads, .. } => af_packet(net, frame, *threads, secs),
        }
    }
}

/// One sender per core, at least two and at most four: more would only
/// take the CPU that the receiving side's NAPI polling needs.
fn sender_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// Whether the kernel refused the test run as a feature (not allowed,
/// unknown flag, not supported), as opposed to failing it.
fn refused(e: &ProgramError) -> bool {
    let ProgramError::SyscallError(e) = e else {
        return false;
    };
    // 524: the kernel's internal ENOTSUPP, which some paths leak.
    matches!(
        e.io_error.raw_os_error(),
        Some(libc::EPERM | libc::EINVAL | libc::EOPNOTSUPP | 524)
    )
}

/// The interface's index, looked up in the calling thread's namespace.
fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    anyhow::ensure!(
        ifindex != 0,
        "no interface {name}: {}",
        io::Error::last_os_error()
    );
    Ok(ifindex)
}

/// Live frames: `repeat` frames per test run, runs until `secs` have
/// passed (at least one). The outer error is the setup's, the inner one
/// the test run's, kept as the kernel gave it so that a refusal shows.
fn live_frames(
    net: &TestNet,
    frame: &[u8],
    repeat: u32,
    secs: f64,
) -> anyhow::Result<Result<u64, ProgramError>> {
    let attacker_if = net.attacker_if.clone();
    TestNet::in_ns(&net.attacker_ns, || {
        let mut floors = Ebpf::load(filter_testkit::FLOORS_OBJECT)?;
        let p: &mut Xdp = floors
            .program_mut("tx_all")
            .ok_or_else(|| anyhow!("no tx_all"))?
            .try_into()?;
        p.load()?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex(&attacker_if)?.to_ne_bytes());
        let (mut sent, t0) = (0u64, Instant::now());
        loop {
            let run = p.test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::new()
            });
            if let Err(e) = run {
                return Ok(Err(e));
            }
            sent += u64::from(repeat);
            if t0.elapsed().as_secs_f64() >= secs {
                return Ok(Ok(sent));
            }
        }
    })?
}

/// AF_PACKET: `threads` threads, each with its own socket (no shared
/// socket lock), sending `frame` in batches for `secs`. The sockets are
/// opened inside the attacker's namespace, and stay bound to it whichever
/// thread sends on them.
fn af_packet(net: &TestNet, frame: &[u8], threads: usize, secs: f64) -> anyhow::Result<u64> {
    let attacker_if = net.attacker_if.clone();
    TestNet::in_ns(&net.attacker_ns, || -> anyhow::Result<u64> {
        let ifindex = ifindex(&attacker_if)?;
        let sockets = (0..threads)
            .map(|_| packet_socket(ifindex))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        std::thread::scope(|s| {
            let senders: Vec<_> = sockets
                .iter()
                .map(|sock| s.spawn(move || send_until(sock, frame, deadline)))
                .collect();
            senders
                .into_iter()
                .map(|t| t.join().expect("AF_PACKET sender thread"))
                .sum()
        })
    })?
}

/// A raw packet socket that sends whole Ethernet frames out of `ifindex`
/// and receives nothing (protocol 0), bypassing the qdisc.
fn packet_socket(ifindex: u32) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("cannot open an AF_PACKET socket");
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: valid fd and a sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("cannot bind the AF_PACKET socket");
    }
    let one: libc::c_int = 1;
    setsockopt(&sock, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &one)
        .context("cannot set PACKET_QDISC_BYPASS")?;
    // A send blocked on the socket's buffer returns within this, so a
    // sender never overstays the case.
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    setsockopt(&sock, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &timeout)
        .context("cannot set a send timeout")?;
    Ok(sock)
}

fn setsockopt<T>(
    sock: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: valid fd, and a value of the size given that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `frame` in batches of [`BATCH`] until `deadline`; returns the
/// frames sent, those the veth refused included.
fn send_until(sock: &OwnedFd, frame: &[u8], deadline: Instant) -> anyhow::Result<u64> {
    let mut iov = libc::iovec {
        iov_base: frame.as_ptr().cast_mut().cast(),
        iov_len: frame.len(),
    };
    let iov_ptr = &raw mut iov;
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            // SAFETY: an all-zero mmsghdr is valid: no name, no control
            // data, no flags.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            // Every message points at the one iovec: the kernel only reads
            // it when sending.
            m.msg_hdr.msg_iov = iov_ptr;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut sent = 0u64;
    while Instant::now() < deadline {
        // SAFETY: valid fd; `msgs` holds BATCH messages whose iovec and
        // frame outlive the call.
        let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n >= 0 {
            sent += n as u64;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // The peer's ring was full (its NAPI polling is behind, which
            // is what a flood is for): one frame refused, either this
            // batch's first or the one that ended the last batch early
            // (the kernel reports that on the next call). As the live
            // frames generator does, count it offered.
            Some(libc::ENOBUFS) => sent += 1,
            // The socket's buffer stayed full for the timeout: try again.
            Some(libc::EAGAIN | libc::EINTR) => {}
            _ => return Err(e).context("AF_PACKET send"),
        }
    }
    Ok(sent)
}
