//! The kernel's counters ([`MAP_COUNTERS`]): a block per CPU of reason
//! counters and UDP source-port counters, summed through one mmap of the
//! array rather than per-CPU lookups, into [`Totals`]; and, after an
//! upgrade, the totals an older build's maps held.

use std::{os::fd::AsFd as _, path::Path};

use anyhow::{Context as _, anyhow};
use aya::maps::{Array, MapData, PerCpuArray};
use filter_common::{
    Counter, CpuCounters, MAP_COUNTERS, OLDER_STATS, OLDER_UDP_PORTS, STATS_SLOTS, UDP_PORTS,
};
use serde::Serialize;

use crate::{
    state::{PinRoot, open_map, open_map_data},
    sys::SharedMapping,
};

/// Packets and bytes, summed over CPUs (and over reasons or rules).
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

impl Totals {
    pub fn add(&mut self, c: Totals) {
        self.packets += c.packets;
        self.bytes += c.bytes;
    }
}

/// One counter of a per-CPU array, summed over CPUs.
pub fn sum_per_cpu<T: std::borrow::Borrow<aya::maps::MapData>>(
    array: &PerCpuArray<T, Counter>,
    index: u32,
) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    for c in array.get(&index, 0)?.iter() {
        t.add(Totals {
            packets: c.packets,
            bytes: c.bytes,
        });
    }
    Ok(t)
}

/// Blocks of the counter array on this machine: one per possible CPU (the
/// kernel's CPU numbers run below that count), and one after them that no
/// CPU writes, for the totals carried over from an older build's maps.
pub fn blocks() -> anyhow::Result<u32> {
    let cpus =
        aya::util::nr_cpus().map_err(|(what, e)| anyhow!("cannot count CPUs: {what}: {e}"))?;
    u32::try_from(cpus + 1).map_err(|_| anyhow!("{cpus} CPUs: too many for a counter block each"))
}

/// Packets that arrived from each UDP source port since the filter was
/// loaded on `iface` (or since its counters were made anew), by port.
pub fn packets(root: &PinRoot, iface: &str) -> anyhow::Result<Vec<u64>> {
    let dir = root.iface_dir(iface);
    read_packets(&open_map_data(&dir, MAP_COUNTERS)?)
        .with_context(|| format!("cannot read {}", dir.join(MAP_COUNTERS).display()))
}

/// The blocks of a counter array, mapped.
struct Blocks {
    mapping: SharedMapping,
    count: usize,
}

impl Blocks {
    fn map(map: &MapData) -> anyhow::Result<Blocks> {
        let info = map.info()?;
        let count = info.max_entries() as usize;
        if info.value_size() as usize != size_of::<CpuCounters>() || count == 0 {
            anyhow::bail!(
                "not a counter array: {} entries of {} bytes, where a CPU's block takes {}",
                count,
                info.value_size(),
                size_of::<CpuCounters>()
            );
        }
        let mapping = SharedMapping::new(map.fd().as_fd(), count * size_of::<CpuCounters>())
            .context("cannot mmap it")?;
        Ok(Blocks { mapping, count })
    }

    /// The sum over the blocks of the u64 at `word` of each.
    fn sum(&self, word: usize) -> u64 {
        (0..self.count)
            .map(|b| self.mapping.u64_at(b * CpuCounters::WORDS + word))
            .sum()
    }
}

/// Packets by UDP source port, summed over the blocks.
pub fn read_packets(map: &MapData) -> anyhow::Result<Vec<u64>> {
    let blocks = Blocks::map(map)?;
    Ok((0..UDP_PORTS)
        .map(|port| blocks.sum(CpuCounters::UDP_PORTS_AT + port))
        .collect())
}

/// Packets and bytes by reason slot ([`STATS_SLOTS`] of them: the reasons,
/// then the monitor slot), summed over the blocks.
pub fn read_reasons(map: &MapData) -> anyhow::Result<Vec<Totals>> {
    let blocks = Blocks::map(map)?;
    Ok((0..STATS_SLOTS as usize)
        .map(|slot| {
            let at = CpuCounters::REASONS_AT + 2 * slot;
            Totals {
                packets: blocks.sum(at),
                bytes: blocks.sum(at + 1),
            }
        })
        .collect())
}

/// When a reload makes the counter array anew (another CPU count, or an
/// older build whose blocks held fewer reasons): the old array's totals,
/// summed over its blocks whatever their layout, become the new array's
/// block that no CPU writes, so that no counter goes down. Reasons only
/// ever get added at the end; the old monitor slot moves to the new one.
pub fn carry_over(old: &MapData, new: &MapData) -> anyhow::Result<()> {
    let info = old.info()?;
    let value = info.value_size() as usize;
    let count = info.max_entries() as usize;
    let words = value / 8;
    if value % 8 != 0 || words < UDP_PORTS + 2 || count == 0 {
        anyhow::bail!("the old counter array has blocks of {value} bytes: not a counter array");
    }
    let slots = (words - UDP_PORTS) / 2;
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
pub fn adopt_older(dir: &Path) -> anyhow::Result<()> {
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
    if let Ok(ports) = MapData::from_pin(&ports_path) {
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
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
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
        anyhow::bail!("not the sharded layout");
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
