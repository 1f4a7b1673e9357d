//! FlowSpec routes in (`[upstream.import]`): the paths of GoBGP's
//! FlowSpec RIB (`gobgp global rib -a ipv4-flowspec -j`) read as values,
//! checked against the operator's limits and this host, and turned into
//! the rules that enforce them here, or refused with a reason.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use filter_common::{FAMILY_V4, FAMILY_V6, IPPROTO_TCP, IPPROTO_UDP, RULE_NAME_LEN};
use serde_json::Value;

use super::routes::{Action, FlowSpec, Route, Span};
use crate::{
    lockout::Protected,
    rules::{
        Prefix,
        imports::{FLOWSPEC_PREFIX, FlowImport},
        prefixes::parse_prefix,
        upstream::ImportConfig,
    },
};

/// The packet size a FlowSpec rate limit (bytes/s) is converted at, to the
/// packets/s the rule engine limits: the Ethernet MTU, so that the bytes/s
/// the route allows are never exceeded (smaller packets are held to fewer
/// bytes/s than the route says). A route with a smaller packet-length
/// bound is converted at that bound.
const ASSUMED_PACKET_BYTES: u64 = 1500;

/// One path of the RIB: its NLRI as GoBGP prints it, what it converts to
/// (or why it can't), and who it came from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RibPath {
    /// GoBGP's key, e.g. `[destination: 192.0.2.1/32][protocol: ==udp]`.
    pub(crate) text: String,
    pub(crate) flow: Result<FlowSpec, String>,
    /// None: originated by this speaker (`gobgp global rib add`).
    neighbor: Option<IpAddr>,
    source_id: Option<IpAddr>,
    /// Standard communities, ASN << 16 | value.
    pub(crate) communities: Vec<u32>,
}

/// A refused path and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Refused {
    pub(crate) route: String,
    pub(crate) reason: String,
}

/// What this host is, for the checks: its addresses on the interface, the
/// sources it must never cut off, and the routes it announces itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct Host {
    /// As /32 and /128.
    pub(crate) addresses: Vec<Prefix>,
    pub(crate) protected: Vec<Protected>,
    pub(crate) never_ban: Vec<Prefix>,
    pub(crate) own: Vec<FlowSpec>,
}

/// The outcome of one read of the RIB.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// By rule name; at most `max_routes`.
    pub(crate) accepted: Vec<FlowImport>,
    pub(crate) refused: Vec<Refused>,
}

/// The paths of one `gobgp global rib -a ipvX-flowspec -j` document.
pub(crate) fn parse_rib(json: &str) -> Result<Vec<RibPath>, String> {
    let text = json.trim();
    if text.is_empty() || text == "null" {
        return Ok(Vec::new());
    }
    let doc: BTreeMap<String, Vec<Value>> = serde_json::from_str(text)
        .map_err(|e| format!("GoBGP's RIB is not the JSON expected: {e}"))?;
    let mut out = Vec::new();
    for (key, paths) in doc {
        for p in paths {
            out.push(path(&key, &p));
        }
    }
    Ok(out)
}

fn ip(v: &Value) -> Option<IpAddr> {
    v.as_str()?.parse().ok()
}

fn path(key: &str, p: &Value) -> RibPath {
    let attrs = p["attrs"].as_array().map_or(&[][..], Vec::as_slice);
    let attr = |t: u64| attrs.iter().find(|a| a["type"] == t);
    let communities = attr(8)
        .and_then(|a| a["communities"].as_array())
        .map_or_else(Vec::new, |c| {
            c.iter()
                .filter_map(|v| v.as_u64().map(|n| n as u32))
                .collect()
        });
    let components = p["nlri"]["value"].as_array().map_or(&[][..], Vec::as_slice);
    let flow = action(attr(16)).and_then(|a| flow(components, a));
    RibPath {
        text: key.to_string(),
        flow,
        neighbor: ip(&p["neighbor-ip"]),
        source_id: ip(&p["source-id"]),
        communities,
    }
}

/// The traffic-rate action of the extended communities (type 16).
fn action(ext: Option<&Value>) -> Result<Action, String> {
    let mut found = None;
    for c in ext
        .and_then(|e| e["value"].as_array())
        .into_iter()
        .flatten()
    {
        // 0x80 (and 0x81, 0x82 for the redirect variants): FlowSpec
        // actions; other extended communities (route targets) are not.
        if !(128..=130).contains(&c["type"].as_u64().unwrap_or(0)) {
            continue;
        }
        match c["subtype"].as_u64() {
            Some(6) => {
                let rate = c["rate"].as_f64().unwrap_or(0.0);
                found = Some(if rate <= 0.0 {
                    Action::Discard
                } else {
                    Action::RateLimit {
                        bytes_per_s: rate as u64,
                    }
                });
            }
            Some(7) => {
                return Err("action traffic-action (sample/terminal): not expressible here".into());
            }
            Some(8) => return Err("action redirect: this filter can only drop or limit".into()),
            Some(9) => {
                return Err(
                    "action traffic-marking (DSCP): this filter can only drop or limit".into(),
                );
            }
            other => return Err(format!("action subtype {other:?}: unknown")),
        }
    }
    found.ok_or_else(|| "no traffic-rate action: the route only accepts, nothing to enforce".into())
}

fn prefix_of(c: &Value) -> Result<Prefix, String> {
    if c["offset"].as_u64().unwrap_or(0) != 0 {
        return Err("an IPv6 prefix with an offset: the filter matches none".into());
    }
    let text = c["value"]["prefix"]
        .as_str()
        .ok_or("a prefix component without a prefix")?;
    parse_prefix(text).map_err(|e| format!("prefix {text:?}: {e}"))
}

/// The match components (RFC 8955 types) as one FlowSpec the rule engine
/// can carry; the first one it can't is the reason.
fn flow(components: &[Value], action: Action) -> Result<FlowSpec, String> {
    let mut f = FlowSpec {
        dst: Prefix {
            family: 0,
            addr: [0; 16],
            len: 0,
        },
        src: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        pkt_len: None,
        action,
    };
    let mut has_dst = false;
    for c in components {
        let ops = || numeric(&c["value"]);
        match c["type"].as_u64().unwrap_or(0) {
            1 => {
                f.dst = prefix_of(c)?;
                has_dst = true;
            }
            2 => f.src = Some(prefix_of(c)?),
            3 => {
                let (lo, hi) = ops().map_err(|e| format!("protocol: {e}"))?;
                if lo != hi {
                    return Err("protocol: a range; the filter's rules match one protocol".into());
                }
                f.proto = Some(lo as u8);
            }
            4 => {
                return Err(
                    "port (source or destination): the filter's rules match each apart".into(),
                );
            }
            5 => f.dst_ports = Some(ops().map_err(|e| format!("destination-port: {e}"))?),
            6 => f.src_ports = Some(ops().map_err(|e| format!("source-port: {e}"))?),
            7 | 8 => return Err("ICMP type/code: the filter's rules match UDP and TCP only".into()),
            9 => return Err("tcp-flags: the filter's rules cannot match TCP flags".into()),
            10 => f.pkt_len = Some(ops().map_err(|e| format!("packet-length: {e}"))?),
            11 => return Err("dscp: the filter's rules cannot match DSCP".into()),
            12 => {
                return Err("fragment: the filter's rules cannot match fragments (the rule file's `fragments` decides for all of them)".into());
            }
            13 => return Err("flow-label: the filter's rules cannot match it".into()),
            t => return Err(format!("component type {t}: unknown")),
        }
    }
    if !has_dst {
        return Err("no destination: a route for every address of the fleet".into());
    }
    match f.proto {
        Some(IPPROTO_UDP | IPPROTO_TCP) => {}
        Some(p) => {
            return Err(format!(
                "protocol {p}: the filter's rules match UDP (17) and TCP (6) only"
            ));
        }
        None => return Err("no protocol: the filter's rules match UDP or TCP, one of them".into()),
    }
    Ok(f)
}

/// RFC 8955 numeric operators: bit 7 end of list, bit 6 AND (with the one
/// before), bits 2-0 less than, greater than, equal.
const OP_AND: u64 = 0x40;
const OP_LT: u64 = 0x04;
const OP_GT: u64 = 0x02;
const OP_EQ: u64 = 0x01;

/// A numeric component as one inclusive range of u16 values: each run of
/// ANDed comparisons is a range, the ORed runs must join into one.
fn numeric(v: &Value) -> Result<Span, String> {
    let items = v.as_array().ok_or("not a list of operators")?;
    let mut terms: Vec<(u32, u32)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let op = item["op"].as_u64().unwrap_or(0);
        let n = item["value"]
            .as_u64()
            .ok_or("an operator without a value")?;
        let n = u32::try_from(n.min(65535)).unwrap_or(65535);
        let (lo, hi) = match op & (OP_LT | OP_GT | OP_EQ) {
            OP_EQ => (n, n),
            x if x == OP_GT => (n + 1, 65535),
            x if x == OP_GT | OP_EQ => (n, 65535),
            x if x == OP_LT => (0, n.checked_sub(1).ok_or("< 0 matches nothing")?),
            x if x == OP_LT | OP_EQ => (0, n),
            x if x == OP_LT | OP_GT | OP_EQ => (0, 65535),
            x if x == OP_LT | OP_GT => return Err(format!("!={n}: not one range")),
            _ => return Err("an operator that matches nothing".into()),
        };
        match terms.last_mut() {
            Some(t) if i > 0 && op & OP_AND != 0 => *t = (t.0.max(lo), t.1.min(hi)),
            _ => terms.push((lo, hi)),
        }
    }
    terms.retain(|(lo, hi)| lo <= hi);
    terms.sort();
    let mut joined: Vec<(u32, u32)> = Vec::new();
    for (lo, hi) in terms {
        match joined.last_mut() {
            Some(j) if lo <= j.1 + 1 => j.1 = j.1.max(hi),
            _ => joined.push((lo, hi)),
        }
    }
    match joined.as_slice() {
        [(lo, hi)] => Ok((*lo as u16, *hi as u16)),
        [] => Err("matches nothing".into()),
        _ => Err("several ranges: the filter's rules match one".into()),
    }
}

/// FlowSpec's packet length as the rule engine's L4 payload length: less
/// a 20-byte IPv4 header (IPv6's is not in its payload length) and the
/// 8-byte UDP header. TCP's header length varies: refused.
fn payload_len(f: &FlowSpec) -> Result<Span, String> {
    let Some((lo, hi)) = f.pkt_len else {
        return Ok((0, 65535));
    };
    if f.proto != Some(IPPROTO_UDP) {
        return Err(
            "packet-length with TCP: its header length varies, the filter matches payload length"
                .into(),
        );
    }
    let overhead = if f.dst.family == FAMILY_V4 { 28 } else { 8 };
    let hi = hi.checked_sub(overhead).ok_or_else(|| {
        format!("packet-length up to {hi}: shorter than the headers, matches nothing")
    })?;
    Ok((lo.saturating_sub(overhead), hi))
}

fn covers(outer: &Prefix, inner: &Prefix) -> bool {
    outer.len <= inner.len && outer.contains(inner.family, &inner.addr)
}

fn as_prefix(ip: IpAddr) -> Prefix {
    match ip {
        IpAddr::V4(a) => {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&a.octets());
            Prefix {
                family: FAMILY_V4,
                addr,
                len: 32,
            }
        }
        IpAddr::V6(a) => Prefix {
            family: FAMILY_V6,
            addr: a.octets(),
            len: 128,
        },
    }
}

/// Whether the operator allows `p`'s origin: a listed peer (GoBGP's
/// neighbor-ip or source-id) or a listed community.
fn allowed(p: &RibPath, cfg: &ImportConfig) -> Result<(), String> {
    let peer = |a: Option<IpAddr>| a.is_some_and(|a| cfg.peers.contains(&a));
    if peer(p.neighbor)
        || peer(p.source_id)
        || p.communities.iter().any(|c| cfg.communities.contains(c))
    {
        return Ok(());
    }
    let communities: Vec<String> = p
        .communities
        .iter()
        .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
        .collect();
    Err(format!(
        "from peer {} (source-id {}) with communities [{}]: neither is in peers nor communities",
        p.neighbor.map_or("none".into(), |a| a.to_string()),
        p.source_id.map_or("none".into(), |a| a.to_string()),
        communities.join(", ")
    ))
}

/// The checks on where a route drops, in order; the first failed is the
/// reason.
fn check(p: &RibPath, f: &FlowSpec, cfg: &ImportConfig, host: &Host) -> Result<(), String> {
    if p.neighbor.is_none() {
        return Err(
            "originated by this host's own speaker: its own announcements are not imported back"
                .into(),
        );
    }
    let same_match = |o: &FlowSpec| {
        FlowSpec {
            action: f.action,
            ..o.clone()
        } == *f
    };
    if host.own.iter().any(same_match) {
        return Err("announced by this host (its upstream worker): not imported back".into());
    }
    allowed(p, cfg)?;
    let min = if f.dst.family == FAMILY_V4 {
        cfg.min_prefix_v4
    } else {
        cfg.min_prefix_v6
    };
    if f.dst.len < min {
        return Err(format!(
            "destination {} is shorter than /{min} (min_prefix_v{}): it would drop a fleet's traffic",
            f.dst,
            if f.dst.family == FAMILY_V4 { 4 } else { 6 }
        ));
    }
    if !cfg.destinations.iter().any(|d| covers(d, &f.dst)) {
        return Err(format!(
            "destination {} is outside the configured destinations",
            f.dst
        ));
    }
    if !host.addresses.iter().any(|h| covers(&f.dst, h)) {
        return Err(format!(
            "destination {} covers no address of this host on the interface",
            f.dst
        ));
    }
    if let Some(src) = f.src {
        if let Some(p) = host
            .protected
            .iter()
            .find(|p| covers(&src, &as_prefix(p.addr)))
        {
            return Err(format!(
                "source {src} covers {}, {}: never dropped",
                p.addr, p.why
            ));
        }
        if let Some(n) = host
            .never_ban
            .iter()
            .find(|n| covers(&src, n) || covers(n, &src))
        {
            return Err(format!("source {src} meets never-ban {n}: never dropped"));
        }
        return Err(format!(
            "source {src}: the filter's rules cannot match a source prefix (the rule would drop every source)"
        ));
    }
    if f.src_ports.is_none() && f.dst_ports.is_none() && f.pkt_len.is_none() {
        return Err(
            "no port or packet-length component: it would drop all of a protocol's traffic".into(),
        );
    }
    Ok(())
}

/// A rule name that says what the rule matches, `flowspec-udp-s4500-d53`;
/// hashed when that is longer than a rule name may be.
fn rule_name(i: &FlowImport) -> String {
    let part = |tag: &str, (lo, hi): Span| match (lo, hi) {
        (0, 65535) => String::new(),
        (lo, hi) if lo == hi => format!("-{tag}{lo}"),
        (lo, hi) => format!("-{tag}{lo}-{hi}"),
    };
    let proto = if i.proto == IPPROTO_TCP { "tcp" } else { "udp" };
    let name = format!(
        "{FLOWSPEC_PREFIX}{proto}{}{}{}",
        part("s", i.src_ports),
        part("d", i.dst_ports),
        part("l", i.payload_len)
    );
    if name.len() < RULE_NAME_LEN {
        return name;
    }
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{FLOWSPEC_PREFIX}{proto}-{:08x}", hash as u32)
}

/// The import of one path that passed the checks.
fn import(p: &RibPath, f: &FlowSpec) -> Result<FlowImport, String> {
    let payload_len = payload_len(f)?;
    let limit_pps = match f.action {
        Action::Discard => 0,
        Action::RateLimit { bytes_per_s } => {
            let size = f.pkt_len.map_or(ASSUMED_PACKET_BYTES, |(_, hi)| {
                u64::from(hi).clamp(64, ASSUMED_PACKET_BYTES)
            });
            (bytes_per_s / size).max(1)
        }
    };
    let mut i = FlowImport {
        name: String::new(),
        route: Route::FlowSpec(f.clone()).to_string(),
        peer: p.neighbor.map_or_else(String::new, |a| a.to_string()),
        proto: f.proto.unwrap_or(IPPROTO_UDP),
        src_ports: f.src_ports.unwrap_or((0, 65535)),
        dst_ports: f.dst_ports.unwrap_or((0, 65535)),
        payload_len,
        limit_pps,
    };
    i.name = rule_name(&i);
    Ok(i)
}

/// SSH sessions to this host that a TCP drop of `i` would cut.
fn cuts_ssh(i: &FlowImport, host: &Host) -> Result<(), String> {
    for p in &host.protected {
        let Some((cport, sport)) = p.ssh_ports else {
            continue;
        };
        let within = |(lo, hi): Span, v: u16| (lo..=hi).contains(&v);
        if i.proto == IPPROTO_TCP && within(i.src_ports, cport) && within(i.dst_ports, sport) {
            return Err(format!(
                "it drops TCP from port {cport} to port {sport}: {}",
                p.why
            ));
        }
    }
    Ok(())
}

/// Every path judged: the rules to run (one per match: discard before a
/// rate limit, the lower limit first; at most `max_routes`) and the rest
/// with their reasons.
pub(crate) fn plan(paths: &[RibPath], cfg: &ImportConfig, host: &Host) -> Plan {
    let mut plan = Plan::default();
    let mut ok: Vec<FlowImport> = Vec::new();
    for p in paths {
        let judged = p
            .flow
            .clone()
            .and_then(|f| check(p, &f, cfg, host).and_then(|()| import(p, &f)))
            .and_then(|i| cuts_ssh(&i, host).map(|()| i));
        match judged {
            Ok(i) => ok.push(i),
            Err(reason) => plan.refused.push(Refused {
                route: p.text.clone(),
                reason,
            }),
        }
    }
    ok.sort_by_key(|i| (i.name.clone(), i.limit_pps != 0, i.limit_pps));
    let mut names = BTreeSet::new();
    ok.retain(|i| names.insert(i.name.clone()));
    for i in ok.split_off(ok.len().min(cfg.max_routes)) {
        plan.refused.push(Refused {
            route: i.route,
            reason: format!("over max_routes = {}", cfg.max_routes),
        });
    }
    plan.accepted = ok;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gobgp global rib -a ipv4-flowspec -j` of gobgpd 3.10, as captured:
    /// a route from a peer with a community, one with what the filter
    /// can't match, one originated locally.
    const RIB: &str = r#"{
 "[destination: 192.0.2.1/32][protocol: ==udp][source-port: ==4500]": [{
  "nlri": {"value": [{"type": 1, "value": {"prefix": "192.0.2.1/32"}},
                     {"type": 3, "value": [{"op": 129, "value": 17}]},
                     {"type": 6, "value": [{"op": 145, "value": 4500}]}]},
  "age": 1796683870, "best": true,
  "attrs": [{"type": 1, "value": 2},
            {"type": 2, "as_paths": [{"segment_type": 2, "num": 1, "asns": [64512]}]},
            {"type": 8, "communities": [4259840666]},
            {"type": 16, "value": [{"type": 128, "subtype": 6, "as": 0, "rate": 0}]},
            {"type": 14, "nexthop": "0.0.0.0", "afi": 1, "safi": 133, "value": []}],
  "stale": false, "source-id": "10.0.0.2", "neighbor-ip": "198.51.100.2"}],
 "[destination: 192.0.2.0/24][source: 198.51.100.0/24][protocol: ==tcp][destination-port: >=1024&<=2000]": [{
  "nlri": {"value": [{"type": 1, "value": {"prefix": "192.0.2.0/24"}},
                     {"type": 2, "value": {"prefix": "198.51.100.0/24"}},
                     {"type": 3, "value": [{"op": 129, "value": 6}]},
                     {"type": 5, "value": [{"op": 19, "value": 1024}, {"op": 213, "value": 2000}]},
                     {"type": 9, "value": [{"op": 128, "value": 2}]}]},
  "attrs": [{"type": 16, "value": [{"type": 128, "subtype": 6, "as": 0, "rate": 1000.5}]}],
  "neighbor-ip": "198.51.100.2"}],
 "[destination: 192.0.2.1/32][protocol: ==udp][source-port: ==123]": [{
  "nlri": {"value": [{"type": 1, "value": {"prefix": "192.0.2.1/32"}},
                     {"type": 3, "value": [{"op": 129, "value": 17}]},
                     {"type": 6, "value": [{"op": 129, "value": 123}]}]},
  "attrs": [{"type": 16, "value": [{"type": 128, "subtype": 6, "as": 0, "rate": 0}]}]}]
}"#;

    fn config() -> ImportConfig {
        ImportConfig {
            destinations: vec![
                parse_prefix("192.0.2.0/24").unwrap(),
                parse_prefix("2001:db8::/32").unwrap(),
            ],
            min_prefix_v4: 24,
            min_prefix_v6: 48,
            peers: vec!["198.51.100.2".parse().unwrap()],
            communities: Vec::new(),
            max_routes: 10,
            interval_ns: 1_000_000_000,
        }
    }

    fn host() -> Host {
        Host {
            addresses: vec![
                parse_prefix("192.0.2.1/32").unwrap(),
                parse_prefix("2001:db8::1/128").unwrap(),
            ],
            ..Host::default()
        }
    }

    fn udp(dst: &str, src_port: u16) -> FlowSpec {
        FlowSpec {
            dst: parse_prefix(dst).unwrap(),
            src: None,
            proto: Some(IPPROTO_UDP),
            src_ports: Some((src_port, src_port)),
            dst_ports: None,
            pkt_len: None,
            action: Action::Discard,
        }
    }

    fn from_peer(flow: FlowSpec) -> RibPath {
        RibPath {
            text: Route::FlowSpec(flow.clone()).to_string(),
            flow: Ok(flow),
            neighbor: "198.51.100.2".parse().ok(),
            source_id: "10.0.0.2".parse().ok(),
            communities: Vec::new(),
        }
    }

    #[test]
    fn reads_gobgps_rib() {
        let paths = parse_rib(RIB).unwrap();
        assert_eq!(paths.len(), 3);
        let peer = paths.iter().find(|p| p.text.contains("4500")).unwrap();
        assert_eq!(peer.flow, Ok(udp("192.0.2.1/32", 4500)));
        assert_eq!(peer.neighbor, "198.51.100.2".parse().ok());
        assert_eq!(peer.communities, vec![65000 << 16 | 666]);
        let flags = paths.iter().find(|p| p.text.contains("tcp")).unwrap();
        assert!(
            flags.flow.as_ref().unwrap_err().contains("tcp-flags"),
            "{flags:?}"
        );
        let local = paths.iter().find(|p| p.text.contains("==123")).unwrap();
        assert_eq!(local.neighbor, None);
        assert!(parse_rib("").unwrap().is_empty());
        assert!(parse_rib("null").unwrap().is_empty());
        assert!(parse_rib("[1]").is_err());
    }

    #[test]
    fn numeric_operators_become_one_range() {
        let ops = |pairs: &[(u64, u64)]| {
            let v: Vec<Value> = pairs
                .iter()
                .map(|(op, value)| serde_json::json!({"op": op, "value": value}))
                .collect();
            numeric(&Value::Array(v))
        };
        assert_eq!(ops(&[(0x81, 123)]), Ok((123, 123)));
        // >=1024&<=2000 as GoBGP encodes it.
        assert_eq!(ops(&[(19, 1024), (213, 2000)]), Ok((1024, 2000)));
        assert_eq!(ops(&[(0x82, 1023)]), Ok((1024, 65535)));
        assert_eq!(ops(&[(0x85, 99)]), Ok((0, 99)));
        // ==53 or ==54 join; ==53 or ==80 do not.
        assert_eq!(ops(&[(0x01, 53), (0x81, 54)]), Ok((53, 54)));
        assert!(
            ops(&[(0x01, 53), (0x81, 80)])
                .unwrap_err()
                .contains("several ranges")
        );
        assert!(ops(&[(0x86, 53)]).unwrap_err().contains("!=53"));
        assert!(ops(&[(0x84, 0)]).is_err());
    }

    #[test]
    fn a_valid_route_becomes_a_drop_rule() {
        let plan = plan(&[from_peer(udp("192.0.2.1/32", 4500))], &config(), &host());
        assert_eq!(plan.refused, vec![]);
        let i = &plan.accepted[0];
        assert_eq!(i.name, "flowspec-udp-s4500");
        assert_eq!(
            (i.src_ports, i.dst_ports, i.limit_pps),
            ((4500, 4500), (0, 65535), 0)
        );
        assert_eq!(i.peer, "198.51.100.2");
        assert!(
            i.route.starts_with("flowspec destination 192.0.2.1/32"),
            "{}",
            i.route
        );
    }

    #[test]
    fn rate_limits_convert_at_the_assumed_size_and_lengths_lose_the_headers() {
        let mut f = udp("192.0.2.0/24", 123);
        f.action = Action::RateLimit {
            bytes_per_s: 1_500_000,
        };
        let mut g = udp("2001:db8::/48", 1900);
        g.pkt_len = Some((128, 500));
        g.action = Action::RateLimit {
            bytes_per_s: 1_000_000,
        };
        let plan = plan(&[from_peer(f), from_peer(g)], &config(), &host());
        assert_eq!(plan.refused, vec![]);
        let by = |n: &str| plan.accepted.iter().find(|i| i.name == n).unwrap();
        assert_eq!(by("flowspec-udp-s123").limit_pps, 1000);
        let g = by("flowspec-udp-s1900-l120-492");
        assert_eq!((g.payload_len, g.limit_pps), ((120, 492), 2000));
    }

    #[test]
    fn refuses_with_a_reason() {
        let mut cases: Vec<(RibPath, &str)> = vec![
            (from_peer(udp("2001:db8::/32", 4500)), "shorter than /48"),
            (
                from_peer(udp("203.0.113.1/32", 4500)),
                "outside the configured destinations",
            ),
            (
                from_peer(udp("192.0.2.9/32", 4500)),
                "covers no address of this host",
            ),
        ];
        cases.push((from_peer(udp("192.0.2.0/23", 4500)), "shorter than /24"));
        let mut portless = udp("192.0.2.1/32", 0);
        portless.src_ports = None;
        cases.push((from_peer(portless), "no port or packet-length"));
        let mut sourced = udp("192.0.2.1/32", 4500);
        sourced.src = parse_prefix("198.51.100.0/24").ok();
        cases.push((from_peer(sourced.clone()), "cannot match a source prefix"));
        sourced.src = parse_prefix("203.0.113.0/24").ok();
        let mut stranger = from_peer(udp("192.0.2.1/32", 4500));
        stranger.neighbor = "203.0.113.7".parse().ok();
        stranger.source_id = None;
        cases.push((stranger, "neither is in peers nor communities"));
        let mut local = from_peer(udp("192.0.2.1/32", 4500));
        local.neighbor = None;
        cases.push((local, "own speaker"));
        let mut tcp_len = udp("192.0.2.1/32", 4500);
        tcp_len.proto = Some(IPPROTO_TCP);
        tcp_len.pkt_len = Some((100, 200));
        cases.push((from_peer(tcp_len), "packet-length with TCP"));
        let mut ssh = udp("192.0.2.1/32", 0);
        ssh.proto = Some(IPPROTO_TCP);
        ssh.src_ports = None;
        ssh.dst_ports = Some((22, 22));
        cases.push((from_peer(ssh), "drops TCP from port 51234 to port 22"));
        let mut h = host();
        h.protected.push(Protected {
            addr: "203.0.113.5".parse().unwrap(),
            why: "the client of your SSH session".into(),
            ssh_ports: Some((51234, 22)),
        });
        h.own.push(udp("192.0.2.1/32", 1900));
        cases.push((
            from_peer(udp("192.0.2.1/32", 1900)),
            "announced by this host",
        ));
        for (path, needle) in &cases {
            let plan = plan(std::slice::from_ref(path), &config(), &h);
            assert!(plan.accepted.is_empty(), "{path:?} accepted");
            assert!(
                plan.refused[0].reason.contains(needle),
                "{path:?}: {:?}",
                plan.refused
            );
        }
        let plan = plan(&[from_peer(sourced)], &config(), &h);
        assert!(
            plan.refused[0]
                .reason
                .contains("the client of your SSH session"),
            "{plan:?}"
        );
    }

    #[test]
    fn communities_allow_and_the_cap_holds() {
        let mut cfg = config();
        cfg.peers.clear();
        cfg.communities = vec![65000 << 16 | 666];
        cfg.max_routes = 2;
        let paths: Vec<RibPath> = [10, 11, 12, 12]
            .into_iter()
            .map(|port| {
                let mut p = from_peer(udp("192.0.2.1/32", port));
                p.communities = vec![65000 << 16 | 666];
                p
            })
            .collect();
        let plan = plan(&paths, &cfg, &host());
        let names: Vec<&str> = plan.accepted.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["flowspec-udp-s10", "flowspec-udp-s11"]);
        assert_eq!(plan.refused.len(), 1, "the duplicate of 12 is one rule");
        assert!(plan.refused[0].reason.contains("over max_routes = 2"));
    }

    #[test]
    fn long_names_are_hashed_within_the_limit() {
        let mut f = udp("192.0.2.1/32", 4500);
        f.src_ports = Some((10000, 20000));
        f.dst_ports = Some((30000, 40000));
        f.pkt_len = Some((1000, 1400));
        let plan = plan(&[from_peer(f)], &config(), &host());
        let name = &plan.accepted[0].name;
        assert!(
            name.starts_with("flowspec-udp-") && name.len() < RULE_NAME_LEN,
            "{name}"
        );
    }
}
