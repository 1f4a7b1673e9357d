//! Captures: pcap and pcapng bytes opened and read to their end or their
//! first error by the reader `replay` uses. A panic, an empty explanation,
//! more frames than the bytes can hold, or a run over the timeout is a
//! finding.

#![no_main]

use std::sync::LazyLock;

use filter_user_fuzz::{Scratch, cases::capture_case};
use libfuzzer_sys::fuzz_target;

static SCRATCH: LazyLock<Scratch> = LazyLock::new(|| Scratch::new(c"capture.pcap"));

fuzz_target!(|data: &[u8]| {
    if let Err(why) = capture_case(SCRATCH.path(), data) {
        panic!("{why}");
    }
});
