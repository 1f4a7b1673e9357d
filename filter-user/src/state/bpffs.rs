//! Making sure the pin root lies on a bpffs before anything is pinned.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::PinRoot;
use crate::sys;

impl PinRoot {
    /// Makes sure the root sits on a bpffs, mounting one at /sys/fs/bpf when
    /// nothing is mounted there yet.
    pub fn ensure_bpffs(&self) -> anyhow::Result<()> {
        let root = self.path();
        let mount_point = bpffs_mount_point(root);
        if !sys::is_bpffs(&mount_point) {
            if mount_point != Path::new("/sys/fs/bpf") {
                bail!(
                    "{} is not on a bpffs: mount one with `mount -t bpf bpf {}`",
                    root.display(),
                    mount_point.display()
                );
            }
            sys::mount_bpffs(&mount_point).with_context(|| {
                format!(
                    "no bpffs at {} (mount it with `mount -t bpf bpf {}`)",
                    mount_point.display(),
                    mount_point.display()
                )
            })?;
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create pin folder {}", root.display()))
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
