//! One table of the host's requests for all its filtered interfaces
//! ([`filter_common::REQUEST_MAPS`], pinned in each one's folder: see
//! `state::shared`), for the answer that returns by another interface than
//! its request left by (an ECMP default route, a bond filtered on its
//! members). An interface loaded beside running ones adopts their table
//! when its maps have this build's shape; every generation of an interface
//! that shares its table runs with [`SHARED_FLAG`] set, so that its early
//! verdict asks LOCAL_PORTS, which every recorder writes, before it drops
//! a reply to a port that its own copy of the deadlines finds closed.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use filter_common::SHARED_FLAG;

use super::flags;
use crate::{
    EBPF_OBJECT,
    filter::observe::memory::kernel::Kind,
    state::{current_generation, shared},
    sys,
};

/// Before `load` makes the maps of `iface` (its pin folder `dir`): adopts
/// the request table of the first sibling that runs a filter on an
/// interface of this namespace with maps of this build's shape. Siblings
/// whose table can't be shared (another build's) are named in a warning.
/// Returns the sibling whose table was adopted, if any.
pub fn adopt(iface: &str, dir: &Path) -> anyhow::Result<Option<String>> {
    let object = aya_obj::Object::parse(EBPF_OBJECT).context("cannot parse the eBPF object")?;
    let mut from = None;
    let mut apart = Vec::new();
    for (name, sibling) in shared::siblings(dir)? {
        // Another namespace's interface under this root, or a gone one;
        // or one being loaded, whose table may yet be made anew.
        if sys::ifindex(&name).is_err() || current_generation(&sibling).is_err() {
            continue;
        }
        match misfit(&object, &sibling) {
            Ok(None) if from.is_none() => from = Some((name, sibling)),
            Ok(None) => {}
            Ok(Some(why)) => apart.push(format!("{name} ({why})")),
            Err(e) => apart.push(format!("{name} ({e:#})")),
        }
    }
    if !apart.is_empty() {
        log::warn!(
            "{iface} shares no table of the host's requests with {}: an answer that returns by one of them to a request that left by the other is dropped (unload and load them with one build to share it)",
            apart.join(", ")
        );
    }
    let Some((name, sibling)) = from else {
        return Ok(None);
    };
    // A sibling unloaded meanwhile: this interface starts a table of its
    // own, as the first one does.
    if let Err(e) = shared::adopt(dir, &sibling) {
        log::warn!("{iface} shares no table of the host's requests with {name}: {e:#}");
        return Ok(None);
    }
    Ok(Some(name))
}

/// How the map pinned in a sibling's folder differs from the one this
/// build's object makes, if it does (an older build's).
fn misfit(object: &aya_obj::Object, sibling: &Path) -> anyhow::Result<Option<String>> {
    for (name, info) in shared::request_maps(sibling)? {
        let def = object
            .maps
            .get(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
        let have = Shape {
            map_type: info.map_type().map_or(u32::MAX, |t| t as u32),
            key: info.key_size(),
            value: info.value_size(),
            entries: info.max_entries(),
            flags: info.map_flags(),
        };
        let want = Shape {
            map_type: def.map_type(),
            key: def.key_size(),
            value: def.value_size(),
            entries: def.max_entries(),
            flags: def.map_flags(),
        };
        if have != want {
            return Ok(Some(format!(
                "its {name} holds {have}, where this build's holds {want}"
            )));
        }
    }
    Ok(None)
}

/// What two builds must agree on for one of them to use the other's map.
#[derive(PartialEq, Eq)]
struct Shape {
    map_type: u32,
    key: u32,
    value: u32,
    entries: u32,
    flags: u32,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries of {} bytes by {}-byte keys (",
            self.entries, self.value, self.key
        )?;
        match Kind::of(self.map_type) {
            Some(kind) => write!(f, "{}", kind.name())?,
            None => write!(f, "map type {}", self.map_type)?,
        }
        write!(f, ", flags {:#x})", self.flags)
    }
}

/// [`SHARED_FLAG`]'s value for a generation of the interface in `dir`:
/// set while another interface shares its table. One that can't be told
/// is set: a lookup on each reply the copy finds unasked is all it costs.
pub fn flag(dir: &Path) -> u32 {
    match shared::sharing(dir) {
        Ok(s) => !s.with.is_empty() as u32,
        Err(e) => {
            log::warn!(
                "cannot tell whether another interface shares the table of the host's requests ({e:#}): its answers are looked up as if one did"
            );
            1
        }
    }
}

/// After `load` of `iface` (folder `dir`) adopted a table: sets
/// [`SHARED_FLAG`] in the generations that the siblings sharing it run, so
/// that they let in the answers to its requests. One that can't be told
/// is named in a warning: a reload of it mends that. A sibling still being
/// loaded reads the flag from the pins itself.
pub fn tell_siblings(iface: &str, dir: &Path) {
    let with = match shared::sharing(dir) {
        Ok(s) => s.with,
        Err(e) => {
            log::warn!("cannot list the interfaces that share {iface}'s requests: {e:#}");
            return;
        }
    };
    for name in with {
        if let Err(e) = tell(&dir.with_file_name(&name)) {
            log::warn!(
                "{name} may drop the answers to requests that leave by {iface}: {e:#}; `filterctl reload --iface {name}` mends it"
            );
        }
    }
}

fn tell(sibling: &Path) -> anyhow::Result<()> {
    let Ok(current) = current_generation(sibling) else {
        return Ok(());
    };
    if !current.dir.join(SHARED_FLAG.symbol).exists() {
        bail!(
            "its generation {} is an older build's, without {}",
            current.generation,
            SHARED_FLAG.symbol
        );
    }
    flags::write(&current.dir, SHARED_FLAG, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_says_what_differs() {
        let shape = Shape {
            map_type: aya::maps::MapType::Array as u32,
            key: 4,
            value: 16,
            entries: 65536,
            flags: 0,
        };
        assert_eq!(
            shape.to_string(),
            "65536 entries of 16 bytes by 4-byte keys (array, flags 0x0)"
        );
        let odd = Shape {
            map_type: 999,
            ..shape
        };
        assert!(odd.to_string().contains("map type 999"), "{odd}");
    }
}
