//! Captures written by hand with std only, so that the tests do not depend
//! on the crate they test: classic pcap files, and Ethernet frames turned
//! into the Linux cooked frames of `tcpdump -i any`.

/// Link types (the pcap header's network field).
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Cooked packet types: sent to this host, and sent by it.
pub const PACKET_HOST: u8 = 0;
pub const PACKET_OUTGOING: u8 = 4;

/// A classic pcap: little-endian, microseconds, version 2.4, snaplen
/// 262144 (libpcap's default, which GRO-merged frames need). Records are
/// (timestamp in µs, bytes captured, length on the wire).
pub fn pcap(linktype: u32, records: &[(u64, &[u8], u32)]) -> Vec<u8> {
    let mut out = pcap_header(linktype);
    for r in records {
        pcap_record(&mut out, *r);
    }
    out
}

pub fn pcap_header(linktype: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&linktype.to_le_bytes());
    out
}

pub fn pcap_record(out: &mut Vec<u8>, (us, data, len): (u64, &[u8], u32)) {
    out.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
}

/// A pcap of whole frames (captured as long as on the wire).
pub fn pcap_of(linktype: u32, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let records: Vec<(u64, &[u8], u32)> = frames
        .iter()
        .map(|(us, f)| (*us, f.as_slice(), f.len() as u32))
        .collect();
    pcap(linktype, &records)
}

/// An Ethernet frame as Linux cooked capture v1 or v2 records it, received
/// by the host (packet type 0).
pub fn cooked(frame: &[u8], v2: bool) -> Vec<u8> {
    cooked_as(frame, v2, PACKET_HOST)
}

/// An Ethernet frame as Linux cooked capture v1 or v2 records it, the link
/// header replaced by a cooked one with `packet_type` (4: sent by the host).
pub fn cooked_as(frame: &[u8], v2: bool, packet_type: u8) -> Vec<u8> {
    let (src, ethertype, payload) = (&frame[6..12], &frame[12..14], &frame[14..]);
    let header = if v2 {
        // protocol, reserved, ifindex, ARPHRD_ETHER, packet type, addr len
        [
            ethertype,
            &[0, 0, 0, 0, 0, 3, 0, 1, packet_type, 6],
            src,
            &[0, 0],
        ]
        .concat()
    } else {
        // packet type, ARPHRD_ETHER, addr len, address, protocol
        [&[0, packet_type, 0, 1, 0, 6][..], src, &[0, 0], ethertype].concat()
    };
    [header.as_slice(), payload].concat()
}
