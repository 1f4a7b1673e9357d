//! The host's request table ([`REQUEST_MAPS`]) across the interfaces under
//! one pin root: one map, pinned in the folder of each interface that
//! shares it. Which siblings share an interface's table, which keep one
//! of their own, and a running sibling's table adopted by an interface
//! being loaded.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use aya::maps::MapInfo;
use filter_common::{MAP_LOCAL_PORTS, REQUEST_MAPS};

use super::{layout::PinRoot, pins};

/// The other interfaces with a pin folder under the root of the interface
/// folder `dir`, with their folders, sorted.
pub fn siblings(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let (Some(root), Some(me)) = (dir.parent(), dir.file_name()) else {
        return Err(anyhow!("{} is not an interface folder", dir.display()));
    };
    let root = PinRoot::new(root);
    Ok(root
        .interfaces()?
        .into_iter()
        .filter(|name| name.as_str() != me)
        .map(|name| {
            let d = root.iface_dir(&name);
            (name, d)
        })
        .collect())
}

/// The kernel's id of the request table pinned in `dir` (its LOCAL_PORTS):
/// none while the folder has none (an interface being loaded).
pub fn table_id(dir: &Path) -> Option<u32> {
    let path = dir.join(MAP_LOCAL_PORTS);
    if !path.exists() {
        return None;
    }
    Some(pins::open_map_at(&path).ok()?.info().ok()?.id())
}

/// The siblings of an interface by its request table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sharing {
    /// Those whose folder pins the same table.
    pub with: Vec<String>,
    /// Those with a table of their own.
    pub apart: Vec<String>,
}

/// Which siblings of the interface in `dir` share its request table.
pub fn sharing(dir: &Path) -> anyhow::Result<Sharing> {
    let mut s = Sharing::default();
    let Some(mine) = table_id(dir) else {
        return Ok(s);
    };
    for (name, d) in siblings(dir)? {
        match table_id(&d) {
            Some(id) if id == mine => s.with.push(name),
            Some(_) => s.apart.push(name),
            None => {}
        }
    }
    Ok(s)
}

/// What the kernel says of each request map pinned in `dir`, for the
/// caller to hold against the maps its object makes.
pub fn request_maps(dir: &Path) -> anyhow::Result<Vec<(&'static str, MapInfo)>> {
    REQUEST_MAPS
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let info = pins::open_map_at(&path)?
                .info()
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((*name, info))
        })
        .collect()
}

/// Pins the request maps of the interface folder `from` in `dir` as well,
/// before the loader looks for them there: the interface of `dir` then
/// records into, and judges replies by, the same table. All or none: on
/// failure the pins made here go again.
pub fn adopt(dir: &Path, from: &Path) -> anyhow::Result<()> {
    for (i, name) in REQUEST_MAPS.iter().enumerate() {
        if let Err(e) = pins::pin_again(&from.join(name), &dir.join(name)) {
            for made in &REQUEST_MAPS[..i] {
                let _ = pins::remove_pin(&dir.join(made));
            }
            return Err(e);
        }
    }
    Ok(())
}
