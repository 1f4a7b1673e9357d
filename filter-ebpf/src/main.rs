//! XDP filter: drops UDP reflection traffic before the kernel allocates
//! anything for it. The entry point only wires parse, decide and count.
#![no_std]
#![no_main]
// LLVM's atomic read-modify-write, which core does not expose for BPF.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod env;
mod maps;
mod parse;
mod requests;
mod shared;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use filter_common::decide::{Outcome, decide, outcome};

#[xdp]
pub fn filter(ctx: XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    let config = maps::config();
    // The parsed packet lives in a per-CPU map slot, not on the stack: the
    // verifier does not track what a program stores in map memory, so the
    // decision is verified once instead of once per parsing path (VLAN tags
    // x IP versions x extension chains x fragment kinds), which would
    // exceed its budget; and the 512-byte stack stays free.
    let Some(slot) = maps::SCRATCH.get_ptr_mut(maps::SCRATCH_XDP) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a per-CPU slot that only this CPU's run of the program uses.
    let packet = unsafe { &mut *slot };
    let parsed = parse::parse(&ctx, packet);
    let mut env = env::KernelEnv { ctx: &ctx, config };
    let reason = decide(&mut env, parsed, packet);
    maps::count_reason(reason, frame_len);
    match outcome(reason, config.flags) {
        Outcome::Pass => xdp_action::XDP_PASS,
        Outcome::Drop => xdp_action::XDP_DROP,
        Outcome::MonitoredPass => {
            maps::count_monitored(frame_len);
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
