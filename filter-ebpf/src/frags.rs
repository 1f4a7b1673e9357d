//! The follow-drop memory of fragments: which datagrams' first fragments
//! were dropped, in the shared LRU behind this CPU's cache of it.

use filter_common::frags::Datagram;

use crate::maps::{FRAG_CACHE, FRAGS, FragSlot};

/// Whether the datagram's first fragment was dropped, and recently enough.
#[inline(always)]
pub fn frag_dropped(d: &Datagram, now: u64) -> bool {
    let words = d.words();
    if let Some(slot) = frag_slot(&words)
        && same(&slot.key, &words)
        && now < slot.until
    {
        return true;
    }
    // SAFETY: the value is a plain u64 copied out at once.
    match unsafe { FRAGS.get(d.key()).copied() } {
        Some(until) => {
            cache_frag(&words, until);
            now < until
        }
        None => false,
    }
}

/// Remembers that the datagram's first fragment was dropped, until `until`.
#[inline(always)]
pub fn remember_frag_drop(d: &Datagram, until: u64) {
    // Every first fragment of a flood would otherwise write the shared LRU
    // (and bounce its cache line between CPUs). The clock never runs back,
    // so an entry that already lasts until `until` is what the insert would
    // write; it differs only once the clock moved on.
    let words = d.words();
    if let Some(slot) = frag_slot(&words)
        && same(&slot.key, &words)
        && slot.until >= until
    {
        return;
    }
    let key = d.key();
    // SAFETY: the value is a plain u64 read at once.
    if unsafe { FRAGS.get(key) }.is_none_or(|known| *known < until) {
        let _ = FRAGS.insert(key, until, 0);
    }
    cache_frag(&words, until);
}

/// This CPU's cache slot for a datagram. The shared LRU hashes and compares
/// a 40-byte key (about 50 ns a lookup); the slot is an inlined array read
/// and five word compares. A slot holds one datagram, the last to use it.
#[inline(always)]
fn frag_slot(words: &[u64; 5]) -> Option<&'static mut FragSlot> {
    let mut h = words[4];
    for w in &words[..4] {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let ptr = FRAG_CACHE.get_ptr_mut((h >> 32) as u32 & crate::globals::frag_cache_mask())?;
    // SAFETY: this CPU's slot of a per-CPU array, used by this run only.
    Some(unsafe { &mut *ptr })
}

/// Word by word: `==` on arrays becomes a call to a byte-wise memcmp.
#[inline(always)]
fn same(a: &[u64; 5], b: &[u64; 5]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) == 0
}

#[inline(always)]
fn cache_frag(words: &[u64; 5], until: u64) {
    if let Some(slot) = frag_slot(words) {
        slot.key = *words;
        slot.until = until;
    }
}
