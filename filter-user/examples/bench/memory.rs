//! Section 8: kernel memory per filtered interface, map by map, at this
//! host's CPUs and at 2, 64 and 192 (computed from the object's map
//! definitions, as `filterctl status --memory` prints it), and the total the
//! kernel counts for the filter loaded here, beside the computed one.

use std::{
    fmt::Write as _,
    os::fd::{AsFd as _, AsRawFd as _},
};

use anyhow::{Context as _, anyhow};
use aya::maps::Map;
use filterctl::{
    EBPF_OBJECT,
    filter::{
        lifecycle::program,
        observe::{counters, memory},
    },
    rules,
};
use serde_json::json;

use super::{Report, default_rules};

/// The goal: a filtered interface under 64 MB at 192 CPUs.
const GOAL_BYTES: u64 = 64_000_000;

pub fn memory(report: &mut Report) -> anyhow::Result<()> {
    let set = rules::parse("default.toml", &default_rules()).map_err(|e| anyhow!("{e}"))?;
    let defs = memory::definitions(EBPF_OBJECT)?;
    let cpus = counters::possible_cpus()?;
    let sizes = program::load_sizes(&set, &set.compile());
    let f = memory::footprint(&defs, &sizes, cpus);
    let loaded = loaded_memlock(&set)?;
    let _ = writeln!(
        report.text,
        "\n8. kernel memory per interface (default rules, from the map definitions)"
    );
    report.text += &memory::render(&f, "   ");
    let at_most = f.total_at.last().copied().unwrap_or_default();
    let _ = writeln!(
        report.text,
        "   the filter loaded here: {:.2} MB as the kernel counts it, {:.2} MB computed; at 192 CPUs {:.2} MB (goal < {:.0} MB)",
        loaded as f64 / 1e6,
        f.total_here as f64 / 1e6,
        at_most as f64 / 1e6,
        GOAL_BYTES as f64 / 1e6
    );
    report.json.insert(
        "memory".into(),
        json!({"footprint": f, "loaded_memlock": loaded, "goal_bytes": GOAL_BYTES}),
    );
    Ok(())
}

/// The sum of `memlock` over the maps of the filter loaded with `set`.
fn loaded_memlock(set: &rules::RuleSet) -> anyhow::Result<u64> {
    let ebpf = program::prepare(set, None, &[])?;
    let mut total = 0;
    for (name, map) in ebpf.maps() {
        let d = match map {
            Map::Array(d)
            | Map::PerCpuArray(d)
            | Map::HashMap(d)
            | Map::LruHashMap(d)
            | Map::LpmTrie(d)
            | Map::RingBuf(d) => d,
            other => anyhow::bail!("{name}: a map of a type not read here: {other:?}"),
        };
        let path = format!("/proc/self/fdinfo/{}", d.fd().as_fd().as_raw_fd());
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let memlock = text
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .ok_or_else(|| anyhow!("no memlock in {path}"))?;
        total += memlock.trim().parse::<u64>()?;
    }
    Ok(total)
}
