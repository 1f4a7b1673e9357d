//! FlowSpec routes for what the reply guard drops: per guarded source port,
//! a route to this host's addresses shaped so that the routers drop what
//! the host never asked for and keep what it did. From the program's
//! per-port length counters of solicited and unsolicited replies
//! (`CpuCounters::guard_lengths`, totals since the filter loaded):
//!
//! - the host never received a solicited reply from the port: it is no
//!   client of it, and the route discards the port;
//! - it did: the route discards only lengths above the longest solicited
//!   reply seen, when those hold nearly all the flood's bytes (NTP time
//!   replies are 90-byte frames, NTS-authenticated ones a few hundred,
//!   monlist replies 482);
//! - the flood overlaps the host's own answers: a rate limit, the last
//!   choice, at several times the solicited rate seen.
//!
//! Never a plain discard of a port the host uses. Plain values in, routes
//! and their reasons out: tested without a kernel.

use filter_common::{FAMILY_V4, GUARD_LEN_BUCKETS, GUARD_LEN_SHIFT, IPPROTO_UDP};

use super::{
    routes::{Action, FlowSpec, Route, Span},
    select::Observation,
};
use crate::{
    filter::observe::{
        counters::{self, GuardLengths},
        stats::Totals,
    },
    rules::{Prefix, RuleSet},
    state::PinRoot,
};

/// Share of the flood's bytes a length cut must keep in the route.
const MIN_COVER: f64 = 0.99;
/// A rate limit's bytes/s: this many times the peak solicited rate seen,
/// and at least [`MIN_RATE`] (100 kbit/s).
const RATE_HEADROOM: u64 = 4;
const MIN_RATE: u64 = 12_500;
/// Frame bytes before the IP header (an untagged Ethernet frame; a tagged
/// one is 4 longer, so its IP lengths lie further below the cut).
const ETH_HLEN: u32 = 14;

const UNSOLICITED: usize = 0;
const SOLICITED: usize = 1;

/// What the route for one port does, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) action: Action,
    /// Frames of at least this many bytes, when the route cuts by length.
    min_frame: Option<u32>,
    pub(crate) why: String,
    /// The unsolicited traffic the route covers (cumulative).
    pub(crate) covered: Totals,
}

fn sum(buckets: &[Totals]) -> Totals {
    buckets.iter().fold(Totals::default(), |a, t| Totals {
        packets: a.packets + t.packets,
        bytes: a.bytes + t.bytes,
    })
}

/// The route's shape for `port` from its length counters; `peak_solicited_bps`
/// is the highest solicited rate (bytes/s) seen from it.
pub(crate) fn shape(port: u16, lengths: &GuardLengths, peak_solicited_bps: u64) -> Shape {
    let unsolicited = &lengths[UNSOLICITED];
    let all = sum(unsolicited);
    let Some(top) = lengths[SOLICITED].iter().rposition(|t| t.packets > 0) else {
        return Shape {
            action: Action::Discard,
            min_frame: None,
            why: format!(
                "reply guard, UDP source port {port}: unsolicited replies, and this host received no answer from the port since the filter loaded (it is no client of it): discard"
            ),
            covered: all,
        };
    };
    let cut = top + 1;
    let longest = (cut as u32) << GUARD_LEN_SHIFT;
    if cut < GUARD_LEN_BUCKETS {
        let covered = sum(&unsolicited[cut..]);
        if all.bytes > 0 && covered.bytes as f64 >= MIN_COVER * all.bytes as f64 {
            return Shape {
                action: Action::Discard,
                min_frame: Some(longest),
                why: format!(
                    "reply guard, UDP source port {port}: this host's own answers from the port were frames under {longest} bytes, the unsolicited ones ({:.1}% of their bytes) longer: discard from {longest}-byte frames up",
                    covered.bytes as f64 * 100.0 / all.bytes as f64
                ),
                covered,
            };
        }
    }
    let bytes_per_s = peak_solicited_bps
        .saturating_mul(RATE_HEADROOM)
        .max(MIN_RATE);
    Shape {
        action: Action::RateLimit { bytes_per_s },
        min_frame: None,
        why: format!(
            "reply guard, UDP source port {port}: the unsolicited replies are as long as this host's own answers (frames up to {longest} bytes): rate-limit to {RATE_HEADROOM}x the peak solicited rate, {bytes_per_s} bytes/s"
        ),
        covered: all,
    }
}

/// FlowSpec's packet length for frames of at least `min_frame` bytes:
/// IPv4's total length, IPv6's payload length.
fn packet_length(min_frame: u32, dst: &Prefix) -> Span {
    let ip = if dst.family == FAMILY_V4 { 0 } else { 40 };
    let lo = min_frame.saturating_sub(ETH_HLEN + ip).min(65535) as u16;
    (lo, 65535)
}

/// The routes of one port's shape, one per host address.
pub(crate) fn observations(port: u16, shape: &Shape, hosts: &[Prefix]) -> Vec<Observation> {
    hosts
        .iter()
        .map(|dst| Observation {
            route: Route::FlowSpec(FlowSpec {
                dst: *dst,
                src: None,
                proto: Some(IPPROTO_UDP),
                src_ports: Some((port, port)),
                dst_ports: None,
                pkt_len: shape.min_frame.map(|f| packet_length(f, dst)),
                action: shape.action,
            }),
            why: shape.why.clone(),
            totals: shape.covered,
        })
        .collect()
}

/// What the reply guard's routes need from one step to the next.
pub(super) struct GuardRates {
    /// The guard's length counters at the last step, and when read.
    pub(super) last: Option<(u64, Vec<GuardLengths>)>,
    /// Per guard slot, the highest solicited rate seen (bytes/s).
    pub(super) peak_solicited: Vec<u64>,
}

impl GuardRates {
    /// The reply guard's routes, one shape per guarded port with length
    /// counters (see `guard_routes`). An older program without them
    /// offers none.
    pub(super) fn observations(
        &mut self,
        root: &PinRoot,
        iface: &str,
        rules: &RuleSet,
        hosts: &[Prefix],
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
            let shape = shape(*port, l, *peak);
            if shape.covered.packets > 0 {
                out.extend(observations(*port, &shape, hosts));
            }
        }
        self.last = Some((now, lengths));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::prefixes::parse_prefix;

    fn lengths(unsolicited: &[(usize, u64)], solicited: &[(usize, u64)]) -> GuardLengths {
        let mut l = GuardLengths::default();
        for (k, list) in [(UNSOLICITED, unsolicited), (SOLICITED, solicited)] {
            for &(frame, n) in list {
                let t = &mut l[k][(frame >> GUARD_LEN_SHIFT).min(GUARD_LEN_BUCKETS - 1)];
                t.packets += n;
                t.bytes += n * frame as u64;
            }
        }
        l
    }

    #[test]
    fn no_client_of_the_port_discards_it_all() {
        let s = shape(1900, &lengths(&[(300, 1000)], &[]), 0);
        assert_eq!((s.action, s.min_frame), (Action::Discard, None));
        assert_eq!(s.covered.packets, 1000);
        assert!(s.why.contains("no client"), "{}", s.why);
    }

    /// Time replies (90-byte frames) and NTS ones (300) kept; monlist
    /// replies (482) discarded from 384-byte frames up: IPv4 length 370,
    /// IPv6 payload length 330.
    #[test]
    fn a_time_client_keeps_its_replies_plain_and_nts() {
        let l = lengths(&[(482, 10_000), (90, 3)], &[(90, 50), (300, 5)]);
        let s = shape(123, &l, 1000);
        assert_eq!((s.action, s.min_frame), (Action::Discard, Some(384)));
        assert_eq!(s.covered.packets, 10_000);
        let hosts = [
            parse_prefix("192.0.2.1/32").unwrap(),
            parse_prefix("2001:db8::1/128").unwrap(),
        ];
        let routes: Vec<String> = observations(123, &s, &hosts)
            .iter()
            .map(|o| o.route.to_string())
            .collect();
        assert_eq!(
            routes,
            [
                "flowspec destination 192.0.2.1/32 protocol udp source-port ==123 packet-length >=370&<=65535 then discard",
                "flowspec destination 2001:db8::1/128 protocol udp source-port ==123 packet-length >=330&<=65535 then discard",
            ]
        );
    }

    #[test]
    fn a_flood_as_long_as_the_answers_is_rate_limited() {
        let l = lengths(&[(300, 10_000)], &[(300, 10)]);
        let s = shape(53, &l, 10_000);
        assert_eq!(
            s.action,
            Action::RateLimit {
                bytes_per_s: 40_000
            }
        );
        let s = shape(53, &l, 0);
        assert_eq!(
            s.action,
            Action::RateLimit {
                bytes_per_s: MIN_RATE
            }
        );
        // Answers in the open last bucket leave no length to cut at.
        let l = lengths(&[(3000, 10_000)], &[(2500, 1)]);
        assert!(matches!(shape(53, &l, 0).action, Action::RateLimit { .. }));
    }
}
