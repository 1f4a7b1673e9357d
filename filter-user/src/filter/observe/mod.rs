//! Reading what a loaded filter does, from its pins, without changing it:
//! what runs (`status`), its counters (`counters`, summed into `stats`),
//! the limiter table (`limiter`, `gauges`), who is over a limit or banned
//! (`top`), what a reload would change (`diff`), and what its maps cost
//! in kernel memory (`memory`).

pub mod counters;
pub(crate) mod diff;
pub(crate) mod gauges;
pub(crate) mod limiter;
pub mod memory;
pub mod stats;
pub(crate) mod status;
pub(crate) mod top;
