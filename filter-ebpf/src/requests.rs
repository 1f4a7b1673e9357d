//! The egress program: records the host's own UDP requests to guarded ports,
//! so that the XDP program can tell their replies from reflected floods.
//! Never drops anything. And the program that fills a new generation's copy
//! of those records at a reload.

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use filter_common::{
    CONFIG_REPLY_GUARD, IPPROTO_UDP, MATCH_MAX, OPEN_SEED_CHUNK, PEER_MEMORY_NS, UDP_PORTS,
    guard::{Request, is_group_mac, renew, request_entry},
    packet::{Frag, Parsed},
    shapes::{is_request, subscribes},
};

use crate::{
    maps,
    parse::{self, Hdr},
};

#[classifier]
pub fn requests(ctx: TcContext) -> i32 {
    if crate::globals::config().flags & CONFIG_REPLY_GUARD != 0 {
        record(&ctx);
    }
    // TCX_NEXT: whatever else runs on egress still runs.
    TC_ACT_UNSPEC
}

#[inline(always)]
fn record(ctx: &TcContext) {
    let Some(slot) = maps::SCRATCH.get_ptr_mut(maps::SCRATCH_EGRESS) else {
        return;
    };
    // SAFETY: this CPU's egress slot; egress runs with bottom halves off, so
    // nothing else on this CPU uses it meanwhile.
    let p = unsafe { &mut *slot };
    if parse::parse(ctx, p) != Parsed::Ip || p.proto != IPPROTO_UDP || p.frag == Frag::Later {
        return;
    }
    // A server's answers are not requests: from a guarded port whose
    // protocol has a request shape (a DNS server answering from 53), only
    // what has the shape opens anything; otherwise a forged query from
    // X:11211 would let X's floods to port 53 in as solicited.
    if crate::globals::guarded_wire(p.src_port.to_be())
        && p.payload_off <= parse::MAX_L4_OFFSET + 60
    {
        let off = p.payload_off;
        let head = |o: u16| crate::env::payload_head(ctx, off, o, MATCH_MAX as u8);
        if is_request(p.src_port, head) == Some(false) {
            return;
        }
    }
    // The budget table lists exactly the guarded ports: one lookup.
    // SAFETY: the value is copied out at once.
    let Some(port) = (unsafe { maps::GUARD_BUDGETS.get(p.dst_port as u32).copied() }) else {
        return;
    };
    // At egress the frame starts with its Ethernet header: a broadcast or
    // multicast destination MAC marks a request to a group, a subnet's
    // broadcast address (192.0.2.255) included.
    let group_mac = Hdr::<2>::at(ctx, 0).is_some_and(|eth| is_group_mac(eth.u8::<0>()));
    let off = p.payload_off;
    let observe = port.observe_packets != 0 && subscribes(p.dst_port, |o| skb_head(ctx, off, o));
    let kind = Request::of(p, &port, group_mac, observe);
    let now = crate::clock::coarse();
    let (key, mut state) = request_entry(p, &port, now, kind);
    // A repeated request renews the entry, never cutting what is left of
    // it (a CoAP client's acknowledgements leave its subscription alone).
    // SAFETY: the value is copied out at once.
    if let Some(old) = unsafe { maps::REPLIES.get(key) } {
        state = renew(old, state);
    }
    let _ = maps::REPLIES.insert(key, state, 0);
    // The peer is one this host uses: never banned for a while.
    let peer = filter_common::limiter::peer_key(p, crate::globals::config());
    let _ = maps::PEERS.insert(peer, now.saturating_add(PEER_MEMORY_NS), 0);
    // The early verdict's copy first: a reload that finds a port open in
    // LOCAL_PORTS may then take it to be in this generation's copy too.
    crate::globals::extend_open(p.src_port, state.expires);
    if let Some(open) = maps::LOCAL_PORTS.get_ptr_mut(p.src_port as u32) {
        // SAFETY: a live array slot; CPUs racing here each store a deadline
        // of their own request, and the later one wins within an instant.
        let open = unsafe { &mut *open };
        open.until = open.until.max(state.expires);
        if kind == Request::Group {
            open.group_until = open.group_until.max(state.expires);
        }
    }
}

/// Four payload bytes at `offset`, zeros past the frame's end, as the
/// shape tests read them. Through the skb helper rather than packet
/// pointers: a walk over options at offsets of its own finding is more
/// than the verifier follows (LLVM folds `payload_head`'s read at the
/// frame's end into a pointer it refuses), and a request costs a few
/// helper calls once, not per received frame.
#[inline(always)]
fn skb_head(ctx: &TcContext, payload_off: usize, offset: u16) -> [u8; MATCH_MAX] {
    let at = payload_off + offset as usize;
    if let Ok(w) = ctx.load::<[u8; MATCH_MAX]>(at) {
        return w;
    }
    let mut w = [0u8; MATCH_MAX];
    for (i, b) in w.iter_mut().enumerate() {
        match ctx.load::<u8>(at + i) {
            Ok(v) => *b = v,
            Err(_) => break,
        }
    }
    w
}

/// Raises this generation's copy of the open requests to LOCAL_PORTS'
/// deadlines for one chunk of ports (see
/// [`filter_common::OPEN_SEED_PROGRAM_NAME`]). Port by port, so that it
/// never undoes what the recorder writes meanwhile to other ports, as a
/// write of the whole copy from user space would.
#[xdp]
pub fn seed_open(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 2 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: two bytes inside the frame, checked above.
    let chunk = unsafe { core::ptr::read_unaligned(start as *const u16) } as u32;
    let first = (chunk * OPEN_SEED_CHUNK) % UDP_PORTS as u32;
    for i in 0..OPEN_SEED_CHUNK {
        let port = first + i;
        if let Some(open) = maps::LOCAL_PORTS.get(port) {
            crate::globals::extend_open(port as u16, open.until);
        }
    }
    xdp_action::XDP_PASS
}
