//! The capabilities each privileged operation needs, checked before it
//! starts so that a hardened service (a dedicated user with ambient
//! capabilities) works and one without them is told which are missing.
//! Found on Linux 6.18 with `unprivileged_bpf_disabled` set: see the
//! `capabilities` test, which runs each command as an unprivileged user.
//! Reading and writing pinned maps (status, stats, top, ban, unban, mode)
//! and unpinning (unload) need no capability, only access to the pin
//! files: the kernel checks their permissions, as for any file.

use caps::{CapSet, Capability};

/// What loading an XDP program takes (load, reload, apply, replay, and
/// serve with watched files, which reloads them): it is a networking program type, so CAP_BPF and
/// CAP_NET_ADMIN; and CAP_PERFMON, without which the verifier refuses the
/// parser's pointer subtraction ("pointer -= pointer prohibited").
pub(crate) const LOAD: &[Capability] = &[
    Capability::CAP_BPF,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_PERFMON,
];

/// Capabilities a command needs and the process lacks.
#[derive(Debug, thiserror::Error)]
#[error(
    "filterctl {what} needs {} (missing: {}): run it as root, or give its user these capabilities (systemd: AmbientCapabilities={})",
    names(needed), names(missing), needed.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ")
)]
pub(crate) struct MissingCapabilities {
    pub(crate) what: String,
    pub(crate) needed: Vec<Capability>,
    pub(crate) missing: Vec<Capability>,
}

fn names(caps: &[Capability]) -> String {
    caps.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails, naming what is missing, unless the effective set holds `needed`;
/// `what` names the command in the message.
pub(crate) fn require(what: &str, needed: &[Capability]) -> Result<(), MissingCapabilities> {
    // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (kernels before
    // 5.8 knew only it, and newer ones still accept it).
    let has = |c: Capability| {
        let held = |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
        held(c)
            || (matches!(c, Capability::CAP_BPF | Capability::CAP_PERFMON)
                && held(Capability::CAP_SYS_ADMIN))
    };
    let missing: Vec<Capability> = needed.iter().copied().filter(|&c| !has(c)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(MissingCapabilities {
        what: what.to_string(),
        needed: needed.to_vec(),
        missing,
    })
}
