//! The reply guard's decisions: what an outgoing request records, and
//! whether an incoming packet from a guarded port answers one. Plain
//! functions over a parsed [`Packet`], shared by the egress program, the
//! XDP program and the reference model.

use crate::{FAMILY_V4, GuardPort, ReplyKey, ReplyState, packet::Packet, shared::Shared64};

/// [`ReplyState`] as the CPUs share it (same layout).
#[repr(C)]
pub struct ReplyCell<C> {
    pub expires: C,
    pub packets_left: C,
    pub bytes_left: C,
}

/// What a tracked request says about a packet that may answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    /// Within the request's time and budget: charged.
    Ok,
    /// Expired: as good as no request.
    Expired,
    /// The request's budget is spent.
    OverBudget,
}

/// A budget that never runs out: bytes of a port without a byte budget.
const UNLIMITED: u64 = i64::MAX as u64;

/// Charges one reply of `bytes` payload bytes to a request. Counts are
/// signed in u64 cells and spent with atomic adds: CPUs racing on the last
/// packet of a budget may each pass one, never more.
#[inline(always)]
pub fn spend<C: Shared64>(cell: &ReplyCell<C>, now: u64, bytes: u64) -> Spend {
    if now >= cell.expires.load() {
        return Spend::Expired;
    }
    let packets = cell.packets_left.load() as i64;
    let left = cell.bytes_left.load() as i64;
    if packets <= 0 || left < bytes as i64 {
        return Spend::OverBudget;
    }
    cell.packets_left.add(0u64.wrapping_sub(1));
    cell.bytes_left.add(0u64.wrapping_sub(bytes));
    Spend::Ok
}

/// Multicast (224/4, ff00::/8) or the IPv4 limited broadcast: a request
/// there is answered by devices, from their own addresses.
#[inline(always)]
pub fn is_group(p: &Packet) -> bool {
    let b = p.dst[0].to_ne_bytes();
    if p.family == FAMILY_V4 {
        b[0] & 0xf0 == 0xe0 || b[..4] == [255; 4]
    } else {
        b[0] == 0xff
    }
}

/// The entry an outgoing request to a guarded port records: keyed as its
/// replies will arrive (from the peer and port it went to, at the port it
/// left from). A request to a group records a wildcard peer with the
/// shorter multicast expiry.
#[inline(always)]
pub fn request_entry(p: &Packet, port: &GuardPort, now: u64) -> (ReplyKey, ReplyState) {
    let group = is_group(p);
    let keep = if group { 0 } else { u64::MAX };
    let key = ReplyKey {
        peer: [p.dst[0] & keep, p.dst[1] & keep],
        family: p.family,
        _pad: 0,
        peer_port: p.dst_port,
        local_port: p.src_port,
        _pad2: 0,
    };
    let ms = if group {
        port.multicast_expiry_ms
    } else {
        port.expiry_ms
    };
    let state = ReplyState {
        expires: now.saturating_add(ms as u64 * 1_000_000),
        packets_left: port.packets as u64,
        bytes_left: if port.bytes == 0 {
            UNLIMITED
        } else {
            port.bytes as u64
        },
    };
    (key, state)
}

/// The key of the request an incoming packet would answer; with `group`,
/// the wildcard entry of a request sent to a group.
#[inline(always)]
pub fn reply_key(p: &Packet, group: bool) -> ReplyKey {
    // Masked rather than chosen: a choice between arrays becomes a memmove.
    let keep = if group { 0 } else { u64::MAX };
    ReplyKey {
        peer: [p.src[0] & keep, p.src[1] & keep],
        family: p.family,
        _pad: 0,
        peer_port: p.src_port,
        local_port: p.dst_port,
        _pad2: 0,
    }
}

/// Where `port` lies in the guarded-port table
/// ([`crate::GLOBAL_GUARD_PORTS`]): its network-order value read as a
/// native u16, which is what a plain two-byte load of the packet gives.
#[inline(always)]
pub fn guard_index(port: u16) -> usize {
    port.to_be() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        FAMILY_V6,
        packet::{Packet, addr_v4, addr_words},
    };
    use core::sync::atomic::AtomicU64;

    fn cell(s: ReplyState) -> ReplyCell<AtomicU64> {
        ReplyCell {
            expires: AtomicU64::new(s.expires),
            packets_left: AtomicU64::new(s.packets_left),
            bytes_left: AtomicU64::new(s.bytes_left),
        }
    }

    fn request(dst: [u8; 4]) -> Packet {
        let mut p = Packet::EMPTY;
        p.family = FAMILY_V4;
        p.src = addr_v4([192, 0, 2, 1]);
        p.dst = addr_v4(dst);
        p.src_port = 40000;
        p.dst_port = 53;
        p
    }

    fn reply_to(req: &Packet) -> Packet {
        let mut p = *req;
        (p.src, p.dst) = (req.dst, req.src);
        (p.src_port, p.dst_port) = (req.dst_port, req.src_port);
        p
    }

    const PORT: GuardPort = GuardPort {
        packets: 2,
        bytes: 0,
        expiry_ms: 1000,
        multicast_expiry_ms: 100,
    };

    #[test]
    fn a_reply_finds_its_request_and_spends_its_budget() {
        let req = request([198, 51, 100, 53]);
        let (key, state) = request_entry(&req, &PORT, 5);
        assert_eq!(reply_key(&reply_to(&req), false), key);
        let c = cell(state);
        assert_eq!(spend(&c, 10, 1000), Spend::Ok);
        assert_eq!(spend(&c, 10, 1000), Spend::Ok);
        assert_eq!(spend(&c, 10, 1000), Spend::OverBudget);
    }

    #[test]
    fn requests_expire() {
        let (_, state) = request_entry(&request([198, 51, 100, 53]), &PORT, 5);
        assert_eq!(state.expires, 5 + 1_000_000_000);
        assert_eq!(spend(&cell(state), state.expires, 1), Spend::Expired);
    }

    #[test]
    fn byte_budgets_count_payload_bytes() {
        let port = GuardPort {
            packets: 100,
            bytes: 3000,
            ..PORT
        };
        let (_, state) = request_entry(&request([198, 51, 100, 53]), &port, 0);
        let c = cell(state);
        assert_eq!(spend(&c, 1, 2000), Spend::Ok);
        assert_eq!(spend(&c, 1, 2000), Spend::OverBudget);
        assert_eq!(spend(&c, 1, 1000), Spend::Ok);
    }

    #[test]
    fn a_request_to_a_group_records_a_wildcard_peer() {
        for dst in [[239, 255, 255, 250], [255, 255, 255, 255]] {
            let req = request(dst);
            let (key, state) = request_entry(&req, &PORT, 0);
            assert_eq!(key.peer, [0; 2]);
            assert_eq!(state.expires, 100_000_000);
            // A device answers from its own address.
            let mut reply = reply_to(&req);
            reply.src = addr_v4([192, 0, 2, 77]);
            assert_eq!(reply_key(&reply, true), key);
            assert_ne!(reply_key(&reply, false), key);
        }
        let mut v6 = request([0; 4]);
        v6.family = FAMILY_V6;
        v6.dst = addr_words(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c]);
        assert!(is_group(&v6));
        assert!(!is_group(&request([198, 51, 100, 53])));
    }

    #[test]
    fn guard_index_is_the_wire_order() {
        // 123 on the wire: 0x00 0x7b, loaded as a native u16.
        assert_eq!(guard_index(123), u16::from_ne_bytes([0x00, 0x7b]) as usize);
        assert_eq!(guard_index(1900), u16::from_ne_bytes([0x07, 0x6c]) as usize);
    }
}
