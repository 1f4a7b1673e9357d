//! Whose clock a replay runs on: the capture's (each frame's timestamp
//! becomes the program's time) or the kernel's (frames as fast as the
//! kernel takes them).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Timing {
    /// The program's time is each frame's timestamp: limits, bans, the
    /// reply window and fragment memory behave as they did live.
    #[default]
    Capture,
    /// The kernel's clock: the whole capture arrives within the replay's
    /// few milliseconds.
    Fast,
}

/// Where the capture's first frame lands on the program's clock: well
/// after zero, as on a host that has been up a while, so that no deadline
/// of zero (an empty slot) looks like the future.
const START_NS: u64 = 1_000 * 1_000_000_000;

/// The program's time for each frame, on the capture's clock. It never
/// runs back: a frame stamped before the previous one (captures merged
/// from several interfaces) runs at the previous one's time.
#[derive(Default)]
pub(crate) struct VirtualClock {
    first: Option<Duration>,
    last_ns: u64,
}

impl VirtualClock {
    /// The program's time (ns) for a frame stamped `ts`.
    pub(crate) fn at(&mut self, ts: Duration) -> u64 {
        let first = *self.first.get_or_insert(ts);
        let since = ts
            .saturating_sub(first)
            .as_nanos()
            .min(u128::from(u64::MAX / 2)) as u64;
        self.last_ns = self.last_ns.max(START_NS + since);
        self.last_ns
    }

    /// Seconds since the first frame at program time `ns`.
    pub(crate) fn seconds(ns: u64) -> f64 {
        ns.saturating_sub(START_NS) as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_late_and_never_runs_back() {
        let mut c = VirtualClock::default();
        let t = |ms: u64| Duration::from_millis(1_795_000_000_000 + ms);
        assert_eq!(c.at(t(0)), START_NS);
        assert_eq!(c.at(t(1500)), START_NS + 1_500_000_000);
        assert_eq!(c.at(t(1000)), START_NS + 1_500_000_000);
        assert_eq!(VirtualClock::seconds(c.at(t(2500))), 2.5);
    }
}
