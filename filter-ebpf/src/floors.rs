//! Floor programs for the benchmarks: the cheapest possible XDP verdicts,
//! measured in the same run as the filter so its cost can be told apart from
//! the cost of running any program at all.
#![no_std]
#![no_main]
// LLVM's atomic read-modify-write, which core does not expose for BPF.
#![allow(internal_features)]
#![feature(core_intrinsics)]

// Only its port counting is measured here.
#[allow(dead_code)]
mod counters;
mod shared;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use counters::Counters;
use filter_common::{BPF_F_MMAPABLE, Counter, CpuCounters, UDP_PORTS, shared::Shared64 as _};
use shared::BpfU64;

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

// The two ways to count UDP per source port that the benchmark compares:
// the filter's (a block per CPU in one mmapable array, plain adds), and
// one slot per port shared by all CPUs (atomic adds), which it replaced.
#[map(name = "COUNT_SHARDED")]
static COUNT_SHARDED: Array<CpuCounters> = Array::with_max_entries(1, BPF_F_MMAPABLE);

#[map(name = "COUNT_SHARED")]
static COUNT_SHARED: Array<Counter> = Array::with_max_entries(UDP_PORTS as u32, BPF_F_MMAPABLE);

/// The UDP source port of an untagged IPv4 frame without options: a fixed
/// offset, so that the floors cost no more than the counting they measure.
#[inline(always)]
fn udp_src_port(ctx: &XdpContext) -> Option<u16> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + 36 > end {
        return None;
    }
    // SAFETY: bytes 34..36 are inside the frame.
    let b = unsafe { *((start + 34) as *const [u8; 2]) };
    Some(u16::from_be_bytes(b))
}

/// XDP_DROP after counting the frame the way the filter does.
#[xdp]
pub fn count_sharded(ctx: XdpContext) -> u32 {
    if let Some(port) = udp_src_port(&ctx)
        && let Some(counters) = Counters::of_this_cpu(&COUNT_SHARDED)
    {
        counters.udp_port(port, 1);
    }
    xdp_action::XDP_DROP
}

/// XDP_DROP after counting the frame's packet and bytes in a slot that
/// every CPU shares.
#[xdp]
pub fn count_shared(ctx: XdpContext) -> u32 {
    if let Some(port) = udp_src_port(&ctx)
        && let Some(c) = COUNT_SHARED.get_ptr_mut(port as u32)
    {
        // SAFETY: a live, 8-byte aligned map value; Counter is two u64s
        // and BpfU64 is a transparent u64.
        let cells = unsafe { &*(c as *const [BpfU64; 2]) };
        cells[0].add(1);
        cells[1].add((ctx.data_end() - ctx.data()) as u64);
    }
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
