//! `stats`: per-reason and per-rule counters, once or as rates.

use std::collections::BTreeMap;

use super::table;
use crate::{
    filter::observe::stats::{Snapshot, Totals, snapshot},
    state::PinRoot,
};

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    #[arg(long)]
    iface: Option<String>,
    #[arg(long)]
    json: bool,
    /// Print rates (per second over this many seconds) until stopped.
    #[arg(long, value_name = "SECS")]
    watch: Option<u64>,
}

pub(crate) fn run(root: &PinRoot, a: StatsArgs) -> anyhow::Result<u8> {
    let iface = a.iface.as_deref();
    if let Some(secs) = a.watch {
        return watch(root, iface, secs.max(1), a.json).map(|()| 0);
    }
    let snap = snapshot(root, iface)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
    } else {
        print!("{}", render(&snap));
    }
    Ok(0)
}

fn render(s: &Snapshot) -> String {
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
        out.push_str(&table::reasons(
            i.reasons.iter().map(|(name, r)| {
                let t = Totals {
                    packets: r.packets,
                    bytes: r.bytes,
                };
                (*name, r.verdict == "drop", t)
            }),
            "packets",
            None,
            "  ",
        ));
        if i.monitor_passed.packets > 0 {
            let _ = writeln!(
                out,
                "  monitor mode passed {} pkts that would have been dropped",
                i.monitor_passed.packets
            );
        }
        out.push_str(&table::rules(
            i.rules
                .iter()
                .map(|r| (r.name.as_str(), r.action, r.packets, r.bytes)),
            "packets",
            "  ",
        ));
    }
    out
}

/// Prints per-second rates every `secs` seconds until interrupted: packets
/// and bits per second per reason, from the difference of two snapshots.
fn watch(root: &PinRoot, iface: Option<&str>, secs: u64, json: bool) -> anyhow::Result<()> {
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
                serde_json::json!({ "schema_version": crate::JSON_SCHEMA_VERSION, "timestamp_unix_ms": next.timestamp_unix_ms, "interval_s": dt, "interfaces": out })
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
