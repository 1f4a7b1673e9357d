//! Lookups of a source in the prefix tries (IPv6 allow and deny, never-ban
//! of both families).

use aya_ebpf::maps::{LpmTrie, lpm_trie::Key};
use filter_common::{
    FAMILY_V4,
    packet::{Packet, addr_bytes},
};

/// Whether an IPv6 packet's source is in the trie. (IPv4 sources are
/// looked up in the lists' own form: maps::v4_listed.)
#[inline(always)]
pub fn lookup_v6(p: &Packet, v6: &LpmTrie<[u8; 16], u8>) -> bool {
    v6.get(Key::new(128, addr_bytes(&p.src))).is_some()
}

/// Whether `addr` (IPv4 in its first 4 bytes) is in the family's trie:
/// for keys, which hold addresses as bytes.
#[inline(always)]
pub fn in_tries(
    family: u8,
    addr: &[u8; 16],
    v4: &LpmTrie<[u8; 4], u8>,
    v6: &LpmTrie<[u8; 16], u8>,
) -> bool {
    if family == FAMILY_V4 {
        v4.get(Key::new(32, [addr[0], addr[1], addr[2], addr[3]]))
            .is_some()
    } else {
        v6.get(Key::new(128, *addr)).is_some()
    }
}
