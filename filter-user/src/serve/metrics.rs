//! Every family `/metrics` shows, declared once in [`METRICS`]: its name,
//! type, help and label names, and for the families read from the pinned
//! maps, how a scrape reads them (the kernel's own counters, exposed as they
//! are, never accumulated here). `catalogue` turns the table into the
//! registry's kept families, the collector's output and the list in
//! docs/operations.md; the collector that reads the pins is here too.

use std::fmt;

use log::error;
use prometheus_client::{
    collector::Collector, encoding::DescriptorEncoder, metrics::counter::Counter,
};

use super::catalogue::{self, Kind, MetricDef, Sample, Source};
use crate::{
    filter::observe::{
        gauges::{self, Occupancy},
        stats, status, top,
    },
    state::PinRoot,
};

/// Every family `/metrics` shows, in the order of the docs. Adding one is
/// adding its entry here: a scrape family says how it reads a [`Scrape`];
/// a kept one is then fetched by name from `Kept` by the task that keeps it
/// (`Kept::gauge("...")`). Registration, the collector and the docs list
/// (checked by a test) follow. The registry writes the kept families before
/// the scrape ones, whatever their order here.
pub const METRICS: &[MetricDef<Scrape>] = &[
    // Read from the pins at each scrape: the kernel's totals since load.
    MetricDef {
        name: "packets",
        kind: Kind::Counter,
        help: "Frames the filter saw since load, by interface, reason and the reason's verdict in enforce mode.",
        labels: &["interface", "reason", "verdict"],
        source: Source::Scrape(|s| s.per_reason(|r| r.packets)),
    },
    MetricDef {
        name: "bytes",
        kind: Kind::Counter,
        help: "Bytes of the frames the filter saw since load (whole frames, Ethernet header included), by interface, reason and verdict.",
        labels: &["interface", "reason", "verdict"],
        source: Source::Scrape(|s| s.per_reason(|r| r.bytes)),
    },
    MetricDef {
        name: "rule_packets",
        kind: Kind::Counter,
        help: "Frames each rule of the running rule set matched since it was loaded.",
        labels: &["interface", "rule", "action"],
        source: Source::Scrape(|s| s.per_rule(|r| r.packets)),
    },
    MetricDef {
        name: "rule_bytes",
        kind: Kind::Counter,
        help: "Bytes of the frames each rule of the running rule set matched since it was loaded.",
        labels: &["interface", "rule", "action"],
        source: Source::Scrape(|s| s.per_rule(|r| r.bytes)),
    },
    MetricDef {
        name: "monitor_passed_packets",
        kind: Kind::Counter,
        help: "Frames a drop reason decided that passed because the filter was in monitor mode.",
        labels: &["interface"],
        source: Source::Scrape(|s| s.per_interface(|r| r.stats.monitor_passed.packets)),
    },
    MetricDef {
        name: "rules",
        kind: Kind::Info,
        help: "The rule set each interface runs: SHA-256 of its files and program generation.",
        labels: &["interface", "digest", "generation"],
        source: Source::Scrape(|s| {
            s.readings
                .iter()
                .map(|r| {
                    let generation = r.generation.to_string();
                    Sample::new([&r.stats.interface, &r.digest, &generation], 1)
                })
                .collect()
        }),
    },
    // The state of each interface.
    MetricDef {
        name: "up",
        kind: Kind::Gauge,
        help: "1 if a filter runs on the interface and its pins can be read, 0 if it has pins (or is watched) but no running filter could be read: detached or broken.",
        labels: &["interface"],
        source: Source::Scrape(|s| {
            let down = s.down.iter().map(|d| Sample::new([d], 0));
            s.per_interface(|_| 1).into_iter().chain(down).collect()
        }),
    },
    MetricDef {
        name: "attach",
        kind: Kind::Info,
        help: "How the filter runs on each interface: attach_mode native (in the driver) or generic (after the kernel built an skb: slower), mode enforce or monitor (drop reasons counted, frames passed).",
        labels: &["interface", "attach_mode", "mode"],
        source: Source::Scrape(|s| {
            s.readings
                .iter()
                .map(|r| Sample::new([&r.stats.interface, r.attach_mode, r.stats.mode], 1))
                .collect()
        }),
    },
    MetricDef {
        name: "loaded_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When the running rule set was loaded or reloaded (Unix time), by any filterctl.",
        labels: &["interface"],
        source: Source::Scrape(|s| s.per_interface(|r| r.loaded_at_unix)),
    },
    MetricDef {
        name: "bans_active",
        kind: Kind::Gauge,
        help: "Sources and prefixes banned right now (by the limiter or by an operator).",
        labels: &["interface"],
        source: Source::Scrape(|s| s.per_interface(|r| r.bans as u64)),
    },
    MetricDef {
        name: "limiter_entries",
        kind: Kind::Gauge,
        help: "Sources in the per-source limiter table (two per set: a new source takes the place of its set's least recently seen).",
        labels: &["interface"],
        source: Source::Scrape(|s| s.per_interface(|r| r.limiter.entries)),
    },
    MetricDef {
        name: "limiter_capacity",
        kind: Kind::Gauge,
        help: "Size of the per-source limiter table ([sources] table_size).",
        labels: &["interface"],
        source: Source::Scrape(|s| s.per_interface(|r| r.limiter.capacity)),
    },
    MetricDef {
        name: "top_source_dropped_packets",
        kind: Kind::Gauge,
        help: "Frames dropped by the limiter from each of the sources that dropped most (at most 10 per interface; `filterctl top` and /top list more).",
        labels: &["interface", "source"],
        source: Source::Scrape(|s| {
            s.readings
                .iter()
                .flat_map(|r| {
                    r.top
                        .iter()
                        .filter(|e| e.dropped > 0)
                        .map(|e| Sample::new([&r.stats.interface, &e.source], e.dropped))
                })
                .collect()
        }),
    },
    MetricDef {
        name: "build",
        kind: Kind::Info,
        help: "The filterctl that serves these metrics.",
        labels: &["version"],
        source: Source::Scrape(|_| vec![Sample::new([env!("CARGO_PKG_VERSION")], 1)]),
    },
    MetricDef {
        name: "scrape_errors",
        kind: Kind::Counter,
        help: "Reads of the pinned maps that failed (a /metrics interface or a /stats request).",
        labels: &[],
        source: Source::Scrape(|s| vec![Sample::new([], s.scrape_errors)]),
    },
    // Kept by the daemon's rule-file watcher (watch.rs).
    MetricDef {
        name: "reloads",
        kind: Kind::Counter,
        help: "Reloads of watched rule files by this daemon, by interface and result (ok, invalid, failed).",
        labels: &["interface", "result"],
        source: Source::Kept,
    },
    MetricDef {
        name: "last_reload_timestamp_seconds",
        kind: Kind::Gauge,
        help: "When this daemon last tried to reload an interface's watched rule file (Unix time).",
        labels: &["interface"],
        source: Source::Kept,
    },
    MetricDef {
        name: "last_reload_success",
        kind: Kind::Gauge,
        help: "1 if this daemon's last reload of the interface enforces the file, 0 if it was refused or failed.",
        labels: &["interface"],
        source: Source::Kept,
    },
    // Kept by the upstream task (upstream.rs), with `[upstream]`.
    MetricDef {
        name: "upstream_routes",
        kind: Kind::Gauge,
        help: "Routes the BGP speaker announces for this interface now, by kind (flowspec, blackhole).",
        labels: &["interface", "kind"],
        source: Source::Kept,
    },
    MetricDef {
        name: "upstream_selected_routes",
        kind: Kind::Gauge,
        help: "Routes selected for announcement, by kind; in dry-run mode none of them is announced.",
        labels: &["interface", "kind"],
        source: Source::Kept,
    },
    MetricDef {
        name: "upstream_speaker_errors",
        kind: Kind::Counter,
        help: "Failed calls to the BGP speaker (the XDP filter is unaffected).",
        labels: &["interface"],
        source: Source::Kept,
    },
    MetricDef {
        name: "upstream_blackhole_active",
        kind: Kind::Gauge,
        help: "1 while this host's addresses are blackholed upstream: all traffic to them is dropped.",
        labels: &["interface"],
        source: Source::Kept,
    },
    // Kept by surge detection (adaptive.rs), with `[adaptive]`.
    MetricDef {
        name: "adaptive_blocks",
        kind: Kind::Gauge,
        help: "Surges of one UDP source port that serve blocks (or, in monitor mode, reports) right now: 1 per port.",
        labels: &["interface", "port", "state"],
        source: Source::Kept,
    },
    MetricDef {
        name: "adaptive_block_since_seconds",
        kind: Kind::Gauge,
        help: "When each current adaptive block started (unix seconds).",
        labels: &["interface", "port", "state"],
        source: Source::Kept,
    },
    MetricDef {
        name: "adaptive_block_events",
        kind: Kind::Counter,
        help: "Adaptive blocks installed and lifted, surges reported in monitor mode, and failed block reloads.",
        labels: &["interface", "event"],
        source: Source::Kept,
    },
];

/// What the metrics show of one interface, read at one scrape.
#[derive(Debug)]
struct Reading {
    pub(crate) stats: stats::InterfaceStats,
    pub(crate) generation: u32,
    pub(crate) digest: String,
    /// native or generic.
    pub(crate) attach_mode: &'static str,
    pub(crate) loaded_at_unix: u64,
    pub(crate) bans: usize,
    pub(crate) limiter: Occupancy,
    /// The sources that dropped most, at most [`TOP_SOURCES`].
    pub(crate) top: Vec<top::Entry>,
}

/// How many sources per interface the top-sources gauge shows: a bound on
/// its series, whatever the attack.
const TOP_SOURCES: usize = 10;

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
            bans: top::active_bans(root, iface)?.len(),
            limiter: gauges::limiter_occupancy(root, iface)?,
            top: top::top(root, iface, TOP_SOURCES)?,
        })
    })
}

/// The interfaces a scrape reports: every one with pins, and every watched
/// one (which is down when it has none).
pub(crate) fn interfaces(root: &PinRoot, watched: &[String]) -> anyhow::Result<Vec<String>> {
    let mut all = root.interfaces()?;
    for w in watched {
        if !all.contains(w) {
            all.push(w.clone());
        }
    }
    Ok(all)
}

/// What one scrape read from the pins: what [`METRICS`]' scrape families
/// show.
#[derive(Debug)]
pub struct Scrape {
    readings: Vec<Reading>,
    /// Interfaces with pins, or watched, whose filter could not be read.
    down: Vec<String>,
    pub(crate) scrape_errors: u64,
}

impl Scrape {
    /// One sample per interface read.
    fn per_interface(&self, value: impl Fn(&Reading) -> u64) -> Vec<Sample> {
        self.readings
            .iter()
            .map(|r| Sample::new([&r.stats.interface], value(r)))
            .collect()
    }

    /// One sample per interface and drop or pass reason.
    fn per_reason(&self, value: impl Fn(&stats::ReasonStats) -> u64) -> Vec<Sample> {
        self.readings
            .iter()
            .flat_map(|r| {
                let value = &value;
                r.stats.reasons.iter().map(move |(reason, s)| {
                    Sample::new([&r.stats.interface, *reason, s.verdict], value(s))
                })
            })
            .collect()
    }

    /// One sample per interface and rule of its running rule set.
    fn per_rule(&self, value: impl Fn(&stats::RuleStats) -> u64) -> Vec<Sample> {
        self.readings
            .iter()
            .flat_map(|r| {
                let value = &value;
                r.stats
                    .rules
                    .iter()
                    .map(move |s| Sample::new([&r.stats.interface, &s.name, s.action], value(s)))
            })
            .collect()
    }
}

/// Reads the pinned maps at every scrape: the values are the kernel's own
/// counters, exposed as they are, never accumulated here.
#[derive(Debug)]
pub(crate) struct FilterCollector {
    pub(crate) root: PinRoot,
    pub(crate) scrape_errors: Counter,
    /// Interfaces `serve` watches: reported down when they have no pins.
    pub(crate) watched: Vec<String>,
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
        let scrape = Scrape {
            readings,
            down,
            scrape_errors: self.scrape_errors.get(),
        };
        catalogue::encode(&mut enc, METRICS, &scrape)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::serve::catalogue::{
        DOCS_BEGIN, DOCS_END, Kept, check_exposition, docs_list, docs_section,
    };

    /// A collector that shows one fixed scrape through `table`.
    #[derive(Debug)]
    struct Fixed {
        table: &'static [MetricDef<Scrape>],
        scrape: Scrape,
    }

    impl Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            catalogue::encode(&mut enc, self.table, &self.scrape)
        }
    }

    /// eth0 read, with a series in every family; eth1 down.
    fn scrape() -> Scrape {
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
            top: vec![top::Entry {
                source: "198.51.100.7/32".into(),
                limit: 1,
                dropped: 99,
                over_for_s: Some(1.0),
                banned_for_s: None,
            }],
        };
        Scrape {
            readings: vec![reading],
            down: vec!["eth1".to_string()],
            scrape_errors: 2,
        }
    }

    /// `table` registered as serve registers it, with `scrape` as the
    /// collector's reading; the kept families, for the test to fill.
    fn registry(table: &'static [MetricDef<Scrape>], scrape: Scrape) -> (Registry, Kept) {
        let mut registry = Registry::with_prefix(catalogue::PREFIX);
        let kept = Kept::register(&mut registry, table);
        registry.register_collector(Box::new(Fixed { table, scrape }));
        (registry, kept)
    }

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    /// One series in every kept family of `table`, each label valued "x".
    fn fill_kept(table: &[MetricDef<Scrape>], kept: &Kept) {
        for def in table.iter().filter(|d| matches!(d.source, Source::Kept)) {
            let values = vec!["x"; def.labels.len()];
            match def.kind {
                Kind::Counter => {
                    kept.counter(def.name).get(&values).inc();
                }
                Kind::Gauge => {
                    kept.gauge(def.name).get(&values).set(1);
                }
                Kind::Info => unreachable!("Kept::register refuses them"),
            }
        }
    }

    #[test]
    fn openmetrics_text() {
        let (registry, _) = registry(METRICS, scrape());
        let text = encode(&registry);
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
        // Kept families show once they have a series.
        assert!(!text.contains("filterctl_reloads"), "{text}");
    }

    #[test]
    fn every_family_comes_from_the_table() {
        let (registry, kept) = registry(METRICS, scrape());
        fill_kept(METRICS, &kept);
        check_exposition(METRICS, &encode(&registry), true);
    }

    #[test]
    fn the_table_is_well_formed() {
        let ident = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        for (i, def) in METRICS.iter().enumerate() {
            assert!(ident(def.name), "{def:?}: not a metric name");
            assert!(
                !METRICS[..i].iter().any(|o| o.name == def.name),
                "{def:?} twice"
            );
            assert!(
                def.help.ends_with('.') && !def.help.ends_with(".."),
                "{def:?}: help is a sentence with one closing period"
            );
            assert!(def.labels.iter().all(|l| ident(l)), "{def:?}: label names");
            if def.name == "top_source_dropped_packets" {
                let bound = format!("at most {TOP_SOURCES} per interface");
                assert!(def.help.contains(&bound), "{def:?}: help says {bound}");
            }
            for suffix in ["_total", "_info", "_created"] {
                assert!(
                    !def.name.ends_with(suffix),
                    "{def:?}: the encoder adds {suffix}"
                );
            }
        }
    }

    #[test]
    fn docs_list_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let expected = docs_list(METRICS);
        let Some(listed) = docs_section(&doc) else {
            panic!(
                "docs/operations.md has no generated metric list: put this under \"Prometheus metrics\":\n{DOCS_BEGIN}\n{expected}{DOCS_END}\n"
            );
        };
        assert!(
            listed == expected,
            "docs/operations.md's metric list differs from METRICS in serve/metrics.rs; between its markers it should read:\n{expected}"
        );
    }

    #[test]
    fn a_new_metric_needs_only_its_table_entry() {
        const NEW: &[MetricDef<Scrape>] = &[
            MetricDef {
                name: "test_queue_depth",
                kind: Kind::Gauge,
                help: "A gauge a task keeps, added by a test.",
                labels: &["interface", "queue"],
                source: Source::Kept,
            },
            MetricDef {
                name: "test_bans_seen",
                kind: Kind::Counter,
                help: "A family read at scrape time, added by a test.",
                labels: &["interface"],
                source: Source::Scrape(|s| s.per_interface(|r| r.bans as u64 * 10)),
            },
        ];
        let table: &'static [MetricDef<Scrape>] = [METRICS, NEW].concat().leak();
        let (registry, kept) = registry(table, scrape());
        kept.gauge("test_queue_depth").get(&["eth0", "rx"]).set(12);
        let text = encode(&registry);
        for line in [
            "# HELP filterctl_test_queue_depth A gauge a task keeps, added by a test.",
            "# TYPE filterctl_test_queue_depth gauge",
            r#"filterctl_test_queue_depth{interface="eth0",queue="rx"} 12"#,
            "# HELP filterctl_test_bans_seen A family read at scrape time, added by a test.",
            "# TYPE filterctl_test_bans_seen counter",
            r#"filterctl_test_bans_seen_total{interface="eth0"} 40"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        fill_kept(table, &kept);
        check_exposition(table, &encode(&registry), true);
        let docs = docs_list(table);
        assert!(
            docs.starts_with(&docs_list(METRICS))
                && docs.ends_with(
                    "- `filterctl_test_queue_depth{interface,queue}` (gauge): A gauge a task\n  keeps, added by a test.\n\
                     - `filterctl_test_bans_seen_total{interface}` (counter): A family read at\n  scrape time, added by a test.\n"
                ),
            "{docs}"
        );
        // The real table and its docs are untouched.
        assert!(!docs_list(METRICS).contains("test_"));
    }
}
