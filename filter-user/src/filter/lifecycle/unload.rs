//! `unload`: detaching the filter from an interface and removing every
//! pin of it, leaving the marker that says it was on purpose
//! (`state::unloaded`).

use anyhow::bail;

use super::recorder;
use crate::state::{
    PinRoot,
    layout::{EGRESS_LINK, LINK},
    lock::{IfaceLock, LOCK_WAIT},
    pins, unloaded,
};

/// Detaches the filter from `iface` and removes every pin of it.
pub fn unload(root: &PinRoot, iface: &str) -> anyhow::Result<()> {
    let dir = root.iface_dir(iface);
    let _lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT)?;
    // Another unload may have removed it while this one waited.
    if !dir.is_dir() {
        bail!("no filter loaded on {iface} (no pins in {})", dir.display());
    }
    // Before the pins go: a `serve` watching the interface must never see
    // it gone without the marker, or it loads the filter again.
    if let Err(e) = unloaded::mark(root, iface) {
        log::warn!(
            "cannot mark {iface} as unloaded on purpose ({e:#}): a `filterctl serve` watching it will load it again"
        );
    }
    for name in [LINK, EGRESS_LINK] {
        let link_path = dir.join(name);
        if link_path.exists() {
            // The last reference goes with the pin: the kernel detaches the
            // program from the interface.
            pins::unpin_link(&link_path)?;
        }
    }
    recorder::detach_all(iface, &dir)?;
    pins::remove_dir(&dir)?;
    // A namespace's root (`--netns`) goes with its last filter: nothing
    // else ever removes it. A load racing in keeps it (not empty then), and
    // so does the marker, which must stay.
    let ns_root = root.path();
    if ns_root
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("netns:"))
    {
        let _ = std::fs::remove_dir(ns_root);
    }
    Ok(())
}
