//! Request shapes: what a request of each guarded protocol looks like in
//! its first payload bytes, so that a datagram from a guarded port to a
//! server of that protocol (NTP 123 to 123, DNS 53 to 53) passes only if
//! it has the shape of a request. A reflection aimed at the port a host
//! serves carries replies: a DNS answer (QR=1), an NTP mode 4, 6 or 7
//! packet, an SNMP GetResponse, an SSDP `HTTP/1.1 200`.
//!
//! One table, [`SHAPES`], read by the XDP program, by the reference model
//! and by `filterctl check` (README's table is made from it). Each check
//! reads four bytes at an offset the table gives (or, for BER, one a short
//! walk finds), within the first [`crate::MATCH_OFFSET_MAX`] bytes, so the
//! program's cost is a few loads per check.
//!
//! Beside it, [`PAIRS`]: ports a protocol pairs, where a datagram from its
//! port goes to another port of the same protocol (SNMP traps from an
//! agent's 161 to a manager's 162), with the shape such a datagram has; and
//! [`subscribes`], which tells a request whose answers keep coming (CoAP
//! Observe) from a plain one.

use crate::MATCH_OFFSET_MAX;

/// Four payload bytes at `offset`, masked, must equal `value`; a zero
/// mask matches anything (an unused word).
#[derive(Clone, Copy, Debug)]
pub struct Word {
    pub offset: u8,
    pub mask: [u8; 4],
    pub value: [u8; 4],
}

/// Alternatives of a [`Test::Words`] at most, and words in each.
pub const ALTERNATIVES: usize = 3;
pub const WORDS: usize = 2;
/// Request tags of a [`Test::Ber`] at most.
pub const TAGS: usize = 8;

/// How a request of a protocol is told from a reply. Flat, fixed-size
/// data (no references): the XDP program reads it as constants.
#[derive(Clone, Copy, Debug)]
pub enum Test {
    /// A request matches every word of one of the first `n` alternatives.
    Words {
        n: u8,
        alternatives: [[Word; WORDS]; ALTERNATIVES],
    },
    /// BER (ASN.1): `SEQUENCE { INTEGER, [OCTET STRING,] op ... }`: a
    /// request's operation tag is one of the first `n` of `requests`. With
    /// `community`, an OCTET STRING (SNMP's community) comes before it.
    Ber {
        community: bool,
        n: u8,
        requests: [u8; TAGS],
    },
}

/// One protocol's request shape, on the port it serves.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub port: u16,
    pub test: Test,
}

const fn word(offset: u8, mask: [u8; 4], value: [u8; 4]) -> Word {
    Word {
        offset,
        mask,
        value,
    }
}

const ANY: Word = word(0, [0; 4], [0; 4]);
const ALL: [u8; 4] = [0xff; 4];

const fn one(w: Word) -> [Word; WORDS] {
    [w, ANY]
}

const fn tags<const N: usize>(t: [u8; N]) -> [u8; TAGS] {
    let mut out = [0; TAGS];
    let mut i = 0;
    while i < N {
        out[i] = t[i];
        i += 1;
    }
    out
}

/// The guarded protocols whose requests and replies differ in their first
/// bytes. The others (chargen, WS-Discovery, whose action lies deep in
/// its XML, ARD, ...) pass to a server on their port as before: see
/// [`describe`] for what each test tells apart.
pub const SHAPES: [Shape; 7] = [
    Shape {
        port: 53,
        // QR=0; QDCOUNT=1, ANCOUNT=0, NSCOUNT=0.
        test: Test::Words {
            n: 1,
            alternatives: [
                [
                    word(2, [0x80, 0, 0xff, 0xff], [0, 0, 0, 1]),
                    word(6, ALL, [0; 4]),
                ],
                [ANY; WORDS],
                [ANY; WORDS],
            ],
        },
    },
    Shape {
        port: 123,
        // The low three bits of the first byte: the mode.
        test: Test::Words {
            n: 3,
            alternatives: [
                one(word(0, [0x07, 0, 0, 0], [1, 0, 0, 0])),
                one(word(0, [0x07, 0, 0, 0], [2, 0, 0, 0])),
                one(word(0, [0x07, 0, 0, 0], [3, 0, 0, 0])),
            ],
        },
    },
    Shape {
        port: 161,
        // Get, GetNext, Set, Trap v1, GetBulk, Inform, Trap v2.
        test: Test::Ber {
            community: true,
            n: 7,
            requests: tags([0xa0, 0xa1, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7]),
        },
    },
    Shape {
        port: 389,
        // bindRequest, unbindRequest, searchRequest, abandonRequest.
        test: Test::Ber {
            community: false,
            n: 4,
            requests: tags([0x60, 0x42, 0x63, 0x50]),
        },
    },
    Shape {
        port: 1900,
        test: Test::Words {
            n: 2,
            alternatives: [
                one(word(0, ALL, *b"M-SE")),
                one(word(0, ALL, *b"NOTI")),
                [ANY; WORDS],
            ],
        },
    },
    Shape {
        port: 5683,
        // Version 1; code class 0 (requests; 0.00 is a ping).
        test: Test::Words {
            n: 1,
            alternatives: [
                one(word(0, [0xc0, 0xe0, 0, 0], [0x40, 0, 0, 0])),
                [ANY; WORDS],
                [ANY; WORDS],
            ],
        },
    },
    Shape {
        port: 11211,
        // After the 8-byte UDP frame header: a text command is lower case
        // (get, gets, set, stats...), a text reply upper case (VALUE,
        // END, STAT...); a binary request starts with 0x80.
        test: Test::Words {
            n: 2,
            alternatives: [
                one(word(8, [0xe0, 0, 0, 0], [0x60, 0, 0, 0])),
                one(word(8, [0xff, 0, 0, 0], [0x80, 0, 0, 0])),
                [ANY; WORDS],
            ],
        },
    },
];

/// What [`SHAPES`]' test of `port` tells apart, for README and `check`:
/// protocol, requests, replies.
pub fn describe(port: u16) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match port {
        53 => (
            "DNS",
            "QR=0, one question, no answer or authority records",
            "QR=1, or answer records",
        ),
        123 => (
            "NTP",
            "modes 1, 2 (symmetric) and 3 (client)",
            "mode 4 (server), 5 (broadcast), 6 and 7 (control, monlist)",
        ),
        161 => (
            "SNMP",
            "GetRequest, GetNext, GetBulk, Set, Inform, Trap PDUs",
            "GetResponse (and Report) PDUs",
        ),
        389 => (
            "CLDAP",
            "searchRequest (and bind, unbind, abandon)",
            "searchResEntry, searchResDone and the other responses",
        ),
        1900 => ("SSDP", "M-SEARCH, NOTIFY", "HTTP/1.1 200"),
        5683 => (
            "CoAP",
            "code class 0 (GET, POST, PUT, DELETE; 0.00 ping)",
            "classes 2 to 5 (responses)",
        ),
        11211 => (
            "memcached",
            "text commands (lower case), binary requests (magic 0x80)",
            "VALUE, END, STAT... (upper case), binary responses (0x81)",
        ),
        _ => return None,
    })
}

/// The shape of requests to `port`, if its protocol has one.
pub fn shape_of(port: u16) -> Option<&'static Shape> {
    SHAPES.iter().find(|s| s.port == port)
}

/// Two ports a protocol pairs: a datagram from guarded port `from` to a
/// server on port `to` is a request of the protocol when it has `test`'s
/// shape (and a reflection aimed at the service when it has not).
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub from: u16,
    pub to: u16,
    pub test: Test,
}

/// The pairs the guard knows. An agent sends its notifications to the
/// manager's 162, often from the socket it serves 161 with; the reply an
/// SNMP reflection sends (GetResponse) has no business there.
pub const PAIRS: [Pair; 1] = [Pair {
    from: 161,
    to: 162,
    // Trap v1, Inform, Trap v2.
    test: Test::Ber {
        community: true,
        n: 3,
        requests: tags([0xa4, 0xa6, 0xa7]),
    },
}];

/// What a pair of `from` tells apart, for the docs: its other port,
/// what passes there and what does not.
pub fn describe_pair(from: u16) -> Option<(u16, &'static str, &'static str)> {
    let pair = PAIRS.iter().find(|p| p.from == from)?;
    Some(match pair.from {
        161 => (
            pair.to,
            "Trap, SNMPv2-Trap and InformRequest PDUs",
            "the rest (GetResponse)",
        ),
        _ => return None,
    })
}

/// Whether ports `src` and `dst`, each as its two bytes read from the
/// packet as a native u16, are a pair of [`PAIRS`]: the early verdict's
/// test, which must leave a pair's datagrams to the full decision.
#[inline(always)]
pub fn is_pair_wire(src: u16, dst: u16) -> bool {
    let mut found = false;
    let mut i = 0;
    while i < PAIRS.len() {
        if PAIRS[i].from.to_be() == src && PAIRS[i].to.to_be() == dst {
            found = true;
        }
        i += 1;
    }
    found
}

/// Whether `src` and `dst` (host order) are a pair of [`PAIRS`].
#[inline(always)]
pub fn is_pair(src: u16, dst: u16) -> bool {
    is_pair_wire(src.to_be(), dst.to_be())
}

/// Whether a datagram to a server on `port` has the shape of a request,
/// reading four payload bytes at a time with `head` (zeros past the
/// payload's end); `None` when `port`'s protocol has no shape. Unrolled
/// over the table, each test inlined with its constants: nothing of the
/// table is copied or pointed to at run time (the eBPF stack is small).
#[inline(always)]
pub fn is_request(port: u16, head: impl Fn(u16) -> [u8; 4]) -> Option<bool> {
    let mut i = 0;
    while i < SHAPES.len() {
        if SHAPES[i].port == port {
            return Some(test_matches(&SHAPES[i].test, &head));
        }
        i += 1;
    }
    None
}

#[inline(always)]
fn test_matches(test: &Test, head: &impl Fn(u16) -> [u8; 4]) -> bool {
    match test {
        Test::Words { n, alternatives } => {
            let mut any = false;
            let mut i = 0;
            while i < ALTERNATIVES {
                if i < *n as usize && words_match(&alternatives[i], head) {
                    any = true;
                }
                i += 1;
            }
            any
        }
        Test::Ber {
            community,
            n,
            requests,
        } => match ber_op(*community, head) {
            Some(tag) => {
                let mut found = false;
                let mut i = 0;
                while i < TAGS {
                    if i < *n as usize && requests[i] == tag {
                        found = true;
                    }
                    i += 1;
                }
                found
            }
            // Beyond the bytes the program reads (a long community): it
            // cannot be told, and a server's requests must not be lost.
            None => true,
        },
    }
}

/// Whether a datagram from guarded port `src_port` to a server on port
/// `dst_port` (guarded, or the other port of a pair) is a request of that
/// server's protocol: from the same port, with a request's shape (`None`:
/// the protocol has none, so it cannot be told), or from the port a pair
/// names, with the pair's shape. From another guarded port it is a
/// reflection aimed at the service (a memcached reply at a DNS server
/// reads as a query with QR=0, yet no DNS client asks from 11211).
#[inline(always)]
pub fn served_request(src_port: u16, dst_port: u16, head: impl Fn(u16) -> [u8; 4]) -> Option<bool> {
    if src_port == dst_port {
        return is_request(dst_port, head);
    }
    let mut i = 0;
    while i < PAIRS.len() {
        if PAIRS[i].from == src_port && PAIRS[i].to == dst_port {
            return Some(test_matches(&PAIRS[i].test, &head));
        }
        i += 1;
    }
    Some(false)
}

/// CoAP's port, where [`subscribes`] looks for the Observe option.
pub const COAP_PORT: u16 = 5683;
/// The Observe option's number (RFC 7641).
const COAP_OBSERVE: u16 = 6;
/// Options walked before Observe at most: If-Match, Uri-Host, ETag and
/// If-None-Match (1, 3, 4, 5) come before it in a message's order.
const COAP_OPTIONS_BEFORE: usize = 4;

/// Whether a request to `port` subscribes to answers that keep coming: a
/// CoAP request that registers with the Observe option (value 0, RFC
/// 7641), after which the server notifies at will. Walks the token and
/// the options before Observe within the bytes the program reads; an
/// option past them, or one with an extended number, is no registration.
#[inline(always)]
pub fn subscribes(port: u16, head: impl Fn(u16) -> [u8; 4]) -> bool {
    if port != COAP_PORT {
        return false;
    }
    let h = head(0);
    // Version 1, a request (code class 0, not the empty 0.00), a token of
    // up to 8 bytes.
    let tkl = (h[0] & 0x0f) as u16;
    if h[0] & 0xc0 != 0x40 || h[1] & 0xe0 != 0 || h[1] == 0 || tkl > 8 {
        return false;
    }
    let mut at = 4 + tkl;
    let mut number = 0u16;
    for _ in 0..=COAP_OPTIONS_BEFORE {
        if at > MATCH_OFFSET_MAX {
            return false;
        }
        let o = head(at);
        let (delta, len) = ((o[0] >> 4) as u16, (o[0] & 0x0f) as u16);
        // 15: the payload marker or reserved; 13 and 14: a number past 12.
        if delta >= 13 || len >= 14 {
            return false;
        }
        number += delta;
        // A one-byte extended length (13 to 268 bytes: a long Uri-Host).
        let (len, ext) = if len == 13 {
            (o[1] as u16 + 13, 1)
        } else {
            (len, 0)
        };
        if number == COAP_OBSERVE {
            // 0 registers; it may be sent as no byte or as one zero byte.
            return len == 0 || (len == 1 && ext == 0 && o[1] == 0);
        }
        if number > COAP_OBSERVE {
            return false;
        }
        at += 1 + ext + len;
    }
    false
}

#[inline(always)]
fn words_match(words: &[Word; WORDS], head: &impl Fn(u16) -> [u8; 4]) -> bool {
    let mut all = true;
    let mut i = 0;
    while i < WORDS {
        let w = &words[i];
        i += 1;
        if u32::from_ne_bytes(w.mask) != 0 {
            let got = u32::from_ne_bytes(head(w.offset as u16));
            let mask = u32::from_ne_bytes(w.mask);
            if got & mask != u32::from_ne_bytes(w.value) {
                all = false;
            }
        }
    }
    all
}

/// The operation tag of a BER message `SEQUENCE { INTEGER, [OCTET STRING,]
/// op }`; `Some(0)` when it is not such a message, `None` when the tag lies
/// beyond what can be read.
#[inline(always)]
fn ber_op(community: bool, head: &impl Fn(u16) -> [u8; 4]) -> Option<u8> {
    let h = head(0);
    if h[0] != 0x30 {
        return Some(0);
    }
    // The SEQUENCE's length: short form, or long form in 1, 2 or 4 bytes.
    let mut at: u16 = match h[1] {
        n if n < 0x80 => 2,
        0x81 => 3,
        0x82 => 4,
        0x84 => 6,
        _ => return Some(0),
    };
    // The INTEGER (version or message id), then SNMP's OCTET STRING.
    let fields = if community { 2 } else { 1 };
    for (i, tag) in [0x02u8, 0x04].into_iter().enumerate() {
        if i >= fields {
            break;
        }
        let f = head(at);
        if f[0] != tag {
            return Some(0);
        }
        let len = match f[1] {
            n if n < 0x80 => n as u16 + 2,
            0x81 => f[2] as u16 + 3,
            _ => return Some(0),
        };
        at += len;
        if at > MATCH_OFFSET_MAX {
            return None;
        }
    }
    Some(head(at)[0])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{vec, vec::Vec};

    /// `head` over a payload, as the program reads it.
    fn read(payload: &[u8]) -> impl Fn(u16) -> [u8; 4] + '_ {
        move |off| {
            let mut w = [0u8; 4];
            for (i, b) in w.iter_mut().enumerate() {
                *b = payload.get(off as usize + i).copied().unwrap_or(0);
            }
            w
        }
    }

    fn request(port: u16, payload: &[u8]) -> Option<bool> {
        is_request(port, read(payload))
    }

    #[test]
    fn dns_queries_and_answers() {
        // id, flags 0x0100 (RD), QDCOUNT 1.
        let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(request(53, &query), Some(true));
        let mut answer = query;
        answer[2] = 0x81;
        answer[7] = 1;
        assert_eq!(request(53, &answer), Some(false));
        // A memcached reply reads as QR=0 with QDCOUNT=1, but not further.
        let memcached = b"\x00\x01\x00\x00\x00\x01\x00\x00VALUE k 0 5\r\n";
        assert_eq!(request(53, memcached), Some(false));
    }

    #[test]
    fn ntp_modes() {
        for (first, req) in [
            (0x23, true),
            (0xe3, true),
            (0x21, true),
            (0x24, false),
            (0x16, false),
            (0x17, false),
        ] {
            let mut p = [0u8; 48];
            p[0] = first;
            assert_eq!(request(123, &p), Some(req), "{first:#x}");
        }
    }

    #[test]
    fn snmp_pdus() {
        // SEQUENCE, version 1, community "public", GetRequest.
        let get = b"\x30\x26\x02\x01\x01\x04\x06public\xa0\x19";
        assert_eq!(request(161, get), Some(true));
        let mut response = *get;
        response[13] = 0xa2;
        assert_eq!(request(161, &response), Some(false));
        // Long-form lengths.
        let long = b"\x30\x81\x90\x02\x01\x01\x04\x06public\xa5\x19";
        assert_eq!(request(161, long), Some(true));
        // Not BER at all.
        assert_eq!(request(161, b"hello"), Some(false));
        // A community longer than the program reads: cannot be told.
        let mut far: Vec<u8> = vec![0x30, 0x7f, 0x02, 0x01, 0x01, 0x04, 0x70];
        far.extend([b'x'; 0x70]);
        far.push(0xa2);
        assert_eq!(request(161, &far), Some(true));
    }

    #[test]
    fn cldap_operations() {
        // SEQUENCE (4-byte length), message id 1, searchRequest.
        let search = b"\x30\x84\x00\x00\x00\x40\x02\x01\x01\x63\x84";
        assert_eq!(request(389, search), Some(true));
        let mut entry = *search;
        entry[9] = 0x64;
        assert_eq!(request(389, &entry), Some(false));
    }

    #[test]
    fn text_protocols() {
        assert_eq!(request(1900, b"M-SEARCH * HTTP/1.1\r\n"), Some(true));
        assert_eq!(request(1900, b"NOTIFY * HTTP/1.1\r\n"), Some(true));
        assert_eq!(request(1900, b"HTTP/1.1 200 OK\r\n"), Some(false));
        let frame = b"\x00\x01\x00\x00\x00\x01\x00\x00";
        let with = |cmd: &[u8]| [frame.as_slice(), cmd].concat();
        assert_eq!(request(11211, &with(b"gets k\r\n")), Some(true));
        assert_eq!(request(11211, &with(b"stats\r\n")), Some(true));
        assert_eq!(request(11211, &with(b"VALUE k 0 1\r\n")), Some(false));
        assert_eq!(request(11211, &with(b"STAT pid 1\r\n")), Some(false));
        assert_eq!(request(11211, &with(b"\x80\x00")), Some(true));
        assert_eq!(request(11211, &with(b"\x81\x00")), Some(false));
    }

    #[test]
    fn coap_codes() {
        assert_eq!(request(5683, &[0x40, 0x01, 0, 1]), Some(true));
        assert_eq!(request(5683, &[0x60, 0x45, 0, 1]), Some(false));
        assert_eq!(request(5683, &[0x50, 0x84, 0, 1]), Some(false));
    }

    #[test]
    fn protocols_without_a_shape() {
        assert_eq!(request(19, b"anything"), None);
        assert_eq!(request(3702, b"<soap:Envelope"), None);
    }

    #[test]
    fn every_check_reads_within_the_window_and_is_described() {
        for s in SHAPES {
            assert!(describe(s.port).is_some(), "{}", s.port);
            if let Test::Words { n, alternatives } = s.test {
                assert!(n as usize <= ALTERNATIVES && n > 0);
                for w in alternatives.iter().flatten() {
                    assert!(w.offset as u16 <= MATCH_OFFSET_MAX, "{}", s.port);
                }
            }
        }
    }

    #[test]
    fn another_guarded_port_is_a_reflection_whatever_its_shape() {
        let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(served_request(53, 53, read(&query)), Some(true));
        assert_eq!(served_request(11211, 53, read(&query)), Some(false));
        // No shape: it cannot be told.
        assert_eq!(served_request(19, 19, read(b"x")), None);
        assert_eq!(served_request(1900, 19, read(b"x")), Some(false));
    }

    /// SNMP's pair: a trap or inform from 161 to a manager's 162 is a
    /// request there; a GetResponse from 161 is a reflection, and so is a
    /// trap from another guarded port.
    #[test]
    fn snmp_notifications_to_the_managers_port() {
        let pdu = |tag: u8| {
            let mut m = b"\x30\x26\x02\x01\x01\x04\x06public".to_vec();
            m.extend([tag, 0x19]);
            m
        };
        for tag in [0xa4, 0xa6, 0xa7] {
            assert_eq!(served_request(161, 162, read(&pdu(tag))), Some(true));
        }
        for tag in [0xa2, 0xa0, 0xa8] {
            assert_eq!(served_request(161, 162, read(&pdu(tag))), Some(false));
        }
        assert_eq!(served_request(53, 162, read(&pdu(0xa7))), Some(false));
        assert!(is_pair(161, 162) && !is_pair(162, 161) && !is_pair(161, 161));
        assert!(is_pair_wire(
            u16::from_ne_bytes([0, 161]),
            u16::from_ne_bytes([0, 162])
        ));
        for p in PAIRS {
            assert!(describe_pair(p.from).is_some_and(|(to, _, _)| to == p.to));
            assert!(shape_of(p.from).is_some(), "a pair's port has a shape");
        }
    }

    #[test]
    fn coap_observe_registrations() {
        // CON GET, token aa bb, Observe (empty: 0), Uri-Path "temp".
        let observe = [0x42, 0x01, 0x12, 0x34, 0xaa, 0xbb, 0x60, 0x54, b't'];
        assert!(subscribes(5683, read(&observe)));
        // Observe as one zero byte; after a Uri-Host of 20 bytes (the
        // extended length), then Observe at delta 3.
        let mut hosted = vec![0x40, 0x01, 0, 1, 0x3d, 20 - 13];
        hosted.extend([b'h'; 20]);
        hosted.extend([0x31, 0x00]);
        assert!(subscribes(5683, read(&hosted)));
        // Observe 1 deregisters; a GET without it; a response with it; the
        // same message to another port; an empty message (0.00).
        let deregister = [0x40, 0x01, 0, 1, 0x61, 0x01];
        assert!(!subscribes(5683, read(&deregister)));
        let plain = [0x42, 0x01, 0x12, 0x34, 0xaa, 0xbb, 0xb4, b't'];
        assert!(!subscribes(5683, read(&plain)));
        let notification = [0x52, 0x45, 0x40, 1, 0xaa, 0xbb, 0x61, 1];
        assert!(!subscribes(5683, read(&notification)));
        assert!(!subscribes(5684, read(&observe)));
        assert!(!subscribes(5683, read(&[0x60, 0x00, 0, 1])));
        // Payload marker, an unknown token length, options past the bytes
        // read.
        assert!(!subscribes(5683, read(&[0x40, 0x01, 0, 1, 0xff, 0x60])));
        assert!(!subscribes(5683, read(&[0x49, 0x01, 0, 1, 0x60])));
        let mut far = vec![0x40, 0x01, 0, 1, 0x3d, 100];
        far.extend([b'h'; 113]);
        far.push(0x30);
        assert!(!subscribes(5683, read(&far)));
    }
}
