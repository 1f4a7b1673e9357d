//! The XDP program's clock: CLOCK_MONOTONIC_COARSE in ns, as the helper
//! returns it, but asked of the helper once per jiffy per CPU.
//!
//! The coarse clock only moves on the tick, like jiffies, and the helper
//! costs ~18 ns a packet here (a seqcount read of the timekeeper), against
//! two inlined instructions for `bpf_jiffies64`. So each CPU keeps the last
//! (jiffies, ns) pair it read and reuses the ns while jiffies stands still.
//! A CPU that reads in the instant between a tick's jiffies update and its
//! clock update keeps the previous tick's ns for that tick: the time lags
//! by at most one tick (as coarse time already may) and never runs back.
//!
//! A test run may be given its time instead (`filterctl replay` on the
//! capture's clock, [`filter_common::CONFIG_VIRTUAL_CLOCK`]); for an
//! attached filter the verifier removes that branch.

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::PerCpuArray,
};
use filter_common::CONFIG_VIRTUAL_CLOCK;

/// Per CPU: [jiffies, coarse ns read at that jiffy].
#[map(name = "CLOCK")]
static CLOCK: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn now() -> u64 {
    if crate::globals::flags() & CONFIG_VIRTUAL_CLOCK != 0 {
        return crate::globals::virtual_now();
    }
    // SAFETY: no preconditions (the verifier inlines it as a load).
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(slot) = CLOCK.get_ptr_mut(0) else {
        // SAFETY: no preconditions.
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    // SAFETY: this CPU's slot, used by this program's run only.
    let slot = unsafe { &mut *slot };
    if slot[0] == jiffies {
        return slot[1];
    }
    // SAFETY: no preconditions.
    let ns = unsafe { bpf_ktime_get_coarse_ns() };
    slot[0] = jiffies;
    slot[1] = ns;
    ns
}

/// The coarse clock itself, asked of the helper every time: for the egress
/// recorder, which runs once per request sent, not per frame received.
#[inline(always)]
pub fn coarse() -> u64 {
    if crate::globals::flags() & CONFIG_VIRTUAL_CLOCK != 0 {
        return crate::globals::virtual_now();
    }
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}
