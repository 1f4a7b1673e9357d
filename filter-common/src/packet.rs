//! What a parser gives the decision: the header summary of one packet
//! ([`Packet`], its addresses as words), and whether there was one
//! ([`Parsed`]). The kernel's parser and the reference model fill it alike;
//! the decision and the reply guard read it.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    /// Not a fragment.
    None,
    /// Offset 0 with more fragments to come: carries the L4 header.
    First,
    /// Offset > 0: payload bytes only, no ports.
    Later,
}

/// What the decision knows about an IP packet, whoever parsed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub family: u8,
    /// Addresses as two words holding the network-order bytes in memory
    /// order (see [`addr_words`]); IPv4 in the first 4 bytes, the rest
    /// zero. Words, not byte arrays: the BPF backend copies and clears a
    /// byte array one byte at a time (a 163-instruction memset for two of
    /// them), a word in one instruction.
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub frag: Frag,
    /// IPv4 identification or IPv6 fragment identification.
    pub frag_id: u32,
    /// The protocol every fragment of the datagram names: the IPv4
    /// protocol, or the IPv6 fragment header's next header (for a first
    /// fragment that may differ from `proto`, which follows any extension
    /// headers after the fragment header).
    pub frag_proto: u8,
    /// Zero for protocols without ports and for later fragments.
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP or ICMPv6 type; 0 for other protocols.
    pub icmp_type: u8,
    /// TCP flags (the header's byte 13: CWR ECE URG ACK PSH RST SYN FIN);
    /// 0 for other protocols.
    pub tcp_flags: u8,
    /// Offset of the L4 payload in the frame (used only to read it).
    pub payload_off: usize,
    /// L4 payload length as the headers declare it (for a first fragment,
    /// the whole datagram's UDP payload).
    pub payload_len: u16,
    pub frame_len: u64,
}

/// An address as [`Packet`] holds it.
pub type Addr = [u64; 2];

/// The words of a 16-byte address, each holding its 8 bytes in memory
/// order, so that a word stored in a key lays the bytes out unchanged.
#[inline(always)]
pub fn addr_words(b: &[u8; 16]) -> Addr {
    let (hi, lo) = b.split_at(8);
    [
        u64::from_ne_bytes(hi.try_into().unwrap_or_default()),
        u64::from_ne_bytes(lo.try_into().unwrap_or_default()),
    ]
}

/// An IPv4 address as [`Packet`] holds it.
#[inline(always)]
pub fn addr_v4(b: [u8; 4]) -> Addr {
    let mut a = [0; 16];
    a[..4].copy_from_slice(&b);
    addr_words(&a)
}

/// The 16 network-order bytes of `a`.
#[inline(always)]
pub fn addr_bytes(a: &Addr) -> [u8; 16] {
    let mut b = [0; 16];
    b[..8].copy_from_slice(&a[0].to_ne_bytes());
    b[8..].copy_from_slice(&a[1].to_ne_bytes());
    b
}

/// What parsing a frame gave; for `Ip`, the parser filled a [`Packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    NonIp,
    Malformed,
    Ip,
}

impl Packet {
    pub const EMPTY: Packet = Packet {
        family: 0,
        src: [0; 2],
        dst: [0; 2],
        proto: 0,
        frag: Frag::None,
        frag_id: 0,
        frag_proto: 0,
        src_port: 0,
        icmp_type: 0,
        tcp_flags: 0,
        dst_port: 0,
        payload_off: 0,
        payload_len: 0,
        frame_len: 0,
    };
}
