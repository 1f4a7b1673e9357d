//! Point-in-time readings of a loaded filter that the metrics show beside
//! its counters: how full the per-source limiter table is.

use aya::maps::{HashMap, MapInfo};
use filter_common::{MAP_SOURCES, SourceState, SrcKey};

use crate::state::{PinRoot, open_map};

/// Entries in the per-source limiter table and how many it holds at most
/// (an LRU: when full, the least recently seen source is evicted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Occupancy {
    pub entries: u64,
    pub capacity: u64,
}

/// Walks the limiter table's keys: one system call per entry, so a scrape
/// of a 16M-entry table costs seconds; the default 65536 costs milliseconds.
pub fn limiter_occupancy(root: &PinRoot, iface: &str) -> anyhow::Result<Occupancy> {
    let dir = root.iface_dir(iface);
    let capacity = MapInfo::from_pin(dir.join(MAP_SOURCES))?.max_entries();
    let sources: HashMap<_, SrcKey, SourceState> = HashMap::try_from(open_map(&dir, MAP_SOURCES)?)?;
    // A key removed while the walk runs ends it early: the count is a
    // snapshot, never more than the table holds.
    let entries = (sources.keys().take_while(Result::is_ok).count() as u64).min(capacity.into());
    Ok(Occupancy {
        entries,
        capacity: capacity.into(),
    })
}
