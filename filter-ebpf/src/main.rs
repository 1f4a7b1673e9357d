//! XDP filter: drops UDP reflection traffic before the kernel allocates
//! anything for it. The entry point only wires parse, decide and count.
#![no_std]
#![no_main]
// LLVM's atomic read-modify-write, which core does not expose for BPF.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod capture;
mod clock;
mod counters;
mod env;
mod fast;
mod frags;
mod globals;
mod maps;
mod parse;
mod requests;
mod shared;
mod sockets;
mod tries;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use counters::Counters;
use filter_common::{
    GUARD_SOLICITED, GUARD_UNSOLICITED, IPPROTO_UDP, Reason,
    decide::{Outcome, decide, outcome},
    frags::udp_frames,
    packet::{Frag, Parsed},
};

// The macro wraps this function in the real entry point; inlined there,
// or every frame pays for a BPF-to-BPF call (~10 ns here, which LLVM chose
// once the program grew).
#[xdp]
#[inline(always)]
pub fn filter(ctx: XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(early) = fast::verdict(&ctx) {
        // This CPU's counters: one lookup for the frame's reason and port.
        let Some(counters) = Counters::of_this_cpu(&maps::COUNTERS) else {
            return xdp_action::XDP_PASS;
        };
        let reason = match early {
            fast::Early::Unsolicited(src_port, slot, frames) => {
                counters.udp_port(src_port, frames);
                counters.guard_length(slot, GUARD_UNSOLICITED, frame_len);
                Reason::UnsolicitedReply
            }
            fast::Early::FollowsDrop => Reason::FragmentFollowDrop,
        };
        let rule = filter_common::CAPTURE_NO_RULE;
        return finish(&ctx, counters, reason, rule, frame_len);
    }
    // The settings' address only here: held across the early verdict, it
    // cost each frame that verdict drops 0.3 to 0.6 ns (measured).
    let config = globals::config();
    // The parsed packet lives in a per-CPU map slot, not on the stack: the
    // verifier does not track what a program stores in map memory, so the
    // decision is verified once instead of once per parsing path (VLAN tags
    // x IP versions x extension chains x fragment kinds). Measured with the
    // packet on the stack: 391,000 verified instructions of the 1,000,000
    // budget instead of 23,000, for ~20 instructions saved per packet (as
    // an `#[inline(never)]` decision: 766,000, and slower), too little room
    // for the steps still to come. And the 512-byte stack stays free.
    let Some(slot) = maps::SCRATCH.get_ptr_mut(maps::SCRATCH_XDP) else {
        return xdp_action::XDP_PASS;
    };
    let Some(counters) = Counters::of_this_cpu(&maps::COUNTERS) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a per-CPU slot that only this CPU's run of the program uses.
    let packet = unsafe { &mut *slot };
    let parsed = parse::parse(&ctx, packet);
    // Counted as it arrives, whatever the decision: the surge detector must
    // see a flood that rules already drop, or it would lift its own block.
    // A first fragment counts for its datagram's frames: the later ones
    // carry no port.
    if parsed == Parsed::Ip && packet.proto == IPPROTO_UDP && packet.frag != Frag::Later {
        counters.udp_port(packet.src_port, udp_frames(packet));
    }
    let mut env = env::KernelEnv::new(&ctx, config);
    let reason = decide(&mut env, config, parsed, packet);
    let rule = env.rule;
    // Replies from a guarded port, by length: what an upstream route may
    // drop without the host's own answers.
    let kind = match reason {
        Reason::UnsolicitedReply | Reason::ReflectedToService => Some(GUARD_UNSOLICITED),
        Reason::SolicitedReply => Some(GUARD_SOLICITED),
        _ => None,
    };
    if let Some(kind) = kind {
        let slot = globals::guard_slot_wire(packet.src_port.to_be());
        counters.guard_length(slot, kind, frame_len);
    }
    finish(&ctx, counters, reason, rule, frame_len)
}

/// Counts the verdict and acts on it (monitor mode passes what a drop
/// reason decided).
#[inline(always)]
fn finish(ctx: &XdpContext, counters: Counters, reason: Reason, rule: u32, frame_len: u64) -> u32 {
    counters.reason(reason, frame_len);
    // The loaded settings' monitor bit is always clear: the flag says.
    match outcome(reason, globals::monitor_flag()) {
        Outcome::Pass => xdp_action::XDP_PASS,
        Outcome::Drop => {
            capture::dropped(ctx, reason, rule, frame_len);
            xdp_action::XDP_DROP
        }
        Outcome::MonitoredPass => {
            capture::dropped(ctx, reason, rule, frame_len);
            counters.monitored(frame_len);
            xdp_action::XDP_PASS
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
