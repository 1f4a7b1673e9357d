//! The selectors' policies, from `[upstream]`: FlowSpec's thresholds and
//! the blackhole's, and a selector kept while its policy is unchanged.

use super::select::{Policy, Selector};
use crate::rules::upstream::UpstreamConfig;

/// Blackhole routes per interface: one per host address is plenty.
const MAX_BLACKHOLES: usize = 16;

pub(super) fn flow_policy(c: &UpstreamConfig) -> Policy {
    Policy {
        min_pps: c.flowspec.min_pps,
        min_bps: c.flowspec.min_bps,
        sustain_ns: c.flowspec.sustain_ns,
        hold_ns: c.flowspec.hold_ns,
        max_routes: c.max_routes,
        max_changes_per_minute: c.max_changes_per_minute,
    }
}

pub(super) fn hole_policy(c: &UpstreamConfig) -> Option<Policy> {
    let b = c.blackhole.as_ref()?;
    Some(Policy {
        min_pps: 0,
        min_bps: b.threshold_bps().max(1),
        sustain_ns: b.sustain_ns,
        hold_ns: b.hold_ns,
        max_routes: MAX_BLACKHOLES,
        max_changes_per_minute: c.max_changes_per_minute,
    })
}

/// The selector for `policy`, kept (with what it tracks) when unchanged.
pub(super) fn keep_or_new(old: Option<Selector>, policy: Option<Policy>) -> Option<Selector> {
    let policy = policy?;
    match old {
        Some(s) if *s.policy() == policy => Some(s),
        _ => Some(Selector::new(policy)),
    }
}
