//! A rule file as written: the TOML shape serde reads, before validation.
//! Every value keeps its span, so that a later step can place its error.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A rule file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSchema {
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
    #[serde(default)]
    pub fragments: Option<Spanned<String>>,
    #[serde(default)]
    pub fragment_memory: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub sources: Option<SourcesSchema>,
    #[serde(default)]
    pub per_source: Option<Spanned<LimitSchema>>,
    #[serde(default)]
    pub limits: BTreeMap<Spanned<String>, Spanned<LimitSchema>>,
    #[serde(default)]
    pub ban: Option<BanSchema>,
    /// Surge detection: see `rules/adaptive.rs`.
    #[serde(default)]
    pub adaptive: Option<AdaptiveSchema>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleSchema>>,
    #[serde(default)]
    pub upstream: Option<Spanned<UpstreamSchema>>,
    #[serde(default)]
    pub reply_guard: Option<ReplyGuardSchema>,
    #[serde(default)]
    pub never_ban: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSchema {
    #[serde(default)]
    pub ipv4_prefix: Option<Spanned<i64>>,
    #[serde(default)]
    pub ipv6_prefix: Option<Spanned<i64>>,
    #[serde(default)]
    pub table_size: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSchema {
    #[serde(default)]
    pub pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub bps: Option<Spanned<String>>,
    #[serde(default)]
    pub burst_packets: Option<Spanned<i64>>,
    #[serde(default)]
    pub burst_bytes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanSchema {
    pub after: Spanned<String>,
    #[serde(rename = "for")]
    pub duration: Spanned<String>,
}

/// `[adaptive]` as written (validated in `rules/adaptive.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveSchema {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub min_pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub min_share: Option<Spanned<f64>>,
    #[serde(default)]
    pub min_rise: Option<Spanned<i64>>,
    #[serde(default)]
    pub learn: Option<Spanned<String>>,
    #[serde(default)]
    pub action: Option<Spanned<String>>,
    #[serde(default)]
    pub limit: Option<Spanned<String>>,
    #[serde(default)]
    pub aggregate_pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub hold: Option<Spanned<String>>,
    #[serde(default)]
    pub never_block: Option<Vec<Spanned<i64>>>,
}

/// `[upstream]` as written (validated in `rules/upstream.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSchema {
    pub speaker: Spanned<String>,
    /// gobgp: HOST:PORT of gobgpd's gRPC API.
    #[serde(default)]
    pub api: Option<Spanned<String>>,
    /// gobgp: the CLI program.
    #[serde(default)]
    pub command: Option<Spanned<String>>,
    /// exabgp: the FIFO its helper process reads.
    #[serde(default)]
    pub pipe: Option<Spanned<String>>,
    /// Documentation only: the speaker's own configuration holds the peers.
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub min_pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub min_bps: Option<Spanned<String>>,
    #[serde(default)]
    pub sustain: Option<Spanned<String>>,
    #[serde(default)]
    pub hold: Option<Spanned<String>>,
    #[serde(default)]
    pub max_routes: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_changes_per_minute: Option<Spanned<i64>>,
    #[serde(default)]
    pub blackhole: Option<Spanned<BlackholeSchema>>,
    #[serde(default)]
    pub import: Option<Spanned<ImportSchema>>,
}

/// `[upstream.import]`: FlowSpec routes read from the speaker's RIB and
/// enforced here (validated in `rules/upstream.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSchema {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub destinations: Vec<Spanned<String>>,
    #[serde(default)]
    pub min_prefix_v4: Option<Spanned<i64>>,
    #[serde(default)]
    pub min_prefix_v6: Option<Spanned<i64>>,
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    #[serde(default)]
    pub communities: Vec<Spanned<String>>,
    #[serde(default)]
    pub max_routes: Option<Spanned<i64>>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSchema {
    #[serde(default)]
    pub enabled: Option<bool>,
    pub link_capacity: Spanned<String>,
    /// Percent of `link_capacity`.
    #[serde(default)]
    pub share: Option<Spanned<i64>>,
    #[serde(default)]
    pub sustain: Option<Spanned<String>>,
    #[serde(default)]
    pub hold: Option<Spanned<String>>,
    /// Only after FlowSpec routes were announced and did not help (the
    /// default); false: whenever the drops call for it.
    #[serde(default)]
    pub after_flowspec: Option<bool>,
}

/// `[reply_guard]`, and each `[reply_guard.port.N]`, which takes only the
/// budget keys (one shape for both: serde can't flatten a shared part into
/// a struct that refuses unknown keys). Validated in `rules/guard.rs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyGuardSchema {
    #[serde(default)]
    pub enabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub ports: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    pub packets: Option<Spanned<i64>>,
    #[serde(default)]
    pub bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub expiry: Option<Spanned<String>>,
    #[serde(default)]
    pub multicast_expiry: Option<Spanned<String>>,
    /// Budget of a request that subscribes to notifications (CoAP Observe).
    #[serde(default)]
    pub observe_packets: Option<Spanned<i64>>,
    #[serde(default)]
    pub observe_expiry: Option<Spanned<String>>,
    /// Per-port budgets: `[reply_guard.port.1900]`; the port is guarded too.
    #[serde(default)]
    pub port: BTreeMap<Spanned<String>, ReplyGuardSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSchema {
    pub name: Spanned<String>,
    pub protocol: Spanned<String>,
    #[serde(default)]
    pub src_port: Option<Spanned<RangeValue>>,
    #[serde(default)]
    pub dst_port: Option<Spanned<RangeValue>>,
    #[serde(default)]
    pub payload_len: Option<Spanned<RangeValue>>,
    #[serde(default)]
    pub payload: Option<Spanned<PayloadSchema>>,
    pub action: Spanned<String>,
    #[serde(default)]
    pub limit: Option<Spanned<String>>,
    /// Validated either way; only enabled rules are loaded.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub aggregate_pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub aggregate_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadSchema {
    pub offset: Spanned<i64>,
    pub mask: Spanned<String>,
    pub value: Spanned<String>,
}

/// `123` or `"1024-65535"`.
pub enum RangeValue {
    One(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RangeValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RangeValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number like 123 or a range like \"1024-65535\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RangeValue, E> {
                Ok(RangeValue::One(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RangeValue, E> {
                Ok(RangeValue::One(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RangeValue, E> {
                Ok(RangeValue::Text(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}
