//! The kernel's counters ([`MAP_COUNTERS`]): a block per CPU of reason
//! counters and UDP source-port counters, summed through one mmap of the
//! array rather than per-CPU lookups, into [`Totals`]. (What a reload
//! carries over into a new array is in lifecycle::state_maps.)

use std::os::fd::AsFd as _;

use anyhow::{Context as _, anyhow};
use aya::maps::{MapData, PerCpuArray};
use filter_common::{
    Counter, CpuCounters, GUARD_LEN_BUCKETS, GUARD_SLOTS, MAP_COUNTERS, STATS_SLOTS, UDP_PORTS,
};
use serde::Serialize;

use super::memory::Entries;
use crate::{
    state::{PinRoot, pins::open_map_data},
    sys::SharedMapping,
};

/// Packets and bytes, summed over CPUs (and over reasons or rules).
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, c: Totals) {
        self.packets += c.packets;
        self.bytes += c.bytes;
    }
}

/// One counter of a per-CPU array, summed over CPUs.
pub(crate) fn sum_per_cpu<T: std::borrow::Borrow<aya::maps::MapData>>(
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

/// Blocks of the counter array: one per possible CPU (the kernel's CPU
/// numbers run below that count), and one after them that no CPU writes,
/// for the totals carried over from an older build's maps.
pub(crate) const BLOCKS: Entries = Entries::CpusPlus(1);

/// [`BLOCKS`] on this machine.
pub fn blocks() -> anyhow::Result<u32> {
    Ok(BLOCKS.at(possible_cpus()?))
}

/// This machine's possible CPUs, which per-CPU maps have a value for each.
pub fn possible_cpus() -> anyhow::Result<u32> {
    let cpus =
        aya::util::nr_cpus().map_err(|(what, e)| anyhow!("cannot count CPUs: {what}: {e}"))?;
    u32::try_from(cpus)
        .ok()
        .filter(|c| *c < u32::MAX)
        .ok_or_else(|| anyhow!("{cpus} CPUs: too many for a counter block each"))
}

/// Packets that arrived from each UDP source port since the filter was
/// loaded on `iface` (or since its counters were made anew), by port.
pub(crate) fn packets(root: &PinRoot, iface: &str) -> anyhow::Result<Vec<u64>> {
    Ok(pinned_blocks(root, iface)?.packets())
}

/// The counter array of the filter on `iface`, mapped.
fn pinned_blocks(root: &PinRoot, iface: &str) -> anyhow::Result<Blocks> {
    let dir = root.iface_dir(iface);
    Blocks::map(&open_map_data(&dir, MAP_COUNTERS)?)
        .with_context(|| format!("cannot read {}", dir.join(MAP_COUNTERS).display()))
}

/// The blocks of a counter array, mapped: kept by a reader that reads
/// often (replay reads after every frame), mapped anew by one that reads
/// once.
pub(crate) struct Blocks {
    mapping: SharedMapping,
    count: usize,
}

impl Blocks {
    pub(crate) fn map(map: &MapData) -> anyhow::Result<Blocks> {
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
    Ok(Blocks::map(map)?.packets())
}

/// Replies by length of one guarded port's slot: `[unsolicited, solicited]`,
/// each `{packets, bytes}` per length bucket (see
/// [`filter_common::CpuCounters::guard_lengths`]).
pub(crate) type GuardLengths = [[Totals; GUARD_LEN_BUCKETS]; 2];

/// The guard length counters of the filter on `iface`, by slot.
pub(crate) fn guard_lengths(root: &PinRoot, iface: &str) -> anyhow::Result<Vec<GuardLengths>> {
    Ok(pinned_blocks(root, iface)?.guard_lengths())
}

/// Packets and bytes by reason slot ([`STATS_SLOTS`] of them: the reasons,
/// then the monitor slot), summed over the blocks.
pub(crate) fn read_reasons(map: &MapData) -> anyhow::Result<Vec<Totals>> {
    Ok(Blocks::map(map)?.reasons())
}

impl Blocks {
    /// Packets by UDP source port.
    pub(crate) fn packets(&self) -> Vec<u64> {
        (0..UDP_PORTS)
            .map(|port| self.sum(CpuCounters::UDP_PORTS_AT + port))
            .collect()
    }

    /// Packets and bytes by reason slot.
    pub(crate) fn reasons(&self) -> Vec<Totals> {
        (0..STATS_SLOTS as usize)
            .map(|slot| self.reason(slot))
            .collect()
    }

    /// The guard length counters, by slot.
    pub(crate) fn guard_lengths(&self) -> Vec<GuardLengths> {
        let mut at = CpuCounters::GUARD_LENGTHS_AT;
        let mut next = || {
            let t = Totals {
                packets: self.sum(at),
                bytes: self.sum(at + 1),
            };
            at += 2;
            t
        };
        (0..GUARD_SLOTS)
            .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| next())))
            .collect()
    }

    /// Packets and bytes of one reason slot.
    pub(crate) fn reason(&self, slot: usize) -> Totals {
        let at = CpuCounters::REASONS_AT + 2 * slot;
        Totals {
            packets: self.sum(at),
            bytes: self.sum(at + 1),
        }
    }
}
