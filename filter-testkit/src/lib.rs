//! Test tools for filterctl, kept out of the product: test hosts (network
//! namespaces joined by a veth pair), hand-built frames, and the floor
//! programs the benchmarks measure the filter against.

pub mod bgp;
pub mod child;
pub mod frames;
pub mod net;

/// Floor programs (drop all, pass all, transmit all) for the benchmarks.
pub static FLOORS_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("FLOORS_OBJECT_PATH"));

/// Fails the test, with what to do, when the machine cannot load BPF
/// programs: these tests must never pass by skipping.
pub fn require_bpf() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test loads XDP programs and needs root with BPF: run `sudo cargo xtask test`");
    }
}
