//! `apply`: bring an interface in step with a rule file whatever its state,
//! for boot scripts and GitOps: load when nothing runs, reload atomically
//! when another rule set runs, nothing when the file's digest already runs.

use std::path::Path;

use anyhow::Context as _;

use super::{
    apply::{self, Applied, Guard, apply_rules},
    load::load,
    mode::AttachMode,
    state_maps::ReloadOptions,
};
use crate::{filter::observe::status, rules::RuleSet, state::PinRoot};

/// What `converge` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Converged {
    /// The file's rule set already ran.
    Unchanged { generation: u32 },
    /// Nothing ran: the filter was loaded, attached in this mode.
    Loaded { attach_mode: &'static str },
    /// Another rule set ran: a new generation enforces the file.
    Reloaded { generation: u32 },
}

/// Loads `path` on `iface`, reloads it, or leaves it: whichever makes the
/// interface run the file's rules. `mode` is used only for a first load.
pub(crate) fn converge(
    root: &PinRoot,
    iface: &str,
    path: &Path,
    guard: Guard,
    mode: AttachMode,
) -> anyhow::Result<(RuleSet, Converged)> {
    if !root.iface_dir(iface).is_dir() {
        let set = crate::rules::load_file(path)?;
        apply::guard(&set, guard)?;
        let attach_mode = load(root, iface, &set, path, mode)
            .with_context(|| format!("failed to load the filter on {iface}"))?;
        return Ok((set, Converged::Loaded { attach_mode }));
    }
    let running = status::status(root, iface).with_context(|| {
        format!("{iface} has pins but no running filter could be read from them (`filterctl unload --iface {iface}` clears them)")
    })?;
    // The adaptive blocks and imported routes that run stay: `serve` lifts
    // them when their hold ends or their route is withdrawn.
    let (set, applied) = apply_rules(
        root,
        iface,
        path,
        guard,
        Some(&running.rules_digest),
        &running.added(),
        ReloadOptions::default(),
    )?;
    let done = match applied {
        Applied::Unchanged => Converged::Unchanged {
            generation: running.generation,
        },
        Applied::Reloaded { generation } => Converged::Reloaded { generation },
    };
    Ok((set, done))
}
