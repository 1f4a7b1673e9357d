//! The `[adaptive]` section (surge detection: when one UDP source port
//! floods the interface, `serve` blocks it for a while) and the synthetic
//! rules that carry its blocks. Blocks live only in what runs: the rule file
//! never holds them, and the RULESET record marks them as adaptive.

use filter_common::{ACTION_DROP, ACTION_LIMIT, IPPROTO_UDP, Limit, RULE_NAME_LEN, Rule};

// The settings and the block are parts of a `RuleSet`, so they live beside
// it in `set.rs` (below this file, which builds sets with blocks).
pub use super::set::AdaptiveBlock;
pub(crate) use super::set::{ADAPTIVE_PREFIX, Adaptive};
use super::{
    compile::{compile_chains, gcra_packets},
    error::{Ctx, RuleError},
    schema::AdaptiveSchema,
    set::{RuleSet, RuleSpec},
    values::{duration, int_in, named_limit},
};

/// Defaults of the `[adaptive]` keys (those of `rules/default.toml`).
/// Conservative: one source port must bring 20,000 frames/s, and either
/// 8 times its normal rate (each vector of a multi-vector flood) or half
/// of the interface's UDP and 20,000 frames/s over its normal.
pub const DEFAULT_MIN_PPS: u64 = 20_000;
pub const DEFAULT_MIN_SHARE: f64 = 0.5;
/// A reflected port's normal is near 0 and a flood brings thousands of
/// times that; a busy port's own traffic drifts by far less than 8 times
/// within `learn`.
pub const DEFAULT_MIN_RISE: u64 = 8;
/// Long enough that a flood ramped up over a few minutes is not learned
/// as normal, short enough to follow a day's ups and downs.
pub const DEFAULT_LEARN_NS: u64 = 600_000_000_000;
/// The bounds of `learn`: serve observes once a second.
const LEARN_RANGE_NS: std::ops::RangeInclusive<u64> = 1_000_000_000..=86_400_000_000_000;
pub const DEFAULT_HOLD_NS: u64 = 120_000_000_000;
/// Source ports never blocked unless the file says otherwise: 53 carries the
/// answers to this host's own lookups (unsolicited ones are the reply
/// guard's job), 443 carries QUIC (HTTP/3) downloads, which are legitimately
/// large and concentrated on one source port.
const DEFAULT_NEVER_BLOCK: [u16; 1] = [443];

/// Validates `[adaptive]`; `limits` are the file's, by limit id - 1.
pub(crate) fn parse(
    cx: &Ctx<'_>,
    s: &AdaptiveSchema,
    limits: &[(String, Limit)],
) -> Result<Adaptive, RuleError> {
    let min_pps = match &s.min_pps {
        Some(v) => int_in(cx, v, "min_pps", 1, 100_000_000)? as u64,
        None => DEFAULT_MIN_PPS,
    };
    let min_share = match &s.min_share {
        Some(v) if !(*v.get_ref() > 0.0 && *v.get_ref() <= 1.0) => {
            return Err(cx.err(
                v.span(),
                format!(
                    "min_share {} out of range: a fraction of the interface's UDP packets, above 0 and at most 1 (0.5 = 50%)",
                    v.get_ref()
                ),
            ));
        }
        Some(v) => *v.get_ref(),
        None => DEFAULT_MIN_SHARE,
    };
    let min_rise = match &s.min_rise {
        Some(v) => int_in(cx, v, "min_rise", 2, 10_000)? as u64,
        None => DEFAULT_MIN_RISE,
    };
    let learn_ns = match &s.learn {
        Some(l) => {
            let ns = duration(cx, l)?;
            if !LEARN_RANGE_NS.contains(&ns) {
                return Err(cx.err(
                    l.span(),
                    format!(
                        "learn {:?} out of range: the time constant of each port's normal rate, 1s to 1d (serve looks once a second)",
                        l.get_ref()
                    ),
                ));
            }
            ns
        }
        None => DEFAULT_LEARN_NS,
    };
    let hold_ns = match &s.hold {
        Some(h) => duration(cx, h)?,
        None => DEFAULT_HOLD_NS,
    };
    let never_block = match &s.never_block {
        Some(ports) => ports
            .iter()
            .map(|p| int_in(cx, p, "never_block port", 0, 65535).map(|n| n as u16))
            .collect::<Result<_, _>>()?,
        None => DEFAULT_NEVER_BLOCK.to_vec(),
    };
    let (action, limit, agg_interval_ns, agg_tolerance_ns) = action(cx, s, limits)?;
    Ok(Adaptive {
        enabled: s.enabled.unwrap_or(true),
        min_pps,
        min_share,
        min_rise,
        learn_ns,
        action,
        limit,
        agg_interval_ns,
        agg_tolerance_ns,
        hold_ns,
        never_block,
    })
}

/// The action, and for `limit` its limit id and aggregate GCRA.
fn action(
    cx: &Ctx<'_>,
    s: &AdaptiveSchema,
    limits: &[(String, Limit)],
) -> Result<(u8, u8, u64, u64), RuleError> {
    let name = s.action.as_ref().map_or("drop", |a| a.get_ref().as_str());
    match name {
        "drop" => {
            if let Some(l) = &s.limit {
                return Err(cx.err(l.span(), "limit = ... needs action = \"limit\""));
            }
            if let Some(a) = &s.aggregate_pps {
                return Err(cx.err(a.span(), "aggregate_pps needs action = \"limit\""));
            }
            Ok((ACTION_DROP, 0, 0, 0))
        }
        "limit" => {
            let span = s.action.as_ref().map_or(0..0, |a| a.span());
            let limit = match &s.limit {
                None => 0,
                Some(l) => named_limit(cx, l, limits)?,
            };
            let (agg_interval, agg_tolerance) = match &s.aggregate_pps {
                Some(a) => {
                    gcra_packets(int_in(cx, a, "aggregate_pps", 1, 100_000_000)? as u64, None)
                }
                None => (0, 0),
            };
            if limit == 0 && agg_interval == 0 {
                return Err(cx.err(
                    span,
                    "adaptive action \"limit\" needs limit = \"NAME\" (a [limits.NAME]), aggregate_pps, or both; a flood from spoofed sources is held only by aggregate_pps",
                ));
            }
            Ok((ACTION_LIMIT, limit, agg_interval, agg_tolerance))
        }
        other => Err(cx.unknown(
            s.action.as_ref().map_or(0..0, |a| a.span()),
            "adaptive action",
            other,
            &["drop", "limit"],
        )),
    }
}

/// Why a rule set with adaptive blocks could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("the rule set has no [adaptive] section, or it is not enabled")]
    NotConfigured,
    #[error("cannot add the block on UDP source port {port}: {message}")]
    Chain { port: u16, message: String },
}

/// `set` (as read from its file) with `blocks` as synthetic rules. Each is
/// placed right after the last file rule of action `pass` that can match
/// its port (or first, when none does): allow and deny still win (they come
/// before any rule), the file's pass rules for that port still decide first,
/// and its drop and limit rules after them come after the block.
pub fn with_blocks(set: &RuleSet, blocks: &[AdaptiveBlock]) -> Result<RuleSet, BlockError> {
    let a = set
        .adaptive
        .as_ref()
        .filter(|a| a.enabled)
        .ok_or(BlockError::NotConfigured)?;
    let mut out = set.clone();
    out.rules.retain(|r| !r.name.starts_with(ADAPTIVE_PREFIX));
    out.blocks = Vec::new();
    for b in blocks {
        let after = out
            .rules
            .iter()
            .rposition(|r| {
                r.proto == IPPROTO_UDP
                    && (r.src_ports.0..=r.src_ports.1).contains(&b.port)
                    && r.rule.action == filter_common::ACTION_PASS
                    && !r.name.starts_with(ADAPTIVE_PREFIX)
            })
            .map_or(0, |i| i + 1);
        out.rules.insert(after, synthetic_rule(a, b));
        out.blocks.push(*b);
    }
    if let Err(overflow) = compile_chains(&out) {
        let port = blocks.first().map_or(0, |b| b.port);
        return Err(BlockError::Chain {
            port,
            message: overflow.message,
        });
    }
    Ok(out)
}

fn synthetic_rule(a: &Adaptive, b: &AdaptiveBlock) -> RuleSpec {
    let name = b.rule_name();
    let mut rule = Rule {
        agg_interval_ns: a.agg_interval_ns,
        agg_tolerance_ns: a.agg_tolerance_ns,
        dst_port_hi: u16::MAX,
        len_hi: u16::MAX,
        action: a.action,
        limit: a.limit,
        // A block holds the port's flood, not the host's own answers on
        // it nor its service's clients: the reply guard tells them apart.
        flags: filter_common::RULE_SPARES_GUARDED,
        ..Rule::default()
    };
    let n = name.len().min(RULE_NAME_LEN - 1);
    rule.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    RuleSpec {
        name,
        proto: IPPROTO_UDP,
        src_ports: (b.port, b.port),
        rule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse as parse_rules;

    const FILE: &str = r#"
[limits.flood]
pps = 100

[adaptive]
min_pps = 5000
min_share = 0.5
min_rise = 20
learn = "5m"
hold = "30s"
never_block = [53]

[[rule]]
name = "game-replies"
protocol = "udp"
src_port = "30000-40000"
payload = { offset = 0, mask = "ff", value = "01" }
action = "pass"

[[rule]]
name = "high-ports"
protocol = "udp"
src_port = "30000-40000"
action = "limit"
limit = "flood"

[[rule]]
name = "ntp"
protocol = "udp"
src_port = 123
action = "drop"
"#;

    fn block(port: u16) -> AdaptiveBlock {
        AdaptiveBlock {
            port,
            since_unix: 1_800_000_000,
            trigger_pps: 90_000,
            trigger_share_percent: 90,
        }
    }

    #[test]
    fn parses_the_section_with_defaults() {
        let set = parse_rules("t.toml", FILE).unwrap();
        let a = set.adaptive.unwrap();
        assert_eq!((a.enabled, a.min_pps, a.min_share), (true, 5000, 0.5));
        assert_eq!((a.action, a.hold_ns), (ACTION_DROP, 30_000_000_000));
        assert_eq!(a.never_block, vec![53]);
        assert_eq!((a.min_rise, a.learn_ns), (20, 300_000_000_000));
        let plain = parse_rules(
            "t.toml",
            "[adaptive]\n[[rule]]\nname = \"x\"\nprotocol = \"udp\"\naction = \"drop\"\n",
        )
        .unwrap();
        let d = plain.adaptive.unwrap();
        assert_eq!(
            (d.min_pps, d.min_share),
            (DEFAULT_MIN_PPS, DEFAULT_MIN_SHARE)
        );
        assert_eq!(d.never_block, DEFAULT_NEVER_BLOCK.to_vec());
        assert_eq!(
            (d.min_rise, d.learn_ns),
            (DEFAULT_MIN_RISE, DEFAULT_LEARN_NS)
        );
        let none = parse_rules(
            "t.toml",
            "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\naction = \"drop\"\n",
        )
        .unwrap();
        assert!(none.adaptive.is_none());
    }

    #[test]
    fn refuses_bad_settings_at_their_place() {
        let cases = [
            ("min_share = 1.5", "min_share 1.5 out of range"),
            ("min_pps = 0", "min_pps 0 out of range"),
            (
                "min_rise = 1",
                "min_rise 1 out of range: allowed is 2 to 10000",
            ),
            ("min_rise = 2.5", "invalid type"),
            ("learn = \"500ms\"", "learn \"500ms\" out of range"),
            ("learn = \"2d\"", "learn \"2d\" out of range"),
            ("learn = \"often\"", ""),
            ("action = \"reject\"", "unknown adaptive action"),
            ("action = \"limit\"", "needs limit = \"NAME\""),
            (
                "action = \"limit\"\nlimit = \"nope\"",
                "no limit named \"nope\"",
            ),
            ("hold = \"soon\"", ""),
            ("never_block = [70000]", "never_block port 70000"),
            ("colour = 1", "unknown field"),
        ];
        for (line, needle) in cases {
            let text = format!(
                "[adaptive]\n{line}\n[[rule]]\nname = \"x\"\nprotocol = \"udp\"\naction = \"drop\"\n"
            );
            let e = parse_rules("t.toml", &text).expect_err(line);
            assert!(e.line >= 2 && e.line <= 3, "{line}: {e}");
            assert!(e.message.contains(needle), "{line}: {e}");
        }
        let reserved =
            "[[rule]]\nname = \"adaptive-udp-1\"\nprotocol = \"udp\"\naction = \"drop\"\n";
        let e = parse_rules("t.toml", reserved).expect_err("reserved name");
        assert!(e.message.contains("reserved"), "{e}");
    }

    #[test]
    fn blocks_go_after_the_pass_rules_of_their_port() {
        let set = parse_rules("t.toml", FILE).unwrap();
        let with = with_blocks(&set, &[block(33848), block(9999)]).unwrap();
        let names: Vec<&str> = with.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "adaptive-udp-9999",
                "game-replies",
                "adaptive-udp-33848",
                "high-ports",
                "ntp"
            ]
        );
        let b = &with.rules[2];
        assert_eq!(
            (b.proto, b.src_ports, b.rule.action),
            (IPPROTO_UDP, (33848, 33848), ACTION_DROP)
        );
        assert_eq!(with.blocks.len(), 2);
        assert_eq!(
            with.digest, set.digest,
            "the file's digest: blocks are not the file"
        );
        // Replacing the blocks drops the old synthetic rules.
        let again = with_blocks(&with, &[]).unwrap();
        assert_eq!(again.rules.len(), set.rules.len());
        assert!(again.blocks.is_empty());
    }

    #[test]
    fn limit_action_and_missing_section() {
        let text = FILE.replace(
            "hold = \"30s\"",
            "hold = \"30s\"\naction = \"limit\"\naggregate_pps = 1000",
        );
        let set = parse_rules("t.toml", &text).unwrap();
        let with = with_blocks(&set, &[block(7)]).unwrap();
        let r = &with.rules[0].rule;
        assert_eq!(
            (r.action, r.limit, r.agg_interval_ns),
            (ACTION_LIMIT, 0, 1_000_000)
        );
        let plain = parse_rules(
            "t.toml",
            "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\naction = \"drop\"\n",
        )
        .unwrap();
        assert!(matches!(
            with_blocks(&plain, &[block(7)]),
            Err(BlockError::NotConfigured)
        ));
    }
}
