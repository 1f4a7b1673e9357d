//! Which generation an interface runs, read from the pins alone: the
//! interface's XDP link names the program that runs, and that program's
//! generation folder holds what it enforces (and says how its request
//! recorder hooks egress). This is the truth even after a controller
//! crashed in the middle of a reload.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use aya::maps::Array;
use filter_common::{
    ATTACH_GENERIC, ATTACH_NATIVE, Config, FlagGlobal, MAP_CONFIG, MAP_META, Meta,
};

use super::{
    layout::{EGRESS_LINK, EGRESS_TC, LINK, PROG, generation_dir, generations},
    owner::is_denied,
    pins::{open_link, open_map, program_info},
};

/// The generation the interface's link runs.
pub struct CurrentGeneration {
    pub(crate) dir: PathBuf,
    pub(crate) generation: u32,
    pub program_id: u32,
    pub(crate) link_id: u32,
    /// Generations with pins that the link does not run (left by a reload
    /// that was interrupted); the next reload removes the older ones.
    pub(crate) stale: Vec<u32>,
}

pub fn current_generation(iface_dir: &Path) -> anyhow::Result<CurrentGeneration> {
    let info = open_link(&iface_dir.join(LINK))?
        .info()
        .context("cannot read the link's info")?;
    let program_id = info.program_id();
    let mut current = None;
    let mut stale = Vec::new();
    for g in generations(iface_dir)? {
        let dir = generation_dir(iface_dir, g);
        match program_info(&dir.join(PROG)) {
            Ok(p) if p.id() == program_id => current = Some((g, dir)),
            // Another user's pin is not a stale one: say whose it is
            // rather than that no folder holds the program.
            Err(e) if is_denied(&e) => return Err(e),
            _ => stale.push(g),
        }
    }
    let Some((generation, dir)) = current else {
        bail!(
            "the link on {} runs program {program_id}, which no generation folder holds",
            iface_dir.display()
        );
    };
    Ok(CurrentGeneration {
        dir,
        generation,
        program_id,
        link_id: info.id(),
        stale,
    })
}

pub(crate) fn read_meta(gen_dir: &Path) -> anyhow::Result<Meta> {
    let array: Array<_, Meta> = Array::try_from(open_map(gen_dir, MAP_META)?)?;
    Ok(array.get(&0, 0)?)
}

pub(crate) fn read_config(gen_dir: &Path) -> anyhow::Result<Config> {
    let array: Array<_, Config> = Array::try_from(open_map(gen_dir, MAP_CONFIG)?)?;
    Ok(array.get(&0, 0)?)
}

/// The value of `flag` in a generation; none for one of a build without it.
pub(crate) fn read_flag(gen_dir: &Path, flag: FlagGlobal) -> anyhow::Result<Option<u32>> {
    if !gen_dir.join(flag.symbol).exists() {
        return Ok(None);
    }
    let array: Array<_, u32> = Array::try_from(open_map(gen_dir, flag.symbol)?)?;
    Ok(Some(array.get(&0, 0)?))
}

/// The name of a [`Meta::attach_mode`].
pub(crate) fn attach_mode_name(mode: u32) -> &'static str {
    match mode {
        ATTACH_NATIVE => "native",
        ATTACH_GENERIC => "generic",
        _ => "unknown",
    }
}

/// How a generation's request recorder hooks egress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    Tcx,
    Clsact,
}

impl Hook {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Hook::Tcx => "tcx",
            Hook::Clsact => "clsact",
        }
    }
}

/// How the recorder of the generation in `gen_dir` is attached, if it is
/// (a TCX link in the generation's folder only during a reload).
pub(crate) fn hook_of(iface_dir: &Path, gen_dir: &Path) -> Option<Hook> {
    if gen_dir.join(EGRESS_TC).exists() {
        Some(Hook::Clsact)
    } else if gen_dir.join(EGRESS_LINK).exists() || iface_dir.join(EGRESS_LINK).exists() {
        Some(Hook::Tcx)
    } else {
        None
    }
}
