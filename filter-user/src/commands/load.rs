//! `load`, `reload`, `mode` and `unload`: what the filter runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::common::{AttachModeArg, DEFAULT_RULES_NAME, default_rule_set, guard_of};
use crate::{
    filter::lifecycle::{
        apply::{self, Applied, apply_rules},
        load,
        mode::set_mode,
        state_maps::ReloadOptions,
        unload,
    },
    rules::{self, RuleSet},
    state::PinRoot,
};

fn rules_for(path: Option<&Path>) -> anyhow::Result<(RuleSet, PathBuf)> {
    match path {
        Some(p) => Ok((rules::load_file(p)?, p.to_path_buf())),
        None => Ok((default_rule_set()?, PathBuf::from(DEFAULT_RULES_NAME))),
    }
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    #[arg(long)]
    iface: String,
    /// Rule file (TOML); the built-in default profile when absent.
    #[arg(long)]
    rules: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = AttachModeArg::Auto)]
    mode: AttachModeArg,
    /// Load even if the rules would drop traffic from this host's own
    /// addresses or from your SSH session.
    #[arg(long)]
    force: bool,
}

pub(crate) fn load(root: &PinRoot, a: LoadArgs) -> anyhow::Result<u8> {
    let iface = &a.iface;
    let (set, source) = rules_for(a.rules.as_deref())?;
    apply::guard(&set, guard_of(a.force))?;
    let used = load::load(root, iface, &set, &source, a.mode.into())
        .with_context(|| format!("failed to load the filter on {iface}"))?;
    println!(
        "loaded on {iface} ({used} mode): {} rules from {}, digest {}",
        set.rules.len(),
        source.display(),
        &set.digest_hex()[..16]
    );
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct ReloadArgs {
    #[arg(long)]
    iface: String,
    #[arg(long)]
    rules: PathBuf,
    /// Reload even if the rules would lock you out (see `load --force`).
    #[arg(long)]
    force: bool,
    /// Accept state maps (counters, bans, limiter) whose pins were
    /// removed: they start empty. Without it such a reload fails.
    #[arg(long)]
    reset_state: bool,
}

pub(crate) fn reload(root: &PinRoot, a: ReloadArgs) -> anyhow::Result<u8> {
    let (iface, rules) = (&a.iface, &a.rules);
    let opts = ReloadOptions {
        reset_state: a.reset_state,
    };
    let (set, applied) = apply_rules(
        root,
        iface,
        rules,
        guard_of(a.force),
        None,
        &Default::default(),
        opts,
    )?;
    if let Applied::Reloaded { generation } = applied {
        println!(
            "reloaded {iface}: generation {generation}, {} rules from {}, digest {}",
            set.rules.len(),
            rules.display(),
            &set.digest_hex()[..16]
        );
    }
    Ok(0)
}

/// The positional argument of `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum EnforceOrMonitor {
    Enforce,
    Monitor,
}

#[derive(clap::Args, Debug)]
pub struct ModeArgs {
    #[arg(long)]
    iface: String,
    #[arg(value_enum)]
    mode: EnforceOrMonitor,
}

pub(crate) fn mode(root: &PinRoot, a: ModeArgs) -> anyhow::Result<u8> {
    let monitor = a.mode == EnforceOrMonitor::Monitor;
    set_mode(root, &a.iface, monitor)?;
    println!(
        "{}: {}",
        a.iface,
        if monitor { "monitor" } else { "enforce" }
    );
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct UnloadArgs {
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    iface: Option<String>,
    #[arg(long)]
    all: bool,
}

pub(crate) fn unload(root: &PinRoot, a: UnloadArgs) -> anyhow::Result<u8> {
    let targets = match a.iface {
        Some(i) => vec![i],
        None => root.interfaces()?,
    };
    if a.all && targets.is_empty() {
        println!("no filter loaded");
    }
    for iface in targets {
        unload::unload(root, &iface)?;
        println!("unloaded from {iface}");
    }
    Ok(0)
}
