//! What `serve` announces upstream right now and why, as a JSON file it
//! rewrites at every step (bpffs holds only pins): read by `filterctl
//! upstream` and `status`, and by whoever takes over the routes of a serve
//! that died (`handover`). It lives under /run, so a reboot, which also
//! ends every BGP session, clears it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::routes::Route;
use crate::{rules::upstream::SpeakerConfig, state::PinRoot, sys};

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
    /// What the speaker holds because serve asked it to, each with when
    /// it is due to be withdrawn: a serve that died without withdrawing
    /// leaves them here for its keeper, or the next serve, to withdraw on
    /// time.
    #[serde(default, deserialize_with = "held_or_bare")]
    pub applied: Vec<Held>,
    /// The speaker that holds `applied`, to withdraw them through after
    /// serve is gone. None in files an older filterctl wrote.
    #[serde(default)]
    pub speaker_config: Option<SpeakerConfig>,
    /// The process that wrote this file and holds its lock.
    #[serde(default)]
    pub owner: Option<Owner>,
}

/// A route the speaker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub route: Route,
    /// When it is to be withdrawn if its flood stopped now: the last time
    /// its traffic was over the thresholds plus its hold. CLOCK_MONOTONIC
    /// in ns, the clock of the program's deadlines, which a reboot (that
    /// clears this file) restarts and a wall-clock step does not move.
    pub deadline_ns: u64,
}

/// Files written before routes had deadlines list bare routes: due at
/// once, as they were then.
fn held_or_bare<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Held>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Held(Held),
        Bare(Route),
    }
    Ok(Vec::<Entry>::deserialize(d)?
        .into_iter()
        .map(|e| match e {
            Entry::Held(h) => h,
            Entry::Bare(route) => Held {
                route,
                deadline_ns: 0,
            },
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// `filterctl serve`, which announces and withdraws as floods come and
    /// go.
    Serve,
    /// `filterctl upstream keep`, which a serve that died left to withdraw
    /// each route at its deadline.
    Keeper,
}

/// A process, told apart from a later one given the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub role: Role,
    pub pid: u32,
    /// When it started, in clock ticks after boot (/proc/PID/stat).
    pub start_ticks: u64,
}

impl Owner {
    /// This process, in `role`.
    pub fn me(role: Role) -> Owner {
        let pid = std::process::id();
        Owner {
            role,
            pid,
            start_ticks: sys::process_started(pid).unwrap_or(0),
        }
    }

    /// Whether the process still runs (not a later one with its pid).
    pub fn is_running(&self) -> bool {
        sys::process_started(self.pid) == Some(self.start_ticks)
    }
}

impl UpstreamState {
    pub fn count(&self, kind: &str, announced: bool) -> usize {
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

/// The lock whose holder alone acts on the routes of `iface` (see
/// `handover`).
pub fn lock_path(root: &PinRoot, iface: &str) -> PathBuf {
    state_dir(root).join(format!("{iface}.lock"))
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

/// Removes the file (serve stopping), and the folder if that was its last
/// file; a missing one is fine.
pub fn remove(root: &PinRoot, iface: &str) {
    let _ = std::fs::remove_file(state_path(root, iface));
    let _ = std::fs::remove_dir(state_dir(root));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::prefixes::parse_prefix;

    #[test]
    fn a_file_from_before_deadlines_lists_routes_due_at_once() {
        let old = r#"{"interface": "eth0", "speaker": "gobgp 127.0.0.1:50051", "peers": [],
            "dry_run": false, "updated_unix_ms": 1, "routes": [], "over_cap": 0,
            "deferred": 0, "speaker_errors": 0, "last_error": null,
            "applied": [{"blackhole": {"dst": "192.0.2.1/32"}}]}"#;
        let s: UpstreamState = serde_json::from_str(old).unwrap();
        let dst = parse_prefix("192.0.2.1/32").unwrap();
        assert_eq!(
            s.applied,
            vec![Held {
                route: Route::Blackhole { dst },
                deadline_ns: 0
            }]
        );
        assert_eq!((s.speaker_config, s.owner), (None, None));
    }

    #[test]
    fn deadlines_owner_and_speaker_survive_a_trip_through_json() {
        let s = UpstreamState {
            interface: "eth0".into(),
            applied: vec![Held {
                route: Route::Blackhole {
                    dst: parse_prefix("2001:db8::1/128").unwrap(),
                },
                deadline_ns: 123_000_000_000,
            }],
            speaker_config: Some(SpeakerConfig::Gobgp {
                command: "gobgp".into(),
                host: "127.0.0.1".into(),
                port: 50051,
            }),
            owner: Some(Owner::me(Role::Keeper)),
            ..UpstreamState::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""kind":"gobgp""#), "{text}");
        assert!(text.contains(r#""role":"keeper""#), "{text}");
        let back: UpstreamState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.applied, s.applied);
        assert_eq!(back.speaker_config, s.speaker_config);
        assert_eq!(back.owner, s.owner);
        assert!(back.owner.unwrap().is_running());
    }
}
