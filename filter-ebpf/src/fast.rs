//! The common cases of a flood, decided before the full parse, from a
//! source that no allow or deny prefix and no ban can cover (the hints say
//! so in an array read each; a ban too wide for its hint turns this off):
//! - a UDP datagram over IPv4 or IPv6 (up to two VLAN tags; of the IPv6
//!   extension headers, options and routing only), or the first fragment
//!   of one over IPv4, from a guarded source port, to a port that is not
//!   guarded itself and at which no request of this host is open (in this
//!   generation's copy, and in LOCAL_PORTS when another interface shares
//!   it): the full decision would come to `unsolicited_reply` at its
//!   reply-guard step (and remember a first fragment's datagram for its
//!   later fragments);
//! - a later IPv4 fragment of a datagram whose first fragment was dropped
//!   (and no first fragment that passed was seen since): the full
//!   decision's `fragment_follow_drop`.
//!
//! Each comes to its verdict in a handful of loads. Anything else,
//! malformed frames included, returns None and takes the full path, which
//! the differential test holds this one to.

use aya_ebpf::programs::XdpContext;
use filter_common::{
    BAN_WIDE, CONFIG_HAS_ALLOW, CONFIG_HAS_DENY, CONFIG_REPLY_GUARD, FAMILY_V4, FAMILY_V6,
    IPPROTO_UDP,
    frags::{Datagram, datagram_frames},
    packet::Addr,
};

use crate::{
    clock,
    frags::{frag_dropped, frag_entry, remember_frag},
    globals,
    maps::{LOCAL_PORTS, listed, maybe_banned, v4_listed},
    parse::{
        self, ETH_P_IPV4, ETH_P_IPV6, Hdr, MAX_EXT_HEADERS, MAX_L4_OFFSET, NEXTHDR_DEST,
        NEXTHDR_HOP, NEXTHDR_ROUTING,
    },
};

/// What the early verdict decided.
pub enum Early {
    /// Dropped as `unsolicited_reply`: the UDP source port and its guard
    /// slot (see `globals::guard_slot_wire`), and the frames the surge
    /// counters count for it (a first fragment's datagram's, else 1).
    Unsolicited(u16, u8, u64),
    /// Dropped as `fragment_follow_drop`.
    FollowsDrop,
}

#[inline(always)]
pub fn verdict(ctx: &XdpContext) -> Option<Early> {
    let bans = globals::ban_bits();
    if bans & BAN_WIDE != 0 {
        return None;
    }
    let frame_len = ctx.data_end() - ctx.data();
    // A third tag is the full parser's to refuse.
    let (ethertype, off) = parse::ethertype(ctx)?;
    match ethertype {
        ETH_P_IPV4 => ipv4(ctx, bans, off, frame_len),
        ETH_P_IPV6 => ipv6(ctx, bans, off, frame_len),
        _ => None,
    }
}

/// Whether an allow or deny prefix or a ban may cover the source: the full
/// path's.
#[inline(always)]
fn maybe_listed(bans: u32, family: u8, src: &Addr) -> bool {
    let in_lists = || {
        if family == FAMILY_V4 {
            v4_listed(src) != 0
        } else {
            listed(family, src)
        }
    };
    (globals::flags() & (CONFIG_HAS_ALLOW | CONFIG_HAS_DENY) != 0 && in_lists())
        || (bans != 0 && maybe_banned(family, src))
}

/// An IPv4 packet at `off` that passes the full parser's checks.
#[inline(always)]
fn ipv4(ctx: &XdpContext, bans: u32, off: usize, frame_len: usize) -> Option<Early> {
    let (ip, hdr_len, total_len) = parse::ipv4_header(ctx, off, frame_len)?;
    let src: Addr = [ip.raw32::<12>() as u64, 0];
    // The hints last, on each path: a frame that the rest turns away
    // (benign traffic, mostly) should not pay for them twice.
    let listed = || maybe_listed(bans, FAMILY_V4, &src);
    let frag = ip.be16::<6>();
    let proto = ip.u8::<9>();
    // Built only on the fragment paths: for a whole datagram its loads
    // and spills would be wasted.
    let datagram = || Datagram {
        family: FAMILY_V4,
        src,
        dst: [ip.raw32::<16>() as u64, 0],
        id: ip.be16::<4>() as u32,
        proto,
    };
    if frag & 0x1fff != 0 {
        let now = clock::now();
        return (frag_dropped(&datagram(), now) && !listed()).then_some(Early::FollowsDrop);
    }
    if proto != IPPROTO_UDP {
        return None;
    }
    let first = frag & 0x2000 != 0;
    let (src_port, slot) = unsolicited(ctx, off + hdr_len, off + total_len, first)?;
    if listed() {
        return None;
    }
    let mut frames = 1;
    if first {
        // Its later fragments carry no ports: they follow it.
        let now = clock::now();
        remember_frag(&datagram(), frag_entry(false, now), now);
        frames = first_fragment_frames(ctx, off + hdr_len, total_len.saturating_sub(hdr_len));
    }
    Some(Early::Unsolicited(src_port, slot, frames))
}

/// The frames of the datagram whose first fragment carries `here` UDP
/// bytes at `l4`: its UDP length (read again here, off the path of whole
/// datagrams) over `here`.
#[inline(always)]
fn first_fragment_frames(ctx: &XdpContext, l4: usize, here: usize) -> u64 {
    Hdr::<8>::at(ctx, l4).map_or(1, |udp| {
        datagram_frames(udp.be16::<4>() as u32, here as u32)
    })
}

/// An IPv6 packet carrying UDP, after up to the full parser's number of
/// extension headers. Only the options and routing headers are walked here
/// (one length rule, and a flood has no use for the others); an
/// authentication or fragment header is the full path's.
#[inline(always)]
fn ipv6(ctx: &XdpContext, bans: u32, off: usize, frame_len: usize) -> Option<Early> {
    let (ip, ip_end) = parse::ipv6_header(ctx, off, frame_len)?;
    let mut next = ip.u8::<6>();
    let mut l4 = off + 40;
    for _ in 0..MAX_EXT_HEADERS {
        if next == IPPROTO_UDP {
            break;
        }
        if next != NEXTHDR_HOP && next != NEXTHDR_DEST && next != NEXTHDR_ROUTING {
            return None;
        }
        // In 8-byte units past the first 8.
        let e = Hdr::<8>::at(ctx, l4)?;
        l4 += (e.u8::<1>() as usize + 1) * 8;
        next = e.u8::<0>();
    }
    // Checked once, not per header: the offset only grows, so a header
    // that ran past the packet (which the full parser refuses) leaves it
    // past the end.
    if next != IPPROTO_UDP || l4 > ip_end || l4 > MAX_L4_OFFSET {
        return None;
    }
    let (src_port, slot) = unsolicited(ctx, l4, ip_end, false)?;
    // The hints read the first 8 bytes of the source only.
    if maybe_listed(bans, FAMILY_V6, &[ip.raw64::<8>(), 0]) {
        return None;
    }
    Some(Early::Unsolicited(src_port, slot, 1))
}

/// The UDP source port (and its guard slot) of a datagram at `l4` (up to
/// `ip_end`) that the reply guard would find unsolicited. A first
/// fragment's UDP length covers the whole datagram, not just the bytes at
/// hand.
#[inline(always)]
fn unsolicited(ctx: &XdpContext, l4: usize, ip_end: usize, first: bool) -> Option<(u16, u8)> {
    if globals::flags() & CONFIG_REPLY_GUARD == 0 {
        return None;
    }
    let udp = Hdr::<8>::at(ctx, l4)?;
    let have = ip_end - l4;
    let ulen = udp.be16::<4>() as usize;
    if have < 8 || ulen < 8 || (!first && ulen > have) {
        return None;
    }
    // The ports as they lie in the packet: the guard table is indexed so.
    let (src_wire, dst_wire) = (udp.raw16::<0>(), udp.raw16::<2>());
    // A guarded destination port, or the other port of a pair (an SNMP
    // manager's 162), may be a server's: the full path asks the socket
    // table.
    let slot = globals::guard_slot_wire(src_wire);
    if slot == 0
        || globals::guarded_wire(dst_wire)
        || filter_common::shapes::is_pair_wire(src_wire, dst_wire)
    {
        return None;
    }
    let port = u16::from_be(dst_wire);
    // LOCAL_PORTS' `until`, which covers group requests too (see
    // LocalPort), as this generation's copy holds it.
    let mut until = globals::open_until(port);
    // Requests that left by another interface of the host are in
    // LOCAL_PORTS only: its recorder writes its own generation's copy.
    if globals::requests_shared() {
        until = until.max(shared_until(port));
    }
    // A request left from this port once: still open?
    if until != 0 && clock::now() < until {
        return None;
    }
    Some((u16::from_be(src_wire), slot))
}

/// LOCAL_PORTS' `until` of `port`, which every interface that shares the
/// map records into.
#[inline(always)]
fn shared_until(port: u16) -> u64 {
    // An array of every port: the lookup fails only past its end.
    LOCAL_PORTS.get(port as u32).map_or(0, |open| open.until)
}
