//! The contract of `filterctl capture`: which dropped frames the program
//! copies to user space, and the record each copy is. The program checks
//! [`CaptureConfig::until_ns`] on its drop path only; while no capture runs
//! it is 0 and nothing else happens. The maps' names are with the others
//! in `abi`, whose `STATE_MAPS` keeps them across reloads.

use core::mem::size_of;

use crate::abi::Reason;

/// Size of the ring ([`crate::abi::MAP_CAPTURE_RING`]): about 670 records
/// in flight.
pub const CAPTURE_RING_BYTES: u32 = 1 << 20;
/// Most bytes of a frame a record holds: an Ethernet frame of a 1500-byte
/// MTU with two VLAN tags, rounded up to a multiple of 8.
pub const CAPTURE_SNAP_MAX: usize = 1528;
/// [`CaptureConfig::rule`] for frames whichever rule (or none) matched.
pub const CAPTURE_ANY_RULE: u32 = u32::MAX;
/// [`CaptureRecord::rule`] when no rule matched the frame.
pub const CAPTURE_NO_RULE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    /// CLOCK_MONOTONIC_COARSE deadline in ns; 0: no capture. The
    /// controller pushes it forward while it runs, so a capture whose
    /// controller died stops by itself.
    pub until_ns: u64,
    /// Bit `1 << reason` for each [`Reason`] to copy.
    pub reasons: u32,
    /// Rule index to copy, or [`CAPTURE_ANY_RULE`].
    pub rule: u32,
    /// Copy one frame in `sample` (per CPU); 0 and 1 copy every one.
    pub sample: u32,
    /// Frames per second each CPU may copy.
    pub per_cpu_pps: u32,
    /// Bytes of each frame to copy, at most [`CAPTURE_SNAP_MAX`].
    pub snaplen: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<CaptureConfig>() == 32);

impl CaptureConfig {
    /// Whether a frame with this reason and rule is one to copy.
    pub fn wants(&self, reason: Reason, rule: u32) -> bool {
        self.reasons & (1 << reason as u32) != 0
            && (self.rule == CAPTURE_ANY_RULE || self.rule == rule)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureWindow {
    /// Start of the current one-second window.
    pub start_ns: u64,
    /// Frames copied in it.
    pub taken: u32,
    /// Frames that matched, for sampling.
    pub seen: u32,
}
const _: () = assert!(size_of::<CaptureWindow>() == 16);

impl CaptureWindow {
    /// Counts a matching frame at `now` and says whether to copy it: one in
    /// `sample`, at most `per_cpu_pps` per one-second window.
    pub fn take(&mut self, now: u64, c: &CaptureConfig) -> bool {
        self.seen = self.seen.wrapping_add(1);
        if c.sample > 1 && !self.seen.is_multiple_of(c.sample) {
            return false;
        }
        if now.wrapping_sub(self.start_ns) >= 1_000_000_000 {
            self.start_ns = now;
            self.taken = 0;
        }
        if self.taken >= c.per_cpu_pps {
            return false;
        }
        self.taken += 1;
        true
    }
}

/// One copied frame, as the ring buffer carries it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CaptureRecord {
    /// Length of the whole frame.
    pub frame_len: u32,
    /// Bytes of it in `data`.
    pub cap_len: u32,
    pub reason: u32,
    /// Index of the rule that matched, or [`CAPTURE_NO_RULE`].
    pub rule: u32,
    pub data: [u8; CAPTURE_SNAP_MAX],
}
const _: () = assert!(size_of::<CaptureRecord>() == 16 + CAPTURE_SNAP_MAX);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for CaptureConfig {}
    unsafe impl aya::Pod for CaptureWindow {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sample: u32, pps: u32) -> CaptureConfig {
        CaptureConfig {
            until_ns: 1,
            reasons: 1 << Reason::RuleDrop as u32,
            rule: CAPTURE_ANY_RULE,
            sample,
            per_cpu_pps: pps,
            snaplen: 128,
            _pad: 0,
        }
    }

    #[test]
    fn reasons_and_rules_select() {
        let mut c = config(1, 10);
        assert!(c.wants(Reason::RuleDrop, 3));
        assert!(!c.wants(Reason::DenyDrop, 3));
        c.rule = 2;
        assert!(!c.wants(Reason::RuleDrop, 3));
        assert!(c.wants(Reason::RuleDrop, 2));
    }

    #[test]
    fn one_in_sample_at_most_pps_a_second() {
        let c = config(3, 2);
        let mut w = CaptureWindow::default();
        let taken: u32 = (0..9).map(|_| u32::from(w.take(5, &c))).sum();
        // 3 of 9 sampled, 2 of them within the rate.
        assert_eq!(taken, 2);
        let later: u32 = (0..3).map(|_| u32::from(w.take(1_000_000_005, &c))).sum();
        assert_eq!(later, 1, "a new window");
    }
}
