//! Floor programs for the benchmarks: the cheapest possible XDP verdicts,
//! measured in the same run as the filter so its cost can be told apart from
//! the cost of running any program at all.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn drop_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn pass_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Bounces every frame back out of the interface it came from: with
/// BPF_PROG_TEST_RUN's live-frames mode this is a traffic generator that
/// runs in the kernel, fast enough not to be the bottleneck.
#[xdp]
pub fn tx_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
