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

/// A namespace's identity: the device and inode of its file under /proc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsId {
    dev: u64,
    ino: u64,
}

fn ns_id(path: impl AsRef<Path>) -> Option<NsId> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(NsId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// The mount namespace of process `pid` ("self" or a number); `None` when
/// it cannot be read (a VM's custom init may refuse even root, and a test
/// can fake that with `FILTERCTL_FAKE=init-ns-unreadable`).
pub fn mount_namespace(pid: &str) -> Option<NsId> {
    if pid == "1" && fake::on("init-ns-unreadable") {
        return None;
    }
    ns_id(format!("/proc/{pid}/ns/mnt"))
}

/// The parent process's id.
pub fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() as u32 }
}

/// The name under /run/netns (as `ip netns add` makes them) of this
/// process's network namespace, if it has one.
pub fn named_net_namespace() -> Option<String> {
    let me = ns_id("/proc/self/ns/net")?;
    std::fs::read_dir("/run/netns")
        .ok()?
        .flatten()
        .find(|e| ns_id(e.path()) == Some(me))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// Moves this thread, and the threads it starts from now on, into the
/// network namespace named `name` under /run/netns (as `ip -n NAME` and
/// `nsenter --net=/run/netns/NAME` do); the mount namespace, and with it
/// the host's bpffs, stays.
pub fn enter_net_namespace(name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad network namespace name {name:?}"),
        ));
    }
    let path = Path::new("/run/netns").join(name);
    let file = std::fs::File::open(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "no network namespace {name} ({}: {e}; see `ip netns list`)",
                path.display()
            ),
        )
    })?;
    // SAFETY: a valid fd of an open file; setns changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot enter network namespace {name}: {e}"),
        ));
    }
    Ok(())
}

/// Test fakes: `FILTERCTL_FAKE=a,b` makes the named system facts read as
/// refused or missing (an unreadable /proc/1, a kernel without TCX...),
/// so that the paths of machines unlike this one run in tests. Compiled in
/// only with the `failpoints` feature, as fault injection is.
pub mod fake {
    #[cfg(feature = "failpoints")]
    pub fn on(what: &str) -> bool {
        std::env::var("FILTERCTL_FAKE").is_ok_and(|v| v.split(',').any(|w| w.trim() == what))
    }

    /// Product builds: nothing is faked.
    #[cfg(not(feature = "failpoints"))]
    #[inline(always)]
    pub fn on(_what: &str) -> bool {
        false
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

/// Moves the calling thread into a new, empty network namespace of its
/// own (CAP_SYS_ADMIN): probes that must attach something do it there,
/// and it vanishes with the thread.
pub fn unshare_net() -> std::io::Result<()> {
    // SAFETY: unshare has no memory preconditions; CLONE_NEWNET affects
    // only the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The driver of a network interface, as `ethtool -i` names it (veth,
/// virtio_net, mlx5_core...).
pub fn driver_of(iface: &str) -> std::io::Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    // struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32],
    // bus_info[32], erom_version[32], reserved2[12], five u32 counts.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 32 * 4 + 12 + 5 * 4],
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 32 * 4 + 12 + 5 * 4],
    };
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    // SAFETY: a zeroed ifreq is valid; the name fits with its NUL.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: a plain datagram socket for the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: req points to a valid ifreq whose data points to a
    // drvinfo large enough for the kernel's copy.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(err);
    }
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..len]).into_owned())
}

/// The running kernel's release (uname -r).
pub fn kernel_release() -> String {
    // SAFETY: a zeroed utsname is valid for uname to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is writable.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".to_string();
    }
    // SAFETY: uname NUL-terminates release.
    unsafe { CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
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
