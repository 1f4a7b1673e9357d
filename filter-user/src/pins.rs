//! Where a loaded filter lives on bpffs: one folder per interface holding the
//! program, its XDP link and every map, so the filter outlives filterctl and
//! any later filterctl finds the whole state again.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// Default root of filterctl's pins.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/filterctl";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Pin file names inside an interface folder, besides the maps.
pub const PROG: &str = "prog";
pub const LINK: &str = "link";

#[derive(Clone, Debug)]
pub struct PinRoot(PathBuf);

impl PinRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PinRoot(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn iface_dir(&self, iface: &str) -> PathBuf {
        self.0.join(iface)
    }

    /// Interfaces that have a pin folder, sorted.
    pub fn interfaces(&self) -> anyhow::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.0) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", self.0.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", self.0.display()))?;
            if entry.file_type()?.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Makes sure the root sits on a bpffs, mounting one at /sys/fs/bpf when
    /// nothing is mounted there yet.
    pub fn ensure_bpffs(&self) -> anyhow::Result<()> {
        let mount_point = bpffs_mount_point(&self.0);
        if !is_bpffs(&mount_point) {
            if mount_point != Path::new("/sys/fs/bpf") {
                bail!(
                    "{} is not on a bpffs: mount one with `mount -t bpf bpf {}`",
                    self.0.display(),
                    mount_point.display()
                );
            }
            mount_bpffs(&mount_point)?;
        }
        std::fs::create_dir_all(&self.0)
            .with_context(|| format!("cannot create pin folder {}", self.0.display()))
    }
}

/// The existing ancestor of `path` that would hold the bpffs.
fn bpffs_mount_point(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            break;
        }
    }
    p
}

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    st.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(at: &Path) -> anyhow::Result<()> {
    let target = CString::new(at.as_os_str().as_encoded_bytes())?;
    let bpf = CString::new("bpf")?;
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
        bail!(
            "no bpffs at {} and mounting one failed: {} (mount it with `mount -t bpf bpf {}`)",
            at.display(),
            std::io::Error::last_os_error(),
            at.display()
        );
    }
    Ok(())
}

/// Folder of program generation `n` inside an interface folder.
pub fn generation_dir(iface_dir: &Path, n: u32) -> PathBuf {
    iface_dir.join(format!("gen-{n}"))
}

/// Generations that have pins in an interface folder, sorted.
pub fn generations(iface_dir: &Path) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(iface_dir)
        .with_context(|| format!("cannot list {}", iface_dir.display()))?;
    for e in entries.flatten() {
        if let Some(n) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("gen-"))
            .and_then(|n| n.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}
