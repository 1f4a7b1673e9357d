//! Upstream mitigation: when the uplink itself fills, ask the routers in
//! front of this host to drop. Each step reads the running filter's
//! counters, selects the drop decisions worth a route (`select`), turns
//! them into FlowSpec or blackhole routes (`sources`, `routes`) and has an
//! existing BGP speaker announce or withdraw them (`speaker`); `state`
//! records what is announced, why and until when. One process at a time
//! acts on an interface's routes (`handover`): serve, or the keeper it
//! leaves to withdraw them on time if it is killed (`keeper`). The XDP
//! filter never depends on any of it: a broken speaker is an error here and
//! nothing more.

pub mod guard_routes;
pub mod handover;
pub mod import;
pub mod keeper;
mod policies;
pub mod routes;
pub mod select;
pub mod sources;
pub mod speaker;
pub mod state;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use log::{error, info, warn};

use self::{
    guard_routes::GuardRates,
    handover::{Adoption, Lock, TakeOver},
    policies::{flow_policy, hole_policy, keep_or_new},
    routes::Route,
    select::{Plan, Selector},
    sources::Inputs,
    speaker::Speaker,
    state::{Held, Owner, Role, RouteState, UpstreamState},
};
use filter_common::GUARD_SLOTS;

use crate::{
    filter::observe::{stats, status, top},
    rules::{self, RuleSet, upstream::UpstreamConfig},
    state::PinRoot,
    sys::monotonic_coarse_ns,
};

/// The upstream side of one watched interface, stepped by `serve`.
pub struct Worker {
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
    /// Whether this worker acts on the interface's routes.
    hold: Hold,
    /// This serve, as the state file names its owner.
    me: Owner,
    guard: GuardRates,
}

/// Whether a worker acts on its interface's routes (see `handover`).
enum Hold {
    /// Not yet: it has not tried, or another process holds the lock (what
    /// was said about it, to say it once).
    Waiting(Option<String>),
    Locked(Lock),
    /// The lock could not be made (no writable /run/filterctl): it acts
    /// anyway, as serve did before the lock, and nothing keeps its routes
    /// if it is killed.
    Unlocked,
}

impl Worker {
    pub fn new(iface: &str, rules_path: PathBuf) -> Worker {
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
            hold: Hold::Waiting(None),
            me: Owner::me(Role::Serve),
            guard: GuardRates {
                last: None,
                peak_solicited: vec![0; GUARD_SLOTS],
            },
        }
    }

    pub fn config(&self) -> Option<&UpstreamConfig> {
        self.rules.as_ref()?.upstream.as_ref()
    }

    /// How long until the next step.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.config().map_or(1_000_000_000, |c| c.interval_ns))
    }

    /// Speaker errors since start.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Whether this worker's serve should have a keeper running: it holds
    /// the lock and routes are announced.
    pub fn needs_keeper(&self) -> bool {
        matches!(self.hold, Hold::Locked(_)) && !self.applied.is_empty()
    }

    /// One step: counters read, selection, speaker brought in line. None
    /// while another process acts on the interface's routes, or nothing
    /// upstream is configured or left to act on.
    pub fn step(&mut self, root: &PinRoot) -> anyhow::Result<Option<UpstreamState>> {
        let stats = stats::read_interface(root, &self.iface)?;
        if stats.rules_digest != self.digest {
            self.reconfigure(&stats.rules_digest);
        }
        if matches!(self.hold, Hold::Waiting(_)) && !self.take_over(root) {
            return Ok(None);
        }
        let Some(config) = self.config().cloned() else {
            self.apply(&BTreeSet::new());
            return Ok(Some(self.state(None, &Plan::default())));
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
        Ok(Some(self.state(Some(&config), &plan)))
    }

    /// Serve stopping: withdraws everything announced and lets go of the
    /// lock. What the speaker would not withdraw stays in the state file,
    /// due at once, for the keeper or the next serve; otherwise the file
    /// goes. Returns how many routes stay.
    pub fn finish(mut self, root: &PinRoot) -> usize {
        if matches!(self.hold, Hold::Waiting(_)) {
            // Another process's routes and file.
            return 0;
        }
        self.apply(&BTreeSet::new());
        let left = self.applied.len();
        if left == 0 {
            state::remove(root, &self.iface);
            if let Hold::Locked(lock) = self.hold {
                lock.release(true);
            }
            return left;
        }
        let config = self.config().cloned();
        let mut s = self.state(config.as_ref(), &Plan::default());
        let now = monotonic_coarse_ns();
        for h in &mut s.applied {
            h.deadline_ns = now;
        }
        if let Err(e) = state::write(root, &s) {
            error!(
                "upstream {}: {left} routes not withdrawn, and the state file that would say so cannot be written: {e}",
                self.iface
            );
        }
        left
    }

    /// Takes the lock of the interface's routes, and the routes a serve
    /// before this one left; false while another process holds it, or
    /// while there is nothing to act on.
    fn take_over(&mut self, root: &PinRoot) -> bool {
        // What becomes of leftovers is the running rule set's to say: wait
        // until it is read.
        if self.rules.is_none() {
            return false;
        }
        let left = state::read(root, &self.iface).ok().flatten();
        if self.config().is_none() && left.is_none() {
            return false;
        }
        let path = state::lock_path(root, &self.iface);
        match handover::take_over(&path, left.and_then(|s| s.owner)) {
            Ok(TakeOver::Taken(lock)) => self.hold = Hold::Locked(lock),
            Ok(TakeOver::Busy(who)) => {
                if !matches!(&self.hold, Hold::Waiting(Some(said)) if *said == who) {
                    info!(
                        "upstream {}: {who} holds {}: this serve acts on the routes once it lets go",
                        self.iface,
                        path.display()
                    );
                }
                self.hold = Hold::Waiting(Some(who));
                return false;
            }
            Err(e) => {
                warn!(
                    "upstream {}: cannot take {}: {e}: nothing withdraws the routes if this serve is killed",
                    self.iface,
                    path.display()
                );
                self.hold = Hold::Unlocked;
            }
        }
        // Read again: a keeper may have withdrawn some since.
        match state::read(root, &self.iface) {
            Ok(left) => self.adopt(left),
            Err(e) => warn!(
                "upstream {}: {e:#}: routes a serve before this one left, if any, stay announced",
                self.iface
            ),
        }
        true
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
        }
        match &new {
            Some(c) => info!(
                "upstream {}: speaker {}{}, peers {:?}",
                self.iface,
                speaker::name(&c.speaker),
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

    /// The routes a serve before this one left (see `handover::adoption`):
    /// kept on this speaker, each selected until its deadline, so that the
    /// router sees no withdrawal while their floods go on; or withdrawn
    /// through the speaker that holds them.
    fn adopt(&mut self, left: Option<UpstreamState>) {
        let Some(left) = left else {
            return;
        };
        match handover::adoption(&left, self.config()) {
            Adoption::Nothing => {}
            Adoption::Keep(held) => {
                warn!(
                    "upstream {}: {} routes left announced by a serve that stopped without withdrawing them: taking them over, each withdrawn at its deadline unless its flood goes on",
                    self.iface,
                    held.len()
                );
                let now = monotonic_coarse_ns();
                for h in held {
                    let text = h.route.to_string();
                    let why = left.routes.iter().find(|r| r.route == text).map_or_else(
                        || "announced by a serve before".to_string(),
                        |r| r.why.clone(),
                    );
                    let selector = match h.route {
                        Route::FlowSpec(_) => self.flow.as_mut(),
                        Route::Blackhole { .. } => self.hole.as_mut(),
                    };
                    // Without a selector for its kind any more (the rule
                    // file dropped [upstream.blackhole]), the next `apply`
                    // withdraws it.
                    if let Some(s) = selector {
                        s.adopt(h.route.clone(), why, h.deadline_ns, now);
                    }
                    self.applied.insert(h.route);
                }
            }
            Adoption::Withdraw(old, routes) => {
                warn!(
                    "upstream {}: {} routes left announced through {} by a serve that stopped without withdrawing them: withdrawing them, the rule file no longer announces through it",
                    self.iface,
                    routes.len(),
                    speaker::name(&old)
                );
                let mut sp = speaker::connect(&old);
                for r in routes {
                    if let Err(e) = sp.withdraw(&r) {
                        self.errors += 1;
                        error!("upstream {}: cannot withdraw {r}: {e}", self.iface);
                    }
                }
            }
            Adoption::Unknown(name, routes) => warn!(
                "upstream {}: {} routes left announced through {name} by a serve that stopped without withdrawing them: this serve does not drive that speaker, withdraw them there",
                self.iface,
                routes.len()
            ),
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
            speaker: config.map_or("none".into(), |c| speaker::name(&c.speaker)),
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
            applied: self.held(now),
            speaker_config: config.map(|c| c.speaker.clone()),
            owner: Some(self.me),
        }
    }

    /// What the speaker holds, each route due at its selection's deadline;
    /// one no longer selected (its withdrawal failed) at once.
    fn held(&self, now: u64) -> Vec<Held> {
        self.applied
            .iter()
            .map(|r| Held {
                route: r.clone(),
                deadline_ns: self
                    .flow
                    .iter()
                    .chain(self.hole.iter())
                    .find_map(|s| s.deadline(r))
                    .unwrap_or(now),
            })
            .collect()
    }
}
