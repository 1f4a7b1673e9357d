//! The state the filter keeps about sources and ports, beside its rules:
//! operator bans (`bans`), the sources never banned (`neverban`), the reply
//! guard's copy of the host's open requests (`open_ports`), and the surge
//! detection behind `serve`'s adaptive blocks (`surge`).

pub(crate) mod bans;
pub(crate) mod neverban;
pub(crate) mod open_ports;
pub(crate) mod surge;
