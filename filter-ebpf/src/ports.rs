//! Per-source-port UDP counting: the filter's surge counters, and the
//! benchmark floor that measures what they cost.

use aya_ebpf::maps::Array;
use filter_common::{Counter, decide::Shared64 as _};

use crate::shared::BpfU64;

/// Adds a frame of `bytes` to `port`'s counter. Every CPU writes the same
/// slots (one array that userspace reads through one mmap, rather than a
/// per-CPU copy per port), hence the atomic adds.
#[inline(always)]
pub fn count(map: &Array<Counter>, port: u16, bytes: u64) {
    if let Some(c) = map.get_ptr_mut(port as u32) {
        // SAFETY: a live, 8-byte aligned map value; Counter is two u64s
        // and BpfU64 is a transparent u64.
        let cells = unsafe { &*(c as *const [BpfU64; 2]) };
        cells[0].add(1);
        cells[1].add(bytes);
    }
}
