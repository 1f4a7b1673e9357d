//! The program's maps and the counters kept in them.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use filter_common::{
    BPF_F_MMAPABLE, Chain, Config, Counter, CpuCounters, DEFAULT_SOURCES, DOOR_SLOTS, DoorSlot,
    FragKey, GuardPort, Limit, LocalPort, MAX_BANS, MAX_CHAINS, MAX_FRAGS, MAX_GUARDED_PORTS,
    MAX_LIMITS, MAX_NEVER_BAN, MAX_PREFIX_BANS, MAX_PREFIXES, MAX_REPLIES, MAX_RULES, Meta,
    PORT_SLOTS, RULE_SLOTS, RULESET_CHUNK, RULESET_CHUNKS, ReplyKey, ReplyState, Rule, SourceSlot,
    SrcKey, packet::Packet,
};

// A block per CPU: see MAP_COUNTERS. Sized at load to the possible CPUs.
#[map(name = "COUNTERS")]
pub static COUNTERS: Array<CpuCounters> = Array::with_max_entries(1, BPF_F_MMAPABLE);

#[map(name = "RULE_STATS")]
pub static RULE_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(RULE_SLOTS, 0);

// The controller's record of the settings (what `status` shows and `mode`
// flips); the program runs on the globals (globals.rs).
#[map(name = "CONFIG")]
pub static CONFIG_RECORD: Array<Config> = Array::with_max_entries(1, 0);

// Only the controller reads and writes it; declared here so that it lives
// and dies with the program's other maps.
#[map(name = "META")]
pub static META: Array<Meta> = Array::with_max_entries(1, 0);

// Like META: the controller's record of the rule set, kept with the maps.
#[map(name = "RULESET")]
pub static RULESET: Array<[u8; RULESET_CHUNK]> = Array::with_max_entries(RULESET_CHUNKS, 0);

#[map(name = "RULES")]
pub static RULES: Array<Rule> = Array::with_max_entries(MAX_RULES, 0);

#[map(name = "PORT_CHAINS")]
pub static PORT_CHAINS: Array<u32> = Array::with_max_entries(PORT_SLOTS, 0);

#[map(name = "CHAINS")]
pub static CHAINS: Array<Chain> = Array::with_max_entries(MAX_CHAINS, 0);

#[map(name = "ALLOW_V4")]
pub static ALLOW_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

#[map(name = "ALLOW_V6")]
pub static ALLOW_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

#[map(name = "DENY_V4")]
pub static DENY_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

#[map(name = "DENY_V6")]
pub static DENY_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

// Sized at load time: one word while no IPv4 prefix is listed.
#[map(name = "V4_LISTS")]
pub static V4_LISTS: Array<u64> =
    Array::with_max_entries(filter_common::v4lists::V4_LIST_WORDS, BPF_F_MMAPABLE);

// Sized at load time to the /24s listed in part (one at least).
#[map(name = "V4_FINE")]
pub static V4_FINE: Array<filter_common::v4lists::FineV4> =
    Array::with_max_entries(MAX_PREFIXES, BPF_F_MMAPABLE);

// For the controller's diff only; sized at load time.
#[map(name = "V4_PREFIXES")]
pub static V4_PREFIXES: Array<u64> = Array::with_max_entries(MAX_PREFIXES, BPF_F_MMAPABLE);

// Sized at load time, as V4_LISTS: two u32 ranks a value (an array's
// values lie 8 bytes apart).
#[map(name = "V4_RANK")]
pub static V4_RANK: Array<u64> =
    Array::with_max_entries(filter_common::v4lists::V4_LIST_WORDS / 2, BPF_F_MMAPABLE);

/// What the IPv4 lists say of `src` (LISTED_ALLOW, LISTED_DENY): exact.
#[inline(always)]
pub fn v4_listed(src: &filter_common::packet::Addr) -> u8 {
    use filter_common::v4lists::{host, listed, rank_in_word, slash24, state};
    let s24 = slash24(src);
    let Some(word) = V4_LISTS.get(s24 >> 5).copied() else {
        return 0;
    };
    listed(state(word, s24), host(src), || {
        let pair = V4_RANK.get(s24 >> 6).copied()?;
        let before = (pair >> ((s24 >> 5 & 1) * 32)) as u32;
        V4_FINE.get(before + rank_in_word(word, s24)).copied()
    })
}

// Sized at load time: one word while both lists are empty.
#[map(name = "SRC_HINTS")]
pub static SRC_HINTS: Array<u64> = Array::with_max_entries(filter_common::hints::HINT_WORDS, 0);

/// Whether a listed (allow or deny) prefix may cover `src`; false is exact.
#[inline(always)]
pub fn listed(family: u8, src: &filter_common::packet::Addr) -> bool {
    filter_common::hints::hinted(|w| SRC_HINTS.get(w).copied(), family, src)
}

#[map(name = "PEERS")]
pub static PEERS: LruHashMap<SrcKey, u64> =
    LruHashMap::with_max_entries(filter_common::MAX_PEERS, 0);

#[map(name = "BAN_V4")]
pub static BAN_V4: LpmTrie<[u8; 4], u64> = LpmTrie::with_max_entries(MAX_PREFIX_BANS, 0);

#[map(name = "BAN_V6")]
pub static BAN_V6: LpmTrie<[u8; 16], u64> = LpmTrie::with_max_entries(MAX_PREFIX_BANS, 0);

#[map(name = "BAN_FLAG")]
pub static BAN_FLAG: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "BAN_HINTS")]
pub static BAN_HINTS: Array<u64> = Array::with_max_entries(filter_common::hints::HINT_WORDS, 0);

/// Whether a ban may cover `src`; false is exact (a wide ban is the
/// caller's to check in BAN_FLAG).
#[inline(always)]
pub fn maybe_banned(family: u8, src: &filter_common::packet::Addr) -> bool {
    filter_common::hints::hinted(|w| BAN_HINTS.get(w).copied(), family, src)
}

#[map(name = "BANS")]
pub static BANS: LruHashMap<SrcKey, u64> = LruHashMap::with_max_entries(MAX_BANS, 0);

// Sized at load time from the rule file (limiter table size, rounded up
// to a power of two); mmapable for `top` and the metrics.
#[map(name = "SOURCES")]
pub static SOURCES: Array<SourceSlot> = Array::with_max_entries(DEFAULT_SOURCES, BPF_F_MMAPABLE);

// Sized at load time: one u32 per set of SOURCES.
#[map(name = "SOURCE_TAGS")]
pub static SOURCE_TAGS: Array<u32> = Array::with_max_entries(DEFAULT_SOURCES / 2, 0);

// The limiter's doorkeeper (see decide::first_sighting): per CPU, so its
// slots are plain stores that no other CPU's cache line fights over.
#[map(name = "DOOR")]
// Sized at load time (filter_common::per_cpu_slots).
pub static DOOR: PerCpuArray<DoorSlot> = PerCpuArray::with_max_entries(DOOR_SLOTS, 0);

#[map(name = "LIMITS")]
pub static LIMITS: Array<Limit> = Array::with_max_entries(MAX_LIMITS, 0);

#[map(name = "AGGREGATE")]
pub static AGGREGATE: Array<u64> = Array::with_max_entries(MAX_RULES, 0);

#[map(name = "FRAGS")]
pub static FRAGS: LruHashMap<FragKey, u64> = LruHashMap::with_max_entries(MAX_FRAGS, 0);

/// A datagram's words ([`filter_common::frags::Datagram::words`]) and
/// until when its later fragments follow its dropped first one.
#[repr(C)]
pub struct FragSlot {
    pub key: [u64; 5],
    pub until: u64,
}

/// Per CPU, in front of FRAGS (see frags::frag_slot); per generation, not
/// pinned: FRAGS stays the record that outlives reloads.
// Sized at load time (filter_common::per_cpu_slots), as DOOR.
#[map(name = "FRAG_CACHE")]
pub static FRAG_CACHE: PerCpuArray<FragSlot> =
    PerCpuArray::with_max_entries(filter_common::FRAG_CACHE_SLOTS, 0);

/// Until when the last pass written into FRAGS of any datagram of each
/// cache hash lasts (its value, low bit cleared): a CPU's cached drop that
/// a later pass may have overridden is older than this. Shared by all CPUs
/// and written only by passes, so read from cache; per generation, as
/// FRAG_CACHE.
#[map(name = "FRAG_PASSES")]
pub static FRAG_PASSES: Array<u64> = Array::with_max_entries(FRAG_PASS_SLOTS, 0);
/// FRAG_PASSES' slots: a power of two.
pub const FRAG_PASS_SLOTS: u32 = 1 << 12;

#[map(name = "REPLIES")]
pub static REPLIES: LruHashMap<ReplyKey, ReplyState> = LruHashMap::with_max_entries(MAX_REPLIES, 0);

#[map(name = "LOCAL_PORTS")]
pub static LOCAL_PORTS: Array<LocalPort> = Array::with_max_entries(65536, 0);

#[map(name = "GUARD_BUDGETS")]
pub static GUARD_BUDGETS: HashMap<u32, GuardPort> = HashMap::with_max_entries(MAX_GUARDED_PORTS, 0);

#[map(name = "NEVER_BAN_V4")]
pub static NEVER_BAN_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(MAX_NEVER_BAN, 0);

#[map(name = "NEVER_BAN_V6")]
pub static NEVER_BAN_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_NEVER_BAN, 0);

// One per CPU and program: the parsed packet passes through it on its way
// to the decision (see main.rs for why). Slot 0 is the XDP program's, slot
// 1 the egress program's.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<Packet> = PerCpuArray::with_max_entries(2, 0);
pub const SCRATCH_XDP: u32 = 0;
pub const SCRATCH_EGRESS: u32 = 1;

#[inline(always)]
pub fn count_rule(slot: u16, bytes: u64) {
    if let Some(c) = RULE_STATS.get_ptr_mut(slot as u32) {
        // Per-CPU slot: no other CPU writes it, so plain adds are exact.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
