//! Bringing an interface in step with a rule file: read and validate the
//! file, refuse it if it would lock the operator out, reload atomically.
//! `filterctl reload` and `serve`'s watcher both go through here.

use std::{borrow::Cow, path::Path};

use super::{
    reload::{ReloadError, reload_with},
    state_maps::ReloadOptions,
};
use crate::{
    lockout::{self, Lockout},
    rules::{
        self, RuleSet, RulesError,
        imports::{Added, with_added},
    },
    state::PinRoot,
};

/// Whether the lockout guard applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    Check,
    /// The operator said --force.
    Force,
}

/// What `apply_rules` did.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The file's digest is what runs already: nothing done.
    Unchanged,
    /// A new generation enforces the file.
    Reloaded { generation: u32 },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The file is unreadable or invalid: nothing was loaded.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The lockout guard refused it: nothing was loaded.
    #[error(transparent)]
    Lockout(#[from] Lockout),
    /// The reload failed; the error says whether the switch happened.
    #[error(transparent)]
    Reload(#[from] ReloadError),
}

impl ApplyError {
    /// True when the file itself was refused (not the kernel or the pins).
    pub(crate) fn is_invalid(&self) -> bool {
        matches!(self, ApplyError::Rules(_) | ApplyError::Lockout(_))
    }
}

/// The lockout guard, unless forced.
pub(crate) fn guard(set: &RuleSet, guard: Guard) -> Result<(), Lockout> {
    match guard {
        Guard::Force => Ok(()),
        Guard::Check => lockout::check(set, &lockout::protected_addresses()),
    }
}

/// Reloads `iface` with the rules of `path` plus what `serve` `added` and
/// keeps (adaptive blocks, imported routes; a file without `[adaptive]`, or
/// one whose rules leave no room for them, drops them), unless `running` is already
/// the file's digest. Returns the rule set read from the file and what was
/// done. `opts` say how the reload treats the state maps.
pub(crate) fn apply_rules(
    root: &PinRoot,
    iface: &str,
    path: &Path,
    lockout_guard: Guard,
    running: Option<&str>,
    added: &Added,
    opts: ReloadOptions,
) -> Result<(RuleSet, Applied), ApplyError> {
    let set = rules::load_file(path)?;
    if running == Some(set.digest_hex().as_str()) {
        return Ok((set, Applied::Unchanged));
    }
    guard(&set, lockout_guard)?;
    let run = if added.is_empty() {
        Cow::Borrowed(&set)
    } else {
        Cow::Owned(with_added(&set, added))
    };
    let generation = reload_with(root, iface, &run, path, opts)?;
    Ok((set, Applied::Reloaded { generation }))
}
