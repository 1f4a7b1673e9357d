//! The allow and deny lists for IPv4 sources, in a form whose lookup costs
//! the same whatever the lists hold and whoever the source's neighbours
//! are: two bits per /24 in one array ([`crate::MAP_V4_LISTS`]), and for
//! the /24s that listed prefixes cover only in part, the /24's 256
//! addresses as two bitmaps ([`crate::MAP_V4_FINE`]), in /24 order, found
//! by rank: the count of such /24s in the words before ([`crate::MAP_V4_RANK`])
//! plus those before it in its own word. One array load for every source,
//! and two more for a source in a /24 partly listed (all array loads, which
//! the verifier inlines); where an LPM trie of 100,000 prefixes took two
//! walks of ~80 ns once any prefix shared the source's /24, and a hash
//! lookup of the /24 ~30 ns (measured).

use crate::packet::Addr;

/// 2 bits per /24: 32 /24s a word.
pub const V4_LIST_WORDS: u32 = 1 << 19;

/// No listed prefix touches the /24.
pub const STATE_NONE: u64 = 0;
/// Listed prefixes cover part of it: the fine map says address by address.
pub const STATE_FINE: u64 = 1;
/// An allow prefix covers all of it (allow is looked at before deny).
pub const STATE_ALLOWED: u64 = 2;
/// A deny prefix covers all of it, and no allow prefix touches it.
pub const STATE_DENIED: u64 = 3;

/// The answer: allowed, denied, both, or neither.
pub const LISTED_ALLOW: u8 = 1;
pub const LISTED_DENY: u8 = 2;

/// One /24's addresses, a bit each, for the /24s in [`STATE_FINE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FineV4 {
    pub allow: [u64; 4],
    pub deny: [u64; 4],
}

/// The /24 of an IPv4 source as the packet holds it (its first word's
/// first four bytes, in memory order).
#[inline(always)]
pub fn slash24(src: &Addr) -> u32 {
    (u64::from_be(src[0]) >> 40) as u32
}

/// The state of `slash24` in its word of the array.
#[inline(always)]
pub fn state(word: u64, slash24: u32) -> u64 {
    (word >> ((slash24 & 31) * 2)) & 3
}

/// A word's /24s in [`STATE_FINE`], one bit each at its state's low place
/// (state 1 is the low bit alone).
#[inline(always)]
pub fn fine_bits(word: u64) -> u64 {
    word & !(word >> 1) & 0x5555_5555_5555_5555
}

/// How many /24s of `word` before `slash24`'s are in [`STATE_FINE`]: its
/// rank among them, past those of the earlier words.
#[inline(always)]
pub fn rank_in_word(word: u64, slash24: u32) -> u32 {
    let fine = fine_bits(word);
    let below = fine & ((1u64 << ((slash24 & 31) * 2)) - 1);
    // Pairs, then nibbles, then bytes summed by the multiply (no popcount
    // instruction in BPF).
    let x = (below & 0x3333_3333_3333_3333) + ((below >> 2) & 0x3333_3333_3333_3333);
    let x = (x + (x >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    (x.wrapping_mul(0x0101_0101_0101_0101) >> 56) as u32
}

/// What the lists say of the source whose /24 is in `state` and whose last
/// byte is `host`; `fine` reads the /24's bitmaps.
#[inline(always)]
pub fn listed(state: u64, host: u8, fine: impl FnOnce() -> Option<FineV4>) -> u8 {
    match state {
        STATE_NONE => 0,
        STATE_ALLOWED => LISTED_ALLOW,
        STATE_DENIED => LISTED_DENY,
        _ => {
            let Some(f) = fine() else { return 0 };
            let (w, b) = ((host >> 6) as usize & 3, host & 63);
            let bit = |bits: &[u64; 4]| ((bits[w] >> b) & 1) as u8;
            (bit(&f.allow) * LISTED_ALLOW) | (bit(&f.deny) * LISTED_DENY)
        }
    }
}

/// The last byte of an IPv4 source as the packet holds it.
#[inline(always)]
pub fn host(src: &Addr) -> u8 {
    (u64::from_be(src[0]) >> 32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_counts_the_fine_slash24s_before() {
        // States of /24s 0..8: fine, none, denied, fine, allowed, fine, ...
        let states = [1u64, 0, 3, 1, 2, 1, 1, 0];
        let word = states
            .iter()
            .enumerate()
            .fold(0u64, |w, (i, s)| w | (s << (2 * i)));
        let ranks: [u32; 8] = core::array::from_fn(|i| rank_in_word(word, i as u32));
        assert_eq!(ranks, [0, 1, 1, 1, 2, 2, 3, 4]);
        assert_eq!(rank_in_word(0x5555_5555_5555_5555, 31), 31);
        assert_eq!(rank_in_word(u64::MAX, 31), 0);
    }
}
