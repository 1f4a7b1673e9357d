//! The u64 cell that CPUs share, as the decision's per-source state and the
//! reply guard's budgets use it: each environment provides its own.

/// A u64 that all CPUs update: `AtomicU64` on the host; in the XDP program
/// the BPF atomic add, which returns nothing (a fetching add needs BPF cpu
/// v3, which the build does not select), plus plain 8-byte loads and stores.
pub trait Shared64 {
    fn load(&self) -> u64;
    fn store(&self, v: u64);
    /// Atomic add, wrapping (adding `0 - x` subtracts).
    fn add(&self, v: u64);
}

#[cfg(target_has_atomic = "64")]
impl Shared64 for core::sync::atomic::AtomicU64 {
    fn load(&self) -> u64 {
        self.load(core::sync::atomic::Ordering::Relaxed)
    }
    fn store(&self, v: u64) {
        self.store(v, core::sync::atomic::Ordering::Relaxed)
    }
    fn add(&self, v: u64) {
        self.fetch_add(v, core::sync::atomic::Ordering::Relaxed);
    }
}
