//! Making sure the pin root lies on a bpffs before anything is pinned.

use std::{
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::PinRoot;
use crate::sys;

impl PinRoot {
    /// Makes sure the root sits on a bpffs, mounting one at /sys/fs/bpf when
    /// nothing is mounted there yet (only in the host's mount namespace),
    /// and that the root is a folder only this user can write to.
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
            if !sys::in_initial_mount_namespace() {
                bail!(
                    "no bpffs at {} in this mount namespace (a container, or a service with private mounts): \
                     a bpffs mounted here would vanish with the namespace, and the filter with it; \
                     give it the host's bpffs (e.g. bind-mount /sys/fs/bpf) or mount one yourself with \
                     `mount -t bpf bpf {}` if that is really what you want",
                    mount_point.display(),
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
        if !root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .with_context(|| format!("cannot create pin folder {}", root.display()))?;
        }
        check_owner(root)
    }
}

/// Refuses a pin folder that another user owns or can write to: whoever
/// controls it controls what filterctl loads, finds and reports (bpffs
/// here is world-writable with the sticky bit).
pub fn check_owner(dir: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let me = sys::euid();
    if !meta.is_dir() {
        bail!("{} is not a folder: remove it", dir.display());
    }
    if meta.uid() != me {
        bail!(
            "{} belongs to user {}, not to you (user {me}): someone else made it; remove it (rm -r {}) and run again",
            dir.display(),
            meta.uid(),
            dir.display()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{} can be written by other users (mode {:o}): `chmod go-w {}` and run again",
            dir.display(),
            meta.mode() & 0o7777,
            dir.display()
        );
    }
    Ok(())
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
