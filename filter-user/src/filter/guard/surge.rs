//! Surge detection: packet rates per UDP source port from two snapshots of
//! the kernel's counters, the thresholds of `[adaptive]`, and the hold
//! state machine (a surge ends once its port stays under the thresholds
//! for the hold time). Plain arithmetic; `serve` feeds it once a second.

use std::collections::BTreeMap;

use crate::rules::adaptive::{Adaptive, AdaptiveBlock};

/// What changed at one observation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    Started(AdaptiveBlock),
    /// The block, and how long (ns) it lasted.
    Ended(AdaptiveBlock, u64),
}

struct Active {
    block: AdaptiveBlock,
    /// Monotonic ns of the start and of the last observation over the
    /// thresholds.
    started: u64,
    last_over: u64,
}

/// The surges of one interface.
#[derive(Default)]
pub(crate) struct Detector {
    /// Monotonic ns and packet counters of the previous observation.
    prev: Option<(u64, Vec<u64>)>,
    active: BTreeMap<u16, Active>,
}

impl Detector {
    /// Takes over blocks that already run (a restarted daemon): each is
    /// held as if its surge had just been seen.
    pub(crate) fn adopt(&mut self, blocks: &[AdaptiveBlock], now_ns: u64) {
        for b in blocks {
            self.active.insert(
                b.port,
                Active {
                    block: *b,
                    started: now_ns,
                    last_over: now_ns,
                },
            );
        }
    }

    /// Takes `packets` (read at monotonic `now_ns`) as the baseline of the
    /// next observation without judging them: before the thresholds are
    /// known, so that the first judged interval is a whole one.
    pub(crate) fn rebase(&mut self, now_ns: u64, packets: Vec<u64>) {
        self.prev = Some((now_ns, packets));
    }

    /// The surges in progress or held, by port.
    pub(crate) fn active(&self) -> Vec<AdaptiveBlock> {
        self.active.values().map(|a| a.block).collect()
    }

    /// Feeds the packet counters (one per source port, totals since the
    /// filter was loaded) read at monotonic `now_ns` and wall-clock
    /// `now_unix`; returns the surges that started and ended.
    pub(crate) fn observe(
        &mut self,
        cfg: &Adaptive,
        now_ns: u64,
        now_unix: u64,
        packets: Vec<u64>,
    ) -> Vec<Change> {
        let prev = self.prev.replace((now_ns, packets));
        let (now_packets, mut changes) = (&self.prev.as_ref().expect("just set").1, Vec::new());
        let Some((then, then_packets)) = prev else {
            return changes;
        };
        let dt = now_ns.saturating_sub(then);
        if dt == 0 || then_packets.len() != now_packets.len() {
            return changes;
        }
        // A counter that went down belongs to a filter loaded anew: its
        // whole value is what arrived since.
        let deltas: Vec<u64> = now_packets
            .iter()
            .zip(&then_packets)
            .map(|(n, t)| n.checked_sub(*t).unwrap_or(*n))
            .collect();
        let total: u64 = deltas.iter().sum();
        for (port, &d) in deltas.iter().enumerate() {
            let port = port as u16;
            let pps = (d as u128 * 1_000_000_000 / dt as u128) as u64;
            let share = if total == 0 {
                0.0
            } else {
                d as f64 / total as f64
            };
            let over = d > 0
                && pps >= cfg.min_pps
                && share >= cfg.min_share
                && !cfg.never_block.contains(&port);
            if !over {
                continue;
            }
            if let Some(a) = self.active.get_mut(&port) {
                a.last_over = now_ns;
                continue;
            }
            let block = AdaptiveBlock {
                port,
                since_unix: now_unix,
                trigger_pps: pps,
                trigger_share_percent: (share * 100.0) as u32,
            };
            self.active.insert(
                port,
                Active {
                    block,
                    started: now_ns,
                    last_over: now_ns,
                },
            );
            changes.push(Change::Started(block));
        }
        self.active.retain(|_, a| {
            let expired = now_ns.saturating_sub(a.last_over) >= cfg.hold_ns;
            if expired {
                changes.push(Change::Ended(a.block, now_ns.saturating_sub(a.started)));
            }
            !expired
        });
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::ACTION_DROP;

    const S: u64 = 1_000_000_000;

    fn cfg() -> Adaptive {
        Adaptive {
            enabled: true,
            min_pps: 1000,
            min_share: 0.5,
            action: ACTION_DROP,
            limit: 0,
            agg_interval_ns: 0,
            agg_tolerance_ns: 0,
            hold_ns: 3 * S,
            never_block: vec![53],
        }
    }

    /// Counters with `per_port` packets added to each given port.
    fn add(c: &mut [u64], per_port: &[(u16, u64)]) -> Vec<u64> {
        for &(p, n) in per_port {
            c[p as usize] += n;
        }
        c.to_vec()
    }

    #[test]
    fn a_surge_starts_holds_and_ends_after_the_hold_time() {
        let (cfg, mut d, mut c) = (cfg(), Detector::default(), vec![0u64; 65536]);
        assert!(d.observe(&cfg, 0, 100, c.clone()).is_empty(), "baseline");
        // Background traffic on many ports, under every threshold.
        let background: Vec<(u16, u64)> = (40000..40100).map(|p| (p, 5)).collect();
        assert!(d.observe(&cfg, S, 101, add(&mut c, &background)).is_empty());
        let flood = [(33848, 20_000)];
        let ch = d.observe(&cfg, 2 * S, 102, add(&mut c, &[flood[0], (40000, 5)]));
        assert_eq!(ch.len(), 1, "{ch:?}");
        let Change::Started(b) = ch[0] else {
            panic!("{ch:?}")
        };
        assert_eq!((b.port, b.since_unix, b.trigger_pps), (33848, 102, 20_000));
        assert_eq!(b.trigger_share_percent, 99, "{b:?}");
        // Still flooding: no change, still active; the flood stops at 4 s.
        assert!(d.observe(&cfg, 3 * S, 103, add(&mut c, &flood)).is_empty());
        assert!(d.observe(&cfg, 4 * S, 104, add(&mut c, &flood)).is_empty());
        for t in 5..7 {
            assert!(
                d.observe(&cfg, t * S, 100 + t, add(&mut c, &background))
                    .is_empty()
            );
            assert_eq!(d.active().len(), 1, "held at {t} s");
        }
        let ch = d.observe(&cfg, 7 * S, 107, add(&mut c, &background));
        assert!(
            matches!(ch[..], [Change::Ended(b, lasted)] if b.port == 33848 && lasted == 5 * S),
            "{ch:?}"
        );
        assert!(d.active().is_empty());
    }

    #[test]
    fn both_thresholds_and_the_never_block_list_apply() {
        let (cfg, mut d, mut c) = (cfg(), Detector::default(), vec![0u64; 65536]);
        d.observe(&cfg, 0, 0, c.clone());
        // Fast but a small share: many ports at 1500 pps each.
        let wide: Vec<(u16, u64)> = (1000..1010).map(|p| (p, 1500)).collect();
        assert!(d.observe(&cfg, S, 1, add(&mut c, &wide)).is_empty());
        // All of the UDP, but slow.
        assert!(
            d.observe(&cfg, 2 * S, 2, add(&mut c, &[(7, 900)]))
                .is_empty()
        );
        // Fast and alone, but never blocked.
        assert!(
            d.observe(&cfg, 3 * S, 3, add(&mut c, &[(53, 90_000)]))
                .is_empty()
        );
        // The rate is per second of the interval, not per observation.
        let ch = d.observe(&cfg, 5 * S, 5, add(&mut c, &[(7, 1_800)]));
        assert!(ch.is_empty(), "1800 packets in 2 s are 900 pps: {ch:?}");
        let ch = d.observe(&cfg, 6 * S, 6, add(&mut c, &[(7, 1_800)]));
        assert!(
            matches!(ch[..], [Change::Started(b)] if b.trigger_pps == 1800),
            "{ch:?}"
        );
    }

    #[test]
    fn counters_reset_by_a_new_load_and_adopted_blocks() {
        let (cfg, mut d) = (cfg(), Detector::default());
        let mut c = vec![0u64; 65536];
        c[9] = 1_000_000;
        d.observe(&cfg, 0, 0, c.clone());
        let mut fresh = vec![0u64; 65536];
        fresh[9] = 10;
        assert!(
            d.observe(&cfg, S, 1, fresh.clone()).is_empty(),
            "10 pps after a reset"
        );
        let kept = AdaptiveBlock {
            port: 5,
            since_unix: 7,
            trigger_pps: 1,
            trigger_share_percent: 100,
        };
        d.adopt(&[kept], S);
        d.rebase(S, fresh.clone());
        assert_eq!(d.active(), vec![kept]);
        let ch = d.observe(&cfg, 4 * S, 4, fresh);
        assert!(
            matches!(ch[..], [Change::Ended(b, _)] if b == kept),
            "{ch:?}"
        );
    }
}
