//! Raw frames out of a test interface (AF_PACKET), as spoofers send them:
//! any source address, valid checksums, no socket of the sender's own.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

/// An AF_PACKET socket on one interface, sending to one MAC address.
pub struct RawSocket {
    sock: OwnedFd,
    to: libc::sockaddr_ll,
}

impl RawSocket {
    /// On `iface` of the calling thread's network namespace.
    pub fn open(iface: &str, dst_mac: [u8; 6]) -> RawSocket {
        // SAFETY: plain socket creation; the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh fd of ours.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_ll is valid; its fields are set below.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = filterctl::sys::ifindex(iface).unwrap() as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&dst_mac);
        RawSocket { sock, to }
    }

    /// Sends `frame`, waiting while the veth ring (256 frames) is full.
    pub fn send(&self, frame: &[u8]) {
        loop {
            // SAFETY: a valid socket, frame and address of its size.
            let rc = unsafe {
                libc::sendto(
                    self.sock.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&self.to as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc > 0 {
                return;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Sends `frames` in turn at `rate` a second, in 1 ms bursts, while
    /// `go(sent, elapsed)` holds.
    pub fn send_paced(
        &self,
        frames: &[Vec<u8>],
        rate: u64,
        go: impl Fn(u64, Duration) -> bool,
    ) -> Paced {
        let start = Instant::now();
        let mut sent = 0u64;
        while go(sent, start.elapsed()) {
            // Frames due by now at `rate`, sent at once: the bursts.
            let due = start.elapsed().as_micros() as u64 * rate / 1_000_000 + 1;
            while sent < due && go(sent, start.elapsed()) {
                self.send(&frames[sent as usize % frames.len()]);
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Paced {
            frames: sent,
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

/// What a paced send sent, and in how long.
pub struct Paced {
    pub frames: u64,
    pub seconds: f64,
}
