//! `load`, `reload`, `mode` and `unload`: what the filter runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::args::ModeArg;
use crate::{
    filter::{
        apply::{self, Applied, Guard, apply_rules},
        load::{self as loader, AttachMode, ReloadOptions},
    },
    rules::{self, RuleSet},
    state::PinRoot,
};

/// The rule file used when `load` gets no --rules.
pub const DEFAULT_RULES: &str = include_str!("../../../rules/default.toml");
const DEFAULT_RULES_NAME: &str = "(built-in rules/default.toml)";

pub(super) fn guard_of(force: bool) -> Guard {
    if force { Guard::Force } else { Guard::Check }
}

/// The built-in default profile.
pub fn default_rule_set() -> anyhow::Result<RuleSet> {
    Ok(rules::parse(DEFAULT_RULES_NAME, DEFAULT_RULES)?)
}

fn rules_for(path: Option<&Path>) -> anyhow::Result<(RuleSet, PathBuf)> {
    match path {
        Some(p) => Ok((rules::load_file(p)?, p.to_path_buf())),
        None => Ok((
            rules::parse(DEFAULT_RULES_NAME, DEFAULT_RULES)?,
            PathBuf::from(DEFAULT_RULES_NAME),
        )),
    }
}

pub fn load(
    root: &PinRoot,
    iface: &str,
    rules: Option<&Path>,
    mode: AttachMode,
    force: bool,
) -> anyhow::Result<()> {
    let (set, source) = rules_for(rules)?;
    apply::guard(&set, guard_of(force))?;
    let used = loader::load(root, iface, &set, &source, mode)
        .with_context(|| format!("failed to load the filter on {iface}"))?;
    println!(
        "loaded on {iface} ({used} mode): {} rules from {}, digest {}",
        set.rules.len(),
        source.display(),
        &set.digest_hex()[..16]
    );
    Ok(())
}

pub fn reload(
    root: &PinRoot,
    iface: &str,
    rules: &Path,
    force: bool,
    reset_state: bool,
) -> anyhow::Result<()> {
    let opts = ReloadOptions { reset_state };
    let (set, applied) = apply_rules(root, iface, rules, guard_of(force), None, &[], opts)?;
    if let Applied::Reloaded { generation } = applied {
        println!(
            "reloaded {iface}: generation {generation}, {} rules from {}, digest {}",
            set.rules.len(),
            rules.display(),
            &set.digest_hex()[..16]
        );
    }
    Ok(())
}

pub fn mode(root: &PinRoot, iface: &str, mode: ModeArg) -> anyhow::Result<()> {
    let monitor = mode == ModeArg::Monitor;
    loader::set_mode(root, iface, monitor)?;
    println!("{iface}: {}", if monitor { "monitor" } else { "enforce" });
    Ok(())
}

pub fn unload(root: &PinRoot, iface: Option<String>, all: bool) -> anyhow::Result<()> {
    let targets = match iface {
        Some(i) => vec![i],
        None => root.interfaces()?,
    };
    if all && targets.is_empty() {
        println!("no filter loaded");
    }
    for iface in targets {
        loader::unload(root, &iface)?;
        println!("unloaded from {iface}");
    }
    Ok(())
}
