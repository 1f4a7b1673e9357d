//! A validated rule set, the value every other part of filterctl takes from
//! a rule file, with the parts of it that sections add (adaptive settings
//! and blocks, the reply guard). It sits below the files that build, check
//! and compile it, which import it and are never imported back.

use std::collections::BTreeMap;

use filter_common::{GuardPort, Limit, Rule};
use serde::{Deserialize, Serialize};

use super::{prefixes::Prefix, upstream::UpstreamConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Enforce,
    Monitor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FragmentPolicy {
    Pass,
    Drop,
}

/// A validated rule: what the operator wrote, in the program's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: String,
    pub(crate) proto: u8,
    pub(crate) src_ports: (u16, u16),
    pub(crate) rule: Rule,
}

impl RuleSpec {
    /// Whether one packet could match both: the same protocol and
    /// overlapping source ports, destination ports and payload lengths
    /// (payload matches aside).
    pub(crate) fn overlaps(&self, other: &RuleSpec) -> bool {
        let meet = |a: (u16, u16), b: (u16, u16)| a.0 <= b.1 && b.0 <= a.1;
        let (r, o) = (&self.rule, &other.rule);
        self.proto == other.proto
            && meet(self.src_ports, other.src_ports)
            && meet(
                (r.dst_port_lo, r.dst_port_hi),
                (o.dst_port_lo, o.dst_port_hi),
            )
            && meet((r.len_lo, r.len_hi), (o.len_lo, o.len_hi))
    }
}

/// A validated rule file.
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub(crate) mode: Mode,
    pub(crate) fragments: FragmentPolicy,
    pub(crate) fragment_memory_ns: u64,
    pub allow: Vec<Prefix>,
    pub deny: Vec<Prefix>,
    pub(crate) src_prefix_v4: u8,
    pub(crate) src_prefix_v6: u8,
    /// Entries of the per-source limiter LRU.
    pub(crate) table_size: u32,
    /// Named limits; limit id = index + 1. The `[per_source]` limit, when
    /// present, is first and named "per_source".
    pub(crate) limits: Vec<(String, Limit)>,
    /// Limit id every packet meets at the per-source step; 0 = none.
    pub(crate) default_limit: u32,
    pub(crate) ban_after_ns: u64,
    pub(crate) ban_for_ns: u64,
    pub rules: Vec<RuleSpec>,
    /// `[upstream]`: what `serve` announces to BGP peers; None: nothing.
    pub(crate) upstream: Option<UpstreamConfig>,
    /// `[adaptive]`, when the file has it.
    pub(crate) adaptive: Option<Adaptive>,
    /// Adaptive blocks among `rules` (none in a set read from a file: see
    /// `adaptive::with_blocks`).
    pub(crate) blocks: Vec<AdaptiveBlock>,
    /// FlowSpec routes `serve` imported from its speaker, among `rules`
    /// (none in a set read from a file: see `imports::with_imports`).
    pub(crate) imports: Vec<FlowImport>,
    /// `[reply_guard]`, when on.
    pub reply_guard: Option<ReplyGuard>,
    /// Sources never banned besides those the host's configuration names.
    pub never_ban: Vec<Prefix>,
    /// SHA-256 of the file's bytes and of every list file it reads.
    pub(crate) digest: [u8; 32],
}

impl RuleSet {
    pub(crate) fn digest_hex(&self) -> String {
        hex(&self.digest)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Names of the synthetic rules start with this; rule files may not use it.
pub(crate) const ADAPTIVE_PREFIX: &str = "adaptive-";

/// Validated `[adaptive]` settings (read in `rules/adaptive.rs`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Adaptive {
    pub enabled: bool,
    /// Frames/s from one source port (a first fragment counts for its
    /// datagram's frames).
    pub min_pps: u64,
    /// Fraction (0, 1] of the interface's UDP frames.
    pub min_share: f64,
    /// How many times its normal rate a port must bring (the rise rule).
    pub min_rise: u64,
    /// The time constant (ns) of each port's normal rate.
    pub learn_ns: u64,
    /// `ACTION_DROP` or `ACTION_LIMIT`.
    pub(crate) action: u8,
    /// For `ACTION_LIMIT`: limit id (0 = none) and aggregate GCRA.
    pub(crate) limit: u8,
    pub(crate) agg_interval_ns: u64,
    pub(crate) agg_tolerance_ns: u64,
    /// How long a block stays after the surge ends.
    pub(crate) hold_ns: u64,
    pub(crate) never_block: Vec<u16>,
}

/// A block that runs: a UDP source port, since when, and what started it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptiveBlock {
    pub port: u16,
    pub since_unix: u64,
    /// Frames/s from the port when the block started (a first fragment
    /// counts for its datagram's frames).
    pub trigger_pps: u64,
    /// Its share of the interface's UDP frames then, in percent.
    pub trigger_share_percent: u32,
}

impl AdaptiveBlock {
    /// The synthetic rule's name.
    pub(crate) fn rule_name(&self) -> String {
        format!("{ADAPTIVE_PREFIX}udp-{}", self.port)
    }
}

/// Names of the rules that carry imported FlowSpec routes start with this;
/// rule files may not use it.
pub(crate) const FLOWSPEC_PREFIX: &str = "flowspec-";

/// An imported FlowSpec route that runs, in the rule engine's terms: what
/// its rule matches and does, and the route it came from (for `status`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct FlowImport {
    /// The rule's name, `flowspec-...`.
    pub(crate) name: String,
    /// The route as one line (`flowspec destination ... then discard`).
    pub(crate) route: String,
    /// The peer the speaker learned it from.
    pub(crate) peer: String,
    /// `IPPROTO_UDP` or `IPPROTO_TCP`.
    pub(crate) proto: u8,
    pub(crate) src_ports: (u16, u16),
    pub(crate) dst_ports: (u16, u16),
    /// L4 payload length, converted from FlowSpec's packet length.
    pub(crate) payload_len: (u16, u16),
    /// 0: drop; otherwise an aggregate limit of this many packets/s (the
    /// route's bytes/s at an assumed packet size).
    pub(crate) limit_pps: u64,
}

/// The guarded ports and what a request to each may receive (read in
/// `rules/guard.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyGuard {
    pub ports: BTreeMap<u16, GuardPort>,
}
