//! `reload`: replacing the rule set of a running filter in one atomic step
//! (see `switch`), then retiring what the previous generation left: its
//! recorder, its pins, the state maps made anew in its place.

use std::path::Path;

use filter_common::SHARED_FLAG;

use super::{
    failpoint, flags, recorder, request_table,
    state_maps::{self, ReloadOptions},
    switch::switch,
};
use crate::{
    rules::RuleSet,
    state::{
        PinRoot,
        layout::generation_dir,
        lock::{IfaceLock, LOCK_WAIT},
        pins,
    },
};

/// A reload that failed, and whether the new rules got to enforce.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("failed to reload {iface}; the previous rules are still enforcing: {cause:#}")]
    NotSwitched { iface: String, cause: anyhow::Error },
    #[error(
        "{iface} runs the new rules (generation {generation}), but the reload did not finish: {cause:#}"
    )]
    AfterSwitch {
        iface: String,
        generation: u32,
        cause: anyhow::Error,
    },
}

/// Replaces the rule set of the filter on `iface` in one atomic step: a new
/// program generation is built aside with its own rule maps and the state
/// maps (counters, limiter, bans, fragment memory) of the running one, then
/// the XDP link is switched to it. Every packet sees either the old or the
/// new rule set, never a mix. Any failure before the switch leaves the old
/// generation enforcing. One writer at a time: the interface is locked.
pub fn reload(
    root: &PinRoot,
    iface: &str,
    set: &RuleSet,
    source: &Path,
) -> Result<u32, ReloadError> {
    reload_with(root, iface, set, source, ReloadOptions::default())
}

pub(crate) fn reload_with(
    root: &PinRoot,
    iface: &str,
    set: &RuleSet,
    source: &Path,
    opts: ReloadOptions,
) -> Result<u32, ReloadError> {
    let not_switched = |cause| ReloadError::NotSwitched {
        iface: iface.to_string(),
        cause,
    };
    let dir = root.iface_dir(iface);
    let lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT).map_err(|e| not_switched(e.into()))?;
    let (generation, ebpf, remade) =
        switch(&dir, iface, set, source, opts).map_err(not_switched)?;
    let after = || -> anyhow::Result<()> {
        failpoint::hit("after-switch")?;
        state_maps::after_switch(&ebpf, &dir, &remade)?;
        // The old recorders go: the program whose copy of the open
        // requests they kept no longer runs.
        recorder::retire_older(iface, &dir, generation)?;
        // Bans that the previous generation set after `prepare` copied the
        // flag: it no longer runs.
        let gen_dir = generation_dir(&dir, generation);
        flags::copy_ban_flag(&dir, &gen_dir)?;
        // An interface that came to share the requests after `prepare`
        // looked wrote its flag into the previous generation. Set only:
        // requests that a sibling unloaded meanwhile sent after the seed
        // are in LOCAL_PORTS, not in the copy.
        if request_table::flag(&dir) != 0 {
            flags::write(&gen_dir, SHARED_FLAG, 1)?;
        }
        // Older generations are no longer referenced by the link: their
        // pins are all that keep them (crashed reloads may have left some).
        // Nothing newer exists: this reload holds the lock.
        pins::remove_older_generations(&dir, generation)
    };
    let result = after().map_err(|cause| ReloadError::AfterSwitch {
        iface: iface.to_string(),
        generation,
        cause,
    });
    drop(lock);
    result.map(|()| generation)
}
