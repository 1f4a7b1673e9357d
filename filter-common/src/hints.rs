//! Source hints: a bitmap in front of the allow and deny tries. A clear bit
//! proves that no listed prefix covers the source, so the program skips
//! both trie lookups (and its early verdict need not step aside for the
//! lists); a set bit only means "look". The controller sets the bits of
//! every listed prefix; the program tests the bits of a packet's source.
//!
//! Bits, in one array of u64 words:
//! - IPv4: one per /24, indexed directly ([`V4_BITS`]).
//! - IPv6 prefixes shorter than /48: a hash of the /32 ([`V6_SHORT_BITS`]).
//! - IPv6 prefixes of /48 or longer: a hash of the /48 ([`V6_LONG_BITS`]).
//!
//! An IPv6 source is tested against both hashed sets. Whatever the lists
//! hold the answer stays exact; only its speed depends on how many bits are
//! set: a /8 sets 65,536 IPv4 bits, an IPv6 /14 or shorter all of its set.

use crate::{FAMILY_V4, packet::Addr};

/// IPv4 /24s.
pub const V4_BITS: u32 = 1 << 24;
/// Hashed IPv6 /32s, for prefixes shorter than /48.
pub const V6_SHORT_BITS: u32 = 1 << 18;
/// Hashed IPv6 /48s, for prefixes of /48 and longer.
pub const V6_LONG_BITS: u32 = 1 << 20;

const V6_SHORT_BASE: u32 = V4_BITS;
const V6_LONG_BASE: u32 = V4_BITS + V6_SHORT_BITS;
/// Words of the hint array ([`crate::MAP_SRC_HINTS`]).
pub const HINT_WORDS: u32 = (V4_BITS + V6_SHORT_BITS + V6_LONG_BITS) / 64;

/// Fibonacci hashing: the top `bits` bits of `x` times 2^64/phi.
#[inline(always)]
fn hash(x: u64, bits: u32) -> u32 {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as u32
}

#[inline(always)]
fn v6_short_bit(top32: u64) -> u32 {
    V6_SHORT_BASE + hash(top32, 18)
}

#[inline(always)]
fn v6_long_bit(top48: u64) -> u32 {
    V6_LONG_BASE + hash(top48, 20)
}

/// The bits that a source address tests: the same twice for IPv4.
#[inline(always)]
pub fn source_bits(family: u8, src: &Addr) -> (u32, u32) {
    // The first word holds the first 8 address bytes in memory order.
    let top = u64::from_be(src[0]);
    if family == FAMILY_V4 {
        let bit = (top >> 40) as u32;
        (bit, bit)
    } else {
        (v6_short_bit(top >> 32), v6_long_bit(top >> 16))
    }
}

/// Whether `bit` is set, given a reader of the array's words (None: the
/// word is not there, which counts as set).
#[inline(always)]
pub fn is_set(word: impl Fn(u32) -> Option<u64>, bit: u32) -> bool {
    word(bit / 64).is_none_or(|w| w & (1 << (bit % 64)) != 0)
}

/// Whether a listed prefix may cover the source: false is exact.
#[inline(always)]
pub fn hinted(word: impl Fn(u32) -> Option<u64>, family: u8, src: &Addr) -> bool {
    let (a, b) = source_bits(family, src);
    is_set(&word, a) || (a != b && is_set(&word, b))
}

/// The one bit that every address of a prefix of `len` bits at `src` tests
/// (the bit the program sets when it bans a source keyed by that prefix),
/// or None when no single bit covers it all.
#[inline(always)]
pub fn prefix_bit(family: u8, src: &Addr, len: u8) -> Option<u32> {
    let (short, long) = source_bits(family, src);
    if family == FAMILY_V4 {
        (len >= 24).then_some(short)
    } else if len >= 48 {
        Some(long)
    } else {
        (len >= 32).then_some(short)
    }
}

/// Calls `set` with every bit that a prefix of `len` bits at `addr` (IPv4
/// in its first 4 bytes) needs, so that every address it covers tests
/// hinted. Whole ranges are passed as `(first, count)`.
pub fn prefix_bits(family: u8, addr: &[u8; 16], len: u8, mut set: impl FnMut(u32, u32)) {
    let top = u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    if family == FAMILY_V4 {
        let len = len.min(32) as u32;
        let first = (top >> 40) as u32;
        if len >= 24 {
            set(first, 1);
        } else {
            let span = 1u32 << (24 - len);
            set(first & !(span - 1), span);
        }
        return;
    }
    let len = len.min(128) as u32;
    if len >= 48 {
        set(v6_long_bit(top >> 16), 1);
    } else if len >= 32 {
        set(v6_short_bit(top >> 32), 1);
    } else if 32 - len < 18 {
        // Every /32 under the prefix.
        let span = 1u64 << (32 - len);
        let first = (top >> 32) & !(span - 1);
        for t in first..first + span {
            set(v6_short_bit(t), 1);
        }
    } else {
        set(V6_SHORT_BASE, V6_SHORT_BITS);
    }
}

/// The words of a range of `count` bits from `first`, each with the mask
/// of the range's bits in it.
pub fn range_words(first: u32, count: u32, mut word: impl FnMut(u32, u64)) {
    let end = first + count;
    let mut bit = first;
    while bit < end {
        let upto = end.min((bit / 64 + 1) * 64);
        let span = upto - bit;
        let mask = if span == 64 {
            u64::MAX
        } else {
            ((1u64 << span) - 1) << (bit % 64)
        };
        word(bit / 64, mask);
        bit = upto;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::{FAMILY_V6, decide::mask, packet::addr_words};

    struct Bits(Vec<u64>);

    impl Bits {
        fn of(prefixes: &[(u8, [u8; 16], u8)]) -> Bits {
            let mut b = Bits(vec![0; HINT_WORDS as usize]);
            for (family, addr, len) in prefixes {
                prefix_bits(*family, addr, *len, |first, n| {
                    range_words(first, n, |w, mask| b.0[w as usize] |= mask)
                });
            }
            b
        }
        fn hinted(&self, family: u8, addr: &[u8; 16]) -> bool {
            hinted(
                |w| self.0.get(w as usize).copied(),
                family,
                &addr_words(addr),
            )
        }
    }

    /// xorshift: deterministic, no dependency.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    fn random_addr(seed: &mut u64, family: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&rng(seed).to_be_bytes());
        a[8..].copy_from_slice(&rng(seed).to_be_bytes());
        if family == FAMILY_V4 {
            a[4..].fill(0);
        }
        a
    }

    /// The property the program relies on: every address a prefix covers
    /// tests hinted, for every prefix length.
    #[test]
    fn every_covered_address_is_hinted() {
        let mut seed = 0x5eed_u64;
        for family in [FAMILY_V4, FAMILY_V6] {
            let max = if family == FAMILY_V4 { 32 } else { 128 };
            for len in 0..=max {
                let base = random_addr(&mut seed, family);
                let prefix = mask(&base, len);
                let bits = Bits::of(&[(family, prefix, len)]);
                for _ in 0..64 {
                    // An address inside: the prefix's bits, random below.
                    let tail = random_addr(&mut seed, family);
                    let mut inside = [0u8; 16];
                    for i in 0..16 {
                        let keep = mask(&[0xff; 16], len)[i];
                        inside[i] = (prefix[i] & keep) | (tail[i] & !keep);
                    }
                    if family == FAMILY_V4 {
                        inside[4..].fill(0);
                    }
                    assert!(
                        bits.hinted(family, &inside),
                        "family {family} /{len}: {inside:?} not hinted"
                    );
                }
            }
        }
    }

    /// A ban's one bit covers every address of its prefix.
    #[test]
    fn a_prefix_bit_covers_its_prefix() {
        let mut seed = 0xba2_u64;
        for family in [FAMILY_V4, FAMILY_V6] {
            let max = if family == FAMILY_V4 { 32 } else { 128 };
            for len in 0..=max {
                let prefix = mask(&random_addr(&mut seed, family), len);
                let Some(bit) = prefix_bit(family, &addr_words(&prefix), len) else {
                    assert!(len < if family == FAMILY_V4 { 24 } else { 32 });
                    continue;
                };
                let mut bits = Bits(vec![0; HINT_WORDS as usize]);
                bits.0[(bit / 64) as usize] |= 1 << (bit % 64);
                for _ in 0..64 {
                    let tail = random_addr(&mut seed, family);
                    let keep = mask(&[0xff; 16], len);
                    let mut inside = [0u8; 16];
                    for i in 0..16 {
                        inside[i] = (prefix[i] & keep[i]) | (tail[i] & !keep[i]);
                    }
                    if family == FAMILY_V4 {
                        inside[4..].fill(0);
                    }
                    assert!(bits.hinted(family, &inside), "/{len}: {inside:?}");
                }
            }
        }
    }

    /// And the point of it: most other addresses skip the tries.
    #[test]
    fn unrelated_addresses_are_mostly_clear() {
        let mut seed = 0xfeed_u64;
        let mut prefixes = Vec::new();
        for i in 0..10_000 {
            prefixes.push((FAMILY_V4, random_addr(&mut seed, FAMILY_V4), 32));
            prefixes.push((FAMILY_V6, random_addr(&mut seed, FAMILY_V6), 64));
            if i % 10 == 0 {
                prefixes.push((FAMILY_V6, random_addr(&mut seed, FAMILY_V6), 32));
            }
        }
        let bits = Bits::of(&prefixes);
        for family in [FAMILY_V4, FAMILY_V6] {
            let hits = (0..10_000)
                .filter(|_| bits.hinted(family, &random_addr(&mut seed, family)))
                .count();
            assert!(hits < 500, "family {family}: {hits} of 10000 hinted");
        }
        // A short prefix sets a range, not everything.
        let v4_8 = Bits::of(&[(
            FAMILY_V4,
            [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            8,
        )]);
        assert!(v4_8.hinted(
            FAMILY_V4,
            &[10, 200, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        ));
        assert!(!v4_8.hinted(
            FAMILY_V4,
            &[11, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        ));
    }
}
