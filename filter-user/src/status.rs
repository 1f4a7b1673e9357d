//! What is loaded where, read back from the pins alone: the interface's XDP
//! link names the program that runs, and that program's generation folder
//! holds the rule set it enforces. This is the truth even after a
//! controller crashed in the middle of a reload.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use aya::{
    maps::{Array, Map, MapData},
    programs::{
        ProgramInfo,
        links::{FdLink, PinnedLink},
    },
};
use filter_common::{
    CONFIG_FRAGMENT_DROP, CONFIG_MONITOR, Config, MAP_CONFIG, MAP_META, META_SOURCE_LEN, Meta,
};

use crate::{
    loader::mode_name,
    pins::{self, PinRoot},
};

/// The generation the interface's link runs.
pub struct CurrentGeneration {
    pub dir: PathBuf,
    pub generation: u32,
    pub program_id: u32,
    pub link_id: u32,
    /// Generations with pins that the link does not run (left by a reload
    /// that was interrupted); the next reload removes them.
    pub stale: Vec<u32>,
}

pub fn current_generation(iface_dir: &Path) -> anyhow::Result<CurrentGeneration> {
    let link_path = iface_dir.join(pins::LINK);
    let info = FdLink::from(
        PinnedLink::from_pin(&link_path)
            .with_context(|| format!("cannot open the pinned link {}", link_path.display()))?,
    )
    .info()
    .context("cannot read the link's info")?;
    let program_id = info.program_id();
    let mut current = None;
    let mut stale = Vec::new();
    for g in pins::generations(iface_dir)? {
        let dir = pins::generation_dir(iface_dir, g);
        match ProgramInfo::from_pin(dir.join(pins::PROG)) {
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
    let path = dir.join(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open pinned map {}", path.display()))?;
    Ok(Map::from_map_data(data)?)
}

pub fn read_meta(gen_dir: &Path) -> anyhow::Result<Meta> {
    let array: Array<_, Meta> = Array::try_from(open_map(gen_dir, MAP_META)?)?;
    Ok(array.get(&0, 0)?)
}

pub fn read_config(gen_dir: &Path) -> anyhow::Result<Config> {
    let array: Array<_, Config> = Array::try_from(open_map(gen_dir, MAP_CONFIG)?)?;
    Ok(array.get(&0, 0)?)
}

/// What `status` reports for one interface.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub interface: String,
    pub program_id: u32,
    pub link_id: u32,
    pub generation: u32,
    pub stale_generations: Vec<u32>,
    pub attach_mode: &'static str,
    pub rules_digest: String,
    pub rules_source: String,
    /// Commit of the git work tree holding the rule file, if any.
    pub git_commit: Option<String>,
    /// Whether the file differed from that commit when it was loaded.
    pub git_modified: bool,
    pub rule_count: u32,
    pub mode: &'static str,
    pub fragments: &'static str,
    pub loaded_at_unix: u64,
}

pub fn status(root: &PinRoot, iface: &str) -> anyhow::Result<Status> {
    // A reload that lands between reading the link and reading the
    // generation's maps removes the generation we were about to read: look
    // again, the link then names the new one.
    let mut tries = 0;
    loop {
        match status_once(root, iface) {
            Err(_) if tries < 3 => tries += 1,
            other => return other,
        }
    }
}

fn status_once(root: &PinRoot, iface: &str) -> anyhow::Result<Status> {
    let current = current_generation(&root.iface_dir(iface))?;
    let meta = read_meta(&current.dir)?;
    let config = read_config(&current.dir)?;
    let source_len = meta
        .source
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(META_SOURCE_LEN);
    Ok(Status {
        interface: iface.to_string(),
        program_id: current.program_id,
        link_id: current.link_id,
        generation: current.generation,
        stale_generations: current.stale,
        attach_mode: mode_name(meta.attach_mode),
        rules_digest: crate::rules::hex(&meta.digest),
        rules_source: String::from_utf8_lossy(&meta.source[..source_len]).into_owned(),
        git_commit: (meta.git_state != 0)
            .then(|| String::from_utf8_lossy(&meta.git_commit).into_owned()),
        git_modified: meta.git_state == 2,
        rule_count: meta.rule_count,
        mode: if config.flags & CONFIG_MONITOR != 0 {
            "monitor"
        } else {
            "enforce"
        },
        fragments: if config.flags & CONFIG_FRAGMENT_DROP != 0 {
            "drop"
        } else {
            "pass"
        },
        loaded_at_unix: meta.loaded_at_unix,
    })
}
