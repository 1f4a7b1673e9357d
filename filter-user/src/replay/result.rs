//! What one frame got: its verdict, read from the counters it moved, and
//! what the capture says of it.

use serde::Serialize;

use super::capture::Direction;

/// What one frame got.
#[derive(Debug, Clone, Serialize)]
pub struct FrameResult {
    pub index: u64,
    /// Unix seconds, as in the capture.
    pub timestamp: f64,
    /// Seconds since the capture's first frame.
    pub time_s: f64,
    pub direction: Direction,
    /// Length on the wire.
    pub len: u32,
    /// Bytes in the capture: what ran.
    pub captured: u32,
    pub truncated: bool,
    /// False for frames the kernel's test harness does not take: shorter
    /// than an Ethernet header, or too long for it; and for loopback
    /// frames, which XDP never sees.
    pub ran: bool,
    /// The program saw only the first part of the frame, or none of it
    /// (see the JSON doc).
    pub oversize: bool,
    /// "drop" or "pass" for received frames, "sent" for the host's own.
    pub action: &'static str,
    pub reason: &'static str,
    pub rule: Option<String>,
    /// Index of `rule` in the rule set.
    #[serde(skip)]
    pub rule_index: Option<usize>,
    /// A loopback frame: not run, not counted.
    #[serde(skip)]
    pub loopback: bool,
}

/// The reason of the host's own frames, which get no verdict.
pub const OUTGOING: &str = "outgoing";
/// The reason of loopback frames, which XDP never sees.
pub const LOOPBACK: &str = "loopback";

impl FrameResult {
    /// A frame XDP judged (or the harness could not run).
    pub fn judged(&self) -> bool {
        self.direction != Direction::Out && !self.loopback
    }

    pub fn dropped(&self) -> bool {
        self.judged() && self.action == "drop"
    }
}
