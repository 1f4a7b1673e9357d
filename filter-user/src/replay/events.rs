//! When things happened during a replay, on the capture's clock: the first
//! frame of each source dropped over its limit and the first dropped as
//! banned, and the surge blocks the adaptive layer would have started and
//! lifted (simulated from the program's per-port counters, as `serve`
//! does once a second; reported, not applied to the frames that follow).

use std::{collections::HashSet, net::IpAddr};

use filter_common::Reason;
use serde::Serialize;

use super::{clock::VirtualClock, frame::FrameFacts, result::FrameResult};
use crate::{
    filter::{
        guard::surge::{Change, Detector},
        simulator::Simulator,
    },
    rules::set::Adaptive,
};

/// Per kind, the sources named; a flood from a million forged sources
/// would otherwise make a million events.
const MAX_PER_KIND: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A source's first frame dropped over its per-source limit.
    Limit,
    /// A source's first frame dropped because it was banned.
    Ban,
    /// The adaptive layer would have blocked a UDP source port.
    SurgeBlock,
    /// ... and lifted the block.
    SurgeLift,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Event {
    /// Seconds since the capture's first frame.
    pub(crate) time_s: f64,
    /// The frame it happened at (surges: the last frame before the
    /// observation).
    pub(crate) frame: u64,
    pub(crate) kind: Kind,
    pub(crate) source: Option<IpAddr>,
    pub(crate) port: Option<u16>,
}

/// Events as frames stream past.
pub(crate) struct Events {
    seen: HashSet<(Kind, IpAddr)>,
    named: [usize; 2],
    list: Vec<Event>,
    surges: Option<Surges>,
}

struct Surges {
    cfg: Adaptive,
    detector: Detector,
    /// Program time of the next observation.
    next_ns: u64,
}

const SECOND: u64 = 1_000_000_000;

impl Events {
    /// `adaptive`: the rule file's settings, when surges are to be
    /// simulated (on the capture's clock only).
    pub(crate) fn new(adaptive: Option<&Adaptive>) -> Self {
        Events {
            seen: HashSet::new(),
            named: [0; 2],
            list: Vec::new(),
            surges: adaptive.filter(|a| a.enabled).map(|cfg| Surges {
                cfg: cfg.clone(),
                detector: Detector::default(),
                next_ns: 0,
            }),
        }
    }

    /// Looks at one received frame's verdict.
    pub(crate) fn frame(&mut self, f: &FrameResult, facts: &FrameFacts) {
        let kind = if f.reason == Reason::RateLimitDrop.name() {
            Kind::Limit
        } else if f.reason == Reason::BanDrop.name() {
            Kind::Ban
        } else {
            return;
        };
        let Some(src) = facts.src else { return };
        let n = &mut self.named[kind as usize];
        if *n >= MAX_PER_KIND || !self.seen.insert((kind, src)) {
            return;
        }
        *n += 1;
        self.list.push(Event {
            time_s: f.time_s,
            frame: f.index,
            kind,
            source: Some(src),
            port: None,
        });
    }

    /// Before a frame runs at program time `now_ns`: the surge detector's
    /// observations of every whole second that passed since the last one
    /// (`last_frame` is the last frame that ran before them).
    pub(crate) fn before(
        &mut self,
        sim: &Simulator,
        now_ns: u64,
        last_frame: u64,
    ) -> anyhow::Result<()> {
        let Some(s) = &mut self.surges else {
            return Ok(());
        };
        if s.next_ns == 0 {
            s.detector.rebase(now_ns, sim.udp_port_packets()?);
            s.next_ns = now_ns + SECOND;
            return Ok(());
        }
        if now_ns < s.next_ns {
            return Ok(());
        }
        // Counters only move when frames run: one observation covers the
        // quiet seconds in between, as the daemon's would (its rates are
        // per elapsed time).
        let at = s.next_ns + (now_ns - s.next_ns) / SECOND * SECOND;
        let unix = at / SECOND;
        for change in s
            .detector
            .observe(&s.cfg, at, unix, sim.udp_port_packets()?)
        {
            let (kind, port) = match change {
                Change::Started(b) => (Kind::SurgeBlock, b.port),
                Change::Ended(b, _) => (Kind::SurgeLift, b.port),
            };
            self.list.push(Event {
                time_s: VirtualClock::seconds(at),
                frame: last_frame,
                kind,
                source: None,
                port: Some(port),
            });
        }
        s.next_ns = at + SECOND;
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<Event> {
        self.list
    }
}
