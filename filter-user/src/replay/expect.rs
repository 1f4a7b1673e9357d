//! The gate of `filterctl replay --expect FILE`: the expect file (which
//! captures, labelled attack, baseline or mixed, and how much of each the
//! rules must drop or pass), read and validated with file, line and column
//! in every error, and the judgement of the tallies a replay makes.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use clap::ValueEnum as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use toml::Spanned;

use super::clock::Timing;
use crate::rules::{
    error::{Ctx, RuleError, one_of},
    files,
    parse::toml_message,
    prefixes::parse_prefix,
};

mod spec;

pub(crate) use self::spec::{CaptureSpec, Expect, Gate, Label, Matcher};

/// Largest expect file read: a hand-written list of captures.
const MAX_EXPECT_FILE: u64 = 1 << 20;

/// Reads and validates an expect file; its paths are taken relative to
/// its folder. Every error of the file, one a line.
pub(crate) fn load(path: &Path) -> anyhow::Result<Expect> {
    let text = files::read_text(path, "expect file", MAX_EXPECT_FILE)?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut expect = parse(&path.display().to_string(), &text, base).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    expect.path = path.to_path_buf();
    Ok(expect)
}

/// Validates expect-file text (named `file` in errors), paths relative to
/// `base`. Every error found, in file order, or the expect file.
pub(crate) fn parse(file: &str, text: &str, base: &Path) -> Result<Expect, Vec<RuleError>> {
    let cx = Ctx { file, text };
    let schema: ExpectSchema = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        vec![cx.err(span.clone(), toml_message(&e, text.get(span.start..)))]
    })?;
    let mut errors = Vec::new();
    let gate = gate(&cx, schema.gate.as_ref())
        .map_err(|e| errors.push(e))
        .ok();
    let captures: Vec<Option<CaptureSpec>> = schema
        .captures
        .iter()
        .map(|c| capture(&cx, c, base).map_err(|e| errors.push(e)).ok())
        .collect();
    if schema.captures.is_empty() {
        errors.push(cx.err(
            0..0,
            "no [[capture]]: the gate needs at least one capture (file, label)",
        ));
    }
    let path_of = |p: &Option<Spanned<String>>| p.as_ref().map(|p| base.join(p.get_ref()));
    match (gate, captures.into_iter().collect::<Option<Vec<_>>>()) {
        (Some(gate), Some(captures)) if errors.is_empty() => Ok(Expect {
            path: PathBuf::from(file),
            rules: path_of(&schema.rules),
            against: path_of(&schema.against),
            gate,
            captures,
        }),
        _ => {
            errors.sort_by_key(|e| (e.line, e.column));
            Err(errors)
        }
    }
}

/// An expect file as written, every value with its span.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSchema {
    #[serde(default)]
    rules: Option<Spanned<String>>,
    #[serde(default)]
    against: Option<Spanned<String>>,
    #[serde(default)]
    gate: Option<GateSchema>,
    #[serde(default, rename = "capture")]
    captures: Vec<Spanned<CaptureSchema>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateSchema {
    #[serde(default)]
    max_benign_drop: Option<Spanned<i64>>,
    /// "99%", "99.5%" or a number from 0 to 1.
    #[serde(default)]
    min_attack_drop: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureSchema {
    file: Spanned<String>,
    label: Spanned<String>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    timing: Option<Spanned<String>>,
    #[serde(default)]
    attack: Option<Spanned<MatcherSchema>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatcherSchema {
    /// "udp", "tcp", "icmp" or a protocol number.
    #[serde(default)]
    proto: Option<Spanned<toml::Value>>,
    #[serde(default)]
    src_ports: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    dst_ports: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    sources: Option<Spanned<Vec<Spanned<String>>>>,
}

fn gate(cx: &Ctx<'_>, g: Option<&GateSchema>) -> Result<Gate, RuleError> {
    let mut gate = Gate::default();
    let Some(g) = g else { return Ok(gate) };
    if let Some(m) = &g.max_benign_drop {
        gate.max_benign_drop = u64::try_from(*m.get_ref()).map_err(|_| {
            cx.err(
                m.span(),
                format!(
                    "max_benign_drop {} out of range: a number of frames, 0 or more",
                    m.get_ref()
                ),
            )
        })?;
    }
    if let Some(s) = &g.min_attack_drop {
        gate.min_attack_drop = share(s.get_ref()).map_err(|m| cx.err(s.span(), m))?;
    }
    Ok(gate)
}

/// A share from "99%", "99.5%" or a number from 0 to 1.
fn share(v: &toml::Value) -> Result<f64, String> {
    const HOW: &str =
        "write a share of the attack frames as \"99%\", \"99.5%\" or a number from 0 to 1";
    let n = match v {
        toml::Value::String(s) => {
            let Some(pct) = s.trim().strip_suffix('%') else {
                return Err(format!("min_attack_drop {s:?} has no '%': {HOW}"));
            };
            match pct.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => return Ok(p / 100.0),
                _ => return Err(format!("min_attack_drop {s:?} is not 0% to 100%: {HOW}")),
            }
        }
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        other => {
            return Err(format!("min_attack_drop is a {}: {HOW}", other.type_str()));
        }
    };
    if !(0.0..=1.0).contains(&n) {
        let hint = if (1.0..=100.0).contains(&n) {
            format!(" (did you mean \"{n}%\"?)")
        } else {
            String::new()
        };
        return Err(format!(
            "min_attack_drop {n} out of range: a number from 0 to 1{hint}; {HOW}"
        ));
    }
    Ok(n)
}

fn capture(
    cx: &Ctx<'_>,
    c: &Spanned<CaptureSchema>,
    base: &Path,
) -> Result<CaptureSpec, RuleError> {
    let s = c.get_ref();
    let label = Label::ALL
        .iter()
        .find(|(_, n)| n == s.label.get_ref())
        .map(|(l, _)| *l)
        .ok_or_else(|| {
            let names = Label::ALL.map(|(_, n)| n);
            cx.unknown(s.label.span(), "label", s.label.get_ref(), &names)
        })?;
    let hosts = s
        .hosts
        .iter()
        .map(|h| {
            h.get_ref().trim().parse::<IpAddr>().map_err(|_| {
                cx.err(
                    h.span(),
                    format!(
                        "host {:?} is not an IP address: write the host's own addresses, like \"192.0.2.1\" or \"2001:db8::1\"",
                        h.get_ref()
                    ),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let timing = s.timing.as_ref().map(|t| timing(cx, t)).transpose()?;
    let attack = match (&s.attack, label) {
        (Some(m), Label::Mixed) => Some(matcher(cx, m)?),
        (None, Label::Mixed) => {
            return Err(cx.err(
                s.label.span(),
                "label \"mixed\" needs `attack`, which tells its attack frames from the benign ones, \
                 like attack = { proto = \"udp\", src_ports = [123], sources = [\"203.0.113.0/24\"] }",
            ));
        }
        (Some(m), _) => {
            return Err(cx.err(
                m.span(),
                format!(
                    "`attack` is only for label \"mixed\": in a capture labelled {:?} every incoming frame is {}",
                    label.name(),
                    if label == Label::Attack {
                        "attack"
                    } else {
                        "benign"
                    }
                ),
            ));
        }
        (None, _) => None,
    };
    Ok(CaptureSpec {
        file: base.join(s.file.get_ref()),
        label,
        hosts,
        timing,
        attack,
    })
}

fn timing(cx: &Ctx<'_>, t: &Spanned<String>) -> Result<Timing, RuleError> {
    // The names of `--timing`, from the one definition.
    let names: Vec<String> = Timing::value_variants()
        .iter()
        .filter_map(|v| Some(v.to_possible_value()?.get_name().to_string()))
        .collect();
    Timing::from_str(t.get_ref(), false).map_err(|_| {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        cx.unknown(t.span(), "timing", t.get_ref(), &names)
    })
}

fn matcher(cx: &Ctx<'_>, m: &Spanned<MatcherSchema>) -> Result<Matcher, RuleError> {
    let s = m.get_ref();
    let mut out = Matcher {
        proto: s.proto.as_ref().map(|p| proto(cx, p)).transpose()?,
        ..Matcher::default()
    };
    if let Some(ports) = &s.src_ports {
        out.src_ports = port_list(cx, "src_ports", ports)?;
    }
    if let Some(ports) = &s.dst_ports {
        out.dst_ports = port_list(cx, "dst_ports", ports)?;
    }
    if let Some(sources) = &s.sources {
        not_empty(cx, "sources", sources)?;
        out.sources = sources
            .get_ref()
            .iter()
            .map(|p| parse_prefix(p.get_ref()).map_err(|e| cx.err(p.span(), e.to_string())))
            .collect::<Result<_, _>>()?;
    }
    if out == Matcher::default() {
        return Err(cx.err(
            m.span(),
            "`attack` matches every frame: give at least one of proto, src_ports, dst_ports and sources",
        ));
    }
    Ok(out)
}

const PROTOCOLS: [(&str, u8); 3] = [("udp", 17), ("tcp", 6), ("icmp", 1)];

fn proto(cx: &Ctx<'_>, p: &Spanned<toml::Value>) -> Result<u8, RuleError> {
    let names = PROTOCOLS.map(|(n, _)| n);
    match p.get_ref() {
        toml::Value::String(s) => PROTOCOLS
            .iter()
            .find(|(n, _)| n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                cx.err(
                    p.span(),
                    format!(
                        "unknown proto {s:?}: allowed are {} or a protocol number (0 to 255)",
                        one_of(&names)
                    ),
                )
            }),
        toml::Value::Integer(n) => u8::try_from(*n).map_err(|_| {
            cx.err(
                p.span(),
                format!("proto {n} out of range: allowed is 0 to 255"),
            )
        }),
        other => Err(cx.err(
            p.span(),
            format!(
                "proto is a {}: write {} or a protocol number",
                other.type_str(),
                one_of(&names)
            ),
        )),
    }
}

fn not_empty<T>(cx: &Ctx<'_>, what: &str, list: &Spanned<Vec<T>>) -> Result<(), RuleError> {
    if list.get_ref().is_empty() {
        return Err(cx.err(
            list.span(),
            format!("{what} is empty, which no frame would match: leave it out to match any"),
        ));
    }
    Ok(())
}

fn port_list(
    cx: &Ctx<'_>,
    what: &str,
    ports: &Spanned<Vec<Spanned<i64>>>,
) -> Result<Vec<u16>, RuleError> {
    not_empty(cx, what, ports)?;
    ports
        .get_ref()
        .iter()
        .map(|p| {
            u16::try_from(*p.get_ref()).map_err(|_| {
                cx.err(
                    p.span(),
                    format!(
                        "port {} in {what} out of range: allowed is 0 to 65535",
                        p.get_ref()
                    ),
                )
            })
        })
        .collect()
}

/// Frames of one kind (attack or benign) in a capture, and how many of
/// them the rules dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Tally {
    pub(crate) frames: u64,
    pub(crate) dropped: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, dropped: bool) {
        self.frames += 1;
        self.dropped += u64::from(dropped);
    }
}

/// One line of the verdict: what was checked, against what limit, what
/// the replay found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Check {
    /// "min_attack_drop", "max_benign_drop" or "captures_empty".
    pub(crate) check: &'static str,
    pub(crate) limit: serde_json::Value,
    pub(crate) value: serde_json::Value,
    pub(crate) passed: bool,
    /// The capture the check is about, when it is about one.
    pub(crate) capture: Option<String>,
}

/// Floating-point slack for shares: "99.3%" is 99.3 / 100, which may lie
/// an ulp from 993 / 1000 frames.
const SHARE_SLACK: f64 = 1e-9;

/// The gate's checks over the tallies of each capture: `(capture, attack,
/// benign)`. A check per capture that holds attack frames (its dropped
/// share against `min_attack_drop`) and one over every capture's benign
/// frames (dropped against `max_benign_drop`) when there are any. Captures
/// that hold no frame to judge at all are a failing `captures_empty`: a
/// gate that judged nothing must not pass.
pub(crate) fn judge(gate: &Gate, captures: &[(String, Tally, Tally)]) -> Vec<Check> {
    let frames: u64 = captures.iter().map(|(_, a, b)| a.frames + b.frames).sum();
    if frames == 0 {
        return vec![Check {
            check: "captures_empty",
            limit: json!(1),
            value: json!(0),
            passed: false,
            capture: None,
        }];
    }
    let mut checks: Vec<Check> = captures
        .iter()
        .filter(|(_, attack, _)| attack.frames > 0)
        .map(|(name, attack, _)| {
            let share = attack.dropped as f64 / attack.frames as f64;
            Check {
                check: "min_attack_drop",
                limit: json!(gate.min_attack_drop),
                value: json!(share),
                passed: share + SHARE_SLACK >= gate.min_attack_drop,
                capture: Some(name.clone()),
            }
        })
        .collect();
    if captures.iter().any(|(_, _, benign)| benign.frames > 0) {
        let dropped: u64 = captures.iter().map(|(_, _, b)| b.dropped).sum();
        let mut guilty = captures.iter().filter(|(_, _, b)| b.dropped > 0);
        let capture = match (guilty.next(), guilty.next()) {
            (Some((name, _, _)), None) => Some(name.clone()),
            _ => None,
        };
        checks.push(Check {
            check: "max_benign_drop",
            limit: json!(gate.max_benign_drop),
            value: json!(dropped),
            passed: dropped <= gate.max_benign_drop,
            capture,
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::frame::FrameFacts;

    fn ok(text: &str) -> Expect {
        parse("replay.toml", text, Path::new("/repo")).unwrap_or_else(|e| panic!("{}", e[0]))
    }

    fn err(text: &str) -> RuleError {
        parse("replay.toml", text, Path::new("/repo"))
            .expect_err("should be rejected")
            .swap_remove(0)
    }

    const FULL: &str = r#"
rules = "rules/edge.toml"
against = "old/edge.toml"
[gate]
max_benign_drop = 2
min_attack_drop = "99.5%"
[[capture]]
file = "captures/attack-ntp.pcap"
label = "attack"
[[capture]]
file = "captures/baseline.pcap"
label = "baseline"
hosts = ["192.0.2.1", "2001:db8::1"]
timing = "fast"
[[capture]]
file = "/srv/mixed.pcap"
label = "mixed"
attack = { proto = "udp", src_ports = [123, 1900], sources = ["203.0.113.0/24"] }
"#;

    #[test]
    fn reads_a_full_file_with_paths_beside_it() {
        let e = ok(FULL);
        assert_eq!(e.rules, Some(PathBuf::from("/repo/rules/edge.toml")));
        assert_eq!(e.against, Some(PathBuf::from("/repo/old/edge.toml")));
        assert_eq!(e.gate.max_benign_drop, 2);
        assert_eq!(e.gate.min_attack_drop, 0.995);
        assert_eq!(e.captures.len(), 3);
        let [attack, baseline, mixed] = &e.captures[..] else {
            unreachable!()
        };
        assert_eq!(attack.file, PathBuf::from("/repo/captures/attack-ntp.pcap"));
        assert_eq!((attack.label, attack.timing), (Label::Attack, None));
        assert_eq!(baseline.label, Label::Baseline);
        assert_eq!(baseline.timing, Some(Timing::Fast));
        assert_eq!(
            baseline.hosts,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(mixed.file, PathBuf::from("/srv/mixed.pcap"));
        let m = mixed.attack.as_ref().unwrap();
        assert_eq!(
            (m.proto, m.src_ports.as_slice()),
            (Some(17), &[123, 1900][..])
        );
        assert_eq!(m.sources, vec![parse_prefix("203.0.113.0/24").unwrap()]);
        assert!(m.dst_ports.is_empty());
    }

    /// deploy/rules-ci/replay.toml, and its commented-out captures too.
    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules-ci/replay.toml");
        let e = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.captures.len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let keys = [
            "[[capture]]",
            "file =",
            "label =",
            "hosts =",
            "attack =",
            "timing =",
        ];
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => format!("{rest}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        let all = parse("replay.toml", &uncommented, Path::new(""))
            .unwrap_or_else(|e| panic!("{}", e[0]));
        assert_eq!(all.captures.len(), 4);
        assert_eq!(all.captures[3].label, Label::Mixed);
    }

    #[test]
    fn defaults_are_no_benign_drop_and_every_attack_frame() {
        let e = ok("[[capture]]\nfile = \"a.pcap\"\nlabel = \"attack\"\n");
        assert_eq!(e.gate, Gate::default());
        assert_eq!((e.gate.max_benign_drop, e.gate.min_attack_drop), (0, 1.0));
        assert_eq!((e.rules, e.against), (None, None));
        assert_eq!(e.captures[0].file, PathBuf::from("/repo/a.pcap"));
    }

    #[test]
    fn shares_are_percentages_or_numbers_from_0_to_1() {
        let with = |v: &str| {
            format!(
                "[gate]\nmin_attack_drop = {v}\n[[capture]]\nfile = \"a\"\nlabel = \"attack\"\n"
            )
        };
        for (v, want) in [
            ("\"99%\"", 0.99),
            ("\"99.5%\"", 0.995),
            ("\"100%\"", 1.0),
            ("\" 0 %\"", 0.0),
            ("0.9", 0.9),
            ("1", 1.0),
            ("0", 0.0),
        ] {
            assert_eq!(ok(&with(v)).gate.min_attack_drop, want, "{v}");
        }
        for (v, needle) in [
            ("\"99\"", "no '%'"),
            ("\"101%\"", "not 0% to 100%"),
            ("\"many%\"", "not 0% to 100%"),
            ("99", "did you mean \"99%\""),
            ("-0.5", "out of range"),
            ("nan", "out of range"),
            ("true", "is a boolean"),
        ] {
            let e = err(&with(v));
            assert_eq!((e.line, e.column), (2, 19), "{v}: {e}");
            assert!(e.message.contains(needle), "{v}: {e}");
        }
    }

    #[test]
    fn broken_files_are_refused_with_their_place() {
        let cap = "[[capture]]\nfile = \"a.pcap\"\nlabel = \"attack\"\n";
        let cases: &[(&str, String, usize, &str)] = &[
            ("empty", String::new(), 1, "no [[capture]]"),
            (
                "no capture",
                "[gate]\nmax_benign_drop = 0\n".into(),
                1,
                "no [[capture]]",
            ),
            ("syntax", format!("{cap}hosts = [\n"), 5, "invalid array"),
            (
                "unknown top key",
                format!("speed = 1\n{cap}"),
                1,
                "unknown field `speed`",
            ),
            (
                "unknown gate key",
                format!("[gate]\nmax = 1\n{cap}"),
                2,
                "unknown field `max`",
            ),
            (
                "unknown capture key",
                format!("{cap}colour = 1\n"),
                4,
                "unknown field `colour`",
            ),
            (
                "unknown matcher key",
                format!(
                    "{}attack = {{ port = 1 }}\n",
                    cap.replace("attack\"", "mixed\"")
                ),
                4,
                "unknown field `port`",
            ),
            (
                "missing label",
                "[[capture]]\nfile = \"a\"\n".into(),
                1,
                "missing field `label`",
            ),
            (
                "bad label",
                cap.replace("\"attack\"", "\"flood\""),
                3,
                "unknown label \"flood\": allowed are \"attack\", \"baseline\" and \"mixed\"",
            ),
            (
                "negative benign",
                format!("[gate]\nmax_benign_drop = -1\n{cap}"),
                2,
                "0 or more",
            ),
            (
                "bad host",
                format!("{cap}hosts = [\"host.example\"]\n"),
                4,
                "not an IP address",
            ),
            (
                "bad timing",
                format!("{cap}timing = \"slow\"\n"),
                4,
                "unknown timing \"slow\": allowed are \"capture\" and \"fast\"",
            ),
            (
                "mixed without attack",
                cap.replace("attack\"", "mixed\""),
                3,
                "needs `attack`",
            ),
            (
                "attack on attack",
                format!("{cap}attack = {{ proto = \"udp\" }}\n"),
                4,
                "only for label \"mixed\"",
            ),
            (
                "attack on baseline",
                format!(
                    "{}attack = {{ proto = \"udp\" }}\n",
                    cap.replace("attack\"", "baseline\"")
                ),
                4,
                "every incoming frame is benign",
            ),
        ];
        for (what, text, line, needle) in cases {
            let e = err(text);
            assert_eq!(e.line, *line, "{what}: {e}");
            assert!(e.message.contains(needle), "{what}: {e}");
            assert!(
                e.to_string().starts_with(&format!("replay.toml:{line}:")),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn matchers_are_checked_where_they_stand() {
        let mixed =
            |m: &str| format!("[[capture]]\nfile = \"m\"\nlabel = \"mixed\"\nattack = {m}\n");
        for (m, column, needle) in [
            ("{ proto = \"sctp\" }", 20, "unknown proto \"sctp\""),
            ("{ proto = 300 }", 20, "0 to 255"),
            ("{ proto = 1.5 }", 20, "is a float"),
            ("{ src_ports = [53, 70000] }", 29, "port 70000 in src_ports"),
            ("{ dst_ports = [] }", 24, "dst_ports is empty"),
            (
                "{ sources = [\"203.0.113.1/24\"] }",
                23,
                "did you mean 203.0.113.0/24",
            ),
            ("{ sources = [\"nowhere\"] }", 23, "not an IP prefix"),
            ("{}", 10, "matches every frame"),
        ] {
            let e = err(&mixed(m));
            assert_eq!((e.line, e.column), (4, column), "{m}: {e}");
            assert!(e.message.contains(needle), "{m}: {e}");
        }
        let e = ok(&mixed("{ proto = 47 }"));
        assert_eq!(e.captures[0].attack.as_ref().unwrap().proto, Some(47));
    }

    #[test]
    fn every_error_of_a_file_is_reported_in_order() {
        let text = "[[capture]]\nfile = \"a\"\nlabel = \"x\"\n[[capture]]\nfile = \"b\"\nlabel = \"attack\"\ntiming = \"slow\"\n";
        let errors = parse("replay.toml", text, Path::new("")).err().unwrap();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 7], "{errors:?}");
    }

    fn facts(src: &str, proto: u8, ports: Option<(u16, u16)>) -> FrameFacts {
        FrameFacts {
            src: Some(src.parse().unwrap()),
            dst: Some("192.0.2.1".parse().unwrap()),
            proto: Some(proto),
            src_port: ports.map(|p| p.0),
            dst_port: ports.map(|p| p.1),
        }
    }

    #[test]
    fn a_frame_matches_when_every_given_field_does() {
        let m = Matcher {
            proto: Some(17),
            src_ports: vec![123, 1900],
            dst_ports: vec![],
            sources: vec![
                parse_prefix("203.0.113.0/24").unwrap(),
                parse_prefix("2001:db8:bad::/48").unwrap(),
            ],
        };
        let cases = [
            (
                "ntp from the range",
                facts("203.0.113.9", 17, Some((123, 5000))),
                true,
            ),
            (
                "ssdp over IPv6",
                facts("2001:db8:bad::7", 17, Some((1900, 5000))),
                true,
            ),
            (
                "other source",
                facts("198.51.100.1", 17, Some((123, 5000))),
                false,
            ),
            (
                "other IPv6 source",
                facts("2001:db8:600d::7", 17, Some((123, 5000))),
                false,
            ),
            (
                "other port",
                facts("203.0.113.9", 17, Some((53, 5000))),
                false,
            ),
            ("tcp", facts("203.0.113.9", 6, Some((123, 5000))), false),
            (
                "later fragment: no ports",
                facts("203.0.113.9", 17, None),
                false,
            ),
            ("not IP", FrameFacts::default(), false),
        ];
        for (what, f, want) in cases {
            assert_eq!(m.matches(&f), want, "{what}");
        }
        let dst_only = Matcher {
            dst_ports: vec![443],
            ..Matcher::default()
        };
        assert!(dst_only.matches(&facts("198.51.100.1", 6, Some((40000, 443)))));
        assert!(!dst_only.matches(&facts("198.51.100.1", 1, None)));
        let icmp = Matcher {
            proto: Some(1),
            ..Matcher::default()
        };
        assert!(icmp.matches(&facts("198.51.100.1", 1, None)));
        assert!(!icmp.matches(&FrameFacts::default()));
    }

    #[test]
    fn labels_decide_which_frames_are_attack() {
        let e = ok(FULL);
        let ntp = facts("203.0.113.9", 17, Some((123, 5000)));
        let dns = facts("198.51.100.1", 17, Some((53, 5000)));
        assert!(e.captures[0].is_attack(&dns), "attack: every frame");
        assert!(!e.captures[1].is_attack(&ntp), "baseline: no frame");
        assert!(e.captures[2].is_attack(&ntp) && !e.captures[2].is_attack(&dns));
        assert_eq!(serde_json::to_value(Label::Mixed).unwrap(), "mixed");
        assert_eq!(Label::Baseline.name(), "baseline");
    }

    fn t(frames: u64, dropped: u64) -> Tally {
        Tally { frames, dropped }
    }

    fn verdicts(checks: &[Check]) -> Vec<(&str, Option<&str>, bool)> {
        checks
            .iter()
            .map(|c| (c.check, c.capture.as_deref(), c.passed))
            .collect()
    }

    #[test]
    fn judge_checks_attack_per_capture_and_benign_in_total() {
        let gate = Gate {
            max_benign_drop: 0,
            min_attack_drop: 0.995,
        };
        let checks = judge(
            &gate,
            &[
                ("attack.pcap".into(), t(1000, 995), t(0, 0)),
                ("weak.pcap".into(), t(1000, 994), t(0, 0)),
                ("baseline.pcap".into(), t(0, 0), t(50, 0)),
                ("mixed.pcap".into(), t(10, 10), t(40, 0)),
            ],
        );
        assert_eq!(
            verdicts(&checks),
            vec![
                ("min_attack_drop", Some("attack.pcap"), true),
                ("min_attack_drop", Some("weak.pcap"), false),
                ("min_attack_drop", Some("mixed.pcap"), true),
                ("max_benign_drop", None, true),
            ]
        );
        assert_eq!(checks[0].limit, json!(0.995));
        assert_eq!(checks[0].value, json!(0.995));
        assert_eq!(checks[1].value, json!(0.994));
        assert_eq!((&checks[3].limit, &checks[3].value), (&json!(0), &json!(0)));
    }

    #[test]
    fn benign_drops_are_summed_and_named_when_one_capture_had_them() {
        let gate = Gate {
            max_benign_drop: 2,
            min_attack_drop: 1.0,
        };
        let one = judge(
            &gate,
            &[
                ("baseline.pcap".into(), t(0, 0), t(50, 3)),
                ("quiet.pcap".into(), t(0, 0), t(50, 0)),
            ],
        );
        assert_eq!(
            verdicts(&one),
            vec![("max_benign_drop", Some("baseline.pcap"), false)]
        );
        assert_eq!(one[0].value, json!(3));
        let two = judge(
            &gate,
            &[
                ("a.pcap".into(), t(0, 0), t(50, 1)),
                ("b.pcap".into(), t(0, 0), t(50, 1)),
            ],
        );
        assert_eq!(verdicts(&two), vec![("max_benign_drop", None, true)]);
        assert_eq!(two[0].value, json!(2));
        // No benign frame anywhere: nothing to check them against.
        let attack_only = judge(&gate, &[("a.pcap".into(), t(5, 5), t(0, 0))]);
        assert_eq!(
            verdicts(&attack_only),
            vec![("min_attack_drop", Some("a.pcap"), true)]
        );
    }

    #[test]
    fn shares_meet_their_limit_despite_rounding() {
        let share = |v: &str| share(&toml::Value::String(v.into())).unwrap();
        let gate = Gate {
            max_benign_drop: 0,
            min_attack_drop: share("99.3%"),
        };
        let checks = judge(&gate, &[("a".into(), t(1000, 993), t(0, 0))]);
        assert!(checks[0].passed, "{checks:?}");
        let checks = judge(&gate, &[("a".into(), t(1000, 992), t(0, 0))]);
        assert!(!checks[0].passed, "{checks:?}");
    }

    #[test]
    fn a_gate_that_judged_nothing_fails() {
        let checks = judge(
            &Gate::default(),
            &[
                ("a".into(), t(0, 0), t(0, 0)),
                ("b".into(), t(0, 0), t(0, 0)),
            ],
        );
        assert_eq!(verdicts(&checks), vec![("captures_empty", None, false)]);
        assert_eq!(
            verdicts(&judge(&Gate::default(), &[])),
            vec![("captures_empty", None, false)]
        );
        let json = serde_json::to_value(&checks[0]).unwrap();
        assert_eq!(
            json,
            json!({"check": "captures_empty", "limit": 1, "value": 0, "passed": false, "capture": null})
        );
    }
}
