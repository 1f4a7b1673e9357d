//! `filterctl capture`: copies of dropped frames to user space through a
//! ring buffer. Called on the drop path only; while no capture runs, the
//! cost is one load of a global there (globals::capturing) and nothing on
//! the pass path.

use aya_ebpf::{
    bindings::xdp_md,
    helpers::generated::bpf_xdp_load_bytes,
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use filter_common::{
    CAPTURE_RING_BYTES, CAPTURE_SNAP_MAX, CaptureConfig, CaptureRecord, CaptureWindow, Reason,
};

#[map(name = "CAPTURE")]
pub static CAPTURE: Array<CaptureConfig> = Array::with_max_entries(1, 0);

#[map(name = "CAPTURE_WINDOW")]
pub static CAPTURE_WINDOW: PerCpuArray<CaptureWindow> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "CAPTURE_RING")]
pub static CAPTURE_RING: RingBuf = RingBuf::with_byte_size(CAPTURE_RING_BYTES, 0);

/// Copies the frame if a capture runs and wants it.
#[inline(always)]
pub fn dropped(ctx: &XdpContext, reason: Reason, rule: u32, frame_len: u64) {
    if !crate::globals::capturing() {
        return;
    }
    let Some(c) = CAPTURE.get(0) else {
        return;
    };
    if c.until_ns == 0 {
        return;
    }
    copy(ctx.ctx, c, reason, rule, frame_len);
}

// A function of its own: the verifier checks it once, not on every path
// of the entry point that reaches a drop.
#[inline(never)]
fn copy(ctx: *mut xdp_md, c: &CaptureConfig, reason: Reason, rule: u32, frame_len: u64) {
    let now = crate::clock::now();
    if now >= c.until_ns || !c.wants(reason, rule) {
        return;
    }
    let Some(w) = CAPTURE_WINDOW.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; no other CPU writes it.
    if !unsafe { (*w).take(now, c) } {
        return;
    }
    let Some(mut entry) = CAPTURE_RING.reserve::<CaptureRecord>(0) else {
        return;
    };
    let mut len = frame_len.min(c.snaplen as u64) as u32;
    if len > CAPTURE_SNAP_MAX as u32 {
        len = CAPTURE_SNAP_MAX as u32;
    }
    let record = entry.as_mut_ptr();
    // SAFETY: the reserved record is ours until submitted; the helper
    // writes at most `len` bytes, which the checks bound to `data`.
    let ok = unsafe {
        (*record).frame_len = frame_len as u32;
        (*record).cap_len = len;
        (*record).reason = reason as u32;
        (*record).rule = rule;
        len > 0 && bpf_xdp_load_bytes(ctx, 0, (*record).data.as_mut_ptr().cast(), len) == 0
    };
    if ok {
        entry.submit(0);
    } else {
        entry.discard(0);
    }
}
