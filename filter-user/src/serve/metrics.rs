//! The Prometheus side of `serve`: a collector that reads the pinned maps
//! at every scrape (the kernel's own counters, exposed as they are, never
//! accumulated here) and writes them as OpenMetrics families.

use std::fmt;

use log::error;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        gauge::ConstGauge,
    },
};

use crate::{
    filter::{
        bans,
        gauges::{self, Occupancy},
        stats, status,
    },
    state::PinRoot,
};

/// What the metrics show of one interface, read at one scrape.
#[derive(Debug)]
pub struct Reading {
    pub stats: stats::InterfaceStats,
    pub generation: u32,
    pub digest: String,
    /// native or generic.
    pub attach_mode: &'static str,
    pub loaded_at_unix: u64,
    pub bans: usize,
    pub limiter: Occupancy,
    /// The sources that dropped most, at most [`TOP_SOURCES`].
    pub top: Vec<bans::Entry>,
}

/// How many sources per interface the top-sources gauge shows: a bound on
/// its series, whatever the attack.
pub const TOP_SOURCES: usize = 10;

/// Reads an interface's counters and the generation that runs. A reload
/// landing in the middle removes the generation being read: read again.
fn read_interface(root: &PinRoot, iface: &str) -> anyhow::Result<Reading> {
    status::retry(|| {
        let s = status::status_once(root, iface)?;
        Ok(Reading {
            stats: stats::counters(root, &s)?,
            generation: s.generation,
            digest: s.rules_digest,
            attach_mode: s.attach_mode,
            loaded_at_unix: s.loaded_at_unix,
            bans: bans::active_bans(root, iface)?.len(),
            limiter: gauges::limiter_occupancy(root, iface)?,
            top: bans::top(root, iface, TOP_SOURCES)?,
        })
    })
}

/// The interfaces a scrape reports: every one with pins, and every watched
/// one (which is down when it has none).
pub fn interfaces(root: &PinRoot, watched: &[String]) -> anyhow::Result<Vec<String>> {
    let mut all = root.interfaces()?;
    for w in watched {
        if !all.contains(w) {
            all.push(w.clone());
        }
    }
    Ok(all)
}

fn gauge_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, i64)>,
) -> fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes every metric family of `readings` (prefixed `filterctl_` by the
/// registry).
pub fn encode_readings(
    enc: &mut DescriptorEncoder,
    readings: &[Reading],
    down: &[String],
    scrape_errors: u64,
) -> fmt::Result {
    let reasons = || {
        readings.iter().flat_map(|r| {
            r.stats.reasons.iter().map(move |(reason, s)| {
                (
                    [
                        ("interface", r.stats.interface.as_str()),
                        ("reason", *reason),
                        ("verdict", s.verdict),
                    ],
                    s,
                )
            })
        })
    };
    let rules = || {
        readings.iter().flat_map(|r| {
            r.stats.rules.iter().map(move |s| {
                (
                    [
                        ("interface", r.stats.interface.as_str()),
                        ("rule", s.name.as_str()),
                        ("action", s.action),
                    ],
                    s,
                )
            })
        })
    };
    counter_family(
        enc,
        "packets",
        "Frames the filter saw since load, by interface, reason and the reason's verdict in enforce mode.",
        reasons().map(|(l, s)| (l, s.packets)),
    )?;
    counter_family(
        enc,
        "bytes",
        "Bytes of the frames the filter saw since load (whole frames, Ethernet header included), by interface, reason and verdict.",
        reasons().map(|(l, s)| (l, s.bytes)),
    )?;
    counter_family(
        enc,
        "rule_packets",
        "Frames each rule of the running rule set matched since it was loaded.",
        rules().map(|(l, s)| (l, s.packets)),
    )?;
    counter_family(
        enc,
        "rule_bytes",
        "Bytes of the frames each rule of the running rule set matched since it was loaded.",
        rules().map(|(l, s)| (l, s.bytes)),
    )?;
    counter_family(
        enc,
        "monitor_passed_packets",
        "Frames a drop reason decided that passed because the filter was in monitor mode.",
        readings.iter().map(|r| {
            (
                [("interface", r.stats.interface.as_str())],
                r.stats.monitor_passed.packets,
            )
        }),
    )?;
    encode_info(enc, readings)?;
    encode_state(enc, readings, down)?;
    ConstCounter::new(scrape_errors).encode(enc.encode_descriptor(
        "scrape_errors",
        "Reads of the pinned maps that failed (a /metrics interface or a /stats request).",
        None,
        MetricType::Counter,
    )?)
}

/// The rule set each interface runs, as an info family.
fn encode_info(enc: &mut DescriptorEncoder, readings: &[Reading]) -> fmt::Result {
    let mut info = enc.encode_descriptor(
        "rules",
        "The rule set each interface runs: SHA-256 of its files and program generation.",
        None,
        MetricType::Info,
    )?;
    for r in readings {
        let generation = r.generation.to_string();
        info.encode_info(&[
            ("interface", r.stats.interface.as_str()),
            ("digest", r.digest.as_str()),
            ("generation", generation.as_str()),
        ])?;
    }
    Ok(())
}

/// The gauges: whether each interface runs the filter, in which modes, since
/// when, with how many bans and how full a limiter table; and the build.
fn encode_state(enc: &mut DescriptorEncoder, readings: &[Reading], down: &[String]) -> fmt::Result {
    let iface = |r: &Reading| [("interface", r.stats.interface.clone())];
    gauge_family(
        enc,
        "up",
        "1 if a filter runs on the interface and its pins can be read, 0 if it has pins (or is watched) but no running filter could be read: detached or broken.",
        readings
            .iter()
            .map(|r| (iface(r), 1))
            .chain(down.iter().map(|d| ([("interface", d.clone())], 0))),
    )?;
    let mut info = enc.encode_descriptor(
        "attach",
        "How the filter runs on each interface: attach_mode native (in the driver) or generic (after the kernel built an skb: slower), mode enforce or monitor (drop reasons counted, frames passed).",
        None,
        MetricType::Info,
    )?;
    for r in readings {
        info.encode_info(&[
            ("interface", r.stats.interface.as_str()),
            ("attach_mode", r.attach_mode),
            ("mode", r.stats.mode),
        ])?;
    }
    gauge_family(
        enc,
        "loaded_timestamp_seconds",
        "When the running rule set was loaded or reloaded (Unix time), by any filterctl.",
        readings.iter().map(|r| (iface(r), r.loaded_at_unix as i64)),
    )?;
    gauge_family(
        enc,
        "bans_active",
        "Sources and prefixes banned right now (by the limiter or by an operator).",
        readings.iter().map(|r| (iface(r), r.bans as i64)),
    )?;
    gauge_family(
        enc,
        "limiter_entries",
        "Sources in the per-source limiter table (two per set: a new source takes the place of its set's least recently seen).",
        readings
            .iter()
            .map(|r| (iface(r), r.limiter.entries as i64)),
    )?;
    gauge_family(
        enc,
        "limiter_capacity",
        "Size of the per-source limiter table ([sources] table_size).",
        readings
            .iter()
            .map(|r| (iface(r), r.limiter.capacity as i64)),
    )?;
    gauge_family(
        enc,
        "top_source_dropped_packets",
        "Frames dropped by the limiter from each of the sources that dropped most (at most 10 per interface; `filterctl top` and /top list more).",
        readings.iter().flat_map(|r| {
            r.top.iter().filter(|e| e.dropped > 0).map(|e| {
                (
                    [
                        ("interface", r.stats.interface.clone()),
                        ("source", e.source.clone()),
                    ],
                    e.dropped as i64,
                )
            })
        }),
    )?;
    enc.encode_descriptor(
        "build",
        "The filterctl that serves these metrics.",
        None,
        MetricType::Info,
    )?
    .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
}

/// Reads the pinned maps at every scrape: the values are the kernel's own
/// counters, exposed as they are, never accumulated here.
#[derive(Debug)]
pub struct FilterCollector {
    pub root: PinRoot,
    pub scrape_errors: Counter,
    /// Interfaces `serve` watches: reported down when they have no pins.
    pub watched: Vec<String>,
}

impl Collector for FilterCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let (mut readings, mut down) = (Vec::new(), Vec::new());
        match interfaces(&self.root, &self.watched) {
            Ok(ifaces) => {
                for iface in ifaces {
                    match read_interface(&self.root, &iface) {
                        Ok(r) => readings.push(r),
                        Err(e) => {
                            self.scrape_errors.inc();
                            error!("{iface}: cannot read the filter: {e:#}");
                            down.push(iface);
                        }
                    }
                }
            }
            Err(e) => {
                self.scrape_errors.inc();
                error!("cannot list the loaded interfaces: {e:#}");
            }
        }
        encode_readings(&mut enc, &readings, &down, self.scrape_errors.get())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<Reading>);

    impl Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            encode_readings(&mut enc, &self.0, &["eth1".to_string()], 2)
        }
    }

    #[test]
    fn openmetrics_text() {
        let mut reasons = std::collections::BTreeMap::new();
        reasons.insert(
            "rule_drop",
            stats::ReasonStats {
                verdict: "drop",
                packets: 30,
                bytes: 15480,
            },
        );
        let t = stats::Totals::default();
        let reading = Reading {
            stats: stats::InterfaceStats {
                interface: "eth0".into(),
                mode: "enforce",
                rules_digest: "ab".repeat(32),
                seen: t,
                dropped: t,
                passed: t,
                monitor_passed: stats::Totals {
                    packets: 7,
                    bytes: 70,
                },
                reasons,
                rules: vec![stats::RuleStats {
                    name: "ntp-reflection".into(),
                    action: "drop",
                    packets: 30,
                    bytes: 15480,
                }],
            },
            generation: 3,
            digest: "ab".repeat(32),
            attach_mode: "generic",
            loaded_at_unix: 1_700_000_000,
            bans: 4,
            limiter: Occupancy {
                entries: 10,
                capacity: 1024,
            },
            top: vec![bans::Entry {
                source: "198.51.100.7/32".into(),
                limit: 1,
                dropped: 99,
                over_for_s: Some(1.0),
                banned_for_s: None,
            }],
        };
        let mut registry = Registry::with_prefix("filterctl");
        registry.register_collector(Box::new(Fixed(vec![reading])));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE filterctl_packets counter",
            r#"filterctl_packets_total{interface="eth0",reason="rule_drop",verdict="drop"} 30"#,
            r#"filterctl_bytes_total{interface="eth0",reason="rule_drop",verdict="drop"} 15480"#,
            r#"filterctl_rule_packets_total{interface="eth0",rule="ntp-reflection",action="drop"} 30"#,
            r#"filterctl_rule_bytes_total{interface="eth0",rule="ntp-reflection",action="drop"} 15480"#,
            r#"filterctl_monitor_passed_packets_total{interface="eth0"} 7"#,
            "# TYPE filterctl_rules info",
            &format!(
                r#"filterctl_rules_info{{interface="eth0",digest="{}",generation="3"}} 1"#,
                "ab".repeat(32)
            ),
            "filterctl_scrape_errors_total 2",
            r#"filterctl_up{interface="eth0"} 1"#,
            r#"filterctl_up{interface="eth1"} 0"#,
            r#"filterctl_attach_info{interface="eth0",attach_mode="generic",mode="enforce"} 1"#,
            r#"filterctl_loaded_timestamp_seconds{interface="eth0"} 1700000000"#,
            r#"filterctl_bans_active{interface="eth0"} 4"#,
            r#"filterctl_limiter_entries{interface="eth0"} 10"#,
            r#"filterctl_limiter_capacity{interface="eth0"} 1024"#,
            r#"filterctl_top_source_dropped_packets{interface="eth0",source="198.51.100.7/32"} 99"#,
            &format!(
                r#"filterctl_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
