//! filterctl: loads the XDP filter, feeds it rule files and reads its counters.

pub mod bans;
pub mod cli;
pub mod diff;
pub mod loader;
pub mod lockout;
pub mod pins;
pub mod prefixes;
pub mod replay;
pub mod rules;
pub mod serve;
pub mod stats;
pub mod status;
pub mod testnet;
pub mod testrun;
pub mod units;

/// The XDP object built from filter-ebpf, embedded so filterctl is one binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter"));

/// Floor programs (drop all, pass all, transmit all) for the benchmarks.
pub static FLOORS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floors"));
