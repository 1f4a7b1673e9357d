//! The `[reply_guard]` part of a rule file: which source ports may only
//! answer requests this host sent, with what budget and for how long.

use std::collections::BTreeMap;

use filter_common::{GuardPort, MAX_GUARDED_PORTS, shapes::COAP_PORT};
use toml::Spanned;

// The guard is a part of a `RuleSet`, so it lives beside it in `set.rs`
// (below this file, whose `ban_warning` reads a whole set).
pub(crate) use super::set::ReplyGuard;
use super::{
    error::{Ctx, RuleError},
    schema::ReplyGuardSchema,
    set::RuleSet,
    units::parse_duration,
    vectors::{CATALOGUE, Vector, guarded},
};

/// Replies per request, and how long a request waits for them, when the
/// rule file does not say (nor the catalogue, for its vectors: see
/// [`port_budget`]). Subscriptions get the plain budget.
pub(crate) const DEFAULT_BUDGET: GuardPort = GuardPort {
    packets: 8,
    bytes: 0,
    expiry_ms: 10_000,
    multicast_expiry_ms: 5_000,
    observe_packets: 0,
    observe_expiry_ms: 0,
};

/// Where a key that only `[reply_guard]` takes appears in `s`, if one does
/// (a `[reply_guard.port.N]` takes only the budget keys).
fn section_key(s: &ReplyGuardSchema) -> Option<std::ops::Range<usize>> {
    let nested = s.port.keys().next().map(|k| k.span());
    let enabled = s.enabled.as_ref().map(|e| e.span());
    let ports = s.ports.as_ref().map(|p| p.span());
    enabled.or(ports).or(nested)
}

/// Where an observe key appears in `s`, if one does: only CoAP's port
/// takes them, the one protocol whose requests subscribe.
fn observe_key(s: &ReplyGuardSchema) -> Option<std::ops::Range<usize>> {
    let packets = s.observe_packets.as_ref().map(|v| v.span());
    packets.or(s.observe_expiry.as_ref().map(|v| v.span()))
}

/// The error for an observe key anywhere but `[reply_guard.port.5683]`.
fn observe_elsewhere(cx: &Ctx<'_>, span: std::ops::Range<usize>, section: &str) -> RuleError {
    cx.err(
        span,
        format!(
            "{section}: observe_packets and observe_expiry belong in \
             [reply_guard.port.{COAP_PORT}] (CoAP's subscriptions, the only requests that subscribe)"
        ),
    )
}

/// The guard as the program needs it; None when it is absent or off.
pub(crate) fn reply_guard(
    cx: &Ctx<'_>,
    s: Option<&ReplyGuardSchema>,
) -> Result<Option<ReplyGuard>, RuleError> {
    let Some(s) = s else {
        return Ok(None);
    };
    if let Some(span) = observe_key(s) {
        return Err(observe_elsewhere(cx, span, "[reply_guard]"));
    }
    let base = budget(cx, s, DEFAULT_BUDGET)?;
    let mut ports = BTreeMap::new();
    match &s.ports {
        None => ports = default_ports(CATALOGUE, base),
        Some(list) => {
            for p in list.get_ref() {
                let n = port(cx, p.span(), *p.get_ref())?;
                ports.insert(n, port_budget(CATALOGUE, n, base));
            }
        }
    }
    for (name, b) in &s.port {
        let n = name.get_ref().parse::<i64>().map_err(|_| {
            cx.err(
                name.span(),
                format!("[reply_guard.port.{}]: not a port number", name.get_ref()),
            )
        })?;
        if let Some(span) = section_key(b) {
            return Err(cx.err(
                span,
                format!(
                    "[reply_guard.port.{}] takes packets, bytes, expiry, multicast_expiry, \
                     observe_packets and observe_expiry only",
                    name.get_ref()
                ),
            ));
        }
        let n = port(cx, name.span(), n)?;
        if let Some(span) = observe_key(b).filter(|_| n != COAP_PORT) {
            let section = format!("[reply_guard.port.{n}]");
            return Err(observe_elsewhere(cx, span, &section));
        }
        ports.insert(n, budget(cx, b, port_budget(CATALOGUE, n, base))?);
    }
    if ports.len() > MAX_GUARDED_PORTS as usize {
        return Err(cx.err(
            0..0,
            format!("[reply_guard] guards at most {MAX_GUARDED_PORTS} ports"),
        ));
    }
    let off = s.enabled.as_ref().is_some_and(|e| !*e.get_ref());
    Ok((!off).then_some(ReplyGuard { ports }))
}

/// The guard of a `[reply_guard]` that lists no ports: every port of
/// `catalogue` the guard holds (streams are left out), each with `base`
/// and its vector's own budget over it.
pub(crate) fn default_ports(catalogue: &[Vector], base: GuardPort) -> BTreeMap<u16, GuardPort> {
    guarded(catalogue)
        .map(|v| (v.port, v.budget.over(base)))
        .collect()
}

/// The budget of guarded `port`: `base` (the rule file's `[reply_guard]`
/// keys over [`DEFAULT_BUDGET`]), with what the catalogue's vector of the
/// port asks for its own over it (256 replies to discovery, SSDP's window
/// of MX seconds, a game server's bursts, CoAP's subscriptions).
pub(crate) fn port_budget(catalogue: &[Vector], port: u16, base: GuardPort) -> GuardPort {
    catalogue
        .iter()
        .find(|v| v.port == port)
        .map_or(base, |v| v.budget.over(base))
}

fn port(cx: &Ctx<'_>, span: std::ops::Range<usize>, n: i64) -> Result<u16, RuleError> {
    u16::try_from(n).ok().filter(|p| *p != 0).ok_or_else(|| {
        cx.err(
            span,
            format!("port {n} out of range: allowed is 1 to 65535"),
        )
    })
}

fn budget(cx: &Ctx<'_>, s: &ReplyGuardSchema, base: GuardPort) -> Result<GuardPort, RuleError> {
    let mut out = base;
    let count = |v: &Spanned<i64>, what: &str, lo: i64| {
        let n = *v.get_ref();
        u32::try_from(n)
            .ok()
            .filter(|n| *n as i64 >= lo)
            .ok_or_else(|| {
                cx.err(
                    v.span(),
                    format!("{what} {n} out of range: allowed is {lo} to {}", u32::MAX),
                )
            })
    };
    let ms = |v: &Spanned<String>| -> Result<u32, RuleError> {
        let ns = parse_duration(v.get_ref()).map_err(|e| cx.err(v.span(), e.to_string()))?;
        u32::try_from(ns / 1_000_000)
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| cx.err(v.span(), "expiry must be between 1ms and 49 days"))
    };
    if let Some(v) = &s.packets {
        out.packets = count(v, "packets", 1)?;
    }
    if let Some(v) = &s.bytes {
        out.bytes = count(v, "bytes", 0)?;
    }
    if let Some(v) = &s.expiry {
        out.expiry_ms = ms(v)?;
    }
    if let Some(v) = &s.multicast_expiry {
        out.multicast_expiry_ms = ms(v)?;
    }
    if let Some(v) = &s.observe_packets {
        out.observe_packets = count(v, "observe_packets", 0)?;
    }
    if let Some(v) = &s.observe_expiry {
        out.observe_expiry_ms = ms(v)?;
    }
    if out.observe_packets != 0 && out.observe_expiry_ms == 0 {
        let at = s.observe_packets.as_ref().map_or(0..0, |v| v.span());
        return Err(cx.err(
            at,
            "observe_packets needs observe_expiry: how long a subscription is answered",
        ));
    }
    Ok(out)
}

/// `check`'s warning for a rule set that bans without a `never_ban` list:
/// only the peers filterctl finds on the host (default gateways, resolvers,
/// time servers, the SSH client) would be safe from a forged flood.
pub(crate) fn ban_warning(set: &RuleSet) -> Option<String> {
    (set.ban_after_ns != 0 && set.never_ban.is_empty()).then(|| {
        "warning: [ban] is set but never_ban lists nobody: a flood forging a peer's address \
         can get it banned; list the peers this host must never lose (monitoring, load \
         balancers, backup servers). Default gateways, resolvers, NTP servers and the SSH \
         client are protected automatically."
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use crate::rules::{
        parse,
        vectors::{CATALOGUE, guarded},
    };

    #[test]
    fn bans_without_a_never_ban_list_are_warned_about() {
        let ban = "[per_source]\npps = 10\n[ban]\nafter = \"1s\"\nfor = \"1m\"\n";
        let warned = |text: &str| super::ban_warning(&parse("t.toml", text).unwrap()).is_some();
        assert!(warned(&format!("{ban}{RULE}")));
        assert!(!warned(&format!(
            "never_ban = [\"192.0.2.9\"]\n{ban}{RULE}"
        )));
        assert!(!warned(RULE));
    }

    const RULE: &str =
        "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = 7\naction = \"drop\"\n";

    #[test]
    fn defaults_guard_the_catalogue() {
        let set = parse("t.toml", &format!("[reply_guard]\n{RULE}")).unwrap();
        let g = set.reply_guard.expect("on");
        for p in [53, 123, 389, 11211] {
            assert_eq!(g.ports[&p], super::DEFAULT_BUDGET, "port {p}");
        }
        for v in guarded(CATALOGUE) {
            assert_eq!(g.ports[&v.port], v.budget.over(super::DEFAULT_BUDGET));
        }
        assert!(!g.ports.contains_key(&443));
        for v in CATALOGUE {
            assert_eq!(g.ports.contains_key(&v.port), v.guarded(), "{}", v.name);
        }
        assert_eq!(g.ports.len(), guarded(CATALOGUE).count());
    }

    #[test]
    fn ports_and_budgets_are_configurable() {
        let text = format!(
            "{RULE}[reply_guard]\nports = [53]\npackets = 2\nexpiry = \"3s\"\n\
             [reply_guard.port.1900]\npackets = 64\nmulticast_expiry = \"2s\"\n"
        );
        let g = parse("t.toml", &text).unwrap().reply_guard.unwrap();
        assert_eq!(g.ports.len(), 2);
        assert_eq!((g.ports[&53].packets, g.ports[&53].expiry_ms), (2, 3000));
        let ssdp = g.ports[&1900];
        assert_eq!(
            (ssdp.packets, ssdp.expiry_ms, ssdp.multicast_expiry_ms),
            (64, 3000, 2000)
        );
    }

    /// A vector's own budget (the catalogue's) beats the section-wide
    /// keys, wherever its port is guarded from; a per-port section beats
    /// both.
    #[test]
    fn the_catalogues_budgets_sit_between_the_section_and_the_port() {
        let text = format!(
            "{RULE}[reply_guard]\npackets = 4\nmulticast_expiry = \"2s\"\n\
             [reply_guard.port.5353]\npackets = 16\n\
             [reply_guard.port.5683]\nobserve_packets = 10\n"
        );
        let g = parse("t.toml", &text).unwrap().reply_guard.unwrap();
        assert_eq!((g.ports[&53].packets, g.ports[&53].observe_packets), (4, 0));
        let ssdp = g.ports[&1900];
        assert_eq!((ssdp.packets, ssdp.multicast_expiry_ms), (256, 125_000));
        let mdns = g.ports[&5353];
        assert_eq!((mdns.packets, mdns.multicast_expiry_ms), (16, 2000));
        let coap = g.ports[&5683];
        assert_eq!(
            (coap.observe_packets, coap.observe_expiry_ms),
            (10, 3_600_000)
        );
        let listed = "[reply_guard]\nports = [27015, 9999]\n";
        let g = parse("t.toml", &format!("{RULE}{listed}"))
            .unwrap()
            .reply_guard
            .unwrap();
        assert_eq!((g.ports[&27015].packets, g.ports[&9999].packets), (1024, 8));
    }

    #[test]
    fn observe_keys_belong_to_coaps_port() {
        for (text, line) in [
            ("[reply_guard]\nobserve_packets = 5\n", 2),
            (
                "[reply_guard]\n[reply_guard.port.53]\nobserve_expiry = \"1h\"\n",
                3,
            ),
        ] {
            let e = parse("t.toml", &format!("{text}{RULE}")).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains("[reply_guard.port.5683]"), "{e}");
        }
        let off = "[reply_guard]\n[reply_guard.port.5683]\nobserve_packets = 0\n";
        let g = parse("t.toml", &format!("{off}{RULE}")).unwrap();
        assert_eq!(g.reply_guard.unwrap().ports[&5683].observe_packets, 0);
    }

    #[test]
    fn off_means_absent() {
        let text = format!("{RULE}[reply_guard]\nenabled = false\n");
        assert!(parse("t.toml", &text).unwrap().reply_guard.is_none());
        assert!(parse("t.toml", RULE).unwrap().reply_guard.is_none());
    }

    #[test]
    fn bad_values_are_placed() {
        for (text, line, needle) in [
            ("[reply_guard]\nports = [70000]\n", 2, "out of range"),
            ("[reply_guard]\npackets = 0\n", 2, "out of range"),
            ("[reply_guard]\nexpiry = \"soon\"\n", 2, ""),
            ("[reply_guard.port.dns]\npackets = 1\n", 1, "not a port"),
            ("[reply_guard]\ncolour = 1\n", 2, "unknown field"),
            ("[reply_guard.port.53]\nports = [1]\n", 2, "takes packets"),
            (
                "[reply_guard.port.5683]\nobserve_packets = -1\n",
                2,
                "out of range",
            ),
            (
                "[reply_guard.port.5683]\nobserve_expiry = \"0s\"\n",
                2,
                "out of range",
            ),
        ] {
            let e = parse("t.toml", &format!("{text}{RULE}")).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }
}
