//! Namespaces and mounts: this process's mount and network namespaces,
//! entering a named one or a new empty one, and the bpffs mount.

use std::{ffi::CString, path::Path};

use super::{error::SysError, fake};

/// Magic number of bpffs in `statfs.f_type`.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn c_path(path: &Path) -> Result<CString, SysError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::BadPath(path.display().to_string()))
}

/// Whether `path` lies on a bpffs.
pub(crate) fn is_bpffs(path: &Path) -> bool {
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
pub(crate) fn mount_bpffs(at: &Path) -> Result<(), SysError> {
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
pub(crate) struct NsId {
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
pub(crate) fn mount_namespace(pid: &str) -> Option<NsId> {
    if pid == "1" && fake::on("init-ns-unreadable") {
        return None;
    }
    ns_id(format!("/proc/{pid}/ns/mnt"))
}

/// The name under /run/netns (as `ip netns add` makes them) of this
/// process's network namespace, if it has one.
pub(crate) fn named_net_namespace() -> Option<String> {
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

/// Moves the calling thread into a new, empty network namespace of its
/// own (CAP_SYS_ADMIN): probes that must attach something do it there,
/// and it vanishes with the thread.
pub(crate) fn unshare_net() -> std::io::Result<()> {
    // SAFETY: unshare has no memory preconditions; CLONE_NEWNET affects
    // only the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
