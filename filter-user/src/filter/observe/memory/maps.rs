//! The maps the eBPF object defines, and the max_entries they are given:
//! by the loader, or by the loader of a running filter, read from its pins.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use filter_common::STATE_MAPS;

use super::kernel::{Kind, Shape};
use crate::state::{PinRoot, current_generation, pins::open_map_data};

/// A map's max_entries as the loader sets it, over the object's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entries {
    Fixed(u32),
    /// One per possible CPU, and this many more.
    CpusPlus(u32),
    /// Slots of a per-CPU array that shrink as CPUs grow
    /// ([`filter_common::per_cpu_slots`]).
    PerCpuSlots {
        value_size: u32,
        budget: u64,
        min: u32,
        max: u32,
    },
}

impl Entries {
    pub fn at(self, cpus: u32) -> u32 {
        match self {
            Entries::Fixed(n) => n,
            Entries::CpusPlus(n) => cpus.saturating_add(n),
            Entries::PerCpuSlots {
                value_size,
                budget,
                min,
                max,
            } => filter_common::per_cpu_slots(cpus, value_size, budget, min, max),
        }
    }
}

/// A map of the object: its name (a section's, for global data) and shape.
#[derive(Clone, Debug)]
pub struct MapDef {
    pub name: String,
    pub shape: Shape,
}

/// Every map the loader makes from `object`, by name. An error for a map
/// of a type the kernel formulas do not cover, so that a new one is sized
/// before it ships.
pub fn definitions(object: &[u8]) -> anyhow::Result<Vec<MapDef>> {
    let obj = aya_obj::Object::parse(object).context("cannot parse the eBPF object")?;
    let mut defs = obj
        .maps
        .iter()
        .map(|(name, m)| {
            let kind = Kind::of(m.map_type()).ok_or_else(|| {
                anyhow!("map {name} is of type {}, which is not sized", m.map_type())
            })?;
            let shape = Shape {
                kind,
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries: m.max_entries(),
                flags: m.map_flags(),
            };
            Ok(MapDef {
                name: name.clone(),
                shape,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(defs)
}

/// `sizes` with the max_entries that interface `iface`'s running maps
/// were given in place of the object's (a rule file's `table_size`, the
/// hints a list needs), but for those that follow the CPUs: what the
/// running filter takes, whichever rule file it was loaded with. A map the
/// running generation lacks keeps its size.
pub(crate) fn running_sizes<'a>(
    root: &PinRoot,
    iface: &str,
    defs: &'a [MapDef],
    sizes: &[(&'a str, Entries)],
) -> anyhow::Result<Vec<(&'a str, Entries)>> {
    let iface_dir = root.iface_dir(iface);
    let generation = current_generation(&iface_dir)?;
    let pinned = |name: &str| {
        let dir: &Path = if STATE_MAPS.contains(&name) {
            &iface_dir
        } else {
            &generation.dir
        };
        let info = open_map_data(dir, name).ok()?.info().ok()?;
        Some(info.max_entries())
    };
    let mut out = Vec::new();
    for d in defs.iter().filter(|d| !d.name.starts_with('.')) {
        let given = sizes.iter().find(|(n, _)| *n == d.name).map(|(_, e)| *e);
        let entries = match given {
            Some(e @ Entries::CpusPlus(_)) => e,
            _ => pinned(&d.name)
                .map(Entries::Fixed)
                .or(given)
                .unwrap_or(Entries::Fixed(d.shape.max_entries)),
        };
        out.push((d.name.as_str(), entries));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use filter_common::{MAP_COUNTERS, MAP_DOOR, MAP_REPLIES};

    use super::*;

    #[test]
    fn the_objects_maps_are_all_sized() {
        let defs = definitions(crate::EBPF_OBJECT).unwrap_or_else(|e| panic!("{e:#}"));
        for name in [MAP_COUNTERS, MAP_DOOR, MAP_REPLIES, ".rodata"] {
            assert!(defs.iter().any(|d| d.name == name), "{name} missing");
        }
        assert!(defs.is_sorted_by(|a, b| a.name < b.name), "by name");
    }

    #[test]
    fn entries_follow_the_cpus_only_when_told() {
        assert_eq!(Entries::Fixed(7).at(192), 7);
        assert_eq!(Entries::CpusPlus(1).at(192), 193);
    }
}
