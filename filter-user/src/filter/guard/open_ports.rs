//! A generation's copy of the open requests ([`OPEN_UNTIL_SECTION`]): each
//! local port's deadline from the LOCAL_PORTS state map, which the early
//! verdict reads in one load. The state map outlives reloads, the copy is
//! the generation's own and starts empty, so a reload fills it before the
//! new program runs:
//! 1. the new generation's recorder is attached beside the old one (the
//!    caller's), so every request from then on reaches both copies;
//! 2. the generation's seeder raises the copy to the state map's deadlines
//!    in the kernel, port by port ([`OPEN_SEED_PROGRAM_NAME`]); a write of
//!    the whole copy from here would undo what the recorder wrote to other
//!    ports meanwhile, and on a busy resolver never stop doing so;
//! 3. the state map is read, then the copy: the recorder writes the copy
//!    before the state map, so a port open in the first read is in the
//!    second unless a race on that very port undid it, which another round
//!    mends. A round that finds nothing missing ends it.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::{Map, MapData},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use filter_common::{
    LocalPort, MAP_LOCAL_PORTS, OPEN_SEED_CHUNK, OPEN_SEED_PROGRAM_NAME, OPEN_UNTIL_SECTION,
    UDP_PORTS,
};

use crate::{filter::lifecycle::program, sys};

/// Rounds before giving up: the first finds the copy full unless a request
/// raced the seeder on its own port.
const ROUNDS: usize = 4;

/// Fills the copy of a loaded generation in `ebpf` from the LOCAL_PORTS
/// state map it shares, with its recorder already attached.
pub(crate) fn seed(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    program::verify(ebpf, OPEN_SEED_PROGRAM_NAME, "the open requests' seeder")?;
    let seeder: &Xdp = ebpf
        .program(OPEN_SEED_PROGRAM_NAME)
        .expect("loaded above")
        .try_into()?;
    let local = array(ebpf, MAP_LOCAL_PORTS)?;
    let copy = array(ebpf, OPEN_UNTIL_SECTION)?;
    let value_size = copy.info()?.value_size() as usize;
    if value_size != UDP_PORTS * 8 {
        bail!(
            "section {OPEN_UNTIL_SECTION} holds {value_size} bytes, where a deadline per port takes {}",
            UDP_PORTS * 8
        );
    }
    let mut words = vec![0u64; UDP_PORTS];
    for _ in 0..ROUNDS {
        run_seeder(seeder)?;
        let open = deadlines(local)?;
        // SAFETY: one value of the size checked above.
        let read = unsafe { sys::map_read_all(copy.fd().as_fd(), &mut words, 1) }
            .with_context(|| format!("cannot read {OPEN_UNTIL_SECTION}"))?;
        if read != 1 {
            bail!("cannot read {OPEN_UNTIL_SECTION}: the kernel copied nothing");
        }
        if missing(&words, &open) == 0 {
            return Ok(());
        }
    }
    bail!("the new generation's copy of the open requests still missed some after {ROUNDS} rounds")
}

fn array<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a MapData> {
    match ebpf.map(name) {
        Some(Map::Array(data)) => Ok(data),
        _ => bail!("map {name} missing from the eBPF object, or not an array"),
    }
}

/// One run of the seeder for each chunk of ports.
fn run_seeder(seeder: &Xdp) -> anyhow::Result<()> {
    // The kernel's test harness takes no frame shorter than 14 bytes.
    let mut frame = [0u8; 14];
    for chunk in 0..(UDP_PORTS as u32).div_ceil(OPEN_SEED_CHUNK) {
        frame[..2].copy_from_slice(&(chunk as u16).to_ne_bytes());
        seeder
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::new()
            })
            .with_context(|| format!("the open requests' seeder failed on chunk {chunk}"))?;
    }
    Ok(())
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
    // SAFETY: UDP_PORTS values of the size checked above.
    let read = unsafe { sys::map_read_all(local.fd().as_fd(), &mut values, UDP_PORTS) }
        .with_context(|| format!("cannot read {MAP_LOCAL_PORTS}"))?;
    if read != UDP_PORTS {
        bail!("{MAP_LOCAL_PORTS}: read {read} of its {UDP_PORTS} entries");
    }
    let until = std::mem::offset_of!(LocalPort, until) / 8;
    Ok(values.chunks_exact(WORDS).map(|v| v[until]).collect())
}

/// How many ports' deadlines in `copy` are earlier than in `open`.
fn missing(copy: &[u64], open: &[u64]) -> usize {
    copy.iter().zip(open).filter(|(c, o)| c < o).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_earlier_deadlines_are_missing() {
        assert_eq!(missing(&[0, 5, 9, 7], &[3, 5, 4, 8]), 2);
        assert_eq!(missing(&[3, 5, 9, 8], &[3, 5, 4, 8]), 0);
    }
}
