//! Types and constants shared by the XDP program and the controller, plus the
//! packet decisions that never touch packet memory.
#![no_std]

pub mod abi;
pub mod capture;
pub mod decide;
pub mod guard;
pub mod hints;
pub mod packet;
pub mod shapes;
pub mod shared;

pub use abi::*;
pub use capture::*;
