//! What one frame got: its verdict, read from the counters it moved, and
//! what the capture says of it.

use serde::Serialize;

use super::capture::Direction;

/// What one frame got.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FrameResult {
    pub(crate) index: u64,
    /// Unix seconds, as in the capture.
    pub(crate) timestamp: f64,
    /// Seconds since the capture's first frame.
    pub(crate) time_s: f64,
    pub(crate) direction: Direction,
    /// Length on the wire.
    pub(crate) len: u32,
    /// Bytes in the capture: what ran.
    pub(crate) captured: u32,
    pub(crate) truncated: bool,
    /// False for frames the kernel's test harness does not take: shorter
    /// than an Ethernet header, or too long for it; and for loopback
    /// frames, which XDP never sees.
    pub(crate) ran: bool,
    /// The program saw only the first part of the frame, or none of it
    /// (see the JSON doc).
    pub(crate) oversize: bool,
    /// "drop" or "pass" for received frames, "sent" for the host's own.
    pub(crate) action: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) rule: Option<String>,
    /// Index of `rule` in the rule set.
    #[serde(skip)]
    pub(crate) rule_index: Option<usize>,
    /// A loopback frame: not run, not counted.
    #[serde(skip)]
    pub(crate) loopback: bool,
}

/// The reason of the host's own frames, which get no verdict.
pub(crate) const OUTGOING: &str = "outgoing";
/// The reason of loopback frames, which XDP never sees.
pub(crate) const LOOPBACK: &str = "loopback";

impl FrameResult {
    /// A frame XDP judged (or the harness could not run).
    pub(crate) fn judged(&self) -> bool {
        self.direction != Direction::Out && !self.loopback
    }

    pub(crate) fn dropped(&self) -> bool {
        self.judged() && self.action == "drop"
    }
}
