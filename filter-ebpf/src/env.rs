//! The decision's view of the kernel: maps, the clock, and the payload bytes
//! a rule compares. The decision itself lives in filter-common.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{BPF_TCP_ESTABLISHED, BPF_TCP_LISTEN, BPF_TCP_SYN_SENT},
    helpers::{bpf_sk_lookup_udp, bpf_skc_lookup_tcp},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use filter_common::{
    BAN_ANY, BAN_WIDE, CONFIG_HAS_ALLOW, CONFIG_HAS_DENY, CONFIG_REPLY_GUARD, Chain, Config,
    DoorSlot, FAMILY_V4, Limit, LocalPort, MATCH_MAX, MATCH_OFFSET_MAX, ReplyKey, Rule, SourceSlot,
    SourceState, SrcKey,
    decide::Env,
    frags::{Datagram, Seen},
    guard::ReplyCell,
    hints::prefix_bit,
    limiter::{Source, SourceCell},
    packet::{Packet, addr_words},
    port_slot,
    shared::Shared64 as _,
    v4lists::{LISTED_ALLOW, LISTED_DENY},
};

use crate::{
    frags::{frag_memory, remember_frag},
    maps::*,
    parse::{self, Frame, Hdr},
    shared::BpfU64,
    sockets,
    tries::{in_tries, lookup_v6},
};

impl KernelEnv<'_> {
    /// An IPv6 source: the hints' answer (may a listed prefix cover it?).
    /// An IPv4 source: the lists' own (LISTED_ALLOW, LISTED_DENY), exact.
    /// Read once for both lists.
    #[inline(always)]
    fn listed(&self, p: &Packet) -> u8 {
        match self.listed.get() {
            LISTED_UNKNOWN => {
                let found = if p.family == FAMILY_V4 {
                    v4_listed(&p.src)
                } else {
                    listed(p.family, &p.src) as u8 * (LISTED_ALLOW | LISTED_DENY)
                };
                self.listed.set(found);
                found
            }
            known => known,
        }
    }
}

/// Never an answer of [`KernelEnv::listed`].
const LISTED_UNKNOWN: u8 = 0xff;

pub struct KernelEnv<'a> {
    pub ctx: &'a XdpContext,
    /// In its map, read where it lies.
    pub config: &'a Config,
    /// Index of the rule that matched, for captures; CAPTURE_NO_RULE if none.
    pub rule: u32,
    /// Whether a listed prefix may cover the source (0, 1), or not yet
    /// asked.
    listed: core::cell::Cell<u8>,
}

impl<'a> KernelEnv<'a> {
    pub fn new(ctx: &'a XdpContext, config: &'a Config) -> Self {
        KernelEnv {
            ctx,
            config,
            rule: filter_common::CAPTURE_NO_RULE,
            listed: core::cell::Cell::new(LISTED_UNKNOWN),
        }
    }
}

impl Env for KernelEnv<'_> {
    type Cell = BpfU64;

    #[inline(always)]
    fn now(&self) -> u64 {
        // Coarse time (jiffies) is exact enough for limits measured in
        // packets per second; see clock.rs for how it is read.
        crate::clock::now()
    }

    // Empty tries are skipped on the controller's word (config flags), and
    // the tries of a source that no listed prefix covers on the hints' (one
    // array read), ban maps until anything was ever banned: the same answer
    // as a lookup, without its cost.
    #[inline(always)]
    fn allowed(&self, p: &Packet) -> bool {
        self.config.flags & CONFIG_HAS_ALLOW != 0
            && self.listed(p) & LISTED_ALLOW != 0
            && (p.family == FAMILY_V4 || lookup_v6(p, &ALLOW_V6))
    }

    #[inline(always)]
    fn denied(&self, p: &Packet) -> bool {
        self.config.flags & CONFIG_HAS_DENY != 0
            && self.listed(p) & LISTED_DENY != 0
            && (p.family == FAMILY_V4 || lookup_v6(p, &DENY_V6))
    }

    #[inline(always)]
    fn may_ban(&self) -> bool {
        // The shared flag, not this generation's copy (globals::ban_bits):
        // a ban that the previous generation set while this one loaded
        // must hold here from the first packet. The copy is for the early
        // verdict, where a stale one costs a counter, not a verdict.
        BAN_FLAG.get(0).is_some_and(|f| *f != 0)
    }

    #[inline(always)]
    fn ban_deadline(&self, key: &SrcKey) -> Option<u64> {
        // SAFETY: the value is a plain u64 copied out at once.
        if let Some(until) = unsafe { BANS.get(key).copied() } {
            return Some(until);
        }
        // Operator bans of whole prefixes.
        if key.family == FAMILY_V4 {
            let k = Key::new(32, [key.addr[0], key.addr[1], key.addr[2], key.addr[3]]);
            BAN_V4.get(k).copied()
        } else {
            BAN_V6.get(Key::new(128, key.addr)).copied()
        }
    }

    #[inline(always)]
    fn set_ban(&mut self, key: &SrcKey, until: u64) {
        // No log line here: one aya-log statement adds ~630 instructions to
        // the program (two of them tripled its size), and the controller
        // did not read the log; a ban shows in `filterctl top` (BANS) and
        // its drops in the `ban_drop` counter.
        if BANS.insert(key, until, 0).is_err() {
            return;
        }
        // The hint first, then the flag: the early verdict reads the flag
        // first. Plain read-modify-writes: two CPUs setting bits of one
        // word at once may lose one, and then that source's unasked
        // replies are dropped by the early verdict as unsolicited instead
        // of by the full path as banned: the same drop, another counter.
        let prefix = self.config.src_prefix(key.family);
        let wide = match prefix_bit(key.family, &addr_words(&key.addr), prefix) {
            Some(bit) => match BAN_HINTS.get_ptr_mut(bit / 64) {
                Some(w) => {
                    // SAFETY: a live map slot.
                    unsafe { *w |= 1 << (bit % 64) };
                    0
                }
                None => BAN_WIDE,
            },
            None => BAN_WIDE,
        };
        if let Some(flag) = BAN_FLAG.get_ptr_mut(0) {
            // SAFETY: a live map slot; writers only ever add bits.
            unsafe { *flag |= BAN_ANY | wide };
        }
        crate::globals::add_ban_bits(BAN_ANY | wide);
    }

    #[inline(always)]
    fn chain(&self, proto: u8, src_port: u16) -> Option<&Chain> {
        let index = *PORT_CHAINS.get(port_slot(proto, src_port)?)?;
        CHAINS.get(index)
    }

    #[inline(always)]
    fn rule(&self, index: u32) -> Option<&Rule> {
        RULES.get(index)
    }

    #[inline(always)]
    fn payload_head(&self, p: &Packet, offset: u16, len: u8) -> [u8; MATCH_MAX] {
        // Read back from map memory, the offset is unknown to the verifier:
        // restate the bound the parser proved.
        if p.payload_off > parse::MAX_L4_OFFSET + 60 {
            return [0; MATCH_MAX];
        }
        payload_head(self.ctx, p.payload_off, offset, len)
    }

    #[inline(always)]
    fn count_rule(&mut self, index: u32, slot: u16, bytes: u64) {
        self.rule = index;
        count_rule(slot, bytes);
    }

    #[inline(always)]
    fn limit(&self, id: u32) -> Option<Limit> {
        LIMITS.get(id).copied()
    }

    #[inline(always)]
    fn with_source<R>(
        &mut self,
        src: &Source,
        f: impl FnOnce(&SourceCell<BpfU64>) -> R,
    ) -> Option<R> {
        let set = source_set(src, self.config);
        // The fingerprints first: a source the table doesn't hold is told
        // apart in one cached word, without the two slots' cache lines.
        let tags = *SOURCE_TAGS.get(set / 2)?;
        let fp = src.fingerprint();
        for way in 0..2 {
            if (tags >> (16 * way)) & 0xffff != fp {
                continue;
            }
            let slot = SOURCES.get_ptr_mut(set + way)?;
            // SAFETY: a live slot of an array shared by all CPUs: the
            // state is only touched through SourceCell's atomics, the key
            // words read whole (a slot another CPU is rewriting may match
            // for one packet: see insert_source).
            unsafe {
                // Word by word: `==` on arrays becomes a byte-wise memcmp.
                if (*slot).tag == src.tag()
                    && (*slot).addr[0] == src.addr[0]
                    && (*slot).addr[1] == src.addr[1]
                {
                    let state = core::ptr::addr_of_mut!((*slot).state);
                    return Some(f(&*(state as *const SourceCell<BpfU64>)));
                }
            }
        }
        None
    }

    #[inline(always)]
    fn insert_source<R>(&mut self, src: &Source, f: impl FnOnce(&SourceCell<BpfU64>) -> R) -> R {
        // The state is decided on a local copy, then written to the slot of
        // the set that is empty or holds the source seen least recently
        // (the earlier theoretical arrival time). Plain stores: a CPU
        // reading the slot meanwhile may judge one packet by a mix of the
        // old and the new source's state, and two CPUs entering sources of
        // one set at once may leave one slot each or one slot mixed; the
        // limiter is approximate there, for a packet, never stuck (a lost
        // fingerprint makes its source enter again, in the other way).
        let mut fresh = MaybeUninit::<SourceState>::uninit();
        // SAFETY: SourceCell has SourceState's layout; every field is
        // stored before `f` reads it.
        let cell = unsafe { &*(fresh.as_mut_ptr() as *const SourceCell<BpfU64>) };
        // Cell by cell (volatile stores): a zeroed struct becomes a call to
        // a byte-wise memset subprogram.
        cell.pkt_tat.store(0);
        cell.byte_tat.store(0);
        cell.over_since.store(0);
        cell.dropped.store(0);
        cell.last_over.store(0);
        let r = f(cell);
        let set = source_set(src, self.config);
        let (Some(a), Some(b)) = (SOURCES.get_ptr_mut(set), SOURCES.get_ptr_mut(set + 1)) else {
            return r;
        };
        // SAFETY: live slots; every field of `fresh` was stored above.
        unsafe {
            let recent = |s: *mut SourceSlot| (*s).state.pkt_tat.max((*s).state.byte_tat);
            let (slot, way) = if (*a).tag == 0 || ((*b).tag != 0 && recent(a) <= recent(b)) {
                (a, 0)
            } else {
                (b, 1)
            };
            let state = fresh.assume_init_ref();
            (*slot).tag = 0;
            (*slot).addr = src.addr;
            (*slot).state.pkt_tat = state.pkt_tat;
            (*slot).state.byte_tat = state.byte_tat;
            (*slot).state.over_since = state.over_since;
            (*slot).state.dropped = state.dropped;
            (*slot).state.last_over = state.last_over;
            (*slot).tag = src.tag();
            if let Some(tags) = SOURCE_TAGS.get_ptr_mut(set / 2) {
                let shift = 16 * way;
                *tags = (*tags & !(0xffff << shift)) | src.fingerprint() << shift;
            }
        }
        r
    }

    #[inline(always)]
    fn door(&mut self, hash: u64) -> Option<&mut DoorSlot> {
        let ptr = DOOR.get_ptr_mut(hash as u32 & crate::globals::door_mask())?;
        // SAFETY: this CPU's slot of a per-CPU array, used by this run only.
        Some(unsafe { &mut *ptr })
    }

    #[inline(always)]
    fn with_aggregate<R>(&mut self, rule: u32, f: impl FnOnce(&BpfU64) -> R) -> Option<R> {
        let ptr = AGGREGATE.get_ptr_mut(rule)?;
        // SAFETY: BpfU64 is a transparent u64; the slot is shared by all
        // CPUs, so it is only touched atomically.
        Some(f(unsafe { &*(ptr as *const BpfU64) }))
    }

    #[inline(always)]
    fn frag_seen(&self, d: &Datagram, now: u64) -> Seen {
        frag_memory(d, now)
    }

    #[inline(always)]
    fn remember_frag(&mut self, d: &Datagram, value: u64, now: u64) {
        remember_frag(d, value, now)
    }

    #[inline(always)]
    fn guarded(&self, src_port: u16) -> bool {
        guarded(self.config, src_port)
    }

    #[inline(always)]
    fn local_port(&self, local_port: u16) -> LocalPort {
        LOCAL_PORTS
            .get(local_port as u32)
            .copied()
            .unwrap_or_default()
    }

    #[inline(always)]
    fn with_reply<R>(
        &mut self,
        key: &ReplyKey,
        f: impl FnOnce(&ReplyCell<BpfU64>) -> R,
    ) -> Option<R> {
        let ptr = REPLIES.get_ptr_mut(key)?;
        // SAFETY: ReplyCell has ReplyState's layout; the value stays valid
        // for the program's run (RCU) and all CPUs touch it atomically.
        Some(f(unsafe { &*(ptr as *const ReplyCell<BpfU64>) }))
    }

    #[inline(always)]
    fn listening(&self, p: &Packet) -> bool {
        // Asked only for UDP from a guarded port that answers no request:
        // the socket table is the truth about servers, at any moment.
        sockets::found(self.ctx, p, bpf_sk_lookup_udp, |_| true)
    }

    #[inline(always)]
    fn connecting(&self, p: &Packet) -> bool {
        // Asked only for a SYN-ACK: the socket of a connection this host
        // opens, found by its four-tuple (a listener found instead is no
        // connection: a SYN-ACK never answers one).
        sockets::found(self.ctx, p, bpf_skc_lookup_tcp, |state| {
            state == BPF_TCP_SYN_SENT || state == BPF_TCP_ESTABLISHED
        })
    }

    #[inline(always)]
    fn established(&self, p: &Packet) -> bool {
        // Asked only for a segment over its source's limit: the socket of
        // its connection, or the request socket of one being accepted
        // (skc lookups return both). The listener a lookup falls back to
        // is no connection: a forged ACK to a server port finds it.
        sockets::found(self.ctx, p, bpf_skc_lookup_tcp, |state| {
            state != BPF_TCP_LISTEN
        })
    }

    #[inline(always)]
    fn never_ban(&self, key: &SrcKey) -> bool {
        // Looked up only when a ban is about to be set: rare, no flag needed.
        in_tries(key.family, &key.addr, &NEVER_BAN_V4, &NEVER_BAN_V6)
    }

    fn asked(&self, key: &SrcKey, now: u64) -> bool {
        // SAFETY: the value is copied out at once. Rare, as never_ban.
        unsafe { PEERS.get(key) }.is_some_and(|until| *until > now)
    }
}

/// Whether the reply guard is on and guards `port` (in host order).
#[inline(always)]
pub fn guarded(config: &Config, port: u16) -> bool {
    config.flags & CONFIG_REPLY_GUARD != 0 && crate::globals::guarded_wire(port.to_be())
}

/// The first slot of the source's set in the limiter table.
#[inline(always)]
fn source_set(src: &Source, config: &Config) -> u32 {
    (src.hash() >> 32) as u32 & config.sources_mask & !1
}

/// The payload bytes a rule compares; bytes past the frame read as zero and
/// `rule_matches` checks the payload really holds them. Near the end of the
/// frame the four bytes are read ending at the frame's end and shifted, so
/// that every read stays a bounds-checked four-byte read.
#[inline(always)]
pub fn payload_head(ctx: &impl Frame, payload_off: usize, offset: u16, len: u8) -> [u8; MATCH_MAX] {
    if len == 0 || offset > MATCH_OFFSET_MAX {
        return [0; MATCH_MAX];
    }
    let start = payload_off + offset as usize;
    if let Some(h) = Hdr::<MATCH_MAX>::at(ctx, start) {
        return h.raw32::<0>().to_ne_bytes();
    }
    let frame_len = ctx.data_end() - ctx.data();
    let shift = start.wrapping_sub(frame_len.saturating_sub(MATCH_MAX));
    let mut head = [0u8; MATCH_MAX];
    if shift == 0 || shift >= MATCH_MAX || start < shift {
        return head;
    }
    // Derived from the bounded `start`, not from the frame length, so the
    // verifier knows its range.
    if let Some(tail) = Hdr::<MATCH_MAX>::at(ctx, start - shift) {
        // Shift in a register: indexing the array by `shift` would be a
        // variable stack offset, which the verifier refuses.
        head = (tail.be32::<0>() << (8 * shift as u32)).to_be_bytes();
    }
    head
}
