//! The one way the filter's object gets into the kernel: loaded with a rule
//! set in its maps (and the state maps of a running filter, when there is
//! one), its programs verified, attached nowhere. `load` and `reload`
//! attach it, a reload's seeder runs in it (guard::open_ports), `doctor`
//! tries it, and the simulator runs frames through it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, Map,
        lpm_trie::{Key, LpmTrie},
    },
    programs::Program,
};
use filter_common::{
    BAN_WIDE, CONFIG_MONITOR, Config, DOOR_BUDGET, DOOR_MIN_SLOTS, DOOR_SLOTS, DoorSlot, FAMILY_V4,
    FRAG_CACHE_BUDGET, FRAG_CACHE_MIN_SLOTS, FRAG_CACHE_SLOTS, GLOBAL_CONFIG, GLOBAL_DOOR_MASK,
    GLOBAL_FRAG_CACHE_MASK, GLOBAL_GUARD_PORTS, GuardPort, MAP_ALLOW_V6, MAP_BAN_FLAG,
    MAP_BAN_HINTS, MAP_CHAINS, MAP_CONFIG, MAP_COUNTERS, MAP_DENY_V6, MAP_DOOR, MAP_FRAG_CACHE,
    MAP_GUARD_BUDGETS, MAP_LIMITS, MAP_PORT_CHAINS, MAP_RULES, MAP_RULESET, MAP_SOURCE_TAGS,
    MAP_SOURCES, MAP_SRC_HINTS, MAP_V4_FINE, MAP_V4_LISTS, MAP_V4_PREFIXES, MAP_V4_RANK,
    PROGRAM_NAME, REQUESTS_PROGRAM_NAME, RULESET_CHUNK, STATE_MAPS, source_slots,
};

use super::{flags, request_table, rule_slots};
use crate::{
    EBPF_OBJECT,
    filter::observe::{counters, memory::Entries},
    rules::{Compiled, Prefix, RuleSet},
    state::record::Canonical,
};

/// Loads the embedded object into the kernel with `set` in its rule maps
/// and its programs verified, but attached nowhere. `state_dir`: the
/// folder of a running filter whose state maps it shares, but for those
/// in `remade` (see `state_maps`); none for a copy with maps of its own.
pub fn prepare(set: &RuleSet, state_dir: Option<&Path>, remade: &[&str]) -> anyhow::Result<Ebpf> {
    prepare_object(EBPF_OBJECT, set, state_dir, remade, 0)
}

/// [`prepare`] with another build's object (`cargo xtask bench --against`
/// measures one against the other); its maps and globals must be this
/// build's. `test_flags` are settings for test runs only, such as
/// [`filter_common::CONFIG_VIRTUAL_CLOCK`].
pub(crate) fn prepare_object(
    object: &[u8],
    set: &RuleSet,
    state_dir: Option<&Path>,
    remade: &[&str],
    test_flags: u32,
) -> anyhow::Result<Ebpf> {
    let mut compiled = set.compile();
    // Before the load, which makes the shared counter map where an older
    // build had none.
    // A reload that cannot read them still reloads: the rules then count
    // as after a fresh load, which it says.
    let running = rule_slots::running(state_dir).unwrap_or_else(|e| {
        log::warn!("rule counters start anew: cannot read the running generation's: {e:#}");
        None
    });
    let fresh = rule_slots::assign(&mut compiled.rules, running.as_ref());
    let mut loader = EbpfLoader::new();
    let cpus = counters::possible_cpus()?;
    for (name, entries) in load_sizes(set, &compiled) {
        loader.map_max_entries(name, entries.at(cpus));
    }
    // Their masks, as the program indexes them (not required: an older
    // build's object, which the bench loads, has neither).
    let door_mask = DOOR_ENTRIES.at(cpus) - 1;
    let frag_mask = FRAG_CACHE_ENTRIES.at(cpus) - 1;
    loader.override_global(GLOBAL_DOOR_MASK, &door_mask, false);
    loader.override_global(GLOBAL_FRAG_CACHE_MASK, &frag_mask, false);
    // What the program runs on; monitor mode apart, which `mode` rewrites.
    let loaded = Config {
        flags: (compiled.config.flags & !CONFIG_MONITOR) | test_flags,
        ..compiled.config
    };
    loader.override_global(GLOBAL_CONFIG, &loaded, true);
    // Empty while the reply guard is off: the program's zeros stay.
    if !compiled.guard_table.is_empty() {
        loader.override_global(GLOBAL_GUARD_PORTS, compiled.guard_table.as_slice(), true);
    }
    // State maps come from the pins of the running generation when there is
    // one (and are pinned there when there is not); those that can't carry
    // over are made anew and pinned after the switch.
    let state_pins: Vec<(&str, PathBuf)> = state_dir
        .map(|d| {
            STATE_MAPS
                .iter()
                .filter(|n| !remade.contains(n))
                .map(|n| (*n, d.join(n)))
                .collect()
        })
        .unwrap_or_default();
    for (name, path) in &state_pins {
        loader.map_pin_path(name, path.as_path());
    }
    let hints_missing = state_dir.is_some_and(|d| !d.join(MAP_BAN_HINTS).exists());
    let mut ebpf = loader
        .load(object)
        .context("failed to load the eBPF object into the kernel")?;
    let bans = ban_flag_at_load(&mut ebpf, hints_missing)?;
    // Whether another interface records into the request table it shares.
    let shared = state_dir.map_or(0, request_table::flag);
    flags::seed(
        &mut ebpf,
        compiled.config.flags & CONFIG_MONITOR,
        bans,
        shared,
    )?;
    write_rules(&mut ebpf, &compiled)?;
    rule_slots::prepare_counters(&mut ebpf, &compiled.rules, &fresh, running.as_ref())?;
    // IPv4 sources are looked up in the lists' own form (write_v4_lists);
    // only IPv6 ones in tries.
    write_prefixes(&mut ebpf, MAP_ALLOW_V6, &set.allow)?;
    write_prefixes(&mut ebpf, MAP_DENY_V6, &set.deny)?;
    write_v4_lists(&mut ebpf, &compiled.v4_lists)?;
    write_record(&mut ebpf, set)?;
    verify(&mut ebpf, PROGRAM_NAME, "the XDP program")?;
    verify(&mut ebpf, REQUESTS_PROGRAM_NAME, "the egress program")?;
    Ok(ebpf)
}

/// DOOR's slots per CPU.
const DOOR_ENTRIES: Entries = Entries::PerCpuSlots {
    value_size: size_of::<DoorSlot>() as u32,
    budget: DOOR_BUDGET,
    min: DOOR_MIN_SLOTS,
    max: DOOR_SLOTS,
};
/// FRAG_CACHE's (48-byte slots).
const FRAG_CACHE_ENTRIES: Entries = Entries::PerCpuSlots {
    value_size: 48,
    budget: FRAG_CACHE_BUDGET,
    min: FRAG_CACHE_MIN_SLOTS,
    max: FRAG_CACHE_SLOTS,
};

/// The max_entries the loader gives maps of the object over their own, for
/// `set` (compiled as `compiled`); what `status --memory` and the bench
/// size the maps with, too.
pub fn load_sizes(set: &RuleSet, compiled: &Compiled) -> Vec<(&'static str, Entries)> {
    let slots = source_slots(set.table_size);
    let mut sizes = vec![
        (MAP_SOURCES, Entries::Fixed(slots)),
        (MAP_SOURCE_TAGS, Entries::Fixed(slots / 2)),
        (MAP_COUNTERS, counters::BLOCKS),
        (MAP_DOOR, DOOR_ENTRIES),
        (MAP_FRAG_CACHE, FRAG_CACHE_ENTRIES),
    ];
    // 2.2 MB of hints only for lists (one word reads as "look" while CONFIG
    // says there is no list to look in); IPv4 sources are not hinted, but
    // an IPv6 source must read a clear bit while only IPv4 is listed.
    if set.allow.is_empty() && set.deny.is_empty() {
        sizes.push((MAP_SRC_HINTS, Entries::Fixed(1)));
    }
    // The IPv4 lists: 4 MB of states only when an IPv4 prefix is listed;
    // the bitmaps of the /24s listed in part, as many as there are.
    if compiled.v4_lists.words.is_empty() {
        sizes.push((MAP_V4_LISTS, Entries::Fixed(1)));
        sizes.push((MAP_V4_RANK, Entries::Fixed(1)));
    }
    let fine = compiled.v4_lists.fine.len().max(1);
    sizes.push((MAP_V4_FINE, Entries::Fixed(fine as u32)));
    let listed = compiled.v4_lists.prefixes.len().max(1);
    sizes.push((MAP_V4_PREFIXES, Entries::Fixed(listed as u32)));
    sizes
}

/// Loads program `name` of `ebpf` (`what` it is, for the message) into
/// the kernel: the verifier's turn. Every program filterctl runs is loaded
/// here, the reload's seeder too.
pub(crate) fn verify(ebpf: &mut Ebpf, name: &str, what: &str) -> anyhow::Result<()> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?;
    match program {
        Program::Xdp(p) => p.load(),
        Program::SchedClassifier(p) => p.load(),
        other => bail!(
            "program {name} is of type {:?}, which filterctl does not load",
            other.prog_type()
        ),
    }
    .with_context(|| format!("the kernel verifier rejected {what}"))
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
}

/// The ban flag as the new generation starts with it. Bans set before
/// BAN_HINTS existed (`hints_missing`) have no hints: they are marked too
/// wide for hints, which turns the early verdict off while bans exist, as
/// it was.
fn ban_flag_at_load(ebpf: &mut Ebpf, hints_missing: bool) -> anyhow::Result<u32> {
    let mut flag: Array<_, u32> = Array::try_from(map_mut(ebpf, MAP_BAN_FLAG)?)?;
    let bans = flag.get(&0, 0).context("failed to read BAN_FLAG")?;
    if !hints_missing || bans == 0 {
        return Ok(bans);
    }
    flag.set(0, bans | BAN_WIDE, 0)
        .context("failed to write BAN_FLAG")?;
    Ok(bans | BAN_WIDE)
}

/// Writes the compiled rule set into a freshly loaded program's maps.
fn write_rules(ebpf: &mut Ebpf, c: &Compiled) -> anyhow::Result<()> {
    // One call per map, where an element each took one: 3,000 calls and
    // ~150 ms of a reload of 1,000 rules.
    write_array(ebpf, MAP_RULES, c.rules.iter().copied().enumerate())?;
    write_array(ebpf, MAP_CHAINS, c.chains.iter().copied().enumerate())?;
    write_array(
        ebpf,
        MAP_PORT_CHAINS,
        c.port_chains
            .iter()
            .map(|&(slot, chain)| (slot as usize, chain)),
    )?;
    write_array(ebpf, MAP_LIMITS, c.limits.iter().copied().enumerate())?;
    let mut budgets: HashMap<_, u32, GuardPort> =
        HashMap::try_from(map_mut(ebpf, MAP_GUARD_BUDGETS)?)?;
    for (port, b) in &c.guard_ports {
        budgets
            .insert(*port as u32, b, 0)
            .context("failed to write GUARD_BUDGETS")?;
    }
    write_array(
        ebpf,
        MAP_SRC_HINTS,
        c.hint_words.iter().map(|&(i, w)| (i as usize, w)),
    )?;
    let mut config: Array<_, Config> = Array::try_from(map_mut(ebpf, MAP_CONFIG)?)?;
    config
        .set(0, c.config, 0)
        .context("failed to write CONFIG")?;
    Ok(())
}

/// Writes `entries` (index, value) into the array `name` in one call.
fn write_array<T: Copy>(
    ebpf: &mut Ebpf,
    name: &str,
    entries: impl Iterator<Item = (usize, T)>,
) -> anyhow::Result<()> {
    use std::os::fd::AsFd as _;
    let (keys, values): (Vec<u32>, Vec<T>) = entries.map(|(i, v)| (i as u32, v)).unzip();
    let Map::Array(array) = map_mut(ebpf, name)? else {
        bail!("{name} is not an array");
    };
    crate::sys::map_update_batch(array.fd().as_fd(), &keys, &values)
        .with_context(|| format!("failed to write {name}"))
}

/// Fills the IPv4 lists' maps through their mappings: 6 MB of states and
/// ranks, and the bitmaps, in three copies.
fn write_v4_lists(ebpf: &mut Ebpf, l: &crate::rules::v4lists::V4Lists) -> anyhow::Result<()> {
    use std::os::fd::AsFd as _;
    // An older build's object (`bench --against`) has none of these maps:
    // nothing to write while no IPv4 prefix is listed.
    if l.words.is_empty() && ebpf.map(MAP_V4_LISTS).is_none() {
        return Ok(());
    }
    fn write<T: Copy>(ebpf: &mut Ebpf, name: &str, values: &[T]) -> anyhow::Result<()> {
        let Map::Array(array) = map_mut(ebpf, name)? else {
            bail!("{name} is not an array");
        };
        crate::sys::write_mapped(array.fd().as_fd(), values)
            .with_context(|| format!("failed to write {name}"))
    }
    write(ebpf, MAP_V4_LISTS, &l.words)?;
    write(ebpf, MAP_V4_PREFIXES, &l.prefixes)?;
    // Two u32 ranks a value, as the program reads them.
    let ranks: Vec<u64> = l
        .ranks
        .chunks(2)
        .map(|c| u64::from(c[0]) | u64::from(c.get(1).copied().unwrap_or(0)) << 32)
        .collect();
    write(ebpf, MAP_V4_RANK, &ranks)?;
    let fine: Vec<filter_common::v4lists::FineV4> = l.fine.iter().map(|(_, f)| *f).collect();
    write(ebpf, MAP_V4_FINE, &fine)
}

/// Fills an allow or deny pair of tries.
fn write_prefixes(ebpf: &mut Ebpf, v6: &str, list: &[Prefix]) -> anyhow::Result<()> {
    let mut t6: LpmTrie<_, [u8; 16], u8> = LpmTrie::try_from(map_mut(ebpf, v6)?)?;
    for p in list.iter().filter(|p| p.family != FAMILY_V4) {
        t6.insert(&Key::new(p.len as u32, p.addr), 1, 0)
            .with_context(|| format!("failed to add {p} to {v6}"))?;
    }
    Ok(())
}

/// The rule set in canonical form into RULESET, for `diff`.
fn write_record(ebpf: &mut Ebpf, set: &RuleSet) -> anyhow::Result<()> {
    let mut record: Array<_, [u8; RULESET_CHUNK]> = Array::try_from(map_mut(ebpf, MAP_RULESET)?)?;
    for (i, chunk) in Canonical::of(set).to_chunks()?.iter().enumerate() {
        record
            .set(i as u32, chunk, 0)
            .context("failed to write RULESET")?;
    }
    Ok(())
}
