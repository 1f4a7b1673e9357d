//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cases;
pub mod cli;
pub mod frames;
pub mod model;

/// Fails the test, with what to do, when the machine cannot load BPF
/// programs: these tests must never pass by skipping.
pub fn require_bpf() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test loads XDP programs and needs root with BPF: run `sudo cargo xtask test`");
    }
}
