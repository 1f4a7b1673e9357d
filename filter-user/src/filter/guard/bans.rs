//! Operator bans (`filterctl ban` / `unban`). Bans live in the state maps,
//! so they take effect at once and survive reloads. (Who is banned right
//! now is read in observe::top.)

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use aya::maps::{
    HashMap,
    lpm_trie::{Key, LpmTrie},
};
use filter_common::{
    BAN_UDP_ONLY, FAMILY_V4, MAP_BAN_V4, MAP_BAN_V6, MAP_BANS, SrcKey, limiter::mask,
};

use crate::{
    filter::{lifecycle::flags, observe::status::source_prefix},
    rules::{Prefix, prefixes::parse_prefix},
    state::{
        PinRoot, current_generation,
        lock::{IfaceLock, LOCK_WAIT},
        pins::open_map,
    },
    sys::monotonic_coarse_ns,
};

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

/// What a ban on `target` really bans on `iface`: sources are banned by
/// the prefix length they are keyed by (`filterctl ban fd99::2` bans
/// fd99::/64 where sources are keyed by /64), which is what the lockout
/// guard must check.
pub(crate) fn banned_prefix(root: &PinRoot, iface: &str, target: Prefix) -> anyhow::Result<Prefix> {
    Ok(
        match place(target, source_prefix(root, iface, target.family)?) {
            Place::Source(_, widened) => widened,
            Place::Prefix(p) => p,
        },
    )
}

/// Bans `target` on `iface` for `duration`; returns the prefix really
/// banned (sources are banned by the prefix length they are keyed by).
pub(crate) fn ban(
    root: &PinRoot,
    iface: &str,
    target: Prefix,
    duration: Duration,
) -> anyhow::Result<Prefix> {
    let dir = root.iface_dir(iface);
    let _lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT)?;
    // Low bit clear: an operator's ban drops everything, never only UDP.
    let until = (monotonic_coarse_ns() + duration.as_nanos() as u64) & !BAN_UDP_ONLY;
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
    flags::copy_ban_flag(&dir, &current_generation(&dir)?.dir)?;
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
pub(crate) fn unban(root: &PinRoot, iface: &str, target: Prefix) -> anyhow::Result<Prefix> {
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

/// Parses "198.51.100.7", "2001:db8::/48" as a ban target.
pub(crate) fn parse_target(text: &str) -> anyhow::Result<Prefix> {
    Ok(parse_prefix(text)?)
}
