//! Who may act on a pin folder, and who owns what filterctl makes in one.
//!
//! One model for root and the service user alike. A folder that others can
//! write to is trusted by no one: whoever can write there controls what
//! filterctl loads, finds and reports (bpffs is often world-writable with
//! the sticky bit). Otherwise a user trusts its own folders, and root also
//! those of the pin root's owner (the service user, whom systemd-tmpfiles
//! gives the pin root) and root's own. What root makes in a folder of
//! another user (a generation, its pins, an interface folder) is handed to
//! that folder's owner as soon as it is made, before a switch makes it
//! live: the service keeps working after root acted.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use anyhow::Context as _;

use crate::sys;

/// Why a pin folder is not trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Distrust {
    /// Group or others may write to it.
    Writable { mode: u32 },
    /// It belongs to `owner`, who is not this user (`euid`) and, for root,
    /// neither root nor the pin root's owner (`root_owner`).
    Foreign {
        owner: u32,
        root_owner: u32,
        euid: u32,
    },
}

/// Whether user `euid` trusts a folder of `owner` with permission bits
/// `mode`, under a pin root that belongs to `root_owner`.
pub(crate) fn trust(owner: u32, root_owner: u32, euid: u32, mode: u32) -> Result<(), Distrust> {
    if mode & 0o022 != 0 {
        return Err(Distrust::Writable {
            mode: mode & 0o7777,
        });
    }
    let mine = owner == euid;
    let roots = euid == 0 && (owner == 0 || owner == root_owner);
    if mine || roots {
        return Ok(());
    }
    Err(Distrust::Foreign {
        owner,
        root_owner,
        euid,
    })
}

impl Distrust {
    /// What a person reads: the folder, its owner and what to do.
    /// `name` gives a user's name, if it has one.
    pub(crate) fn explain(&self, dir: &Path, name: &dyn Fn(u32) -> Option<String>) -> String {
        let dir = dir.display();
        match *self {
            Distrust::Writable { mode } => format!(
                "{dir} can be written by other users (mode {mode:o}): `chmod go-w {dir}` and run again"
            ),
            Distrust::Foreign { owner, euid, .. } if euid != 0 => format!(
                "{dir} belongs to user {}, not to you (user {}): {}; \
                 if no one should have made it, remove it (rm -r {dir})",
                label(owner, name),
                label(euid, name),
                run_as(owner, name),
            ),
            Distrust::Foreign {
                owner, root_owner, ..
            } => format!(
                "{dir} belongs to user {}, neither root nor the pin root's owner (user {}): \
                 someone else made it; remove it (rm -r {dir}) and run again",
                label(owner, name),
                label(root_owner, name),
            ),
        }
    }
}

/// "65534 (nobody)", or the bare uid of a user without a name.
fn label(uid: u32, name: &dyn Fn(u32) -> Option<String>) -> String {
    match name(uid) {
        Some(n) => format!("{uid} ({n})"),
        None => uid.to_string(),
    }
}

/// Whom to run filterctl as, to act on what `owner` made.
fn run_as(owner: u32, name: &dyn Fn(u32) -> Option<String>) -> String {
    if owner == 0 {
        return "run filterctl as root".to_string();
    }
    let who = name(owner).unwrap_or_else(|| format!("uid {owner}"));
    format!("run filterctl as {who} or as root")
}

/// Refuses a pin folder that this user does not trust (see [`trust`]);
/// `pin_root` is the pin root it lies in (or `dir` itself).
pub(crate) fn check_owner(dir: &Path, pin_root: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("{} is not a folder: remove it", dir.display());
    }
    let root_owner = if dir == pin_root {
        meta.uid()
    } else {
        std::fs::symlink_metadata(pin_root)
            .with_context(|| format!("cannot read {}", pin_root.display()))?
            .uid()
    };
    trust(meta.uid(), root_owner, sys::euid(), meta.mode())
        .map_err(|d| anyhow::anyhow!(d.explain(dir, &sys::user_name)))
}

/// Who gets what user `euid` just made in a folder of `folder_owner`: that
/// owner, when root made it in another user's folder; else it stays.
fn heir(euid: u32, folder_owner: u32) -> Option<u32> {
    (euid == 0 && folder_owner != 0).then_some(folder_owner)
}

/// Hands `path`, just made, to the owner of the folder it lies in (see
/// [`heir`]).
pub(crate) fn hand_over(path: &Path) -> anyhow::Result<()> {
    let euid = sys::euid();
    if euid != 0 {
        return Ok(());
    }
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let folder =
        std::fs::metadata(parent).with_context(|| format!("cannot read {}", parent.display()))?;
    if let Some(uid) = heir(euid, folder.uid()) {
        give(path, uid, folder.gid(), parent)?;
    }
    Ok(())
}

/// Hands the files in `dir` that are not its owner's to its owner, when
/// root acts in another user's folder: pins made by aya's loader (state
/// maps pinned by path), which filterctl does not make one by one.
pub(crate) fn hand_over_files(dir: &Path) -> anyhow::Result<()> {
    let euid = sys::euid();
    if euid != 0 {
        return Ok(());
    }
    let folder =
        std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let Some(uid) = heir(euid, folder.uid()) else {
        return Ok(());
    };
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let meta = entry.metadata()?;
        if meta.is_file() && meta.uid() != uid {
            give(&entry.path(), uid, folder.gid(), dir)?;
        }
    }
    Ok(())
}

fn give(path: &Path, uid: u32, gid: u32, folder: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).with_context(|| {
        format!(
            "cannot hand {} to user {uid}, who owns {}",
            path.display(),
            folder.display()
        )
    })
}

/// Whether `e` comes from a refused access (EACCES) to a file.
pub(crate) fn is_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EACCES))
    })
}

/// `e`, when it is a refused access to `path`, with who owns it and what
/// to do; any other error as it is. A pin another user made (0600 on
/// bpffs) is what this user cannot open, not a missing one.
pub(crate) fn explain_denied(e: anyhow::Error, path: &Path) -> anyhow::Error {
    if !is_denied(&e) {
        return e;
    }
    match whose(path) {
        Some(why) => e.context(why),
        None => e,
    }
}

/// Why this user may not open `path`, when another user owns it or the
/// nearest folder above it that this user can see (a pin in a folder it
/// cannot enter is refused because of the folder).
pub(crate) fn whose(path: &Path) -> Option<String> {
    let euid = sys::euid();
    let (place, owner) = path
        .ancestors()
        .find_map(|p| Some((p, std::fs::symlink_metadata(p).ok()?.uid())))?;
    if owner == euid {
        return None;
    }
    let name = &sys::user_name;
    Some(format!(
        "permission denied: {} belongs to user {}, not to you (user {}): {}",
        place.display(),
        label(owner, name),
        label(euid, name),
        run_as(owner, name),
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Distrust, heir, trust};

    const SERVICE: u32 = 990;
    const ALICE: u32 = 1000;
    const MALLORY: u32 = 1001;

    fn names(uid: u32) -> Option<String> {
        match uid {
            0 => Some("root".into()),
            SERVICE => Some("filterctl".into()),
            ALICE => Some("alice".into()),
            _ => None,
        }
    }

    fn refusal(owner: u32, root_owner: u32, euid: u32, mode: u32) -> String {
        match trust(owner, root_owner, euid, mode) {
            Err(d) => d.explain(Path::new("/sys/fs/bpf/filterctl/eth0"), &names),
            Ok(()) => panic!("user {euid} trusted a folder of {owner} (mode {mode:o})"),
        }
    }

    #[test]
    fn each_user_trusts_its_own_folders() {
        // (folder owner, pin root owner, euid)
        for (owner, root_owner, euid) in [
            (SERVICE, SERVICE, SERVICE),
            (ALICE, ALICE, ALICE),
            (0, 0, 0),
            // A user's own folder in a root that is not its own.
            (ALICE, 0, ALICE),
        ] {
            assert_eq!(trust(owner, root_owner, euid, 0o40700), Ok(()));
            assert_eq!(trust(owner, root_owner, euid, 0o40755), Ok(()));
        }
    }

    #[test]
    fn root_trusts_the_pin_roots_owner_and_itself() {
        assert_eq!(trust(SERVICE, SERVICE, 0, 0o40700), Ok(()));
        // Left by root in the service's root (before root handed things over).
        assert_eq!(trust(0, SERVICE, 0, 0o40755), Ok(()));
    }

    #[test]
    fn root_refuses_a_stranger_naming_both_owners() {
        let why = refusal(MALLORY, SERVICE, 0, 0o40700);
        assert!(
            why.contains(
                "belongs to user 1001, neither root nor the pin root's owner (user 990 (filterctl))"
            ) && why.contains("rm -r /sys/fs/bpf/filterctl/eth0"),
            "{why}"
        );
        // A root-owned pin root: the service's folder in it is a stranger's.
        assert!(matches!(
            trust(SERVICE, 0, 0, 0o40700),
            Err(Distrust::Foreign { owner: SERVICE, .. })
        ));
    }

    #[test]
    fn a_user_refuses_another_users_folder_naming_the_owner() {
        // Alice looks at the service's filter: told whom to run as.
        let why = refusal(SERVICE, SERVICE, ALICE, 0o40755);
        assert!(
            why.contains("belongs to user 990 (filterctl), not to you (user 1000 (alice))")
                && why.contains("run filterctl as filterctl or as root"),
            "{why}"
        );
        // The service finds what root left before root handed things over.
        let why = refusal(0, SERVICE, SERVICE, 0o40755);
        assert!(
            why.contains("belongs to user 0 (root)") && why.contains("run filterctl as root;"),
            "{why}"
        );
        // The pin root's owner is trusted by root only: a planted folder.
        assert!(trust(MALLORY, MALLORY, ALICE, 0o40700).is_err());
        let why = refusal(MALLORY, SERVICE, SERVICE, 0o40700);
        assert!(why.contains("run filterctl as uid 1001"), "{why}");
    }

    #[test]
    fn no_one_trusts_a_folder_others_can_write_to() {
        for euid in [0, SERVICE, ALICE] {
            for mode in [0o40775, 0o40757, 0o41777] {
                let why = refusal(euid, euid, euid, mode);
                assert!(why.contains("chmod go-w"), "{why}");
            }
        }
        assert!(refusal(SERVICE, SERVICE, 0, 0o40770).contains("mode 770"));
    }

    #[test]
    fn what_root_makes_in_another_users_folder_goes_to_that_user() {
        assert_eq!(heir(0, SERVICE), Some(SERVICE));
        assert_eq!(heir(0, 0), None);
        assert_eq!(heir(SERVICE, SERVICE), None);
        assert_eq!(heir(ALICE, 0), None);
    }
}
