//! The one owner of what lives on bpffs. A loaded filter is one folder per
//! interface under the pin root, holding the XDP link, the state maps that
//! outlive reloads, and one folder per program generation with the program,
//! its rule maps and the records of what it enforces:
//!
//! ```text
//! <root>/<iface>/link            the XDP link: names the generation that runs
//! <root>/<iface>/egress-link     the TC egress link recording the host's requests
//! <root>/<iface>/COUNTERS, BANS... state maps, shared by every generation
//! <root>/<iface>/gen-<n>/prog    a generation's program
//! <root>/<iface>/gen-<n>/META    what it enforces (digest, source, git, attach mode)
//! <root>/<iface>/gen-<n>/RULESET its rule set in canonical form (for diff)
//! <root>/<iface>/gen-<n>/egress-link its recorder's link, during a reload
//!                                (moved to <iface>/egress-link after the switch)
//! <root>/<iface>/gen-<n>/egress-tc its recorder's program again, where the
//!                                kernel has no TCX: says that a clsact filter
//!                                with the generation's number runs it
//! <root>netns:<name>/...         `--netns NAME` under the default root
//! ```

pub mod bpffs;
pub mod generation;
pub mod lock;
pub mod record;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use self::generation::{
    CurrentGeneration, current_generation, open_map, open_map_data, read_config, read_meta,
};

/// Default root of filterctl's pins.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/filterctl";

/// Pin file names inside an interface folder, besides the maps.
pub const PROG: &str = "prog";
pub const LINK: &str = "link";
pub const EGRESS_LINK: &str = "egress-link";
/// A generation's egress program, beside its XDP program.
pub const EGRESS_PROG: &str = "egress-prog";
/// A generation's egress program pinned again where its recorder runs as a
/// clsact filter (kernels without TCX): see filter::recorder.
pub const EGRESS_TC: &str = "egress-tc";

#[derive(Clone, Debug)]
pub struct PinRoot(PathBuf);

impl PinRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PinRoot(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The root of the filters of network namespace `name` (`--netns`):
    /// a folder of its own under the default root, since interfaces of
    /// one name (eth0) live in many namespaces. No interface name holds a
    /// colon, so the host's listing tells them apart.
    pub fn for_netns(&self, name: &str) -> Self {
        PinRoot(self.0.join(format!("netns:{name}")))
    }

    /// Network namespaces with filters under this root (see `for_netns`).
    pub fn netns_roots(&self) -> Vec<String> {
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

    /// Interfaces that have a pin folder, sorted. Folders this user does
    /// not own are not filterctl's (a decoy someone made on a shared bpffs):
    /// they are left out, with a warning.
    pub fn interfaces(&self) -> anyhow::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.0) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Under `ip netns exec` the host's bpffs is hidden: "no
                // filter" would be a lie.
                if let Some(why) = self.hidden_bpffs() {
                    anyhow::bail!("no filter can be seen from here: {why}");
                }
                return Ok(Vec::new());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", self.0.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", self.0.display()))?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Err(e) = bpffs::check_owner(&entry.path()) {
                log::warn!("ignored: {e:#}");
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            // Another network namespace's filters (see `for_netns`): no
            // interface name holds a colon.
            if name.contains(':') {
                continue;
            }
            names.push(name);
        }
        names.sort();
        Ok(names)
    }
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
