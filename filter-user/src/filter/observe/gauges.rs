//! Point-in-time readings of a loaded filter that the metrics show beside
//! its counters: how full the per-source limiter table is.

use filter_common::MAP_SOURCES;

use super::limiter;
use crate::state::{PinRoot, pins::open_map_data};

/// Sources in the per-source limiter table and how many it holds at most
/// (two ways per set: a new source takes the slot of its set's least
/// recently seen one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Occupancy {
    pub(crate) entries: u64,
    pub(crate) capacity: u64,
}

/// Reads the limiter table through one mmap: a scrape of the default
/// 65536 slots costs about a millisecond, of 16M slots a second.
pub(crate) fn limiter_occupancy(root: &PinRoot, iface: &str) -> anyhow::Result<Occupancy> {
    let table = open_map_data(&root.iface_dir(iface), MAP_SOURCES)?;
    let (sources, slots) = limiter::sources(&table)?;
    Ok(Occupancy {
        entries: sources.len() as u64,
        capacity: slots.into(),
    })
}
