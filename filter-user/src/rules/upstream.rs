//! The `[upstream]` section of a rule file: which BGP speaker `filterctl
//! serve` drives, and when drop decisions become FlowSpec routes or a
//! blackhole announcement (thresholds, caps, hold times, dry run), and
//! which FlowSpec routes of other hosts it enforces here (`[upstream.import]`).

use std::{net::IpAddr, ops::Range};

use toml::Spanned;

use super::{
    error::{Ctx, RuleError},
    prefixes::{Prefix, parse_prefix},
    schema::{BlackholeSchema, ImportSchema, UpstreamSchema},
    units::{parse_bitrate, parse_duration},
};

/// Serializable for the upstream state file: what holds the routes a
/// killed serve left is what withdraws them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SpeakerConfig {
    /// gobgpd, driven through its CLI.
    Gobgp {
        command: String,
        host: String,
        port: u16,
    },
    /// ExaBGP, fed text commands through a FIFO its helper process reads.
    Exabgp { pipe: String },
}

/// When traffic counts as an attack worth a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// 0: packets/s alone never qualify.
    pub min_pps: u64,
    /// 0: bits/s alone never qualify.
    pub min_bps: u64,
    /// Above a threshold for this long before a route is announced.
    pub sustain_ns: u64,
    /// Withdrawn once below both thresholds for this long.
    pub hold_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlackholeConfig {
    pub link_bps: u64,
    pub share_percent: u8,
    pub sustain_ns: u64,
    pub hold_ns: u64,
    /// The ladder: the blackhole's sustain time counts only while FlowSpec
    /// routes are announced (or none could be), so that it comes only when
    /// FlowSpec did not bring the drops under the threshold.
    pub after_flowspec: bool,
}

impl BlackholeConfig {
    /// Dropped bits/s from which the host's addresses are blackholed.
    pub fn threshold_bps(&self) -> u64 {
        (self.link_bps as u128 * self.share_percent as u128 / 100) as u64
    }
}

/// A validated `[upstream]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub speaker: SpeakerConfig,
    pub peers: Vec<String>,
    pub dry_run: bool,
    pub interval_ns: u64,
    pub flowspec: Thresholds,
    pub max_routes: usize,
    pub max_changes_per_minute: usize,
    /// None: off (the default).
    pub blackhole: Option<BlackholeConfig>,
    /// None: nothing is imported (the default).
    pub import: Option<ImportConfig>,
}

/// A validated `[upstream.import]`: which FlowSpec routes of the speaker's
/// RIB become rules here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportConfig {
    /// A route's destination must lie inside one of these.
    pub destinations: Vec<Prefix>,
    /// And be at least this long: a short prefix is a fleet's traffic.
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    /// Routes are taken from these peers (GoBGP's neighbor-ip or
    /// source-id) or with one of these communities (ASN << 16 | value).
    pub peers: Vec<IpAddr>,
    pub communities: Vec<u32>,
    pub max_routes: usize,
    pub interval_ns: u64,
}

const DEFAULT_API: &str = "127.0.0.1:50051";

/// Validates `[upstream]`; every error goes to `errors`.
pub(crate) fn parse(
    cx: &Ctx<'_>,
    s: &Spanned<UpstreamSchema>,
    errors: &mut Vec<RuleError>,
) -> Option<UpstreamConfig> {
    let u = s.get_ref();
    let mut keep = |r: Result<u64, RuleError>, default: u64| match r {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            default
        }
    };
    let interval_ns = keep(duration(cx, u.interval.as_ref(), "1s"), 0);
    let min_pps = keep(
        int(cx, u.min_pps.as_ref(), "min_pps", 0, 1 << 40, 10_000),
        0,
    );
    let min_bps = keep(bitrate(cx, u.min_bps.as_ref(), "100Mbit"), 0);
    let sustain_ns = keep(duration(cx, u.sustain.as_ref(), "10s"), 0);
    let hold_ns = keep(duration(cx, u.hold.as_ref(), "10m"), 0);
    let max_routes = keep(
        int(cx, u.max_routes.as_ref(), "max_routes", 1, 10_000, 100),
        0,
    );
    let max_changes = keep(
        int(
            cx,
            u.max_changes_per_minute.as_ref(),
            "max_changes_per_minute",
            1,
            100_000,
            60,
        ),
        0,
    );
    if min_pps == 0 && min_bps == 0 {
        errors.push(cx.err(
            s.span(),
            "min_pps and min_bps are both 0: every rule with traffic would be announced; set one",
        ));
    }
    if interval_ns == 0 {
        errors.push(cx.err(
            u.interval.as_ref().map_or(s.span(), Spanned::span),
            "interval must be longer than 0",
        ));
    }
    let speaker = speaker(cx, u, errors);
    let blackhole = u.blackhole.as_ref().and_then(|b| blackhole(cx, b, errors));
    let import = u.import.as_ref().and_then(|i| import(cx, i, errors));
    if let (Some(Some(_)), Some(i)) = (&import, &u.import)
        && u.speaker.get_ref() != "gobgp"
    {
        errors.push(cx.err(
            i.span(),
            "[upstream.import] reads GoBGP's RIB: it needs speaker = \"gobgp\"",
        ));
    }
    Some(UpstreamConfig {
        speaker: speaker?,
        peers: u.peers.iter().map(|p| p.get_ref().clone()).collect(),
        dry_run: u.dry_run.unwrap_or(false),
        interval_ns,
        flowspec: Thresholds {
            min_pps,
            min_bps,
            sustain_ns,
            hold_ns,
        },
        max_routes: max_routes as usize,
        max_changes_per_minute: max_changes as usize,
        blackhole: blackhole.flatten(),
        import: import.flatten(),
    })
}

/// Some(None): written but disabled.
fn import(
    cx: &Ctx<'_>,
    i: &Spanned<ImportSchema>,
    errors: &mut Vec<RuleError>,
) -> Option<Option<ImportConfig>> {
    let s = i.get_ref();
    let before = errors.len();
    let destinations = list(
        cx,
        &s.destinations,
        errors,
        "destination",
        "a prefix like \"192.0.2.0/24\"",
        |t| parse_prefix(t).ok(),
    );
    let peers = list(
        cx,
        &s.peers,
        errors,
        "peer",
        "an address like \"192.0.2.254\"",
        |t| t.parse().ok(),
    );
    let communities = list(
        cx,
        &s.communities,
        errors,
        "community",
        "ASN:VALUE like \"65000:666\"",
        community,
    );
    let min_v4 = int(cx, s.min_prefix_v4.as_ref(), "min_prefix_v4", 8, 32, 24);
    let min_v6 = int(cx, s.min_prefix_v6.as_ref(), "min_prefix_v6", 16, 128, 48);
    let max_routes = int(cx, s.max_routes.as_ref(), "max_routes", 1, 1000, 100);
    let interval = duration(cx, s.interval.as_ref(), "2s");
    let mut ok = |r: Result<u64, RuleError>| r.map_err(|e| errors.push(e)).ok();
    let (min_v4, min_v6, max_routes, interval) =
        (ok(min_v4), ok(min_v6), ok(max_routes), ok(interval));
    if s.destinations.is_empty() {
        errors.push(cx.err(
            i.span(),
            "[upstream.import] needs destinations = [\"PREFIX\", ...]: the prefixes of this fleet that imported routes may name",
        ));
    }
    if s.peers.is_empty() && s.communities.is_empty() {
        errors.push(cx.err(
            i.span(),
            "[upstream.import] needs peers = [...] or communities = [...]: whose routes are enforced here",
        ));
    }
    if interval == Some(0) {
        errors.push(cx.err(
            span_of(s.interval.as_ref()),
            "interval must be longer than 0",
        ));
    }
    if errors.len() > before {
        return None;
    }
    let config = ImportConfig {
        destinations,
        min_prefix_v4: min_v4? as u8,
        min_prefix_v6: min_v6? as u8,
        peers,
        communities,
        max_routes: max_routes? as usize,
        interval_ns: interval?,
    };
    Some((s.enabled != Some(false)).then_some(config))
}

/// The entries of an import list that `parse` reads; an error for each
/// other one.
fn list<T>(
    cx: &Ctx<'_>,
    items: &[Spanned<String>],
    errors: &mut Vec<RuleError>,
    what: &str,
    hint: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        match parse(item.get_ref()) {
            Some(v) => out.push(v),
            None => errors.push(cx.err(
                item.span(),
                format!("{what} {:?} is not {hint}", item.get_ref()),
            )),
        }
    }
    out
}

/// "ASN:VALUE" as BGP carries it: ASN << 16 | VALUE.
pub(crate) fn community(text: &str) -> Option<u32> {
    let (asn, value) = text.split_once(':')?;
    let asn: u16 = asn.trim().parse().ok()?;
    let value: u16 = value.trim().parse().ok()?;
    Some(u32::from(asn) << 16 | u32::from(value))
}

fn speaker(cx: &Ctx<'_>, u: &UpstreamSchema, errors: &mut Vec<RuleError>) -> Option<SpeakerConfig> {
    let misplaced = |key: &Option<Spanned<String>>, name: &str, speaker: &str| {
        key.as_ref().map(|k| {
            cx.err(
                k.span(),
                format!("{name} is not used by speaker {speaker:?}"),
            )
        })
    };
    let (config, stray) = match u.speaker.get_ref().as_str() {
        "gobgp" => {
            let api = u.api.as_ref();
            let text = api.map_or(DEFAULT_API, |a| a.get_ref().as_str());
            let span = api.map_or(u.speaker.span(), Spanned::span);
            let config = host_port(text).map(|(host, port)| SpeakerConfig::Gobgp {
                command: u
                    .command
                    .as_ref()
                    .map_or("gobgp".into(), |c| c.get_ref().clone()),
                host,
                port,
            });
            let config = config.ok_or_else(|| {
                cx.err(
                    span,
                    format!("api {text:?} is not HOST:PORT of gobgpd's API (e.g. {DEFAULT_API:?})"),
                )
            });
            (config, misplaced(&u.pipe, "pipe", "gobgp"))
        }
        "exabgp" => {
            let config = u
                .pipe
                .as_ref()
                .map(|p| SpeakerConfig::Exabgp {
                    pipe: p.get_ref().clone(),
                })
                .ok_or_else(|| {
                    cx.err(
                        u.speaker.span(),
                        "speaker \"exabgp\" needs pipe = \"/run/filterctl/exabgp.fifo\" (the FIFO its process reads, see deploy/bgp/)",
                    )
                });
            let stray =
                misplaced(&u.api, "api", "exabgp").or(misplaced(&u.command, "command", "exabgp"));
            (config, stray)
        }
        other => (
            Err(cx.unknown(u.speaker.span(), "speaker", other, &["gobgp", "exabgp"])),
            None,
        ),
    };
    errors.extend(stray);
    config.map_err(|e| errors.push(e)).ok()
}

/// Some(None): written but disabled.
fn blackhole(
    cx: &Ctx<'_>,
    b: &Spanned<BlackholeSchema>,
    errors: &mut Vec<RuleError>,
) -> Option<Option<BlackholeConfig>> {
    let s = b.get_ref();
    let link = parse_bitrate(s.link_capacity.get_ref())
        .map_err(|e| cx.err(s.link_capacity.span(), e.to_string()));
    let share = int(cx, s.share.as_ref(), "share", 1, 100, 80);
    let sustain = duration(cx, s.sustain.as_ref(), "30s");
    let hold = duration(cx, s.hold.as_ref(), "30m");
    let mut ok = |r: Result<u64, RuleError>| r.map_err(|e| errors.push(e)).ok();
    let (link, share, sustain, hold) = (ok(link), ok(share), ok(sustain), ok(hold));
    let config = BlackholeConfig {
        link_bps: link?,
        share_percent: share? as u8,
        sustain_ns: sustain?,
        hold_ns: hold?,
        after_flowspec: s.after_flowspec != Some(false),
    };
    Some((s.enabled != Some(false)).then_some(config))
}

fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host.to_string(), port.parse().ok()?))
}

fn span_of<T>(v: Option<&Spanned<T>>) -> Range<usize> {
    v.map_or(0..0, Spanned::span)
}

fn duration(cx: &Ctx<'_>, v: Option<&Spanned<String>>, default: &str) -> Result<u64, RuleError> {
    let text = v.map_or(default, |d| d.get_ref().as_str());
    parse_duration(text).map_err(|e| cx.err(span_of(v), e.to_string()))
}

fn bitrate(cx: &Ctx<'_>, v: Option<&Spanned<String>>, default: &str) -> Result<u64, RuleError> {
    let text = v.map_or(default, |d| d.get_ref().as_str());
    if text == "0" {
        return Ok(0);
    }
    parse_bitrate(text).map_err(|e| cx.err(span_of(v), e.to_string()))
}

fn int(
    cx: &Ctx<'_>,
    v: Option<&Spanned<i64>>,
    what: &str,
    lo: i64,
    hi: i64,
    default: i64,
) -> Result<u64, RuleError> {
    let n = v.map_or(default, |n| *n.get_ref());
    if !(lo..=hi).contains(&n) {
        return Err(cx.err(
            span_of(v),
            format!("{what} {n} out of range: allowed is {lo} to {hi}"),
        ));
    }
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use crate::rules::parse;

    const RULE: &str =
        "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = 1900\naction = \"drop\"\n";

    fn upstream(section: &str) -> super::UpstreamConfig {
        let text = format!("{RULE}[upstream]\n{section}");
        let set = parse("t.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        set.upstream.expect("an [upstream] section")
    }

    #[test]
    fn defaults_are_conservative_and_blackhole_is_off() {
        let u = upstream("speaker = \"gobgp\"\n");
        assert_eq!(
            u.speaker,
            super::SpeakerConfig::Gobgp {
                command: "gobgp".into(),
                host: "127.0.0.1".into(),
                port: 50051
            }
        );
        assert!(!u.dry_run);
        assert_eq!(u.flowspec.min_pps, 10_000);
        assert_eq!(u.flowspec.hold_ns, 600_000_000_000);
        assert_eq!(u.max_routes, 100);
        assert_eq!(u.blackhole, None);
        assert!(parse("t.toml", RULE).unwrap().upstream.is_none());
    }

    #[test]
    fn blackhole_section_turns_it_on_unless_disabled() {
        let u = upstream(
            "speaker = \"exabgp\"\npipe = \"/run/x.fifo\"\n[upstream.blackhole]\nlink_capacity = \"10Gbit\"\nshare = 50\n",
        );
        let b = u.blackhole.expect("blackhole on");
        assert_eq!(b.threshold_bps(), 5_000_000_000);
        let u = upstream(
            "speaker = \"gobgp\"\n[upstream.blackhole]\nenabled = false\nlink_capacity = \"1Gbit\"\n",
        );
        assert_eq!(u.blackhole, None);
    }

    #[test]
    fn import_section_reads_its_lists_and_refuses_what_would_import_anything() {
        let u = upstream(
            "speaker = \"gobgp\"\n[upstream.import]\ndestinations = [\"192.0.2.0/24\"]\npeers = [\"198.51.100.2\"]\ncommunities = [\"65000:666\"]\nmin_prefix_v4 = 28\n",
        );
        let i = u.import.expect("import on");
        assert_eq!(i.destinations[0].to_string(), "192.0.2.0/24");
        assert_eq!(
            (i.min_prefix_v4, i.min_prefix_v6, i.max_routes),
            (28, 48, 100)
        );
        assert_eq!(i.communities, vec![65000 << 16 | 666]);
        let off = upstream(
            "speaker = \"gobgp\"\n[upstream.import]\nenabled = false\ndestinations = [\"192.0.2.0/24\"]\npeers = [\"198.51.100.2\"]\n",
        );
        assert_eq!(off.import, None);
        let cases: &[(&str, usize, &str)] = &[
            ("peers = [\"198.51.100.2\"]\n", 8, "needs destinations"),
            ("destinations = [\"192.0.2.0/24\"]\n", 8, "needs peers"),
            (
                "destinations = [\"192.0.2.0/24\"]\npeers = [\"x\"]\n",
                10,
                "peer \"x\" is not",
            ),
            (
                "destinations = [\"nowhere\"]\npeers = [\"198.51.100.2\"]\n",
                9,
                "destination",
            ),
            (
                "destinations = [\"192.0.2.0/24\"]\ncommunities = [\"666\"]\n",
                10,
                "ASN:VALUE",
            ),
            (
                "destinations = [\"192.0.2.0/24\"]\npeers = [\"198.51.100.2\"]\nmin_prefix_v4 = 0\n",
                11,
                "out of range",
            ),
        ];
        for (section, line, needle) in cases {
            let text =
                format!("{RULE}[upstream]\nspeaker = \"gobgp\"\n[upstream.import]\n{section}");
            let e = parse("t.toml", &text).expect_err(section);
            assert_eq!(e.line, *line, "{section}: {e}");
            assert!(e.message.contains(needle), "{section}: {e}");
        }
        let exa = format!(
            "{RULE}[upstream]\nspeaker = \"exabgp\"\npipe = \"/x\"\n[upstream.import]\ndestinations = [\"192.0.2.0/24\"]\npeers = [\"198.51.100.2\"]\n"
        );
        let e = parse("t.toml", &exa).expect_err("exabgp");
        assert!(e.message.contains("needs speaker = \"gobgp\""), "{e}");
    }

    #[test]
    fn errors_name_the_place() {
        let cases: &[(&str, usize, usize, &str)] = &[
            ("speaker = \"bird\"\n", 7, 11, "unknown speaker \"bird\""),
            ("speaker = \"exabgp\"\n", 7, 11, "needs pipe"),
            (
                "speaker = \"gobgp\"\napi = \"nowhere\"\n",
                8,
                7,
                "HOST:PORT",
            ),
            (
                "speaker = \"gobgp\"\npipe = \"/x\"\n",
                8,
                8,
                "not used by speaker",
            ),
            (
                "speaker = \"gobgp\"\nmax_routes = 0\n",
                8,
                14,
                "out of range",
            ),
            ("speaker = \"gobgp\"\nhold = \"forever\"\n", 8, 8, ""),
            ("speaker = \"gobgp\"\ncolour = 1\n", 8, 1, "unknown field"),
            (
                "speaker = \"gobgp\"\n[upstream.blackhole]\nlink_capacity = \"fast\"\n",
                9,
                17,
                "bit rate",
            ),
            (
                "speaker = \"gobgp\"\n[upstream.blackhole]\nlink_capacity = \"1Gbit\"\nshare = 0\n",
                10,
                9,
                "out of range",
            ),
        ];
        for (section, line, column, needle) in cases {
            let text = format!("{RULE}[upstream]\n{section}");
            let e = parse("t.toml", &text).expect_err(section);
            assert_eq!((e.line, e.column), (*line, *column), "{section}: {e}");
            assert!(e.message.contains(needle), "{section}: {e}");
        }
    }
}
