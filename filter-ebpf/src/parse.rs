//! Bounds-checked header parsing: Ethernet, up to two VLAN tags, IPv4 with its
//! real header length, IPv6 with a bounded walk over extension headers, and
//! the UDP, TCP or ICMP header. Every header is reached through `Hdr::at`.

use aya_ebpf::programs::{TcContext, XdpContext};
use filter_common::{
    FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    packet::{Frag, Packet, Parsed},
};

const ETH_HDR_LEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;

/// IPv6 extension headers walked before the chain counts as malformed.
pub const MAX_EXT_HEADERS: usize = 6;
/// Furthest offset at which an L4 header may start. Keeps every packet offset
/// provably bounded for the verifier; real headers end far earlier.
pub const MAX_L4_OFFSET: usize = 1024;

pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
pub const NEXTHDR_DEST: u8 = 60;

/// A frame in packet memory: the XDP program's incoming frames and the
/// egress program's outgoing ones are parsed by the same code.
pub trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
}

/// A header in packet memory whose `N` bytes passed one bounds check; its
/// fields are then read with fixed-offset loads of their own width.
#[derive(Clone, Copy)]
pub struct Hdr<const N: usize>(*const u8);

impl<const N: usize> Hdr<N> {
    /// The one bounds check for packet memory. `N` is at least two on
    /// purpose: for a one-byte check LLVM emits `ptr >= end`, from which
    /// the verifier derives no range.
    #[inline(always)]
    pub fn at(ctx: &impl Frame, off: usize) -> Option<Self> {
        let start = ctx.data();
        if start + off + N > ctx.data_end() {
            return None;
        }
        Some(Hdr((start + off) as *const u8))
    }

    // The loads below may be unaligned. The BPF backend only emits a word
    // load for a word-aligned type, and the verifier does not check the
    // alignment of packet access unless asked to (BPF_F_STRICT_ALIGNMENT);
    // the JITs load unaligned words like any other. `I + size <= N` is
    // checked at compile time, so every load stays inside the checked bytes.

    #[inline(always)]
    pub fn u8<const I: usize>(self) -> u8 {
        const { assert!(I < N) };
        // SAFETY: inside the bounds checked in `at`.
        unsafe { *self.0.add(I) }
    }

    /// Two bytes in memory order (not converted from network order).
    #[inline(always)]
    pub fn raw16<const I: usize>(self) -> u16 {
        const { assert!(I + 2 <= N) };
        // SAFETY: as above.
        unsafe { (self.0.add(I) as *const u16).read() }
    }

    #[inline(always)]
    pub fn be16<const I: usize>(self) -> u16 {
        u16::from_be(self.raw16::<I>())
    }

    /// Four bytes in memory order (not converted from network order).
    #[inline(always)]
    pub fn raw32<const I: usize>(self) -> u32 {
        const { assert!(I + 4 <= N) };
        // SAFETY: as above.
        unsafe { (self.0.add(I) as *const u32).read() }
    }

    #[inline(always)]
    pub fn be32<const I: usize>(self) -> u32 {
        u32::from_be(self.raw32::<I>())
    }

    /// Eight bytes in memory order.
    #[inline(always)]
    pub fn raw64<const I: usize>(self) -> u64 {
        const { assert!(I + 8 <= N) };
        // SAFETY: as above.
        unsafe { (self.0.add(I) as *const u64).read() }
    }
}

/// Parses the frame; for IP packets fills `p`, which lives in a map (see
/// main.rs), every field written on every path.
#[inline(always)]
pub fn parse(ctx: &impl Frame, p: &mut Packet) -> Parsed {
    let frame_len = ctx.data_end() - ctx.data();
    let Some((ethertype, off)) = ethertype(ctx) else {
        return Parsed::Malformed;
    };
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(ctx, p, off, frame_len),
        ETH_P_IPV6 => parse_ipv6(ctx, p, off, frame_len),
        // A third tag hides what it carries: refuse rather than pass unseen.
        ETH_P_8021Q | ETH_P_8021AD => Parsed::Malformed,
        _ => Parsed::NonIp,
    }
}

/// The ethertype after the Ethernet header and up to [`MAX_VLAN_TAGS`]
/// tags, and the offset of what it names; None if a header is cut short.
/// A tag left after that is the caller's to refuse.
#[inline(always)]
pub fn ethertype(ctx: &impl Frame) -> Option<(u16, usize)> {
    let mut ethertype = Hdr::<ETH_HDR_LEN>::at(ctx, 0)?.be16::<12>();
    let mut off = ETH_HDR_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // Tag: 2 bytes TCI, then the inner ethertype.
        ethertype = Hdr::<4>::at(ctx, off)?.be16::<2>();
        off += 4;
    }
    Some((ethertype, off))
}

/// An IPv4 header at `off` whose lengths hold: its header length and its
/// packet's total length, within the frame.
#[inline(always)]
pub fn ipv4_header(
    ctx: &impl Frame,
    off: usize,
    frame_len: usize,
) -> Option<(Hdr<20>, usize, usize)> {
    let h = Hdr::<20>::at(ctx, off)?;
    let version_ihl = h.u8::<0>();
    let hdr_len = (version_ihl & 0x0f) as usize * 4;
    let total_len = h.be16::<2>() as usize;
    if version_ihl >> 4 != 4 || hdr_len < 20 || total_len < hdr_len || off + total_len > frame_len {
        return None;
    }
    Some((h, hdr_len, total_len))
}

/// An IPv6 header at `off` whose payload ends within the frame, and where
/// it ends.
#[inline(always)]
pub fn ipv6_header(ctx: &impl Frame, off: usize, frame_len: usize) -> Option<(Hdr<40>, usize)> {
    let h = Hdr::<40>::at(ctx, off)?;
    let ip_end = off + 40 + h.be16::<4>() as usize;
    if h.u8::<0>() >> 4 != 6 || ip_end > frame_len {
        return None;
    }
    Some((h, ip_end))
}

/// Every field but the addresses, which each IP version writes whole.
/// Field by field: a whole-struct store would become a memset, which the
/// BPF backend emits as a byte loop.
#[inline(always)]
fn reset(p: &mut Packet, family: u8, proto: u8, frame_len: usize) {
    p.family = family;
    p.proto = proto;
    p.frag = Frag::None;
    p.frag_id = 0;
    p.frag_proto = proto;
    p.src_port = 0;
    p.dst_port = 0;
    p.icmp_type = 0;
    p.tcp_flags = 0;
    p.payload_off = 0;
    p.payload_len = 0;
    p.frame_len = frame_len as u64;
}

#[inline(always)]
fn parse_ipv4(ctx: &impl Frame, p: &mut Packet, off: usize, frame_len: usize) -> Parsed {
    let Some((h, hdr_len, total_len)) = ipv4_header(ctx, off, frame_len) else {
        return Parsed::Malformed;
    };
    let frag_field = h.be16::<6>();
    reset(p, FAMILY_V4, h.u8::<9>(), frame_len);
    p.frag = if frag_field & 0x1fff != 0 {
        Frag::Later
    } else if frag_field & 0x2000 != 0 {
        Frag::First
    } else {
        Frag::None
    };
    p.frag_id = h.be16::<4>() as u32;
    // Zero-extended in a register: the address bytes first, in memory
    // order, as `Packet` keeps them.
    p.src = [h.raw32::<12>() as u64, 0];
    p.dst = [h.raw32::<16>() as u64, 0];
    parse_l4(ctx, p, off + hdr_len, off + total_len)
}

#[inline(always)]
fn parse_ipv6(ctx: &impl Frame, p: &mut Packet, off: usize, frame_len: usize) -> Parsed {
    let Some((h, ip_end)) = ipv6_header(ctx, off, frame_len) else {
        return Parsed::Malformed;
    };
    let mut next = h.u8::<6>();
    reset(p, FAMILY_V6, next, frame_len);
    p.src = [h.raw64::<8>(), h.raw64::<16>()];
    p.dst = [h.raw64::<24>(), h.raw64::<32>()];
    let mut cur = off + 40;
    for _ in 0..MAX_EXT_HEADERS {
        if !is_extension(next) {
            break;
        }
        // Every extension header is at least 8 bytes and starts with
        // next-header and length; the fragment header keeps offset and M
        // flag in bytes 2..4 and the identification in bytes 4..8.
        let Some(e) = Hdr::<8>::at(ctx, cur) else {
            return Parsed::Malformed;
        };
        let hdr_len = match next {
            NEXTHDR_FRAGMENT => {
                let field = e.be16::<2>();
                if field & 0xfff8 != 0 {
                    p.frag = Frag::Later;
                } else if field & 1 != 0 {
                    p.frag = Frag::First;
                }
                p.frag_id = e.be32::<4>();
                p.frag_proto = e.u8::<0>();
                8
            }
            _ => ext_len(next, e),
        };
        next = e.u8::<0>();
        cur += hdr_len;
        if cur > ip_end || cur > MAX_L4_OFFSET {
            return Parsed::Malformed;
        }
        if p.frag == Frag::Later {
            // What follows is the middle of a datagram, not headers.
            break;
        }
    }
    if p.frag != Frag::Later && is_extension(next) {
        // Longer chain than we walk: what it hides stays unexamined.
        return Parsed::Malformed;
    }
    p.proto = next;
    parse_l4(ctx, p, cur, ip_end)
}

/// The length of a non-fragment extension header `next` whose first 8
/// bytes are `e`: AH counts 4-byte words past the first two, the others
/// 8-byte units past the first.
#[inline(always)]
fn ext_len(next: u8, e: Hdr<8>) -> usize {
    if next == NEXTHDR_AUTH {
        (e.u8::<1>() as usize + 2) * 4
    } else {
        (e.u8::<1>() as usize + 1) * 8
    }
}

#[inline(always)]
fn is_extension(next: u8) -> bool {
    matches!(
        next,
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT
    )
}

#[inline(always)]
fn parse_l4(ctx: &impl Frame, p: &mut Packet, l4: usize, ip_end: usize) -> Parsed {
    if p.frag == Frag::Later {
        return Parsed::Ip;
    }
    if l4 > MAX_L4_OFFSET {
        return Parsed::Malformed;
    }
    let have = ip_end - l4;
    match p.proto {
        IPPROTO_UDP => {
            let Some(h) = Hdr::<8>::at(ctx, l4) else {
                return Parsed::Malformed;
            };
            let ulen = h.be16::<4>() as usize;
            // A first fragment's UDP length covers the whole datagram.
            if have < 8 || ulen < 8 || (p.frag == Frag::None && ulen > have) {
                return Parsed::Malformed;
            }
            p.src_port = h.be16::<0>();
            p.dst_port = h.be16::<2>();
            p.payload_off = l4 + 8;
            p.payload_len = (ulen - 8) as u16;
        }
        IPPROTO_TCP => {
            let Some(h) = Hdr::<20>::at(ctx, l4) else {
                return Parsed::Malformed;
            };
            let doff = (h.u8::<12>() >> 4) as usize * 4;
            if have < 20 || doff < 20 || doff > have {
                return Parsed::Malformed;
            }
            p.src_port = h.be16::<0>();
            p.dst_port = h.be16::<2>();
            p.tcp_flags = h.u8::<13>();
            p.payload_off = l4 + doff;
            p.payload_len = (have - doff) as u16;
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let Some(h) = Hdr::<4>::at(ctx, l4) else {
                return Parsed::Malformed;
            };
            if have < 4 {
                return Parsed::Malformed;
            }
            p.icmp_type = h.u8::<0>();
            p.payload_off = l4 + 4;
            p.payload_len = (have - 4) as u16;
        }
        _ => {}
    }
    Parsed::Ip
}
