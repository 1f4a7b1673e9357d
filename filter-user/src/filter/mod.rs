//! Operations on a filter: loading, reloading and unloading it, and reading
//! what it does (status, counters, bans, what a reload would change), on
//! top of the pinned state; and the simulator that runs frames through an
//! unattached copy.

pub mod apply;
pub mod bans;
pub mod capture;
pub mod converge;
pub mod counters;
pub mod diff;
pub mod failpoint;
pub mod flags;
pub mod gauges;
pub mod limiter;
pub mod load;
pub mod neverban;
pub mod open_ports;
pub mod provenance;
pub mod recorder;
pub mod simulator;
pub mod stats;
pub mod status;
pub mod surge;
