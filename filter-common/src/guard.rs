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

/// Whether a frame whose destination MAC starts with `first` goes to a
/// group: broadcast (ff:ff:ff:ff:ff:ff) or multicast, the I/G bit. It marks
/// a request to a subnet-directed broadcast (192.0.2.255 on a /24), which
/// the address alone can't tell from a host: only the sender's routes
/// know the prefix, and they sent it to the link's broadcast MAC.
#[inline(always)]
pub fn is_group_mac(first: u8) -> bool {
    first & 1 != 0
}

/// What an outgoing request to a guarded port asks for, which sets whom
/// its replies may come from and its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// To one peer: `packets` replies within `expiry`.
    Unicast,
    /// To a group (by its address or its frame's destination MAC):
    /// answered by any device, within `multicast_expiry`.
    Group,
    /// A subscription (CoAP Observe): `observe_packets` notifications
    /// within `observe_expiry`, without a byte budget.
    Observe,
}

impl Request {
    /// The kind of a request `p`, sent in a frame to a group MAC or not
    /// (`group_mac`), subscribing or not; a subscription counts only where
    /// its port gives it a budget.
    #[inline(always)]
    pub fn of(p: &Packet, port: &GuardPort, group_mac: bool, subscribes: bool) -> Request {
        if group_mac || is_group(p) {
            Request::Group
        } else if subscribes && port.observe_packets != 0 {
            Request::Observe
        } else {
            Request::Unicast
        }
    }
}

/// The entry an outgoing request to a guarded port records: keyed as its
/// replies will arrive (from the peer and port it went to, at the port it
/// left from). A request to a group records a wildcard peer with the
/// multicast expiry; a subscription, its port's observe budget.
#[inline(always)]
pub fn request_entry(
    p: &Packet,
    port: &GuardPort,
    now: u64,
    kind: Request,
) -> (ReplyKey, ReplyState) {
    let keep = if kind == Request::Group { 0 } else { u64::MAX };
    let key = ReplyKey {
        peer: [p.dst[0] & keep, p.dst[1] & keep],
        family: p.family,
        _pad: 0,
        peer_port: p.dst_port,
        local_port: p.src_port,
        _pad2: 0,
    };
    let (packets, bytes, ms) = match kind {
        Request::Unicast => (port.packets, port.bytes, port.expiry_ms),
        Request::Group => (port.packets, port.bytes, port.multicast_expiry_ms),
        Request::Observe => (port.observe_packets, 0, port.observe_expiry_ms),
    };
    let state = ReplyState {
        expires: now.saturating_add(ms as u64 * 1_000_000),
        packets_left: packets as u64,
        bytes_left: if bytes == 0 { UNLIMITED } else { bytes as u64 },
    };
    (key, state)
}

/// The entry a repeated request leaves: renewed, never cut. Each of the
/// window and the budgets is the longer of what is left and what the new
/// request gives: a plain request renews a plain one as before, but a CoAP
/// client's acknowledgement of a notification (a request to the server's
/// port too) leaves its subscription's budget alone. Counts are compared
/// signed: racing CPUs may have spent one past zero.
#[inline(always)]
pub fn renew(old: &ReplyState, fresh: ReplyState) -> ReplyState {
    let more = |a: u64, b: u64| if (a as i64) > (b as i64) { a } else { b };
    ReplyState {
        expires: old.expires.max(fresh.expires),
        packets_left: more(old.packets_left, fresh.packets_left),
        bytes_left: more(old.bytes_left, fresh.bytes_left),
    }
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
        observe_packets: 50,
        observe_expiry_ms: 60_000,
    };

    /// The entry a plain request to a peer records.
    fn unicast(p: &Packet, port: &GuardPort, now: u64) -> (ReplyKey, ReplyState) {
        request_entry(p, port, now, Request::of(p, port, false, false))
    }

    #[test]
    fn a_reply_finds_its_request_and_spends_its_budget() {
        let req = request([198, 51, 100, 53]);
        let (key, state) = unicast(&req, &PORT, 5);
        assert_eq!(reply_key(&reply_to(&req), false), key);
        let c = cell(state);
        assert_eq!(spend(&c, 10, 1000), Spend::Ok);
        assert_eq!(spend(&c, 10, 1000), Spend::Ok);
        assert_eq!(spend(&c, 10, 1000), Spend::OverBudget);
    }

    #[test]
    fn requests_expire() {
        let (_, state) = unicast(&request([198, 51, 100, 53]), &PORT, 5);
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
        let (_, state) = unicast(&request([198, 51, 100, 53]), &port, 0);
        let c = cell(state);
        assert_eq!(spend(&c, 1, 2000), Spend::Ok);
        assert_eq!(spend(&c, 1, 2000), Spend::OverBudget);
        assert_eq!(spend(&c, 1, 1000), Spend::Ok);
    }

    #[test]
    fn a_request_to_a_group_records_a_wildcard_peer() {
        for dst in [[239, 255, 255, 250], [255, 255, 255, 255]] {
            let req = request(dst);
            let (key, state) = unicast(&req, &PORT, 0);
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

    /// 192.0.2.255 may be a host of a wider prefix: the frame's
    /// destination MAC says whether it went to the link's broadcast.
    #[test]
    fn a_subnet_broadcast_is_a_group_request_by_its_mac() {
        let req = request([192, 0, 2, 255]);
        assert!(!is_group(&req));
        assert!(is_group_mac(0xff) && is_group_mac(0x01) && is_group_mac(0x33));
        assert!(!is_group_mac(0x02) && !is_group_mac(0x00));
        let kind = Request::of(&req, &PORT, is_group_mac(0xff), false);
        assert_eq!(kind, Request::Group);
        let (key, state) = request_entry(&req, &PORT, 0, kind);
        assert_eq!(key.peer, [0; 2]);
        assert_eq!(state.expires, 100_000_000);
        let mut reply = reply_to(&req);
        reply.src = addr_v4([192, 0, 2, 3]);
        assert_eq!(reply_key(&reply, true), key);
        let unicast_mac = Request::of(&req, &PORT, false, false);
        assert_eq!(unicast_mac, Request::Unicast);
    }

    #[test]
    fn a_subscription_gets_its_ports_observe_budget_if_it_has_one() {
        let req = request([198, 51, 100, 56]);
        let kind = Request::of(&req, &PORT, false, true);
        assert_eq!(kind, Request::Observe);
        let (key, state) = request_entry(&req, &PORT, 0, kind);
        assert_eq!(key, unicast(&req, &PORT, 0).0);
        assert_eq!(
            (state.packets_left, state.bytes_left, state.expires),
            (50, UNLIMITED, 60_000_000_000)
        );
        let plain = GuardPort {
            observe_packets: 0,
            ..PORT
        };
        assert_eq!(Request::of(&req, &plain, false, true), Request::Unicast);
        // To a group, a subscription is a group request.
        let group = request([239, 1, 2, 3]);
        assert_eq!(Request::of(&group, &PORT, false, true), Request::Group);
    }

    #[test]
    fn a_repeated_request_renews_its_entry_and_never_cuts_it() {
        let req = request([198, 51, 100, 56]);
        let (_, observe) = request_entry(&req, &PORT, 0, Request::Observe);
        let (_, plain) = unicast(&req, &PORT, 10);
        // An acknowledgement (a plain request) keeps the subscription's.
        let kept = renew(&observe, plain);
        assert_eq!((kept.packets_left, kept.expires), (50, 60_000_000_000));
        assert_eq!(kept.bytes_left, UNLIMITED);
        // A spent request is renewed in full, as before.
        let spent = ReplyState {
            expires: 5,
            packets_left: 0,
            bytes_left: 0,
        };
        assert_eq!(renew(&spent, plain), plain);
        // Spent one past zero by racing CPUs: still renewed.
        let raced = ReplyState {
            packets_left: u64::MAX,
            ..spent
        };
        assert_eq!(renew(&raced, plain).packets_left, 2);
    }

    #[test]
    fn guard_index_is_the_wire_order() {
        // 123 on the wire: 0x00 0x7b, loaded as a native u16.
        assert_eq!(guard_index(123), u16::from_ne_bytes([0x00, 0x7b]) as usize);
        assert_eq!(guard_index(1900), u16::from_ne_bytes([0x07, 0x6c]) as usize);
    }
}
