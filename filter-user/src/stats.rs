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
    ACTION_DROP, Counter, MAP_RULE_STATS, MAP_RULES, MAP_STATS, Reason, Rule, STATS_MONITOR_SLOT,
};
use serde::Serialize;

use crate::{
    pins::{self, PinRoot},
    status,
};

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
    let dir = root.iface_dir(iface);
    let status = status::status(root, iface)?;
    let gen_dir = pins::generation_dir(&dir, status.generation);
    read_counters(
        &dir,
        &gen_dir,
        iface,
        status.mode,
        status.rules_digest,
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
    let stats: PerCpuArray<_, Counter> = PerCpuArray::try_from(status::open_map(dir, MAP_STATS)?)?;
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
    let rules: Array<_, Rule> = Array::try_from(status::open_map(gen_dir, MAP_RULES)?)?;
    let rule_stats: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(status::open_map(gen_dir, MAP_RULE_STATS)?)?;
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
            action: if rule.action == ACTION_DROP {
                "drop"
            } else {
                "pass"
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

pub fn render_table(s: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if s.interfaces.is_empty() {
        out.push_str("no filter loaded\n");
    }
    for i in &s.interfaces {
        let _ = writeln!(
            out,
            "{} ({}): seen {} pkts, dropped {} pkts / {} bytes, passed {} pkts",
            i.interface,
            i.mode,
            i.seen.packets,
            i.dropped.packets,
            i.dropped.bytes,
            i.passed.packets
        );
        let _ = writeln!(
            out,
            "  {:<22} {:>7} {:>12} {:>14}",
            "reason", "verdict", "packets", "bytes"
        );
        for (name, r) in &i.reasons {
            let _ = writeln!(
                out,
                "  {:<22} {:>7} {:>12} {:>14}",
                name, r.verdict, r.packets, r.bytes
            );
        }
        if i.monitor_passed.packets > 0 {
            let _ = writeln!(
                out,
                "  monitor mode passed {} pkts that would have been dropped",
                i.monitor_passed.packets
            );
        }
        let _ = writeln!(
            out,
            "  {:<24} {:>7} {:>12} {:>14}",
            "rule", "action", "packets", "bytes"
        );
        for r in &i.rules {
            let _ = writeln!(
                out,
                "  {:<24} {:>7} {:>12} {:>14}",
                r.name, r.action, r.packets, r.bytes
            );
        }
    }
    out
}

/// Prints per-second rates every `secs` seconds until interrupted: packets
/// and bits per second per reason, from the difference of two snapshots.
pub fn watch(root: &PinRoot, iface: Option<&str>, secs: u64, json: bool) -> anyhow::Result<()> {
    let mut prev = snapshot(root, iface)?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(secs));
        let next = snapshot(root, iface)?;
        let dt = (next
            .timestamp_unix_ms
            .saturating_sub(prev.timestamp_unix_ms)) as f64
            / 1000.0;
        let mut out = Vec::new();
        for i in &next.interfaces {
            let Some(p) = prev.interfaces.iter().find(|p| p.interface == i.interface) else {
                continue;
            };
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt.max(1e-3);
            let reasons: BTreeMap<&str, serde_json::Value> = i
                .reasons
                .iter()
                .map(|(name, r)| {
                    let old = &p.reasons[name];
                    (
                        *name,
                        serde_json::json!({
                            "pps": rate(r.packets, old.packets),
                            "bps": 8.0 * rate(r.bytes, old.bytes),
                        }),
                    )
                })
                .collect();
            out.push(serde_json::json!({
                "interface": i.interface,
                "seen_pps": rate(i.seen.packets, p.seen.packets),
                "dropped_pps": rate(i.dropped.packets, p.dropped.packets),
                "dropped_bps": 8.0 * rate(i.dropped.bytes, p.dropped.bytes),
                "passed_pps": rate(i.passed.packets, p.passed.packets),
                "reasons": reasons,
            }));
        }
        if json {
            println!(
                "{}",
                serde_json::json!({ "timestamp_unix_ms": next.timestamp_unix_ms, "interval_s": dt, "interfaces": out })
            );
        } else {
            for o in &out {
                println!(
                    "{}: seen {:.0} pps, dropped {:.0} pps ({:.1} Mbit/s), passed {:.0} pps",
                    o["interface"].as_str().unwrap_or("?"),
                    o["seen_pps"].as_f64().unwrap_or(0.0),
                    o["dropped_pps"].as_f64().unwrap_or(0.0),
                    o["dropped_bps"].as_f64().unwrap_or(0.0) / 1e6,
                    o["passed_pps"].as_f64().unwrap_or(0.0),
                );
            }
        }
        prev = next;
    }
}
