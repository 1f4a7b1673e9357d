//! What replay needs to know of a frame beyond the program's verdict: its
//! addresses, protocol and ports, for telling its direction, labelling it
//! attack or benign, and naming the source of a ban. A reading of the
//! headers only, on the host; the verdict is always the program's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// A frame's network and transport facts, as far as the capture holds
/// them: `None` where the frame is not IP, is cut short, or is a later
/// fragment (no ports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FrameFacts {
    pub(crate) src: Option<IpAddr>,
    pub(crate) dst: Option<IpAddr>,
    pub(crate) proto: Option<u8>,
    pub(crate) src_port: Option<u16>,
    pub(crate) dst_port: Option<u16>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads an Ethernet frame (up to two VLAN tags, IPv4 with options, IPv6
/// with its extension headers).
pub(crate) fn facts(frame: &[u8]) -> FrameFacts {
    let mut off = 12;
    let mut ether_type = be16(frame, off).unwrap_or(0);
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        off += 4;
        ether_type = be16(frame, off).unwrap_or(0);
    }
    let ip = frame.get(off + 2..).unwrap_or(&[]);
    match ether_type {
        ETH_P_IPV4 => ipv4(ip),
        ETH_P_IPV6 => ipv6(ip),
        _ => FrameFacts::default(),
    }
}

fn ipv4(ip: &[u8]) -> FrameFacts {
    let mut f = FrameFacts::default();
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return f;
    }
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    f.src = Some(IpAddr::V4(addr(12)));
    f.dst = Some(IpAddr::V4(addr(16)));
    f.proto = Some(ip[9]);
    let first = be16(ip, 6).unwrap_or(0) & 0x1fff == 0;
    if first {
        ports(
            &mut f,
            ip.get(usize::from(ip[0] & 0x0f) * 4..).unwrap_or(&[]),
        );
    }
    f
}

fn ipv6(ip: &[u8]) -> FrameFacts {
    let mut f = FrameFacts::default();
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return f;
    }
    let addr = |at: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&ip[at..at + 16]);
        Ipv6Addr::from(b)
    };
    f.src = Some(IpAddr::V6(addr(8)));
    f.dst = Some(IpAddr::V6(addr(24)));
    let (mut next, mut off) = (ip[6], 40usize);
    // Hop-by-hop, routing, destination options and fragment headers, as
    // many as a sane packet holds.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let (Some(&n), Some(&len)) = (ip.get(off), ip.get(off + 1)) else {
                    return f;
                };
                next = n;
                off += (usize::from(len) + 1) * 8;
            }
            44 => {
                let Some(&n) = ip.get(off) else { return f };
                let later = be16(ip, off + 2).unwrap_or(0) & 0xfff8 != 0;
                next = n;
                off += 8;
                if later {
                    f.proto = Some(next);
                    return f;
                }
            }
            _ => break,
        }
    }
    f.proto = Some(next);
    ports(&mut f, ip.get(off..).unwrap_or(&[]));
    f
}

fn ports(f: &mut FrameFacts, l4: &[u8]) {
    if matches!(f.proto, Some(6 | 17)) {
        f.src_port = be16(l4, 0);
        f.dst_port = be16(l4, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(tags: usize, ether_type: u16, ip: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        for _ in 0..tags {
            v.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            v.extend_from_slice(&[0, 5]);
        }
        v.extend_from_slice(&ether_type.to_be_bytes());
        v.extend_from_slice(ip);
        v
    }

    fn v4(frag: u16, ihl: u8, l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![0u8; usize::from(ihl) * 4];
        ip[0] = 0x40 | ihl;
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[203, 0, 113, 7]);
        ip[16..20].copy_from_slice(&[192, 0, 2, 1]);
        ip.extend_from_slice(l4);
        ip
    }

    #[test]
    fn ipv4_behind_tags_and_options() {
        let f = facts(&eth(
            2,
            ETH_P_IPV4,
            &v4(0, 6, &[0, 123, 0x13, 0x88, 0, 8, 0, 0]),
        ));
        assert_eq!(f.src, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(f.dst, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            (f.proto, f.src_port, f.dst_port),
            (Some(17), Some(123), Some(5000))
        );
    }

    #[test]
    fn later_fragments_have_no_ports() {
        let f = facts(&eth(0, ETH_P_IPV4, &v4(185, 5, &[0, 123, 0x13, 0x88])));
        assert_eq!((f.proto, f.src_port), (Some(17), None));
    }

    #[test]
    fn ipv6_walks_extension_headers() {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[6] = 0; // hop-by-hop
        ip[8..24].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        ip[24..40].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&[44, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop -> fragment
        ip.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]); // first fragment, more
        ip.extend_from_slice(&[0x07, 0x6c, 0x13, 0x88, 0, 8, 0, 0]);
        let f = facts(&eth(0, ETH_P_IPV6, &ip));
        assert_eq!(f.src, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(
            (f.proto, f.src_port, f.dst_port),
            (Some(17), Some(1900), Some(5000))
        );
    }

    #[test]
    fn short_and_foreign_frames_say_nothing() {
        assert_eq!(facts(&[0; 10]), FrameFacts::default());
        assert_eq!(facts(&eth(0, 0x0806, &[0; 28])), FrameFacts::default());
        assert_eq!(
            facts(&eth(0, ETH_P_IPV4, &[0x45, 0, 0])),
            FrameFacts::default()
        );
    }
}
