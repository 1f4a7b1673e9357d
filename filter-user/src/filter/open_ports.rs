//! A generation's copy of the open requests ([`OPEN_UNTIL_SECTION`]): each
//! local port's deadline from the LOCAL_PORTS state map, which the early
//! verdict reads in one load. The state map outlives reloads, the copy is
//! the generation's own and starts empty, so a reload fills it before the
//! new program runs:
//! 1. the new generation's recorder is attached beside the old one (the
//!    caller's), so every request from then on reaches both copies;
//! 2. the state map is read, then the copy, and what the copy lacks is
//!    written into it; this write may undo a record that the recorder made
//!    meanwhile, which the next round's reads show: the recorder writes the
//!    copy before the state map, so a port that a round finds open in the
//!    state map is in the copy read after it, unless a write undid it;
//! 3. a round that finds nothing missing ends it.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, anyhow, bail};
use aya::{Ebpf, maps::MapData};
use filter_common::{LocalPort, MAP_LOCAL_PORTS, OPEN_UNTIL_SECTION, UDP_PORTS};

use crate::sys;

/// Rounds before giving up: one finds the copy empty, the next finds it
/// full unless a request raced a write.
const ROUNDS: usize = 8;

/// Fills the copy of a loaded generation in `ebpf` from the LOCAL_PORTS
/// state map it shares, with its recorder already attached.
pub fn seed(ebpf: &Ebpf) -> anyhow::Result<()> {
    let local = match ebpf.map(MAP_LOCAL_PORTS) {
        Some(aya::maps::Map::Array(data)) => data,
        _ => bail!("map {MAP_LOCAL_PORTS} missing from the eBPF object, or not an array"),
    };
    let map = ebpf
        .map(OPEN_UNTIL_SECTION)
        .ok_or_else(|| anyhow!("section {OPEN_UNTIL_SECTION} missing from the eBPF object"))?;
    let copy = match map {
        aya::maps::Map::Array(data) => data,
        _ => bail!("section {OPEN_UNTIL_SECTION} is not an array"),
    };
    let value_size = copy.info()?.value_size() as usize;
    if value_size != UDP_PORTS * 8 {
        bail!(
            "section {OPEN_UNTIL_SECTION} holds {value_size} bytes, where a deadline per port takes {}",
            UDP_PORTS * 8
        );
    }
    let fd = copy.fd().as_fd();
    let mut words = vec![0u64; UDP_PORTS];
    for _ in 0..ROUNDS {
        let open = deadlines(local)?;
        sys::map_read_words(fd, 0, &mut words)
            .with_context(|| format!("cannot read {OPEN_UNTIL_SECTION}"))?;
        if raise(&mut words, &open) == 0 {
            return Ok(());
        }
        sys::map_write_words(fd, 0, &words)
            .with_context(|| format!("cannot write {OPEN_UNTIL_SECTION}"))?;
    }
    bail!(
        "the new generation's copy of the open requests still missed some after {ROUNDS} rounds (requests raced every write)"
    )
}

/// Each local port's `until`, as LOCAL_PORTS holds it.
fn deadlines(local: &MapData) -> anyhow::Result<Vec<u64>> {
    const WORDS: usize = size_of::<LocalPort>() / 8;
    let info = local.info()?;
    if info.value_size() as usize != size_of::<LocalPort>()
        || info.max_entries() as usize != UDP_PORTS
    {
        bail!(
            "{MAP_LOCAL_PORTS} holds {} entries of {} bytes, where this build expects {UDP_PORTS} of {}",
            info.max_entries(),
            info.value_size(),
            size_of::<LocalPort>()
        );
    }
    let mut values = vec![0u64; UDP_PORTS * WORDS];
    let read = sys::map_read_all(local.fd().as_fd(), &mut values, UDP_PORTS)
        .with_context(|| format!("cannot read {MAP_LOCAL_PORTS}"))?;
    if read != UDP_PORTS {
        bail!("{MAP_LOCAL_PORTS}: read {read} of its {UDP_PORTS} entries");
    }
    let until = std::mem::offset_of!(LocalPort, until) / 8;
    Ok(values.chunks_exact(WORDS).map(|v| v[until]).collect())
}

/// Raises each deadline of `copy` to `open`'s where that is later; returns
/// how many it raised.
fn raise(copy: &mut [u64], open: &[u64]) -> usize {
    copy.iter_mut()
        .zip(open)
        .filter(|(c, o)| **c < **o)
        .map(|(c, o)| *c = *o)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_only_what_is_later() {
        let mut copy = vec![0, 5, 9, 7];
        assert_eq!(raise(&mut copy, &[3, 5, 4, 8]), 2);
        assert_eq!(copy, [3, 5, 9, 8]);
        assert_eq!(
            raise(&mut copy, &[3, 5, 4, 8]),
            0,
            "a second round finds nothing"
        );
    }
}
