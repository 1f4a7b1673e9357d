//! `replay --against OLD`: the same capture through the running rules and
//! the proposed ones, frame by frame in one pass, and what the change
//! would newly drop and newly pass.

use std::collections::BTreeMap;

use serde::Serialize;

use super::result::FrameResult;

/// Frames listed one by one; past this only counted (a rule change that
/// flips a whole flood would list every frame of it).
const MAX_LISTED: usize = 10_000;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) action: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) rule: Option<String>,
}

impl Verdict {
    fn of(f: &FrameResult) -> Verdict {
        Verdict {
            action: f.action,
            reason: f.reason,
            rule: f.rule.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Changed {
    pub(crate) index: u64,
    pub(crate) time_s: f64,
    pub(crate) old: Verdict,
    pub(crate) new: Verdict,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Pair {
    pub(crate) old: u64,
    pub(crate) new: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Changes {
    pub(crate) old_rules: String,
    /// Passed by the old rules, dropped by the new.
    pub(crate) newly_dropped: u64,
    /// Dropped by the old rules, passed by the new.
    pub(crate) newly_passed: u64,
    /// Same action, another reason or rule.
    pub(crate) reason_changed: u64,
    /// Every received frame whose verdict changes, in capture order (the
    /// first [`MAX_LISTED`]).
    pub(crate) frames: Vec<Changed>,
    pub(crate) frames_not_listed: u64,
    /// Frames per reason and per rule where the two differ.
    pub(crate) reasons: BTreeMap<&'static str, Pair>,
    pub(crate) rules: BTreeMap<String, Pair>,
}

impl Changes {
    pub(crate) fn new(old_rules: String) -> Self {
        Changes {
            old_rules,
            ..Changes::default()
        }
    }

    /// One received frame as the old and the new rules judged it.
    pub(crate) fn add(&mut self, old: &FrameResult, new: &FrameResult) {
        if !new.judged() {
            return;
        }
        self.reasons.entry(old.reason).or_default().old += 1;
        self.reasons.entry(new.reason).or_default().new += 1;
        if let Some(r) = &old.rule {
            self.rules.entry(r.clone()).or_default().old += 1;
        }
        if let Some(r) = &new.rule {
            self.rules.entry(r.clone()).or_default().new += 1;
        }
        let (o, n) = (Verdict::of(old), Verdict::of(new));
        if o == n {
            return;
        }
        match (old.dropped(), new.dropped()) {
            (false, true) => self.newly_dropped += 1,
            (true, false) => self.newly_passed += 1,
            _ => self.reason_changed += 1,
        }
        if self.frames.len() < MAX_LISTED {
            self.frames.push(Changed {
                index: new.index,
                time_s: new.time_s,
                old: o,
                new: n,
            });
        } else {
            self.frames_not_listed += 1;
        }
    }

    /// Keeps only the reasons and rules whose counts differ.
    pub(crate) fn finish(mut self) -> Self {
        self.reasons.retain(|_, p| p.old != p.new);
        self.rules.retain(|_, p| p.old != p.new);
        self
    }
}
