//! Surge detection: frame rates per UDP source port from two snapshots of
//! the kernel's counters, each port's normal rate learned from them, the
//! thresholds of `[adaptive]`, and the hold state machine (a surge ends
//! once its port stays under the thresholds for the hold time). Plain
//! arithmetic; `serve` feeds it once a second.
//!
//! A port surges when it brings at least `min_pps` and either `min_rise`
//! times its own normal rate (the rise rule: each vector of a flood of
//! several at once is judged on its own, whatever its share) or `min_share`
//! of the interface's UDP with at least `min_pps` over its normal (the share
//! rule: a flood on a port that is busy anyway). A port's normal rate is
//! the exponentially weighted mean of its rates with time constant `learn`,
//! learned while the port has no surge; a port that is heavy all along is
//! normal, not a surge.

use std::collections::BTreeMap;

use crate::rules::adaptive::{Adaptive, AdaptiveBlock};

/// How long the normal rates learn (at most `learn`) before the rise rule
/// applies: until then every port's normal is 0, and a port that is heavy
/// all along would be taken for a surge. Until then the share rule alone
/// judges, as it did before normal rates were learned.
pub(crate) const WARM_UP_NS: u64 = 60_000_000_000;

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
    /// Monotonic ns and frame counters of the previous observation.
    prev: Option<(u64, Vec<u64>)>,
    active: BTreeMap<u16, Active>,
    /// Each port's normal rate (frames/s), learned while it has no surge.
    normal: Vec<f64>,
    /// The time (ns) the judged observations covered: how long the normal
    /// rates have been learning.
    learned_ns: u64,
}

/// Which rule says that a port's rate is a surge, if one does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// `min_rise` times its normal rate.
    Rise,
    /// `min_share` of the UDP, `min_pps` over its normal rate.
    Share,
}

/// Judges one port's rate `pps` (frames/s), its `share` of the interface's
/// UDP and its `normal` rate; `warm`: whether the normal rates have learned
/// long enough for the rise rule.
pub(crate) fn judge(cfg: &Adaptive, pps: u64, share: f64, normal: f64, warm: bool) -> Option<Why> {
    if pps < cfg.min_pps {
        return None;
    }
    let rate = pps as f64;
    if warm && rate >= cfg.min_rise as f64 * normal {
        return Some(Why::Rise);
    }
    (share >= cfg.min_share && rate - normal >= cfg.min_pps as f64).then_some(Why::Share)
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

    /// The normal rate (frames/s) learned for `port`; a port in surge keeps
    /// the one it had when the surge started.
    pub(crate) fn normal_pps(&self, port: u16) -> u64 {
        self.normal
            .get(port as usize)
            .map_or(0, |n| n.round() as u64)
    }

    /// Feeds the frame counters (one per source port, totals since the
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
        let rates: Vec<u64> = now_packets
            .iter()
            .zip(&then_packets)
            .map(|(n, t)| n.checked_sub(*t).unwrap_or(*n))
            .map(|d| (d as u128 * 1_000_000_000 / dt as u128) as u64)
            .collect();
        if self.normal.len() != rates.len() {
            self.normal = vec![0.0; rates.len()];
        }
        let total: u64 = rates.iter().sum();
        let warm = self.learned_ns >= cfg.learn_ns.min(WARM_UP_NS);
        for (port, &pps) in rates.iter().enumerate() {
            let port = port as u16;
            let share = if total == 0 {
                0.0
            } else {
                pps as f64 / total as f64
            };
            let normal = self.normal[port as usize];
            if judge(cfg, pps, share, normal, warm).is_none() || cfg.never_block.contains(&port) {
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
        self.learn(cfg, dt, &rates);
        changes
    }

    /// Moves each normal rate towards the rate just seen, but not the
    /// normal of a port in surge: a flood that lasts is not learned. Until
    /// `learn` has passed, the mean of all that was seen (so that the first
    /// seconds are not taken for zero), then a mean with weights that decay
    /// with time constant `learn`. After the warm-up a rate counts for at
    /// most twice the normal (plus the rise that `min_pps` needs from 0): a
    /// normal grows at most e-fold per `learn`, so a flood that ramps up
    /// faster outgrows `min_rise` times it.
    fn learn(&mut self, cfg: &Adaptive, dt: u64, rates: &[u64]) {
        let warm = self.learned_ns >= cfg.learn_ns.min(WARM_UP_NS);
        let floor = cfg.min_pps as f64 / cfg.min_rise.max(1) as f64;
        self.learned_ns = self.learned_ns.saturating_add(dt);
        let span = self.learned_ns.min(cfg.learn_ns.max(1));
        let weight = (dt as f64 / span as f64).min(1.0);
        for (port, (normal, &pps)) in self.normal.iter_mut().zip(rates).enumerate() {
            if self.active.contains_key(&(port as u16)) {
                continue;
            }
            let mut rate = pps as f64;
            if warm {
                rate = rate.min(2.0 * *normal + floor);
            }
            *normal += weight * (rate - *normal);
        }
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
            min_rise: 8,
            learn_ns: 10 * S,
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

    /// Feeds `rates` (port, frames/s), from `t` s on, one observation a
    /// second for `secs`; the changes, by the second they came at.
    fn feed(
        d: &mut Detector,
        cfg: &Adaptive,
        c: &mut [u64],
        t: &mut u64,
        secs: u64,
        rates: &[(u16, u64)],
    ) -> Vec<(u64, Change)> {
        let mut all = Vec::new();
        for _ in 0..secs {
            *t += 1;
            let ch = d.observe(cfg, *t * S, *t, add(c, rates));
            all.extend(ch.into_iter().map(|c| (*t, c)));
        }
        all
    }

    fn started(changes: &[(u64, Change)]) -> Vec<(u64, u16)> {
        changes
            .iter()
            .filter_map(|(t, c)| match c {
                Change::Started(b) => Some((*t, b.port)),
                Change::Ended(..) => None,
            })
            .collect()
    }

    /// The ports of a legitimate background: 100 ports at `each` frames/s.
    fn background(each: u64) -> Vec<(u16, u64)> {
        (40000..40100).map(|p| (p, each)).collect()
    }

    #[test]
    fn a_mix_of_three_vectors_is_found_as_soon_as_one_vector_alone() {
        let cfg = cfg();
        // Each warmed up for 20 s (learn is 10 s) on the same background,
        // then flooded: by one port, or by three at a third of the flood
        // each.
        let run = |vectors: &[u16]| {
            let (mut d, mut c, mut t) = (Detector::default(), vec![0u64; 65536], 0);
            d.observe(&cfg, 0, 0, c.clone());
            let quiet = background(20);
            assert!(feed(&mut d, &cfg, &mut c, &mut t, 20, &quiet).is_empty());
            let mut flood = quiet.clone();
            flood.extend(vectors.iter().map(|&p| (p, 6_000 / vectors.len() as u64)));
            let from = t + 1;
            let got = started(&feed(&mut d, &cfg, &mut c, &mut t, 5, &flood));
            let mut ports: Vec<u16> = got.iter().map(|&(_, p)| p).collect();
            ports.sort();
            assert_eq!(ports, vectors, "{got:?}");
            // Observations until the last vector was found.
            got.iter().map(|&(at, _)| at - from + 1).max().unwrap()
        };
        let single = run(&[33848]);
        let mix = run(&[161, 5683, 11211]);
        assert_eq!((single, mix), (1, 1), "observations to find them");
        // Before the warm-up, the share rule alone judges, as the detector
        // did before it learned normal rates: a third of the UDP is not
        // enough.
        let (mut d, mut c, mut t) = (Detector::default(), vec![0u64; 65536], 0);
        d.observe(&cfg, 0, 0, c.clone());
        let mix = [(161, 2_000), (5683, 2_000), (11211, 2_000)];
        let got = feed(&mut d, &cfg, &mut c, &mut t, 8, &mix);
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn a_mix_ramped_up_faster_than_a_normal_may_grow_is_found() {
        let cfg = cfg();
        let (mut d, mut c, mut t) = (Detector::default(), vec![0u64; 65536], 0);
        d.observe(&cfg, 0, 0, c.clone());
        feed(&mut d, &cfg, &mut c, &mut t, 20, &background(20));
        // Three vectors, each doubling every 2 s from 100 frames/s: a
        // normal that followed every rate would stay within 5 times them.
        let mut found = Vec::new();
        let mut rate = 100.0f64;
        while found.len() < 3 && rate < 1e6 {
            let mut r = background(20);
            r.extend([161, 5683, 11211].map(|p| (p, rate as u64)));
            found.extend(started(&feed(&mut d, &cfg, &mut c, &mut t, 1, &r)));
            rate *= std::f64::consts::SQRT_2;
        }
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(rate < 20_000.0, "found at {rate} frames/s each: {found:?}");
    }

    #[test]
    fn a_steady_heavy_port_is_normal_and_a_flood_on_top_of_it_is_not() {
        let cfg = Adaptive {
            never_block: Vec::new(),
            min_pps: 20_000,
            ..cfg()
        };
        let (mut d, mut c, mut t) = (Detector::default(), vec![0u64; 65536], 0);
        d.observe(&cfg, 0, 0, c.clone());
        // A busy DNS server's own traffic from port 53: 30,000 frames/s,
        // wobbling by a fifth, 40% of the UDP; then the other traffic
        // falls away (night) and its share goes to 75%, over min_share.
        let dns = |i: u64, rest: u64| {
            let mut r = background(rest);
            r.push((53, 30_000 + (i % 5) * 1_500 - 3_000));
            r
        };
        for i in 0..60 {
            let ch = feed(&mut d, &cfg, &mut c, &mut t, 1, &dns(i, 450));
            assert!(ch.is_empty(), "at {t} s: {ch:?}");
        }
        for i in 0..60 {
            let ch = feed(&mut d, &cfg, &mut c, &mut t, 1, &dns(i, 100));
            assert!(ch.is_empty(), "at {t} s, 75% of the UDP: {ch:?}");
        }
        let normal = d.normal_pps(53);
        assert!((27_000..=33_000).contains(&normal), "normal {normal}");
        // A reflection flood from 53 on top: 40,000 frames/s more.
        let mut flood = dns(0, 100);
        flood[100].1 += 40_000;
        let ch = feed(&mut d, &cfg, &mut c, &mut t, 1, &flood);
        assert!(
            matches!(&ch[..], [(_, Change::Started(b))] if b.port == 53),
            "{ch:?}"
        );
        assert_eq!(d.normal_pps(53), normal, "a surge is not learned");
    }

    #[test]
    fn a_fragmented_flood_under_min_pps_by_first_fragments_is_found() {
        use filter_common::frags::datagram_frames;
        let cfg = Adaptive {
            min_pps: 20_000,
            ..cfg()
        };
        // 13,000 CLDAP answers/s of 3,000 bytes, in 3 fragments each of a
        // 1500-byte MTU; the kernel counts a first fragment for them all.
        let datagrams = 13_000;
        let frames = datagrams * datagram_frames(3_008, 1_480);
        assert_eq!(frames, 39_000);
        for (counted, found) in [(datagrams, false), (frames, true)] {
            let (mut d, mut c, mut t) = (Detector::default(), vec![0u64; 65536], 0);
            d.observe(&cfg, 0, 0, c.clone());
            feed(&mut d, &cfg, &mut c, &mut t, 20, &background(20));
            let got = started(&feed(&mut d, &cfg, &mut c, &mut t, 3, &[(389, counted)]));
            assert_eq!(got == [(21, 389)], found, "{counted}/s: {got:?}");
        }
    }

    #[test]
    fn the_rise_rule_waits_for_the_warm_up() {
        let cfg = cfg();
        let (mut d, mut c, mut t) = (Detector::default(), vec![0u64; 65536], 0);
        d.observe(&cfg, 0, 0, c.clone());
        // A heavy port (a third of the UDP) from the start: normal, not a
        // surge, though its normal was 0 at first.
        let mut heavy = background(40);
        heavy.push((9000, 2_000));
        let got = feed(&mut d, &cfg, &mut c, &mut t, 30, &heavy);
        assert!(got.is_empty(), "{got:?}");
        assert!(d.normal_pps(9000) > 1_900, "{}", d.normal_pps(9000));
        // With a warm-up of 3 s (learn = 3s), a vector from 10 s on is
        // found by the rise rule at once.
        let short = Adaptive {
            learn_ns: 3 * S,
            ..cfg.clone()
        };
        let (mut d, mut c, mut t) = (Detector::default(), vec![0u64; 65536], 0);
        d.observe(&short, 0, 0, c.clone());
        feed(&mut d, &short, &mut c, &mut t, 10, &background(40));
        let mut flood = background(40);
        flood.push((161, 2_000));
        let got = started(&feed(&mut d, &short, &mut c, &mut t, 2, &flood));
        assert_eq!(got, [(11, 161)]);
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
