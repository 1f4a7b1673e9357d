//! What to announce: from successive counter snapshots, the routes whose
//! traffic has been above a threshold for the sustain time, at most
//! `max_routes` of them (the busiest first), at most `max_changes_per_minute`
//! announcements and withdrawals, each withdrawn once its traffic has been
//! below the thresholds for the hold time. Plain values and a clock passed
//! in, so every rule is unit-tested without a kernel or a speaker.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::routes::Route;
use crate::filter::observe::stats::Totals;

const MINUTE_NS: u64 = 60_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) min_pps: u64,
    pub(crate) min_bps: u64,
    pub(crate) sustain_ns: u64,
    pub(crate) hold_ns: u64,
    pub(crate) max_routes: usize,
    pub(crate) max_changes_per_minute: usize,
}

/// A route that could be announced, with the counters (totals since they
/// started) of the drops that would justify it and why they are its own.
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    pub(crate) route: Route,
    pub(crate) why: String,
    pub(crate) totals: Totals,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Rate {
    pub(crate) pps: u64,
    pub(crate) bps: u64,
}

#[derive(Debug)]
struct Track {
    last: Totals,
    last_ns: u64,
    rate: Rate,
    /// Since when the traffic has been above the thresholds, pauses
    /// shorter than [`Selector::grace_ns`] forgiven (a flood that pulses).
    above_since: Option<u64>,
    last_above_ns: u64,
    why: String,
}

/// A route the selector wants announced.
#[derive(Clone, Debug)]
pub(crate) struct Selected {
    pub(crate) route: Route,
    pub(crate) why: String,
    pub(crate) since_ns: u64,
    last_above_ns: u64,
    pub(crate) rate: Rate,
}

/// What one step changed.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) announce: Vec<Route>,
    pub(crate) withdraw: Vec<Route>,
    /// Routes that qualified but found no room under `max_routes`.
    pub(crate) over_cap: usize,
    /// Changes postponed by `max_changes_per_minute`.
    pub(crate) deferred: usize,
}

pub(crate) struct Selector {
    policy: Policy,
    tracks: HashMap<Route, Track>,
    selected: BTreeMap<Route, Selected>,
    /// Adopted routes, with the steps left before they may expire: a rate
    /// takes two snapshots, and a serve that started late must not
    /// withdraw a route whose flood goes on before it could see it.
    unmeasured: HashMap<Route, u8>,
    /// When the changes of the last minute were made.
    changes: VecDeque<u64>,
}

impl Selector {
    pub(crate) fn new(policy: Policy) -> Selector {
        Selector {
            policy,
            tracks: HashMap::new(),
            selected: BTreeMap::new(),
            unmeasured: HashMap::new(),
            changes: VecDeque::new(),
        }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How long a route may dip below the thresholds without restarting
    /// its sustain time: a quarter of it, so that a flood that pauses one
    /// second in ten is still announced, and one that stopped is not.
    fn grace_ns(&self) -> u64 {
        self.policy.sustain_ns / 4
    }

    /// Whether anything is selected or on its way to be (above the
    /// thresholds now).
    pub(crate) fn active(&self) -> bool {
        !self.selected.is_empty() || self.tracks.values().any(|t| t.above_since.is_some())
    }

    /// Routes selected now, in route order.
    pub(crate) fn selected(&self) -> impl Iterator<Item = &Selected> {
        self.selected.values()
    }

    /// When `route`, if selected, is to be withdrawn should its traffic
    /// stop now: the last time it was above the thresholds plus the hold.
    pub(crate) fn deadline(&self, route: &Route) -> Option<u64> {
        self.selected
            .get(route)
            .map(|s| s.last_above_ns.saturating_add(self.policy.hold_ns))
    }

    /// Takes over `route`, which a serve before this one announced, as if
    /// this selector had: no sustain time (it is announced already), and
    /// withdrawn at `deadline_ns` unless its traffic is above the
    /// thresholds again by then, when its hold starts anew as any other's.
    /// The deadline stays the one it had even if the hold changed since;
    /// but it is never withdrawn before the step that measured its traffic
    /// (the second), however late this serve started.
    pub(crate) fn adopt(&mut self, route: Route, why: String, deadline_ns: u64, now_ns: u64) {
        self.unmeasured.insert(route.clone(), 2);
        let s = Selected {
            route: route.clone(),
            why,
            since_ns: now_ns,
            last_above_ns: deadline_ns.saturating_sub(self.policy.hold_ns),
            rate: Rate::default(),
        };
        self.selected.insert(route, s);
    }

    /// Takes a snapshot of every candidate at `now_ns` (monotonic) and
    /// returns what changed in the selection.
    pub(crate) fn step(&mut self, now_ns: u64, observations: Vec<Observation>) -> Plan {
        self.observe(now_ns, observations);
        self.unmeasured.retain(|_, steps| {
            *steps -= 1;
            *steps > 0
        });
        while self
            .changes
            .front()
            .is_some_and(|&t| t + MINUTE_NS <= now_ns)
        {
            self.changes.pop_front();
        }
        let mut plan = Plan::default();
        let mut budget = self
            .policy
            .max_changes_per_minute
            .saturating_sub(self.changes.len());
        // Overdue withdrawals go first: they free room and shrink what the
        // routers drop on our behalf.
        for route in self.expired(now_ns) {
            if budget == 0 {
                plan.deferred += 1;
                continue;
            }
            budget -= 1;
            self.changes.push_back(now_ns);
            self.selected.remove(&route);
            plan.withdraw.push(route);
        }
        let ready = self.ready(now_ns);
        let room = self.policy.max_routes.saturating_sub(self.selected.len());
        plan.over_cap = ready.len().saturating_sub(room);
        for route in ready.into_iter().take(room) {
            if budget == 0 {
                plan.deferred += 1;
                continue;
            }
            budget -= 1;
            self.changes.push_back(now_ns);
            let t = &self.tracks[&route];
            self.selected.insert(
                route.clone(),
                Selected {
                    route: route.clone(),
                    why: t.why.clone(),
                    since_ns: now_ns,
                    last_above_ns: now_ns,
                    rate: t.rate.clone(),
                },
            );
            plan.announce.push(route);
        }
        plan
    }

    /// Rates from the counters' growth since the last snapshot.
    fn observe(&mut self, now_ns: u64, observations: Vec<Observation>) {
        let mut seen = HashMap::with_capacity(observations.len());
        for o in observations {
            let track = match self.tracks.remove(&o.route) {
                Some(mut t) => {
                    let dt = now_ns.saturating_sub(t.last_ns).max(1) as u128;
                    // A counter that went back (a reload resets rule
                    // counters) counts as no traffic for this step.
                    let packets = o.totals.packets.saturating_sub(t.last.packets) as u128;
                    let bytes = o.totals.bytes.saturating_sub(t.last.bytes) as u128;
                    t.rate = Rate {
                        pps: (packets * 1_000_000_000 / dt) as u64,
                        bps: (bytes * 8_000_000_000 / dt) as u64,
                    };
                    let p = &self.policy;
                    let above = (p.min_pps > 0 && t.rate.pps >= p.min_pps)
                        || (p.min_bps > 0 && t.rate.bps >= p.min_bps);
                    if above {
                        t.above_since = t.above_since.or(Some(now_ns));
                        t.last_above_ns = now_ns;
                    } else if now_ns.saturating_sub(t.last_above_ns) > self.grace_ns() {
                        t.above_since = None;
                    }
                    if above && let Some(s) = self.selected.get_mut(&o.route) {
                        s.last_above_ns = now_ns;
                        s.rate = t.rate.clone();
                    }
                    t.last = o.totals;
                    t.last_ns = now_ns;
                    t.why = o.why;
                    t
                }
                None => Track {
                    last: o.totals,
                    last_ns: now_ns,
                    rate: Rate::default(),
                    above_since: None,
                    last_above_ns: 0,
                    why: o.why,
                },
            };
            seen.insert(o.route, track);
        }
        // Candidates that vanished (a rule removed, a ban expired) lose
        // their track; a selected one is withdrawn after its hold time.
        self.tracks = seen;
    }

    fn expired(&self, now_ns: u64) -> Vec<Route> {
        self.selected
            .values()
            .filter(|s| now_ns.saturating_sub(s.last_above_ns) >= self.policy.hold_ns)
            .filter(|s| !self.unmeasured.contains_key(&s.route))
            .map(|s| s.route.clone())
            .collect()
    }

    /// Routes above threshold for the sustain time and not selected yet,
    /// busiest first.
    fn ready(&self, now_ns: u64) -> Vec<Route> {
        let mut ready: Vec<(&Route, &Track)> = self
            .tracks
            .iter()
            .filter(|(r, t)| {
                !self.selected.contains_key(*r)
                    && t.above_since
                        .is_some_and(|s| now_ns.saturating_sub(s) >= self.policy.sustain_ns)
            })
            .collect();
        ready.sort_by(|(ra, a), (rb, b)| {
            (b.rate.bps, b.rate.pps)
                .cmp(&(a.rate.bps, a.rate.pps))
                .then(ra.cmp(rb))
        });
        ready.into_iter().map(|(r, _)| r.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{rules::Prefix, upstream::routes::tests::flow};

    const S: u64 = 1_000_000_000;

    fn policy() -> Policy {
        Policy {
            min_pps: 1000,
            min_bps: 0,
            sustain_ns: 2 * S,
            hold_ns: 5 * S,
            max_routes: 10,
            max_changes_per_minute: 1000,
        }
    }

    fn route(i: u32) -> Route {
        let mut f = flow("192.0.2.1/32", None);
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&(0xc633_0000u32 + i).to_be_bytes());
        f.src = Some(Prefix {
            family: filter_common::FAMILY_V4,
            addr,
            len: 32,
        });
        Route::FlowSpec(f)
    }

    /// Candidate `i` at second `t`, having sent `pps` packets/s since 0.
    fn obs(i: u32, t: u64, pps: u64) -> Observation {
        Observation {
            route: route(i),
            why: format!("source {i}"),
            totals: Totals {
                packets: pps * t,
                bytes: pps * t * 100,
            },
        }
    }

    /// Runs seconds `from..to` with candidates `0..n`, candidate i at
    /// `pps(i)`; the plans of each second.
    fn run(sel: &mut Selector, from: u64, to: u64, n: u32, pps: impl Fn(u32) -> u64) -> Vec<Plan> {
        (from..to)
            .map(|t| sel.step(t * S, (0..n).map(|i| obs(i, t, pps(i))).collect()))
            .collect()
    }

    /// A flood sending 5,000 packets in each second `on` says, against a
    /// sustain of 10 s: the second it is announced at, if it is.
    fn pulsing(secs: u64, on: impl Fn(u64) -> bool) -> Option<u64> {
        let mut sel = Selector::new(Policy {
            sustain_ns: 10 * S,
            ..policy()
        });
        let mut total = 0;
        (0..secs).find(|&t| {
            total += if on(t) { 5000 } else { 0 };
            let o = Observation {
                route: route(0),
                why: String::new(),
                totals: Totals {
                    packets: total,
                    bytes: total * 100,
                },
            };
            !sel.step(t * S, vec![o]).announce.is_empty()
        })
    }

    /// 9 s on, 1 s off: the pauses do not restart the sustain time; 6 s
    /// on, 4 s off: each pause outlasts the grace (2.5 s), and does.
    #[test]
    fn a_pulsing_flood_is_announced_and_a_stopped_one_restarts() {
        assert_eq!(pulsing(30, |t| t % 10 != 9), Some(11));
        assert_eq!(pulsing(40, |t| t % 10 < 6), None);
    }

    #[test]
    fn announces_only_after_the_sustain_time_and_only_above_threshold() {
        let mut sel = Selector::new(policy());
        let plans = run(&mut sel, 0, 5, 2, |i| if i == 0 { 5000 } else { 999 });
        // Rates exist from second 1; above since 1, sustained at 3.
        let announced: Vec<usize> = plans.iter().map(|p| p.announce.len()).collect();
        assert_eq!(announced, vec![0, 0, 0, 1, 0]);
        assert_eq!(plans[3].announce, vec![route(0)]);
        let s: Vec<_> = sel.selected().collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].rate.pps, 5000);
        assert_eq!(s[0].rate.bps, 5000 * 800);
    }

    #[test]
    fn a_dip_restarts_the_sustain_time() {
        let mut sel = Selector::new(policy());
        let mut sent = 0;
        let mut announced_at = None;
        for (t, pps) in (0u64..).zip([5000, 5000, 0, 5000, 5000, 5000]) {
            sent += pps;
            let o = Observation {
                totals: Totals {
                    packets: sent,
                    bytes: sent,
                },
                ..obs(0, 0, 0)
            };
            if !sel.step(t * S, vec![o]).announce.is_empty() {
                announced_at = Some(t);
            }
        }
        assert_eq!(announced_at, Some(5));
    }

    #[test]
    fn withdraws_after_the_hold_time_once_traffic_stops() {
        let mut sel = Selector::new(policy());
        run(&mut sel, 0, 4, 1, |_| 5000);
        assert_eq!(sel.selected().count(), 1);
        // Traffic stops after second 3: the counter stays at 3 * 5000.
        let mut withdrawn_at = None;
        for t in 4..20 {
            let o = Observation {
                totals: Totals {
                    packets: 15000,
                    bytes: 15000,
                },
                ..obs(0, 0, 0)
            };
            if !sel.step(t * S, vec![o]).withdraw.is_empty() {
                withdrawn_at = Some(t);
                break;
            }
        }
        // Last above at second 3, hold 5 s.
        assert_eq!(withdrawn_at, Some(8));
        assert_eq!(sel.selected().count(), 0);
    }

    #[test]
    fn a_vanished_candidate_is_withdrawn_after_the_hold_time_too() {
        let mut sel = Selector::new(policy());
        run(&mut sel, 0, 4, 1, |_| 5000);
        let plans: Vec<Plan> = (4..10).map(|t| sel.step(t * S, Vec::new())).collect();
        let at: Vec<usize> = plans.iter().map(|p| p.withdraw.len()).collect();
        assert_eq!(at, vec![0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn a_flood_from_100000_sources_is_capped_to_the_busiest() {
        let mut sel = Selector::new(Policy {
            max_routes: 100,
            ..policy()
        });
        let plans = run(&mut sel, 0, 5, 100_000, |i| 1000 + u64::from(i % 5000));
        let total: usize = plans.iter().map(|p| p.announce.len()).sum();
        assert_eq!(total, 100);
        assert_eq!(sel.selected().count(), 100);
        assert_eq!(plans[3].over_cap, 100_000 - 100);
        // The busiest sources won: rates 5999 down to 5995 (twenty each).
        assert!(
            sel.selected().all(|s| s.rate.pps >= 5995),
            "not the busiest"
        );
        // Still capped while the flood goes on.
        let plans = run(&mut sel, 5, 8, 100_000, |i| 1000 + u64::from(i % 5000));
        assert!(plans.iter().all(|p| p.announce.is_empty()));
        assert_eq!(sel.selected().count(), 100);
    }

    /// Steps seconds `from..to` with candidate 0's counter at `pps` * t;
    /// the seconds at which it was withdrawn.
    fn withdrawals(sel: &mut Selector, from: u64, to: u64, pps: u64) -> Vec<u64> {
        (from..to)
            .filter(|&t| !sel.step(t * S, vec![obs(0, t, pps)]).withdraw.is_empty())
            .collect()
    }

    #[test]
    fn an_adopted_route_stays_selected_until_its_own_deadline() {
        let mut sel = Selector::new(policy());
        // Announced by a serve before; due at second 13 (hold 5 s).
        sel.adopt(route(0), "rule x".into(), 13 * S, 10 * S);
        assert_eq!(sel.deadline(&route(0)), Some(13 * S));
        // No traffic: no sustain time to wait, no withdrawal before 13.
        let plans: Vec<Plan> = (10..16).map(|t| sel.step(t * S, Vec::new())).collect();
        let at: Vec<usize> = plans.iter().map(|p| p.withdraw.len()).collect();
        assert_eq!(at, vec![0, 0, 0, 1, 0, 0]);
        assert!(plans.iter().all(|p| p.announce.is_empty()));
    }

    #[test]
    fn an_adopted_route_whose_flood_goes_on_is_never_withdrawn_nor_announced_again() {
        let mut sel = Selector::new(policy());
        sel.adopt(route(0), "rule x".into(), 12 * S, 10 * S);
        // Its flood goes on: the first step has no rate yet, the second
        // sees it above the thresholds and its hold starts anew.
        let mut announced = 0;
        for t in 10..30 {
            let p = sel.step(t * S, vec![obs(0, t, 5000)]);
            assert!(p.withdraw.is_empty(), "withdrawn at second {t}");
            announced += p.announce.len();
        }
        assert_eq!(announced, 0, "announced anew");
        assert_eq!(sel.deadline(&route(0)), Some(29 * S + 5 * S));
        // It stops: withdrawn a hold after the last second above.
        assert_eq!(withdrawals(&mut sel, 30, 40, 0), vec![34]);
    }

    /// Past its deadline when this serve started: withdrawn at the first
    /// step that could see its flood (the second) if it stopped, kept if
    /// it goes on.
    #[test]
    fn an_adopted_route_past_its_deadline_waits_for_one_measure_of_its_flood() {
        let mut sel = Selector::new(policy());
        sel.adopt(route(0), "rule x".into(), 8 * S, 10 * S);
        assert_eq!(withdrawals(&mut sel, 10, 13, 0), vec![11]);
        let mut sel = Selector::new(policy());
        sel.adopt(route(0), "rule x".into(), 8 * S, 10 * S);
        assert_eq!(withdrawals(&mut sel, 10, 13, 5000), Vec::<u64>::new());
        assert_eq!(sel.deadline(&route(0)), Some(12 * S + 5 * S));
    }

    #[test]
    fn churn_is_rate_limited_per_minute() {
        let mut sel = Selector::new(Policy {
            max_changes_per_minute: 4,
            ..policy()
        });
        let plans = run(&mut sel, 0, 10, 6, |_| 5000);
        let total: usize = plans.iter().map(|p| p.announce.len()).sum();
        assert_eq!(total, 4);
        assert_eq!(plans[3].deferred, 2);
        // A minute after the first changes, the rest get their turn.
        let plans = run(&mut sel, 63, 65, 6, |_| 5000);
        let total: usize = plans.iter().map(|p| p.announce.len()).sum();
        assert_eq!(total, 2);
    }
}
