//! `apply`: load, reload or leave an interface so that it runs a rule file;
//! the exit status says which.

use std::path::PathBuf;

use super::common::{AttachModeArg, guard_of};
use crate::{
    filter::lifecycle::converge::{Converged, converge},
    state::PinRoot,
};

/// Exit status of `apply` when the file's rules already ran.
const EXIT_UNCHANGED: u8 = 0;
/// Exit status of `apply` after a first load.
const EXIT_LOADED: u8 = 10;
/// Exit status of `apply` after an atomic reload.
const EXIT_RELOADED: u8 = 11;

/// What `apply --json` prints.
#[derive(Debug, serde::Serialize)]
struct Report<'a> {
    schema_version: u32,
    interface: &'a str,
    /// unchanged, loaded or reloaded.
    action: &'static str,
    generation: Option<u32>,
    attach_mode: Option<&'static str>,
    rules_digest: String,
    rule_count: usize,
    exit_code: u8,
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    #[arg(long)]
    iface: String,
    #[arg(long)]
    rules: PathBuf,
    /// Attach mode for a first load (ignored when a filter runs).
    #[arg(long, value_enum, default_value_t = AttachModeArg::Auto)]
    mode: AttachModeArg,
    /// Apply even if the rules would lock you out (see `load --force`).
    #[arg(long)]
    force: bool,
    /// Print what was done as JSON.
    #[arg(long)]
    json: bool,
    /// Exit 0 whether it loaded, reloaded or found nothing to do (for
    /// systemd's ExecStartPre and init containers); errors still exit 1.
    #[arg(long)]
    exit_zero: bool,
}

pub(crate) fn run(root: &PinRoot, a: ApplyArgs) -> anyhow::Result<u8> {
    let (iface, rules) = (a.iface.as_str(), &a.rules);
    let (set, done) = converge(root, iface, rules, guard_of(a.force), a.mode.into())?;
    let (action, generation, attach_mode, code) = match done {
        Converged::Unchanged { generation } => {
            ("unchanged", Some(generation), None, EXIT_UNCHANGED)
        }
        Converged::Loaded { attach_mode } => ("loaded", Some(1), Some(attach_mode), EXIT_LOADED),
        Converged::Reloaded { generation } => ("reloaded", Some(generation), None, EXIT_RELOADED),
    };
    let report = Report {
        schema_version: crate::JSON_SCHEMA_VERSION,
        interface: iface,
        action,
        generation,
        attach_mode,
        rules_digest: set.digest_hex(),
        rule_count: set.rules.len(),
        exit_code: code,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let how = attach_mode.map_or(String::new(), |m| format!(" ({m} mode)"));
        println!(
            "{iface}: {action}{how}: generation {}, {} rules from {}, digest {}",
            generation.unwrap_or(0),
            report.rule_count,
            rules.display(),
            &report.rules_digest[..16]
        );
    }
    Ok(if a.exit_zero { 0 } else { code })
}
