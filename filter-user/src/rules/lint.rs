//! Warnings about a valid rule file: entries that make the filter do
//! something an operator rarely means (deny or allow everything, rules
//! that can never match, limits that cut every full-size frame). They
//! never stop a load; `filterctl check` prints them, `--strict` fails on them.

use std::{fmt, path::Path};

use filter_common::Limit;
use toml::Spanned;

use super::{
    error::{Ctx, RuleError, line_col},
    files,
    parse::{RulesError, parse_in},
    prefixes::{Prefix, parse_list, parse_prefix},
    schema::{FileSchema, LimitSchema, RuleSchema},
    set::{RuleSet, RuleSpec},
};

/// Bytes of a full-size Ethernet frame at a 1500-byte MTU.
const FULL_FRAME: u64 = 1514;
/// A source prefix this short makes one ban cover a large share of an
/// address family: `[sources]` allows it, but a ban then hits whole networks.
const SHORT_V4: u8 = 8;
const SHORT_V6: u8 = 16;

/// A problem that does not make the file invalid, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub RuleError);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(
            f,
            "{}:{}:{}: warning: {}",
            e.file, e.line, e.column, e.message
        )
    }
}

/// A valid rule file and what looks wrong in it.
pub(crate) struct Checked {
    pub(crate) set: RuleSet,
    pub(crate) warnings: Vec<Warning>,
}

/// Reads, validates and lints a rule file (list files relative to it).
pub(crate) fn check_file(path: &Path) -> Result<Checked, RulesError> {
    let text = files::read_rules(path)?;
    let file = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    let set = parse_in(&file, &text, base).map_err(RulesError::Invalid)?;
    let warnings = lint(&file, &text, base, &set);
    Ok(Checked { set, warnings })
}

/// Every warning about `set`, validated from `text` (named `file`), in file
/// order. Spans come from the schema, read again: the text is known valid.
pub fn lint(file: &str, text: &str, base: &Path, set: &RuleSet) -> Vec<Warning> {
    let Ok(schema) = toml::from_str::<FileSchema>(text) else {
        return Vec::new();
    };
    let cx = Ctx { file, text };
    let mut out = Vec::new();
    out.extend(everything(&cx, "deny", &schema.deny, "drops every packet"));
    out.extend(everything(
        &cx,
        "allow",
        &schema.allow,
        "passes every packet unfiltered",
    ));
    out.extend(everything_in_lists(
        &cx,
        &set.deny,
        &schema.deny_files,
        base,
        "drops every packet",
    ));
    out.extend(everything_in_lists(
        &cx,
        &set.allow,
        &schema.allow_files,
        base,
        "passes every packet unfiltered",
    ));
    out.extend(wide_bans(&cx, &schema, set));
    out.extend(shadowed(&cx, &enabled(&schema), &set.rules));
    out.extend(limits(&cx, &schema, set));
    let mut out: Vec<Warning> = out.into_iter().map(Warning).collect();
    out.sort_by_key(|w| (w.0.file != file, w.0.line, w.0.column));
    out
}

/// Inline prefixes of length 0.
fn everything(cx: &Ctx<'_>, what: &str, inline: &[Spanned<String>], does: &str) -> Vec<RuleError> {
    inline
        .iter()
        .filter(|p| parse_prefix(p.get_ref()).is_ok_and(|p| p.len == 0))
        .map(|p| {
            cx.err(
                p.span(),
                format!(
                    "{what} {:?} covers every address: it {does}",
                    p.get_ref().trim()
                ),
            )
        })
        .collect()
}

/// Lines of list files that hold a prefix of length 0, placed in the list
/// file. The lists are read again only when the set holds such a prefix.
fn everything_in_lists(
    cx: &Ctx<'_>,
    merged: &[Prefix],
    lists: &[Spanned<String>],
    base: &Path,
    does: &str,
) -> Vec<RuleError> {
    if !merged.iter().any(|p| p.len == 0) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for f in lists {
        let path = base.join(f.get_ref());
        let Ok(text) = files::read_list(&path) else {
            continue;
        };
        // Each line alone: parse_list says which prefixes, not where.
        for (i, line) in text.lines().enumerate() {
            if parse_list(line).is_ok_and(|l| l.iter().any(|p| p.len == 0)) {
                let lead = line.len() - line.trim_start().len();
                out.push(RuleError {
                    file: path.display().to_string(),
                    line: i + 1,
                    column: line_col(line, lead).1,
                    message: format!(
                        "this prefix covers every address (listed from {}:{}): it {does}",
                        cx.file,
                        line_col(cx.text, f.span().start).0
                    ),
                });
            }
        }
    }
    out
}

/// `[ban]` with a source prefix so short that one ban drops whole networks.
fn wide_bans(cx: &Ctx<'_>, schema: &FileSchema, set: &RuleSet) -> Vec<RuleError> {
    let (Some(ban), Some(sources)) = (&schema.ban, &schema.sources) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let families = [
        (
            "ipv4_prefix",
            &sources.ipv4_prefix,
            set.src_prefix_v4,
            SHORT_V4,
            32,
        ),
        (
            "ipv6_prefix",
            &sources.ipv6_prefix,
            set.src_prefix_v6,
            SHORT_V6,
            128,
        ),
    ];
    for (key, span, len, short, bits) in families {
        if let Some(v) = span
            && len <= short
        {
            out.push(cx.err(
                v.span(),
                format!(
                    "{key} = {len} with [ban] (line {}): one banned source is a /{len}, 1/{} of all {} addresses",
                    line_col(cx.text, ban.after.span().start).0,
                    pow2(len),
                    if bits == 32 { "IPv4" } else { "IPv6" }
                ),
            ));
        }
    }
    out
}

fn pow2(n: u8) -> String {
    1u128.checked_shl(u32::from(n)).map_or_else(
        || format!("2^{n}"),
        |v| {
            if n > 20 {
                format!("2^{n}")
            } else {
                v.to_string()
            }
        },
    )
}

/// The schema's rules that were loaded: the set holds exactly these, in
/// order, since the file is valid.
fn enabled(schema: &FileSchema) -> Vec<&RuleSchema> {
    schema
        .rules
        .iter()
        .map(Spanned::get_ref)
        .filter(|r| r.enabled != Some(false))
        .collect()
}

/// Rules that no packet can reach: an earlier rule matches every packet
/// they match. The first matching rule ends the walk whatever its action
/// (drop, pass, or limit, which hands the packet to the limiter), so any
/// earlier rule that covers a later one shadows it.
fn shadowed(cx: &Ctx<'_>, schema: &[&RuleSchema], rules: &[RuleSpec]) -> Vec<RuleError> {
    let mut out = Vec::new();
    for (j, later) in rules.iter().enumerate() {
        let Some(i) = rules[..j].iter().position(|early| covers(early, later)) else {
            continue;
        };
        let (Some(early_s), Some(later_s)) = (schema.get(i), schema.get(j)) else {
            continue;
        };
        out.push(cx.err(
            later_s.name.span(),
            format!(
                "rule {:?} never matches: rule {:?} (line {}) comes first and matches every packet it would",
                later.name,
                rules[i].name,
                line_col(cx.text, early_s.name.span().start).0
            ),
        ));
    }
    out
}

/// Whether every packet `later` matches is matched by `early`.
pub(crate) fn covers(early: &RuleSpec, later: &RuleSpec) -> bool {
    let (e, l) = (&early.rule, &later.rule);
    let within = |a: (u16, u16), b: (u16, u16)| a.0 <= b.0 && b.1 <= a.1;
    let same_payload = e.match_len == l.match_len
        && e.match_offset == l.match_offset
        && e.match_mask == l.match_mask
        && e.match_value == l.match_value;
    early.proto == later.proto
        && within(early.src_ports, later.src_ports)
        && within(
            (e.dst_port_lo, e.dst_port_hi),
            (l.dst_port_lo, l.dst_port_hi),
        )
        && within((e.len_lo, e.len_hi), (l.len_lo, l.len_hi))
        && (e.match_len == 0 || same_payload)
}

/// Limits that cut full-size frames, limits no packet meets, and bans
/// sooner than the spacing of a limit that packets do meet.
fn limits(cx: &Ctx<'_>, schema: &FileSchema, set: &RuleSet) -> Vec<RuleError> {
    let mut out = Vec::new();
    if let Some(l) = &schema.per_source {
        out.extend(small_burst(cx, "[per_source]", l));
    }
    for (name, l) in &schema.limits {
        out.extend(small_burst(cx, &format!("limit {:?}", name.get_ref()), l));
    }
    let used = |id: usize| {
        id == set.default_limit as usize
            || set.rules.iter().any(|r| usize::from(r.rule.limit) == id)
    };
    for name in schema.limits.keys() {
        let id = set.limits.iter().position(|(n, _)| n == name.get_ref());
        if !id.is_some_and(|i| used(i + 1)) {
            out.push(cx.err(
                name.span(),
                format!(
                    "limit {:?} is not used by any enabled rule: it limits nothing",
                    name.get_ref()
                ),
            ));
        }
    }
    if let Some(ban) = &schema.ban {
        let limits = set.limits.iter().enumerate().filter(|(i, _)| used(i + 1));
        out.extend(early_bans(
            cx,
            &ban.after,
            set.ban_after_ns,
            limits.map(|(_, l)| l),
        ));
    }
    out
}

fn small_burst(cx: &Ctx<'_>, what: &str, l: &Spanned<LimitSchema>) -> Option<RuleError> {
    let b = l.get_ref().burst_bytes.as_ref()?;
    let n = *b.get_ref();
    (n < FULL_FRAME as i64).then(|| {
        cx.err(
            b.span(),
            format!(
                "{what}: burst_bytes = {n} is less than one full-size frame ({FULL_FRAME} bytes): a source sending full-size frames is cut even far below the rate"
            ),
        )
    })
}

/// A ban sooner than a limit's spacing bans a source the moment it is one
/// packet over, however slightly: `after` should span several packets.
fn early_bans<'a>(
    cx: &Ctx<'_>,
    after: &Spanned<String>,
    after_ns: u64,
    limits: impl Iterator<Item = &'a (String, Limit)>,
) -> Vec<RuleError> {
    limits
        .filter_map(|(name, l)| {
            let frame_ns = FULL_FRAME * l.byte_cost_ps / 1000;
            let spacing = l.pkt_interval_ns.max(frame_ns);
            (after_ns < spacing).then(|| {
                cx.err(
                    after.span(),
                    format!(
                        "[ban] after = {:?} is shorter than the spacing of limit {name:?} ({}): a source is banned as soon as it is one packet over",
                        after.get_ref(),
                        human_ns(spacing)
                    ),
                )
            })
        })
        .collect()
}

fn human_ns(ns: u64) -> String {
    match ns {
        0..1_000_000 => format!("{} µs", ns / 1000),
        1_000_000..1_000_000_000 => format!("{} ms", ns / 1_000_000),
        _ => format!("{:.1} s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(text: &str) -> Vec<String> {
        let base = Path::new(".");
        let set = super::super::parse::parse_in("t.toml", text, base)
            .unwrap_or_else(|e| panic!("valid: {e:?}"));
        lint("t.toml", text, base, &set)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const DROP: &str =
        "[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n";

    #[test]
    fn a_plain_file_has_no_warning() {
        assert_eq!(warnings(DROP), Vec::<String>::new());
        let shipped = include_str!("../../../rules/default.toml");
        assert_eq!(warnings(shipped), Vec::<String>::new());
    }

    #[test]
    fn prefixes_covering_everything() {
        let w = warnings(&format!(
            "deny = [\"192.0.2.0/24\", \"0.0.0.0/0\"]\nallow = [\"::/0\"]\n{DROP}"
        ));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("t.toml:1:25: warning: deny \"0.0.0.0/0\" covers every address"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("t.toml:2:10: warning: allow \"::/0\""),
            "{w:?}"
        );
    }

    #[test]
    fn list_files_covering_everything_are_placed_in_the_list() {
        let dir = std::env::temp_dir().join(format!("flt-lint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("deny.txt"),
            "# all of it\n198.51.100.0/24\n  ::/0 ; oops\n",
        )
        .unwrap();
        let text = format!("deny_files = [\"deny.txt\"]\n{DROP}");
        let set = super::super::parse::parse_in("t.toml", &text, &dir).unwrap();
        let w: Vec<String> = lint("t.toml", &text, &dir, &set)
            .iter()
            .map(ToString::to_string)
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].ends_with(
                "deny.txt:3:3: warning: this prefix covers every address (listed from t.toml:1): it drops every packet"
            ),
            "{w:?}"
        );
    }

    #[test]
    fn shadowed_rules_whatever_the_earlier_action() {
        let text = r#"
[[rule]]
name = "all-udp-53"
protocol = "udp"
src_port = 53
action = "limit"
aggregate_pps = 100
[[rule]]
name = "big-dns"
protocol = "udp"
src_port = 53
payload_len = "512-65535"
action = "drop"
[[rule]]
name = "tcp-53"
protocol = "tcp"
src_port = 53
action = "drop"
[[rule]]
name = "ntp-time"
protocol = "udp"
src_port = 123
payload = { offset = 0, mask = "07", value = "04" }
action = "pass"
[[rule]]
name = "ntp-time-again"
protocol = "udp"
src_port = 123
dst_port = "1024-65535"
payload = { offset = 0, mask = "07", value = "04" }
action = "drop"
[[rule]]
name = "ntp-other-mode"
protocol = "udp"
src_port = 123
payload = { offset = 0, mask = "07", value = "03" }
action = "drop"
[[rule]]
name = "ntp-rest"
protocol = "udp"
src_port = "100-200"
action = "drop"
"#;
        let w = warnings(text);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with(
                "t.toml:9:8: warning: rule \"big-dns\" never matches: rule \"all-udp-53\" (line 3)"
            ),
            "{w:?}"
        );
        assert!(
            w[1].starts_with(
                "t.toml:26:8: warning: rule \"ntp-time-again\" never matches: rule \"ntp-time\" (line 20)"
            ),
            "{w:?}"
        );
    }

    #[test]
    fn disabled_rules_neither_shadow_nor_are_shadowed() {
        let text = format!("{}enabled = false\n{}", DROP, DROP.replace("ntp", "ntp2"));
        assert_eq!(warnings(&text), Vec::<String>::new());
    }

    #[test]
    fn limits_that_make_no_sense() {
        let text = r#"[per_source]
pps = 10
bps = "1Mbit"
burst_bytes = 1000
[limits.unused]
pps = 5
[ban]
after = "50ms"
for = "10m"
"#;
        let w = warnings(&format!("{text}{DROP}"));
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].starts_with("t.toml:4:15: warning: [per_source]: burst_bytes = 1000 is less than one full-size frame"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("t.toml:5:9: warning: limit \"unused\" is not used"),
            "{w:?}"
        );
        assert!(
            w[2].starts_with("t.toml:8:9: warning: [ban] after = \"50ms\" is shorter than the spacing of limit \"per_source\" (100 ms)"),
            "{w:?}"
        );
        // The limit "unused" (5 pps: 200 ms) is met by no packet: its
        // spacing is not held against the ban.
        assert_eq!(w.iter().filter(|w| w.contains("\"unused\"")).count(), 1);
    }

    #[test]
    fn bans_on_short_source_prefixes() {
        let text = format!(
            "[sources]\nipv4_prefix = 8\nipv6_prefix = 48\n[per_source]\npps = 1000\n[ban]\nafter = \"10s\"\nfor = \"1m\"\n{DROP}"
        );
        let w = warnings(&text);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("t.toml:2:15: warning: ipv4_prefix = 8 with [ban] (line 7): one banned source is a /8, 1/256 of all IPv4"),
            "{w:?}"
        );
    }
}
