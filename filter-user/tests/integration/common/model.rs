//! The reference model: an independent parser built on etherparse's header
//! slices, applying the rules README.md states ("What the XDP program
//! parses"), feeding the same decision pipeline the kernel runs
//! (`filter_common::decide::decide`) through an `Env` of plain collections.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::AtomicU64,
};

use etherparse::{
    Ethernet2HeaderSlice, IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice,
    Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};
use filter_common::{
    Chain, Config, DOOR_SLOTS, DoorSlot, FAMILY_V4, FAMILY_V6, FragKey, GuardPort, Limit,
    LocalPort, MATCH_MAX, ReplyKey, ReplyState, Rule, SrcKey,
    decide::{Env, Frag, Packet, Parsed, addr_bytes, addr_v4, addr_words, decide},
    frags::{Datagram, FRAG_PASSED, Seen},
    guard::{ReplyCell, Request, is_group_mac, renew, request_entry},
    limiter::{Source, SourceCell},
    port_slot,
    shapes::subscribes,
};
use filterctl::rules::{Compiled, Prefix, RuleSet};

/// Spec limits (README.md).
const MAX_VLAN_TAGS: usize = 2;
const MAX_EXT_HEADERS: usize = 6;
const MAX_L4_OFFSET: usize = 1024;

/// Parses `frame` as the spec says; fills `p` for IP packets.
pub fn parse(frame: &[u8]) -> (Parsed, Packet) {
    let mut p = Packet::EMPTY;
    p.frame_len = frame.len() as u64;
    let parsed = parse_into(frame, &mut p);
    (parsed, p)
}

fn parse_into(frame: &[u8], p: &mut Packet) -> Parsed {
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
        return Parsed::Malformed;
    };
    let mut ethertype = eth.ether_type().0;
    let mut off = eth.slice().len();
    let is_vlan = |t: u16| t == 0x8100 || t == 0x88a8;
    let mut tags = 0;
    while is_vlan(ethertype) {
        if tags == MAX_VLAN_TAGS {
            // A third tag: what it carries stays unexamined.
            return Parsed::Malformed;
        }
        let Ok(tag) = SingleVlanHeaderSlice::from_slice(&frame[off..]) else {
            return Parsed::Malformed;
        };
        ethertype = tag.ether_type().0;
        off += tag.slice().len();
        tags += 1;
    }
    match ethertype {
        0x0800 => ipv4(frame, off, p),
        0x86dd => ipv6(frame, off, p),
        _ => Parsed::NonIp,
    }
}

fn ipv4(frame: &[u8], off: usize, p: &mut Packet) -> Parsed {
    let Ok(h) = Ipv4HeaderSlice::from_slice(&frame[off..]) else {
        return Parsed::Malformed;
    };
    let hdr_len = h.slice().len();
    let total = h.total_len() as usize;
    if total < hdr_len || off + total > frame.len() {
        return Parsed::Malformed;
    }
    p.family = FAMILY_V4;
    p.src = addr_v4(h.source());
    p.dst = addr_v4(h.destination());
    p.proto = h.protocol().0;
    p.frag_proto = p.proto;
    p.frag_id = h.identification() as u32;
    p.frag = if h.fragments_offset().value() != 0 {
        Frag::Later
    } else if h.more_fragments() {
        Frag::First
    } else {
        Frag::None
    };
    l4(frame, off + hdr_len, off + total, p)
}

fn ipv6(frame: &[u8], off: usize, p: &mut Packet) -> Parsed {
    let Ok(h) = Ipv6HeaderSlice::from_slice(&frame[off..]) else {
        return Parsed::Malformed;
    };
    let ip_end = off + 40 + h.payload_length() as usize;
    if ip_end > frame.len() {
        return Parsed::Malformed;
    }
    p.family = FAMILY_V6;
    p.src = addr_words(&h.source());
    p.dst = addr_words(&h.destination());
    let mut next = h.next_header().0;
    p.frag_proto = next;
    let mut cur = off + 40;
    let mut walked = 0;
    while matches!(next, 0 | 43 | 44 | 51 | 60) {
        if walked == MAX_EXT_HEADERS {
            return Parsed::Malformed;
        }
        walked += 1;
        let rest = &frame[cur..ip_end];
        let (len, following) = match next {
            44 => {
                let Ok(f) = Ipv6FragmentHeaderSlice::from_slice(rest) else {
                    return Parsed::Malformed;
                };
                p.frag_id = f.identification();
                p.frag_proto = f.next_header().0;
                // RFC 8200: a 13-bit offset over bits 15..3 of bytes 2..4,
                // the M flag in bit 0. etherparse 0.19's fragment_offset()
                // and more_fragments() read another bit layout (M in bit 7
                // of byte 3), which this test found: decode by the RFC.
                let field = u16::from_be_bytes([f.slice()[2], f.slice()[3]]);
                if field >> 3 != 0 {
                    p.frag = Frag::Later;
                } else if field & 1 != 0 {
                    p.frag = Frag::First;
                }
                (8, f.next_header().0)
            }
            51 => {
                // The length byte counts 4-byte units beyond the first two.
                if rest.len() < 8 || rest.len() < (rest[1] as usize + 2) * 4 {
                    return Parsed::Malformed;
                }
                match IpAuthHeaderSlice::from_slice(rest) {
                    Ok(a) => (a.slice().len(), a.next_header().0),
                    // etherparse refuses a zero-length ICV area; the spec
                    // only walks lengths, so read those two bytes as is.
                    Err(_) => ((rest[1] as usize + 2) * 4, rest[0]),
                }
            }
            _ => {
                let Ok(x) = Ipv6RawExtHeaderSlice::from_slice(rest) else {
                    return Parsed::Malformed;
                };
                (x.slice().len(), x.next_header().0)
            }
        };
        cur += len;
        next = following;
        if cur > MAX_L4_OFFSET {
            return Parsed::Malformed;
        }
        if p.frag == Frag::Later {
            break;
        }
    }
    p.proto = next;
    l4(frame, cur, ip_end, p)
}

fn l4(frame: &[u8], l4: usize, ip_end: usize, p: &mut Packet) -> Parsed {
    if p.frag == Frag::Later {
        return Parsed::Ip;
    }
    if l4 > MAX_L4_OFFSET {
        return Parsed::Malformed;
    }
    let body = &frame[l4..ip_end];
    match p.proto {
        17 => {
            let Ok(u) = UdpHeaderSlice::from_slice(body) else {
                return Parsed::Malformed;
            };
            let ulen = u.length() as usize;
            // A first fragment's UDP length covers the whole datagram.
            if ulen < 8 || (p.frag == Frag::None && ulen > body.len()) {
                return Parsed::Malformed;
            }
            p.src_port = u.source_port();
            p.dst_port = u.destination_port();
            p.payload_off = l4 + 8;
            p.payload_len = (ulen - 8) as u16;
        }
        6 => {
            let Ok(t) = TcpHeaderSlice::from_slice(body) else {
                return Parsed::Malformed;
            };
            let doff = t.data_offset() as usize * 4;
            p.src_port = t.source_port();
            p.dst_port = t.destination_port();
            p.tcp_flags = body[13];
            p.payload_off = l4 + doff;
            p.payload_len = (body.len() - doff) as u16;
        }
        1 | 58 => {
            if body.len() < 4 {
                return Parsed::Malformed;
            }
            p.icmp_type = body[0];
            p.payload_off = l4 + 4;
            p.payload_len = (body.len() - 4) as u16;
        }
        _ => {}
    }
    Parsed::Ip
}

/// The maps, as plain collections.
pub struct Model {
    config: Config,
    rules: Vec<Rule>,
    chains: Vec<Chain>,
    port_chains: HashMap<u32, u32>,
    limits: Vec<Limit>,
    allow: Vec<Prefix>,
    deny: Vec<Prefix>,
    bans: HashMap<SrcKey, u64>,
    sources: HashMap<SrcKey, SourceCell<AtomicU64>>,
    door: HashMap<u64, DoorSlot>,
    aggregate: HashMap<u32, AtomicU64>,
    frags: HashMap<FragKey, bool>,
    guard: HashMap<u16, GuardPort>,
    replies: HashMap<ReplyKey, ReplyCell<AtomicU64>>,
    local_ports: HashMap<u16, LocalPort>,
    never_ban: Vec<Prefix>,
    /// Peers asked (their ban keys) -> until when they are never banned.
    peers: HashMap<SrcKey, u64>,
    /// Destination ports where a server listens (the kernel asks its
    /// socket table; the model is told).
    pub listening: HashSet<u16>,
    /// TCP connections the host holds, as (peer address, peer port, local
    /// port): the kernel asks its socket table, the model is told.
    pub connections: HashSet<([u8; 16], u16, u16)>,
    pub rule_hits: Vec<u64>,
    /// The frame being decided.
    frame: Vec<u8>,
    now: u64,
}

impl Model {
    pub fn new(set: &RuleSet) -> Model {
        let Compiled {
            config,
            rules,
            chains,
            port_chains,
            limits,
            guard_ports,
            ..
        } = set.compile();
        Model {
            config,
            rules: rules.clone(),
            chains,
            port_chains: port_chains.into_iter().collect(),
            limits,
            allow: set.allow.clone(),
            deny: set.deny.clone(),
            bans: HashMap::new(),
            sources: HashMap::new(),
            door: HashMap::new(),
            aggregate: HashMap::new(),
            frags: HashMap::new(),
            guard: guard_ports.into_iter().collect(),
            replies: HashMap::new(),
            local_ports: HashMap::new(),
            never_ban: set.never_ban.clone(),
            peers: HashMap::new(),
            listening: HashSet::new(),
            connections: HashSet::new(),
            rule_hits: vec![0; rules.len()],
            frame: Vec::new(),
            now: 1_000_000_000,
        }
    }

    /// Sets the time (ns) the decisions that follow see.
    pub fn set_now(&mut self, ns: u64) {
        self.now = ns;
    }

    /// The reason the filter gives `frame`.
    pub fn decide(&mut self, frame: &[u8]) -> filter_common::Reason {
        self.frame.clear();
        self.frame.extend_from_slice(frame);
        let (parsed, p) = parse(frame);
        let cfg = self.config;
        decide(self, &cfg, parsed, &p)
    }

    /// What the egress program records for an outgoing `frame`.
    pub fn record_request(&mut self, frame: &[u8]) {
        let (parsed, p) = parse(frame);
        if parsed != Parsed::Ip || p.proto != 17 || p.frag == Frag::Later {
            return;
        }
        // A server's answer from a guarded port opens nothing.
        let head = |o: u16| {
            let mut w = [0u8; 4];
            for (i, b) in w.iter_mut().enumerate() {
                *b = frame
                    .get(p.payload_off + o as usize + i)
                    .copied()
                    .unwrap_or(0);
            }
            w
        };
        if self.guard.contains_key(&p.src_port)
            && filter_common::shapes::is_request(p.src_port, head) == Some(false)
        {
            return;
        }
        if let Some(port) = self.guard.get(&p.dst_port) {
            // The frame's destination MAC (its first byte's I/G bit) marks
            // a group request too: a subnet's broadcast address.
            let group_mac = is_group_mac(frame[0]);
            let observe = port.observe_packets != 0 && subscribes(p.dst_port, head);
            let kind = Request::of(&p, port, group_mac, observe);
            let (key, fresh) = request_entry(&p, port, self.now, kind);
            let s = match self.replies.get(&key) {
                Some(old) => renew(&state_of(old), fresh),
                None => fresh,
            };
            let open = self.local_ports.entry(p.src_port).or_default();
            open.until = open.until.max(s.expires);
            if kind == Request::Group {
                open.group_until = open.group_until.max(s.expires);
            }
            self.replies.insert(
                key,
                ReplyCell {
                    expires: AtomicU64::new(s.expires),
                    packets_left: AtomicU64::new(s.packets_left),
                    bytes_left: AtomicU64::new(s.bytes_left),
                },
            );
            let peer = filter_common::limiter::peer_key(&p, &self.config);
            self.peers
                .insert(peer, self.now + filter_common::PEER_MEMORY_NS);
        }
    }
}

/// What is left of a tracked request.
fn state_of(c: &ReplyCell<AtomicU64>) -> ReplyState {
    use std::sync::atomic::Ordering::Relaxed;
    ReplyState {
        expires: c.expires.load(Relaxed),
        packets_left: c.packets_left.load(Relaxed),
        bytes_left: c.bytes_left.load(Relaxed),
    }
}

fn in_list(list: &[Prefix], p: &Packet) -> bool {
    list.iter()
        .any(|x| x.contains(p.family, &addr_bytes(&p.src)))
}

impl Env for Model {
    type Cell = AtomicU64;

    fn now(&self) -> u64 {
        self.now
    }
    fn allowed(&self, p: &Packet) -> bool {
        in_list(&self.allow, p)
    }
    fn denied(&self, p: &Packet) -> bool {
        in_list(&self.deny, p)
    }
    fn ban_deadline(&self, key: &SrcKey) -> Option<u64> {
        self.bans.get(key).copied()
    }
    fn set_ban(&mut self, key: &SrcKey, until: u64) {
        self.bans.insert(*key, until);
    }
    fn chain(&self, proto: u8, src_port: u16) -> Option<&Chain> {
        let slot = port_slot(proto, src_port)?;
        self.chains
            .get(*self.port_chains.get(&slot).unwrap_or(&0) as usize)
    }
    fn rule(&self, index: u32) -> Option<&Rule> {
        self.rules.get(index as usize)
    }
    fn payload_head(&self, p: &Packet, offset: u16, len: u8) -> [u8; MATCH_MAX] {
        let mut head = [0u8; MATCH_MAX];
        if len == 0 {
            return head;
        }
        let start = p.payload_off + offset as usize;
        for (i, b) in head.iter_mut().enumerate() {
            *b = self.frame.get(start + i).copied().unwrap_or(0);
        }
        head
    }
    fn count_rule(&mut self, index: u32, _slot: u16, _bytes: u64) {
        self.rule_hits[index as usize] += 1;
    }
    fn limit(&self, id: u32) -> Option<Limit> {
        self.limits.get(id as usize).copied()
    }
    fn with_source<R>(
        &mut self,
        src: &Source,
        f: impl FnOnce(&SourceCell<AtomicU64>) -> R,
    ) -> Option<R> {
        self.sources.get(&src.key()).map(f)
    }
    fn insert_source<R>(&mut self, src: &Source, f: impl FnOnce(&SourceCell<AtomicU64>) -> R) -> R {
        let cell = self.sources.entry(src.key()).or_insert_with(|| SourceCell {
            pkt_tat: AtomicU64::new(0),
            byte_tat: AtomicU64::new(0),
            over_since: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_over: AtomicU64::new(0),
        });
        f(cell)
    }
    fn door(&mut self, hash: u64) -> Option<&mut DoorSlot> {
        // One CPU's slots.
        Some(self.door.entry(hash & (DOOR_SLOTS as u64 - 1)).or_default())
    }
    fn with_aggregate<R>(&mut self, rule: u32, f: impl FnOnce(&AtomicU64) -> R) -> Option<R> {
        Some(f(self
            .aggregate
            .entry(rule)
            .or_insert_with(|| AtomicU64::new(0))))
    }
    // Entries never expire here (runs are shorter than the memory): a
    // datagram's first fragment passed (true) or was dropped (false).
    fn frag_seen(&self, d: &Datagram, _now: u64) -> Seen {
        match self.frags.get(&d.key()) {
            Some(true) => Seen::Passed,
            Some(false) => Seen::Dropped,
            None => Seen::Unseen,
        }
    }
    fn remember_frag(&mut self, d: &Datagram, value: u64, _now: u64) {
        // A pass replaces a drop; a drop never replaces a pass.
        let passed = self.frags.entry(d.key()).or_insert(false);
        *passed |= value & FRAG_PASSED != 0;
    }
    fn guarded(&self, src_port: u16) -> bool {
        self.guard.contains_key(&src_port)
    }
    fn local_port(&self, local_port: u16) -> LocalPort {
        self.local_ports
            .get(&local_port)
            .copied()
            .unwrap_or_default()
    }
    fn with_reply<R>(
        &mut self,
        key: &ReplyKey,
        f: impl FnOnce(&ReplyCell<AtomicU64>) -> R,
    ) -> Option<R> {
        self.replies.get(key).map(f)
    }
    fn connecting(&self, _p: &Packet) -> bool {
        // The runs hold no TCP connection.
        false
    }
    fn listening(&self, p: &Packet) -> bool {
        self.listening.contains(&p.dst_port)
    }
    fn established(&self, p: &Packet) -> bool {
        self.connections
            .contains(&(addr_bytes(&p.src), p.src_port, p.dst_port))
    }
    fn never_ban(&self, key: &SrcKey) -> bool {
        self.never_ban
            .iter()
            .any(|x| x.contains(key.family, &key.addr))
    }

    fn asked(&self, key: &SrcKey, now: u64) -> bool {
        self.peers.get(key).is_some_and(|until| *until > now)
    }
}
