//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cases;
pub mod cli;
pub mod daemon;
pub mod lab;
pub mod model;
pub mod pcap;
pub mod peers;
pub mod raw;
pub mod tcpdump;

pub use filter_testkit::{frames, require_bpf};

use std::sync::atomic::{AtomicBool, Ordering};

/// Sets its flag when dropped: stops a test's traffic threads on every exit
/// path (a failed assertion included), or a thread scope would wait for
/// them forever.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
