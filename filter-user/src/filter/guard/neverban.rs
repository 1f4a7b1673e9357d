//! The never-ban set: sources this host depends on (its default gateways,
//! its resolvers, its time servers, the operator's SSH client) plus the rule
//! file's `never_ban`. They meet their rate limits like anyone else but are
//! never banned, so a flood forging their address can't cut the host off
//! them. Built at load and reload, refreshed by `serve`.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use anyhow::Context as _;
use aya::maps::{
    Map,
    lpm_trie::{Key, LpmTrie},
};
use filter_common::{FAMILY_V4, MAP_NEVER_BAN_V4, MAP_NEVER_BAN_V6};

use crate::{
    lockout,
    rules::{Prefix, RuleSet, prefixes::parse_prefix},
    state::{PinRoot, current_generation, pins::open_map, read_config, record::read_record},
};

/// Where the host's facts are read from (tests point it elsewhere).
pub(crate) struct HostFiles<'a> {
    pub(crate) route: &'a str,
    ipv6_route: &'a str,
    resolv_conf: &'a str,
    ntp_configs: &'a [&'a str],
}

pub(crate) const HOST: HostFiles<'static> = HostFiles {
    route: "/proc/net/route",
    ipv6_route: "/proc/net/ipv6_route",
    resolv_conf: "/etc/resolv.conf",
    ntp_configs: &[
        "/etc/chrony/chrony.conf",
        "/etc/chrony.conf",
        "/etc/ntp.conf",
        "/etc/ntpsec/ntp.conf",
    ],
};

/// The whole set: the rule file's entries and the host's, as /32 and /128
/// prefixes, widened to the keys the kernel bans (see [`widen`]). Files
/// that don't exist add nothing.
pub(crate) fn never_ban_set(set: &RuleSet, files: &HostFiles<'_>) -> BTreeSet<Prefix> {
    widen(
        with_host(&set.never_ban, files),
        set.src_prefix_v4,
        set.src_prefix_v6,
    )
}

/// The kernel bans a source's prefix (`[sources] ipv4_prefix`, 32, and
/// `ipv6_prefix`, 64, by default) and asks the never-ban set about that
/// prefix, not the address: a /128 resolver or a link-local gateway would
/// never be found, and a forgery of it, or of its neighbour, would ban the
/// /64 that holds it. Each entry longer than the ban prefix stands in the
/// set widened to it too: no ban covers a member. (Its prefix is still
/// rate-limited as ever, only never banned.)
fn widen(set: BTreeSet<Prefix>, v4: u8, v6: u8) -> BTreeSet<Prefix> {
    let wide: Vec<Prefix> = set
        .iter()
        .filter_map(|p| {
            let len = if p.family == FAMILY_V4 { v4 } else { v6 };
            (p.len > len).then(|| Prefix {
                family: p.family,
                addr: filter_common::decide::mask(&p.addr, len),
                len,
            })
        })
        .collect();
    let mut out = set;
    out.extend(wide);
    out
}

/// Re-reads the host's facts and brings the never-ban set of the filter on
/// `iface` up to date, keeping the running rule set's own entries (from
/// its record). Returns the set's size.
pub(crate) fn refresh(root: &PinRoot, iface: &str) -> anyhow::Result<usize> {
    let dir = root.iface_dir(iface);
    let current = current_generation(&dir)?;
    let record = read_record(&current.dir)?;
    let listed: Vec<Prefix> = record
        .settings
        .get("never_ban")
        .map(|l| {
            l.split_whitespace()
                .filter_map(|p| parse_prefix(p).ok())
                .collect()
        })
        .unwrap_or_default();
    let config = read_config(&current.dir)?;
    let want = widen(
        with_host(&listed, &HOST),
        config.src_prefix_v4,
        config.src_prefix_v6,
    );
    sync_pinned(&dir, &want)?;
    Ok(want.len())
}

fn with_host(listed: &[Prefix], files: &HostFiles<'_>) -> BTreeSet<Prefix> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mut addrs = gateways_v4(&read(files.route));
    addrs.extend(gateways_v6(&read(files.ipv6_route)));
    addrs.extend(resolvers(&read(files.resolv_conf)));
    for conf in files.ntp_configs {
        addrs.extend(ntp_servers(&read(conf)));
    }
    addrs.extend(lockout::ssh_client().map(|p| p.addr));
    let mut out: BTreeSet<Prefix> = listed.iter().copied().collect();
    out.extend(
        addrs
            .into_iter()
            .filter(|a| !a.is_unspecified() && !a.is_loopback())
            .filter_map(|a| parse_prefix(&a.to_string()).ok()),
    );
    out
}

/// Default gateways of /proc/net/route: the gateway (third column, a
/// little-endian hex u32) of routes to 0.0.0.0/0.
fn gateways_v4(text: &str) -> Vec<IpAddr> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let default = f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000");
            default.then(|| u32::from_str_radix(f.get(2)?, 16).ok())?
        })
        .filter(|g| *g != 0)
        .map(|g| IpAddr::from(g.to_le_bytes()))
        .collect()
}

/// Default gateways of /proc/net/ipv6_route: the next hop (fifth column)
/// of routes to ::/0.
fn gateways_v6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"00")).then(|| u128::from_str_radix(f.get(4)?, 16).ok())?
        })
        .filter(|h| *h != 0)
        .map(|h| IpAddr::from(h.to_be_bytes()))
        .collect()
}

/// `nameserver ADDR` lines (a zone index, `%eth0`, is dropped).
pub(crate) fn resolvers(text: &str) -> Vec<IpAddr> {
    directives(text, &["nameserver"])
}

/// `server`, `peer` and `pool` lines of chrony.conf or ntp.conf with an
/// address literal. Names are not resolved: at load time, under attack,
/// resolution may be what is failing.
fn ntp_servers(text: &str) -> Vec<IpAddr> {
    directives(text, &["server", "peer", "pool"])
}

fn directives(text: &str, keys: &[&str]) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let key = f.next()?;
            keys.contains(&key).then_some(())?;
            f.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

/// Makes the pinned never-ban tries of `dir` hold exactly `want`.
fn sync_pinned(dir: &Path, want: &BTreeSet<Prefix>) -> anyhow::Result<()> {
    sync(
        open_map(dir, MAP_NEVER_BAN_V4)?,
        open_map(dir, MAP_NEVER_BAN_V6)?,
        want,
    )
}

/// The value of an entry recorded for the operator's SSH client: kept by
/// every later sync (a reload from a shell without SSH, `serve`'s refresh)
/// until the filter is unloaded, where other entries follow the host's
/// facts.
const OPERATOR: u8 = 2;

/// Makes a pair of never-ban tries hold `want`, plus the operator entries
/// recorded before: additions first, so that an address in both sets is
/// never briefly missing. This session's SSH client is recorded as an
/// operator entry.
pub(crate) fn sync(v4: Map, v6: Map, want: &BTreeSet<Prefix>) -> anyhow::Result<()> {
    let mut t4: LpmTrie<_, [u8; 4], u8> = LpmTrie::try_from(v4)?;
    let mut t6: LpmTrie<_, [u8; 16], u8> = LpmTrie::try_from(v6)?;
    let operator = ssh_entries(want);
    for p in want {
        let value = if operator.contains(p) { OPERATOR } else { 1 };
        if p.family == FAMILY_V4 {
            let a = [p.addr[0], p.addr[1], p.addr[2], p.addr[3]];
            t4.insert(&Key::new(p.len as u32, a), value, 0)
        } else {
            t6.insert(&Key::new(p.len as u32, p.addr), value, 0)
        }
        .with_context(|| format!("failed to add {p} to the never-ban set"))?;
    }
    // A key's data is 4 bytes in the IPv4 trie, 16 in the IPv6 one.
    let wanted = |len: u32, data: &[u8]| {
        want.iter().any(|p| {
            (p.family == FAMILY_V4) == (data.len() == 4)
                && p.len as u32 == len
                && p.addr[..data.len()] == *data
        })
    };
    let stale4: Vec<Key<[u8; 4]>> = t4
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| *v != OPERATOR && !wanted(k.prefix_len(), &k.data()))
        .map(|(k, _)| k)
        .collect();
    for k in stale4 {
        let _ = t4.remove(&k);
    }
    let stale6: Vec<Key<[u8; 16]>> = t6
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| *v != OPERATOR && !wanted(k.prefix_len(), &k.data()))
        .map(|(k, _)| k)
        .collect();
    for k in stale6 {
        let _ = t6.remove(&k);
    }
    Ok(())
}

/// The entries of `want` that stand for this session's SSH client: its
/// address, and that address widened to a ban prefix (see [`widen`]; a
/// ban prefix is no shorter than /24 or /48 in practice, and an entry of
/// the rule file that short is the file's, not the operator's).
fn ssh_entries(want: &BTreeSet<Prefix>) -> BTreeSet<Prefix> {
    let Some(client) = lockout::ssh_client() else {
        return BTreeSet::new();
    };
    let Ok(addr) = parse_prefix(&client.addr.to_string()) else {
        return BTreeSet::new();
    };
    let shortest = if addr.family == FAMILY_V4 { 24 } else { 48 };
    want.iter()
        .filter(|p| {
            p.family == addr.family
                && p.len >= shortest
                && p.addr == filter_common::decide::mask(&addr.addr, p.len)
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod widening {
    use std::collections::BTreeSet;

    use super::widen;
    use crate::rules::prefixes::parse_prefix;

    fn set(list: &[&str]) -> BTreeSet<crate::rules::Prefix> {
        list.iter().map(|p| parse_prefix(p).unwrap()).collect()
    }

    #[test]
    fn members_stand_widened_to_the_ban_prefix() {
        let got = widen(set(&["fd99::53", "fe80::1", "192.0.2.53"]), 32, 64);
        assert_eq!(
            got,
            set(&[
                "fd99::53",
                "fd99::/64",
                "fe80::1",
                "fe80::/64",
                "192.0.2.53"
            ])
        );
        let got = widen(set(&["192.0.2.53", "2001:db8::/32"]), 24, 64);
        assert_eq!(got, set(&["192.0.2.53", "192.0.2.0/24", "2001:db8::/32"]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gateways_resolvers_and_time_servers() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
                     eth0\t006433C6\t020200C0\t0003\t0\t0\t0\t00FFFFFF\n\
                     eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(gateways_v4(route), ["192.0.2.1".parse::<IpAddr>().unwrap()]);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000000 00000000 00000003 eth0\n\
                  20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000000 00000000 00000001 eth0\n\
                  20010db80bad00000000000000000000 30 00000000000000000000000000000000 00 20010db8000000000000000000000002 00000400 00000000 00000000 00000003 eth0\n";
        assert_eq!(gateways_v6(v6), ["2001:db8::1".parse::<IpAddr>().unwrap()]);
        let resolv =
            "# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n";
        assert_eq!(
            resolvers(resolv),
            [
                "192.0.2.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        let chrony = "pool 2.debian.pool.ntp.org iburst\nserver 198.51.100.123 iburst\npeer 2001:db8::123\n# server 192.0.2.9\nallow 192.0.2.0/24\n";
        assert_eq!(
            ntp_servers(chrony),
            [
                "198.51.100.123".parse::<IpAddr>().unwrap(),
                "2001:db8::123".parse().unwrap()
            ]
        );
    }
}
