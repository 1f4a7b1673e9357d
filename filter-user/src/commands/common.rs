//! What more than one command needs, kept below them all so that no
//! command borrows from another: the interfaces a command acts on, the
//! options `load` and `apply` share, the built-in rule file and the
//! upstream line of `status`. It imports no command file.

use crate::{
    filter::lifecycle::{apply::Guard, mode::AttachMode},
    rules::{self, RuleSet},
    state::PinRoot,
    upstream::state::{self, UpstreamState},
};

/// The rule file used when `load` gets no --rules.
pub const DEFAULT_RULES: &str = include_str!("../../../rules/default.toml");
/// The source name the built-in rule file is reported under.
pub(super) const DEFAULT_RULES_NAME: &str = "(built-in rules/default.toml)";

/// The built-in default profile.
pub(super) fn default_rule_set() -> anyhow::Result<RuleSet> {
    Ok(rules::parse(DEFAULT_RULES_NAME, DEFAULT_RULES)?)
}

/// The named interface, or every loaded one.
pub(super) fn interfaces(root: &PinRoot, iface: Option<String>) -> anyhow::Result<Vec<String>> {
    let all = match iface {
        Some(i) => vec![i],
        None => root.interfaces()?,
    };
    if all.is_empty() {
        anyhow::bail!("no filter loaded{}", elsewhere(root));
    }
    Ok(all)
}

/// Where else filters run, for a "no filter loaded" that would mislead:
/// the network namespaces with their own folder under this root.
pub(super) fn elsewhere(root: &PinRoot) -> String {
    let names = root.netns_roots();
    if names.is_empty() {
        return String::new();
    }
    format!(
        " here; network namespaces {} have filters (use `filterctl --netns NAME`)",
        names.join(", ")
    )
}

/// The lockout guard of `--force`.
pub(super) fn guard_of(force: bool) -> Guard {
    if force { Guard::Force } else { Guard::Check }
}

/// `--mode` of `load` and `apply`: the library's [`AttachMode`] on the
/// command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AttachModeArg {
    Auto,
    Native,
    Generic,
}

impl From<AttachModeArg> for AttachMode {
    fn from(m: AttachModeArg) -> Self {
        match m {
            AttachModeArg::Auto => AttachMode::Auto,
            AttachModeArg::Native => AttachMode::Native,
            AttachModeArg::Generic => AttachMode::Generic,
        }
    }
}

/// What serve announces upstream for one interface, in a line: the head
/// of each interface in `upstream`, and the upstream line of `status`.
pub(super) fn upstream_headline(s: &UpstreamState) -> String {
    let age_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .saturating_sub(s.updated_unix_ms)
        / 1000;
    format!(
        "{} flowspec, {} blackhole announced via {}{}, peers {:?}, {} speaker errors (serve, {age_s} s ago)",
        s.count("flowspec", true),
        s.count("blackhole", true),
        s.speaker,
        if s.dry_run { " (DRY RUN)" } else { "" },
        s.peers,
        s.speaker_errors,
    )
}

/// The `status` line, when serve drives a speaker for `iface`.
pub(super) fn upstream_summary(root: &PinRoot, iface: &str) -> Option<String> {
    let s = state::read(root, iface).ok()??;
    Some(format!("upstream: {}", upstream_headline(&s)))
}
