//! Drop statistics: per-CPU counters summed into the JSON shape dashboards
//! rely on (documented in README.md), and its human-readable table.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use aya::maps::{Array, PerCpuArray};
use filter_common::{
    ACTION_DROP, ACTION_LIMIT, Counter, MAP_RULE_STATS, MAP_RULES, MAP_STATS, Reason, Rule,
    STATS_MONITOR_SLOT,
};
use serde::Serialize;

use super::status::{self, Status};
use crate::state::{PinRoot, generation_dir, open_map};

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, c: Totals) {
        self.packets += c.packets;
        self.bytes += c.bytes;
    }
}

#[derive(Debug, Serialize)]
pub struct ReasonStats {
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct RuleStats {
    pub name: String,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct InterfaceStats {
    pub interface: String,
    pub mode: &'static str,
    pub rules_digest: String,
    /// Every frame the program saw: the sum over all reasons.
    pub seen: Totals,
    pub dropped: Totals,
    pub passed: Totals,
    /// Frames a reason would have dropped, passed because of monitor mode
    /// (included in `passed`).
    pub monitor_passed: Totals,
    pub reasons: BTreeMap<&'static str, ReasonStats>,
    pub rules: Vec<RuleStats>,
}

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub timestamp_unix_ms: u64,
    pub interfaces: Vec<InterfaceStats>,
}

/// One counter of a per-CPU array, summed over CPUs.
pub fn sum_per_cpu<T: std::borrow::Borrow<aya::maps::MapData>>(
    array: &PerCpuArray<T, Counter>,
    index: u32,
) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    for c in array.get(&index, 0)?.iter() {
        t.add(Totals {
            packets: c.packets,
            bytes: c.bytes,
        });
    }
    Ok(t)
}

pub fn read_interface(root: &PinRoot, iface: &str) -> anyhow::Result<InterfaceStats> {
    status::retry(|| counters(root, &status::status_once(root, iface)?))
}

/// The counters of the generation `status` names.
pub fn counters(root: &PinRoot, status: &Status) -> anyhow::Result<InterfaceStats> {
    let dir = root.iface_dir(&status.interface);
    let gen_dir = generation_dir(&dir, status.generation);
    read_counters(
        &dir,
        &gen_dir,
        &status.interface,
        status.mode,
        status.rules_digest.clone(),
        status.rule_count,
    )
}

/// Counters of an interface: reasons from its state maps (they survive
/// reloads), rules from the running generation.
fn read_counters(
    dir: &Path,
    gen_dir: &Path,
    iface: &str,
    mode: &'static str,
    rules_digest: String,
    rule_count: u32,
) -> anyhow::Result<InterfaceStats> {
    let stats: PerCpuArray<_, Counter> = PerCpuArray::try_from(open_map(dir, MAP_STATS)?)?;
    let mut out = InterfaceStats {
        interface: iface.to_string(),
        mode,
        rules_digest,
        seen: Totals::default(),
        dropped: Totals::default(),
        passed: Totals::default(),
        monitor_passed: sum_per_cpu(&stats, STATS_MONITOR_SLOT)?,
        reasons: BTreeMap::new(),
        rules: Vec::new(),
    };
    for reason in Reason::ALL {
        let t = sum_per_cpu(&stats, reason as u32)
            .with_context(|| format!("cannot read counter {}", reason.name()))?;
        out.seen.add(t);
        if reason.drops() {
            out.dropped.add(t);
        }
        out.reasons.insert(
            reason.name(),
            ReasonStats {
                verdict: if reason.drops() { "drop" } else { "pass" },
                packets: t.packets,
                bytes: t.bytes,
            },
        );
    }
    // Monitor mode passes what a drop reason decided; exact even when the
    // mode was switched while counting.
    out.dropped.packets -= out.monitor_passed.packets.min(out.dropped.packets);
    out.dropped.bytes -= out.monitor_passed.bytes.min(out.dropped.bytes);
    out.passed = Totals {
        packets: out.seen.packets - out.dropped.packets,
        bytes: out.seen.bytes - out.dropped.bytes,
    };
    let rules: Array<_, Rule> = Array::try_from(open_map(gen_dir, MAP_RULES)?)?;
    let rule_stats: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(open_map(gen_dir, MAP_RULE_STATS)?)?;
    for i in 0..rule_count {
        let rule = rules.get(&i, 0)?;
        let t = sum_per_cpu(&rule_stats, i)?;
        let name_len = rule
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(rule.name.len());
        out.rules.push(RuleStats {
            name: String::from_utf8_lossy(&rule.name[..name_len]).into_owned(),
            action: match rule.action {
                ACTION_DROP => "drop",
                ACTION_LIMIT => "limit",
                _ => "pass",
            },
            packets: t.packets,
            bytes: t.bytes,
        });
    }
    Ok(out)
}

pub fn snapshot(root: &PinRoot, iface: Option<&str>) -> anyhow::Result<Snapshot> {
    let names = match iface {
        Some(i) => {
            if !root.iface_dir(i).is_dir() {
                anyhow::bail!("no filter loaded on {i}");
            }
            vec![i.to_string()]
        }
        None => root.interfaces()?,
    };
    let mut interfaces = Vec::new();
    for name in names {
        interfaces.push(
            read_interface(root, &name).with_context(|| format!("cannot read stats of {name}"))?,
        );
    }
    Ok(Snapshot {
        timestamp_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        interfaces,
    })
}
