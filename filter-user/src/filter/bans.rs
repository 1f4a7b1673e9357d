//! Operator bans (`filterctl ban` / `unban`) and the view of who is limited
//! or banned right now (`filterctl top`). Bans live in the state maps, so
//! they take effect at once and survive reloads.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use aya::maps::{
    HashMap,
    lpm_trie::{Key, LpmTrie},
};
use filter_common::{
    FAMILY_V4, FAMILY_V6, MAP_BAN_V4, MAP_BAN_V6, MAP_BANS, MAP_SOURCES, SrcKey, decide::mask,
};

use crate::{
    rules::{Prefix, prefixes::parse_prefix},
    state::{
        PinRoot, current_generation,
        lock::{IfaceLock, LOCK_WAIT},
        open_map, open_map_data, read_config,
    },
    sys::monotonic_coarse_ns,
};

/// Prefix length by which the running filter keys sources of `family`.
fn source_prefix(root: &PinRoot, iface: &str, family: u8) -> anyhow::Result<u8> {
    let current = current_generation(&root.iface_dir(iface))?;
    Ok(read_config(&current.dir)?.src_prefix(family))
}

/// Where a ban on `target` lives: as one source key when the prefix is at
/// least as long as sources are keyed (widened to that length), otherwise
/// as a prefix in the ban tries.
enum Place {
    Source(SrcKey, Prefix),
    Prefix(Prefix),
}

fn place(target: Prefix, keyed_by: u8) -> Place {
    if target.len >= keyed_by {
        let widened = Prefix {
            len: keyed_by,
            addr: mask(&target.addr, keyed_by),
            ..target
        };
        let key = SrcKey {
            addr: widened.addr,
            family: target.family,
            limit: 0,
            _pad: [0; 2],
        };
        Place::Source(key, widened)
    } else {
        Place::Prefix(target)
    }
}

/// Bans `target` on `iface` for `duration`; returns the prefix really
/// banned (sources are banned by the prefix length they are keyed by).
pub fn ban(
    root: &PinRoot,
    iface: &str,
    target: Prefix,
    duration: Duration,
) -> anyhow::Result<Prefix> {
    let dir = root.iface_dir(iface);
    let _lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT)?;
    let until = monotonic_coarse_ns() + duration.as_nanos() as u64;
    let place = place(target, source_prefix(root, iface, target.family)?);
    // The hints first, then the flag, as the program does: the program
    // skips ban lookups until something was ever banned, and its early
    // verdict skips them for sources whose hint bit is clear. The bits are
    // those of what is really banned: a source key may be wider than the
    // target.
    set_ban_hints(
        &dir,
        match &place {
            Place::Source(_, banned) => *banned,
            Place::Prefix(p) => *p,
        },
    )?;
    let mut flag: aya::maps::Array<_, u32> =
        aya::maps::Array::try_from(open_map(&dir, filter_common::MAP_BAN_FLAG)?)?;
    let bans = flag.get(&0, 0).context("failed to read BAN_FLAG")?;
    flag.set(0, bans | filter_common::BAN_ANY, 0)
        .context("failed to write BAN_FLAG")?;
    // And the running generation's copy (the lock keeps reloads out).
    super::flags::copy_ban_flag(&dir, &current_generation(&dir)?.dir)?;
    match place {
        Place::Source(key, banned) => {
            let mut bans: HashMap<_, SrcKey, u64> = HashMap::try_from(open_map(&dir, MAP_BANS)?)?;
            bans.insert(key, until, 0).context("failed to write BANS")?;
            Ok(banned)
        }
        Place::Prefix(p) => {
            write_prefix_ban(&dir, p, Some(until))?;
            Ok(p)
        }
    }
}

/// Lifts a ban; fails if there was none.
pub fn unban(root: &PinRoot, iface: &str, target: Prefix) -> anyhow::Result<Prefix> {
    let dir = root.iface_dir(iface);
    let _lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT)?;
    match place(target, source_prefix(root, iface, target.family)?) {
        Place::Source(key, banned) => {
            let mut bans: HashMap<_, SrcKey, u64> = HashMap::try_from(open_map(&dir, MAP_BANS)?)?;
            bans.remove(&key)
                .map_err(|_| anyhow::anyhow!("{banned} is not banned on {iface}"))?;
            Ok(banned)
        }
        Place::Prefix(p) => {
            write_prefix_ban(&dir, p, None)
                .map_err(|_| anyhow::anyhow!("{p} is not banned on {iface}"))?;
            Ok(p)
        }
    }
}

/// Sets the hint bits of every address `banned` covers. Bits are never
/// cleared: one that outlives its ban costs a lookup, nothing more.
fn set_ban_hints(dir: &Path, banned: Prefix) -> anyhow::Result<()> {
    let mut words: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(open_map(dir, filter_common::MAP_BAN_HINTS)?)?;
    let mut masks = Vec::new();
    filter_common::hints::prefix_bits(banned.family, &banned.addr, banned.len, |first, n| {
        filter_common::hints::range_words(first, n, |w, mask| masks.push((w, mask)))
    });
    for (w, mask) in masks {
        let old = words.get(&w, 0).context("failed to read BAN_HINTS")?;
        words
            .set(w, old | mask, 0)
            .context("failed to write BAN_HINTS")?;
    }
    Ok(())
}

fn write_prefix_ban(dir: &Path, p: Prefix, until: Option<u64>) -> anyhow::Result<()> {
    if p.family == FAMILY_V4 {
        let mut t: LpmTrie<_, [u8; 4], u64> = LpmTrie::try_from(open_map(dir, MAP_BAN_V4)?)?;
        let key = Key::new(p.len as u32, [p.addr[0], p.addr[1], p.addr[2], p.addr[3]]);
        match until {
            Some(u) => t.insert(&key, u, 0)?,
            None => t.remove(&key)?,
        }
    } else {
        let mut t: LpmTrie<_, [u8; 16], u64> = LpmTrie::try_from(open_map(dir, MAP_BAN_V6)?)?;
        let key = Key::new(p.len as u32, p.addr);
        match until {
            Some(u) => t.insert(&key, u, 0)?,
            None => t.remove(&key)?,
        }
    }
    Ok(())
}

/// One line of `top`.
#[derive(Debug, serde::Serialize)]
pub struct Entry {
    pub source: String,
    /// Limit id the source is counted against (0 for bans).
    pub limit: u8,
    pub dropped: u64,
    /// Seconds the source has been over its limit without a break.
    pub over_for_s: Option<f64>,
    /// Seconds left of a ban.
    pub banned_for_s: Option<f64>,
}

/// How long after its allowance ran out a source still counts as over.
const OVER_GRACE_NS: u64 = 1_000_000_000;

/// Sources over their limit or banned now, most dropped first; `n` at most.
pub fn top(root: &PinRoot, iface: &str, n: usize) -> anyhow::Result<Vec<Entry>> {
    let dir = root.iface_dir(iface);
    if !dir.is_dir() {
        bail!("no filter loaded on {iface}");
    }
    let now = monotonic_coarse_ns();
    let keyed = keyed_prefix(root, iface)?;
    let mut out = Vec::new();
    let table = open_map_data(&dir, MAP_SOURCES)?;
    for (k, s) in super::limiter::sources(&table)?.0 {
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
pub fn active_bans(root: &PinRoot, iface: &str) -> anyhow::Result<Vec<Prefix>> {
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
pub struct InterfaceTop {
    pub interface: String,
    pub sources: Vec<Entry>,
}

/// The `top --json` and /top document.
#[derive(Debug, serde::Serialize)]
pub struct TopReport {
    pub schema_version: u32,
    pub interfaces: Vec<InterfaceTop>,
}

/// `top` of each of `ifaces`, `n` sources each.
pub fn top_report(root: &PinRoot, ifaces: Vec<String>, n: usize) -> anyhow::Result<TopReport> {
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

/// Parses "198.51.100.7", "2001:db8::/48" as a ban target.
pub fn parse_target(text: &str) -> anyhow::Result<Prefix> {
    Ok(parse_prefix(text)?)
}
