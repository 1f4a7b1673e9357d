//! The IPv4 allow and deny lists in the program's form (see
//! [`filter_common::v4lists`]): a state per /24, and bitmaps of the /24s
//! that listed prefixes cover in part.

use std::collections::HashMap;

use filter_common::{
    FAMILY_V4, V4_PREFIX_ALLOW, V4_PREFIX_DENY,
    v4lists::{FineV4, STATE_ALLOWED, STATE_DENIED, STATE_FINE, V4_LIST_WORDS, fine_bits},
};

use super::prefixes::Prefix;

/// The lists as the program reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct V4Lists {
    /// [`V4_LIST_WORDS`] words of 2-bit states; empty while no IPv4 prefix
    /// is listed.
    pub(crate) words: Vec<u64>,
    /// The /24s in [`STATE_FINE`], in /24 order.
    pub(crate) fine: Vec<(u32, FineV4)>,
    /// Per word of `words`, how many /24s of the earlier words are in
    /// `fine`: where the word's own start in it (empty with `words`).
    pub(crate) ranks: Vec<u32>,
    /// The prefixes as listed ([`filter_common::MAP_V4_PREFIXES`]).
    pub(crate) prefixes: Vec<u64>,
}

fn addr(p: &Prefix) -> u32 {
    u32::from_be_bytes([p.addr[0], p.addr[1], p.addr[2], p.addr[3]])
}

/// The /24s a prefix of /24 or shorter covers whole.
fn whole(p: &Prefix) -> std::ops::Range<u32> {
    let first = addr(p) >> 8;
    first..first + (1 << (24 - u32::from(p.len.min(24))))
}

/// Sets the bits of a prefix longer than /24 in its /24's bitmap.
fn set_bits(bits: &mut [u64; 4], p: &Prefix) {
    let first = addr(p) & 0xff;
    for host in first..first + (1 << (32 - u32::from(p.len))) {
        bits[(host >> 6) as usize] |= 1 << (host & 63);
    }
}

fn set_state(words: &mut [u64], s24: u32, state: u64) {
    let (w, shift) = ((s24 >> 5) as usize, (s24 & 31) * 2);
    words[w] = (words[w] & !(3 << shift)) | (state << shift);
}

fn state_of(words: &[u64], s24: u32) -> u64 {
    words
        .get((s24 >> 5) as usize)
        .map_or(0, |w| filter_common::v4lists::state(*w, s24))
}

/// Builds the lists' form. Allow is looked at first, so a /24 that an
/// allow prefix covers whole is allowed whatever deny says.
pub(crate) fn build(allow: &[Prefix], deny: &[Prefix]) -> V4Lists {
    let v4 = |l: &'_ [Prefix]| -> Vec<Prefix> {
        l.iter()
            .filter(|p| p.family == FAMILY_V4)
            .copied()
            .collect()
    };
    let (allow, deny) = (v4(allow), v4(deny));
    if allow.is_empty() && deny.is_empty() {
        return V4Lists::default();
    }
    let packed =
        |p: &Prefix, list: u64| (u64::from(addr(p)) << 32) | (u64::from(p.len) << 8) | list;
    let prefixes = allow
        .iter()
        .map(|p| packed(p, V4_PREFIX_ALLOW))
        .chain(deny.iter().map(|p| packed(p, V4_PREFIX_DENY)))
        .collect();
    let mut words = vec![0u64; V4_LIST_WORDS as usize];
    for p in deny.iter().filter(|p| p.len <= 24) {
        for s24 in whole(p) {
            set_state(&mut words, s24, STATE_DENIED);
        }
    }
    let mut fine: HashMap<u32, FineV4> = HashMap::new();
    for (list, is_allow) in [(&allow, true), (&deny, false)] {
        for p in list.iter().filter(|p| p.len > 24) {
            let s24 = addr(p) >> 8;
            let f = fine.entry(s24).or_default();
            set_bits(if is_allow { &mut f.allow } else { &mut f.deny }, p);
        }
    }
    for (s24, f) in &mut fine {
        if state_of(&words, *s24) == STATE_DENIED {
            f.deny = [u64::MAX; 4];
        }
        set_state(&mut words, *s24, STATE_FINE);
    }
    for p in allow.iter().filter(|p| p.len <= 24) {
        for s24 in whole(p) {
            set_state(&mut words, s24, STATE_ALLOWED);
            fine.remove(&s24);
        }
    }
    let mut fine: Vec<(u32, FineV4)> = fine.into_iter().collect();
    fine.sort_unstable_by_key(|(s24, _)| *s24);
    let mut ranks = Vec::with_capacity(words.len());
    let mut before = 0u32;
    for w in &words {
        ranks.push(before);
        before += fine_bits(*w).count_ones();
    }
    debug_assert_eq!(before as usize, fine.len());
    V4Lists {
        words,
        fine,
        ranks,
        prefixes,
    }
}

/// The prefixes of `list` (V4_PREFIX_ALLOW or V4_PREFIX_DENY) among packed
/// ones, as [`Prefix`]es.
pub(crate) fn unpack(packed: impl Iterator<Item = u64>, list: u64) -> Vec<Prefix> {
    packed
        .filter(|v| v & 0xff == list)
        .map(|v| {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&((v >> 32) as u32).to_be_bytes());
            Prefix {
                family: FAMILY_V4,
                addr,
                len: (v >> 8) as u8,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use filter_common::v4lists::{LISTED_ALLOW, LISTED_DENY, listed, rank_in_word};

    use super::*;
    use crate::rules::prefixes::parse_prefix;

    fn prefixes(list: &[&str]) -> Vec<Prefix> {
        list.iter().map(|p| parse_prefix(p).unwrap()).collect()
    }

    /// What the program would answer for `a.b.c.d`, the way it finds the
    /// bitmaps (by rank), checked against the /24 they are for.
    fn lookup(l: &V4Lists, a: [u8; 4]) -> u8 {
        let s24 = u32::from_be_bytes(a) >> 8;
        let fine = || {
            let w = (s24 >> 5) as usize;
            let i = l.ranks[w] + rank_in_word(l.words[w], s24);
            let (key, f) = l.fine[i as usize];
            assert_eq!(key, s24, "rank {i} finds another /24");
            Some(f)
        };
        listed(state_of(&l.words, s24), a[3], fine)
    }

    fn contains(list: &[Prefix], a: [u8; 4]) -> bool {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        list.iter().any(|p| p.contains(FAMILY_V4, &b))
    }

    /// Every address near the prefixes' edges answers as a search of the
    /// lists would: allowed first, then denied.
    #[test]
    fn answers_as_the_lists_do_at_every_edge() {
        let allow = prefixes(&[
            "198.51.100.7",
            "203.0.113.128/25",
            "10.1.0.0/16",
            "2001:db8::/32",
        ]);
        let deny = prefixes(&[
            "10.0.0.0/8",
            "198.51.100.0/24",
            "203.0.113.5",
            "203.0.113.200/29",
            "192.0.2.64/26",
        ]);
        let l = build(&allow, &deny);
        for a in [10u8, 11, 192, 198, 203, 9] {
            for b in [0u8, 1, 2, 51, 255] {
                for c in [0u8, 1, 2, 100, 113] {
                    for d in (0..=255u8)
                        .step_by(3)
                        .chain([5, 7, 64, 127, 128, 200, 207, 208])
                    {
                        let x = [a, b, c, d];
                        let want = if contains(&allow, x) {
                            LISTED_ALLOW
                        } else if contains(&deny, x) {
                            LISTED_DENY
                        } else {
                            0
                        };
                        let got = lookup(&l, x);
                        let got = if got & LISTED_ALLOW != 0 {
                            LISTED_ALLOW
                        } else {
                            got
                        };
                        assert_eq!(got, want, "{x:?}");
                    }
                }
            }
        }
        // Fine entries only for /24s listed in part, none under an allow
        // that covers the /24 whole.
        let keys: Vec<u32> = l.fine.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [0x00c0_0002, 0x00c6_3364, 0x00cb_0071]);
    }

    #[test]
    fn the_prefixes_unpack_as_listed() {
        let allow = prefixes(&["198.51.100.7", "10.1.0.0/16"]);
        let deny = prefixes(&["10.0.0.0/8", "203.0.113.200/29"]);
        let l = build(&allow, &deny);
        assert_eq!(unpack(l.prefixes.iter().copied(), V4_PREFIX_ALLOW), allow);
        assert_eq!(unpack(l.prefixes.iter().copied(), V4_PREFIX_DENY), deny);
    }

    #[test]
    fn no_ipv4_prefix_no_table() {
        let l = build(&prefixes(&["2001:db8::/32"]), &[]);
        assert!(l.words.is_empty() && l.fine.is_empty());
    }
}
