//! Compilation of a validated rule set into what the XDP program's maps
//! hold: the config, the rules, the per-port chains that find them, and
//! the limits in GCRA terms.

use std::collections::HashMap;

use filter_common::{
    CONFIG_FRAGMENT_DROP, CONFIG_HAS_ALLOW, CONFIG_HAS_DENY, CONFIG_MONITOR, CONFIG_REPLY_GUARD,
    Chain, Config, FAMILY_V4, GUARD_NO_SLOT, GUARD_SLOTS, GUARD_TABLE_LEN, GuardPort, IPPROTO_TCP,
    IPPROTO_UDP, Limit, MAX_CHAIN, MAX_CHAINS, Rule, guard::guard_index, hints, port_slot,
    source_slots,
};

use super::{
    prefixes::Prefix,
    set::{FragmentPolicy, Mode, RuleSet, RuleSpec},
};

/// GCRA spacing and tolerance (ns) of a packet rate with a burst (packets;
/// by default a tenth of a second at the rate, at least one packet).
pub(crate) fn gcra_packets(pps: u64, burst: Option<u64>) -> (u64, u64) {
    let burst = burst.unwrap_or((pps / 10).max(1));
    let interval = 1_000_000_000 / pps;
    (interval, (burst - 1) * interval)
}

/// GCRA cost of a byte (ps) and tolerance (ns) of a bit rate with a burst
/// (bytes; by default a tenth of a second at the rate, at least one
/// full-size frame). None when the tolerance does not fit the limiter.
pub(crate) fn gcra_bytes(bps: u64, burst_bytes: Option<u64>) -> Option<(u64, u64)> {
    let burst = burst_bytes.unwrap_or((bps / 80).max(1514));
    let cost_ps = 8_000_000_000_000 / bps;
    Some((cost_ps, burst.checked_mul(cost_ps)? / 1000))
}

/// What the XDP program's rule maps hold for a rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub config: Config,
    pub rules: Vec<Rule>,
    /// Index 0 is the empty chain.
    pub chains: Vec<Chain>,
    /// (port slot, chain index) for every slot whose chain is not empty.
    pub port_chains: Vec<(u32, u32)>,
    /// By limit id; id 0 is "no limit".
    pub limits: Vec<Limit>,
    /// The guarded-port table, a byte per port (empty when off; see
    /// [`filter_common::GLOBAL_GUARD_PORTS`]).
    pub(crate) guard_table: Vec<u8>,
    /// Guarded port -> its budget.
    pub guard_ports: Vec<(u16, GuardPort)>,
    /// (index, word) of every non-zero word of the source hints in front
    /// of the allow and deny tries ([`filter_common::hints`]).
    pub(crate) hint_words: Vec<(u32, u64)>,
    /// The IPv4 lists in the program's form.
    pub(crate) v4_lists: super::v4lists::V4Lists,
}

pub(crate) struct ChainOverflow {
    /// Index of the rule in the loaded rules.
    pub(crate) rule: usize,
    pub(crate) message: String,
}

/// Splits each protocol's source-port space at every rule boundary; each
/// piece gets the list of rules covering it, in file order. Identical lists
/// share one chain.
/// Chains and the port slots that lead to them.
pub(crate) struct Chains {
    chains: Vec<Chain>,
    port_chains: Vec<(u32, u32)>,
}

pub(crate) fn compile_chains(set: &RuleSet) -> Result<Chains, ChainOverflow> {
    let mut chains = vec![Chain::default()];
    let mut ids: HashMap<Vec<u16>, u32> = HashMap::new();
    let mut port_chains = Vec::new();
    for proto in [IPPROTO_UDP, IPPROTO_TCP] {
        let rules: Vec<(usize, &RuleSpec)> = set
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.proto == proto)
            .collect();
        let mut cuts: Vec<u32> = vec![0, 65536];
        for (_, r) in &rules {
            cuts.push(r.src_ports.0 as u32);
            cuts.push(r.src_ports.1 as u32 + 1);
        }
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let list: Vec<u16> = rules
                .iter()
                .filter(|(_, r)| (r.src_ports.0 as u32) <= lo && lo <= r.src_ports.1 as u32)
                .map(|(i, _)| *i as u16)
                .collect();
            if list.is_empty() {
                continue;
            }
            if list.len() > MAX_CHAIN {
                let culprit = list[MAX_CHAIN] as usize;
                let names: Vec<&str> = list
                    .iter()
                    .map(|&i| set.rules[i as usize].name.as_str())
                    .collect();
                return Err(ChainOverflow {
                    rule: culprit,
                    message: format!(
                        "more than {MAX_CHAIN} rules apply to {} source port {lo}: {}; use fewer rules on that port, or narrow their src_port ranges",
                        if proto == IPPROTO_UDP { "udp" } else { "tcp" },
                        names.join(", ")
                    ),
                });
            }
            let id = match ids.get(&list) {
                Some(id) => *id,
                None => {
                    let id = chains.len() as u32;
                    let mut chain = Chain {
                        len: list.len() as u16,
                        ..Chain::default()
                    };
                    chain.rules[..list.len()].copy_from_slice(&list);
                    chains.push(chain);
                    ids.insert(list, id);
                    id
                }
            };
            for port in lo..hi {
                let slot = port_slot(proto, port as u16).expect("udp and tcp have ports");
                port_chains.push((slot, id));
            }
        }
    }
    assert!(
        chains.len() <= MAX_CHAINS as usize,
        "bounded by 2N+1 pieces per protocol"
    );
    Ok(Chains {
        chains,
        port_chains,
    })
}

impl RuleSet {
    pub fn compile(&self) -> Compiled {
        let Chains {
            chains,
            port_chains,
        } = match compile_chains(self) {
            Ok(c) => c,
            Err(e) => unreachable!("parse() already checked chain limits: {}", e.message),
        };
        let mut flags = 0;
        if self.mode == Mode::Monitor {
            flags |= CONFIG_MONITOR;
        }
        if self.fragments == FragmentPolicy::Drop {
            flags |= CONFIG_FRAGMENT_DROP;
        }
        if !self.allow.is_empty() {
            flags |= CONFIG_HAS_ALLOW;
        }
        if !self.deny.is_empty() {
            flags |= CONFIG_HAS_DENY;
        }
        let guard_ports: Vec<(u16, GuardPort)> = self
            .reply_guard
            .iter()
            .flat_map(|g| g.ports.iter().map(|(p, b)| (*p, *b)))
            .collect();
        let mut guard_table = Vec::new();
        if self.reply_guard.is_some() {
            flags |= CONFIG_REPLY_GUARD;
            guard_table = vec![0u8; GUARD_TABLE_LEN];
            // Sorted by port: the first ones get length counters.
            for (i, (p, _)) in guard_ports.iter().enumerate() {
                guard_table[guard_index(*p)] = if i < GUARD_SLOTS {
                    i as u8 + 1
                } else {
                    GUARD_NO_SLOT
                };
            }
        }
        Compiled {
            config: Config {
                flags,
                src_prefix_v4: self.src_prefix_v4,
                src_prefix_v6: self.src_prefix_v6,
                ban_after_ns: self.ban_after_ns,
                ban_for_ns: self.ban_for_ns,
                frag_track_ns: self.fragment_memory_ns,
                default_limit: self.default_limit,
                sources_mask: source_slots(self.table_size) - 1,
                ..Config::default()
            },
            // A fresh load counts rule i in slot i; a reload moves each
            // rule to its name's slot (filter::lifecycle::rule_slots).
            rules: self
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| Rule {
                    counter_slot: i as u16,
                    ..r.rule
                })
                .collect(),
            chains,
            port_chains,
            limits: std::iter::once(Limit::default())
                .chain(self.limits.iter().map(|(_, l)| *l))
                .collect(),
            guard_table,
            guard_ports,
            // IPv4 sources are looked up in the lists' own form.
            hint_words: hint_words(
                self.allow
                    .iter()
                    .chain(&self.deny)
                    .filter(|p| p.family != FAMILY_V4),
            ),
            v4_lists: super::v4lists::build(&self.allow, &self.deny),
        }
    }
}

/// The source hints of every listed prefix, allow and deny alike: both
/// lists are looked up behind one test.
fn hint_words<'a>(prefixes: impl Iterator<Item = &'a Prefix>) -> Vec<(u32, u64)> {
    let mut words = Vec::new();
    for p in prefixes {
        if words.is_empty() {
            words = vec![0u64; hints::HINT_WORDS as usize];
        }
        hints::prefix_bits(p.family, &p.addr, p.len, |first, count| {
            hints::range_words(first, count, |w, mask| words[w as usize] |= mask)
        });
    }
    words
        .into_iter()
        .enumerate()
        .filter(|(_, w)| *w != 0)
        .map(|(i, w)| (i as u32, w))
        .collect()
}
