//! Types and constants shared by the XDP program and the controller, plus the
//! packet decisions that never touch packet memory.
#![no_std]

pub mod abi;
pub mod capture;
pub mod decide;
pub mod frags;
pub mod guard;
pub mod hints;
pub mod limiter;
pub mod packet;
pub mod shapes;
pub mod shared;
pub mod v4lists;

pub use abi::*;
pub use capture::*;
