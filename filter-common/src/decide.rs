//! Packet decisions over an already-parsed header summary. Nothing here reads
//! packet memory: the XDP program and the userspace reference model run the
//! same pipeline, each behind its own [`Env`] (kernel maps, or plain
//! collections).

use crate::abi::{
    ACTION_DROP, ACTION_LIMIT, BAN_UDP_ONLY, CONFIG_MONITOR, CONFIG_REPLY_GUARD, Chain, Config,
    DoorSlot, IPPROTO_TCP, IPPROTO_UDP, Limit, LocalPort, MATCH_MAX, MATCH_OFFSET_MAX, MAX_CHAIN,
    RULE_SPARES_GUARDED, Reason, ReplyKey, Rule, SrcKey,
};
use crate::frags::{Datagram, Seen, datagram, frag_value, later_fragment_reason};
use crate::guard::{ReplyCell, Spend, reply_key, spend};
use crate::limiter::{Source, SourceCell, admitted, gcra, over_limit, refused, source, src_key};
// Prefix masking lives with the limiter, which keys sources by it; the
// controller's prefix and never-ban lists and the hints' tests name it
// through `decide`.
pub use crate::limiter::mask;
// The decision's input, re-exported: the controller's tests and reference
// model name it through `decide`.
pub use crate::packet::{Addr, Frag, Packet, Parsed, addr_bytes, addr_v4, addr_words};
use crate::shapes::{is_pair, served_request};
use crate::shared::Shared64;

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
    /// What the fragment memory holds for the datagram at `now`.
    fn frag_seen(&self, d: &Datagram, now: u64) -> Seen;
    /// Remembers the datagram's first fragment's verdict
    /// ([`crate::frags::frag_value`]), where [`crate::frags::frag_replaces`]
    /// lets it.
    fn remember_frag(&mut self, d: &Datagram, value: u64, now: u64);
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
    /// Whether a TCP socket of this host holds the connection a segment
    /// belongs to (a full socket or a request socket for its four-tuple;
    /// a listener found instead is no connection). Asked only of a
    /// segment over its source's limit.
    fn established(&self, p: &Packet) -> bool;
    /// Whether the source must never be banned.
    fn never_ban(&self, key: &SrcKey) -> bool;
    /// Whether this host sent a request to a peer of this ban key recently
    /// enough ([`crate::PEER_MEMORY_NS`]) that it must not be banned: a
    /// forged stream of its address is dropped over the limit, but cannot
    /// cut the host off a peer it uses.
    fn asked(&self, key: &SrcKey, now: u64) -> bool;
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
    if p.frag == Frag::First {
        // Its later fragments carry no ports: remember the datagram's
        // verdict so they follow it, instead of reaching a reassembly that
        // can never complete. A pass is remembered too: it overrides what
        // a forged first fragment of the same key left.
        let now = clock.now(env);
        let value = frag_value(!reason.drops(), now.saturating_add(cfg.frag_track_ns));
        env.remember_frag(&datagram(p), value, now);
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
        && (until & BAN_UDP_ONLY == 0 || is_udp(p))
    {
        return Reason::BanDrop;
    }
    if p.frag == Frag::Later {
        let now = clock.now(env);
        let seen = env.frag_seen(&datagram(p), now);
        if seen == Seen::Dropped {
            return Reason::FragmentFollowDrop;
        }
        if !admit_source(env, p, cfg, cfg.default_limit, clock) {
            return Reason::RateLimitDrop;
        }
        return later_fragment_reason(cfg.flags, seen, || env.asked(&src_key(p, cfg, 0), now));
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
/// The SYN bit of [`Packet::tcp_flags`].
pub const TCP_SYN: u8 = 0x02;

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
/// (to that peer, or to a group), or reach a server on a guarded port or
/// on the other port of a pair ([`crate::shapes::PAIRS`]). Later fragments
/// have no ports: they follow their first.
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
    // a reflection aimed at the service otherwise. So too at the other
    // port of a pair (an SNMP manager's 162, from an agent's 161), with
    // the pair's shape. Other bound sockets, which may be a client's,
    // don't count: a reflection aimed at one is still a reflection.
    let served = env.guarded(p.dst_port) || is_pair(p.src_port, p.dst_port);
    if served && env.listening(p) {
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
/// that stays over for `ban_after_ns` is banned for `ban_for_ns`: from UDP
/// only if UDP earned the ban ([`BAN_UDP_ONLY`]), else from everything
/// (the source's other traffic, over its limit for another `ban_after_ns`,
/// then turns it into a ban of everything).
/// A TCP segment over the limit that belongs to a connection the host
/// holds passes, and its refusal is not recorded: a load balancer or CDN
/// carrying the site's traffic is neither limited nor banned by it, even
/// while its address is forged in a flood. The socket table is asked only
/// then, so packets under their limit pay nothing for it.
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
    let segment = is_segment(p);
    let verdict = match env.with_source(&src, |cell| charge(cell, &l, now, len, ban_after, segment))
    {
        Some(v) => v,
        None => match first_sighting(env, &src, now, len) {
            // A fresh state admits any first packet, banning nothing.
            None => return true,
            // The second: the state the first packet would have left, then
            // this one, as if the source had been entered at once.
            Some((then, then_len)) => env.insert_source(&src, |cell| {
                over_limit(cell, &l, then, then_len, ban_after);
                charge(cell, &l, now, len, ban_after, segment)
            }),
        },
    };
    let (ok, mut ban) = verdict;
    if !ok && segment {
        if env.established(p) {
            return true;
        }
        ban = env.with_source(&src, |cell| refused(cell, now, ban_after)) == Some(true);
    }
    if ban {
        let key = src_key(p, cfg, 0);
        if !env.never_ban(&key) && !env.asked(&key, now) {
            let scope = if is_udp(p) { BAN_UDP_ONLY } else { 0 };
            let until = now.saturating_add(cfg.ban_for_ns) & !BAN_UDP_ONLY;
            env.set_ban(&key, until | scope);
            if scope != 0 {
                // Its time over the limit starts again: the UDP flood that
                // earned the ban (forged, maybe) must not turn the next
                // refused segment or SYN of the real source into a ban of
                // everything. Only `after` over the limit without UDP can.
                env.with_source(&src, |cell| cell.over_since.store(0));
            }
        }
    }
    ok
}

/// [`over_limit`], except that a segment's refusal is left for the caller
/// to record (or not: it may belong to a connection).
#[inline(always)]
fn charge<C: Shared64>(
    cell: &SourceCell<C>,
    l: &Limit,
    now: u64,
    len: u64,
    ban_after: u64,
    segment: bool,
) -> (bool, bool) {
    if segment {
        (admitted(cell, l, now, len), false)
    } else {
        over_limit(cell, l, now, len, ban_after)
    }
}

/// A TCP segment that may belong to a connection: unfragmented, no SYN (a
/// SYN opens a connection, it cannot belong to one).
#[inline(always)]
pub fn is_segment(p: &Packet) -> bool {
    p.proto == IPPROTO_TCP && p.frag == Frag::None && p.tcp_flags & TCP_SYN == 0
}

/// UDP, or a fragment of a UDP datagram: what a UDP-earned ban drops.
#[inline(always)]
pub fn is_udp(p: &Packet) -> bool {
    p.proto == IPPROTO_UDP || (p.frag != Frag::None && p.frag_proto == IPPROTO_UDP)
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
}
