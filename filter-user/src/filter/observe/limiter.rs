//! The per-source limiter table as userspace reads it: the occupied slots
//! of the shared array, through one mmap rather than a system call each.

use std::os::fd::{AsFd as _, BorrowedFd};

use anyhow::Context as _;
use aya::maps::MapData;
use filter_common::{SourceState, SrcKey, limiter::Source};

use crate::sys::SharedMapping;

/// u64 words in a slot (`SourceSlot`: addr, addr, tag, five state words).
const SLOT_WORDS: usize = 8;

/// Every source the table holds, with its state, and the table's slots.
pub(crate) fn sources(map: &MapData) -> anyhow::Result<(Vec<(SrcKey, SourceState)>, u32)> {
    let slots = map
        .info()
        .context("cannot read the limiter table")?
        .max_entries();
    let found = read(map.fd().as_fd(), slots).context("cannot map the limiter table")?;
    Ok((found, slots))
}

/// The occupied slots of an mmapable array of `slots` `SourceSlot`s. Other
/// CPUs keep writing: each word is read whole, a slot is not a snapshot.
pub(crate) fn read(fd: BorrowedFd<'_>, slots: u32) -> std::io::Result<Vec<(SrcKey, SourceState)>> {
    let mapping = SharedMapping::new(fd, slots as usize * SLOT_WORDS * 8)?;
    let mut out = Vec::new();
    for i in 0..slots as usize {
        let w = |j: usize| mapping.u64_at(i * SLOT_WORDS + j);
        let Some(src) = Source::of_slot([w(0), w(1)], w(2)) else {
            continue;
        };
        let state = SourceState {
            pkt_tat: w(3),
            byte_tat: w(4),
            over_since: w(5),
            dropped: w(6),
            last_over: w(7),
        };
        out.push((src.key(), state));
    }
    Ok(out)
}
