//! The common case of a reflection flood, decided before the full parse: a
//! UDP datagram over IPv4 or IPv6 (up to two VLAN tags, no IPv4 fragment,
//! no IPv6 extension header) from a guarded source port, to a port that is
//! not guarded itself and at which no request of this host is open, from a
//! source that no allow or deny prefix can cover (the hints say so in one
//! array read), while nothing was ever banned. The full decision would come
//! to `unsolicited_reply` at its reply-guard step; this comes to it in a
//! handful of loads. Anything else, malformed frames included, returns None
//! and takes the full path, which the differential test holds this one to.

use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use filter_common::{
    CONFIG_HAS_ALLOW, CONFIG_HAS_DENY, CONFIG_REPLY_GUARD, Config, FAMILY_V4, FAMILY_V6,
    IPPROTO_UDP, decide::Addr,
};

use crate::{
    env::guarded,
    maps::{BAN_FLAG, LOCAL_PORTS, listed},
    parse::Hdr,
};

const ETH_HDR_LEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// The UDP source port of a frame the full decision would drop as an
/// unsolicited reply, when that is certain from the few fields read here.
#[inline(always)]
pub fn unsolicited(ctx: &XdpContext, config: &Config) -> Option<u16> {
    if config.flags & CONFIG_REPLY_GUARD == 0 || BAN_FLAG.get(0).is_none_or(|f| *f != 0) {
        return None;
    }
    let frame_len = ctx.data_end() - ctx.data();
    let eth = Hdr::<ETH_HDR_LEN>::at(ctx, 0)?;
    let mut ethertype = eth.be16::<12>();
    let mut off = ETH_HDR_LEN;
    // The full parser's two tags; a third is its to refuse.
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = Hdr::<4>::at(ctx, off)?.be16::<2>();
        off += 4;
    }
    let (l4, ip_end, family, src) = match ethertype {
        ETH_P_IPV4 => ipv4_udp(ctx, off, frame_len)?,
        ETH_P_IPV6 => ipv6_udp(ctx, off, frame_len)?,
        _ => return None,
    };
    // A source that an allow or deny prefix may cover is the full path's.
    if config.flags & (CONFIG_HAS_ALLOW | CONFIG_HAS_DENY) != 0 && listed(family, &src) {
        return None;
    }
    let udp = Hdr::<8>::at(ctx, l4)?;
    let have = ip_end - l4;
    let ulen = udp.be16::<4>() as usize;
    if have < 8 || ulen < 8 || ulen > have {
        return None;
    }
    let (src_port, dst_port) = (udp.be16::<0>(), udp.be16::<2>());
    // A guarded destination port may be a server's: the full path asks the
    // socket table.
    if !guarded(config, src_port) || guarded(config, dst_port) {
        return None;
    }
    let open = LOCAL_PORTS.get(dst_port as u32)?;
    if open.until != 0 || open.group_until != 0 {
        // A request left from this port once: still open?
        // SAFETY: no preconditions.
        let now = unsafe { bpf_ktime_get_coarse_ns() };
        if now < open.until || now < open.group_until {
            return None;
        }
    }
    Some(src_port)
}

/// Where the UDP header and the IP packet's end are in an IPv4 packet at
/// `off` that passes the full parser's checks and is no fragment, with its
/// family and source as far as the hints read it.
#[inline(always)]
fn ipv4_udp(ctx: &XdpContext, off: usize, frame_len: usize) -> Option<(usize, usize, u8, Addr)> {
    let ip = Hdr::<20>::at(ctx, off)?;
    let ver_ihl = ip.u8::<0>();
    let hdr_len = (ver_ihl & 0x0f) as usize * 4;
    let total_len = ip.be16::<2>() as usize;
    // No fragment at all: a first fragment's drop is remembered for its
    // later fragments, which the full path does.
    if ver_ihl >> 4 != 4
        || hdr_len < 20
        || total_len < hdr_len
        || off + total_len > frame_len
        || ip.be16::<6>() & 0x3fff != 0
        || ip.u8::<9>() != IPPROTO_UDP
    {
        return None;
    }
    Some((
        off + hdr_len,
        off + total_len,
        FAMILY_V4,
        [ip.raw32::<12>() as u64, 0],
    ))
}

/// The same for an IPv6 packet whose next header is UDP itself.
#[inline(always)]
fn ipv6_udp(ctx: &XdpContext, off: usize, frame_len: usize) -> Option<(usize, usize, u8, Addr)> {
    let ip = Hdr::<40>::at(ctx, off)?;
    let ip_end = off + 40 + ip.be16::<4>() as usize;
    if ip.u8::<0>() >> 4 != 6 || ip_end > frame_len || ip.u8::<6>() != IPPROTO_UDP {
        return None;
    }
    // The hints read the first 8 bytes of the source only.
    Some((off + 40, ip_end, FAMILY_V6, [ip.raw64::<8>(), 0]))
}
