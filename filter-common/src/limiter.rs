//! The per-source limiter's pieces that touch no map: how a source is keyed
//! (its address masked to a prefix), its shared state, and the GCRA
//! arithmetic that admits, charges and bans it.

use crate::abi::{Config, Limit, OVER_BREAK_NS, SrcKey};
use crate::packet::{Addr, Packet, addr_bytes, addr_words};
use crate::shared::Shared64;

/// Per-source limiter state as the CPUs share it: [`crate::SourceState`]
/// seen through [`Shared64`] cells (same layout when `C` is a u64 wrapper).
#[repr(C)]
pub struct SourceCell<C> {
    pub pkt_tat: C,
    pub byte_tat: C,
    pub over_since: C,
    pub dropped: C,
    pub last_over: C,
}

/// A source as the limiter keys it: the address masked to the configured
/// prefix length, as words, and the limit it is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub addr: Addr,
    pub family: u8,
    pub limit: u8,
}

impl Source {
    /// As maps of bytes key it.
    #[inline(always)]
    pub fn key(&self) -> SrcKey {
        SrcKey {
            addr: addr_bytes(&self.addr),
            family: self.family,
            limit: self.limit,
            _pad: [0; 2],
        }
    }

    /// Family and limit as the limiter table's slots tag them (never 0, an
    /// empty slot's tag).
    #[inline(always)]
    pub fn tag(&self) -> u64 {
        1 << 63 | (self.family as u64) << 8 | self.limit as u64
    }

    /// The source a slot of the limiter table holds (None: an empty slot).
    pub fn of_slot(addr: Addr, tag: u64) -> Option<Source> {
        (tag != 0).then_some(Source {
            addr,
            family: (tag >> 8) as u8,
            limit: tag as u8,
        })
    }

    /// Never 0 (the doorkeeper's empty slot): its low bits pick the
    /// doorkeeper's slot, its high bits the limiter table's.
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        let h = (self.addr[0] ^ self.addr[1].rotate_left(31) ^ self.tag())
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h ^ h >> 29) | 1 << 63
    }

    /// The 16 bits the limiter's tags hold for the source: never 0.
    #[inline(always)]
    pub fn fingerprint(&self) -> u32 {
        (self.hash() >> 16) as u32 & 0xffff | 1
    }
}

/// The source as the limiter keys it.
#[inline(always)]
pub fn source(p: &Packet, cfg: &Config, limit: u8) -> Source {
    Source {
        addr: mask_words(&p.src, cfg.src_prefix(p.family)),
        family: p.family,
        limit,
    }
}

/// Charges a packet to a source and tracks how long it has stayed over its
/// limit: `(admitted, ban)`. A source over its limit still has one packet
/// admitted every interval, so an admission does not end its time over the
/// limit; only a break of [`OVER_BREAK_NS`] without a refusal does. Without
/// that, `ban_after` longer than one interval could never be reached.
#[inline(always)]
pub fn over_limit<C: Shared64>(
    cell: &SourceCell<C>,
    l: &Limit,
    now: u64,
    frame_len: u64,
    ban_after: u64,
) -> (bool, bool) {
    if admitted(cell, l, now, frame_len) {
        return (true, false);
    }
    (false, refused(cell, now, ban_after))
}

/// The admitting half of [`over_limit`]: charges the packet if the limit
/// admits it; a refusal is not recorded (the caller may still exempt the
/// packet, then calls [`refused`] if not).
#[inline(always)]
pub fn admitted<C: Shared64>(cell: &SourceCell<C>, l: &Limit, now: u64, frame_len: u64) -> bool {
    if !admit(cell, l, now, frame_len) {
        return false;
    }
    let broke = now.saturating_sub(cell.last_over.load()) >= OVER_BREAK_NS;
    if cell.over_since.load() != 0 && broke {
        cell.over_since.store(0);
    }
    true
}

/// The refusing half of [`over_limit`]: records a refusal; whether the
/// source has now stayed over its limit for `ban_after`.
#[inline(always)]
pub fn refused<C: Shared64>(cell: &SourceCell<C>, now: u64, ban_after: u64) -> bool {
    let since = cell.over_since.load();
    let broke = now.saturating_sub(cell.last_over.load()) >= OVER_BREAK_NS;
    cell.dropped.add(1);
    cell.last_over.store(now);
    if since == 0 || broke {
        cell.over_since.store(now);
        return false;
    }
    ban_after != 0 && now.saturating_sub(since) >= ban_after
}

/// Packet and bit rate of one source, both GCRA. A packet is charged to
/// both only when both admit it, so refusals cost nothing.
#[inline(always)]
pub fn admit<C: Shared64>(cell: &SourceCell<C>, l: &Limit, now: u64, frame_len: u64) -> bool {
    let pkt = l.pkt_interval_ns != 0;
    let bytes = l.byte_cost_ps != 0;
    let pkt_tat = if pkt { cell.pkt_tat.load() } else { 0 };
    let byte_tat = if bytes { cell.byte_tat.load() } else { 0 };
    if pkt && pkt_tat > now.saturating_add(l.pkt_tolerance_ns) {
        return false;
    }
    if bytes && byte_tat > now.saturating_add(l.byte_tolerance_ns) {
        return false;
    }
    if pkt {
        charge(&cell.pkt_tat, pkt_tat, now, l.pkt_interval_ns);
    }
    if bytes {
        charge(
            &cell.byte_tat,
            byte_tat,
            now,
            frame_len * l.byte_cost_ps / 1000,
        );
    }
    true
}

/// Generic cell rate algorithm on a theoretical arrival time shared by all
/// CPUs: admit, and charge `interval`, if `tat` is at most `tolerance`
/// ahead of now.
#[inline(always)]
pub fn gcra<C: Shared64>(tat: &C, now: u64, interval: u64, tolerance: u64) -> bool {
    let t = tat.load();
    if t > now.saturating_add(tolerance) {
        return false;
    }
    charge(tat, t, now, interval);
    true
}

/// Charges `cost` to a theoretical arrival time last read as `t`. Atomics
/// rather than a spin lock: no CPU ever waits, and the races left are small
/// and bounded: CPUs that test the same source in the same instant may all
/// pass before any charge lands (at most one extra packet per CPU, once, at
/// the edge of the burst), and two CPUs catching up an idle source may both
/// store their own charge (one of them lost). An idle source (`t` in the
/// past) starts again from now, so credit does not pile up beyond the
/// tolerance: one plain store, where a busy one needs the atomic add (a
/// locked instruction, several ns; most sources are idle between packets).
#[inline(always)]
fn charge<C: Shared64>(tat: &C, t: u64, now: u64, cost: u64) {
    if t < now {
        tat.store(now.saturating_add(cost));
    } else {
        tat.add(cost);
    }
}

/// The source as the limiter and ban list key it: address masked to the
/// configured prefix length.
#[inline(always)]
pub fn src_key(p: &Packet, cfg: &Config, limit: u8) -> SrcKey {
    source(p, cfg, limit).key()
}

/// The ban key of the peer an outgoing packet goes to: its destination,
/// masked as a source would be ([`crate::MAP_PEERS`]).
#[inline(always)]
pub fn peer_key(p: &Packet, cfg: &Config) -> SrcKey {
    Source {
        addr: mask_words(&p.dst, cfg.src_prefix(p.family)),
        family: p.family,
        limit: 0,
    }
    .key()
}

/// `addr` with every bit past `prefix` cleared.
pub fn mask(addr: &[u8; 16], prefix: u8) -> [u8; 16] {
    addr_bytes(&mask_words(&addr_words(addr), prefix))
}

/// [`mask`] on the words of an address: the network-order mask of each
/// word converted to memory order (one byte swap on a little-endian CPU),
/// a handful of instructions instead of three branches per byte.
#[inline(always)]
pub fn mask_words(addr: &Addr, prefix: u8) -> Addr {
    let prefix = prefix as u32;
    [
        addr[0] & half_mask(prefix).to_be(),
        addr[1] & half_mask(prefix.saturating_sub(64)).to_be(),
    ]
}

/// The top `bits` bits of a u64 set (all of them from 64 on).
#[inline(always)]
fn half_mask(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else if bits >= 64 {
        u64::MAX
    } else {
        u64::MAX << (64 - bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[test]
    fn gcra_admits_the_burst_then_the_rate() {
        let tat = AtomicU64::new(0);
        let (interval, burst) = (1_000u64, 5u64);
        let tolerance = (burst - 1) * interval;
        let now = 1_000_000;
        let admitted = (0..20)
            .filter(|_| gcra(&tat, now, interval, tolerance))
            .count();
        assert_eq!(admitted as u64, burst, "a burst at one instant");
        // One second later at 10 packets per interval: exactly the rate
        // (plus the burst that refilled while idle... none: still in debt).
        let mut admitted = 0;
        for step in 0..1000u64 {
            let t = now + 10 * interval + step * interval / 10;
            admitted += (gcra(&tat, t, interval, tolerance)) as u64;
        }
        // 100 intervals elapsed: about 100 packets, never more than
        // 100 + burst.
        assert!((95..=100 + burst).contains(&admitted), "{admitted}");
    }

    #[test]
    fn gcra_refused_packets_cost_nothing() {
        let tat = AtomicU64::new(0);
        let now = 10_000;
        assert!(gcra(&tat, now, 100, 0));
        assert!(!gcra(&tat, now, 100, 0));
        assert!(!gcra(&tat, now, 100, 0));
        // Only the admitted packet was charged.
        assert!(gcra(&tat, now + 100, 100, 0));
    }

    #[test]
    fn idle_credit_is_capped_by_the_tolerance() {
        let tat = AtomicU64::new(5);
        let now = 1_000_000_000;
        let admitted = (0..100).filter(|_| gcra(&tat, now, 10, 30)).count();
        assert_eq!(admitted, 4);
    }

    #[test]
    fn a_refused_packet_is_charged_to_neither_rate() {
        let cell = SourceCell {
            pkt_tat: AtomicU64::new(0),
            byte_tat: AtomicU64::new(0),
            over_since: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_over: AtomicU64::new(0),
        };
        // 1000 pps, 8000 bit/s = 1000 bytes/s: 1 ms per byte.
        let l = Limit {
            pkt_interval_ns: 1_000_000,
            pkt_tolerance_ns: 10_000_000,
            byte_cost_ps: 1_000_000_000,
            byte_tolerance_ns: 0,
        };
        let now = 5_000_000_000;
        assert!(admit(&cell, &l, now, 1000));
        assert!(!admit(&cell, &l, now, 1000));
        // The refused packet was charged to neither rate.
        assert_eq!(cell.pkt_tat.load(Relaxed), now + 1_000_000);
        assert_eq!(cell.byte_tat.load(Relaxed), now + 1_000_000_000);
    }

    fn fresh_cell() -> SourceCell<AtomicU64> {
        SourceCell {
            pkt_tat: AtomicU64::new(0),
            byte_tat: AtomicU64::new(0),
            over_since: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_over: AtomicU64::new(0),
        }
    }

    /// Sends at `pps` for `secs` from `start` under the default profile's
    /// limit (20000 pps, burst 2000) with a 10 s ban delay; when the ban
    /// fires, in ns since `start`.
    fn ban_time(cell: &SourceCell<AtomicU64>, pps: u64, start: u64, secs: u64) -> Option<u64> {
        let l = Limit {
            pkt_interval_ns: 50_000,
            pkt_tolerance_ns: 1999 * 50_000,
            ..Limit::default()
        };
        let gap = 1_000_000_000 / pps;
        (0..pps * secs).map(|i| start + i * gap).find_map(|now| {
            let (_, ban) = over_limit(cell, &l, now, 100, 10_000_000_000);
            ban.then(|| now - start)
        })
    }

    #[test]
    fn a_source_that_stays_over_its_limit_is_banned_after_the_delay() {
        // 5x and 1.5x the limit: one packet in five (in 1.5) still gets
        // through, which must not count as a break.
        for pps in [100_000, 30_000] {
            let at = ban_time(&fresh_cell(), pps, 1_000_000_000, 15)
                .unwrap_or_else(|| panic!("{pps} pps for 15 s was never banned"));
            assert!(
                (10_000_000_000..10_200_000_000).contains(&at),
                "{pps} pps banned after {at} ns, not 10 s"
            );
        }
    }

    #[test]
    fn a_source_within_its_limit_is_never_banned() {
        assert_eq!(ban_time(&fresh_cell(), 19_000, 1_000_000_000, 15), None);
    }

    #[test]
    fn a_break_without_refusals_restarts_the_time_over_the_limit() {
        let cell = fresh_cell();
        let start = 1_000_000_000;
        // 8 s over, 2 s quiet, 8 s over again: never 10 s without a break.
        assert_eq!(ban_time(&cell, 100_000, start, 8), None);
        assert_eq!(ban_time(&cell, 100_000, start + 10_000_000_000, 8), None);
        // A third stretch, joined to the second without a break, bans.
        assert!(ban_time(&cell, 100_000, start + 18_000_000_000, 8).is_some());
    }

    #[test]
    fn masks_to_prefix() {
        let a = [0xff; 16];
        assert_eq!(mask(&a, 0), [0; 16]);
        assert_eq!(mask(&a, 128), a);
        let m = mask(&a, 20);
        assert_eq!(&m[..4], &[0xff, 0xff, 0xf0, 0]);
        let m = mask(&a, 64);
        assert_eq!(
            &m[..9],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]
        );
    }
}
