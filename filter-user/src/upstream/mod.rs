//! Upstream mitigation: when the uplink itself fills, ask the routers in
//! front of this host to drop. Each step reads the running filter's
//! counters, selects the drop decisions worth a route (`select`), turns
//! them into FlowSpec or blackhole routes (`sources`, `routes`) and has an
//! existing BGP speaker announce or withdraw them (`speaker`); `state`
//! records what is announced and why. The XDP filter never depends on any
//! of it: a broken speaker is an error here and nothing more.

mod guard_routes;
pub(crate) mod import;
pub(crate) mod routes;
pub(crate) mod select;
pub(crate) mod sources;
pub(crate) mod speaker;
pub mod state;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use log::{error, info, warn};

use self::{
    routes::Route,
    select::{Observation, Plan, Policy, Selector},
    sources::Inputs,
    speaker::Speaker,
    state::{RouteState, UpstreamState},
};
use filter_common::GUARD_SLOTS;

use crate::{
    filter::observe::{
        counters::{self, GuardLengths},
        stats, status, top,
    },
    rules::{
        self, RuleSet,
        upstream::{SpeakerConfig, UpstreamConfig},
    },
    state::PinRoot,
    sys::monotonic_coarse_ns,
};

/// Blackhole routes per interface: one per host address is plenty.
const MAX_BLACKHOLES: usize = 16;

/// The upstream side of one watched interface, stepped by `serve`.
pub(crate) struct Worker {
    iface: String,
    rules_path: PathBuf,
    /// Digest of the rule set `rules` was read for.
    digest: String,
    rules: Option<RuleSet>,
    flow: Option<Selector>,
    hole: Option<Selector>,
    speaker: Option<Box<dyn Speaker>>,
    /// Routes the speaker holds because we asked it to.
    applied: BTreeSet<Route>,
    errors: u64,
    last_error: Option<String>,
    /// What the last over-cap warning said, to say it once per change.
    over_cap: usize,
    /// The state a previous serve left, read at the first step.
    leftover: Option<UpstreamState>,
    started: bool,
    guard: GuardRates,
}

/// What the reply guard's routes need from one step to the next.
struct GuardRates {
    /// The guard's length counters at the last step, and when read.
    last: Option<(u64, Vec<GuardLengths>)>,
    /// Per guard slot, the highest solicited rate seen (bytes/s).
    peak_solicited: Vec<u64>,
}

fn speaker_name(c: &SpeakerConfig) -> String {
    match c {
        SpeakerConfig::Gobgp { host, port, .. } => format!("gobgp {host}:{port}"),
        SpeakerConfig::Exabgp { pipe } => format!("exabgp {pipe}"),
    }
}

fn flow_policy(c: &UpstreamConfig) -> Policy {
    Policy {
        min_pps: c.flowspec.min_pps,
        min_bps: c.flowspec.min_bps,
        sustain_ns: c.flowspec.sustain_ns,
        hold_ns: c.flowspec.hold_ns,
        max_routes: c.max_routes,
        max_changes_per_minute: c.max_changes_per_minute,
    }
}

fn hole_policy(c: &UpstreamConfig) -> Option<Policy> {
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
fn keep_or_new(old: Option<Selector>, policy: Option<Policy>) -> Option<Selector> {
    let policy = policy?;
    match old {
        Some(s) if *s.policy() == policy => Some(s),
        _ => Some(Selector::new(policy)),
    }
}

impl GuardRates {
    /// The reply guard's routes, one shape per guarded port with length
    /// counters (see `guard_routes`). An older program without them
    /// offers none.
    fn observations(
        &mut self,
        root: &PinRoot,
        iface: &str,
        rules: &RuleSet,
        hosts: &[rules::Prefix],
        now: u64,
    ) -> Vec<Observation> {
        let Some(guard) = &rules.reply_guard else {
            return Vec::new();
        };
        let Ok(lengths) = counters::guard_lengths(root, iface) else {
            return Vec::new();
        };
        if let Some((then, old)) = &self.last {
            let dt = now.saturating_sub(*then).max(1) as u128;
            for ((peak, new), old) in self.peak_solicited.iter_mut().zip(&lengths).zip(old) {
                let bytes = |l: &GuardLengths| l[1].iter().map(|t| t.bytes).sum::<u64>();
                let rate =
                    (bytes(new).saturating_sub(bytes(old)) as u128 * 1_000_000_000 / dt) as u64;
                *peak = (*peak).max(rate);
            }
        }
        let mut out = Vec::new();
        // Slots follow the guarded ports in port order (rules::compile).
        for ((port, l), peak) in guard.ports.keys().zip(&lengths).zip(&self.peak_solicited) {
            let shape = guard_routes::shape(*port, l, *peak);
            if shape.covered.packets > 0 {
                out.extend(guard_routes::observations(*port, &shape, hosts));
            }
        }
        self.last = Some((now, lengths));
        out
    }
}

impl Worker {
    pub(crate) fn new(iface: &str, rules_path: PathBuf) -> Worker {
        Worker {
            iface: iface.to_string(),
            rules_path,
            digest: String::new(),
            rules: None,
            flow: None,
            hole: None,
            speaker: None,
            applied: BTreeSet::new(),
            errors: 0,
            last_error: None,
            over_cap: 0,
            leftover: None,
            started: false,
            guard: GuardRates {
                last: None,
                peak_solicited: vec![0; GUARD_SLOTS],
            },
        }
    }

    pub(crate) fn config(&self) -> Option<&UpstreamConfig> {
        self.rules.as_ref()?.upstream.as_ref()
    }

    /// How long until the next step.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.config().map_or(1_000_000_000, |c| c.interval_ns))
    }

    /// Speaker errors since start.
    pub(crate) fn errors(&self) -> u64 {
        self.errors
    }

    /// One step: counters read, selection, speaker brought in line.
    pub(crate) fn step(&mut self, root: &PinRoot) -> anyhow::Result<UpstreamState> {
        if !self.started {
            self.started = true;
            self.leftover = state::read(root, &self.iface).ok().flatten();
        }
        let stats = stats::read_interface(root, &self.iface)?;
        if stats.rules_digest != self.digest {
            self.reconfigure(&stats.rules_digest);
        }
        let Some(config) = self.config().cloned() else {
            self.apply(&BTreeSet::new());
            return Ok(self.state(None, &Plan::default()));
        };
        let bans = top::active_bans(root, &self.iface)?;
        let hosts = sources::host_prefixes(&self.iface);
        let Some(file_rules) = self.rules.as_ref() else {
            unreachable!("a config comes from rules")
        };
        // What runs: the file's rules and serve's adaptive blocks, which
        // drop (and are counted) as rules of their own.
        let blocks = status::status(root, &self.iface)?.adaptive_blocks;
        let running = if blocks.is_empty() {
            None
        } else {
            rules::adaptive::with_blocks(file_rules, &blocks).ok()
        };
        let inp = Inputs {
            rules: running.as_ref().unwrap_or(file_rules),
            stats: &stats,
            bans: &bans,
            hosts: &hosts,
        };
        let now = monotonic_coarse_ns();
        // Ten times the cap: enough for the busiest to win, bounded for a
        // ban list of 100,000 sources.
        let mut flow_obs = sources::flowspec(&inp, config.max_routes.saturating_mul(10));
        flow_obs.extend(
            self.guard
                .observations(root, &self.iface, inp.rules, &hosts, now),
        );
        let hole_obs = config
            .blackhole
            .as_ref()
            .map(|b| sources::blackhole(&inp, b.threshold_bps()));
        let mut plan = self
            .flow
            .as_mut()
            .map_or_else(Plan::default, |s| s.step(now, flow_obs));
        // The ladder: the blackhole's sustain time counts only once FlowSpec
        // routes are announced and did not bring the drops down (or when
        // FlowSpec has nothing to offer against this attack).
        let flow_up = self.applied.iter().any(|r| matches!(r, Route::FlowSpec(_)));
        let flow_busy = self.flow.as_ref().is_some_and(Selector::active);
        let ladder_open = config
            .blackhole
            .as_ref()
            .is_none_or(|b| !b.after_flowspec || flow_up || !flow_busy);
        if let (Some(s), Some(obs), true) = (self.hole.as_mut(), hole_obs, ladder_open) {
            let p = s.step(now, obs);
            plan.announce.extend(p.announce);
            plan.withdraw.extend(p.withdraw);
        } else if let Some(s) = self.hole.as_mut() {
            // Nothing observed: a blackhole already up is held for its
            // hold time, one on its way starts its sustain time anew.
            let p = s.step(now, Vec::new());
            plan.withdraw.extend(p.withdraw);
        }
        self.log_plan(&config, &plan);
        let desired: BTreeSet<Route> = if config.dry_run {
            BTreeSet::new()
        } else {
            self.selected().map(|s| s.route.clone()).collect()
        };
        self.apply(&desired);
        Ok(self.state(Some(&config), &plan))
    }

    /// Withdraws everything announced (serve stopping).
    pub(crate) fn stop(&mut self) {
        self.apply(&BTreeSet::new());
    }

    fn selected(&self) -> impl Iterator<Item = &select::Selected> {
        self.flow
            .iter()
            .chain(self.hole.iter())
            .flat_map(|s| s.selected())
    }

    /// Takes `[upstream]` from the rule file when it is the one running
    /// (a broken file that serve refused keeps the previous settings).
    fn reconfigure(&mut self, running: &str) {
        let set = match rules::load_file(&self.rules_path) {
            Ok(set) if set.digest_hex() == running => set,
            _ => return,
        };
        self.digest = running.to_string();
        let old = self.config().cloned();
        let new = set.upstream.clone();
        let same_speaker = old.as_ref().map(|c| (&c.speaker, c.dry_run))
            == new.as_ref().map(|c| (&c.speaker, c.dry_run));
        if !same_speaker {
            // Routes go from the speaker that took them before another
            // one (or none) takes over.
            self.apply(&BTreeSet::new());
            self.speaker = new.as_ref().map(|c| speaker::connect(&c.speaker));
            self.adopt_leftover(new.as_ref());
        }
        match &new {
            Some(c) => info!(
                "upstream {}: speaker {}{}, peers {:?}",
                self.iface,
                speaker_name(&c.speaker),
                if c.dry_run {
                    " (dry run: nothing is announced)"
                } else {
                    ""
                },
                c.peers
            ),
            None if old.is_some() => info!("upstream {}: no [upstream] any more", self.iface),
            None => {}
        }
        self.flow = keep_or_new(self.flow.take(), new.as_ref().map(flow_policy));
        self.hole = keep_or_new(self.hole.take(), new.as_ref().and_then(hole_policy));
        self.rules = Some(set);
    }

    /// Routes a previous serve left on this same speaker become ours, so
    /// that the next `apply` withdraws those no longer selected.
    fn adopt_leftover(&mut self, config: Option<&UpstreamConfig>) {
        let (Some(old), Some(c)) = (self.leftover.take(), config) else {
            return;
        };
        if old.speaker == speaker_name(&c.speaker) && !old.applied.is_empty() {
            warn!(
                "upstream {}: {} routes left announced by a serve that stopped without withdrawing them: taking them over",
                self.iface,
                old.applied.len()
            );
            self.applied.extend(old.applied);
        }
    }

    fn log_plan(&mut self, config: &UpstreamConfig, plan: &Plan) {
        let dry = if config.dry_run {
            "dry run: would "
        } else {
            ""
        };
        for r in &plan.announce {
            let why = self
                .selected()
                .find(|s| &s.route == r)
                .map(|s| format!("{} at {} pps, {} bit/s", s.why, s.rate.pps, s.rate.bps))
                .unwrap_or_default();
            if matches!(r, Route::Blackhole { .. }) {
                warn!(
                    "upstream {}: BLACKHOLE: {dry}announce {r}: {why}: ALL traffic to this address will be dropped upstream",
                    self.iface
                );
            } else {
                info!("upstream {}: {dry}announce {r}: {why}", self.iface);
            }
        }
        for r in &plan.withdraw {
            info!(
                "upstream {}: {dry}withdraw {r}: below thresholds for the hold time",
                self.iface
            );
        }
        if plan.over_cap != self.over_cap && plan.over_cap > 0 {
            warn!(
                "upstream {}: {} more routes qualify than max_routes = {} allows",
                self.iface, plan.over_cap, config.max_routes
            );
        }
        self.over_cap = plan.over_cap;
        if plan.deferred > 0 {
            info!(
                "upstream {}: {} changes wait for max_changes_per_minute",
                self.iface, plan.deferred
            );
        }
    }

    /// Brings the speaker in line with `desired`: withdrawals first, then
    /// announcements; on the first error the rest waits for the next step
    /// (a speaker that is down fails every call).
    fn apply(&mut self, desired: &BTreeSet<Route>) {
        let Some(sp) = self.speaker.as_mut() else {
            return;
        };
        let gone: Vec<Route> = self.applied.difference(desired).cloned().collect();
        let new: Vec<Route> = desired.difference(&self.applied).cloned().collect();
        let ops = gone
            .into_iter()
            .map(|r| (r, false))
            .chain(new.into_iter().map(|r| (r, true)));
        for (route, add) in ops {
            let r = if add {
                sp.announce(&route)
            } else {
                sp.withdraw(&route)
            };
            match r {
                Ok(()) if add => {
                    self.applied.insert(route);
                }
                Ok(()) => {
                    self.applied.remove(&route);
                }
                Err(e) => {
                    self.errors += 1;
                    error!(
                        "upstream {}: the BGP speaker failed (the XDP filter is unaffected; retrying next step): {e}",
                        self.iface
                    );
                    self.last_error = Some(e.to_string());
                    return;
                }
            }
        }
        self.last_error = None;
    }

    fn state(&self, config: Option<&UpstreamConfig>, plan: &Plan) -> UpstreamState {
        let now = monotonic_coarse_ns();
        let routes = self
            .selected()
            .map(|s| RouteState {
                kind: s.route.kind().to_string(),
                route: s.route.to_string(),
                why: s.why.clone(),
                announced: self.applied.contains(&s.route),
                selected_for_s: now.saturating_sub(s.since_ns) as f64 / 1e9,
                pps: s.rate.pps,
                bps: s.rate.bps,
            })
            .collect();
        UpstreamState {
            interface: self.iface.clone(),
            speaker: config.map_or("none".into(), |c| speaker_name(&c.speaker)),
            peers: config.map_or_else(Vec::new, |c| c.peers.clone()),
            dry_run: config.is_some_and(|c| c.dry_run),
            updated_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            routes,
            over_cap: plan.over_cap,
            deferred: plan.deferred,
            speaker_errors: self.errors,
            last_error: self.last_error.clone(),
            applied: self.applied.iter().cloned().collect(),
        }
    }
}
