//! Where candidate routes come from: the running rule set and its counters.
//! Drop rules (adaptive blocks included) become FlowSpec routes to this
//! host's addresses when FlowSpec can say what they match; deny prefixes
//! and active bans become source-prefix routes, counted by their reason
//! counter (the program keeps no per-prefix counter); all drops together
//! measure the attack for the blackhole.

use filter_common::{ACTION_DROP, ACTION_LIMIT, FAMILY_V4, IPPROTO_TCP, RULE_SPARES_GUARDED};

use super::{
    routes::{Action, FlowSpec, Route, Span},
    select::Observation,
};
use crate::{
    filter::observe::stats::{InterfaceStats, Totals},
    rules::{Prefix, RuleSet, RuleSpec},
};

/// Rules whose names start with this were added by the adaptive blocker.
pub(crate) const ADAPTIVE_PREFIX: &str = "adaptive-";

/// What a step sees of one interface.
pub(crate) struct Inputs<'a> {
    pub(crate) rules: &'a RuleSet,
    pub(crate) stats: &'a InterfaceStats,
    pub(crate) bans: &'a [Prefix],
    /// This host's addresses on the interface, as /32 and /128.
    pub(crate) hosts: &'a [Prefix],
}

/// FlowSpec candidates; deny and ban prefixes at most `group_cap` each
/// (they share one counter, so any `group_cap` of them are as justified
/// as the others, and a 100,000-source ban list stays cheap to track).
pub(crate) fn flowspec(inp: &Inputs<'_>, group_cap: usize) -> Vec<Observation> {
    let mut out = Vec::new();
    for (i, spec) in inp.rules.rules.iter().enumerate() {
        let Some(totals) = rule_totals(inp.stats, &spec.name) else {
            continue;
        };
        let Ok((action, what)) = exportable(inp.rules, i, totals) else {
            continue;
        };
        for &dst in inp.hosts {
            out.push(Observation {
                route: Route::FlowSpec(rule_flow(spec, dst, action)),
                why: what.clone(),
                totals,
            });
        }
    }
    let groups = [
        (inp.rules.deny.as_slice(), "deny_drop", "deny prefix"),
        (inp.bans, "ban_drop", "active ban"),
    ];
    for (prefixes, reason, what) in groups {
        let totals = reason_totals(inp.stats, reason);
        for &src in prefixes.iter().take(group_cap) {
            for &dst in inp.hosts.iter().filter(|h| h.family == src.family) {
                out.push(Observation {
                    route: Route::FlowSpec(source_flow(src, dst)),
                    why: format!("{what} {src} ({reason}, shared by all of them)"),
                    totals,
                });
            }
        }
    }
    out
}

/// Blackhole candidates: every host address, measured by all drops.
pub(crate) fn blackhole(inp: &Inputs<'_>, threshold_bps: u64) -> Vec<Observation> {
    inp.hosts
        .iter()
        .map(|&dst| Observation {
            route: Route::Blackhole { dst },
            why: format!(
                "all drops on {} above {} bit/s (the configured share of the link)",
                inp.stats.interface, threshold_bps
            ),
            totals: inp.stats.dropped,
        })
        .collect()
}

fn rule_totals(stats: &InterfaceStats, name: &str) -> Option<Totals> {
    stats.rules.iter().find(|r| r.name == name).map(|r| Totals {
        packets: r.packets,
        bytes: r.bytes,
    })
}

fn reason_totals(stats: &InterfaceStats, reason: &str) -> Totals {
    stats
        .reasons
        .get(reason)
        .map_or_else(Totals::default, |r| Totals {
            packets: r.packets,
            bytes: r.bytes,
        })
}

/// The action a rule's route carries and why it is announced, or why
/// FlowSpec cannot carry it without dropping more upstream than here.
fn exportable(set: &RuleSet, i: usize, totals: Totals) -> Result<(Action, String), &'static str> {
    let spec = &set.rules[i];
    let r = &spec.rule;
    let kind = if spec.name.starts_with(ADAPTIVE_PREFIX) {
        "adaptive block"
    } else {
        "rule"
    };
    if r.match_len > 0 {
        return Err("matches payload bytes, which FlowSpec cannot");
    }
    // A block of a guarded port spares the answers to this host's own
    // requests on it, which a FlowSpec route of the port would drop too.
    let guarded = |p: u16| {
        set.reply_guard
            .as_ref()
            .is_some_and(|g| g.ports.contains_key(&p))
    };
    if r.flags & RULE_SPARES_GUARDED != 0 && (spec.src_ports.0..=spec.src_ports.1).any(guarded) {
        return Err(
            "spares this host's own answers on a guarded port, which FlowSpec cannot tell apart",
        );
    }
    let action = match r.action {
        ACTION_DROP => Action::Discard,
        ACTION_LIMIT if r.agg_interval_ns > 0 => {
            // FlowSpec limits bytes/s: the aggregate packet rate at the
            // mean size of what the rule matched.
            let mean = totals.bytes.checked_div(totals.packets).unwrap_or(1500);
            Action::RateLimit {
                bytes_per_s: 1_000_000_000 / r.agg_interval_ns * mean,
            }
        }
        ACTION_LIMIT => return Err("limits per source, which FlowSpec cannot"),
        _ => return Err("passes traffic"),
    };
    if set.rules[..i]
        .iter()
        .any(|e| e.rule.action != ACTION_DROP && e.overlaps(spec))
    {
        return Err("an earlier pass or limit rule takes part of its traffic");
    }
    Ok((action, format!("{kind} {} ({action})", spec.name)))
}

fn range(r: Span) -> Option<Span> {
    (r != (0, 65535)).then_some(r)
}

/// The rule's payload length range as FlowSpec's packet length: IPv4's
/// total length (20-byte header), IPv6's payload length; IPv4 options and
/// IPv6 extension headers shift it by their size.
fn packet_length(spec: &RuleSpec, v4: bool) -> Option<Span> {
    let (lo, hi) = range((spec.rule.len_lo, spec.rule.len_hi))?;
    let (l4_min, l4_max) = if spec.proto == IPPROTO_TCP {
        (20, 60)
    } else {
        (8, 8)
    };
    let ip = if v4 { 20 } else { 0 };
    let add = |v: u16, n: u32| (u32::from(v) + n + ip).min(65535) as u16;
    Some((add(lo, l4_min), add(hi, l4_max)))
}

fn rule_flow(spec: &RuleSpec, dst: Prefix, action: Action) -> FlowSpec {
    FlowSpec {
        dst,
        src: None,
        proto: Some(spec.proto),
        src_ports: range(spec.src_ports),
        dst_ports: range((spec.rule.dst_port_lo, spec.rule.dst_port_hi)),
        pkt_len: packet_length(spec, dst.family == FAMILY_V4),
        action,
    }
}

fn source_flow(src: Prefix, dst: Prefix) -> FlowSpec {
    FlowSpec {
        dst,
        src: Some(src),
        proto: None,
        src_ports: None,
        dst_ports: None,
        pkt_len: None,
        action: Action::Discard,
    }
}

/// This host's addresses on `iface` as host prefixes; link-local ones are
/// no use to a router upstream.
pub(crate) fn host_prefixes(iface: &str) -> Vec<Prefix> {
    let mut out: Vec<Prefix> = crate::sys::interface_addresses()
        .into_iter()
        .filter(|(name, _)| name == iface)
        .filter_map(|(_, ip)| match ip {
            std::net::IpAddr::V4(a) if !a.is_link_local() && !a.is_loopback() => {
                let mut addr = [0u8; 16];
                addr[..4].copy_from_slice(&a.octets());
                Some(Prefix {
                    family: FAMILY_V4,
                    addr,
                    len: 32,
                })
            }
            std::net::IpAddr::V6(a) if !a.is_unicast_link_local() && !a.is_loopback() => {
                Some(Prefix {
                    family: filter_common::FAMILY_V6,
                    addr: a.octets(),
                    len: 128,
                })
            }
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        filter::observe::stats::{ReasonStats, RuleStats},
        rules::{parse, prefixes::parse_prefix},
    };

    /// A shadowed drop rule, one with a length range, an adaptive block
    /// with an aggregate limit, and a deny prefix.
    const RULES: &str = r#"
deny = ["203.0.113.0/25"]
rule = [
  { name = "ntp-time", protocol = "udp", src_port = 123, action = "pass", payload = { offset = 0, mask = "07", value = "04" } },
  { name = "ntp-reflection", protocol = "udp", src_port = 123, action = "drop" },
  { name = "ssdp", protocol = "udp", src_port = 1900, payload_len = "100-65535", action = "drop" },
  { name = "cldap-block", protocol = "udp", src_port = 389, dst_port = "1024-65535", action = "limit", aggregate_pps = 1000 },
]
"#;

    fn stats(set: &RuleSet) -> InterfaceStats {
        let rules = set
            .rules
            .iter()
            .map(|r| RuleStats {
                name: r.name.clone(),
                action: "drop",
                packets: 10,
                bytes: 1000,
            })
            .collect();
        let mut reasons = BTreeMap::new();
        for reason in ["deny_drop", "ban_drop"] {
            reasons.insert(
                reason,
                ReasonStats {
                    verdict: "drop",
                    packets: 7,
                    bytes: 700,
                },
            );
        }
        InterfaceStats {
            interface: "eth0".into(),
            mode: "enforce",
            rules_digest: String::new(),
            seen: Totals::default(),
            dropped: Totals {
                packets: 5,
                bytes: 500,
            },
            passed: Totals::default(),
            monitor_passed: Totals::default(),
            reasons,
            rules,
        }
    }

    /// RULES as `serve` runs it: its `cldap-block` rule stands for an
    /// adaptive block, which files may not name themselves.
    fn running() -> RuleSet {
        let mut set = parse("t.toml", RULES).unwrap();
        for r in &mut set.rules {
            if r.name == "cldap-block" {
                r.name = "adaptive-cldap".to_string();
            }
        }
        set
    }

    fn lines(obs: &[Observation]) -> Vec<String> {
        obs.iter()
            .map(|o| format!("{} | {}", o.route, o.why))
            .collect()
    }

    #[test]
    fn rules_become_flowspec_routes_when_flowspec_can_say_what_they_drop() {
        let set = running();
        let hosts = [
            parse_prefix("192.0.2.1/32").unwrap(),
            parse_prefix("2001:db8::1/128").unwrap(),
        ];
        let bans: Vec<Prefix> = (0..5)
            .map(|i| parse_prefix(&format!("198.51.100.{i}/32")).unwrap())
            .collect();
        let stats = stats(&set);
        let inp = Inputs {
            rules: &set,
            stats: &stats,
            bans: &bans,
            hosts: &hosts,
        };
        let got = lines(&flowspec(&inp, 3));
        let want = [
            "flowspec destination 192.0.2.1/32 protocol udp source-port ==1900 packet-length >=128&<=65535 then discard | rule ssdp (discard)",
            "flowspec destination 2001:db8::1/128 protocol udp source-port ==1900 packet-length >=108&<=65535 then discard | rule ssdp (discard)",
            "flowspec destination 192.0.2.1/32 protocol udp destination-port >=1024&<=65535 source-port ==389 then rate-limit 100000 | adaptive block adaptive-cldap (rate-limit 100000)",
            "flowspec destination 2001:db8::1/128 protocol udp destination-port >=1024&<=65535 source-port ==389 then rate-limit 100000 | adaptive block adaptive-cldap (rate-limit 100000)",
            "flowspec destination 192.0.2.1/32 source 203.0.113.0/25 then discard | deny prefix 203.0.113.0/25 (deny_drop, shared by all of them)",
            "flowspec destination 192.0.2.1/32 source 198.51.100.0/32 then discard | active ban 198.51.100.0/32 (ban_drop, shared by all of them)",
            "flowspec destination 192.0.2.1/32 source 198.51.100.1/32 then discard | active ban 198.51.100.1/32 (ban_drop, shared by all of them)",
            "flowspec destination 192.0.2.1/32 source 198.51.100.2/32 then discard | active ban 198.51.100.2/32 (ban_drop, shared by all of them)",
        ];
        assert_eq!(got, want);
        // ntp-reflection is shadowed by the payload-matched pass rule: the
        // router would drop the time replies this host keeps.
        let e = exportable(&set, 1, Totals::default()).unwrap_err();
        assert!(e.contains("earlier pass"), "{e}");
        assert!(exportable(&set, 0, Totals::default()).is_err());
    }

    /// serve's real blocks: one of an unguarded port goes upstream as a
    /// discard; one of a guarded port spares the host's own answers, which
    /// a route of the port would drop, and stays here.
    #[test]
    fn adaptive_blocks_go_upstream_unless_they_spare_the_hosts_answers() {
        use crate::rules::adaptive::{AdaptiveBlock, with_blocks};
        let text =
            "[per_source]\npps = 1000\n[reply_guard]\nports = [123]\n[adaptive]\nenabled = true\n";
        let file = parse("t.toml", text).unwrap();
        let block = |port| AdaptiveBlock {
            port,
            since_unix: 1,
            trigger_pps: 5000,
            trigger_share_percent: 90,
        };
        let set = with_blocks(&file, &[block(4500), block(123)]).unwrap();
        let stats = stats(&set);
        let hosts = [parse_prefix("192.0.2.1/32").unwrap()];
        let inp = Inputs {
            rules: &set,
            stats: &stats,
            bans: &[],
            hosts: &hosts,
        };
        let got = lines(&flowspec(&inp, 3));
        assert_eq!(
            got,
            [
                "flowspec destination 192.0.2.1/32 protocol udp source-port ==4500 then discard | adaptive block adaptive-udp-4500 (discard)"
            ],
            "{got:?}"
        );
        let i = set
            .rules
            .iter()
            .position(|r| r.name == "adaptive-udp-123")
            .unwrap();
        let e = exportable(&set, i, Totals::default()).unwrap_err();
        assert!(e.contains("guarded port"), "{e}");
    }

    #[test]
    fn blackhole_measures_all_drops() {
        let set = running();
        let stats = stats(&set);
        let hosts = [parse_prefix("192.0.2.1/32").unwrap()];
        let inp = Inputs {
            rules: &set,
            stats: &stats,
            bans: &[],
            hosts: &hosts,
        };
        let b = blackhole(&inp, 1000);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].totals.bytes, 500);
        assert_eq!(
            b[0].route.to_string(),
            "blackhole 192.0.2.1/32 community 65535:666"
        );
    }
}
