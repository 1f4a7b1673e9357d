//! The marker an operator's `unload` leaves: `<root>/unloaded:<iface>`, an
//! empty folder (bpffs holds no plain files) that says the filter is off on
//! purpose, so that `serve` does not load it again when it finds it gone.
//! It lives on the same bpffs as the pins, so a reboot or a new bpffs,
//! which take the filter away, take the marker too: serve then restores
//! the filter. `load` (and so `apply`) removes it.

use std::path::Path;

use anyhow::Context as _;

use super::{PinRoot, pins};

/// Marks `iface` as unloaded on purpose; a marker already there is fine.
/// The pin root must exist.
pub fn mark(root: &PinRoot, iface: &str) -> anyhow::Result<()> {
    let marker = root.unloaded_marker(iface);
    if marker.is_dir() {
        return Ok(());
    }
    pins::create_dir(&marker).or_else(|e| {
        // Another unload made it meanwhile.
        if marker.is_dir() { Ok(()) } else { Err(e) }
    })
}

/// Whether an operator's `unload` left `iface` off on purpose.
pub fn is_marked(root: &PinRoot, iface: &str) -> bool {
    root.unloaded_marker(iface).is_dir()
}

/// Removes the marker of `iface`, if any.
pub fn clear(root: &PinRoot, iface: &str) -> anyhow::Result<()> {
    remove(&root.unloaded_marker(iface))
}

fn remove(marker: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir(marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", marker.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_clear_and_listing() {
        let dir = std::env::temp_dir().join(format!("flt-unloaded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("eth0")).unwrap();
        let root = PinRoot::new(&dir);
        assert!(!is_marked(&root, "eth0"));
        mark(&root, "eth0").unwrap();
        mark(&root, "eth0").unwrap();
        assert!(is_marked(&root, "eth0"));
        assert!(!is_marked(&root, "eth1"));
        // The marker is no interface with a filter.
        assert_eq!(root.interfaces().unwrap(), ["eth0"]);
        clear(&root, "eth0").unwrap();
        clear(&root, "eth0").unwrap();
        assert!(!is_marked(&root, "eth0"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
