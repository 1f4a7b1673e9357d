//! Hand-built frames for the tests and benchmarks: every header written out byte by
//! byte so a test can put exactly the wrapping (VLAN tags, IPv4 options, IPv6
//! extension headers, fragments) or the lie (bad lengths) it means to test.

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_ARP: u16 = 0x0806;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;
pub const UDP: u8 = 17;
pub const TCP: u8 = 6;
pub const ICMP: u8 = 1;

pub const SRC4: [u8; 4] = [203, 0, 113, 7];
pub const DST4: [u8; 4] = [192, 0, 2, 1];
pub const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
pub const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Ethernet header with `tags` VLAN TPIDs (outermost first), then `payload`.
pub fn ether(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (i, tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[derive(Clone, Copy, Default)]
pub struct Frag {
    pub more: bool,
    /// In 8-byte units.
    pub offset: u16,
    /// IPv4 identification.
    pub id: u16,
}

/// IPv4 header (with `options`, padded to 4 bytes by the caller) + `l4`.
pub fn ipv4(proto: u8, options: &[u8], frag: Frag, l4: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "options must be whole words");
    let hdr_len = 20 + options.len();
    let total = (hdr_len + l4.len()) as u16;
    let mut h = vec![0x40 | (hdr_len / 4) as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&frag.id.to_be_bytes());
    let frag_field = (if frag.more { 0x2000 } else { 0 }) | frag.offset;
    h.extend_from_slice(&frag_field.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&SRC4);
    h.extend_from_slice(&DST4);
    h.extend_from_slice(options);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

/// IPv6 header, then extension headers given as (type, body without the
/// next-header byte), then `l4` of protocol `proto`.
pub fn ipv6(proto: u8, ext: &[(u8, Vec<u8>)], l4: &[u8]) -> Vec<u8> {
    let mut rest = Vec::new();
    for (i, (_, body)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(proto, |e| e.0);
        rest.push(next);
        rest.extend_from_slice(body);
    }
    rest.extend_from_slice(l4);
    let first = ext.first().map_or(proto, |e| e.0);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(&[first, 64]);
    h.extend_from_slice(&SRC6);
    h.extend_from_slice(&DST6);
    h.extend_from_slice(&rest);
    h
}

/// Hop-by-hop or destination options body: length byte + PadN to 8 bytes.
pub fn ext_options() -> Vec<u8> {
    vec![0, 1, 4, 0, 0, 0, 0]
}

/// Fragment extension header body (7 bytes after next-header).
pub fn ext_fragment(offset_units: u16, more: bool) -> Vec<u8> {
    ext_fragment_id(offset_units, more, 0xabcd_0001)
}

pub fn ext_fragment_id(offset_units: u16, more: bool, id: u32) -> Vec<u8> {
    let field = (offset_units << 3) | more as u16;
    let mut b = vec![0];
    b.extend_from_slice(&field.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

pub fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

pub fn icmp_echo() -> Vec<u8> {
    vec![8, 0, 0xf7, 0xff, 0, 0, 0, 0]
}

/// An NTP mode 7 (monlist) reply: the amplified one, 468 bytes.
pub fn ntp_monlist_reply() -> Vec<u8> {
    let mut p = vec![0x97, 0x00, 0x03, 0x2a];
    p.resize(468, 0x11);
    p
}

/// An NTP mode 4 (server) time reply, 48 bytes: what time sync receives.
pub fn ntp_time_reply() -> Vec<u8> {
    let mut p = vec![0x24, 0x02, 0x00, 0xe7];
    p.resize(48, 0);
    p
}

pub fn ssdp_reply() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: upnp:rootdevice\r\nUSN: uuid:0::upnp:rootdevice\r\n\r\n".to_vec()
}

pub fn dns_query() -> Vec<u8> {
    vec![
        0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0,
        0, 1, 0, 1,
    ]
}

/// An SNMP message, v2c (`version` 1) or v1 (0), community "public",
/// whose PDU has tag `pdu` (0xa0 Get, 0xa2 GetResponse, 0xa4 Trap, 0xa6
/// InformRequest, 0xa7 SNMPv2-Trap): a request id, no error, no variable.
pub fn snmp(version: u8, pdu: u8) -> Vec<u8> {
    let body = [
        0x02, 0x04, 0, 0, 0, 7, 0x02, 0x01, 0, 0x02, 0x01, 0, 0x30, 0,
    ];
    let mut inner = vec![0x02, 0x01, version, 0x04, 0x06];
    inner.extend(b"public");
    inner.extend([pdu, body.len() as u8]);
    inner.extend(body);
    let mut m = vec![0x30, inner.len() as u8];
    m.extend(inner);
    m
}

/// A CoAP GET (confirmable, token aa bb) of `temp`, registering for
/// notifications with the Observe option (6, value 0) when `observe`.
pub fn coap_get(observe: bool) -> Vec<u8> {
    let mut m = vec![0x42, 0x01, 0x12, 0x34, 0xaa, 0xbb];
    if observe {
        // Option 6, empty (the value 0), then Uri-Path (11) at delta 5.
        m.extend([0x60, 0x54]);
    } else {
        m.push(0xb4);
    }
    m.extend(b"temp");
    m
}

/// A CoAP notification: non-confirmable 2.05 Content, token aa bb,
/// Observe = `seq`.
pub fn coap_notification(seq: u8) -> Vec<u8> {
    vec![
        0x52, 0x45, 0x40, seq, 0xaa, 0xbb, 0x61, seq, 0xff, b'2', b'1',
    ]
}

pub fn arp() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2];
    a.extend_from_slice(&SRC4);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&DST4);
    ether(&[], ETH_ARP, &a)
}

/// `frame` (Ethernet + IPv4, no VLAN tag) with another source address.
pub fn with_src4(mut frame: Vec<u8>, src: [u8; 4]) -> Vec<u8> {
    frame[26..30].copy_from_slice(&src);
    frame
}

/// `frame` (Ethernet + IPv6, no VLAN tag) with another source address.
pub fn with_src6(mut frame: Vec<u8>, src: [u8; 16]) -> Vec<u8> {
    frame[22..38].copy_from_slice(&src);
    frame
}
