//! What one interface's filter costs in kernel memory, map by map, at any
//! number of CPUs: computed from the map definitions in the eBPF object
//! and the sizes the loader gives them (`maps`), with the kernel's own
//! formulas (`kernel`), into a table (`table`). `filterctl status
//! --memory` and `cargo xtask bench` print it.

pub mod kernel;
mod maps;
mod table;

pub(crate) use self::{maps::running_sizes, table::Footprint};
pub use self::{
    maps::{Entries, definitions},
    table::{CPU_COLUMNS, Row, footprint, render},
};
