//! The fragment memory: whether each datagram's first fragment passed or
//! was dropped, in the shared LRU behind this CPU's cache of it.

use filter_common::frags::{Datagram, FRAG_PASSED, Seen, frag_replaces, frag_seen, frag_value};

use crate::maps::{FRAG_CACHE, FRAG_PASS_SLOTS, FRAG_PASSES, FRAGS, FragSlot};

/// What the memory holds for the datagram at `now`. The cache answers only
/// for what it holds; a miss asks FRAGS, which every CPU shares (a NIC that
/// hashes UDP by ports sends a datagram's first and later fragments to
/// different CPUs).
#[inline(always)]
pub fn frag_memory(d: &Datagram, now: u64) -> Seen {
    let words = d.words();
    let h = hash(&words);
    if let Some(slot) = frag_slot(h)
        && same(&slot.key, &words)
    {
        match frag_seen(slot.until, now) {
            Seen::Passed => return Seen::Passed,
            // Another CPU may have written a pass over this drop since it
            // was cached: then FRAGS says so. Passes are rare (answers the
            // host asked for), so a flood's cached drops seldom ask.
            Seen::Dropped if !passed_since(h, slot.until) => return Seen::Dropped,
            _ => {}
        }
    }
    // SAFETY: the value is a plain u64 copied out at once.
    match unsafe { FRAGS.get(d.key()).copied() } {
        Some(value) => {
            cache_frag(h, &words, value);
            frag_seen(value, now)
        }
        None => Seen::Unseen,
    }
}

/// Whether the datagram's first fragment was dropped, and no pass was
/// written over it since.
#[inline(always)]
pub fn frag_dropped(d: &Datagram, now: u64) -> bool {
    frag_memory(d, now) == Seen::Dropped
}

/// Remembers the datagram's first fragment's verdict (`value`, as
/// `frag_value` makes it) where `frag_replaces` lets it: a pass over a
/// drop, never a drop over a live pass.
#[inline(always)]
pub fn remember_frag(d: &Datagram, value: u64, now: u64) {
    // Every first fragment of a flood would otherwise write the shared LRU
    // (and bounce its cache line between CPUs). The clock never runs back,
    // so an entry this CPU wrote that already says as much is what the
    // insert would write; a drop cached here may have been replaced by
    // another CPU's pass, which a drop must not overwrite anyway.
    let words = d.words();
    let h = hash(&words);
    if let Some(slot) = frag_slot(h)
        && same(&slot.key, &words)
        && !frag_replaces(slot.until, value, now)
    {
        return;
    }
    let key = d.key();
    let passed = value & FRAG_PASSED != 0;
    match FRAGS.get_ptr_mut(key) {
        // SAFETY: a plain u64 of a shared LRU entry, read at once.
        Some(ptr) if !frag_replaces(unsafe { *ptr }, value, now) => {
            // SAFETY: as above.
            cache_frag(h, &words, unsafe { *ptr });
            return;
        }
        // A drop over a drop, in place: a pass that another CPU inserts
        // meanwhile is a new entry, which this store does not touch.
        // SAFETY: as above; a racing store of another drop is as good.
        Some(ptr) if !passed => unsafe { *ptr = value },
        // Only where nothing is: a pass another CPU inserted meanwhile
        // stays.
        None if !passed => {
            let _ = FRAGS.insert(key, value, BPF_NOEXIST);
        }
        // A pass replaces whatever is there, as a new entry, and tells the
        // other CPUs' caches.
        _ => {
            let _ = FRAGS.insert(key, value, 0);
            if let Some(p) = FRAG_PASSES.get_ptr_mut(pass_slot(h)) {
                // SAFETY: a u64 slot shared by all CPUs; a racing pass
                // stores a deadline as late, give or take a clock tick.
                unsafe { *p = value & !FRAG_PASSED };
            }
        }
    }
    cache_frag(h, &words, value);
}

/// bpf_map_update_elem's "only if absent".
const BPF_NOEXIST: u64 = 1;

/// The verdict, as stored, of a first fragment that passed or was dropped
/// at `now`.
#[inline(always)]
pub fn frag_entry(passed: bool, now: u64) -> u64 {
    frag_value(passed, now.saturating_add(crate::globals::frag_track_ns()))
}

/// A datagram's words, hashed for its cache and pass slots.
#[inline(always)]
fn hash(words: &[u64; 5]) -> u64 {
    let mut h = words[4];
    for w in &words[..4] {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h
}

/// Whether a pass written since a drop that lasts until `until` was cached
/// may concern the datagram of hash `h`.
#[inline(always)]
fn passed_since(h: u64, until: u64) -> bool {
    FRAG_PASSES
        .get(pass_slot(h))
        .is_none_or(|p| *p >= until & !FRAG_PASSED)
}

#[inline(always)]
fn pass_slot(h: u64) -> u32 {
    (h >> 32) as u32 & (FRAG_PASS_SLOTS - 1)
}

/// This CPU's cache slot for a datagram of hash `h`. The shared LRU hashes
/// and compares a 40-byte key (about 50 ns a lookup); the slot is an
/// inlined array read and five word compares. A slot holds one datagram,
/// the last to use it.
#[inline(always)]
fn frag_slot(h: u64) -> Option<&'static mut FragSlot> {
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
fn cache_frag(h: u64, words: &[u64; 5], value: u64) {
    if let Some(slot) = frag_slot(h) {
        slot.key = *words;
        slot.until = value;
    }
}
