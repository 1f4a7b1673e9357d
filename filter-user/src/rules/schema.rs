//! A rule file as written: the TOML shape serde reads, before validation.
//! Every value keeps its span, so that a later step can place its error.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A rule file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSchema {
    #[serde(default)]
    pub(crate) mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) fragments: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) fragment_memory: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) allow_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) deny_files: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) sources: Option<SourcesSchema>,
    #[serde(default)]
    pub(crate) per_source: Option<Spanned<LimitSchema>>,
    #[serde(default)]
    pub(crate) limits: BTreeMap<Spanned<String>, Spanned<LimitSchema>>,
    #[serde(default)]
    pub(crate) ban: Option<BanSchema>,
    /// Surge detection: see `rules/adaptive.rs`.
    #[serde(default)]
    pub(crate) adaptive: Option<AdaptiveSchema>,
    #[serde(default, rename = "rule")]
    pub(crate) rules: Vec<Spanned<RuleSchema>>,
    #[serde(default)]
    pub(crate) upstream: Option<Spanned<UpstreamSchema>>,
    #[serde(default)]
    pub(crate) reply_guard: Option<ReplyGuardSchema>,
    #[serde(default)]
    pub(crate) never_ban: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourcesSchema {
    #[serde(default)]
    pub(crate) ipv4_prefix: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) ipv6_prefix: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) table_size: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitSchema {
    #[serde(default)]
    pub(crate) pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) bps: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) burst_packets: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) burst_bytes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BanSchema {
    pub(crate) after: Spanned<String>,
    #[serde(rename = "for")]
    pub(crate) duration: Spanned<String>,
}

/// `[adaptive]` as written (validated in `rules/adaptive.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdaptiveSchema {
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    #[serde(default)]
    pub(crate) min_pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) min_share: Option<Spanned<f64>>,
    #[serde(default)]
    pub min_rise: Option<Spanned<i64>>,
    #[serde(default)]
    pub learn: Option<Spanned<String>>,
    #[serde(default)]
    pub action: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) limit: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) aggregate_pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) hold: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) never_block: Option<Vec<Spanned<i64>>>,
}

/// `[upstream]` as written (validated in `rules/upstream.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamSchema {
    pub(crate) speaker: Spanned<String>,
    /// gobgp: HOST:PORT of gobgpd's gRPC API.
    #[serde(default)]
    pub(crate) api: Option<Spanned<String>>,
    /// gobgp: the CLI program.
    #[serde(default)]
    pub(crate) command: Option<Spanned<String>>,
    /// exabgp: the FIFO its helper process reads.
    #[serde(default)]
    pub(crate) pipe: Option<Spanned<String>>,
    /// Documentation only: the speaker's own configuration holds the peers.
    #[serde(default)]
    pub(crate) peers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) dry_run: Option<bool>,
    #[serde(default)]
    pub(crate) interval: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) min_pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) min_bps: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) sustain: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) hold: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_routes: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) max_changes_per_minute: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) blackhole: Option<Spanned<BlackholeSchema>>,
    #[serde(default)]
    pub(crate) import: Option<Spanned<ImportSchema>>,
}

/// `[upstream.import]`: FlowSpec routes read from the speaker's RIB and
/// enforced here (validated in `rules/upstream.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportSchema {
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    #[serde(default)]
    pub(crate) destinations: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) min_prefix_v4: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) min_prefix_v6: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) peers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) communities: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_routes: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlackholeSchema {
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    pub(crate) link_capacity: Spanned<String>,
    /// Percent of `link_capacity`.
    #[serde(default)]
    pub(crate) share: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) sustain: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) hold: Option<Spanned<String>>,
    /// Only after FlowSpec routes were announced and did not help (the
    /// default); false: whenever the drops call for it.
    #[serde(default)]
    pub(crate) after_flowspec: Option<bool>,
}

/// `[reply_guard]`, and each `[reply_guard.port.N]`, which takes only the
/// budget keys (one shape for both: serde can't flatten a shared part into
/// a struct that refuses unknown keys). Validated in `rules/guard.rs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplyGuardSchema {
    #[serde(default)]
    pub(crate) enabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) ports: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    pub(crate) packets: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) expiry: Option<Spanned<String>>,
    #[serde(default)]
    pub multicast_expiry: Option<Spanned<String>>,
    /// Budget of a request that subscribes to notifications (CoAP Observe).
    #[serde(default)]
    pub observe_packets: Option<Spanned<i64>>,
    #[serde(default)]
    pub observe_expiry: Option<Spanned<String>>,
    /// Per-port budgets: `[reply_guard.port.1900]`; the port is guarded too.
    #[serde(default)]
    pub(crate) port: BTreeMap<Spanned<String>, ReplyGuardSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSchema {
    pub(crate) name: Spanned<String>,
    pub(crate) protocol: Spanned<String>,
    #[serde(default)]
    pub(crate) src_port: Option<Spanned<RangeValue>>,
    #[serde(default)]
    pub(crate) dst_port: Option<Spanned<RangeValue>>,
    #[serde(default)]
    pub(crate) payload_len: Option<Spanned<RangeValue>>,
    #[serde(default)]
    pub(crate) payload: Option<Spanned<PayloadSchema>>,
    pub(crate) action: Spanned<String>,
    #[serde(default)]
    pub(crate) limit: Option<Spanned<String>>,
    /// Validated either way; only enabled rules are loaded.
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    #[serde(default)]
    pub(crate) aggregate_pps: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) aggregate_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayloadSchema {
    pub(crate) offset: Spanned<i64>,
    pub(crate) mask: Spanned<String>,
    pub(crate) value: Spanned<String>,
}

/// `123` or `"1024-65535"`.
pub(crate) enum RangeValue {
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
