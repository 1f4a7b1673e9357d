//! The table of what each map costs at this host's CPUs and at
//! [`CPU_COLUMNS`], with its totals, and its text.

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    kernel::{self, Shape},
    maps::{Entries, MapDef},
};

/// The CPU counts every table shows besides this host's.
pub const CPU_COLUMNS: [u32; 3] = [2, 64, 192];

/// How a map's memory grows with the CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Layout {
    /// A per-CPU map type: a value per CPU in every entry.
    PerCpu,
    /// A shared array with an entry per CPU (COUNTERS).
    CpuBlocks,
    Shared,
}

impl Layout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::PerCpu => "per-CPU",
            Layout::CpuBlocks => "block per CPU",
            Layout::Shared => "shared",
        }
    }
}

/// One map's line of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub map: String,
    pub(crate) kind: &'static str,
    pub(crate) layout: Layout,
    /// max_entries on this host.
    pub(crate) max_entries: u32,
    /// Allocated entry by entry (tries): the figures are the map full, where
    /// the kernel counts only what it holds.
    pub when_full: bool,
    pub bytes_here: u64,
    /// At each of `Footprint::cpus`.
    pub bytes_at: Vec<u64>,
}

/// The maps of one interface's filter and what they cost.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    host_cpus: u32,
    pub(crate) cpus: Vec<u32>,
    /// Largest at the most CPUs first.
    pub maps: Vec<Row>,
    /// What the maps take once loaded, before they hold anything: all but
    /// those allocated entry by entry.
    pub total_here: u64,
    pub total_at: Vec<u64>,
    /// Of those totals, what per-CPU maps and blocks take.
    per_cpu_here: u64,
    per_cpu_at: Vec<u64>,
    /// The totals with the maps allocated entry by entry full.
    full_here: u64,
    full_at: Vec<u64>,
}

/// The table for maps `defs` sized by `sizes` (the loader's, by map name)
/// on a host of `host_cpus`, at [`CPU_COLUMNS`] too.
pub fn footprint(defs: &[MapDef], sizes: &[(&str, Entries)], host_cpus: u32) -> Footprint {
    let cpus = CPU_COLUMNS.to_vec();
    let mut maps: Vec<Row> = defs
        .iter()
        .map(|d| {
            let entries = sizes
                .iter()
                .find(|(n, _)| *n == d.name)
                .map_or(Entries::Fixed(d.shape.max_entries), |(_, e)| *e);
            let at = |c: u32| {
                let shape = Shape {
                    max_entries: entries.at(c),
                    ..d.shape
                };
                kernel::usage(&shape, c, None)
            };
            let layout = match (d.shape.kind.per_cpu(), entries) {
                (true, _) => Layout::PerCpu,
                (false, Entries::CpusPlus(_)) => Layout::CpuBlocks,
                (false, Entries::Fixed(_) | Entries::PerCpuSlots { .. }) => Layout::Shared,
            };
            Row {
                map: d.name.clone(),
                kind: d.shape.kind.name(),
                layout,
                max_entries: entries.at(host_cpus),
                when_full: d.shape.allocated_per_entry(),
                bytes_here: at(host_cpus),
                bytes_at: cpus.iter().map(|c| at(*c)).collect(),
            }
        })
        .collect();
    maps.sort_by(|a, b| {
        b.bytes_at
            .last()
            .cmp(&a.bytes_at.last())
            .then(a.map.cmp(&b.map))
    });
    let sum = |keep: fn(&Row) -> bool| {
        let (mut here, mut at) = (0, vec![0; cpus.len()]);
        for r in maps.iter().filter(|r| keep(r)) {
            here += r.bytes_here;
            at.iter_mut().zip(&r.bytes_at).for_each(|(t, b)| *t += b);
        }
        (here, at)
    };
    let (total_here, total_at) = sum(|r| !r.when_full);
    let (per_cpu_here, per_cpu_at) = sum(|r| r.layout != Layout::Shared);
    let (full_here, full_at) = sum(|_| true);
    Footprint {
        host_cpus,
        cpus,
        maps,
        total_here,
        total_at,
        per_cpu_here,
        per_cpu_at,
        full_here,
        full_at,
    }
}
/// The table as text, in MB (10^6 bytes, the unit of the memory goal):
/// one line per map, the totals last.
pub fn render(f: &Footprint, indent: &str) -> String {
    let mb = |b: u64| format!("{:.2}", b as f64 / 1e6);
    let mut o = String::new();
    let here = format!("here ({})", f.host_cpus);
    let _ = write!(
        o,
        "{indent}{:<16} {:<15} {:<13} {:>9} {:>10}",
        "map", "kind", "layout", "entries", here
    );
    for c in &f.cpus {
        let _ = write!(o, " {:>9}", format!("{c} CPUs"));
    }
    o.push('\n');
    let mut line = |name: &str, kind: &str, layout: &str, entries: &str, here, at: &[u64]| {
        let _ = write!(
            o,
            "{indent}{name:<16} {kind:<15} {layout:<13} {entries:>9} {:>10}",
            mb(here)
        );
        for b in at {
            let _ = write!(o, " {:>9}", mb(*b));
        }
        o.push('\n');
    };
    for r in &f.maps {
        let name = format!("{}{}", r.map, if r.when_full { " *" } else { "" });
        let entries = r.max_entries.to_string();
        line(
            &name,
            r.kind,
            r.layout.name(),
            &entries,
            r.bytes_here,
            &r.bytes_at,
        );
    }
    let (per_cpu, total, full) = (&f.per_cpu_at, &f.total_at, &f.full_at);
    line("per-CPU part", "", "", "", f.per_cpu_here, per_cpu);
    line("total at load", "", "", "", f.total_here, total);
    line("total, * full", "", "", "", f.full_here, full);
    let _ = writeln!(
        o,
        "{indent}MB (10^6 bytes) as the kernel counts them (memlock). * allocated entry by entry:\n\
         {indent}shown full, counted only in the last total; the kernel counts what they hold."
    );
    o
}

#[cfg(test)]
mod tests {
    use filter_common::{CpuCounters, MAP_COUNTERS, MAP_DOOR, MAP_REPLIES};

    use super::{super::maps::definitions, *};

    fn defs() -> Vec<MapDef> {
        definitions(crate::EBPF_OBJECT).unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn counter_blocks_follow_the_cpus() {
        let defs = defs();
        let f = footprint(&defs, &[(MAP_COUNTERS, Entries::CpusPlus(1))], 2);
        let row = |name: &str| {
            f.maps
                .iter()
                .find(|r| r.map == name)
                .unwrap_or_else(|| panic!("no row {name}"))
        };
        let counters = row(MAP_COUNTERS);
        assert_eq!(counters.layout, Layout::CpuBlocks);
        assert_eq!(counters.max_entries, 3);
        // A block for each of 62 more CPUs, the whole rounded to pages.
        let grown = counters.bytes_at[1] - counters.bytes_at[0];
        let blocks = 62 * size_of::<CpuCounters>() as u64;
        assert!(grown.abs_diff(blocks) < 4096, "{grown} for {blocks}");
        assert_eq!(row(MAP_DOOR).layout, Layout::PerCpu);
        assert_eq!(row(MAP_REPLIES).layout, Layout::Shared);
        assert_eq!(f.cpus, CPU_COLUMNS);
        // The 2-CPU column is this host's, for a host of 2.
        assert_eq!(f.total_at[0], f.total_here);
    }

    #[test]
    fn totals_are_the_rows_summed() {
        let f = footprint(&defs(), &[], 4);
        for (i, total) in f.total_at.iter().enumerate() {
            let sum: u64 = f.maps.iter().map(|r| r.bytes_at[i]).sum();
            assert_eq!(f.full_at[i], sum);
            let at_load: u64 = f
                .maps
                .iter()
                .filter(|r| !r.when_full)
                .map(|r| r.bytes_at[i])
                .sum();
            assert_eq!(*total, at_load);
            let per_cpu: u64 = f
                .maps
                .iter()
                .filter(|r| r.layout != Layout::Shared)
                .map(|r| r.bytes_at[i])
                .sum();
            assert_eq!(f.per_cpu_at[i], per_cpu);
        }
        let largest = f.maps.iter().map(|r| r.bytes_at[2]).collect::<Vec<_>>();
        assert!(largest.is_sorted_by(|a, b| a >= b), "sorted, largest first");
        assert!(render(&f, "").contains("total at load"));
    }
}
