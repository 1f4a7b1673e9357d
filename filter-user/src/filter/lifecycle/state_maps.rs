//! The state maps across a reload (counters, limiter, bans, open requests:
//! [`STATE_MAPS`]): the new generation shares the running one's through
//! their pins, but for those whose shape changed (another limiter table
//! size, another CPU count, an older build's layout). Those are made anew
//! and pinned after the switch, and the counters' totals are carried into
//! the new array, so that no counter goes down.

use std::{os::fd::AsFd as _, path::Path};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray},
};
use filter_common::{
    Counter, CpuCounters, GUARD_LEN_BUCKETS, GUARD_SLOTS, MAP_BAN_HINTS, MAP_COUNTERS,
    MAP_RULE_STATS, MAP_SOURCE_TAGS, MAP_SOURCES, OLDER_STATS, OLDER_UDP_PORTS, STATE_MAPS,
    STATS_SLOTS, SourceSlot, UDP_PORTS, source_slots,
};

use crate::{
    filter::observe::counters::{self, sum_per_cpu},
    rules::RuleSet,
    state::pins::{self, open_map},
    sys::SharedMapping,
};

/// How a reload treats the state maps.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReloadOptions {
    /// Accept state maps whose pins are missing: they start empty (counters
    /// at zero, no bans). Without it such a reload fails.
    pub(crate) reset_state: bool,
}

/// Checks the state pins of a running filter before a reload: a missing
/// one would silently start empty. Returns the state maps whose pins can't
/// carry over and are made anew (see [`remade_state_maps`]).
pub(crate) fn plan(
    dir: &Path,
    set: &RuleSet,
    opts: ReloadOptions,
) -> anyhow::Result<Vec<&'static str>> {
    let remade = remade_state_maps(dir, set)?;
    // BAN_HINTS came later than the rest: a generation of an older build
    // has none, and it is made then (see program::prepare); so did
    // SOURCE_TAGS, made with the limiter table it goes with, and the shared
    // rule counters (an older build kept them per generation; see
    // rule_slots).
    let missing: Vec<&str> = STATE_MAPS
        .iter()
        .copied()
        .filter(|n| {
            *n != MAP_BAN_HINTS
                && *n != MAP_RULE_STATS
                && !dir.join(n).exists()
                && !remade.contains(n)
        })
        .collect();
    if !missing.is_empty() && !opts.reset_state {
        bail!(
            "state maps {} are missing from {} (deleted by hand?): a reload would start them empty (counters, bans, limiter state); use --reset-state to accept that",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(remade)
}

/// The state maps whose pins can't carry over, because their shape is
/// fixed when a map is made: the limiter table (and its tags) of another
/// size or of an older build's kind (an LRU hash), and the counters of
/// another CPU count or of an older build (which kept them in maps of
/// other names; their totals carry over after the switch). They start
/// anew and are pinned after the switch.
fn remade_state_maps(dir: &Path, set: &RuleSet) -> anyhow::Result<Vec<&'static str>> {
    let mut remade = Vec::new();
    let slots = source_slots(set.table_size);
    if !pin_fits(dir, MAP_SOURCES, size_of::<SourceSlot>(), slots)?
        || !pin_fits(dir, MAP_SOURCE_TAGS, size_of::<u32>(), slots / 2)?
        || (dir.join(MAP_SOURCES).exists() && !dir.join(MAP_SOURCE_TAGS).exists())
    {
        remade.extend([MAP_SOURCES, MAP_SOURCE_TAGS]);
    }
    // An older build kept its counters in other maps (see adopt_older), or
    // another CPU count its blocks.
    if (!dir.join(MAP_COUNTERS).exists() && dir.join(OLDER_STATS).exists())
        || !pin_fits(
            dir,
            MAP_COUNTERS,
            size_of::<CpuCounters>(),
            counters::blocks()?,
        )?
    {
        remade.push(MAP_COUNTERS);
    }
    Ok(remade)
}

/// Whether the array pinned as `name` (if any) has this value size and
/// number of entries: what the loader makes otherwise.
fn pin_fits(dir: &Path, name: &str, value_size: usize, max_entries: u32) -> anyhow::Result<bool> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(true);
    }
    let info = pins::open_map_at(&path)?
        .info()
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(matches!(info.map_type(), Ok(aya::maps::MapType::Array))
        && info.value_size() as usize == value_size
        && info.max_entries() == max_entries)
}

/// After the switch: the state maps made anew (`remade`, from [`plan`])
/// take the place of the old ones' pins, and the counters' totals of an
/// older array or an older build's maps carry over into the new array.
pub(crate) fn after_switch(ebpf: &Ebpf, dir: &Path, remade: &[&str]) -> anyhow::Result<()> {
    repin_remade(ebpf, dir, remade)?;
    adopt_older(dir)
}

/// Pins the state maps made anew in place of the old ones.
fn repin_remade(ebpf: &Ebpf, dir: &Path, remade: &[&str]) -> anyhow::Result<()> {
    for name in remade {
        let path = dir.join(name);
        let map = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
        if path.exists() {
            if *name == MAP_COUNTERS {
                // Counters only grow, across upgrades too.
                let old = pins::open_map_at(&path)?;
                if let aya::maps::Map::Array(new) = map {
                    carry_over(&old, new)?;
                }
            }
            pins::remove_pin(&path)?;
        }
        pins::pin_map(map, &path).with_context(|| format!("cannot pin the new {name}"))?;
    }
    Ok(())
}

/// When a reload makes the counter array anew (another CPU count, or an
/// older build whose blocks held fewer reasons): the old array's totals,
/// summed over its blocks whatever their layout, become the new array's
/// block that no CPU writes, so that no counter goes down. Reasons only
/// ever get added at the end; the old monitor slot moves to the new one.
/// u64s of a block's guard length counters.
const GUARD_WORDS: usize = 2 * 2 * GUARD_LEN_BUCKETS * GUARD_SLOTS;

fn carry_over(old: &MapData, new: &MapData) -> anyhow::Result<()> {
    let info = old.info()?;
    let value = info.value_size() as usize;
    let count = info.max_entries() as usize;
    let words = value / 8;
    if !value.is_multiple_of(8) || words < UDP_PORTS + 2 || count == 0 {
        bail!("the old counter array has blocks of {value} bytes: not a counter array");
    }
    // This build's blocks end with the guard length counters; older ones
    // ended with the port counters.
    let with_guard = words == CpuCounters::WORDS;
    let tail = UDP_PORTS + if with_guard { GUARD_WORDS } else { 0 };
    let slots = (words - tail) / 2;
    let mapping = SharedMapping::new(old.fd().as_fd(), count * value)
        .context("cannot mmap the old counter array")?;
    let sum = |word: usize| -> u64 { (0..count).map(|b| mapping.u64_at(b * words + word)).sum() };
    let mut block = zeroed_block();
    for slot in 0..slots {
        // The last slot of any layout is the monitor slot.
        let to = if slot + 1 == slots {
            STATS_SLOTS as usize - 1
        } else if slot < STATS_SLOTS as usize - 1 {
            slot
        } else {
            continue;
        };
        block.reasons[to].packets += sum(2 * slot);
        block.reasons[to].bytes += sum(2 * slot + 1);
    }
    for (port, n) in block.udp_ports.iter_mut().enumerate() {
        *n = sum(2 * slots + port);
    }
    if with_guard {
        let at = 2 * slots + UDP_PORTS;
        let counters = block.guard_lengths.iter_mut().flatten().flatten();
        for (i, c) in counters.enumerate() {
            c.packets = sum(at + 2 * i);
            c.bytes = sum(at + 2 * i + 1);
        }
    }
    // A map of our own over the new array's fd, writable.
    let fd = new
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate the new counter array's fd")?;
    let data = MapData::from_fd(fd)?;
    let mut array: Array<MapData, CpuCounters> = Array::try_from(aya::maps::Map::Array(data))?;
    let last = array.len() - 1;
    array
        .set(last, block.as_ref(), 0)
        .context("cannot write the carried-over totals into the new counter array")
}

/// After the reload that upgrades from a build that kept its counters in
/// [`OLDER_STATS`] and [`OLDER_UDP_PORTS`]: their totals become the block
/// that no CPU writes, and their pins go. That older program no longer
/// runs, so its totals are final; writing them (not adding) makes a rerun
/// after a failure here harmless.
fn adopt_older(dir: &Path) -> anyhow::Result<()> {
    let stats_path = dir.join(OLDER_STATS);
    if !stats_path.exists() {
        return Ok(());
    }
    let mut block = zeroed_block();
    let stats: PerCpuArray<_, Counter> = PerCpuArray::try_from(open_map(dir, OLDER_STATS)?)?;
    for (slot, c) in block.reasons.iter_mut().enumerate() {
        let Ok(t) = sum_per_cpu(&stats, slot as u32) else {
            // An older build with fewer reasons.
            break;
        };
        c.packets = t.packets;
        c.bytes = t.bytes;
    }
    let ports_path = dir.join(OLDER_UDP_PORTS);
    if let Ok(ports) = pins::open_map_at(&ports_path) {
        // One layout carries over, a shard of u64s per CPU; the one before
        // it (a {packets, bytes} per port shared by all CPUs) is worth a
        // surge detector's few seconds, not a reader.
        if let Ok(packets) = read_older_shards(&ports) {
            block.udp_ports.copy_from_slice(&packets);
        }
    }
    let mut array: Array<_, CpuCounters> = Array::try_from(open_map(dir, MAP_COUNTERS)?)?;
    let last = array.len() - 1;
    array
        .set(last, block.as_ref(), 0)
        .with_context(|| format!("cannot write the carried-over totals into {MAP_COUNTERS}"))?;
    for path in [stats_path, ports_path] {
        if path.exists() {
            pins::remove_pin(&path)?;
        }
    }
    Ok(())
}

/// The packets by port of an older build's port counters: one u64 per
/// port and CPU, shard after shard.
fn read_older_shards(map: &MapData) -> anyhow::Result<Vec<u64>> {
    let info = map.info()?;
    let slots = info.max_entries() as usize;
    if info.value_size() != 8 || slots == 0 || !slots.is_multiple_of(UDP_PORTS) {
        bail!("not the sharded layout");
    }
    let mapping = SharedMapping::new(map.fd().as_fd(), slots * 8)?;
    let mut counts = vec![0u64; UDP_PORTS];
    for shard in 0..slots / UDP_PORTS {
        for (port, n) in counts.iter_mut().enumerate() {
            *n += mapping.u64_at(shard * UDP_PORTS + port);
        }
    }
    Ok(counts)
}

/// A block of zeros on the heap (half a megabyte: not for the stack).
fn zeroed_block() -> Box<CpuCounters> {
    let layout = std::alloc::Layout::new::<CpuCounters>();
    // SAFETY: a non-zero-sized layout; all zeros is a valid CpuCounters
    // (integers only), and the allocation is the layout's, so Box owns it.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout) as *mut CpuCounters;
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(ptr)
    }
}
