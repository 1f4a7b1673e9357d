//! `replay --expect FILE`: every capture the file lists through the rules,
//! its frames tallied as attack or benign, and the file's thresholds
//! judged. Exit status 0 when every check passes, [`GATE_FAILED`] when one
//! does not; an error (a file that cannot be read) judges nothing.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, anyhow};
use serde::Serialize;

use super::render;
use crate::{
    filter::observe::stats::Totals,
    replay::{
        Options, Replay,
        against::Changes,
        clock::Timing,
        events::Event,
        expect::{self, Check, Label, Tally},
        report::Summary,
    },
    rules::{self, RuleSet},
};

/// The exit status of a gate that judged and failed.
const GATE_FAILED: u8 = 3;

/// What the command line adds to the file.
pub(crate) struct GateArgs<'a> {
    pub(crate) expect: &'a Path,
    pub(crate) rules: Option<&'a Path>,
    pub(crate) against: Option<&'a Path>,
    pub(crate) timing: Option<Timing>,
    pub(crate) json: bool,
}

#[derive(Serialize)]
struct CaptureReport {
    capture: String,
    label: Label,
    attack: Tally,
    benign: Tally,
    summary: Summary,
    totals: std::collections::BTreeMap<&'static str, Totals>,
    events: Vec<Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Changes>,
}

#[derive(Serialize)]
struct GateReport {
    schema_version: u32,
    expect: String,
    rules_file: String,
    rules_digest: String,
    against: Option<String>,
    passed: bool,
    checks: Vec<Check>,
    captures: Vec<CaptureReport>,
}

pub(crate) fn run(a: GateArgs<'_>) -> anyhow::Result<u8> {
    let file = expect::load(a.expect)?;
    let rules_path = a
        .rules
        .map(Path::to_path_buf)
        .or(file.rules.clone())
        .ok_or_else(|| {
            anyhow!(
                "{}: no rules to judge: give --rules, or `rules = \"...\"` in the file",
                a.expect.display()
            )
        })?;
    let set = rules::load_file(&rules_path)?;
    let against_path = a.against.map(Path::to_path_buf).or(file.against.clone());
    let old = against_path
        .as_ref()
        .map(|p| rules::load_file(p).context("the rules to compare against"))
        .transpose()?;
    let rules_name = rules_path.display().to_string();
    let mut captures = Vec::new();
    for spec in &file.captures {
        let options = Options {
            timing: spec.timing.or(a.timing).unwrap_or_default(),
            hosts: spec.hosts.clone(),
            against: old
                .as_ref()
                .zip(against_path.as_ref())
                .map(|(s, p): (&RuleSet, _)| (s, p.display().to_string())),
        };
        let replay = Replay::open(&set, &rules_name, &spec.file, options)?;
        let (mut attack, mut benign) = (Tally::default(), Tally::default());
        let totals = replay.run(|f, facts| {
            if f.judged() {
                if spec.is_attack(facts) {
                    attack.add(f.dropped());
                } else {
                    benign.add(f.dropped());
                }
            }
            Ok(())
        })?;
        captures.push(CaptureReport {
            capture: spec.file.display().to_string(),
            label: spec.label,
            attack,
            benign,
            summary: totals.summary,
            totals: totals.totals,
            events: totals.events,
            changes: totals.changes,
        });
    }
    let tallies: Vec<_> = captures
        .iter()
        .map(|c| (c.capture.clone(), c.attack, c.benign))
        .collect();
    let mut checks = expect::judge(&file.gate, &tallies);
    // A capture that holds none of what its label promises judges nothing
    // while the gate looks green: a stale capture, a wrong `hosts`.
    for c in &captures {
        let (what, n) = match c.label {
            Label::Baseline => ("benign", c.benign.frames),
            Label::Attack | Label::Mixed => ("attack", c.attack.frames),
        };
        if n == 0 {
            checks.push(Check {
                check: if what == "benign" {
                    "benign_frames"
                } else {
                    "attack_frames"
                },
                limit: serde_json::json!(1),
                value: serde_json::json!(0),
                passed: false,
                capture: Some(c.capture.clone()),
            });
        }
    }
    let passed = checks.iter().all(|c| c.passed);
    let report = GateReport {
        schema_version: crate::JSON_SCHEMA_VERSION,
        expect: a.expect.display().to_string(),
        rules_file: rules_name,
        rules_digest: set.digest_hex(),
        against: against_path.map(|p| p.display().to_string()),
        passed,
        checks,
        captures,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    if passed {
        return Ok(0);
    }
    for c in report.checks.iter().filter(|c| !c.passed) {
        eprintln!("gate failed: {}", check_line(c));
    }
    Ok(GATE_FAILED)
}

fn check_line(c: &Check) -> String {
    let about = c
        .capture
        .as_ref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let (value, limit) = match c.check {
        "min_attack_drop" => (percent(&c.value), format!("at least {}", percent(&c.limit))),
        "max_benign_drop" => (
            format!("{} benign frames dropped", c.value),
            format!("at most {}", c.limit),
        ),
        "attack_frames" => ("no attack frame".to_string(), "some".to_string()),
        "benign_frames" => ("no benign frame".to_string(), "some".to_string()),
        _ => ("no frame to judge".to_string(), "some".to_string()),
    };
    format!("{}{about}: {value}, {limit}", c.check)
}

fn percent(v: &serde_json::Value) -> String {
    format!("{:.3}%", v.as_f64().unwrap_or(0.0) * 100.0)
}

fn human(r: &GateReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gate {} with {} (digest {})",
        r.expect,
        r.rules_file,
        &r.rules_digest[..16]
    );
    for c in &r.captures {
        let _ = writeln!(
            out,
            "\n{} ({}): {} frames, {} received, {} sent by the host",
            c.capture,
            c.label.name(),
            c.summary.frames,
            c.summary.incoming,
            c.summary.outgoing
        );
        let _ = writeln!(
            out,
            "  attack: {} of {} dropped; benign: {} of {} dropped",
            c.attack.dropped, c.attack.frames, c.benign.dropped, c.benign.frames
        );
        if c.summary.direction_unknown > 0 {
            let _ = writeln!(
                out,
                "  {} frames of unknown direction ran as received (give `hosts` in the file, or capture with `tcpdump -i any`)",
                c.summary.direction_unknown
            );
        }
        if let Some(ch) = &c.changes {
            out.push_str(&render::changes(ch, false));
        }
    }
    let _ = writeln!(out);
    for c in &r.checks {
        let mark = if c.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "{mark} {}", check_line(c));
    }
    let _ = writeln!(out, "gate {}", if r.passed { "passed" } else { "failed" });
    out
}
