//! What the watcher's parts share: the watched pairs (`Watch`) and the rule
//! set each file gave (`FileSets`), which every task that reloads holds
//! while it does.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

use crate::rules::RuleSet;

/// An interface whose rules follow a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub iface: String,
    pub rules: PathBuf,
}

/// The rule set each watched interface's file gave at its last good read,
/// for the surge detector to add its blocks to. Held for the whole of every
/// reload `serve` makes, so that two never run at once.
#[derive(Clone, Default)]
pub(crate) struct FileSets(Arc<Mutex<HashMap<String, RuleSet>>>);

impl FileSets {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, RuleSet>> {
        // A panic in another reload leaves the map as it was: usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
