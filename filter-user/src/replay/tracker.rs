//! Which counters one run of the program moved: its reason, and its rule.

use anyhow::{anyhow, bail};
use filter_common::{ACTION_DROP, ACTION_LIMIT, ACTION_PASS, REASON_COUNT, Reason};

use super::report::action_name;
use crate::{
    filter::{
        observe::stats::Totals,
        simulator::{Simulator, XDP_DROP},
    },
    rules::{Mode, RuleSet},
};

/// What one run of the program did, read from its counters.
pub(crate) struct Verdict {
    pub(crate) reason: Reason,
    pub(crate) rule: Option<usize>,
    /// Bytes the program saw (its own `data_end - data`).
    pub(crate) seen: u64,
}

/// Finds which reason (and rule) counter one run moved, reading as few
/// per-CPU counters as it can: exactly one reason counter moves per frame,
/// so it reads the previous frame's reason first (a flood is mostly one
/// kind of frame), then only the reasons that fit the action, and stops at
/// the first that moved. Rule counters are read only for reasons a rule
/// can lead to, and only those of rules with a fitting action. `verify`
/// checks every counter at the end.
pub(crate) struct Tracker {
    monitor: bool,
    /// Last value read of each reason counter.
    reasons: [Totals; REASON_COUNT as usize],
    /// Last packet count read of each rule.
    rules: Vec<u64>,
    /// Rule indexes by action (ACTION_PASS, ACTION_DROP, ACTION_LIMIT).
    by_action: [Vec<usize>; 3],
    last_reason: Reason,
    last_rule: [Option<usize>; 3],
}

impl Tracker {
    pub(crate) fn new(runner: &Simulator, set: &RuleSet) -> anyhow::Result<Self> {
        let mut by_action: [Vec<usize>; 3] = Default::default();
        for (i, spec) in set.rules.iter().enumerate() {
            if let Some(v) = by_action.get_mut(usize::from(spec.rule.action)) {
                v.push(i);
            }
        }
        let mut reasons = [Totals::default(); REASON_COUNT as usize];
        for (slot, t) in reasons.iter_mut().zip(runner.reasons()?) {
            *slot = t;
        }
        let rules = (0..set.rules.len() as u32)
            .map(|i| Ok(runner.rule(i)?.packets))
            .collect::<anyhow::Result<_>>()?;
        Ok(Tracker {
            monitor: set.mode == Mode::Monitor,
            reasons,
            rules,
            by_action,
            last_reason: Reason::Pass,
            last_rule: [None; 3],
        })
    }

    /// The bytes counted under `r` since it was last read, if it moved.
    fn moved(&mut self, runner: &Simulator, r: Reason) -> anyhow::Result<Option<u64>> {
        let now = runner.reason(r)?;
        let old = std::mem::replace(&mut self.reasons[r as usize], now);
        Ok((now.packets != old.packets).then(|| now.bytes.wrapping_sub(old.bytes)))
    }

    pub(crate) fn after_run(&mut self, runner: &Simulator, action: u32) -> anyhow::Result<Verdict> {
        // In enforce mode the action tells drop reasons from pass reasons;
        // in monitor mode every frame passes.
        let monitor = self.monitor;
        let fits = |r: Reason| monitor || r.drops() == (action == XDP_DROP);
        let order = std::iter::once(self.last_reason)
            .chain(Reason::ALL.into_iter().filter(|r| *r != self.last_reason))
            .filter(|r| fits(*r));
        let mut found = None;
        for r in order.collect::<Vec<_>>() {
            if let Some(seen) = self.moved(runner, r)? {
                found = Some((r, seen));
                break;
            }
        }
        let (reason, seen) = found
            .ok_or_else(|| anyhow!("no reason counter moved for action {}", action_name(action)))?;
        self.last_reason = reason;
        let class = match reason {
            Reason::RulePass => ACTION_PASS,
            Reason::RuleDrop => ACTION_DROP,
            // A reply the host asked for still meets the limit rules (their
            // aggregate limits, their counters).
            Reason::Pass
            | Reason::RateLimitDrop
            | Reason::AggregateDrop
            | Reason::SolicitedReply => ACTION_LIMIT,
            _ => {
                return Ok(Verdict {
                    reason,
                    rule: None,
                    seen,
                });
            }
        };
        let rule = self.moved_rule(runner, class)?;
        if rule.is_none() && class != ACTION_LIMIT {
            bail!("reason {} but no rule counter moved", reason.name());
        }
        Ok(Verdict { reason, rule, seen })
    }

    /// The rule of `class` (an action) whose counter moved, if any.
    fn moved_rule(&mut self, runner: &Simulator, class: u8) -> anyhow::Result<Option<usize>> {
        let class = usize::from(class);
        let last = self.last_rule[class];
        let order = last.into_iter().chain(
            self.by_action[class]
                .iter()
                .copied()
                .filter(|i| Some(*i) != last),
        );
        for i in order.collect::<Vec<_>>() {
            let now = runner.rule(i as u32)?.packets;
            let old = std::mem::replace(&mut self.rules[i], now);
            if now != old {
                self.last_rule[class] = Some(i);
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Every counter against what was read frame by frame: a frame that
    /// moved two counters, or one that was not looked at, shows here.
    pub(crate) fn verify(&self, runner: &Simulator) -> anyhow::Result<()> {
        for (r, t) in Reason::ALL.iter().zip(runner.reasons()?) {
            let seen = self.reasons[*r as usize];
            if t != seen {
                bail!(
                    "internal error: the {} counter says {} frames, the replay saw {}",
                    r.name(),
                    t.packets,
                    seen.packets
                );
            }
        }
        for (i, seen) in self.rules.iter().enumerate() {
            let t = runner.rule(i as u32)?;
            if t.packets != *seen {
                bail!(
                    "internal error: rule {i} counter says {} frames, the replay saw {seen}",
                    t.packets
                );
            }
        }
        Ok(())
    }
}
