//! Rule counters that only grow: every generation counts its rules in one
//! shared state map ([`MAP_RULE_STATS`]), each rule in the slot its name
//! had in the generation that ran before. A reload that reorders rules,
//! adds or lifts an adaptive block keeps every other rule's totals; a new
//! name gets a slot that the running generation does not count in, zeroed
//! before the switch.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, PerCpuValues},
};
use filter_common::{
    Counter, MAP_RULE_STATS, MAP_RULES, MAX_RULES, RULE_NAME_LEN, RULE_SLOTS, Rule,
};

use crate::state::{current_generation, pins::open_map_data};

/// What a rule of the running generation counted, by name.
pub(crate) struct Running {
    /// Its slot in the shared map; `None` for a build that counted each
    /// generation in a map of its own (then `counts` holds its totals).
    slots: HashMap<[u8; RULE_NAME_LEN], u16>,
    /// Per-rule totals of an older build's own map, carried over once.
    counts: HashMap<[u8; RULE_NAME_LEN], Counter>,
}

/// The rules of the generation running in `state_dir`, if any. `shared`:
/// whether the shared counter map exists there (this build's layout).
pub(crate) fn running(state_dir: Option<&Path>) -> anyhow::Result<Option<Running>> {
    let Some(dir) = state_dir else {
        return Ok(None);
    };
    let Ok(current) = current_generation(dir) else {
        return Ok(None);
    };
    let shared = dir.join(MAP_RULE_STATS).exists();
    let rules = open_map_data(&current.dir, MAP_RULES)?;
    let own: Option<PerCpuArray<MapData, Counter>> = if shared {
        None
    } else {
        Some(PerCpuArray::try_from(aya::maps::Map::PerCpuArray(
            open_map_data(&current.dir, MAP_RULE_STATS)
                .context("an older build's rule counters")?,
        ))?)
    };
    let mut out = Running {
        slots: HashMap::new(),
        counts: HashMap::new(),
    };
    let all = read_rules(&rules)?;
    for (i, rule) in (0u32..).zip(all) {
        if rule.name[0] == 0 {
            continue;
        }
        match &own {
            None => {
                out.slots.insert(rule.name, rule.counter_slot);
            }
            Some(stats) => {
                let total = stats
                    .get(&i, 0)?
                    .iter()
                    .fold(Counter::default(), |a, c| Counter {
                        packets: a.packets + c.packets,
                        bytes: a.bytes + c.bytes,
                    });
                out.counts.insert(rule.name, total);
            }
        }
    }
    Ok(Some(out))
}

/// Every slot of a RULES array, in one call where one each took 1,024 (50
/// ms of a reload).
fn read_rules(rules: &MapData) -> anyhow::Result<Vec<Rule>> {
    use std::os::fd::AsFd as _;
    const WORDS: usize = size_of::<Rule>() / 8;
    const _: () = assert!(size_of::<Rule>().is_multiple_of(8) && align_of::<Rule>() <= 8);
    let info = rules.info()?;
    if info.value_size() as usize != size_of::<Rule>() {
        anyhow::bail!(
            "the running RULES hold {}-byte values, not rules of {} bytes",
            info.value_size(),
            size_of::<Rule>()
        );
    }
    let n = (info.max_entries() as usize).min(MAX_RULES as usize);
    let mut words = vec![0u64; n * WORDS];
    // SAFETY: room for `n` values of the map's value size (a Rule).
    let got = unsafe { crate::sys::map_read_all(rules.fd().as_fd(), &mut words, n) }
        .context("cannot read the running rules")?;
    Ok(words
        .chunks_exact(WORDS)
        .take(got)
        .map(|w| {
            // SAFETY: a Rule's bytes as the kernel copied them: plain
            // integers and byte arrays, any bit pattern valid.
            unsafe { std::ptr::read_unaligned(w.as_ptr() as *const Rule) }
        })
        .collect())
}

/// Gives each of `rules` its counter slot: its name's slot in `running`,
/// else the lowest slot that neither generation counts in. Returns the
/// slots given anew, which [`prepare_counters`] zeroes.
pub(crate) fn assign(rules: &mut [Rule], running: Option<&Running>) -> Vec<u16> {
    let Some(r) = running.filter(|r| !r.slots.is_empty()) else {
        // A fresh load (or an older build's, whose totals are carried):
        // slot i for rule i, as compiled.
        return rules.iter().map(|r| r.counter_slot).collect();
    };
    let mut used: BTreeSet<u16> = r.slots.values().copied().collect();
    let mut fresh = Vec::new();
    for rule in rules.iter_mut() {
        if let Some(&slot) = r.slots.get(&rule.name) {
            rule.counter_slot = slot;
        } else {
            let slot = (0..RULE_SLOTS as u16)
                .find(|s| !used.contains(s))
                .expect("RULE_SLOTS is twice MAX_RULES");
            used.insert(slot);
            rule.counter_slot = slot;
            fresh.push(slot);
        }
    }
    fresh
}

/// Zeroes the slots given anew (a name lifted long ago may have left its
/// totals there) and writes an older build's totals into their rules'
/// slots, in the loaded object's shared counter map, before the switch.
pub(crate) fn prepare_counters(
    ebpf: &mut Ebpf,
    rules: &[Rule],
    fresh: &[u16],
    running: Option<&Running>,
) -> anyhow::Result<()> {
    let cpus = aya::util::nr_cpus()
        .map_err(|(what, e)| anyhow::anyhow!("cannot count CPUs: {what}: {e}"))?;
    let map = ebpf
        .map_mut(MAP_RULE_STATS)
        .ok_or_else(|| anyhow::anyhow!("map {MAP_RULE_STATS} missing from the eBPF object"))?;
    let mut stats: PerCpuArray<_, Counter> = PerCpuArray::try_from(map)?;
    let values = |first: Counter| {
        let mut v = vec![Counter::default(); cpus];
        v[0] = first;
        PerCpuValues::try_from(v).expect("one value per CPU")
    };
    for &slot in fresh {
        stats
            .set(slot as u32, values(Counter::default()), 0)
            .context("failed to zero a rule counter")?;
    }
    if let Some(r) = running {
        for rule in rules {
            if let Some(total) = r.counts.get(&rule.name) {
                stats
                    .set(rule.counter_slot as u32, values(*total), 0)
                    .context("failed to carry a rule counter over")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, slot: u16) -> Rule {
        let mut r = Rule {
            counter_slot: slot,
            ..Rule::default()
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r
    }

    #[test]
    fn names_keep_their_slots_and_new_names_take_free_ones() {
        let running = Running {
            slots: [(rule("a", 0).name, 0), (rule("b", 1).name, 1)].into(),
            counts: HashMap::new(),
        };
        // Reordered, one added before the others, one gone.
        let mut rules = vec![rule("new", 0), rule("b", 1)];
        let fresh = assign(&mut rules, Some(&running));
        assert_eq!(rules[1].counter_slot, 1);
        // Not 0: the running generation still counts "a" there.
        assert_eq!(rules[0].counter_slot, 2);
        assert_eq!(fresh, vec![2]);
        // A fresh load: as compiled.
        let mut rules = vec![rule("x", 0), rule("y", 1)];
        assert_eq!(assign(&mut rules, None), vec![0, 1]);
    }
}
