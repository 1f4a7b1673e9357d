//! Who is limited or banned right now (`filterctl top`, serve's /top and
//! its metrics): the limiter table's sources over their limit, and every
//! ban with time left, by the limiter, by key or by prefix.

use std::path::Path;

use anyhow::bail;
use aya::maps::{HashMap, lpm_trie::LpmTrie};
use filter_common::{FAMILY_V4, FAMILY_V6, MAP_BAN_V4, MAP_BAN_V6, MAP_BANS, MAP_SOURCES, SrcKey};

use super::{limiter, status::source_prefix};
use crate::{
    rules::Prefix,
    state::{
        PinRoot,
        pins::{open_map, open_map_data},
    },
    sys::monotonic_coarse_ns,
};

/// One line of `top`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Entry {
    pub(crate) source: String,
    /// Limit id the source is counted against (0 for bans).
    pub(crate) limit: u8,
    pub(crate) dropped: u64,
    /// Seconds the source has been over its limit without a break.
    pub(crate) over_for_s: Option<f64>,
    /// Seconds left of a ban.
    pub(crate) banned_for_s: Option<f64>,
}

/// How long after its allowance ran out a source still counts as over.
const OVER_GRACE_NS: u64 = 1_000_000_000;

/// Sources over their limit or banned now, most dropped first; `n` at most.
pub(crate) fn top(root: &PinRoot, iface: &str, n: usize) -> anyhow::Result<Vec<Entry>> {
    let dir = root.iface_dir(iface);
    if !dir.is_dir() {
        bail!("no filter loaded on {iface}");
    }
    let now = monotonic_coarse_ns();
    let keyed = keyed_prefix(root, iface)?;
    let mut out = Vec::new();
    let table = open_map_data(&dir, MAP_SOURCES)?;
    for (k, s) in limiter::sources(&table)?.0 {
        // A source that stopped sending keeps its over_since until it
        // sends again: it counts as over only while its allowance (the
        // theoretical arrival time) is within a second of now, which a
        // source held at its limit keeps at or ahead of now.
        let over = s.over_since != 0 && s.pkt_tat.max(s.byte_tat) + OVER_GRACE_NS > now;
        if !over && s.dropped == 0 {
            continue;
        }
        out.push(Entry {
            source: keyed(&k).to_string(),
            limit: k.limit,
            dropped: s.dropped,
            over_for_s: over.then(|| now.saturating_sub(s.over_since) as f64 / 1e9),
            banned_for_s: None,
        });
    }
    for (prefix, until) in bans(&dir, keyed)? {
        if until > now {
            out.push(Entry {
                source: prefix.to_string(),
                limit: 0,
                dropped: 0,
                over_for_s: None,
                banned_for_s: Some((until - now) as f64 / 1e9),
            });
        }
    }
    out.sort_by(|a, b| {
        b.dropped
            .cmp(&a.dropped)
            .then(b.banned_for_s.is_some().cmp(&a.banned_for_s.is_some()))
    });
    out.truncate(n);
    Ok(out)
}

/// Prefixes banned right now on `iface`, by the limiter, by key or by
/// prefix, in address order.
pub(crate) fn active_bans(root: &PinRoot, iface: &str) -> anyhow::Result<Vec<Prefix>> {
    let dir = root.iface_dir(iface);
    let now = monotonic_coarse_ns();
    let mut out: Vec<Prefix> = bans(&dir, keyed_prefix(root, iface)?)?
        .into_iter()
        .filter(|&(_, until)| until > now)
        .map(|(p, _)| p)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The prefix a source key stands for, at the running filter's keying.
fn keyed_prefix(root: &PinRoot, iface: &str) -> anyhow::Result<impl Fn(&SrcKey) -> Prefix> {
    let v4 = source_prefix(root, iface, FAMILY_V4)?;
    let v6 = source_prefix(root, iface, FAMILY_V6)?;
    Ok(move |k: &SrcKey| Prefix {
        family: k.family,
        addr: k.addr,
        len: if k.family == FAMILY_V4 { v4 } else { v6 },
    })
}

/// One interface's `top`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct InterfaceTop {
    pub(crate) interface: String,
    pub(crate) sources: Vec<Entry>,
}

/// The `top --json` and /top document.
#[derive(Debug, serde::Serialize)]
pub(crate) struct TopReport {
    pub(crate) schema_version: u32,
    pub(crate) interfaces: Vec<InterfaceTop>,
}

/// `top` of each of `ifaces`, `n` sources each.
pub(crate) fn top_report(
    root: &PinRoot,
    ifaces: Vec<String>,
    n: usize,
) -> anyhow::Result<TopReport> {
    let mut interfaces = Vec::new();
    for interface in ifaces {
        let sources = top(root, &interface, n)?;
        interfaces.push(InterfaceTop { interface, sources });
    }
    Ok(TopReport {
        schema_version: crate::JSON_SCHEMA_VERSION,
        interfaces,
    })
}

/// Every ban with its deadline: sources banned by the limiter or by key,
/// and the operator's prefix bans.
fn bans(dir: &Path, keyed: impl Fn(&SrcKey) -> Prefix) -> anyhow::Result<Vec<(Prefix, u64)>> {
    let mut out = Vec::new();
    let by_key: HashMap<_, SrcKey, u64> = HashMap::try_from(open_map(dir, MAP_BANS)?)?;
    for item in by_key.iter() {
        let (k, until) = item?;
        out.push((keyed(&k), until));
    }
    let t4: LpmTrie<_, [u8; 4], u64> = LpmTrie::try_from(open_map(dir, MAP_BAN_V4)?)?;
    for item in t4.iter() {
        let (k, until) = item?;
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&k.data());
        out.push((prefix(FAMILY_V4, addr, k.prefix_len()), until));
    }
    let t6: LpmTrie<_, [u8; 16], u64> = LpmTrie::try_from(open_map(dir, MAP_BAN_V6)?)?;
    for item in t6.iter() {
        let (k, until) = item?;
        out.push((prefix(FAMILY_V6, k.data(), k.prefix_len()), until));
    }
    Ok(out)
}

fn prefix(family: u8, addr: [u8; 16], len: u32) -> Prefix {
    Prefix {
        family,
        addr,
        len: len as u8,
    }
}
