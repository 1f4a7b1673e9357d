//! A watched interface whose filter is gone (its pins removed by hand, a
//! new bpffs while serve ran on): its watched file loaded again, unless an
//! operator's `unload` left the marker that says it is off on purpose
//! (`state::unloaded`). Looked at every poll; a failed load is tried again
//! every `RETRY_POLLS` polls and logged when its error changes.

use log::{error, info, warn};

use super::sets::{FileSets, Watch};
use crate::{
    filter::lifecycle::{
        apply::{ApplyError, Guard},
        converge::{Converged, converge},
        mode::AttachMode,
    },
    lockout::Lockout,
    rules::RulesError,
    state::{PinRoot, unloaded},
};

/// Polls between two attempts to load a gone filter again after one failed.
const RETRY_POLLS: u32 = 10;

/// What the last look found of a watched interface's filter.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) enum Gone {
    /// Its pins are there.
    #[default]
    No,
    /// An operator's `unload` left it off.
    OnPurpose,
    /// Loading it again failed with `error`; tried again in `wait` polls.
    Failed { error: String, wait: u32 },
}

/// What a look at a watched interface did.
pub(super) enum Step {
    /// Its pins are there: the file is followed as usual.
    Present,
    /// No pins: left off, loaded again, or failed to. With the result a
    /// reload of the file counts (`ReloadMetrics`) when it tried.
    Absent(Option<&'static str>),
}

/// What the blocking part found or did.
enum Found {
    Present,
    Marked,
    Waiting,
    Loaded(String),
    Failed { error: String, invalid: bool },
}

/// Looks whether `w`'s filter is there and, when it is gone and not on
/// purpose, loads `w`'s file; logs what changed since `gone`.
pub(super) async fn step(root: &PinRoot, w: &Watch, gone: &mut Gone, files: &FileSets) -> Step {
    let attempt = match gone {
        Gone::Failed { wait, .. } if *wait > 0 => {
            *wait -= 1;
            false
        }
        _ => true,
    };
    let (r, watch, f) = (root.clone(), w.clone(), files.clone());
    let found = tokio::task::spawn_blocking(move || look(&r, &watch, attempt, &f))
        .await
        .unwrap_or_else(|e| Found::Failed {
            error: format!("the load task failed: {e}"),
            invalid: false,
        });
    let (iface, file) = (&w.iface, w.rules.display());
    match found {
        Found::Present => {
            if *gone != Gone::No {
                info!("{iface}: a filter runs again");
            }
            *gone = Gone::No;
            Step::Present
        }
        Found::Marked => {
            if *gone != Gone::OnPurpose {
                warn!(
                    "{iface}: no filter, unloaded on purpose ({}): left off until `filterctl load` or `filterctl apply`",
                    root.unloaded_marker(iface).display()
                );
            }
            *gone = Gone::OnPurpose;
            Step::Absent(None)
        }
        Found::Waiting => Step::Absent(None),
        Found::Loaded(what) => {
            warn!(
                "{iface}: the filter was gone without `filterctl unload` (pins removed, a new bpffs): loaded {file} again: {what}"
            );
            *gone = Gone::No;
            Step::Absent(Some("ok"))
        }
        Found::Failed { error, invalid } => {
            if !matches!(gone, Gone::Failed { error: e, .. } if *e == error) {
                error!(
                    "{iface}: the filter is gone and loading {file} again failed (tried again every {RETRY_POLLS} s): {error}"
                );
            }
            *gone = Gone::Failed {
                error,
                wait: RETRY_POLLS - 1,
            };
            Step::Absent(Some(if invalid { "invalid" } else { "failed" }))
        }
    }
}

/// The blocking part of [`step`]: a `stat`, and a load when `attempt`.
fn look(root: &PinRoot, w: &Watch, attempt: bool, files: &FileSets) -> Found {
    if root.iface_dir(&w.iface).is_dir() {
        return Found::Present;
    }
    // Held through the load, as for every reload serve makes.
    let mut files = files.lock();
    if unloaded::is_marked(root, &w.iface) {
        return Found::Marked;
    }
    if !attempt {
        return Found::Waiting;
    }
    match converge(root, &w.iface, &w.rules, Guard::Check, AttachMode::Auto) {
        Ok((set, done)) => {
            let what = match done {
                Converged::Loaded { attach_mode } => format!("{attach_mode} mode"),
                // Someone loaded it meanwhile.
                Converged::Unchanged { generation } | Converged::Reloaded { generation } => {
                    format!("generation {generation}")
                }
            };
            let what = format!(
                "{what}, {} rules, digest {}",
                set.rules.len(),
                &set.digest_hex()[..16]
            );
            files.insert(w.iface.clone(), set);
            Found::Loaded(what)
        }
        Err(e) => Found::Failed {
            error: format!("{e:#}"),
            invalid: is_invalid(&e),
        },
    }
}

/// Whether the file itself was refused (unreadable, invalid, or by the
/// lockout guard), not the kernel or the pins.
fn is_invalid(e: &anyhow::Error) -> bool {
    e.downcast_ref::<RulesError>().is_some()
        || e.downcast_ref::<Lockout>().is_some()
        || e.downcast_ref::<ApplyError>()
            .is_some_and(ApplyError::is_invalid)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A pin root of its own, removed when the test ends.
    struct Pins(PathBuf);

    impl Drop for Pins {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Without root or a filter: a marked interface is left off, and an
    /// unmarked one is loaded, here failing for a file that is not there,
    /// logged once and tried again after `RETRY_POLLS` polls.
    #[tokio::test]
    async fn marked_left_off_unmarked_loaded() {
        let pins = Pins(std::env::temp_dir().join(format!("flt-restore-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&pins.0);
        std::fs::create_dir_all(&pins.0).unwrap();
        let root = PinRoot::new(&pins.0);
        let w = Watch {
            iface: "flt-gone0".into(),
            rules: PathBuf::from("/nonexistent/rules.toml"),
        };
        let files = FileSets::default();
        let mut gone = Gone::No;

        unloaded::mark(&root, &w.iface).unwrap();
        let step1 = step(&root, &w, &mut gone, &files).await;
        assert!(matches!(step1, Step::Absent(None)));
        assert_eq!(gone, Gone::OnPurpose);

        unloaded::clear(&root, &w.iface).unwrap();
        let step2 = step(&root, &w, &mut gone, &files).await;
        assert!(
            matches!(step2, Step::Absent(Some("invalid"))),
            "the file is missing"
        );
        let Gone::Failed { error, wait } = &gone else {
            panic!("{gone:?}");
        };
        assert!(error.contains("/nonexistent/rules.toml"), "{error}");
        assert_eq!(*wait, RETRY_POLLS - 1);
        for _ in 1..RETRY_POLLS {
            let waiting = step(&root, &w, &mut gone, &files).await;
            assert!(matches!(waiting, Step::Absent(None)));
        }
        let again = step(&root, &w, &mut gone, &files).await;
        assert!(
            matches!(again, Step::Absent(Some("invalid"))),
            "tried again"
        );

        // Pins there (a folder will do here): followed as usual.
        std::fs::create_dir(root.iface_dir(&w.iface)).unwrap();
        assert!(matches!(
            step(&root, &w, &mut gone, &files).await,
            Step::Present
        ));
        assert_eq!(gone, Gone::No);
    }
}
