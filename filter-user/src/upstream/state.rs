//! What `serve` announces upstream right now and why, as a JSON file it
//! rewrites at every step (bpffs holds only pins): read by `filterctl
//! upstream` and `status`. It lives under /run, so a reboot, which also
//! ends every BGP session, clears it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::routes::Route;
use crate::state::PinRoot;

/// Where the state files of every pin root live.
pub const STATE_DIR: &str = "/run/filterctl/upstream";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteState {
    pub kind: String,
    pub route: String,
    pub why: String,
    /// False in dry-run mode, and while the speaker has not taken it.
    pub announced: bool,
    pub selected_for_s: f64,
    pub pps: u64,
    pub bps: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpstreamState {
    pub interface: String,
    /// "gobgp 127.0.0.1:50051", "exabgp /run/filterctl/exabgp.fifo".
    pub speaker: String,
    pub peers: Vec<String>,
    pub dry_run: bool,
    pub updated_unix_ms: u64,
    pub routes: Vec<RouteState>,
    /// Routes that qualified beyond `max_routes` at the last step.
    pub over_cap: usize,
    /// Changes postponed by `max_changes_per_minute` at the last step.
    pub deferred: usize,
    pub speaker_errors: u64,
    pub last_error: Option<String>,
    /// What the speaker holds because serve asked it to: a serve that died
    /// without withdrawing leaves them here for the next one to withdraw.
    #[serde(default)]
    pub applied: Vec<Route>,
}

impl UpstreamState {
    pub(crate) fn count(&self, kind: &str, announced: bool) -> usize {
        self.routes
            .iter()
            .filter(|r| r.kind == kind && (r.announced || !announced))
            .count()
    }
}

/// The folder of one pin root's state files: pin roots are what separate
/// test instances and hosts' filters, so they separate these too.
pub fn state_dir(root: &PinRoot) -> PathBuf {
    let name: String = root
        .path()
        .display()
        .to_string()
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    Path::new(STATE_DIR).join(name)
}

pub fn state_path(root: &PinRoot, iface: &str) -> PathBuf {
    state_dir(root).join(format!("{iface}.json"))
}

/// Replaces the file in one rename, so a reader never sees half of it.
pub fn write(root: &PinRoot, state: &UpstreamState) -> std::io::Result<()> {
    let path = state_path(root, &state.interface);
    std::fs::create_dir_all(state_dir(root))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&tmp, &path)
}

/// None when no serve has written one for `iface`.
pub fn read(root: &PinRoot, iface: &str) -> anyhow::Result<Option<UpstreamState>> {
    let path = state_path(root, iface);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!("{} is not an upstream state file: {e}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Removes the file (serve stopping); a missing one is fine.
pub(crate) fn remove(root: &PinRoot, iface: &str) {
    let _ = std::fs::remove_file(state_path(root, iface));
    let _ = std::fs::remove_dir(state_dir(root));
}
