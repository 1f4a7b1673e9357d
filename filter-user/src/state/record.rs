//! The RULESET record of a generation: its rule set in a canonical form
//! (every setting and every rule's fields as text, rules in file order), so
//! that `diff` compares against what runs, not against some file.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, bail};
use aya::maps::Array;
use filter_common::{MAP_RULESET, RULESET_CHUNK, RULESET_CHUNKS};
use serde::{Deserialize, Serialize};

use super::pins::open_map;
use crate::rules::{
    RuleSet, RuleSpec,
    adaptive::{ADAPTIVE_PREFIX, AdaptiveBlock},
    hex,
    imports::{FLOWSPEC_PREFIX, FlowImport},
};

/// A rule set as `diff` compares it: every setting and every rule's fields
/// as text, rules in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Canonical {
    pub(crate) settings: BTreeMap<String, String>,
    pub(crate) rules: Vec<(String, BTreeMap<String, String>)>,
    /// The adaptive blocks among `rules` (rules named `adaptive-...`):
    /// added by `serve`, never in the file.
    #[serde(default)]
    pub(crate) adaptive_blocks: Vec<AdaptiveBlock>,
    /// The imported FlowSpec routes among `rules` (rules named
    /// `flowspec-...`): added by `serve`, never in the file.
    #[serde(default)]
    pub(crate) flowspec_imports: Vec<FlowImport>,
}

impl Canonical {
    /// The rules that came from the file (not the adaptive blocks nor the
    /// imported routes).
    pub(crate) fn file_rules(&self) -> impl Iterator<Item = &(String, BTreeMap<String, String>)> {
        self.rules
            .iter()
            .filter(|(n, _)| !n.starts_with(ADAPTIVE_PREFIX) && !n.starts_with(FLOWSPEC_PREFIX))
    }
}

fn range(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// Nanoseconds as seconds, without trailing zeros ("30", "0.25").
fn seconds(ns: u64) -> String {
    (ns as f64 / 1e9).to_string()
}

/// A compiled limit in the rule file's terms: rates and bursts.
fn describe_limit(l: &filter_common::Limit) -> String {
    let mut parts = Vec::new();
    if let Some(pps) = 1_000_000_000u64.checked_div(l.pkt_interval_ns) {
        let burst = l.pkt_tolerance_ns / l.pkt_interval_ns + 1;
        parts.push(format!("pps {pps} burst_packets {burst}"));
    }
    if let Some(bps) = 8_000_000_000_000u64.checked_div(l.byte_cost_ps) {
        let burst = l.byte_tolerance_ns * 1000 / l.byte_cost_ps;
        parts.push(format!("bps {bps} burst_bytes {burst}"));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The reply guard's ports and budgets, and the never-ban list (which
/// `serve` reads back to refresh the set).
fn guard_settings(set: &RuleSet, settings: &mut BTreeMap<String, String>) {
    if let Some(g) = &set.reply_guard {
        for (port, b) in &g.ports {
            let mut budget = format!(
                "packets {} bytes {} expiry_s {} multicast_expiry_s {}",
                b.packets,
                b.bytes,
                seconds(u64::from(b.expiry_ms) * 1_000_000),
                seconds(u64::from(b.multicast_expiry_ms) * 1_000_000)
            );
            // Only where subscriptions get a budget: the other ports' lines
            // stay as they were.
            if b.observe_packets != 0 {
                budget.push_str(&format!(
                    " observe_packets {} observe_expiry_s {}",
                    b.observe_packets,
                    seconds(u64::from(b.observe_expiry_ms) * 1_000_000)
                ));
            }
            settings.insert(format!("reply_guard port {port}"), budget);
        }
    }
    let never_ban: Vec<String> = set.never_ban.iter().map(ToString::to_string).collect();
    settings.insert("never_ban".into(), never_ban.join(" "));
}

impl Canonical {
    pub(crate) fn of(set: &RuleSet) -> Canonical {
        let mut settings = BTreeMap::new();
        settings.insert("mode".into(), format!("{:?}", set.mode).to_lowercase());
        settings.insert(
            "fragments".into(),
            format!("{:?}", set.fragments).to_lowercase(),
        );
        settings.insert("fragment_memory_s".into(), seconds(set.fragment_memory_ns));
        settings.insert("sources.ipv4_prefix".into(), set.src_prefix_v4.to_string());
        settings.insert("sources.ipv6_prefix".into(), set.src_prefix_v6.to_string());
        settings.insert("sources.table_size".into(), set.table_size.to_string());
        settings.insert("ban.after_s".into(), seconds(set.ban_after_ns));
        settings.insert("ban.for_s".into(), seconds(set.ban_for_ns));
        guard_settings(set, &mut settings);
        for (name, l) in &set.limits {
            settings.insert(format!("limit {name}"), describe_limit(l));
        }
        if let Some(a) = &set.adaptive {
            settings.insert("adaptive".into(), describe_adaptive(a));
        }
        let rules = set
            .rules
            .iter()
            .map(|r| (r.name.clone(), rule_fields(set, r)))
            .collect();
        Canonical {
            settings,
            rules,
            adaptive_blocks: set.blocks.clone(),
            flowspec_imports: set.imports.clone(),
        }
    }

    /// The chunks the RULESET map holds.
    pub(crate) fn to_chunks(&self) -> anyhow::Result<Vec<[u8; RULESET_CHUNK]>> {
        let json = serde_json::to_vec(self)?;
        if json.len() > RULESET_CHUNK * RULESET_CHUNKS as usize {
            bail!("rule set too large to record ({} bytes)", json.len());
        }
        Ok(json
            .chunks(RULESET_CHUNK)
            .map(|c| {
                let mut chunk = [0u8; RULESET_CHUNK];
                chunk[..c.len()].copy_from_slice(c);
                chunk
            })
            .collect())
    }

    fn from_chunks(chunks: &[[u8; RULESET_CHUNK]]) -> anyhow::Result<Canonical> {
        let mut bytes: Vec<u8> = chunks.iter().flatten().copied().collect();
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes.truncate(end);
        serde_json::from_slice(&bytes).context("the recorded rule set is unreadable")
    }
}

/// The record a generation's RULESET map holds.
pub(crate) fn read_record(gen_dir: &Path) -> anyhow::Result<Canonical> {
    let array: Array<_, [u8; RULESET_CHUNK]> = Array::try_from(open_map(gen_dir, MAP_RULESET)?)?;
    let chunks = (0..RULESET_CHUNKS)
        .map(|i| array.get(&i, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Canonical::from_chunks(&chunks)
}

/// A rule's fields as text, as `diff` compares them.
fn rule_fields(set: &RuleSet, r: &RuleSpec) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let x = &r.rule;
    let proto = if r.proto == filter_common::IPPROTO_TCP {
        "tcp"
    } else {
        "udp"
    };
    f.insert("protocol".into(), proto.into());
    f.insert("src_port".into(), range(r.src_ports.0, r.src_ports.1));
    f.insert("dst_port".into(), range(x.dst_port_lo, x.dst_port_hi));
    f.insert("payload_len".into(), range(x.len_lo, x.len_hi));
    f.insert("action".into(), action_name(x.action).into());
    if x.match_len > 0 {
        let n = x.match_len as usize;
        f.insert(
            "payload".into(),
            format!(
                "offset {} mask {} value {}",
                x.match_offset,
                hex(&x.match_mask[..n]),
                hex(&x.match_value[..n])
            ),
        );
    }
    if x.action == filter_common::ACTION_LIMIT {
        let name = set
            .limits
            .get((x.limit as usize).wrapping_sub(1))
            .map_or("none".to_string(), |(n, _)| n.clone());
        f.insert("limit".into(), name);
    }
    if x.agg_interval_ns != 0 {
        f.insert(
            "aggregate".into(),
            format!(
                "interval {} s tolerance {} s",
                seconds(x.agg_interval_ns),
                seconds(x.agg_tolerance_ns)
            ),
        );
    }
    if let Some(b) = set.blocks.iter().find(|b| b.rule_name() == r.name) {
        f.insert(
            "adaptive".into(),
            format!(
                "since {} at {} packets/s ({}% of UDP)",
                b.since_unix, b.trigger_pps, b.trigger_share_percent
            ),
        );
    }
    if let Some(i) = set.imports.iter().find(|i| i.name == r.name) {
        f.insert("flowspec".into(), format!("{} from {}", i.route, i.peer));
    }
    f
}

fn action_name(action: u8) -> &'static str {
    match action {
        filter_common::ACTION_DROP => "drop",
        filter_common::ACTION_LIMIT => "limit",
        _ => "pass",
    }
}

/// `[adaptive]` in the rule file's terms.
fn describe_adaptive(a: &crate::rules::adaptive::Adaptive) -> String {
    let ports: Vec<String> = a.never_block.iter().map(ToString::to_string).collect();
    format!(
        "enabled {} min_pps {} min_share {} min_rise {} learn_s {} action {} limit {} aggregate_interval_s {} hold_s {} never_block [{}]",
        a.enabled,
        a.min_pps,
        a.min_share,
        a.min_rise,
        seconds(a.learn_ns),
        action_name(a.action),
        a.limit,
        seconds(a.agg_interval_ns),
        seconds(a.hold_ns),
        ports.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse;

    #[test]
    fn canonical_form_round_trips_through_chunks() {
        let text =
            "[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n";
        let c = Canonical::of(&parse("a.toml", text).unwrap());
        let chunks = c.to_chunks().unwrap();
        assert_eq!(Canonical::from_chunks(&chunks).unwrap(), c);
    }

    #[test]
    fn durations_in_seconds_and_limits_in_the_file_s_terms() {
        let text = "fragment_memory = \"30s\"\n[per_source]\npps = 100\nbps = \"8Mbit\"\n[ban]\nafter = \"500ms\"\nfor = \"10m\"\n";
        let c = Canonical::of(&parse("a.toml", text).unwrap());
        let get = |k: &str| c.settings[k].as_str();
        assert_eq!(get("fragment_memory_s"), "30");
        assert_eq!(get("ban.after_s"), "0.5");
        assert_eq!(get("ban.for_s"), "600");
        let limit = get("limit per_source");
        assert!(
            limit.starts_with("pps 100 burst_packets 10, bps 8000000 burst_bytes"),
            "{limit}"
        );
        assert!(!c.settings.values().any(|v| v.contains('{')), "{c:?}");
    }
}
