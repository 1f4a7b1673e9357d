//! The synthetic rules that carry the FlowSpec routes `serve` imports from
//! its speaker (`[upstream.import]`). Like the adaptive blocks they live
//! only in what runs: the rule file never holds them, and the RULESET
//! record lists them apart.

use filter_common::{
    ACTION_DROP, ACTION_LIMIT, ACTION_PASS, RULE_NAME_LEN, RULE_SPARES_GUARDED, Rule,
};

pub(crate) use super::set::{FLOWSPEC_PREFIX, FlowImport};
use super::{
    adaptive::{AdaptiveBlock, with_blocks},
    compile::{compile_chains, gcra_packets},
    set::{RuleSet, RuleSpec},
};

/// What `serve` adds to a file's rules and keeps through every reload:
/// adaptive blocks and imported FlowSpec routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Added {
    pub(crate) blocks: Vec<AdaptiveBlock>,
    pub(crate) imports: Vec<FlowImport>,
}

impl Added {
    pub(crate) fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.imports.is_empty()
    }
}

/// `set` with what `serve` added. A part that no longer fits (a file
/// without `[adaptive]`, or whose rules leave no room) is left out: serve
/// notices at its next step and logs it.
pub(crate) fn with_added(set: &RuleSet, added: &Added) -> RuleSet {
    let mut out = match with_blocks(set, &added.blocks) {
        Ok(with) if !added.blocks.is_empty() => with,
        _ => set.clone(),
    };
    if !added.imports.is_empty()
        && let Ok(with) = with_imports(&out, &added.imports)
    {
        out = with;
    }
    out
}

/// Why a rule set with imported routes could not be built.
#[derive(Debug, thiserror::Error)]
#[error("no room for the rule {name}: {message}")]
pub(crate) struct ImportRuleError {
    pub(crate) name: String,
    pub(crate) message: String,
}

/// `set` with `imports` as synthetic rules, in place of those it had. Each
/// goes right after the last file rule of action `pass` that can match its
/// traffic (or first, when none does), as the adaptive blocks do: allow and
/// deny still win, and so do the file's exceptions for that traffic.
pub(crate) fn with_imports(
    set: &RuleSet,
    imports: &[FlowImport],
) -> Result<RuleSet, ImportRuleError> {
    let mut out = set.clone();
    out.rules.retain(|r| !r.name.starts_with(FLOWSPEC_PREFIX));
    out.imports = Vec::new();
    for i in imports {
        let rule = import_rule(i);
        let after = out
            .rules
            .iter()
            .rposition(|r| r.rule.action == ACTION_PASS && r.overlaps(&rule))
            .map_or(0, |n| n + 1);
        out.rules.insert(after, rule);
        out.imports.push(i.clone());
    }
    if let Err(overflow) = compile_chains(&out) {
        return Err(ImportRuleError {
            name: imports.last().map_or_else(String::new, |i| i.name.clone()),
            message: overflow.message,
        });
    }
    Ok(out)
}

/// The rule of one imported route.
fn import_rule(i: &FlowImport) -> RuleSpec {
    let (action, (agg_interval_ns, agg_tolerance_ns)) = if i.limit_pps == 0 {
        (ACTION_DROP, (0, 0))
    } else {
        (ACTION_LIMIT, gcra_packets(i.limit_pps, None))
    };
    let mut rule = Rule {
        agg_interval_ns,
        agg_tolerance_ns,
        dst_port_lo: i.dst_ports.0,
        dst_port_hi: i.dst_ports.1,
        len_lo: i.payload_len.0,
        len_hi: i.payload_len.1,
        action,
        // A route from elsewhere does not know this host's own answers on
        // a guarded port: the reply guard tells them apart, as it does for
        // the adaptive blocks.
        flags: RULE_SPARES_GUARDED,
        ..Rule::default()
    };
    let n = i.name.len().min(RULE_NAME_LEN - 1);
    rule.name[..n].copy_from_slice(&i.name.as_bytes()[..n]);
    RuleSpec {
        name: i.name.clone(),
        proto: i.proto,
        src_ports: i.src_ports,
        rule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{adaptive, parse};
    use filter_common::IPPROTO_UDP;

    const FILE: &str = r#"
[adaptive]

[[rule]]
name = "ike-ok"
protocol = "udp"
src_port = 4500
dst_port = 4500
action = "pass"

[[rule]]
name = "ntp"
protocol = "udp"
src_port = 123
action = "drop"
"#;

    fn import(port: u16, limit_pps: u64) -> FlowImport {
        FlowImport {
            name: format!("flowspec-udp-s{port}"),
            route: String::new(),
            peer: "198.51.100.1".into(),
            proto: IPPROTO_UDP,
            src_ports: (port, port),
            dst_ports: (0, 65535),
            payload_len: (0, 65535),
            limit_pps,
        }
    }

    #[test]
    fn imports_follow_the_pass_rules_of_their_traffic_and_replace_each_other() {
        let set = parse("t.toml", FILE).unwrap();
        let with = with_imports(&set, &[import(4500, 0), import(9999, 1000)]).unwrap();
        let names: Vec<&str> = with.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["flowspec-udp-s9999", "ike-ok", "flowspec-udp-s4500", "ntp"]
        );
        assert_eq!(with.rules[2].rule.action, ACTION_DROP);
        let limit = &with.rules[0].rule;
        assert_eq!(
            (limit.action, limit.agg_interval_ns),
            (ACTION_LIMIT, 1_000_000)
        );
        assert_eq!(with.digest, set.digest, "imports are not the file");
        // With adaptive blocks, either way round: each keeps the other's.
        let block = adaptive::AdaptiveBlock {
            port: 1900,
            since_unix: 1,
            trigger_pps: 1,
            trigger_share_percent: 90,
        };
        let both = adaptive::with_blocks(&with, &[block]).unwrap();
        assert_eq!((both.imports.len(), both.blocks.len()), (2, 1));
        let again = with_imports(&both, &[import(53, 0)]).unwrap();
        assert_eq!((again.imports.len(), again.blocks.len()), (1, 1));
        assert_eq!(again.rules.len(), set.rules.len() + 2);
    }

    #[test]
    fn file_rules_may_not_take_the_prefix() {
        let text = "[[rule]]\nname = \"flowspec-x\"\nprotocol = \"udp\"\naction = \"drop\"\n";
        let e = parse("t.toml", text).expect_err("reserved name");
        assert!(
            e.message.contains("reserved for the FlowSpec routes"),
            "{e}"
        );
    }
}
