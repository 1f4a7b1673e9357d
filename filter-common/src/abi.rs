//! Map names, sizes, keys and values: the contract between the XDP program and
//! filterctl. Every value type is `#[repr(C)]` with explicit padding and a
//! compile-time size check, because both sides read the same bytes.

use core::mem::size_of;

/// Every CPU's counters, a [`CpuCounters`] block each, in one array
/// (sized at load to the possible CPUs) created [`BPF_F_MMAPABLE`]. The
/// program finds its CPU's block with one lookup per frame and adds with
/// plain adds, since no other CPU writes the block; the controller sums
/// the blocks through one mmap. One lookup where the reason counters and
/// the port counters took one each (0.3 to 0.8 ns a reflection frame,
/// measured).
pub const MAP_COUNTERS: &str = "COUNTERS";
/// The maps that [`MAP_COUNTERS`] replaced, as an older build pinned them:
/// per-CPU `{packets, bytes}` by reason, and the UDP source-port counters.
/// The reload that upgrades adds the older reason totals into the new
/// counters, then removes both.
pub const OLDER_STATS: &str = "STATS";
pub const OLDER_UDP_PORTS: &str = "UDP_PORTS";
/// Per-CPU `{packets, bytes}` for every rule, indexed like [`MAP_RULES`].
pub const MAP_RULE_STATS: &str = "RULE_STATS";
/// One [`Config`]: switches the controller flips without reloading.
pub const MAP_CONFIG: &str = "CONFIG";
/// One [`Meta`]: which rule set is loaded, kept next to the pins.
pub const MAP_META: &str = "META";
/// [`Rule`] by rule index.
pub const MAP_RULES: &str = "RULES";
/// Chain index (u32) by [`port_slot`]: which rules a (protocol, source port) can hit.
pub const MAP_PORT_CHAINS: &str = "PORT_CHAINS";
/// [`Chain`] by chain index; chain 0 is always empty.
pub const MAP_CHAINS: &str = "CHAINS";

/// Source prefixes (IPv4, IPv6) passed with no further checks.
pub const MAP_ALLOW_V4: &str = "ALLOW_V4";
pub const MAP_ALLOW_V6: &str = "ALLOW_V6";
/// IPv4 allow and deny lists, two bits per /24 ([`crate::v4lists`]): an
/// mmapable array, one word while no IPv4 prefix is listed.
pub const MAP_V4_LISTS: &str = "V4_LISTS";
/// The /24s that listed prefixes cover in part, in /24 order: their
/// addresses as bitmaps ([`crate::v4lists::FineV4`]); mmapable.
pub const MAP_V4_FINE: &str = "V4_FINE";
/// The IPv4 prefixes of both lists as listed, for `filterctl diff` (the
/// program never reads them): `addr << 32 | len << 8 | list`, list 1 for
/// allow and 2 for deny; mmapable, sized at load to their number (one at
/// least). Where an older build kept them in the IPv4 tries, whose 110,000
/// inserts took half a second of every reload.
pub const MAP_V4_PREFIXES: &str = "V4_PREFIXES";
pub const V4_PREFIX_ALLOW: u64 = 1;
pub const V4_PREFIX_DENY: u64 = 2;
/// Per word of [`MAP_V4_LISTS`], how many of the /24s before it are listed
/// in part: where its own start in [`MAP_V4_FINE`]. A u32 each, two to a
/// u64 value (the first word's in the low half); mmapable.
pub const MAP_V4_RANK: &str = "V4_RANK";
/// Source prefixes dropped.
pub const MAP_DENY_V4: &str = "DENY_V4";
pub const MAP_DENY_V6: &str = "DENY_V6";
/// u64 words of bits in front of the allow and deny tries (see
/// [`crate::hints`]): a clear bit means no listed prefix covers the source.
/// One word when both lists are empty.
pub const MAP_SRC_HINTS: &str = "SRC_HINTS";
/// [`SrcKey`] -> ban deadline (ns, CLOCK_MONOTONIC coarse), its low bit
/// [`BAN_UDP_ONLY`].
pub const MAP_BANS: &str = "BANS";
/// The low bit of a ban's deadline: set, the ban was earned by UDP and
/// drops only UDP (and its fragments); clear, it drops everything (other
/// floods, and every operator ban). A bit of the deadline rather than a
/// field: a reader that ignores it is off by one nanosecond, no more.
pub const BAN_UDP_ONLY: u64 = 1;
/// One u32, [`BAN_ANY`] from the first time anything is banned (by the
/// limiter or the operator): until then the ban maps are not looked up at
/// all. [`BAN_WIDE`] once a ban was too wide for [`MAP_BAN_HINTS`].
pub const MAP_BAN_FLAG: &str = "BAN_FLAG";
pub const BAN_ANY: u32 = 1;
pub const BAN_WIDE: u32 = 2;
/// Source hints of every ban ever set (see [`crate::hints`]; never
/// cleared, so a bit may outlive its ban): the early verdict judges a
/// source whose bit is clear without looking up the ban maps.
pub const MAP_BAN_HINTS: &str = "BAN_HINTS";
/// Prefix bans set by the operator (`filterctl ban PREFIX`): prefix ->
/// deadline (ns, CLOCK_MONOTONIC coarse).
pub const MAP_BAN_V4: &str = "BAN_V4";
pub const MAP_BAN_V6: &str = "BAN_V6";
/// The per-source rate limiter: [`SourceSlot`]s shared by all CPUs, two
/// ways per set (a source lives in one of the two slots its hash picks),
/// [`source_slots`] of them, mmapable so that `top` and the metrics read
/// it whole.
pub const MAP_SOURCES: &str = "SOURCES";
/// The limiter table's fingerprints, one u32 per set of [`MAP_SOURCES`]:
/// the low 16 bits for its first way, the high 16 for its second (0 for
/// none; see [`crate::limiter::Source::fingerprint`]). A quarter MB for the
/// default table, so a source the table doesn't hold (every packet of a
/// spoofed flood) is told apart in cache, not by reading two slots from
/// memory.
pub const MAP_SOURCE_TAGS: &str = "SOURCE_TAGS";
/// [`Limit`] by limit id; id 0 means "no limit".
pub const MAP_LIMITS: &str = "LIMITS";
/// Theoretical arrival time (u64 ns) of each rule's aggregate limit.
pub const MAP_AGGREGATE: &str = "AGGREGATE";
/// [`FragKey`] -> deadline: datagrams whose first fragment was dropped.
pub const MAP_FRAGS: &str = "FRAGS";
/// One [`crate::capture::CaptureConfig`]: what `filterctl capture` copies,
/// until when.
pub const MAP_CAPTURE: &str = "CAPTURE";
/// Per-CPU [`crate::capture::CaptureWindow`]: sampling and rate state.
pub const MAP_CAPTURE_WINDOW: &str = "CAPTURE_WINDOW";
/// The ring buffer of [`crate::capture::CaptureRecord`]s.
pub const MAP_CAPTURE_RING: &str = "CAPTURE_RING";

/// [`ReplyKey`] -> [`ReplyState`]: the host's outstanding UDP requests to
/// guarded ports, recorded by the egress program, an LRU that outlives
/// reloads.
pub const MAP_REPLIES: &str = "REPLIES";
/// Local port (u32) -> [`LocalPort`]: until when a request sent from it
/// may be answered. Replies to other ports need no hash lookup to be found
/// unsolicited.
pub const MAP_LOCAL_PORTS: &str = "LOCAL_PORTS";
/// The generation's copy of each local port's [`LocalPort::until`] (u64,
/// by port: [`UDP_PORTS`] of them), which the early verdict reads with one
/// load where [`MAP_LOCAL_PORTS`] takes a lookup (about 0.4 ns a frame,
/// measured). A zeroed global of each program generation, in a section of
/// its own: the state map outlives reloads and a program's global can't
/// (the loader writes a section's initial data into its map). So each
/// generation's egress program writes both, this copy first; a reload
/// attaches the new recorder beside the old one, then fills the new copy
/// from the state map in the kernel, port by port ([`OPEN_SEED_PROGRAM_NAME`]),
/// and checks that nothing was missed, before the XDP switch (see the
/// controller's `open_ports`).
pub const OPEN_UNTIL_SECTION: &str = ".bss.open";
/// One byte per port ([`GUARD_TABLE_LEN`]), nonzero for a guarded source
/// port: a UDP packet from one of them must answer an outstanding request.
/// Indexed by [`crate::guard::guard_index`], the port's two bytes as they
/// lie in the packet, so the program indexes it with the raw load. A
/// read-only global of the program, set at load (the guarded ports change
/// only with the rule set): one load where a map lookup takes a dozen
/// instructions, and where the bitmap it replaced took a byte swap and
/// two shifts on top (about 0.7 ns a port checked, measured).
pub const GLOBAL_GUARD_PORTS: &str = "GUARD_PORTS";
/// The rule set's [`Config`] as the program runs it: a read-only global
/// set at load, so that the verifier sees every setting as a constant and
/// removes the steps it turns off, and no packet pays for a lookup. Its
/// monitor bit is always clear: monitor mode is [`MODE_FLAG`]'s.
pub const GLOBAL_CONFIG: &str = "LOADED_CONFIG";
/// A u32 global of the program that the controller writes while the
/// program runs: in a data section of its own (so one map of its own),
/// pinned in each generation's folder under its symbol's name.
#[derive(Clone, Copy, Debug)]
pub struct FlagGlobal {
    pub symbol: &'static str,
    pub section: &'static str,
}

/// [`CONFIG_MONITOR`] or 0: the one setting that changes while a program
/// runs (`filterctl mode`).
pub const MODE_FLAG: FlagGlobal = FlagGlobal {
    symbol: "MODE",
    section: ".data.mode",
};
/// Nonzero while a capture may run ([`MAP_CAPTURE`] says what it wants):
/// the drop path looks at nothing else while it is 0.
pub const CAPTURE_FLAG: FlagGlobal = FlagGlobal {
    symbol: "CAPTURING",
    section: ".data.capture",
};
/// The generation's copy of [`MAP_BAN_FLAG`], which the early verdict reads
/// on every frame.
pub const BAN_FLAG_COPY: FlagGlobal = FlagGlobal {
    symbol: "BAN_BITS",
    section: ".data.bans",
};
/// Nonzero while another interface under the same pin root shares this
/// one's request maps ([`REQUEST_MAPS`]): its recorder writes LOCAL_PORTS
/// but not this generation's copy ([`OPEN_UNTIL_SECTION`]), so a port the
/// copy finds closed is looked up in LOCAL_PORTS before the early verdict
/// drops the reply. Set at the load of the second interface, on it and on
/// the generations its siblings run, and by each reload while it holds.
pub const SHARED_FLAG: FlagGlobal = FlagGlobal {
    symbol: "REQUESTS_SHARED",
    section: ".data.shared",
};
pub const FLAG_GLOBALS: [FlagGlobal; 4] = [MODE_FLAG, CAPTURE_FLAG, BAN_FLAG_COPY, SHARED_FLAG];
/// Guarded port (u32) -> [`GuardPort`]: what a request to it may receive.
pub const MAP_GUARD_BUDGETS: &str = "GUARD_BUDGETS";
/// Sources never banned (gateways, resolvers, time servers, the
/// operator's SSH client, `never_ban`): prefix -> 1. Still rate-limited.
pub const MAP_NEVER_BAN_V4: &str = "NEVER_BAN_V4";
pub const MAP_NEVER_BAN_V6: &str = "NEVER_BAN_V6";

/// The loaded rule set in canonical JSON (rules and settings, not the
/// prefix lists), NUL-padded over [`RULESET_CHUNKS`] chunks: what `diff`
/// compares a rule file against. Only the controller uses it.
pub const MAP_RULESET: &str = "RULESET";
pub const RULESET_CHUNK: usize = 4096;
pub const RULESET_CHUNKS: u32 = 128;

/// UDP source ports: the size of each CPU's port counters.
pub const UDP_PORTS: usize = 65536;

/// One CPU's counters in [`MAP_COUNTERS`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CpuCounters {
    /// `{packets, bytes}` by [`Reason`], then [`STATS_MONITOR_SLOT`].
    pub reasons: [Counter; STATS_SLOTS as usize],
    /// Frames by UDP source port of every UDP datagram that arrives,
    /// counted before any decision so that `serve`'s surge detector sees a
    /// flood even while rules drop it. Later fragments carry no port: a
    /// first fragment counts for the frames of its whole datagram
    /// ([`crate::frags::datagram_frames`]), the later ones for none.
    pub udp_ports: [u64; UDP_PORTS],
    /// `{packets, bytes}` of the replies from each of the first
    /// [`GUARD_SLOTS`] guarded ports, unsolicited ([`GUARD_UNSOLICITED`])
    /// and solicited ([`GUARD_SOLICITED`]), by frame length in
    /// [`GUARD_LEN_BUCKETS`] steps of 128 bytes (the last one open): what
    /// a FlowSpec route for the port may drop upstream without taking the
    /// host's own answers (the controller's `upstream`).
    pub guard_lengths: [[[Counter; GUARD_LEN_BUCKETS]; 2]; GUARD_SLOTS],
}
const _: () = assert!(
    size_of::<CpuCounters>()
        == 16 * STATS_SLOTS as usize + 8 * UDP_PORTS + 16 * 2 * GUARD_LEN_BUCKETS * GUARD_SLOTS
);

/// Guarded ports with length counters of their own ([`CpuCounters`]): the
/// first ones in port order; the guard table's byte of a port is its slot
/// (1 to this), or [`GUARD_NO_SLOT`] for the others.
pub const GUARD_SLOTS: usize = 16;
pub const GUARD_NO_SLOT: u8 = 0xff;
pub const GUARD_LEN_BUCKETS: usize = 16;
/// Frame lengths per bucket of [`CpuCounters::guard_lengths`] (a shift).
pub const GUARD_LEN_SHIFT: u32 = 7;
pub const GUARD_UNSOLICITED: usize = 0;
pub const GUARD_SOLICITED: usize = 1;

impl CpuCounters {
    /// The u64 at which a block's reason counters start, counted from the
    /// block's start: `{packets, bytes}` each.
    pub const REASONS_AT: usize = 0;
    /// The u64 at which a block's port counters start.
    pub const UDP_PORTS_AT: usize = 2 * STATS_SLOTS as usize;
    /// The u64 at which a block's guard length counters start.
    pub const GUARD_LENGTHS_AT: usize = Self::UDP_PORTS_AT + UDP_PORTS;
    /// A block's size in u64s (the array's values lie back to back).
    pub const WORDS: usize = size_of::<CpuCounters>() / 8;
}

/// Map flag: userspace may mmap the array's values.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "filter";
/// Name of the TC egress program that records the host's requests.
pub const REQUESTS_PROGRAM_NAME: &str = "requests";
/// Name of the XDP program that fills a generation's copy of the open
/// requests ([`OPEN_UNTIL_SECTION`]) from LOCAL_PORTS, [`OPEN_SEED_CHUNK`]
/// ports a run: the controller runs it (BPF_PROG_TEST_RUN) over every
/// chunk at a reload, never attaches it. The chunk's number is the frame's
/// first two bytes, native order.
pub const OPEN_SEED_PROGRAM_NAME: &str = "seed_open";
pub const OPEN_SEED_CHUNK: u32 = 64;

pub const MAX_RULES: u32 = 1024;
/// Counter slots of [`MAP_RULE_STATS`]: twice the rules, so that a reload
/// always finds free slots that the running generation does not count in.
pub const RULE_SLOTS: u32 = 2 * MAX_RULES;
pub const MAX_LIMITS: u32 = 64;
/// Entries of each allow or deny trie (a published blocklist fits).
pub const MAX_PREFIXES: u32 = 262_144;
/// Default size of the per-source limiter LRU; the rule file can change it.
pub const DEFAULT_SOURCES: u32 = 65_536;
pub const MAX_BANS: u32 = 65_536;
/// The peers this host sent a request to (by the key a ban of them would
/// have: [`crate::limiter::peer_key`]) -> until when that protects them
/// from bans ([`PEER_MEMORY_NS`] after the last request). Written by the
/// egress recorder; read only when a ban is about to be set. A state map.
pub const MAP_PEERS: &str = "PEERS";
pub const MAX_PEERS: u32 = 16_384;
/// How long a request protects its peer from bans: past the longest NTP
/// poll interval (1024 s, chrony's maxpoll 10) twice, so that a forged
/// stream of a time server's address cannot get it banned between polls.
pub const PEER_MEMORY_NS: u64 = 2048 * 1_000_000_000;
/// Prefix bans the operator may set.
pub const MAX_PREFIX_BANS: u32 = 16_384;
pub const MAX_FRAGS: u32 = 16_384;
/// Outstanding requests tracked at once (LRU: the oldest go first).
pub const MAX_REPLIES: u32 = 65_536;
/// Bytes of the guarded-port table: one per port.
pub const GUARD_TABLE_LEN: usize = 65536;
pub const MAX_GUARDED_PORTS: u32 = 1024;
pub const MAX_NEVER_BAN: u32 = 4096;
/// Longest list of candidate rules one (protocol, source port) leads to. The
/// program walks at most this many, whatever the total number of rules.
pub const MAX_CHAIN: usize = 8;
/// Distinct chains: a rule set of N rules splits the port space into at most
/// 2N+1 ranges per protocol, so this covers MAX_RULES with room to spare.
pub const MAX_CHAINS: u32 = 4 * MAX_RULES + 4;
/// UDP and TCP, each with 65536 source ports.
pub const PORT_SLOTS: u32 = 2 * 65536;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Index into [`MAP_PORT_CHAINS`] for a protocol and source port; `None` for
/// protocols that have no ports.
#[inline(always)]
pub fn port_slot(proto: u8, src_port: u16) -> Option<u32> {
    match proto {
        IPPROTO_UDP => Some(src_port as u32),
        IPPROTO_TCP => Some(65536 + src_port as u32),
        _ => None,
    }
}

/// Why a packet got its verdict; the index of its counter in
/// [`CpuCounters::reasons`].
/// The counters of all reasons add up to the frames the program saw.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// IP packet that no step dropped.
    Pass = 0,
    /// ARP, LLDP and everything else that is not IPv4 or IPv6, and IPv6
    /// neighbour discovery (IPv6's ARP).
    NonIp = 1,
    /// Source in the allow list: passed with no further checks.
    AllowPass = 2,
    /// Source in the deny list.
    DenyDrop = 3,
    /// Source banned (by the limiter or by the operator) until a deadline.
    BanDrop = 4,
    /// A rule with action `pass` matched.
    RulePass = 5,
    /// A rule with action `drop` matched.
    RuleDrop = 6,
    /// Source over its per-source packet or bit rate.
    RateLimitDrop = 7,
    /// Over a rule's aggregate packet rate across all sources.
    AggregateDrop = 8,
    /// Truncated frame, IPv4 IHL < 5, lying length fields, a third VLAN tag,
    /// IPv6 extension chain longer than we walk: dropped, the kernel would
    /// drop most anyway.
    Malformed = 9,
    /// Non-first fragment (no ports to match), passed by the fragment policy.
    FragmentPass = 10,
    /// Non-first fragment dropped by the fragment policy.
    FragmentDrop = 11,
    /// Non-first fragment of a datagram whose first fragment was dropped.
    FragmentFollowDrop = 12,
    /// UDP from a guarded (amplification) source port that answers no
    /// request this host sent and reaches no socket listening for requests.
    UnsolicitedReply = 13,
    /// A reply to a tracked request beyond that request's budget.
    ReplyOverBudget = 14,
    /// A reply to a tracked request that no rule matched: passed without
    /// meeting the per-source limit, so forgeries can't spend its budget.
    SolicitedReply = 15,
    /// UDP from a guarded source port to a server of a guarded protocol
    /// that is not a request of it: from another guarded port (a
    /// memcached reply aimed at a DNS server), or from the same port
    /// without a request's shape (a DNS answer aimed at a DNS server; see
    /// [`crate::shapes`]).
    ReflectedToService = 16,
}

pub const REASON_COUNT: u32 = 17;
/// Extra slot in [`CpuCounters::reasons`]: packets that a reason said to drop but that
/// passed because the filter runs in monitor mode. Not a reason of its own,
/// so the reason counters still add up to the frames seen.
pub const STATS_MONITOR_SLOT: u32 = REASON_COUNT;
pub const STATS_SLOTS: u32 = REASON_COUNT + 1;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::Pass,
        Reason::NonIp,
        Reason::AllowPass,
        Reason::DenyDrop,
        Reason::BanDrop,
        Reason::RulePass,
        Reason::RuleDrop,
        Reason::RateLimitDrop,
        Reason::AggregateDrop,
        Reason::Malformed,
        Reason::FragmentPass,
        Reason::FragmentDrop,
        Reason::FragmentFollowDrop,
        Reason::UnsolicitedReply,
        Reason::ReplyOverBudget,
        Reason::SolicitedReply,
        Reason::ReflectedToService,
    ];

    /// Stable name used in JSON and Prometheus labels.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::NonIp => "non_ip",
            Reason::AllowPass => "allow_pass",
            Reason::DenyDrop => "deny_drop",
            Reason::BanDrop => "ban_drop",
            Reason::RulePass => "rule_pass",
            Reason::RuleDrop => "rule_drop",
            Reason::RateLimitDrop => "rate_limit_drop",
            Reason::AggregateDrop => "aggregate_drop",
            Reason::Malformed => "malformed",
            Reason::FragmentPass => "fragment_pass",
            Reason::FragmentDrop => "fragment_drop",
            Reason::FragmentFollowDrop => "fragment_follow_drop",
            Reason::UnsolicitedReply => "unsolicited_reply",
            Reason::ReplyOverBudget => "reply_over_budget",
            Reason::SolicitedReply => "solicited_reply",
            Reason::ReflectedToService => "reflected_to_service",
        }
    }

    pub const fn drops(self) -> bool {
        matches!(
            self,
            Reason::DenyDrop
                | Reason::BanDrop
                | Reason::RuleDrop
                | Reason::RateLimitDrop
                | Reason::AggregateDrop
                | Reason::Malformed
                | Reason::FragmentDrop
                | Reason::FragmentFollowDrop
                | Reason::UnsolicitedReply
                | Reason::ReplyOverBudget
                | Reason::ReflectedToService
        )
    }
}

/// Packets and bytes; one per CPU, summed by the controller.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<Counter>() == 16);

pub const ACTION_PASS: u8 = 0;
pub const ACTION_DROP: u8 = 1;
/// Rate-limit per source with the rule's named limit, then pass.
pub const ACTION_LIMIT: u8 = 2;

/// Longest payload match, in bytes.
pub const MATCH_MAX: usize = 4;
pub const RULE_NAME_LEN: usize = 32;
/// Furthest payload offset a match may start at; keeps the read bounded for
/// the verifier and within the first bytes of the payload.
pub const MATCH_OFFSET_MAX: u16 = 64;

/// One match rule. The protocol and source port range are not stored here:
/// they decide which chains list the rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Aggregate limit across all sources: ns between packets, 0 = none.
    pub agg_interval_ns: u64,
    pub agg_tolerance_ns: u64,
    pub dst_port_lo: u16,
    pub dst_port_hi: u16,
    /// L4 payload length range, inclusive.
    pub len_lo: u16,
    pub len_hi: u16,
    pub match_offset: u16,
    /// 0 means no payload match.
    pub match_len: u8,
    pub action: u8,
    /// Limit id for [`ACTION_LIMIT`].
    pub limit: u8,
    /// [`RULE_SPARES_GUARDED`] and future flags.
    pub flags: u8,
    /// The rule's counter in [`MAP_RULE_STATS`]: a state map, shared by
    /// every generation, where a rule keeps its slot by name across
    /// reloads (so its counters only grow, whatever the reload reorders).
    pub counter_slot: u16,
    pub match_mask: [u8; MATCH_MAX],
    pub match_value: [u8; MATCH_MAX],
    /// Rule name, NUL-padded; only the controller reads it (for stats).
    pub name: [u8; RULE_NAME_LEN],
}
const _: () = assert!(size_of::<Rule>() == 72);

/// Rule flag: the rule does not apply to a reply the reply guard found
/// solicited, nor to a request it let through to a server of a guarded
/// protocol. Set on `serve`'s adaptive blocks, so that blocking a port's
/// flood keeps the host's own answers (time sync, DNS, SNMP polls) and
/// its service's clients.
pub const RULE_SPARES_GUARDED: u8 = 1;

/// Candidate rules for one (protocol, source port), in priority order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub rules: [u16; MAX_CHAIN],
    pub len: u16,
    pub _pad: [u8; 6],
}
const _: () = assert!(size_of::<Chain>() == 24);

/// Non-first fragments are dropped instead of passed.
pub const CONFIG_FRAGMENT_DROP: u32 = 1 << 0;
/// Count what would be dropped, but pass it.
pub const CONFIG_MONITOR: u32 = 1 << 1;
/// The allow (deny) tries hold entries: empty ones are not even looked up.
pub const CONFIG_HAS_ALLOW: u32 = 1 << 2;
pub const CONFIG_HAS_DENY: u32 = 1 << 3;
/// UDP from guarded source ports must answer a tracked request.
pub const CONFIG_REPLY_GUARD: u32 = 1 << 4;
/// Test runs only (`filterctl replay` on the capture's clock): the program
/// reads its time from [`VIRTUAL_CLOCK_SECTION`], which the controller sets
/// to each frame's timestamp, instead of the kernel's coarse clock. Never
/// set for a filter that is attached: the verifier sees the bit clear in
/// the read-only settings and removes the branch, so live frames pay
/// nothing for it.
pub const CONFIG_VIRTUAL_CLOCK: u32 = 1 << 5;
/// A u64 global: the program's time, in ns, under [`CONFIG_VIRTUAL_CLOCK`].
pub const VIRTUAL_CLOCK_SECTION: &str = ".data.clock";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub flags: u32,
    /// Prefix lengths that key a source in the limiter and the ban list.
    pub src_prefix_v4: u8,
    pub src_prefix_v6: u8,
    pub _pad: [u8; 2],
    /// A source over its limit for this long is banned; 0 = never.
    pub ban_after_ns: u64,
    pub ban_for_ns: u64,
    /// How long a dropped first fragment's datagram is remembered.
    pub frag_track_ns: u64,
    /// Limit id every packet that reaches the per-source step meets; 0 = none.
    pub default_limit: u32,
    /// Slots of the limiter table ([`MAP_SOURCES`]) minus one.
    pub sources_mask: u32,
}
const _: () = assert!(size_of::<Config>() == 40);

impl Config {
    /// The prefix length that keys a source of `family`.
    #[inline(always)]
    pub fn src_prefix(&self, family: u8) -> u8 {
        if family == FAMILY_V4 {
            self.src_prefix_v4
        } else {
            self.src_prefix_v6
        }
    }
}

/// A rate limit as the program applies it (GCRA: spacing and tolerance).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limit {
    /// ns between packets at the limit rate; 0 = no packet limit.
    pub pkt_interval_ns: u64,
    /// How far ahead of the rate a source may run: (burst - 1) intervals.
    pub pkt_tolerance_ns: u64,
    /// Picoseconds each byte costs at the bit rate; 0 = no bit limit.
    pub byte_cost_ps: u64,
    pub byte_tolerance_ns: u64,
}
const _: () = assert!(size_of::<Limit>() == 32);

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// A source as the limiter and the ban list see it: its address masked to
/// the configured prefix length, and the limit it is counted against (0
/// for bans).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SrcKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub limit: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<SrcKey>() == 20);

/// Per-source limiter state, shared by all CPUs (updated with atomics).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    pub pkt_tat: u64,
    pub byte_tat: u64,
    /// When the source started exceeding its limit without a break; 0 if
    /// it is within its limit.
    pub over_since: u64,
    pub dropped: u64,
    /// When the limiter last refused the source: a source over its limit
    /// still gets one packet admitted every interval, so "within its limit
    /// again" means no refusal for [`OVER_BREAK_NS`], not one admission.
    pub last_over: u64,
}
const _: () = assert!(size_of::<SourceState>() == 40);

/// A source's first packet, remembered by the limiter's doorkeeper
/// ([`MAP_DOOR`]) instead of a limiter entry: a spoofed flood, whose
/// sources each send one packet, then costs one array write a packet
/// instead of an LRU insert.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoorSlot {
    /// The source's hash (see [`crate::limiter::Source`]); 0 for none.
    pub hash: u64,
    /// When its first packet came, and its length.
    pub at: u64,
    pub frame_len: u64,
}
const _: () = assert!(size_of::<DoorSlot>() == 24);

/// Per-CPU [`DoorSlot`]s, indexed by the low bits of the source's hash:
/// [`DOOR_SLOTS`] of them, fewer on hosts with many CPUs (sized at load,
/// see [`per_cpu_slots`]; the mask in [`GLOBAL_DOOR_MASK`]).
pub const MAP_DOOR: &str = "DOOR";
pub const DOOR_SLOTS: u32 = 1 << 15;
pub const DOOR_MIN_SLOTS: u32 = 1 << 12;
/// What all CPUs' door slots may take together, beyond their minimum.
pub const DOOR_BUDGET: u64 = 2 << 20;
/// The read-only globals that hold the slot masks of DOOR and FRAG_CACHE
/// (slots - 1), set at load with their maps' sizes.
pub const GLOBAL_DOOR_MASK: &str = "DOOR_MASK";
pub const GLOBAL_FRAG_CACHE_MASK: &str = "FRAG_CACHE_MASK";
/// Per-CPU fragment cache slots: as the door's.
pub const MAP_FRAG_CACHE: &str = "FRAG_CACHE";
pub const FRAG_CACHE_SLOTS: u32 = 1 << 12;
pub const FRAG_CACHE_MIN_SLOTS: u32 = 1 << 9;
pub const FRAG_CACHE_BUDGET: u64 = 1 << 20;

/// Slots per CPU of a per-CPU array of `value_size`-byte values: the most
/// (a power of two, `min` to `max`) that keep all `cpus` within `budget`
/// bytes. Per-CPU memory grows with the CPUs, and a 192-CPU server's DOOR
/// took 151 MB at the 2-CPU size; the door and the cache work with fewer
/// slots (a collision costs a lookup, never a verdict).
pub const fn per_cpu_slots(cpus: u32, value_size: u32, budget: u64, min: u32, max: u32) -> u32 {
    let cpus = if cpus == 0 { 1 } else { cpus as u64 };
    let fit = budget / (cpus * value_size as u64);
    let mut slots = max;
    while slots > min && slots as u64 > fit {
        slots /= 2;
    }
    slots
}

/// A slot of the limiter table: a source (its masked address as
/// [`crate::packet::Packet`] words, and [`crate::limiter::Source::tag`]; 0
/// for an empty slot) and its state. One cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSlot {
    pub addr: [u64; 2],
    pub tag: u64,
    pub state: SourceState,
}
const _: () = assert!(size_of::<SourceSlot>() == 64);

/// Slots of a limiter table for `table_size` sources: a power of two, so
/// that a hash picks a set with a mask.
pub const fn source_slots(table_size: u32) -> u32 {
    table_size.next_power_of_two()
}

/// How long a source must go without a refusal before its time over the
/// limit starts again from zero (and a ban needs a new `after`).
pub const OVER_BREAK_NS: u64 = 1_000_000_000;

/// One datagram, for remembering that its first fragment was dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FragKey>() == 40);

/// An outstanding request as the reply to it will look: the peer it went
/// to and the local port it left from. A request to a multicast or
/// broadcast group is recorded with a zero `peer` (any device may answer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReplyKey {
    /// The peer's address as two words holding its network-order bytes in
    /// memory order, like `packet::Packet`'s: copied in two instructions.
    pub peer: [u64; 2],
    pub family: u8,
    pub _pad: u8,
    pub peer_port: u16,
    pub local_port: u16,
    // A u16, not [u8; 2]: an array field makes building a key a memset.
    pub _pad2: u16,
}
const _: () = assert!(size_of::<ReplyKey>() == 24);

/// What is left of a request's reply budget, shared by all CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyState {
    /// CLOCK_MONOTONIC (coarse) ns after which no reply is expected.
    pub expires: u64,
    /// Signed counts kept in u64 (spent with atomic adds).
    pub packets_left: u64,
    pub bytes_left: u64,
}
const _: () = assert!(size_of::<ReplyState>() == 24);

/// Until when (ns, coarse monotonic) requests sent from a local port may be
/// answered: any request, and one sent to a group.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalPort {
    /// Covers every request, those to a group included, so it is never
    /// before `group_until`: a port past it has no request open at all
    /// (what the early verdict reads).
    pub until: u64,
    pub group_until: u64,
}
const _: () = assert!(size_of::<LocalPort>() == 16);

/// How much a request to a guarded port may receive, and for how long.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardPort {
    pub packets: u32,
    /// UDP payload bytes; 0 = no byte budget.
    pub bytes: u32,
    pub expiry_ms: u32,
    /// Expiry of a request sent to a multicast or broadcast group.
    pub multicast_expiry_ms: u32,
    /// Replies to a request that subscribes to notifications (CoAP
    /// Observe: [`crate::shapes::subscribes`]), counted without a byte
    /// budget; 0 = such requests get the plain budget.
    pub observe_packets: u32,
    pub observe_expiry_ms: u32,
}
const _: () = assert!(size_of::<GuardPort>() == 24);

pub const META_SOURCE_LEN: usize = 256;

/// [`Meta::attach_mode`]: not known (a generation written before it was kept).
pub const ATTACH_UNKNOWN: u32 = 0;
/// [`Meta::attach_mode`]: in the driver (native XDP).
pub const ATTACH_NATIVE: u32 = 1;
/// [`Meta::attach_mode`]: generic (skb) mode, which every interface has.
pub const ATTACH_GENERIC: u32 = 2;

/// [`Meta::git_state`]: the rule file is not in a git work tree.
pub const GIT_NONE: u32 = 0;
/// [`Meta::git_state`]: the rule file is committed as it was loaded.
pub const GIT_CLEAN: u32 = 1;
/// [`Meta::git_state`]: the rule file differs from the commit.
pub const GIT_MODIFIED: u32 = 2;

/// Which rule set a generation of the program enforces, written by the
/// controller into that generation's maps, so that a restarted controller or
/// a second operator sees exactly which rules run.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// SHA-256 of the rule file's bytes and of the list files it reads.
    pub digest: [u8; 32],
    pub loaded_at_unix: u64,
    /// One of the `ATTACH_*` values.
    pub attach_mode: u32,
    pub rule_count: u32,
    pub generation: u32,
    /// One of the `GIT_*` values.
    pub git_state: u32,
    /// Commit (hex) of the work tree holding the rule file.
    pub git_commit: [u8; 40],
    /// Rule file path, NUL-padded, truncated if longer.
    pub source: [u8; META_SOURCE_LEN],
    /// Adaptive blocks `serve` added to the file's rules (not counted in
    /// `rule_count`).
    pub adaptive_blocks: u32,
    pub _pad_adaptive: u32,
}
const _: () = assert!(size_of::<Meta>() == 360);

impl Default for Meta {
    fn default() -> Self {
        Meta {
            digest: [0; 32],
            loaded_at_unix: 0,
            attach_mode: 0,
            rule_count: 0,
            generation: 0,
            git_state: 0,
            git_commit: [0; 40],
            source: [0; META_SOURCE_LEN],
            adaptive_blocks: 0,
            _pad_adaptive: 0,
        }
    }
}

/// Maps whose contents outlive a reload: counters, limiter and ban state,
/// fragment memory. A new program generation reuses their pins; every other
/// map belongs to one generation and is built anew with each rule set.
pub const STATE_MAPS: [&str; 18] = [
    MAP_COUNTERS,
    MAP_RULE_STATS,
    MAP_REPLIES,
    MAP_LOCAL_PORTS,
    MAP_NEVER_BAN_V4,
    MAP_NEVER_BAN_V6,
    MAP_SOURCES,
    MAP_SOURCE_TAGS,
    MAP_BANS,
    MAP_BAN_FLAG,
    MAP_BAN_HINTS,
    MAP_BAN_V4,
    MAP_BAN_V6,
    MAP_FRAGS,
    MAP_PEERS,
    // A capture runs on, across reloads, until its controller stops it.
    MAP_CAPTURE,
    MAP_CAPTURE_WINDOW,
    MAP_CAPTURE_RING,
];

/// The state maps of the host's own requests, one table per host (per pin
/// root): an interface loaded beside a running one adopts its maps of these
/// names when they have this build's shape, so that an answer may return by
/// another interface than its request left by (ECMP, a bond filtered on its
/// members). Each interface pins them in its own folder too.
pub const REQUEST_MAPS: [&str; 3] = [MAP_LOCAL_PORTS, MAP_REPLIES, MAP_PEERS];

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for CpuCounters {}
    unsafe impl aya::Pod for Rule {}
    unsafe impl aya::Pod for Chain {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Meta {}
    unsafe impl aya::Pod for Limit {}
    unsafe impl aya::Pod for SrcKey {}
    unsafe impl aya::Pod for SourceState {}
    unsafe impl aya::Pod for DoorSlot {}
    unsafe impl aya::Pod for SourceSlot {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for ReplyKey {}
    unsafe impl aya::Pod for ReplyState {}
    unsafe impl aya::Pod for GuardPort {}
    unsafe impl aya::Pod for LocalPort {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_slots_are_disjoint_and_in_range() {
        assert_eq!(port_slot(IPPROTO_UDP, 0), Some(0));
        assert_eq!(port_slot(IPPROTO_UDP, 65535), Some(65535));
        assert_eq!(port_slot(IPPROTO_TCP, 0), Some(65536));
        assert_eq!(port_slot(IPPROTO_TCP, 65535), Some(PORT_SLOTS - 1));
        assert_eq!(port_slot(IPPROTO_ICMP, 7), None);
    }

    #[test]
    fn reasons_are_indexed_in_order_with_unique_names() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32);
            for other in &Reason::ALL[i + 1..] {
                assert_ne!(r.name(), other.name());
            }
        }
    }
}
