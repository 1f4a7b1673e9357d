//! `replay`: every frame of a capture through the program, streamed out as
//! it runs (the JSON document of `replay/mod.rs`, or a human report); and
//! `replay --expect`, the gate a rules repository runs in CI.

mod gate;
mod render;

use std::{
    io::{BufWriter, Write as _},
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::{
    replay::{Options, Replay, clock::Timing},
    rules::{self, RuleSet},
};

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Rule file (TOML) to test.
    /// (With --expect: instead of the file's `rules`.)
    #[arg(long, required_unless_present = "expect")]
    rules: Option<PathBuf>,
    /// Capture file (.pcap or .pcapng).
    #[arg(required_unless_present = "expect", conflicts_with = "expect")]
    capture: Option<PathBuf>,
    /// Whose clock the program runs on: the capture's (limits, bans and
    /// windows as during the capture; the default) or the kernel's, as
    /// fast as it goes.
    #[arg(long, value_enum)]
    timing: Option<Timing>,
    /// An address of the host the capture was taken on: tells sent from
    /// received frames where the capture does not mark them (repeatable).
    #[arg(long = "host", value_name = "ADDR")]
    hosts: Vec<IpAddr>,
    /// Take the host's addresses from this interface (of this host).
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
    /// The rules running now: list the frames whose verdict the change
    /// (--rules) would change.
    #[arg(long, value_name = "OLD_RULES")]
    against: Option<PathBuf>,
    /// Gate mode: replay the captures this file lists against its
    /// thresholds; exit 3 when they are not met (see deploy/rules-ci/).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["hosts", "iface", "verbose"])]
    expect: Option<PathBuf>,
    /// Print the report as JSON (every frame, totals per reason and rule).
    #[arg(long)]
    json: bool,
    /// List every frame in the human report.
    #[arg(long, short)]
    verbose: bool,
}

pub(crate) fn run(a: ReplayArgs) -> anyhow::Result<u8> {
    if let Some(expect) = &a.expect {
        return gate::run(gate::GateArgs {
            expect,
            rules: a.rules.as_deref(),
            against: a.against.as_deref(),
            timing: a.timing,
            json: a.json,
        });
    }
    let (Some(rules_path), Some(capture)) = (&a.rules, &a.capture) else {
        bail!("give --rules and a capture, or --expect");
    };
    let set = rules::load_file(rules_path)?;
    let old = load_old(a.against.as_deref())?;
    let hosts = host_addresses(&a.hosts, a.iface.as_deref())?;
    let options = Options {
        timing: a.timing.unwrap_or_default(),
        hosts,
        against: old.as_ref().map(|(s, name)| (s, name.clone())),
    };
    let replay = Replay::open(&set, &rules_path.display().to_string(), capture, options)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let totals = if a.json {
        stream_json(&mut out, replay)?
    } else {
        write!(out, "{}", render::header(&replay.header, a.verbose))?;
        let totals = replay.run(|f, _| {
            if a.verbose {
                write!(out, "{}", render::frame(f))?;
            }
            Ok(())
        })?;
        write!(out, "{}", render::totals(&totals, a.verbose))?;
        totals
    };
    out.flush()?;
    if totals.summary.direction_unknown > 0 {
        eprintln!(
            "warning: {} frames' direction is unknown: they ran as received; give --host or --iface, or capture with `tcpdump -i any`",
            totals.summary.direction_unknown
        );
    }
    Ok(0)
}

/// The old rules of `--against`, and their file's name.
fn load_old(path: Option<&Path>) -> anyhow::Result<Option<(RuleSet, String)>> {
    path.map(|p| {
        let set = rules::load_file(p).context("--against")?;
        Ok((set, p.display().to_string()))
    })
    .transpose()
}

/// `--host` addresses and those of `--iface`.
fn host_addresses(hosts: &[IpAddr], iface: Option<&str>) -> anyhow::Result<Vec<IpAddr>> {
    let mut all = hosts.to_vec();
    if let Some(name) = iface {
        let found: Vec<IpAddr> = crate::sys::interface_addresses()
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| a)
            .collect();
        if found.is_empty() {
            bail!("--iface {name}: no such interface here, or it has no address");
        }
        all.extend(found);
    }
    Ok(all)
}

/// One JSON document, its frames written as they run.
fn stream_json(
    out: &mut impl std::io::Write,
    replay: Replay<'_>,
) -> anyhow::Result<crate::replay::report::Totalled> {
    let header = serde_json::to_value(&replay.header)?;
    let header = header.as_object().expect("a struct");
    write!(
        out,
        "{{\n  \"schema_version\": {},",
        crate::JSON_SCHEMA_VERSION
    )?;
    for (k, v) in header {
        write!(out, "\n  {}: {},", serde_json::to_string(k)?, v)?;
    }
    write!(out, "\n  \"frames\": [")?;
    let mut first = true;
    let totals = replay.run(|f, _| {
        let sep = if std::mem::take(&mut first) { "" } else { "," };
        write!(out, "{sep}\n    {}", serde_json::to_string(f)?)?;
        Ok(())
    })?;
    let tail = serde_json::to_value(&totals)?;
    write!(out, "\n  ],")?;
    let tail = tail.as_object().expect("a struct");
    let n = tail.len();
    for (i, (k, v)) in tail.iter().enumerate() {
        let sep = if i + 1 < n { "," } else { "" };
        write!(out, "\n  {}: {}{sep}", serde_json::to_string(k)?, v)?;
    }
    writeln!(out, "\n}}")?;
    Ok(totals)
}
