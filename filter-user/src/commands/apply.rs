//! `apply`: load, reload or leave an interface so that it runs a rule file;
//! the exit status says which.

use std::path::Path;

use super::load::guard_of;
use crate::{
    filter::{
        converge::{Converged, converge},
        load::AttachMode,
    },
    state::PinRoot,
};

/// Exit status of `apply` when the file's rules already ran.
pub const EXIT_UNCHANGED: u8 = 0;
/// Exit status of `apply` after a first load.
pub const EXIT_LOADED: u8 = 10;
/// Exit status of `apply` after an atomic reload.
pub const EXIT_RELOADED: u8 = 11;

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

pub fn apply(
    root: &PinRoot,
    iface: &str,
    rules: &Path,
    mode: AttachMode,
    force: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let (set, done) = converge(root, iface, rules, guard_of(force), mode)?;
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
    if json {
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
    Ok(code)
}
