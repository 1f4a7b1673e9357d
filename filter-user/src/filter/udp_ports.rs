//! The kernel's UDP packet counters by source port (the surge detector's
//! input): a shard per CPU in one array, summed through one mmap of the
//! pinned map rather than 65536 per-CPU lookups.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, anyhow};
use aya::maps::MapData;
use filter_common::{MAP_UDP_PORTS, UDP_PORT_SLOTS};

use crate::{state::PinRoot, sys::SharedMapping};

/// Entries of the counter array on this machine: one shard per possible
/// CPU (the kernel's CPU numbers run below that count).
pub fn slots() -> anyhow::Result<u32> {
    let cpus =
        aya::util::nr_cpus().map_err(|(what, e)| anyhow!("cannot count CPUs: {what}: {e}"))?;
    u32::try_from(cpus)
        .ok()
        .and_then(|n| n.checked_mul(UDP_PORT_SLOTS))
        .ok_or_else(|| anyhow!("{cpus} CPUs: too many for a UDP_PORTS shard each"))
}

/// Packets that arrived from each UDP source port since the filter was
/// loaded on `iface` (or since its counters were made anew), by port.
pub fn packets(root: &PinRoot, iface: &str) -> anyhow::Result<Vec<u64>> {
    let path = root.iface_dir(iface).join(MAP_UDP_PORTS);
    let map = MapData::from_pin(&path)
        .with_context(|| format!("cannot open pinned map {}", path.display()))?;
    read_packets(&map).with_context(|| format!("cannot read {}", path.display()))
}

/// The packets by port of a sharded counter array (one u64 per port and
/// CPU, see [`MAP_UDP_PORTS`]), summed over the shards.
pub fn read_packets(map: &MapData) -> anyhow::Result<Vec<u64>> {
    let info = map.info()?;
    let slots = info.max_entries() as usize;
    let ports = UDP_PORT_SLOTS as usize;
    if info.value_size() != 8 || slots == 0 || !slots.is_multiple_of(ports) {
        anyhow::bail!(
            "not a sharded port counter: {} entries of {} bytes",
            slots,
            info.value_size()
        );
    }
    let mapping = SharedMapping::new(map.fd().as_fd(), slots * 8).context("cannot mmap it")?;
    let mut counts = vec![0u64; ports];
    for shard in 0..slots / ports {
        for (port, n) in counts.iter_mut().enumerate() {
            *n += mapping.u64_at(shard * ports + port);
        }
    }
    Ok(counts)
}
