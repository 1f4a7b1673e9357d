//! Packet decisions over an already-parsed header summary. Nothing here reads
//! packet memory: the XDP program and the userspace reference model run the
//! same pipeline, each behind its own [`Env`] (kernel maps, or plain
//! collections).

use crate::abi::{
    ACTION_DROP, ACTION_LIMIT, CONFIG_FRAGMENT_DROP, CONFIG_MONITOR, CONFIG_REPLY_GUARD, Chain,
    Config, DoorSlot, FragKey, IPPROTO_TCP, IPPROTO_UDP, Limit, LocalPort, MATCH_MAX,
    MATCH_OFFSET_MAX, MAX_CHAIN, OVER_BREAK_NS, RULE_SPARES_GUARDED, Reason, ReplyKey, Rule,
    SrcKey,
};
use crate::guard::{ReplyCell, Spend, reply_key, spend};
// The decision's input, re-exported: the controller's tests and reference
// model name it through `decide`.
pub use crate::packet::{Addr, Frag, Packet, Parsed, addr_bytes, addr_v4, addr_words};
use crate::shapes::served_request;
use crate::shared::Shared64;

/// Per-source limiter state as the CPUs share it: [`crate::SourceState`]
/// seen through [`Shared64`] cells (same layout when `C` is a u64 wrapper).
#[repr(C)]
pub struct SourceCell<C> {
    pub pkt_tat: C,
    pub byte_tat: C,
    pub over_since: C,
    pub dropped: C,
    pub last_over: C,
}

/// What the decision needs from its surroundings.
pub trait Env {
    /// How this environment shares a u64 between CPUs.
    type Cell: Shared64;
    /// Monotonic time in ns (coarse is enough: limits are per second).
    fn now(&self) -> u64;
    fn allowed(&self, p: &Packet) -> bool;
    fn denied(&self, p: &Packet) -> bool;
    /// Whether any ban can exist; when not, the ban lookup is skipped.
    fn may_ban(&self) -> bool {
        true
    }
    fn ban_deadline(&self, key: &SrcKey) -> Option<u64>;
    fn set_ban(&mut self, key: &SrcKey, until: u64);
    fn chain(&self, proto: u8, src_port: u16) -> Option<&Chain>;
    fn rule(&self, index: u32) -> Option<&Rule>;
    /// Payload bytes at `offset`, as in [`rule_matches`].
    fn payload_head(&self, p: &Packet, offset: u16, len: u8) -> [u8; MATCH_MAX];
    /// A hit of rule `index`, counted in its counter slot.
    fn count_rule(&mut self, index: u32, slot: u16, bytes: u64);
    fn limit(&self, id: u32) -> Option<Limit>;
    /// Runs `f` on the source's shared state, if the limiter holds it.
    fn with_source<R>(
        &mut self,
        src: &Source,
        f: impl FnOnce(&SourceCell<Self::Cell>) -> R,
    ) -> Option<R>;
    /// Enters the source in the limiter with the state `f` leaves in a
    /// fresh cell (if another CPU entered it meanwhile, that entry stays).
    fn insert_source<R>(&mut self, src: &Source, f: impl FnOnce(&SourceCell<Self::Cell>) -> R)
    -> R;
    /// The doorkeeper's slot for a source hash (this CPU's).
    fn door(&mut self, hash: u64) -> Option<&mut DoorSlot>;
    /// Runs `f` on a rule's aggregate theoretical arrival time.
    fn with_aggregate<R>(&mut self, rule: u32, f: impl FnOnce(&Self::Cell) -> R) -> Option<R>;
    fn frag_dropped(&self, d: &Datagram, now: u64) -> bool;
    fn remember_frag_drop(&mut self, d: &Datagram, until: u64);
    /// Whether the reply guard is on and `src_port` is a guarded port.
    fn guarded(&self, src_port: u16) -> bool;
    /// Until when requests sent from `local_port` may be answered.
    fn local_port(&self, local_port: u16) -> LocalPort;
    /// Runs `f` on the tracked request `key`, if there is one.
    fn with_reply<R>(
        &mut self,
        key: &ReplyKey,
        f: impl FnOnce(&ReplyCell<Self::Cell>) -> R,
    ) -> Option<R>;
    /// Whether a socket on this host receives the packet as a request (a
    /// server bound to its destination port).
    fn listening(&self, p: &Packet) -> bool;
    /// Whether a TCP connection of this host to the packet's source is
    /// being opened or open (a SYN_SENT or ESTABLISHED socket).
    fn connecting(&self, p: &Packet) -> bool;
    /// Whether the source must never be banned.
    fn never_ban(&self, key: &SrcKey) -> bool;
}

/// ICMPv6 router and neighbour solicitations and advertisements, and
/// redirects (types 133 to 137), unfragmented.
#[inline(always)]
pub fn is_neighbour_discovery(p: &Packet) -> bool {
    p.family == crate::abi::FAMILY_V6
        && p.proto == crate::abi::IPPROTO_ICMPV6
        && p.frag == Frag::None
        && (133..=137).contains(&p.icmp_type)
}

/// The whole decision, in the documented order: allow, deny, ban, (later
/// fragments: follow-drop, per-source limit, fragment policy), rules,
/// per-source limit, aggregate limit, pass. `cfg` is borrowed, not asked
/// of `env`: the kernel reads it where it lies in its map instead of
/// copying 40 bytes per packet.
#[inline(always)]
pub fn decide<E: Env>(env: &mut E, cfg: &Config, parsed: Parsed, p: &Packet) -> Reason {
    match parsed {
        Parsed::NonIp => return Reason::NonIp,
        Parsed::Malformed => return Reason::Malformed,
        Parsed::Ip => {}
    }
    if is_neighbour_discovery(p) {
        // IPv6's ARP: filtering it cuts the host off its own link.
        return Reason::NonIp;
    }
    if env.allowed(p) {
        return Reason::AllowPass;
    }
    let mut clock = Clock(0);
    let reason = decide_ip(env, p, cfg, &mut clock);
    if reason.drops() && p.frag == Frag::First {
        // Its later fragments carry no ports: remember the datagram so
        // they follow it, instead of reaching a reassembly that can never
        // complete.
        let until = clock.now(env).saturating_add(cfg.frag_track_ns);
        env.remember_frag_drop(&datagram(p), until);
    }
    reason
}

/// The clock read at most once per packet, and only by steps that need it.
/// 0 until read (the monotonic clock is past 0 once the system runs): an
/// `Option` leaves its value undefined while None, and LLVM may then spill
/// that undefined register, which the verifier refuses to load.
struct Clock(u64);

impl Clock {
    #[inline(always)]
    fn now<E: Env>(&mut self, env: &E) -> u64 {
        if self.0 == 0 {
            self.0 = env.now();
        }
        self.0
    }
}

#[inline(always)]
fn decide_ip<E: Env>(env: &mut E, p: &Packet, cfg: &Config, clock: &mut Clock) -> Reason {
    if env.denied(p) {
        return Reason::DenyDrop;
    }
    if env.may_ban()
        && let Some(until) = env.ban_deadline(&src_key(p, cfg, 0))
        && clock.now(env) < until
    {
        return Reason::BanDrop;
    }
    if p.frag == Frag::Later {
        if env.frag_dropped(&datagram(p), clock.now(env)) {
            return Reason::FragmentFollowDrop;
        }
        if !admit_source(env, p, cfg, cfg.default_limit, clock) {
            return Reason::RateLimitDrop;
        }
        return later_fragment_reason(cfg.flags);
    }
    if is_unasked_syn_ack(env, p, cfg) {
        return Reason::UnsolicitedReply;
    }
    let (solicited, spared) = match reply_guard(env, p, clock) {
        Guard::Drop(reason) => return reason,
        Guard::Solicited => (true, true),
        Guard::Served => (false, true),
        Guard::Other => (false, false),
    };
    let mut limit = cfg.default_limit;
    let mut aggregate = None;
    if let Some(hit) = match_rule(env, p, spared) {
        env.count_rule(hit.index, hit.slot, p.frame_len);
        match hit.action {
            ACTION_DROP => return Reason::RuleDrop,
            ACTION_LIMIT => {
                limit = hit.limit as u32;
                if hit.agg_interval_ns != 0 {
                    aggregate = Some((hit.index, hit.agg_interval_ns, hit.agg_tolerance_ns));
                }
            }
            _ => return Reason::RulePass,
        }
    }
    // A reply the host asked for was held to its request's budget instead:
    // a forged stream of the peer's address can't spend it.
    if !solicited && !admit_source(env, p, cfg, limit, clock) {
        return Reason::RateLimitDrop;
    }
    if let Some((index, interval, tolerance)) = aggregate {
        let now = clock.now(env);
        let ok = env.with_aggregate(index, |tat| gcra(tat, now, interval, tolerance));
        if ok == Some(false) {
            return Reason::AggregateDrop;
        }
    }
    if solicited {
        Reason::SolicitedReply
    } else {
        Reason::Pass
    }
}

/// TCP's reflection: spoofed SYNs to thousands of servers, whose SYN-ACKs
/// flood the victim and would each draw a RST from it. A SYN-ACK answers
/// only a connection this host is opening; with the reply guard on, any
/// other goes before the kernel answers it.
#[inline(always)]
fn is_unasked_syn_ack<E: Env>(env: &E, p: &Packet, cfg: &Config) -> bool {
    p.proto == IPPROTO_TCP
        && p.tcp_flags & TCP_SYN_ACK == TCP_SYN_ACK
        && cfg.flags & CONFIG_REPLY_GUARD != 0
        && !env.connecting(p)
}

/// The SYN and ACK bits of [`Packet::tcp_flags`].
pub const TCP_SYN_ACK: u8 = 0x12;

/// What the reply guard makes of a packet.
enum Guard {
    /// Not from a guarded port.
    Other,
    /// A request to a server of a guarded protocol, from its own port and
    /// with a request's shape.
    Served,
    /// Answers a tracked request, within its budget.
    Solicited,
    Drop(Reason),
}

/// UDP from a guarded source port must answer a request this host sent
/// (to that peer, or to a group), or reach a server on a guarded port. Later fragments have no ports: they follow their first.
#[inline(always)]
fn reply_guard<E: Env>(env: &mut E, p: &Packet, clock: &mut Clock) -> Guard {
    if p.proto != IPPROTO_UDP || !env.guarded(p.src_port) {
        return Guard::Other;
    }
    let now = clock.now(env);
    let bytes = p.payload_len as u64;
    // A reflection flood sprays the host's ports; a request is open on few
    // of them. One array read rules out the rest without a hash lookup.
    let open = env.local_port(p.dst_port);
    for (group, until) in [(false, open.until), (true, open.group_until)] {
        if now >= until {
            continue;
        }
        match env.with_reply(&reply_key(p, group), |c| spend(c, now, bytes)) {
            Some(Spend::Ok) => return Guard::Solicited,
            Some(Spend::OverBudget) => return Guard::Drop(Reason::ReplyOverBudget),
            Some(Spend::Expired) | None => {}
        }
    }
    // To a server on a guarded port: a request of its protocol (NTP
    // symmetric peers and clients using port 123, DNS servers asking from
    // port 53) if it comes from the same port and has a request's shape;
    // a reflection aimed at the service otherwise. Other bound sockets,
    // which may be a client's, don't count: a reflection aimed at one is
    // still a reflection.
    if env.guarded(p.dst_port) && env.listening(p) {
        let head = |offset: u16| env.payload_head(p, offset, MATCH_MAX as u8);
        return match served_request(p.src_port, p.dst_port, head) {
            Some(true) => Guard::Served,
            // A protocol whose requests and replies look alike: passed to
            // its server as before, but an adaptive block still holds it.
            None => Guard::Other,
            Some(false) => Guard::Drop(Reason::ReflectedToService),
        };
    }
    Guard::Drop(Reason::UnsolicitedReply)
}

/// What a matched rule asks for (copied out: the rule itself stays in its
/// map, the eBPF stack is small).
struct Hit {
    index: u32,
    slot: u16,
    action: u8,
    limit: u8,
    agg_interval_ns: u64,
    agg_tolerance_ns: u64,
}

/// The first rule of the packet's chain that matches: at most MAX_CHAIN
/// candidates, whatever the size of the rule set.
#[inline(always)]
fn match_rule<E: Env>(env: &E, p: &Packet, spared: bool) -> Option<Hit> {
    let chain = env.chain(p.proto, p.src_port)?;
    for i in 0..MAX_CHAIN {
        if i >= chain.len as usize {
            break;
        }
        let index = chain.rules[i] as u32;
        let rule = env.rule(index)?;
        if spared && rule.flags & RULE_SPARES_GUARDED != 0 {
            continue;
        }
        let head = env.payload_head(p, rule.match_offset, rule.match_len);
        if rule_matches(rule, p.dst_port, p.payload_len, &head) {
            return Some(Hit {
                index,
                slot: rule.counter_slot,
                action: rule.action,
                limit: rule.limit,
                agg_interval_ns: rule.agg_interval_ns,
                agg_tolerance_ns: rule.agg_tolerance_ns,
            });
        }
    }
    None
}

/// Charges the packet to its source under `limit`; false if over. A source
/// that stays over for `ban_after_ns` is banned for `ban_for_ns`.
#[inline(always)]
fn admit_source<E: Env>(
    env: &mut E,
    p: &Packet,
    cfg: &Config,
    limit: u32,
    clock: &mut Clock,
) -> bool {
    if limit == 0 {
        return true;
    }
    let Some(l) = env.limit(limit) else {
        return true;
    };
    let now = clock.now(env);
    let src = source(p, cfg, limit as u8);
    let (len, ban_after) = (p.frame_len, cfg.ban_after_ns);
    let verdict = match env.with_source(&src, |cell| over_limit(cell, &l, now, len, ban_after)) {
        Some(v) => v,
        None => match first_sighting(env, &src, now, len) {
            // A fresh state admits any first packet, banning nothing.
            None => return true,
            // The second: the state the first packet would have left, then
            // this one, as if the source had been entered at once.
            Some((then, then_len)) => env.insert_source(&src, |cell| {
                over_limit(cell, &l, then, then_len, ban_after);
                over_limit(cell, &l, now, len, ban_after)
            }),
        },
    };
    let (ok, ban) = verdict;
    if ban && !env.never_ban(&src_key(p, cfg, 0)) {
        env.set_ban(&src_key(p, cfg, 0), now.saturating_add(cfg.ban_for_ns));
    }
    ok
}

/// The limiter's doorkeeper: a source enters the limiter on its second
/// packet, not its first. The first is remembered in a slot of this CPU
/// (a hash, a time, a length), which a later source of the same slot
/// overwrites; the second finds it and returns it. A spoofed flood whose
/// sources send one packet each then writes an array slot per packet
/// instead of entering the limiter table (and pushing real sources out of
/// their sets).
/// What it gives up: a packet whose earlier one was overwritten is judged
/// as a first one again, so a source can pass uncounted only while new
/// sources overwrite its slot (one in 32,768 per CPU) between every two of
/// its packets: a flood of millions of sources a second against a source
/// sending a few. Per CPU, a source may also enter one packet late on each.
#[inline(always)]
fn first_sighting<E: Env>(env: &mut E, src: &Source, now: u64, len: u64) -> Option<(u64, u64)> {
    let hash = src.hash();
    let slot = env.door(hash)?;
    if slot.hash == hash {
        return Some((slot.at, slot.frame_len));
    }
    *slot = DoorSlot {
        hash,
        at: now,
        frame_len: len,
    };
    None
}

/// A source as the limiter keys it: the address masked to the configured
/// prefix length, as words, and the limit it is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub addr: Addr,
    pub family: u8,
    pub limit: u8,
}

impl Source {
    /// As maps of bytes key it.
    #[inline(always)]
    pub fn key(&self) -> SrcKey {
        SrcKey {
            addr: addr_bytes(&self.addr),
            family: self.family,
            limit: self.limit,
            _pad: [0; 2],
        }
    }

    /// Family and limit as the limiter table's slots tag them (never 0, an
    /// empty slot's tag).
    #[inline(always)]
    pub fn tag(&self) -> u64 {
        1 << 63 | (self.family as u64) << 8 | self.limit as u64
    }

    /// The source a slot of the limiter table holds (None: an empty slot).
    pub fn of_slot(addr: Addr, tag: u64) -> Option<Source> {
        (tag != 0).then_some(Source {
            addr,
            family: (tag >> 8) as u8,
            limit: tag as u8,
        })
    }

    /// Never 0 (the doorkeeper's empty slot): its low bits pick the
    /// doorkeeper's slot, its high bits the limiter table's.
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        let h = (self.addr[0] ^ self.addr[1].rotate_left(31) ^ self.tag())
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h ^ h >> 29) | 1 << 63
    }

    /// The 16 bits the limiter's tags hold for the source: never 0.
    #[inline(always)]
    pub fn fingerprint(&self) -> u32 {
        (self.hash() >> 16) as u32 & 0xffff | 1
    }
}

/// The source as the limiter keys it.
#[inline(always)]
pub fn source(p: &Packet, cfg: &Config, limit: u8) -> Source {
    Source {
        addr: mask_words(&p.src, cfg.src_prefix(p.family)),
        family: p.family,
        limit,
    }
}

/// Charges a packet to a source and tracks how long it has stayed over its
/// limit: `(admitted, ban)`. A source over its limit still has one packet
/// admitted every interval, so an admission does not end its time over the
/// limit; only a break of [`OVER_BREAK_NS`] without a refusal does. Without
/// that, `ban_after` longer than one interval could never be reached.
#[inline(always)]
pub fn over_limit<C: Shared64>(
    cell: &SourceCell<C>,
    l: &Limit,
    now: u64,
    frame_len: u64,
    ban_after: u64,
) -> (bool, bool) {
    let since = cell.over_since.load();
    let broke = now.saturating_sub(cell.last_over.load()) >= OVER_BREAK_NS;
    if admit(cell, l, now, frame_len) {
        if since != 0 && broke {
            cell.over_since.store(0);
        }
        return (true, false);
    }
    cell.dropped.add(1);
    cell.last_over.store(now);
    if since == 0 || broke {
        cell.over_since.store(now);
        return (false, false);
    }
    (
        false,
        ban_after != 0 && now.saturating_sub(since) >= ban_after,
    )
}

/// Packet and bit rate of one source, both GCRA. A packet is charged to
/// both only when both admit it, so refusals cost nothing.
#[inline(always)]
pub fn admit<C: Shared64>(cell: &SourceCell<C>, l: &Limit, now: u64, frame_len: u64) -> bool {
    let pkt = l.pkt_interval_ns != 0;
    let bytes = l.byte_cost_ps != 0;
    let pkt_tat = if pkt { cell.pkt_tat.load() } else { 0 };
    let byte_tat = if bytes { cell.byte_tat.load() } else { 0 };
    if pkt && pkt_tat > now.saturating_add(l.pkt_tolerance_ns) {
        return false;
    }
    if bytes && byte_tat > now.saturating_add(l.byte_tolerance_ns) {
        return false;
    }
    if pkt {
        charge(&cell.pkt_tat, pkt_tat, now, l.pkt_interval_ns);
    }
    if bytes {
        charge(
            &cell.byte_tat,
            byte_tat,
            now,
            frame_len * l.byte_cost_ps / 1000,
        );
    }
    true
}

/// Generic cell rate algorithm on a theoretical arrival time shared by all
/// CPUs: admit, and charge `interval`, if `tat` is at most `tolerance`
/// ahead of now.
#[inline(always)]
pub fn gcra<C: Shared64>(tat: &C, now: u64, interval: u64, tolerance: u64) -> bool {
    let t = tat.load();
    if t > now.saturating_add(tolerance) {
        return false;
    }
    charge(tat, t, now, interval);
    true
}

/// Charges `cost` to a theoretical arrival time last read as `t`. Atomics
/// rather than a spin lock: no CPU ever waits, and the races left are small
/// and bounded: CPUs that test the same source in the same instant may all
/// pass before any charge lands (at most one extra packet per CPU, once, at
/// the edge of the burst), and two CPUs catching up an idle source may both
/// store their own charge (one of them lost). An idle source (`t` in the
/// past) starts again from now, so credit does not pile up beyond the
/// tolerance: one plain store, where a busy one needs the atomic add (a
/// locked instruction, several ns; most sources are idle between packets).
#[inline(always)]
fn charge<C: Shared64>(tat: &C, t: u64, now: u64, cost: u64) {
    if t < now {
        tat.store(now.saturating_add(cost));
    } else {
        tat.add(cost);
    }
}

/// The source as the limiter and ban list key it: address masked to the
/// configured prefix length.
#[inline(always)]
pub fn src_key(p: &Packet, cfg: &Config, limit: u8) -> SrcKey {
    source(p, cfg, limit).key()
}

/// `addr` with every bit past `prefix` cleared.
pub fn mask(addr: &[u8; 16], prefix: u8) -> [u8; 16] {
    addr_bytes(&mask_words(&addr_words(addr), prefix))
}

/// [`mask`] on the words of an address: the network-order mask of each
/// word converted to memory order (one byte swap on a little-endian CPU),
/// a handful of instructions instead of three branches per byte.
#[inline(always)]
pub fn mask_words(addr: &Addr, prefix: u8) -> Addr {
    let prefix = prefix as u32;
    [
        addr[0] & half_mask(prefix).to_be(),
        addr[1] & half_mask(prefix.saturating_sub(64)).to_be(),
    ]
}

/// The top `bits` bits of a u64 set (all of them from 64 on).
#[inline(always)]
fn half_mask(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else if bits >= 64 {
        u64::MAX
    } else {
        u64::MAX << (64 - bits)
    }
}

/// The datagram a fragment belongs to: what remembers that its first
/// fragment was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub family: u8,
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    /// The protocol every fragment names ([`Packet::frag_proto`]).
    pub proto: u8,
}

impl Datagram {
    /// As the shared fragment map keys it.
    #[inline(always)]
    pub fn key(&self) -> FragKey {
        FragKey {
            src: addr_bytes(&self.src),
            dst: addr_bytes(&self.dst),
            id: self.id,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }

    /// The same, as words: compared in five loads, and hashed.
    #[inline(always)]
    pub fn words(&self) -> [u64; 5] {
        [
            self.src[0],
            self.src[1],
            self.dst[0],
            self.dst[1],
            self.id as u64 | (self.proto as u64) << 32 | (self.family as u64) << 40,
        ]
    }
}

#[inline(always)]
pub fn datagram(p: &Packet) -> Datagram {
    Datagram {
        family: p.family,
        src: p.src,
        dst: p.dst,
        id: p.frag_id,
        proto: p.frag_proto,
    }
}

/// Whether `rule` matches a packet whose protocol and source port already
/// selected it. `head` holds the payload bytes at `rule.match_offset`, as many
/// as the frame has (up to [`MATCH_MAX`]); missing bytes are zero.
#[inline(always)]
pub fn rule_matches(rule: &Rule, dst_port: u16, payload_len: u16, head: &[u8; MATCH_MAX]) -> bool {
    if dst_port < rule.dst_port_lo || dst_port > rule.dst_port_hi {
        return false;
    }
    if payload_len < rule.len_lo || payload_len > rule.len_hi {
        return false;
    }
    let n = rule.match_len as usize;
    if n == 0 {
        return true;
    }
    // The payload must really hold the bytes compared, or a short packet
    // would match against zeros.
    if n > MATCH_MAX || (rule.match_offset as usize + n) > payload_len as usize {
        return false;
    }
    // The first n bytes, compared as one big-endian word rather than in a
    // loop over bytes.
    let first_n = u32::MAX << (8 * (MATCH_MAX - n) as u32);
    let mask = u32::from_be_bytes(rule.match_mask) & first_n;
    u32::from_be_bytes(*head) & mask == u32::from_be_bytes(rule.match_value) & first_n
}

/// Whether a rule's payload match can be evaluated at all: the controller
/// refuses rules outside these bounds.
pub const fn match_in_bounds(offset: u16, len: u8) -> bool {
    offset <= MATCH_OFFSET_MAX && len as usize <= MATCH_MAX
}

/// Reason for a non-first fragment that no earlier step decided.
#[inline(always)]
pub fn later_fragment_reason(config_flags: u32) -> Reason {
    if config_flags & CONFIG_FRAGMENT_DROP != 0 {
        Reason::FragmentDrop
    } else {
        Reason::FragmentPass
    }
}

/// What finally happens to a packet given its reason and the mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Drop,
    /// Would have been dropped; passed because the filter is in monitor mode.
    MonitoredPass,
}

#[inline(always)]
pub fn outcome(reason: Reason, config_flags: u32) -> Outcome {
    if !reason.drops() {
        Outcome::Pass
    } else if config_flags & CONFIG_MONITOR != 0 {
        Outcome::MonitoredPass
    } else {
        Outcome::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::ACTION_PASS;
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

    fn ntp_rule() -> Rule {
        Rule {
            dst_port_lo: 0,
            dst_port_hi: u16::MAX,
            len_lo: 0,
            len_hi: u16::MAX,
            action: ACTION_DROP,
            ..Rule::default()
        }
    }

    #[test]
    fn port_and_length_ranges_are_inclusive() {
        let rule = Rule {
            dst_port_lo: 1000,
            dst_port_hi: 2000,
            len_lo: 100,
            len_hi: 200,
            ..ntp_rule()
        };
        let h = [0; MATCH_MAX];
        assert!(rule_matches(&rule, 1000, 100, &h));
        assert!(rule_matches(&rule, 2000, 200, &h));
        assert!(!rule_matches(&rule, 999, 150, &h));
        assert!(!rule_matches(&rule, 2001, 150, &h));
        assert!(!rule_matches(&rule, 1500, 99, &h));
        assert!(!rule_matches(&rule, 1500, 201, &h));
    }

    #[test]
    fn payload_match_tells_ntp_modes_apart() {
        // NTP mode lives in the low 3 bits of the first byte: 4 server
        // (time reply), 6 control, 7 private (monlist).
        let mode4 = Rule {
            match_len: 1,
            match_mask: [0x07, 0, 0, 0],
            match_value: [0x04, 0, 0, 0],
            action: ACTION_PASS,
            ..ntp_rule()
        };
        assert!(rule_matches(&mode4, 123, 48, &[0x24, 0, 0, 0]));
        assert!(!rule_matches(&mode4, 123, 468, &[0x17, 0, 3, 0x2a]));
        assert!(!rule_matches(&mode4, 123, 468, &[0x16, 0, 0, 0]));
    }

    #[test]
    fn payload_match_needs_the_bytes_to_exist() {
        let rule = Rule {
            match_offset: 2,
            match_len: 2,
            match_mask: [0xff, 0xff, 0, 0],
            match_value: [0, 0, 0, 0],
            ..ntp_rule()
        };
        // Zeros would match, but a 3-byte payload has no bytes 2..4.
        assert!(!rule_matches(&rule, 1, 3, &[0; MATCH_MAX]));
        assert!(rule_matches(&rule, 1, 4, &[0; MATCH_MAX]));
    }

    #[test]
    fn match_bounds() {
        assert!(match_in_bounds(0, 4));
        assert!(match_in_bounds(MATCH_OFFSET_MAX, 1));
        assert!(!match_in_bounds(MATCH_OFFSET_MAX + 1, 1));
        assert!(!match_in_bounds(0, 5));
    }

    #[test]
    fn monitor_mode_passes_what_it_would_drop() {
        assert_eq!(outcome(Reason::RuleDrop, 0), Outcome::Drop);
        assert_eq!(
            outcome(Reason::RuleDrop, CONFIG_MONITOR),
            Outcome::MonitoredPass
        );
        assert_eq!(outcome(Reason::Pass, CONFIG_MONITOR), Outcome::Pass);
        assert_eq!(outcome(Reason::RulePass, 0), Outcome::Pass);
        assert_eq!(outcome(Reason::Malformed, 0), Outcome::Drop);
    }

    #[test]
    fn fragment_policy() {
        assert_eq!(later_fragment_reason(0), Reason::FragmentPass);
        assert_eq!(
            later_fragment_reason(CONFIG_FRAGMENT_DROP),
            Reason::FragmentDrop
        );
    }

    #[test]
    fn gcra_admits_the_burst_then_the_rate() {
        let tat = AtomicU64::new(0);
        let (interval, burst) = (1_000u64, 5u64);
        let tolerance = (burst - 1) * interval;
        let now = 1_000_000;
        let admitted = (0..20)
            .filter(|_| gcra(&tat, now, interval, tolerance))
            .count();
        assert_eq!(admitted as u64, burst, "a burst at one instant");
        // One second later at 10 packets per interval: exactly the rate
        // (plus the burst that refilled while idle... none: still in debt).
        let mut admitted = 0;
        for step in 0..1000u64 {
            let t = now + 10 * interval + step * interval / 10;
            admitted += (gcra(&tat, t, interval, tolerance)) as u64;
        }
        // 100 intervals elapsed: about 100 packets, never more than
        // 100 + burst.
        assert!((95..=100 + burst).contains(&admitted), "{admitted}");
    }

    #[test]
    fn gcra_refused_packets_cost_nothing() {
        let tat = AtomicU64::new(0);
        let now = 10_000;
        assert!(gcra(&tat, now, 100, 0));
        assert!(!gcra(&tat, now, 100, 0));
        assert!(!gcra(&tat, now, 100, 0));
        // Only the admitted packet was charged.
        assert!(gcra(&tat, now + 100, 100, 0));
    }

    #[test]
    fn idle_credit_is_capped_by_the_tolerance() {
        let tat = AtomicU64::new(5);
        let now = 1_000_000_000;
        let admitted = (0..100).filter(|_| gcra(&tat, now, 10, 30)).count();
        assert_eq!(admitted, 4);
    }

    #[test]
    fn a_refused_packet_is_charged_to_neither_rate() {
        let cell = SourceCell {
            pkt_tat: AtomicU64::new(0),
            byte_tat: AtomicU64::new(0),
            over_since: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_over: AtomicU64::new(0),
        };
        // 1000 pps, 8000 bit/s = 1000 bytes/s: 1 ms per byte.
        let l = Limit {
            pkt_interval_ns: 1_000_000,
            pkt_tolerance_ns: 10_000_000,
            byte_cost_ps: 1_000_000_000,
            byte_tolerance_ns: 0,
        };
        let now = 5_000_000_000;
        assert!(admit(&cell, &l, now, 1000));
        assert!(!admit(&cell, &l, now, 1000));
        // The refused packet was charged to neither rate.
        assert_eq!(cell.pkt_tat.load(Relaxed), now + 1_000_000);
        assert_eq!(cell.byte_tat.load(Relaxed), now + 1_000_000_000);
    }

    fn fresh_cell() -> SourceCell<AtomicU64> {
        SourceCell {
            pkt_tat: AtomicU64::new(0),
            byte_tat: AtomicU64::new(0),
            over_since: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_over: AtomicU64::new(0),
        }
    }

    /// Sends at `pps` for `secs` from `start` under the default profile's
    /// limit (20000 pps, burst 2000) with a 10 s ban delay; when the ban
    /// fires, in ns since `start`.
    fn ban_time(cell: &SourceCell<AtomicU64>, pps: u64, start: u64, secs: u64) -> Option<u64> {
        let l = Limit {
            pkt_interval_ns: 50_000,
            pkt_tolerance_ns: 1999 * 50_000,
            ..Limit::default()
        };
        let gap = 1_000_000_000 / pps;
        (0..pps * secs).map(|i| start + i * gap).find_map(|now| {
            let (_, ban) = over_limit(cell, &l, now, 100, 10_000_000_000);
            ban.then(|| now - start)
        })
    }

    #[test]
    fn a_source_that_stays_over_its_limit_is_banned_after_the_delay() {
        // 5x and 1.5x the limit: one packet in five (in 1.5) still gets
        // through, which must not count as a break.
        for pps in [100_000, 30_000] {
            let at = ban_time(&fresh_cell(), pps, 1_000_000_000, 15)
                .unwrap_or_else(|| panic!("{pps} pps for 15 s was never banned"));
            assert!(
                (10_000_000_000..10_200_000_000).contains(&at),
                "{pps} pps banned after {at} ns, not 10 s"
            );
        }
    }

    #[test]
    fn a_source_within_its_limit_is_never_banned() {
        assert_eq!(ban_time(&fresh_cell(), 19_000, 1_000_000_000, 15), None);
    }

    #[test]
    fn a_break_without_refusals_restarts_the_time_over_the_limit() {
        let cell = fresh_cell();
        let start = 1_000_000_000;
        // 8 s over, 2 s quiet, 8 s over again: never 10 s without a break.
        assert_eq!(ban_time(&cell, 100_000, start, 8), None);
        assert_eq!(ban_time(&cell, 100_000, start + 10_000_000_000, 8), None);
        // A third stretch, joined to the second without a break, bans.
        assert!(ban_time(&cell, 100_000, start + 18_000_000_000, 8).is_some());
    }

    #[test]
    fn masks_to_prefix() {
        let a = [0xff; 16];
        assert_eq!(mask(&a, 0), [0; 16]);
        assert_eq!(mask(&a, 128), a);
        let m = mask(&a, 20);
        assert_eq!(&m[..4], &[0xff, 0xff, 0xf0, 0]);
        let m = mask(&a, 64);
        assert_eq!(
            &m[..9],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]
        );
    }
}
