//! Every pin filterctl makes, opens or removes on bpffs: programs, maps and
//! links, and the folders that hold them. Nothing else in the crate calls
//! aya's `pin`, `from_pin` or `unpin` or removes a pin (`cargo test -p
//! xtask` checks it), so what lives on bpffs has one owner.
//!
//! What root makes here in a folder of another user goes to that user
//! right away (`owner::hand_over`), before anything makes it live; a pin
//! this user may not open says whose it is (`owner::explain_denied`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Map, MapData},
    programs::{
        ProgramInfo,
        links::{FdLink, PinnedLink},
    },
};

use super::{
    layout::{generation_dir, generations},
    owner::{explain_denied, hand_over},
};

/// Makes the folder `dir` (its parent must exist); fails if it exists.
pub(crate) fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    hand_over(dir)
}

/// Pins program `name` of a loaded object at `path`.
pub(crate) fn pin_program(ebpf: &mut Ebpf, name: &str, path: &Path) -> anyhow::Result<()> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?
        .pin(path)
        .with_context(|| format!("cannot pin {}", path.display()))?;
    hand_over(path)
}

/// Pins `map` at `path`.
pub(crate) fn pin_map(map: &Map, path: &Path) -> anyhow::Result<()> {
    map.pin(path)
        .with_context(|| format!("cannot pin {}", path.display()))?;
    hand_over(path)
}

/// Pins the map pinned at `from` at `to` as well: one map, two pins, either
/// of which may go without the other.
pub fn pin_again(from: &Path, to: &Path) -> anyhow::Result<()> {
    open_map_at(from)?
        .pin(to)
        .with_context(|| format!("cannot pin {} again at {}", from.display(), to.display()))?;
    hand_over(to)
}

/// Pins `link` at `path`: what it attached stays attached after this
/// process exits, until the pin is removed.
pub(crate) fn pin_link(link: FdLink, path: &Path) -> anyhow::Result<()> {
    link.pin(path)
        .with_context(|| format!("cannot pin {}", path.display()))?;
    hand_over(path)
}

/// The link pinned at `path`.
pub(crate) fn open_link(path: &Path) -> anyhow::Result<FdLink> {
    let link = PinnedLink::from_pin(path)
        .map_err(|e| explain_denied(e.into(), path))
        .with_context(|| format!("cannot open the pinned link {}", path.display()))?;
    Ok(link.into())
}

/// Removes the link pinned at `path`: once this last reference closes, the
/// kernel detaches its program.
pub(crate) fn unpin_link(path: &Path) -> anyhow::Result<()> {
    let link = PinnedLink::from_pin(path)
        .map_err(|e| explain_denied(e.into(), path))
        .with_context(|| format!("cannot open the pinned link {}", path.display()))?;
    let fd_link = link
        .unpin()
        .with_context(|| format!("cannot unpin {}", path.display()))?;
    drop(fd_link);
    Ok(())
}

/// What the kernel says of the program pinned at `path`.
pub(crate) fn program_info(path: &Path) -> anyhow::Result<ProgramInfo> {
    ProgramInfo::from_pin(path)
        .map_err(|e| explain_denied(e.into(), path))
        .with_context(|| format!("cannot open the pinned program {}", path.display()))
}

/// The map pinned at `path`, untyped.
pub(crate) fn open_map_at(path: &Path) -> anyhow::Result<MapData> {
    MapData::from_pin(path)
        .map_err(|e| explain_denied(e.into(), path))
        .with_context(|| format!("cannot open pinned map {}", path.display()))
}

/// The map pinned as `name` in `dir`, untyped: for readers that map its
/// values rather than look them up.
pub(crate) fn open_map_data(dir: &Path, name: &str) -> anyhow::Result<MapData> {
    open_map_at(&dir.join(name))
}

/// The map pinned as `name` in `dir`, ready to be typed (`Array::try_from`).
pub(crate) fn open_map(dir: &Path, name: &str) -> anyhow::Result<Map> {
    Ok(Map::from_map_data(open_map_data(dir, name)?)?)
}

/// Removes one pin (a program, map or link stays only while something
/// else holds it).
pub(crate) fn remove_pin(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))
}

/// Moves the pin at `from` to `to`, in one step: what was pinned at `to`
/// loses that pin (a link pinned nowhere else detaches).
pub(crate) fn move_pin(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}

/// Removes a folder of pins and everything in it.
pub(crate) fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Removes the folders of the generations older than `generation` in an
/// interface folder, as far as it can: nothing references them once the
/// link runs a newer one, their pins are all that keep them.
pub(crate) fn remove_older_generations(iface_dir: &Path, generation: u32) -> anyhow::Result<()> {
    for g in generations(iface_dir)? {
        if g < generation {
            let _ = remove_dir(&generation_dir(iface_dir, g));
        }
    }
    Ok(())
}

/// A pin folder being made: removed when dropped, after `undo` runs (for
/// what the folder's pins don't hold, a clsact filter), unless
/// [`Unfinished::keep`] was called. A failed load or reload leaves nothing
/// behind.
pub(crate) struct Unfinished<F: FnOnce()> {
    dir: Option<PathBuf>,
    undo: Option<F>,
}

impl<F: FnOnce()> Unfinished<F> {
    pub(crate) fn new(dir: PathBuf, undo: F) -> Self {
        Unfinished {
            dir: Some(dir),
            undo: Some(undo),
        }
    }

    /// The folder is done: it stays.
    pub(crate) fn keep(mut self) {
        self.dir = None;
    }
}

impl<F: FnOnce()> Drop for Unfinished<F> {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if let Some(undo) = self.undo.take() {
                undo();
            }
            let _ = remove_dir(&dir);
        }
    }
}
