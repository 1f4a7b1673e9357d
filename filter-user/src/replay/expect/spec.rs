//! What an expect file says, once read: the captures, their labels and
//! matchers, and the gate's limits.

use std::{net::IpAddr, path::PathBuf};

use filter_common::{FAMILY_V4, FAMILY_V6};
use serde::Serialize;

use crate::{
    replay::{clock::Timing, frame::FrameFacts},
    rules::prefixes::Prefix,
};

/// An expect file, its paths resolved against its folder.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    /// The expect file itself, as given.
    pub(crate) path: PathBuf,
    /// The rules to judge (`--rules` overrides).
    pub(crate) rules: Option<PathBuf>,
    /// The rules to compare with (`--against` overrides).
    pub(crate) against: Option<PathBuf>,
    pub(crate) gate: Gate,
    pub(crate) captures: Vec<CaptureSpec>,
}

/// What the rules must achieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Gate {
    /// Benign frames that may be dropped, over all captures.
    pub(crate) max_benign_drop: u64,
    /// Share (0.0 to 1.0) of each capture's attack frames that must be
    /// dropped.
    pub(crate) min_attack_drop: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            max_benign_drop: 0,
            min_attack_drop: 1.0,
        }
    }
}

/// One `[[capture]]`.
#[derive(Debug, Clone)]
pub(crate) struct CaptureSpec {
    pub(crate) file: PathBuf,
    pub(crate) label: Label,
    /// The host's addresses, telling the direction of plain Ethernet
    /// frames (as `--host`).
    pub(crate) hosts: Vec<IpAddr>,
    pub(crate) timing: Option<Timing>,
    /// For `Label::Mixed` (and only for it): which frames are attack.
    pub(crate) attack: Option<Matcher>,
}

impl CaptureSpec {
    /// Whether an incoming frame of this capture counts as attack (else
    /// benign). Outgoing frames are neither; the caller leaves them out.
    pub(crate) fn is_attack(&self, f: &FrameFacts) -> bool {
        match self.label {
            Label::Attack => true,
            Label::Baseline => false,
            Label::Mixed => self.attack.as_ref().is_some_and(|m| m.matches(f)),
        }
    }
}

/// What a capture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Label {
    /// Every incoming frame is attack.
    Attack,
    /// Every incoming frame is benign.
    Baseline,
    /// The capture's `attack` matcher tells.
    Mixed,
}

impl Label {
    pub(crate) const ALL: [(Label, &'static str); 3] = [
        (Label::Attack, "attack"),
        (Label::Baseline, "baseline"),
        (Label::Mixed, "mixed"),
    ];

    pub(crate) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(l, _)| *l == self)
            .map_or("?", |(_, n)| n)
    }
}

/// Which frames of a mixed capture are attack. Every field given must
/// match; a frame that lacks a field asked for (no ports: not TCP or UDP,
/// or a later fragment) does not match. An empty list is never stored:
/// empty means not asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Matcher {
    /// IP protocol number (UDP 17, TCP 6, ICMP 1).
    pub(crate) proto: Option<u8>,
    pub(crate) src_ports: Vec<u16>,
    pub(crate) dst_ports: Vec<u16>,
    pub(crate) sources: Vec<Prefix>,
}

impl Matcher {
    pub(crate) fn matches(&self, f: &FrameFacts) -> bool {
        let port = |want: &[u16], got: Option<u16>| {
            want.is_empty() || got.is_some_and(|p| want.contains(&p))
        };
        let source = || {
            self.sources.is_empty()
                || f.src.is_some_and(|a| {
                    let (family, bytes) = family_bytes(a);
                    self.sources.iter().any(|p| p.contains(family, &bytes))
                })
        };
        self.proto.is_none_or(|p| f.proto == Some(p))
            && port(&self.src_ports, f.src_port)
            && port(&self.dst_ports, f.dst_port)
            && source()
    }
}

/// An address as prefixes hold it: IPv4 in the first 4 bytes.
fn family_bytes(a: IpAddr) -> (u8, [u8; 16]) {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (FAMILY_V4, b)
        }
        IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
    }
}
