//! Making sure the pin root lies on a bpffs before anything is pinned, and
//! listing the interfaces with filters under it (or saying why none can be
//! seen from here).

use std::{
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::{
    layout::PinRoot,
    owner::{check_owner, explain_denied, hand_over, trust},
};
use crate::sys;

impl PinRoot {
    /// Makes sure the root sits on a bpffs, mounting one at /sys/fs/bpf when
    /// nothing is mounted there yet (only in the host's mount namespace),
    /// and that the root is a folder this user trusts (see `owner`). A pin
    /// root that root makes in another user's folder (`--netns`'s folder in
    /// the service's default root) goes to that user.
    pub(crate) fn ensure_bpffs(&self) -> anyhow::Result<()> {
        let root = self.path();
        let mount_point = bpffs_mount_point(root);
        if !sys::is_bpffs(&mount_point) {
            if mount_point != Path::new("/sys/fs/bpf") {
                bail!(
                    "{} is not on a bpffs: mount one with `mount -t bpf bpf {}`",
                    root.display(),
                    mount_point.display()
                );
            }
            let why = match mount_decision(&MountFacts::of_this_process()) {
                MountDecision::Mount(why) => why,
                MountDecision::Refuse(why) => bail!(
                    "no bpffs at {} in this mount namespace: {why}",
                    mount_point.display()
                ),
            };
            sys::mount_bpffs(&mount_point).with_context(|| {
                format!(
                    "no bpffs at {} (mount it with `mount -t bpf bpf {}`)",
                    mount_point.display(),
                    mount_point.display()
                )
            })?;
            eprintln!(
                "filterctl: mounted a bpffs at {}, where nothing was mounted: {why}",
                mount_point.display()
            );
        }
        if !root.exists() {
            let made: Vec<PathBuf> = root
                .ancestors()
                .take_while(|p| !p.exists())
                .map(Path::to_path_buf)
                .collect();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .with_context(|| format!("cannot create pin folder {}", root.display()))?;
            // Outermost first: each one goes to its parent's owner.
            for dir in made.iter().rev() {
                hand_over(dir)?;
            }
        }
        check_owner(root, root)
    }
}

impl PinRoot {
    /// Why no filter can be seen from this mount namespace, when the root
    /// would lie on a bpffs at /sys/fs/bpf that is not mounted here and
    /// mounting one here would be refused (`ip netns exec`, a container).
    fn hidden_bpffs(&self) -> Option<String> {
        let mount_point = bpffs_mount_point(self.path());
        if mount_point != Path::new("/sys/fs/bpf") || sys::is_bpffs(&mount_point) {
            return None;
        }
        match mount_decision(&MountFacts::of_this_process()) {
            MountDecision::Refuse(why) => Some(format!(
                "no bpffs at /sys/fs/bpf in this mount namespace: {why}"
            )),
            MountDecision::Mount(_) => None,
        }
    }

    /// Interfaces that have a pin folder, sorted. A pin root this user
    /// does not trust is an error that names its owner (not "no filter");
    /// folders in it that this user does not trust are not filterctl's (a
    /// decoy someone made on a shared bpffs): they are left out, with a
    /// warning. See `owner` for whom each user trusts.
    pub(crate) fn interfaces(&self) -> anyhow::Result<Vec<String>> {
        let root = self.path();
        let root_meta = match std::fs::symlink_metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Under `ip netns exec` the host's bpffs is hidden: "no
                // filter" would be a lie.
                if let Some(why) = self.hidden_bpffs() {
                    anyhow::bail!("no filter can be seen from here: {why}");
                }
                return Ok(Vec::new());
            }
            Err(e) => {
                let e = anyhow::Error::new(e).context(format!("cannot read {}", root.display()));
                // A folder above it that this user may not enter: whose.
                return Err(explain_denied(e, root));
            }
        };
        check_owner(root, root)?;
        let entries =
            std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
            let meta = entry.metadata()?;
            if !meta.is_dir() {
                continue;
            }
            if let Err(d) = trust(meta.uid(), root_meta.uid(), sys::euid(), meta.mode()) {
                log::warn!("ignored: {}", d.explain(&entry.path(), &sys::user_name));
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

/// What can be known, without help, of the mount namespace a command runs
/// in: whether a bpffs mounted in it would outlive the command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MountFacts {
    /// Same as PID 1's (the host's, outside containers); `None`: PID 1's
    /// cannot be read (a VM's custom init may refuse even root).
    same_as_init: Option<bool>,
    /// Same as the parent process's; `None`: it cannot be read.
    same_as_parent: Option<bool>,
    /// The name of this process's network namespace under /run/netns.
    named_netns: Option<String>,
    /// Something that says this runs in a container: an environment
    /// variable that container runtimes, Kubernetes or our image set.
    container: Option<String>,
}

impl MountFacts {
    pub(crate) fn of_this_process() -> Self {
        let me = sys::mount_namespace("self");
        let same = |other: Option<sys::NsId>| Some(me? == other?);
        let parent = sys::parent_pid().to_string();
        MountFacts {
            same_as_init: same(sys::mount_namespace("1")),
            same_as_parent: same(sys::mount_namespace(&parent)),
            named_netns: sys::named_net_namespace(),
            container: container_marker(|k| std::env::var_os(k).is_some()),
        }
    }
}

/// Environment variables that only a container sets: Kubernetes in every
/// pod, podman and systemd-nspawn (`container`), and our own image
/// (deploy/container). A `/.dockerenv` file is no such sign: some VMs are
/// booted from Docker images and keep it.
fn container_marker(is_set: impl Fn(&str) -> bool) -> Option<String> {
    [
        "FILTERCTL_IN_CONTAINER",
        "KUBERNETES_SERVICE_HOST",
        "container",
    ]
    .into_iter()
    .find(|k| is_set(k))
    .map(|k| format!("${k} is set"))
}

/// Mount a bpffs at /sys/fs/bpf (with why that is safe), or refuse (with
/// why it would vanish).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MountDecision {
    Mount(String),
    Refuse(String),
}

/// Whether a bpffs mounted in this mount namespace would outlive the
/// command: mounted where the namespace is the host's, or where it cannot
/// be told but nothing says it was made for this command; refused where
/// it was (`unshare -m`, `ip netns exec`, a service's private mounts) or
/// where a container runs, since the filter's pins, and the filter with
/// them, would die with it.
pub(crate) fn mount_decision(f: &MountFacts) -> MountDecision {
    let host = "give it the host's bpffs (bind-mount /sys/fs/bpf) or mount one yourself with \
                `mount -t bpf bpf /sys/fs/bpf` if that is really what you want";
    if let (Some(false), Some(name)) = (f.same_as_parent, &f.named_netns) {
        return MountDecision::Refuse(format!(
            "this command runs in a private mount namespace of its own, made by `ip netns exec {name}` \
             (its /sys hides the host's bpffs): run `filterctl --netns {name} ...` instead, which enters \
             only the network namespace"
        ));
    }
    if f.same_as_init == Some(false) || f.same_as_parent == Some(false) {
        return MountDecision::Refuse(format!(
            "this is a private mount namespace (a container, `unshare -m`, or a service with private \
             mounts), unlike {}: a bpffs mounted here would vanish with the namespace, and the filter \
             with it; {host}",
            if f.same_as_init == Some(false) {
                "PID 1's"
            } else {
                "filterctl's parent's"
            }
        ));
    }
    if let Some(marker) = &f.container {
        return MountDecision::Refuse(format!(
            "this runs in a container ({marker}): a bpffs mounted here would vanish with the container, \
             and the filter with it; {host} (docker/podman: `-v /sys/fs/bpf:/sys/fs/bpf`)"
        ));
    }
    MountDecision::Mount(match (f.same_as_init, f.same_as_parent) {
        (Some(true), _) => "this is the host's mount namespace (PID 1's)".to_string(),
        (_, Some(true)) => "PID 1's mount namespace cannot be read, but this is the one filterctl \
                            was started from (its parent's), not one made for it, and nothing says \
                            it is a container"
            .to_string(),
        _ => {
            "neither PID 1's nor the parent's mount namespace can be read, and nothing says it is \
              a private one or a container"
                .to_string()
        }
    })
}

/// The existing ancestor of `path` that would hold the bpffs.
fn bpffs_mount_point(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            break;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::{MountDecision, MountFacts, container_marker, mount_decision};

    fn refused(f: &MountFacts) -> String {
        match mount_decision(f) {
            MountDecision::Refuse(why) => why,
            d => panic!("expected a refusal of {f:?}, got {d:?}"),
        }
    }

    #[test]
    fn mounts_in_the_hosts_namespace() {
        let f = MountFacts {
            same_as_init: Some(true),
            same_as_parent: Some(true),
            ..MountFacts::default()
        };
        assert!(matches!(mount_decision(&f), MountDecision::Mount(w) if w.contains("PID 1's")));
    }

    #[test]
    fn mounts_where_pid_1_cannot_be_read_but_nothing_was_made_for_the_command() {
        let f = MountFacts {
            same_as_init: None,
            same_as_parent: Some(true),
            ..MountFacts::default()
        };
        assert!(matches!(mount_decision(&f), MountDecision::Mount(w) if w.contains("parent's")));
        let blind = MountFacts::default();
        assert!(matches!(mount_decision(&blind), MountDecision::Mount(_)));
    }

    #[test]
    fn refuses_a_namespace_made_for_the_command() {
        // `unshare -m filterctl ...` where PID 1 cannot be read.
        let f = MountFacts {
            same_as_init: None,
            same_as_parent: Some(false),
            ..MountFacts::default()
        };
        assert!(refused(&f).contains("private mount namespace"));
        // A container or service whose PID 1 can be read.
        let f = MountFacts {
            same_as_init: Some(false),
            same_as_parent: Some(true),
            ..MountFacts::default()
        };
        assert!(refused(&f).contains("PID 1's"));
    }

    #[test]
    fn refuses_ip_netns_exec_naming_the_option() {
        let f = MountFacts {
            same_as_init: None,
            same_as_parent: Some(false),
            named_netns: Some("blue".into()),
            ..MountFacts::default()
        };
        assert!(refused(&f).contains("filterctl --netns blue"));
        // A named network namespace entered with nsenter keeps the mounts.
        let f = MountFacts {
            same_as_parent: Some(true),
            named_netns: Some("blue".into()),
            ..MountFacts::default()
        };
        assert!(matches!(mount_decision(&f), MountDecision::Mount(_)));
    }

    #[test]
    fn refuses_a_container_whose_pid_1_shares_the_namespace() {
        // A pod without hostPID: PID 1 is the container's init.
        let f = MountFacts {
            same_as_init: Some(true),
            same_as_parent: Some(true),
            container: container_marker(|k| k == "KUBERNETES_SERVICE_HOST"),
            ..MountFacts::default()
        };
        assert!(refused(&f).contains("KUBERNETES_SERVICE_HOST"));
        assert_eq!(container_marker(|_| false), None);
    }
}
