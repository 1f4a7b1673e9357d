//! The RULESET record of a generation: its rule set in a canonical form
//! (every setting and every rule's fields as text, rules in file order), so
//! that `diff` compares against what runs, not against some file.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, bail};
use aya::maps::Array;
use filter_common::{MAP_RULESET, RULESET_CHUNK, RULESET_CHUNKS};
use serde::{Deserialize, Serialize};

use super::open_map;
use crate::rules::{RuleSet, hex};

/// A rule set as `diff` compares it: every setting and every rule's fields
/// as text, rules in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canonical {
    pub settings: BTreeMap<String, String>,
    pub rules: Vec<(String, BTreeMap<String, String>)>,
}

fn range(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// The reply guard's ports and budgets, and the never-ban list (which
/// `serve` reads back to refresh the set).
fn guard_settings(set: &RuleSet, settings: &mut BTreeMap<String, String>) {
    if let Some(g) = &set.reply_guard {
        for (port, b) in &g.ports {
            settings.insert(format!("reply_guard port {port}"), format!("{b:?}"));
        }
    }
    let never_ban: Vec<String> = set.never_ban.iter().map(ToString::to_string).collect();
    settings.insert("never_ban".into(), never_ban.join(" "));
}

impl Canonical {
    pub fn of(set: &RuleSet) -> Canonical {
        let mut settings = BTreeMap::new();
        settings.insert("mode".into(), format!("{:?}", set.mode).to_lowercase());
        settings.insert(
            "fragments".into(),
            format!("{:?}", set.fragments).to_lowercase(),
        );
        settings.insert(
            "fragment_memory_ns".into(),
            set.fragment_memory_ns.to_string(),
        );
        settings.insert("sources.ipv4_prefix".into(), set.src_prefix_v4.to_string());
        settings.insert("sources.ipv6_prefix".into(), set.src_prefix_v6.to_string());
        settings.insert("sources.table_size".into(), set.table_size.to_string());
        settings.insert("ban.after_ns".into(), set.ban_after_ns.to_string());
        settings.insert("ban.for_ns".into(), set.ban_for_ns.to_string());
        guard_settings(set, &mut settings);
        for (name, l) in &set.limits {
            settings.insert(format!("limit {name}"), format!("{l:?}"));
        }
        let limit_name = |id: u8| {
            set.limits
                .get((id as usize).wrapping_sub(1))
                .map_or("none".to_string(), |(n, _)| n.clone())
        };
        let rules = set
            .rules
            .iter()
            .map(|r| {
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
                let action = match x.action {
                    filter_common::ACTION_DROP => "drop",
                    filter_common::ACTION_LIMIT => "limit",
                    _ => "pass",
                };
                f.insert("action".into(), action.into());
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
                    f.insert("limit".into(), limit_name(x.limit));
                }
                if x.agg_interval_ns != 0 {
                    f.insert(
                        "aggregate".into(),
                        format!(
                            "{} ns tolerance {} ns",
                            x.agg_interval_ns, x.agg_tolerance_ns
                        ),
                    );
                }
                (r.name.clone(), f)
            })
            .collect();
        Canonical { settings, rules }
    }

    /// The chunks the RULESET map holds.
    pub fn to_chunks(&self) -> anyhow::Result<Vec<[u8; RULESET_CHUNK]>> {
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

    pub fn from_chunks(chunks: &[[u8; RULESET_CHUNK]]) -> anyhow::Result<Canonical> {
        let mut bytes: Vec<u8> = chunks.iter().flatten().copied().collect();
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes.truncate(end);
        serde_json::from_slice(&bytes).context("the recorded rule set is unreadable")
    }
}

/// The record a generation's RULESET map holds.
pub fn read_record(gen_dir: &Path) -> anyhow::Result<Canonical> {
    let array: Array<_, [u8; RULESET_CHUNK]> = Array::try_from(open_map(gen_dir, MAP_RULESET)?)?;
    let chunks = (0..RULESET_CHUNKS)
        .map(|i| array.get(&i, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Canonical::from_chunks(&chunks)
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
}
