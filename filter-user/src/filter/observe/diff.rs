//! `filterctl diff`: what a reload would change, as a plan. The running rule
//! set is read back from the pins (its canonical form in the RULESET map,
//! its prefix lists from the tries), not from whatever file it came from.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use aya::maps::{
    Array,
    lpm_trie::{Key, LpmTrie},
};
use filter_common::{
    FAMILY_V4, FAMILY_V6, MAP_ALLOW_V4, MAP_ALLOW_V6, MAP_DENY_V4, MAP_DENY_V6, MAP_V4_PREFIXES,
    V4_PREFIX_ALLOW, V4_PREFIX_DENY,
};
use serde::Serialize;

use crate::{
    rules::{Prefix, RuleSet, adaptive::AdaptiveBlock, v4lists},
    state::{
        PinRoot, current_generation,
        pins::open_map,
        record::{Canonical, read_record},
    },
};

/// A field that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Change {
    pub(crate) name: String,
    pub(crate) old: String,
    pub(crate) new: String,
}

/// A rule present before and after whose fields change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RuleChange {
    pub(crate) rule: String,
    fields: Vec<Change>,
}

fn change(name: &str, old: Option<&String>, new: Option<&String>) -> Change {
    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(none)".into());
    Change {
        name: name.to_string(),
        old: show(old),
        new: show(new),
    }
}

/// What a reload would change.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Plan {
    pub(crate) settings: Vec<Change>,
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) changed: Vec<RuleChange>,
    /// Rules present in both whose relative order changed (first match
    /// decides, so order is behaviour).
    reordered: bool,
    allow_added: Vec<String>,
    allow_removed: Vec<String>,
    deny_added: Vec<String>,
    deny_removed: Vec<String>,
    /// Adaptive blocks that run: `serve` keeps them through its reloads
    /// (they are not in any file, so they are neither added nor removed).
    pub(crate) adaptive: Vec<AdaptiveBlock>,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.settings.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.reordered
            && self.allow_added.is_empty()
            && self.allow_removed.is_empty()
            && self.deny_added.is_empty()
            && self.deny_removed.is_empty()
    }

    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        for c in &self.settings {
            let _ = writeln!(o, "~ {}: {} -> {}", c.name, c.old, c.new);
        }
        for n in &self.removed {
            let _ = writeln!(o, "- rule {n}");
        }
        for n in &self.added {
            let _ = writeln!(o, "+ rule {n}");
        }
        for r in &self.changed {
            for c in &r.fields {
                let _ = writeln!(o, "~ rule {}: {} {} -> {}", r.rule, c.name, c.old, c.new);
            }
        }
        if self.reordered {
            let _ = writeln!(o, "~ rule order changed (the first matching rule decides)");
        }
        for (sign, what, list) in [
            ("-", "allow", &self.allow_removed),
            ("+", "allow", &self.allow_added),
            ("-", "deny", &self.deny_removed),
            ("+", "deny", &self.deny_added),
        ] {
            for p in list.iter().take(50) {
                let _ = writeln!(o, "{sign} {what} {p}");
            }
            if list.len() > 50 {
                let _ = writeln!(o, "{sign} {what} ... and {} more", list.len() - 50);
            }
        }
        if self.is_empty() {
            o.push_str("no changes\n");
        }
        for b in &self.adaptive {
            let _ = writeln!(
                o,
                "= adaptive block {} (UDP source port {} since {}, by serve's surge detection; kept by serve's reloads, not in the file)",
                b.rule_name(),
                b.port,
                b.since_unix
            );
        }
        o
    }
}

pub(crate) fn compare(old: &Canonical, new: &Canonical) -> Plan {
    let mut plan = Plan::default();
    let keys: BTreeSet<&String> = old.settings.keys().chain(new.settings.keys()).collect();
    for k in keys {
        let (a, b) = (old.settings.get(k), new.settings.get(k));
        if a != b {
            plan.settings.push(change(k, a, b));
        }
    }
    plan.adaptive = old.adaptive_blocks.clone();
    let old_rules: BTreeMap<&String, &BTreeMap<String, String>> =
        old.file_rules().map(|(n, f)| (n, f)).collect();
    let new_rules: BTreeMap<&String, &BTreeMap<String, String>> =
        new.file_rules().map(|(n, f)| (n, f)).collect();
    for (n, f) in new.file_rules() {
        match old_rules.get(n) {
            None => plan.added.push(n.clone()),
            Some(of) => {
                let fields: BTreeSet<&String> = of.keys().chain(f.keys()).collect();
                let diffs: Vec<_> = fields
                    .into_iter()
                    .filter(|k| of.get(*k) != f.get(*k))
                    .map(|k| change(k, of.get(k), f.get(k)))
                    .collect();
                if !diffs.is_empty() {
                    plan.changed.push(RuleChange {
                        rule: n.clone(),
                        fields: diffs,
                    });
                }
            }
        }
    }
    for (n, _) in old.file_rules() {
        if !new_rules.contains_key(n) {
            plan.removed.push(n.clone());
        }
    }
    let common_old: Vec<&String> = old
        .file_rules()
        .map(|(n, _)| n)
        .filter(|n| new_rules.contains_key(n))
        .collect();
    let common_new: Vec<&String> = new
        .file_rules()
        .map(|(n, _)| n)
        .filter(|n| old_rules.contains_key(n))
        .collect();
    plan.reordered = common_old != common_new;
    plan
}

/// The running generation's prefixes of one list: IPv4 ones as listed in
/// [`MAP_V4_PREFIXES`] (an older build's generation: in the IPv4 trie),
/// IPv6 ones in their trie.
fn read_trie(
    dir: &std::path::Path,
    v4: &str,
    v6: &str,
    list: u64,
) -> anyhow::Result<BTreeSet<Prefix>> {
    let mut out = BTreeSet::new();
    if dir.join(MAP_V4_PREFIXES).exists() {
        let packed: Array<_, u64> = Array::try_from(open_map(dir, MAP_V4_PREFIXES)?)?;
        let values = packed.iter().collect::<Result<Vec<u64>, _>>()?;
        // A list-less generation's one value is 0: no list, no prefix.
        out.extend(v4lists::unpack(values.into_iter(), list));
    } else {
        read_v4_trie(dir, v4, &mut out)?;
    }
    read_v6_trie(dir, v6, &mut out)?;
    Ok(out)
}

fn read_v4_trie(dir: &std::path::Path, v4: &str, out: &mut BTreeSet<Prefix>) -> anyhow::Result<()> {
    let t4: LpmTrie<_, [u8; 4], u8> = LpmTrie::try_from(open_map(dir, v4)?)?;
    for k in t4.keys() {
        let k: Key<[u8; 4]> = k?;
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&k.data());
        out.insert(Prefix {
            family: FAMILY_V4,
            addr,
            len: k.prefix_len() as u8,
        });
    }
    Ok(())
}

fn read_v6_trie(dir: &std::path::Path, v6: &str, out: &mut BTreeSet<Prefix>) -> anyhow::Result<()> {
    let t6: LpmTrie<_, [u8; 16], u8> = LpmTrie::try_from(open_map(dir, v6)?)?;
    for k in t6.keys() {
        let k: Key<[u8; 16]> = k?;
        out.insert(Prefix {
            family: FAMILY_V6,
            addr: k.data(),
            len: k.prefix_len() as u8,
        });
    }
    Ok(())
}

fn list_diff(old: &BTreeSet<Prefix>, new: &[Prefix]) -> (Vec<String>, Vec<String>) {
    let new: BTreeSet<Prefix> = new.iter().copied().collect();
    (
        new.difference(old).map(|p| p.to_string()).collect(),
        old.difference(&new).map(|p| p.to_string()).collect(),
    )
}

/// The plan for reloading `iface` with `set`.
pub(crate) fn plan(root: &PinRoot, iface: &str, set: &RuleSet) -> anyhow::Result<Plan> {
    let current = current_generation(&root.iface_dir(iface))
        .with_context(|| format!("no filter running on {iface}"))?;
    let old = read_record(&current.dir)?;
    let mut plan = compare(&old, &Canonical::of(set));
    (plan.allow_added, plan.allow_removed) = list_diff(
        &read_trie(&current.dir, MAP_ALLOW_V4, MAP_ALLOW_V6, V4_PREFIX_ALLOW)?,
        &set.allow,
    );
    (plan.deny_added, plan.deny_removed) = list_diff(
        &read_trie(&current.dir, MAP_DENY_V4, MAP_DENY_V6, V4_PREFIX_DENY)?,
        &set.deny,
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse;

    const A: &str = "mode = \"enforce\"\n[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n[[rule]]\nname = \"ssdp\"\nprotocol = \"udp\"\nsrc_port = 1900\naction = \"drop\"\n";

    #[test]
    fn plan_names_every_kind_of_change() {
        let old = Canonical::of(&parse("a.toml", A).unwrap());
        let b = A.replace("enforce", "monitor").replace(
            "src_port = 1900\naction = \"drop\"",
            "src_port = 1900\naction = \"pass\"",
        ) + "[[rule]]\nname = \"dns\"\nprotocol = \"udp\"\nsrc_port = 53\naction = \"drop\"\n";
        let b = b.replace("name = \"ntp\"", "name = \"ntp2\"");
        let plan = compare(&old, &Canonical::of(&parse("b.toml", &b).unwrap()));
        let mode = "monitor".to_string();
        assert_eq!(
            plan.settings,
            vec![change("mode", Some(&"enforce".into()), Some(&mode))]
        );
        assert_eq!(plan.added, vec!["ntp2".to_string(), "dns".to_string()]);
        assert_eq!(plan.removed, vec!["ntp".to_string()]);
        assert_eq!(
            plan.changed,
            vec![RuleChange {
                rule: "ssdp".into(),
                fields: vec![change("action", Some(&"drop".into()), Some(&"pass".into()))]
            }]
        );
        let text = plan.render();
        assert!(text.contains("~ rule ssdp: action drop -> pass"), "{text}");
        assert!(text.contains("+ rule dns"), "{text}");
        assert!(text.contains("- rule ntp\n"), "{text}");
        let same = compare(&old, &old);
        assert!(same.is_empty());
        assert_eq!(same.render(), "no changes\n");
    }

    #[test]
    fn adaptive_blocks_are_shown_as_such_not_as_removed_rules() {
        let file = format!("{A}[adaptive]\n");
        let set = parse("a.toml", &file).unwrap();
        let block = AdaptiveBlock {
            port: 33848,
            since_unix: 1_800_000_000,
            trigger_pps: 50_000,
            trigger_share_percent: 90,
        };
        let running = crate::rules::adaptive::with_blocks(&set, &[block]).unwrap();
        let plan = compare(&Canonical::of(&running), &Canonical::of(&set));
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.adaptive, vec![block]);
        let text = plan.render();
        assert!(text.contains("no changes\n"), "{text}");
        assert!(
            text.contains("= adaptive block adaptive-udp-33848 (UDP source port 33848"),
            "{text}"
        );
    }

    #[test]
    fn order_is_behaviour() {
        let a = parse("a.toml", A).unwrap();
        let swapped = "[[rule]]\nname = \"ssdp\"\nprotocol = \"udp\"\nsrc_port = 1900\naction = \"drop\"\n[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n";
        let plan = compare(
            &Canonical::of(&a),
            &Canonical::of(&parse("b.toml", swapped).unwrap()),
        );
        assert!(plan.reordered);
    }
}
