//! The few calls into libc that filterctl makes, each wrapped once in a safe
//! function: interface indexes, the kernel's coarse clock, filesystem
//! types and mounts, this host's addresses, and the open-file limit (with
//! the errors that say a process is out of resources), and map values read
//! whole where aya's by-value reads would put them on the stack.

use std::{
    ffi::{CStr, CString},
    net::IpAddr,
    path::Path,
};

/// Magic number of bpffs in `statfs.f_type`.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("bad interface name {0:?}")]
    BadInterfaceName(String),
    #[error("no such interface: {0} (see `ip link` for the interfaces of this host)")]
    NoInterface(String),
    #[error("bad path {0:?}: it holds a NUL byte")]
    BadPath(String),
    #[error("mounting a bpffs at {at} failed: {source}")]
    Mount { at: String, source: std::io::Error },
    #[error("cannot raise the open-file limit (RLIMIT_NOFILE) from {soft} to {hard}: {source}")]
    NoFileLimit {
        soft: u64,
        hard: u64,
        source: std::io::Error,
    },
}

/// The index of a network interface in this network namespace.
pub fn ifindex(iface: &str) -> Result<u32, SysError> {
    let c = CString::new(iface).map_err(|_| SysError::BadInterfaceName(iface.to_string()))?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(SysError::NoInterface(iface.to_string()));
    }
    Ok(index)
}

/// CLOCK_MONOTONIC_COARSE in ns: the clock the program's deadlines use.
pub fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn c_path(path: &Path) -> Result<CString, SysError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::BadPath(path.display().to_string()))
}

/// Whether `path` lies on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = c_path(path) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    st.f_type as i64 == BPF_FS_MAGIC
}

/// Mounts a bpffs at `at`.
pub fn mount_bpffs(at: &Path) -> Result<(), SysError> {
    let target = c_path(at)?;
    let bpf = c"bpf";
    // SAFETY: all pointers are valid NUL-terminated strings; data may be null.
    let rc = unsafe {
        libc::mount(
            bpf.as_ptr(),
            target.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(SysError::Mount {
            at: at.display().to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Whether this process runs in the host's (PID 1's) mount namespace. A
/// container or a service with private mounts does not: a bpffs mounted
/// there vanishes with it. False when it cannot be told.
pub fn in_initial_mount_namespace() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (
        std::fs::metadata("/proc/self/ns/mnt"),
        std::fs::metadata("/proc/1/ns/mnt"),
    ) {
        (Ok(me), Ok(init)) => me.dev() == init.dev() && me.ino() == init.ino(),
        _ => false,
    }
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Waits until `fd` is readable or `timeout` passed; true if readable.
pub fn wait_readable(
    fd: std::os::fd::BorrowedFd<'_>,
    timeout: std::time::Duration,
) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the length given.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    match rc {
        -1 => {
            let e = std::io::Error::last_os_error();
            // A signal (Ctrl-C) is the caller's to handle.
            if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// Addresses of this host's interfaces (in the current network namespace),
/// with the name of the interface that holds each.
pub fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it says.
        let addr = unsafe {
            match (*ifa.ifa_addr).sa_family as i32 {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            }
        };
        // SAFETY: ifa_name is a NUL-terminated interface name.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        out.push((name.into_owned(), addr));
    }
    // SAFETY: ifap came from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
    out
}

/// A read-only shared mapping of a file descriptor's memory (an mmapable
/// BPF array's values), unmapped on drop.
pub struct SharedMapping {
    ptr: *const u64,
    len: usize,
}

// SAFETY: the mapping is read-only and only read with volatile loads.
unsafe impl Send for SharedMapping {}

impl SharedMapping {
    /// Maps the first `len` bytes (a multiple of 8) of `fd` read-only.
    pub fn new(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> std::io::Result<SharedMapping> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a fresh mapping at an address the kernel picks; the fd
        // is open for the duration of the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedMapping {
            ptr: ptr as *const u64,
            len,
        })
    }

    /// The `i`th u64, as the kernel last wrote it (other CPUs keep
    /// writing: each aligned 8-byte load is whole, but two are not a
    /// snapshot).
    pub fn u64_at(&self, i: usize) -> u64 {
        assert!(
            i < self.len / 8,
            "u64 {i} outside a {}-byte mapping",
            self.len
        );
        // SAFETY: inside the mapping, aligned (mmap returns page-aligned).
        unsafe { std::ptr::read_volatile(self.ptr.add(i)) }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: ptr and len are what mmap returned and took.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Raises the soft limit on open files to the hard limit (or to the
/// kernel's `fs.nr_open` when the hard limit is unlimited); returns the soft
/// limit now in force.
pub fn raise_nofile_limit() -> Result<u64, SysError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid resource and a writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(SysError::NoFileLimit {
            soft: 0,
            hard: 0,
            source: std::io::Error::last_os_error(),
        });
    }
    // An unlimited soft limit on open files is refused (EPERM): nr_open is
    // the most the kernel allows.
    let hard = if lim.rlim_max == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur >= hard {
        return Ok(lim.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: hard,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: a valid resource and an initialised rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(SysError::NoFileLimit {
            soft: lim.rlim_cur,
            hard,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(hard)
}

/// True for the errors that say this process (EMFILE) or the host
/// (ENFILE) has no file descriptor left: what closing others cures, not a
/// bad input.
pub fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// True for the errors `accept` returns about one connection (aborted
/// before it was accepted, refused by a firewall rule, or a network error
/// the kernel passes on, see accept(2)), after which the next accept may
/// work at once.
pub fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::EAGAIN
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// `bpf(2)` with the attributes `attr` (a `#[repr(C)]` union member).
///
/// # Safety
/// The pointers in `attr` must point at live buffers of the sizes the
/// command writes through them.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<()> {
    // SAFETY: attr is a live, writable struct of the size passed; the
    // caller vouches for the pointers inside it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The `bpf(2)` attributes of the batch commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Reads every value of the BPF array `fd` (u32 keys) in one call, where
/// element by element takes a call each (65536 of them: 20 ms), and into
/// the heap, where aya's by-value reads would put a large value on the
/// stack. Returns how many entries the kernel copied.
///
/// # Safety
/// `values` must hold at least `entries` of the map's values: the kernel
/// writes the map's value size for each entry it copies.
pub unsafe fn map_read_all(
    fd: std::os::fd::BorrowedFd<'_>,
    values: &mut [u64],
    entries: usize,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd as _;
    let mut keys = vec![0u32; entries];
    let mut next = 0u32;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: &mut next as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: entries as u32,
        map_fd: fd.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: live buffers: `entries` keys, and values that the caller
    // sizes to `entries` of the map's values (this function's contract).
    match unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) } {
        // ENOENT: the batch reached the map's end, which reading all of it
        // does.
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
        _ => Ok(attr.count as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_files_and_connection_errors() {
        let os = std::io::Error::from_raw_os_error;
        for errno in [libc::EMFILE, libc::ENFILE] {
            assert!(is_out_of_files(&os(errno)), "{errno}");
            assert!(!is_connection_error(&os(errno)), "{errno}");
        }
        for errno in [libc::ECONNABORTED, libc::ECONNRESET, libc::EINTR] {
            assert!(is_connection_error(&os(errno)), "{errno}");
            assert!(!is_out_of_files(&os(errno)), "{errno}");
        }
        let other = std::io::Error::other("not an errno");
        // ENOMEM may be a map too large for this host: not retried.
        assert!(!is_out_of_files(&os(libc::ENOMEM)));
        assert!(!is_out_of_files(&other) && !is_connection_error(&other));
    }

    fn nofile() -> libc::rlimit {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid resource and a writable rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        lim
    }

    #[test]
    fn nofile_limit_raised_to_the_hard_limit() {
        let hard = nofile().rlim_max;
        // One under the hard limit, so that there is something to raise
        // without starving the tests that run beside this one.
        let lowered = libc::rlimit {
            rlim_cur: hard.min(1 << 20) - 1,
            rlim_max: hard,
        };
        // SAFETY: a valid resource and an initialised rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let soft = raise_nofile_limit().expect("raise RLIMIT_NOFILE");
        assert!(
            soft > lowered.rlim_cur,
            "not raised from {}",
            lowered.rlim_cur
        );
        assert_eq!(nofile().rlim_cur, soft);
        if hard != libc::RLIM_INFINITY {
            assert_eq!(soft, hard, "the soft limit is the hard one");
        }
    }
}
