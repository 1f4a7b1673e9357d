//! Which generation an interface runs, read from the pins alone: the
//! interface's XDP link names the program that runs, and that program's
//! generation folder holds what it enforces. This is the truth even after
//! a controller crashed in the middle of a reload.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use aya::{
    maps::{Array, Map, MapData},
    programs::{
        ProgramInfo,
        links::{FdLink, PinnedLink},
    },
};
use filter_common::{ATTACH_GENERIC, ATTACH_NATIVE, Config, MAP_CONFIG, MAP_META, Meta};

use super::{LINK, PROG, generation_dir, generations};

/// The generation the interface's link runs.
pub struct CurrentGeneration {
    pub dir: PathBuf,
    pub generation: u32,
    pub program_id: u32,
    pub link_id: u32,
    /// Generations with pins that the link does not run (left by a reload
    /// that was interrupted); the next reload removes the older ones.
    pub stale: Vec<u32>,
}

pub fn current_generation(iface_dir: &Path) -> anyhow::Result<CurrentGeneration> {
    let link_path = iface_dir.join(LINK);
    let info = FdLink::from(
        PinnedLink::from_pin(&link_path)
            .with_context(|| format!("cannot open the pinned link {}", link_path.display()))?,
    )
    .info()
    .context("cannot read the link's info")?;
    let program_id = info.program_id();
    let mut current = None;
    let mut stale = Vec::new();
    for g in generations(iface_dir)? {
        let dir = generation_dir(iface_dir, g);
        match ProgramInfo::from_pin(dir.join(PROG)) {
            Ok(p) if p.id() == program_id => current = Some((g, dir)),
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

pub fn open_map(dir: &Path, name: &str) -> anyhow::Result<Map> {
    Ok(Map::from_map_data(open_map_data(dir, name)?)?)
}

/// The map pinned as `name` in `dir`, untyped: for readers that map its
/// values rather than look them up.
pub fn open_map_data(dir: &Path, name: &str) -> anyhow::Result<MapData> {
    let path = dir.join(name);
    MapData::from_pin(&path).with_context(|| format!("cannot open pinned map {}", path.display()))
}

pub fn read_meta(gen_dir: &Path) -> anyhow::Result<Meta> {
    let array: Array<_, Meta> = Array::try_from(open_map(gen_dir, MAP_META)?)?;
    Ok(array.get(&0, 0)?)
}

pub fn read_config(gen_dir: &Path) -> anyhow::Result<Config> {
    let array: Array<_, Config> = Array::try_from(open_map(gen_dir, MAP_CONFIG)?)?;
    Ok(array.get(&0, 0)?)
}

/// The name of a [`Meta::attach_mode`].
pub fn attach_mode_name(mode: u32) -> &'static str {
    match mode {
        ATTACH_NATIVE => "native",
        ATTACH_GENERIC => "generic",
        _ => "unknown",
    }
}
