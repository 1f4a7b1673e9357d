//! The u32 globals that the controller writes while a program runs
//! ([`filter_common::FLAG_GLOBALS`]): monitor mode, whether a capture may
//! run, the generation's copy of the ban flag, and whether another
//! interface shares its requests. The program reads each
//! in one load where a map lookup cost it about a nanosecond.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, Map},
};
use filter_common::{
    BAN_FLAG_COPY, CAPTURE_FLAG, CaptureConfig, FLAG_GLOBALS, FlagGlobal, MAP_BAN_FLAG,
    MAP_CAPTURE, MODE_FLAG, SHARED_FLAG,
};

use crate::state::pins::open_map;

/// Sets `flag` in a loaded object (before or after its programs load).
pub(crate) fn set(ebpf: &mut Ebpf, flag: FlagGlobal, value: u32) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(flag.section)
        .ok_or_else(|| anyhow!("section {} missing from the eBPF object", flag.section))?;
    write_map(map, flag, value)
}

/// The flags of a freshly made object: the rule file's mode, and the state
/// of the running filter (the ban flag `bans`, a capture that runs on,
/// whether another interface shares its requests: `shared`).
pub(crate) fn seed(ebpf: &mut Ebpf, mode: u32, bans: u32, shared: u32) -> anyhow::Result<()> {
    set(ebpf, MODE_FLAG, mode)?;
    set(ebpf, BAN_FLAG_COPY, bans)?;
    // Only when set: an older build's object (`bench --against`) has none.
    if shared != 0 {
        set(ebpf, SHARED_FLAG, shared)?;
    }
    let capture: Array<_, CaptureConfig> = Array::try_from(
        ebpf.map_mut(MAP_CAPTURE)
            .ok_or_else(|| anyhow!("map {MAP_CAPTURE} missing from the eBPF object"))?,
    )?;
    let on = capture
        .get(&0, 0)
        .context("failed to read CAPTURE")?
        .until_ns
        != 0;
    set(ebpf, CAPTURE_FLAG, on as u32)
}

/// Sets `flag` in the generation pinned in `gen_dir`. A generation of an
/// older build has none of these pins and reads the maps themselves:
/// nothing to do then. One pin missing beside the others was removed by
/// hand, and the program would not see the change: an error.
pub(crate) fn write(gen_dir: &Path, flag: FlagGlobal, value: u32) -> anyhow::Result<()> {
    let path = gen_dir.join(flag.symbol);
    if !path.exists() {
        if FLAG_GLOBALS.iter().any(|f| gen_dir.join(f.symbol).exists()) {
            bail!(
                "{} is missing (removed by hand?): the running program would not see the change; `filterctl reload` makes it again",
                path.display()
            );
        }
        return Ok(());
    }
    write_map(&mut open_map(gen_dir, flag.symbol)?, flag, value)
}

fn write_map(map: &mut Map, flag: FlagGlobal, value: u32) -> anyhow::Result<()> {
    let mut array: Array<_, u32> = Array::try_from(map)?;
    array
        .set(0, value, 0)
        .with_context(|| format!("failed to write {}", flag.symbol))
}

/// Copies the ban flag state map of the filter in `iface_dir`, as it
/// stands, into the copy of the generation in `gen_dir`.
pub(crate) fn copy_ban_flag(iface_dir: &Path, gen_dir: &Path) -> anyhow::Result<()> {
    let bans = Array::<_, u32>::try_from(open_map(iface_dir, MAP_BAN_FLAG)?)?
        .get(&0, 0)
        .context("failed to read BAN_FLAG")?;
    write(gen_dir, BAN_FLAG_COPY, bans)
}
