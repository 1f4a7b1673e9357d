//! Operations on a filter, on top of the pinned state, by what an operator
//! would name them: `lifecycle` (load, reload, apply, mode, unload: what an
//! interface runs), `observe` (status, stats, top, diff: reading what it
//! does), `guard` (bans, the never-ban set, the reply guard's open ports,
//! surge detection: the state the filter keeps about sources); `capture`
//! (copies of dropped frames) and the `simulator` (frames run through an
//! unattached copy).

pub(crate) mod capture;
pub(crate) mod guard;
pub mod lifecycle;
pub mod observe;
pub mod simulator;
