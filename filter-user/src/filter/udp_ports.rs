//! The kernel's UDP counters by source port (the surge detector's input),
//! read through one mmap of the pinned map rather than 65536 lookups.

use std::os::fd::{AsFd as _, BorrowedFd};

use anyhow::Context as _;
use aya::maps::MapData;
use filter_common::{Counter, MAP_UDP_PORTS, UDP_PORT_SLOTS};

use crate::{state::PinRoot, sys::SharedMapping};

const BYTES: usize = UDP_PORT_SLOTS as usize * size_of::<Counter>();

/// Packets that arrived from each UDP source port since the filter was
/// loaded on `iface`, indexed by port.
pub fn packets(root: &PinRoot, iface: &str) -> anyhow::Result<Vec<u64>> {
    let path = root.iface_dir(iface).join(MAP_UDP_PORTS);
    let map = MapData::from_pin(&path)
        .with_context(|| format!("cannot open pinned map {}", path.display()))?;
    read_packets(map.fd().as_fd())
        .with_context(|| format!("cannot map {} into memory", path.display()))
}

/// The packet counts of an mmapable array of 65536 [`Counter`]s.
pub fn read_packets(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u64>> {
    let mapping = SharedMapping::new(fd, BYTES)?;
    // Counter is {packets, bytes}: packets are the even u64s.
    Ok((0..UDP_PORT_SLOTS as usize)
        .map(|port| mapping.u64_at(2 * port))
        .collect())
}
