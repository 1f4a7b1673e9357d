//! A CPU's block of counters (see [`filter_common::MAP_COUNTERS`]): the
//! filter's reason and surge counters, and the benchmark floor that
//! measures what counting costs.

use aya_ebpf::{helpers::generated::bpf_get_smp_processor_id, maps::Array};
use filter_common::{
    CpuCounters, GUARD_LEN_BUCKETS, GUARD_LEN_SHIFT, GUARD_SLOTS, Reason, STATS_MONITOR_SLOT,
};

/// This CPU's block, found once per frame.
#[derive(Clone, Copy)]
pub struct Counters(*mut CpuCounters);

impl Counters {
    /// This CPU's block of `map`, which holds one per possible CPU (sized
    /// at load); None only if it were sized short.
    #[inline(always)]
    pub fn of_this_cpu(map: &Array<CpuCounters>) -> Option<Self> {
        // SAFETY: no preconditions; the verifier inlines it on x86-64.
        let cpu = unsafe { bpf_get_smp_processor_id() };
        map.get_ptr_mut(cpu).map(Counters)
    }

    /// Counts `frames` UDP frames from `port` for the surge detector: 1,
    /// or for a first fragment its datagram's (see
    /// [`filter_common::frags::datagram_frames`]).
    #[inline(always)]
    pub fn udp_port(self, port: u16, frames: u64) {
        // SAFETY: a live, aligned map value that only this CPU writes (an
        // XDP program is not preempted by another run on its CPU): plain
        // adds, where a slot shared by all CPUs needed atomic ones, dearest
        // when two CPUs count the same port (the bench's section 1c).
        unsafe { (*self.0).udp_ports[port as usize] += frames }
    }

    /// Counts a reply of `bytes` from the guarded port of `slot` (the guard
    /// table's byte) as `kind` (GUARD_UNSOLICITED or GUARD_SOLICITED), by
    /// length; ports without a slot of their own are not counted.
    #[inline(always)]
    pub fn guard_length(self, slot: u8, kind: usize, bytes: u64) {
        let s = (slot as usize).wrapping_sub(1);
        let b = ((bytes >> GUARD_LEN_SHIFT) as usize).min(GUARD_LEN_BUCKETS - 1);
        if s >= GUARD_SLOTS || kind > 1 {
            return;
        }
        // SAFETY: as in udp_port; the indexes are checked above.
        let c = unsafe { &mut (*self.0).guard_lengths[s][kind][b] };
        c.packets += 1;
        c.bytes += bytes;
    }

    /// Counts a frame of `bytes` that got its verdict for `reason`.
    #[inline(always)]
    pub fn reason(self, reason: Reason, bytes: u64) {
        self.slot(reason as usize, bytes);
    }

    /// Counts a frame that a reason said to drop and monitor mode passed.
    #[inline(always)]
    pub fn monitored(self, bytes: u64) {
        self.slot(STATS_MONITOR_SLOT as usize, bytes);
    }

    #[inline(always)]
    fn slot(self, i: usize, bytes: u64) {
        // SAFETY: as in udp_port; `i` is a reason or the monitor slot.
        let c = unsafe { &mut (*self.0).reasons[i] };
        c.packets += 1;
        c.bytes += bytes;
    }
}
