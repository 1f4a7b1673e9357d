//! The kernel's own count of a map's memory (`memlock:` in the fdinfo of a
//! map's fd, `memlock` in `bpftool map show`): each map type's
//! `map_mem_usage` in kernel/bpf/ (arraymap.c, hashtab.c, lpm_trie.c,
//! ringbuf.c), with the sizes of the kernel's structures on x86-64.

use aya_obj::generated::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, bpf_map_type};

/// The map types the kernel counts here: the ones the filter declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Array,
    PerCpuArray,
    Hash,
    PerCpuHash,
    LruHash,
    LruPerCpuHash,
    LpmTrie,
    RingBuf,
}

impl Kind {
    /// The kind of a `bpf_map_type`; None for one not sized here.
    pub(crate) fn of(map_type: u32) -> Option<Kind> {
        use bpf_map_type::*;
        let kinds = [
            (BPF_MAP_TYPE_ARRAY, Kind::Array),
            (BPF_MAP_TYPE_PERCPU_ARRAY, Kind::PerCpuArray),
            (BPF_MAP_TYPE_HASH, Kind::Hash),
            (BPF_MAP_TYPE_PERCPU_HASH, Kind::PerCpuHash),
            (BPF_MAP_TYPE_LRU_HASH, Kind::LruHash),
            (BPF_MAP_TYPE_LRU_PERCPU_HASH, Kind::LruPerCpuHash),
            (BPF_MAP_TYPE_LPM_TRIE, Kind::LpmTrie),
            (BPF_MAP_TYPE_RINGBUF, Kind::RingBuf),
        ];
        kinds
            .into_iter()
            .find(|(t, _)| *t as u32 == map_type)
            .map(|(_, k)| k)
    }

    /// As bpftool names it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Array => "array",
            Kind::PerCpuArray => "percpu_array",
            Kind::Hash => "hash",
            Kind::PerCpuHash => "percpu_hash",
            Kind::LruHash => "lru_hash",
            Kind::LruPerCpuHash => "lru_percpu_hash",
            Kind::LpmTrie => "lpm_trie",
            Kind::RingBuf => "ringbuf",
        }
    }

    /// Whether every CPU has a value of its own in each entry.
    pub(crate) fn per_cpu(self) -> bool {
        matches!(
            self,
            Kind::PerCpuArray | Kind::PerCpuHash | Kind::LruPerCpuHash
        )
    }
}

/// A map as the kernel is asked to make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub kind: Kind,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl Shape {
    /// Whether the kernel allocates its entries one by one as they are
    /// added (and counts only those): tries, and hashes made with
    /// BPF_F_NO_PREALLOC. Every other map is whole from its creation.
    pub fn allocated_per_entry(&self) -> bool {
        match self.kind {
            Kind::LpmTrie => true,
            Kind::Hash | Kind::PerCpuHash | Kind::LruHash | Kind::LruPerCpuHash => {
                self.flags & BPF_F_NO_PREALLOC != 0
            }
            _ => false,
        }
    }
}

// Sizes of the kernel's structures on x86-64, as Linux 6.18 counts them
// (each checked against the fdinfo of maps made on it: see the tests). They
// change by a few bytes between versions; the entries are what matter.
const PAGE: u64 = 4096;
/// struct bpf_array, before its values.
const BPF_ARRAY: u64 = 312;
/// struct bpf_htab.
const BPF_HTAB: u64 = 832;
/// struct bucket: a list head and a lock.
const BUCKET: u64 = 16;
/// struct htab_elem, before its key.
const HTAB_ELEM: u64 = 48;
/// HASHTAB_MAP_LOCK_COUNT ints per CPU, still counted by htab_map_mem_usage.
const HTAB_LOCKS_PER_CPU: u64 = 8 * 4;
/// struct llist_node, on each element of a hash that is not preallocated.
const LLIST_NODE: u64 = 8;
/// struct lpm_trie_node, before its prefix bytes and value.
const LPM_NODE: u64 = 24;
/// The prefix length in front of an LPM trie's key.
const LPM_PREFIXLEN: u64 = 4;
/// struct bpf_ringbuf_map.
const RINGBUF_MAP: u64 = 304;
/// A ring buffer's pages in front of its data (RINGBUF_NR_META_PAGES).
const RINGBUF_META_PAGES: u64 = 3;
const POINTER: u64 = 8;

fn round8(n: u32) -> u64 {
    u64::from(n).div_ceil(8) * 8
}

fn page_align(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// Bytes the kernel counts for map `s` on a machine of `cpus` possible
/// CPUs, holding `held` entries (only maps allocated per entry depend on
/// it; None: full, at max_entries).
pub fn usage(s: &Shape, cpus: u32, held: Option<u32>) -> u64 {
    let cpus = u64::from(cpus);
    let entries = u64::from(s.max_entries);
    let held = held.map_or(entries, u64::from);
    let value = round8(s.value_size);
    match s.kind {
        // array_map_mem_usage
        Kind::Array if s.flags & BPF_F_MMAPABLE != 0 => {
            page_align(BPF_ARRAY) + page_align(entries * value)
        }
        Kind::Array => BPF_ARRAY + entries * value,
        Kind::PerCpuArray => BPF_ARRAY + entries * POINTER + entries * value * cpus,
        // htab_map_mem_usage
        Kind::Hash | Kind::PerCpuHash | Kind::LruHash | Kind::LruPerCpuHash => {
            hash(s, cpus, held, value)
        }
        // trie_mem_usage: its entries only, not the nodes between them.
        Kind::LpmTrie => {
            let prefix = u64::from(s.key_size).saturating_sub(LPM_PREFIXLEN);
            held * (LPM_NODE + prefix + u64::from(s.value_size))
        }
        // ringbuf_map_mem_usage: max_entries is the data's size in bytes.
        Kind::RingBuf => {
            let data_pages = entries / PAGE;
            RINGBUF_MAP
                + (RINGBUF_META_PAGES + data_pages) * PAGE
                + (RINGBUF_META_PAGES + 2 * data_pages) * POINTER
        }
    }
}

fn hash(s: &Shape, cpus: u64, held: u64, value: u64) -> u64 {
    let per_cpu = s.kind.per_cpu();
    let lru = matches!(s.kind, Kind::LruHash | Kind::LruPerCpuHash);
    // A per-CPU hash keeps a pointer to its values where others keep the value.
    let elem = HTAB_ELEM + round8(s.key_size) + if per_cpu { POINTER } else { value };
    let buckets = u64::from(s.max_entries.max(1)).next_power_of_two();
    let mut usage = BPF_HTAB + BUCKET * buckets + HTAB_LOCKS_PER_CPU * cpus;
    if s.allocated_per_entry() {
        usage += (elem + LLIST_NODE) * held;
        if per_cpu {
            usage += (LLIST_NODE + POINTER) * held + value * cpus * held;
        }
        return usage;
    }
    let entries = u64::from(s.max_entries);
    if per_cpu {
        usage + elem * entries + value * cpus * entries
    } else if lru {
        usage + elem * entries
    } else {
        // A spare element per CPU for updates, and the pointers to them.
        usage + elem * (entries + cpus) + POINTER * cpus
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_PREALLOC: u32 = BPF_F_NO_PREALLOC;
    const MMAPABLE: u32 = BPF_F_MMAPABLE;

    fn shape(kind: Kind, key_size: u32, value_size: u32, max_entries: u32, flags: u32) -> Shape {
        Shape {
            kind,
            key_size,
            value_size,
            max_entries,
            flags,
        }
    }

    /// Maps made on Linux 6.18 (x86-64, 2 possible CPUs) and the `memlock`
    /// their fdinfo showed: bytes, entries held, shape, what.
    #[test]
    // One case a line, in columns: rustfmt would give each six lines.
    #[rustfmt::skip]
    fn counts_as_the_kernel_did() {
        use Kind::*;
        let cases = [
            (320,     None,    shape(Array, 4, 8, 1, 0),               "array of one u64"),
            (8312,    None,    shape(Array, 4, 4, 1000, 0),            "array, values rounded to 8"),
            (8192,    None,    shape(Array, 4, 8, 1, MMAPABLE),        "mmapable array of one"),
            (12288,   None,    shape(Array, 4, 8, 1000, MMAPABLE),     "mmapable array"),
            (336,     None,    shape(PerCpuArray, 4, 8, 1, 0),         "per-CPU array of one"),
            (4312,    None,    shape(PerCpuArray, 4, 16, 100, 0),      "per-CPU array"),
            (1120,    None,    shape(Hash, 4, 8, 1, 0),                "hash of one"),
            (1200,    None,    shape(Hash, 4, 8, 2, 0),                "hash of two"),
            (82960,   None,    shape(Hash, 8, 8, 1024, 0),             "hash"),
            (81424,   None,    shape(Hash, 4, 4, 1000, 0),             "hash, buckets rounded up"),
            (17280,   Some(0), shape(Hash, 8, 8, 1024, NO_PREALLOC),   "empty hash, no prealloc"),
            (976,     None,    shape(LruHash, 4, 8, 1, 0),             "LRU hash of one"),
            (82816,   None,    shape(LruHash, 8, 8, 1024, 0),          "LRU hash"),
            (81280,   None,    shape(LruHash, 8, 8, 1000, 0),          "LRU hash, buckets rounded up"),
            (992,     None,    shape(PerCpuHash, 4, 8, 1, 0),          "per-CPU hash of one"),
            (99200,   None,    shape(PerCpuHash, 8, 8, 1024, 0),       "per-CPU hash"),
            (99200,   None,    shape(LruPerCpuHash, 8, 8, 1024, 0),    "LRU per-CPU hash"),
            (0,       Some(0), shape(LpmTrie, 8, 1, 16, NO_PREALLOC),  "empty IPv4 trie"),
            (29,      Some(1), shape(LpmTrie, 8, 1, 16, NO_PREALLOC),  "IPv4 trie of one"),
            (58,      Some(2), shape(LpmTrie, 8, 1, 16, NO_PREALLOC),  "IPv4 trie of two"),
            (82,      Some(2), shape(LpmTrie, 20, 1, 16, NO_PREALLOC), "IPv6 trie of two"),
            (96,      Some(2), shape(LpmTrie, 20, 8, 16, NO_PREALLOC), "trie of u64 values"),
            (16728,   None,    shape(RingBuf, 0, 0, 4096, 0),          "ring of a page"),
            (1065288, None,    shape(RingBuf, 0, 0, 1 << 20, 0),       "ring of 1 MiB"),
        ];
        for (bytes, held, s, what) in cases {
            assert_eq!(usage(&s, 2, held), bytes, "{what}: {s:?}");
        }
    }

    #[test]
    fn per_cpu_maps_grow_with_the_cpus_and_shared_ones_do_not() {
        let per_cpu = shape(Kind::PerCpuArray, 4, 48, 4096, 0);
        let grown = usage(&per_cpu, 192, None) - usage(&per_cpu, 2, None);
        assert_eq!(grown, 190 * 4096 * 48);
        let shared = shape(Kind::Array, 4, 48, 4096, 0);
        assert_eq!(usage(&shared, 192, None), usage(&shared, 2, None));
        // A hash's only per-CPU parts: its lock counts and spare elements.
        let hash = shape(Kind::Hash, 8, 8, 1024, 0);
        let spare = HTAB_LOCKS_PER_CPU + HTAB_ELEM + 8 + 8 + POINTER;
        assert_eq!(usage(&hash, 3, None) - usage(&hash, 2, None), spare);
        let lru = shape(Kind::LruHash, 8, 8, 1024, 0);
        assert_eq!(
            usage(&lru, 192, None) - usage(&lru, 2, None),
            190 * HTAB_LOCKS_PER_CPU
        );
    }

    #[test]
    fn per_entry_maps_are_full_unless_told_what_they_hold() {
        let trie = shape(Kind::LpmTrie, 8, 1, 1000, NO_PREALLOC);
        assert!(trie.allocated_per_entry());
        assert_eq!(usage(&trie, 2, None), 1000 * 29);
        assert_eq!(usage(&trie, 2, Some(10)), 10 * 29);
        // A preallocated hash is whole whatever it holds.
        let hash = shape(Kind::Hash, 8, 8, 1024, 0);
        assert!(!hash.allocated_per_entry());
        assert_eq!(usage(&hash, 2, Some(0)), usage(&hash, 2, None));
    }

    #[test]
    fn kinds_are_the_kernels_map_types() {
        assert_eq!(Kind::of(1), Some(Kind::Hash));
        assert_eq!(Kind::of(2), Some(Kind::Array));
        assert_eq!(Kind::of(6), Some(Kind::PerCpuArray));
        assert_eq!(Kind::of(11), Some(Kind::LpmTrie));
        assert_eq!(Kind::of(27), Some(Kind::RingBuf));
        assert_eq!(Kind::of(4), None, "perf event arrays are not sized here");
        assert!(Kind::PerCpuArray.per_cpu() && !Kind::Array.per_cpu());
    }
}
