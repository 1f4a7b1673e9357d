//! Where things lie under the pin root: the root itself, one folder per
//! interface, one per program generation in it, the names of the pins they
//! hold (who may act on them: `owner`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Default root of filterctl's pins.
pub(crate) const DEFAULT_ROOT: &str = "/sys/fs/bpf/filterctl";

/// Pin file names inside an interface folder, besides the maps.
pub(crate) const PROG: &str = "prog";
pub(crate) const LINK: &str = "link";
pub(crate) const EGRESS_LINK: &str = "egress-link";
/// A generation's egress program, beside its XDP program.
pub(crate) const EGRESS_PROG: &str = "egress-prog";
/// A generation's egress program pinned again where its recorder runs as a
/// clsact filter (kernels without TCX): see filter::lifecycle::recorder.
pub const EGRESS_TC: &str = "egress-tc";
/// Prefix of the folder an operator's `unload` leaves beside the interface
/// folders (see `state::unloaded`). No interface name holds a colon.
pub const UNLOADED_PREFIX: &str = "unloaded:";

#[derive(Clone, Debug)]
pub struct PinRoot(PathBuf);

impl PinRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PinRoot(path.into())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// The root of the filters of network namespace `name` (`--netns`):
    /// a folder of its own under the default root, since interfaces of
    /// one name (eth0) live in many namespaces. No interface name holds a
    /// colon, so the host's listing tells them apart.
    pub(crate) fn for_netns(&self, name: &str) -> Self {
        PinRoot(self.0.join(format!("netns:{name}")))
    }

    /// Network namespaces with filters under this root (see `for_netns`).
    pub(crate) fn netns_roots(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("netns:").map(str::to_string)
            })
            .collect();
        names.sort();
        names
    }

    pub fn iface_dir(&self, iface: &str) -> PathBuf {
        self.0.join(iface)
    }

    /// The marker of `iface` unloaded on purpose (see `state::unloaded`).
    pub fn unloaded_marker(&self, iface: &str) -> PathBuf {
        self.0.join(format!("{UNLOADED_PREFIX}{iface}"))
    }
}

/// Folder of program generation `n` inside an interface folder.
pub fn generation_dir(iface_dir: &Path, n: u32) -> PathBuf {
    iface_dir.join(format!("gen-{n}"))
}

/// Generations that have pins in an interface folder, sorted.
pub(crate) fn generations(iface_dir: &Path) -> anyhow::Result<Vec<u32>> {
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
