//! Per-source-port UDP counting: the filter's surge counters, and the
//! benchmark floor that measures what they cost.

use aya_ebpf::{helpers::generated::bpf_get_smp_processor_id, maps::Array};
use filter_common::udp_port_slot;

/// Counts a frame from `port` in this CPU's shard of `map` (see
/// [`filter_common::MAP_UDP_PORTS`]): a plain add, since no other CPU
/// writes the shard, where one slot shared by all CPUs needed two atomic
/// adds (about 2 ns a frame here, measured in the bench's section 1c).
#[inline(always)]
pub fn count(map: &Array<u64>, port: u16) {
    // SAFETY: no preconditions; the verifier inlines it on x86-64.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if let Some(c) = map.get_ptr_mut(udp_port_slot(cpu, port)) {
        // SAFETY: a live, aligned map value that only this CPU writes, and
        // an XDP program is not preempted by another run on its CPU.
        unsafe { *c += 1 }
    }
}
