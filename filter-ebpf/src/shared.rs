//! A u64 shared by all CPUs. Core for the BPF target has no atomic
//! read-modify-write, so the add calls LLVM's intrinsic (emitted as the BPF
//! atomic add); loads and stores of an aligned u64 are single instructions.

use core::{
    cell::UnsafeCell,
    intrinsics::{AtomicOrdering, atomic_xadd},
};

use filter_common::shared::Shared64;

#[repr(transparent)]
pub struct BpfU64(UnsafeCell<u64>);

impl Shared64 for BpfU64 {
    #[inline(always)]
    fn load(&self) -> u64 {
        // An aligned 8-byte load is one BPF instruction, atomic by itself;
        // LLVM's BPF backend cannot select an atomic load for cpu v1.
        // SAFETY: the cell points into a live, aligned map value.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }

    #[inline(always)]
    fn store(&self, v: u64) {
        // SAFETY: as above; one 8-byte store instruction.
        unsafe { core::ptr::write_volatile(self.0.get(), v) }
    }

    #[inline(always)]
    fn add(&self, v: u64) {
        // The result is unused, so LLVM emits the plain BPF atomic add.
        // SAFETY: as above.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(self.0.get(), v) };
    }
}
