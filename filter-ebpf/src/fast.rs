//! The common case of a reflection flood, decided before the full parse:
//! an IPv4 UDP datagram (no VLAN tag, not a fragment) from a guarded source
//! port, to a port that is not guarded itself and at which no request of
//! this host is open, while no allow, deny or ban list could change the
//! outcome. The full decision would come to `unsolicited_reply` at its
//! reply-guard step; this comes to it in a handful of loads. Anything else,
//! malformed frames included, returns None and takes the full path, which
//! the differential test holds this one to.

use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use filter_common::{CONFIG_HAS_ALLOW, CONFIG_HAS_DENY, CONFIG_REPLY_GUARD, Config, IPPROTO_UDP};

use crate::{
    env::guarded,
    maps::{BAN_FLAG, LOCAL_PORTS},
    parse::Hdr,
};

const ETH_HDR_LEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;

/// The UDP source port of a frame the full decision would drop as an
/// unsolicited reply, when that is certain from the few fields read here.
#[inline(always)]
pub fn unsolicited(ctx: &XdpContext, config: &Config) -> Option<u16> {
    if config.flags & (CONFIG_HAS_ALLOW | CONFIG_HAS_DENY | CONFIG_REPLY_GUARD)
        != CONFIG_REPLY_GUARD
        || BAN_FLAG.get(0).is_none_or(|f| *f != 0)
    {
        return None;
    }
    let frame_len = ctx.data_end() - ctx.data();
    let eth = Hdr::<ETH_HDR_LEN>::at(ctx, 0)?;
    if eth.be16::<12>() != ETH_P_IPV4 {
        return None;
    }
    let ip = Hdr::<20>::at(ctx, ETH_HDR_LEN)?;
    let ver_ihl = ip.u8::<0>();
    let hdr_len = (ver_ihl & 0x0f) as usize * 4;
    let total_len = ip.be16::<2>() as usize;
    // The full parser's checks, and no fragment at all (a first fragment's
    // drop is remembered for its later fragments: the full path does that).
    if ver_ihl >> 4 != 4
        || hdr_len < 20
        || total_len < hdr_len
        || ETH_HDR_LEN + total_len > frame_len
        || ip.be16::<6>() & 0x3fff != 0
        || ip.u8::<9>() != IPPROTO_UDP
    {
        return None;
    }
    let udp = Hdr::<8>::at(ctx, ETH_HDR_LEN + hdr_len)?;
    let have = total_len - hdr_len;
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
