//! Fragments: the datagram a fragment belongs to (what the follow-drop
//! memory keys), the policy for later fragments no earlier step decided,
//! and how many frames a first fragment's datagram arrives in (what the
//! surge counters count for it).

use crate::abi::{CONFIG_FRAGMENT_DROP, CONFIG_REPLY_GUARD, FragKey, Reason};
use crate::packet::{Addr, Frag, Packet, addr_bytes};

/// The datagram a fragment belongs to: what remembers that its first
/// fragment was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub family: u8,
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    /// The protocol every fragment names ([`Packet::frag_proto`]).
    pub proto: u8,
}

impl Datagram {
    /// As the shared fragment map keys it.
    #[inline(always)]
    pub fn key(&self) -> FragKey {
        FragKey {
            src: addr_bytes(&self.src),
            dst: addr_bytes(&self.dst),
            id: self.id,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }

    /// The same, as words: compared in five loads, and hashed.
    #[inline(always)]
    pub fn words(&self) -> [u64; 5] {
        [
            self.src[0],
            self.src[1],
            self.dst[0],
            self.dst[1],
            self.id as u64 | (self.proto as u64) << 32 | (self.family as u64) << 40,
        ]
    }
}

#[inline(always)]
pub fn datagram(p: &Packet) -> Datagram {
    Datagram {
        family: p.family,
        src: p.src,
        dst: p.dst,
        id: p.frag_id,
        proto: p.frag_proto,
    }
}

/// What the fragment memory holds for a datagram: whether its first
/// fragment passed or was dropped, if it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Unseen,
    Dropped,
    Passed,
}

/// The low bit of a fragment memory value: set when the first fragment
/// passed. The rest is the deadline (one nanosecond coarser).
pub const FRAG_PASSED: u64 = 1;

/// The value the fragment memory stores: the deadline, its low bit the
/// verdict.
#[inline(always)]
pub fn frag_value(passed: bool, until: u64) -> u64 {
    (until & !FRAG_PASSED) | passed as u64
}

/// What a stored value says at `now`.
#[inline(always)]
pub fn frag_seen(value: u64, now: u64) -> Seen {
    if now >= value & !FRAG_PASSED {
        Seen::Unseen
    } else if value & FRAG_PASSED != 0 {
        Seen::Passed
    } else {
        Seen::Dropped
    }
}

/// Whether `new` replaces the stored `old` (read at `now`): a pass
/// replaces anything but a longer pass; a drop never replaces a live pass,
/// so a forged first fragment cannot turn away the later fragments of a
/// real datagram whose first one passed, before or after it. A pass over a
/// drop is what a solicited first fragment writes over a forged one's.
#[inline(always)]
pub fn frag_replaces(old: u64, new: u64, now: u64) -> bool {
    match (frag_seen(old, now), new & FRAG_PASSED != 0) {
        (Seen::Unseen, _) => true,
        (Seen::Passed, false) => false,
        (Seen::Dropped, true) => true,
        _ => old < new,
    }
}

/// Reason for a non-first fragment that no earlier step decided: under
/// `fragments = "drop"`, dropped; under "pass", passed when its first
/// fragment passed, or (its first unseen) when the reply guard is off or
/// the host asked its source something (`asked`); else dropped as the
/// policy's drop, so that a flood of later fragments does not fill the
/// kernel's reassembly queues.
#[inline(always)]
pub fn later_fragment_reason(
    config_flags: u32,
    seen: Seen,
    asked: impl FnOnce() -> bool,
) -> Reason {
    if config_flags & CONFIG_FRAGMENT_DROP != 0 {
        return Reason::FragmentDrop;
    }
    if seen == Seen::Passed || config_flags & CONFIG_REPLY_GUARD == 0 || asked() {
        Reason::FragmentPass
    } else {
        Reason::FragmentDrop
    }
}

/// The most frames one first fragment counts for: what the largest UDP
/// datagram (64 KiB) takes at IPv6's minimum MTU (54 frames), rounded up.
/// A forged first fragment that carries a few bytes of a datagram that
/// claims 64 KiB counts for no more.
pub const MAX_DATAGRAM_FRAMES: u64 = 64;

/// The frames a UDP datagram of `udp_len` bytes (its header's length field)
/// arrives in when its first fragment carries `here` of them: a sender
/// fragments at its path MTU, so no later fragment carries more than the
/// first. At least 1, at most [`MAX_DATAGRAM_FRAMES`]. The surge counters
/// count a first fragment for these frames, since its later fragments carry
/// no port: a flood of 3 KB answers in 3 fragments each weighs 3 frames a
/// datagram, as it weighs on the link.
#[inline(always)]
pub fn datagram_frames(udp_len: u32, here: u32) -> u64 {
    // `checked_div`: no panic path for the BPF backend to keep.
    let frames = udp_len
        .saturating_add(here.saturating_sub(1))
        .checked_div(here)
        .unwrap_or(1) as u64;
    frames.clamp(1, MAX_DATAGRAM_FRAMES)
}

/// The frames the surge counters count for a UDP packet that is not a
/// later fragment: its datagram's for a first fragment (whose
/// `payload_len` is the whole datagram's), else 1.
#[inline(always)]
pub fn udp_frames(p: &Packet) -> u64 {
    if p.frag != Frag::First {
        return 1;
    }
    // The UDP bytes this frame carries: its payload from `payload_off`,
    // plus the 8-byte header before it.
    let here = p.frame_len.saturating_sub(p.payload_off as u64) + 8;
    datagram_frames(p.payload_len as u32 + 8, here.min(u32::MAX as u64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_fragment_counts_for_its_datagrams_frames() {
        // 3,000 bytes of answer over a 1500-byte MTU: 1480 + 1480 + 48.
        assert_eq!(datagram_frames(3008, 1480), 3);
        assert_eq!(datagram_frames(2960, 1480), 2, "two full fragments");
        assert_eq!(datagram_frames(2961, 1480), 3);
        assert_eq!(datagram_frames(100, 1480), 1, "at least one");
        assert_eq!(datagram_frames(65535, 8), MAX_DATAGRAM_FRAMES, "capped");
        assert_eq!(datagram_frames(65535, 1232), 54, "IPv6 minimum MTU");
        assert_eq!(datagram_frames(3008, 0), 1, "no division by zero");
        let mut p = Packet::EMPTY;
        p.frag = Frag::First;
        // An untagged IPv4 first fragment: 14 + 20 + 8 bytes of headers,
        // 1472 of payload; the datagram's payload is 3000 bytes.
        (p.payload_off, p.frame_len, p.payload_len) = (42, 1514, 3000);
        assert_eq!(udp_frames(&p), 3);
        p.frag = Frag::None;
        assert_eq!(udp_frames(&p), 1, "a whole datagram");
    }

    #[test]
    fn fragment_policy() {
        let (no, yes) = (|| false, || true);
        assert_eq!(
            later_fragment_reason(0, Seen::Unseen, no),
            Reason::FragmentPass
        );
        let drop = CONFIG_FRAGMENT_DROP | CONFIG_REPLY_GUARD;
        assert_eq!(
            later_fragment_reason(drop, Seen::Passed, yes),
            Reason::FragmentDrop
        );
        let guard = CONFIG_REPLY_GUARD;
        assert_eq!(
            later_fragment_reason(guard, Seen::Unseen, no),
            Reason::FragmentDrop
        );
        assert_eq!(
            later_fragment_reason(guard, Seen::Unseen, yes),
            Reason::FragmentPass
        );
        assert_eq!(
            later_fragment_reason(guard, Seen::Passed, no),
            Reason::FragmentPass
        );
    }

    #[test]
    fn a_pass_beats_a_drop_whichever_comes_first() {
        let now = 1_000;
        let (drop, pass) = (frag_value(false, 5_000), frag_value(true, 5_000));
        assert_eq!(frag_seen(drop, now), Seen::Dropped);
        assert_eq!(frag_seen(pass, now), Seen::Passed);
        assert_eq!(frag_seen(pass, 5_000), Seen::Unseen, "expired");
        assert!(
            frag_replaces(drop, pass, now),
            "a solicited first over a forged one"
        );
        assert!(
            !frag_replaces(pass, drop, now),
            "a forged first after a solicited one"
        );
        assert!(
            !frag_replaces(pass, frag_value(false, 9_000), now),
            "even a later drop"
        );
        assert!(
            frag_replaces(pass, drop, 6_000),
            "an expired pass is forgotten"
        );
        assert!(
            frag_replaces(drop, frag_value(false, 9_000), now),
            "a drop extends"
        );
        assert!(!frag_replaces(drop, drop, now), "the same: no write");
    }
}
