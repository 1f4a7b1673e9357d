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
    ACTION_DROP, ACTION_LIMIT, Counter, MAP_COUNTERS, MAP_RULE_STATS, MAP_RULES, Reason, Rule,
    STATS_MONITOR_SLOT,
};
use serde::Serialize;

// Down in `counters`, which sums them; re-exported because the readers of
// the statistics (replay, upstream, the commands) name them here.
pub(crate) use super::counters::{Totals, sum_per_cpu};
use super::{
    counters,
    status::{self, Status},
};
use crate::state::{
    PinRoot,
    layout::generation_dir,
    pins::{open_map, open_map_data},
};

#[derive(Debug, Serialize)]
pub(crate) struct ReasonStats {
    pub(crate) verdict: &'static str,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct RuleStats {
    pub(crate) name: String,
    pub(crate) action: &'static str,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct InterfaceStats {
    pub(crate) interface: String,
    pub(crate) mode: &'static str,
    pub(crate) rules_digest: String,
    /// Every frame the program saw: the sum over all reasons.
    pub(crate) seen: Totals,
    pub dropped: Totals,
    pub(crate) passed: Totals,
    /// Frames a reason would have dropped, passed because of monitor mode
    /// (included in `passed`).
    pub(crate) monitor_passed: Totals,
    pub(crate) reasons: BTreeMap<&'static str, ReasonStats>,
    pub(crate) rules: Vec<RuleStats>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    pub(crate) schema_version: u32,
    pub(crate) timestamp_unix_ms: u64,
    pub(crate) interfaces: Vec<InterfaceStats>,
}

pub fn read_interface(root: &PinRoot, iface: &str) -> anyhow::Result<InterfaceStats> {
    status::retry(|| counters(root, &status::status_once(root, iface)?))
}

/// The counters of the generation `status` names.
pub(crate) fn counters(root: &PinRoot, status: &Status) -> anyhow::Result<InterfaceStats> {
    let dir = root.iface_dir(&status.interface);
    let gen_dir = generation_dir(&dir, status.generation);
    read_counters(
        &dir,
        &gen_dir,
        &status.interface,
        status.mode,
        status.rules_digest.clone(),
        status.running_rules,
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
    running_rules: u32,
) -> anyhow::Result<InterfaceStats> {
    let slots = counters::read_reasons(&open_map_data(dir, MAP_COUNTERS)?)
        .with_context(|| format!("cannot read {}", dir.join(MAP_COUNTERS).display()))?;
    let mut out = InterfaceStats {
        interface: iface.to_string(),
        mode,
        rules_digest,
        seen: Totals::default(),
        dropped: Totals::default(),
        passed: Totals::default(),
        monitor_passed: slots[STATS_MONITOR_SLOT as usize],
        reasons: BTreeMap::new(),
        rules: Vec::new(),
    };
    for reason in Reason::ALL {
        let t = slots[reason as usize];
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
    // The generations' shared counters, each rule in its slot; an older
    // build's generation counted in a map of its own, by rule index.
    let (stats_dir, by_slot) = if dir.join(MAP_RULE_STATS).exists() {
        (dir, true)
    } else {
        (gen_dir, false)
    };
    let rule_stats: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(open_map(stats_dir, MAP_RULE_STATS)?)?;
    for i in 0..running_rules {
        let rule = rules.get(&i, 0)?;
        let slot = if by_slot { rule.counter_slot as u32 } else { i };
        let t = sum_per_cpu(&rule_stats, slot)?;
        let name_len = rule
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(rule.name.len());
        out.rules.push(RuleStats {
            name: String::from_utf8_lossy(&rule.name[..name_len]).into_owned(),
            action: action_name(rule.action),
            packets: t.packets,
            bytes: t.bytes,
        });
    }
    Ok(out)
}

/// A rule's action as rule files spell it.
pub(crate) fn action_name(action: u8) -> &'static str {
    match action {
        ACTION_DROP => "drop",
        ACTION_LIMIT => "limit",
        _ => "pass",
    }
}

pub(crate) fn snapshot(root: &PinRoot, iface: Option<&str>) -> anyhow::Result<Snapshot> {
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
        schema_version: crate::JSON_SCHEMA_VERSION,
        timestamp_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        interfaces,
    })
}

#[cfg(test)]
mod tests {
    use filter_common::ACTION_PASS;

    use super::*;

    #[test]
    fn actions_are_named_as_rule_files_spell_them() {
        assert_eq!(action_name(ACTION_DROP), "drop");
        assert_eq!(action_name(ACTION_PASS), "pass");
        assert_eq!(action_name(ACTION_LIMIT), "limit");
    }
}
