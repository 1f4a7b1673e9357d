//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cases;
pub mod cli;
pub mod daemon;
pub mod model;
pub mod peers;

pub use filter_testkit::{frames, require_bpf};
