//! What an interface runs: loading the filter (`load`), replacing its rule
//! set atomically (`reload`, built and switched to in `switch`, with the
//! state maps carried over by `state_maps`), bringing it in step with a
//! file (`apply`, `converge`), flipping its mode (`mode`), removing it
//! (`unload`). `program` is the one way the object gets into the kernel,
//! `generation` writes and pins what a generation is, `recorder` hooks the
//! reply guard's request recorder to egress, `request_table` shares the
//! host's requests between its interfaces, `flags` are the globals the
//! controller writes while a program runs.

pub(crate) mod apply;
pub(crate) mod converge;
mod failpoint;
pub(crate) mod flags;
pub(crate) mod generation;
pub mod load;
pub mod mode;
pub mod program;
pub mod provenance;
pub(crate) mod recorder;
pub mod reload;
pub mod request_table;
pub mod rule_slots;
pub mod state_maps;
pub mod switch;
pub mod unload;
