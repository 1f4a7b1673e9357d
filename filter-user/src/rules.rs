//! Rule files: the TOML schema operators keep in git, its validation with
//! file, line and column in every message, and its compilation into the
//! values the XDP program's maps hold.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    ops::Range,
    path::Path,
};

use filter_common::{
    ACTION_DROP, ACTION_LIMIT, ACTION_PASS, CONFIG_FRAGMENT_DROP, CONFIG_HAS_ALLOW,
    CONFIG_HAS_DENY, CONFIG_MONITOR, Chain, Config, DEFAULT_SOURCES, IPPROTO_TCP, IPPROTO_UDP,
    Limit, MATCH_MAX, MATCH_OFFSET_MAX, MAX_CHAIN, MAX_CHAINS, MAX_LIMITS, MAX_PREFIXES, MAX_RULES,
    RULE_NAME_LEN, Rule, port_slot,
};

use crate::{
    prefixes::{Prefix, parse_list, parse_prefix},
    units::{parse_bitrate, parse_duration},
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use toml::Spanned;

/// A rule file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    fragments: Option<Spanned<String>>,
    #[serde(default)]
    fragment_memory: Option<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    allow_files: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    #[serde(default)]
    deny_files: Vec<Spanned<String>>,
    #[serde(default)]
    sources: Option<SourcesSchema>,
    #[serde(default)]
    per_source: Option<Spanned<LimitSchema>>,
    #[serde(default)]
    limits: BTreeMap<Spanned<String>, Spanned<LimitSchema>>,
    #[serde(default)]
    ban: Option<BanSchema>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RuleSchema>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesSchema {
    #[serde(default)]
    ipv4_prefix: Option<Spanned<i64>>,
    #[serde(default)]
    ipv6_prefix: Option<Spanned<i64>>,
    #[serde(default)]
    table_size: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitSchema {
    #[serde(default)]
    pps: Option<Spanned<i64>>,
    #[serde(default)]
    bps: Option<Spanned<String>>,
    #[serde(default)]
    burst_packets: Option<Spanned<i64>>,
    #[serde(default)]
    burst_bytes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanSchema {
    after: Spanned<String>,
    #[serde(rename = "for")]
    duration: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSchema {
    name: Spanned<String>,
    protocol: Spanned<String>,
    #[serde(default)]
    src_port: Option<Spanned<RangeValue>>,
    #[serde(default)]
    dst_port: Option<Spanned<RangeValue>>,
    #[serde(default)]
    payload_len: Option<Spanned<RangeValue>>,
    #[serde(default)]
    payload: Option<Spanned<PayloadSchema>>,
    action: Spanned<String>,
    #[serde(default)]
    limit: Option<Spanned<String>>,
    /// Validated either way; only enabled rules are loaded.
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    aggregate_pps: Option<Spanned<i64>>,
    #[serde(default)]
    aggregate_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadSchema {
    offset: Spanned<i64>,
    mask: Spanned<String>,
    value: Spanned<String>,
}

/// `123` or `"1024-65535"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RangeValue {
    One(i64),
    Text(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Monitor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FragmentPolicy {
    Pass,
    Drop,
}

/// A validated rule: what the operator wrote, in the program's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: String,
    pub proto: u8,
    pub src_ports: (u16, u16),
    pub rule: Rule,
}

/// A validated rule file.
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub mode: Mode,
    pub fragments: FragmentPolicy,
    pub fragment_memory_ns: u64,
    pub allow: Vec<Prefix>,
    pub deny: Vec<Prefix>,
    pub src_prefix_v4: u8,
    pub src_prefix_v6: u8,
    /// Entries of the per-source limiter LRU.
    pub table_size: u32,
    /// Named limits; limit id = index + 1. The `[per_source]` limit, when
    /// present, is first and named "per_source".
    pub limits: Vec<(String, Limit)>,
    /// Limit id every packet meets at the per-source step; 0 = none.
    pub default_limit: u32,
    pub ban_after_ns: u64,
    pub ban_for_ns: u64,
    pub rules: Vec<RuleSpec>,
    /// SHA-256 of the file's bytes and of every list file it reads.
    pub digest: [u8; 32],
}

/// A problem in a rule file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for RuleError {}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> RuleError {
        let (line, column) = line_col(self.text, span.start);
        RuleError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Reads and validates a rule file; list files are read relative to it.
pub fn load_file(path: &Path) -> anyhow::Result<RuleSet> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read rule file {}: {e}", path.display()))?;
    Ok(parse_in(
        &path.display().to_string(),
        &text,
        path.parent().unwrap_or(Path::new(".")),
    )?)
}

/// Validates rule-file text; `file` names it in errors; list files are
/// read relative to the current directory.
pub fn parse(file: &str, text: &str) -> Result<RuleSet, RuleError> {
    parse_in(file, text, Path::new("."))
}

fn parse_in(file: &str, text: &str, base: &Path) -> Result<RuleSet, RuleError> {
    let cx = Ctx { file, text };
    if text.trim().is_empty() {
        return Err(cx.err(
            0..0,
            "empty rule file: it needs at least one [[rule]] (see rules/default.toml)",
        ));
    }
    let schema: FileSchema = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        cx.err(span, e.message().trim().to_string())
    })?;

    let mode = match schema.mode.as_ref() {
        None => Mode::Enforce,
        Some(m) => match m.get_ref().as_str() {
            "enforce" => Mode::Enforce,
            "monitor" => Mode::Monitor,
            other => {
                return Err(cx.err(
                    m.span(),
                    format!("unknown mode {other:?}: allowed are \"enforce\" and \"monitor\""),
                ));
            }
        },
    };
    let fragments = match schema.fragments.as_ref() {
        None => FragmentPolicy::Pass,
        Some(m) => match m.get_ref().as_str() {
            "pass" => FragmentPolicy::Pass,
            "drop" => FragmentPolicy::Drop,
            other => {
                return Err(cx.err(
                    m.span(),
                    format!("unknown fragment policy {other:?}: allowed are \"pass\" and \"drop\""),
                ));
            }
        },
    };

    let fragment_memory_ns = match &schema.fragment_memory {
        None => 30_000_000_000,
        Some(d) => parse_duration(d.get_ref()).map_err(|e| cx.err(d.span(), e))?,
    };

    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    let allow = prefix_lists(&cx, &schema.allow, &schema.allow_files, base, &mut hasher)?;
    let deny = prefix_lists(&cx, &schema.deny, &schema.deny_files, base, &mut hasher)?;
    for d in &schema.deny {
        if let Ok(p) = parse_prefix(d.get_ref())
            && allow.contains(&p)
        {
            return Err(cx.err(
                d.span(),
                format!(
                    "{p} is in both allow and deny: allow wins, so the deny entry does nothing; remove one"
                ),
            ));
        }
    }

    let (mut src_prefix_v4, mut src_prefix_v6, mut table_size) = (32u8, 64u8, DEFAULT_SOURCES);
    if let Some(src) = &schema.sources {
        if let Some(v) = &src.ipv4_prefix {
            src_prefix_v4 = int_in(&cx, v, "ipv4_prefix", 1, 32)? as u8;
        }
        if let Some(v) = &src.ipv6_prefix {
            src_prefix_v6 = int_in(&cx, v, "ipv6_prefix", 1, 128)? as u8;
        }
        if let Some(v) = &src.table_size {
            table_size = int_in(&cx, v, "table_size", 1024, 16 * 1024 * 1024)? as u32;
        }
    }

    let mut limits = Vec::new();
    if let Some(l) = &schema.per_source {
        limits.push(("per_source".to_string(), limit(&cx, l)?));
    }
    for (name, l) in &schema.limits {
        if !valid_name(name.get_ref()) {
            return Err(cx.err(
                name.span(),
                format!(
                    "bad limit name {:?}: use a-z, A-Z, 0-9, '-' and '_'",
                    name.get_ref()
                ),
            ));
        }
        limits.push((name.get_ref().clone(), limit(&cx, l)?));
    }
    if limits.len() >= MAX_LIMITS as usize {
        return Err(cx.err(0..0, format!("too many limits: at most {}", MAX_LIMITS - 1)));
    }
    let default_limit = u32::from(schema.per_source.is_some());

    let (ban_after_ns, ban_for_ns) = match &schema.ban {
        None => (0, 0),
        Some(b) => (
            parse_duration(b.after.get_ref()).map_err(|e| cx.err(b.after.span(), e))?,
            parse_duration(b.duration.get_ref()).map_err(|e| cx.err(b.duration.span(), e))?,
        ),
    };
    if schema.ban.is_some() && limits.is_empty() {
        return Err(cx.err(
            schema.ban.as_ref().map_or(0..0, |b| b.after.span()),
            "[ban] bans sources that exceed a limit, but no [per_source] or [limits] is set",
        ));
    }

    if schema.rules.is_empty() && allow.is_empty() && deny.is_empty() && limits.is_empty() {
        return Err(cx.err(
            0..0,
            "no [[rule]], allow, deny or limit in the file: nothing to enforce",
        ));
    }
    if schema.rules.len() > MAX_RULES as usize {
        let span = schema.rules[MAX_RULES as usize].span();
        return Err(cx.err(
            span,
            format!("too many rules: at most {MAX_RULES} are allowed"),
        ));
    }

    let mut rules = Vec::with_capacity(schema.rules.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    // Index in the file of each loaded rule, to place errors found later.
    let mut loaded = Vec::new();
    for (i, r) in schema.rules.iter().enumerate() {
        let spec = rule_spec(&cx, r.get_ref(), &limits, default_limit)?;
        if let Some(first) = names.insert(spec.name.clone(), r.get_ref().name.span().start) {
            let (line, _) = line_col(text, first);
            return Err(cx.err(
                r.get_ref().name.span(),
                format!(
                    "rule name {:?} is already used on line {line}: names must be unique",
                    spec.name
                ),
            ));
        }
        if r.get_ref().enabled != Some(false) {
            rules.push(spec);
            loaded.push(i);
        }
    }
    let set = RuleSet {
        mode,
        fragments,
        fragment_memory_ns,
        allow,
        deny,
        src_prefix_v4,
        src_prefix_v6,
        table_size,
        limits,
        default_limit,
        ban_after_ns,
        ban_for_ns,
        rules,
        digest: hasher.finalize().into(),
    };
    // Chain limits depend on the whole set: report them at the rule that
    // overflows.
    if let Err(overflow) = compile_chains(&set) {
        let r = &schema.rules[loaded[overflow.rule]];
        return Err(cx.err(r.get_ref().name.span(), overflow.message));
    }
    Ok(set)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < RULE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn int_in(cx: &Ctx<'_>, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Result<i64, RuleError> {
    let n = *v.get_ref();
    if !(lo..=hi).contains(&n) {
        return Err(cx.err(
            v.span(),
            format!("{what} {n} out of range: allowed is {lo} to {hi}"),
        ));
    }
    Ok(n)
}

/// A limit in the program's terms: GCRA spacing and tolerance. The burst
/// defaults to a tenth of a second at the rate (at least one packet).
fn limit(cx: &Ctx<'_>, l: &Spanned<LimitSchema>) -> Result<Limit, RuleError> {
    let s = l.get_ref();
    if s.pps.is_none() && s.bps.is_none() {
        return Err(cx.err(l.span(), "a limit needs pps, bps or both"));
    }
    let mut out = Limit::default();
    if let Some(p) = &s.pps {
        let pps = int_in(cx, p, "pps", 1, 100_000_000)? as u64;
        let burst = match &s.burst_packets {
            Some(b) => int_in(cx, b, "burst_packets", 1, 100_000_000)? as u64,
            None => (pps / 10).max(1),
        };
        out.pkt_interval_ns = 1_000_000_000 / pps;
        out.pkt_tolerance_ns = (burst - 1) * out.pkt_interval_ns;
    } else if let Some(b) = &s.burst_packets {
        return Err(cx.err(b.span(), "burst_packets needs pps"));
    }
    if let Some(b) = &s.bps {
        let bps = parse_bitrate(b.get_ref()).map_err(|e| cx.err(b.span(), e))?;
        let burst_bytes = match &s.burst_bytes {
            Some(v) => int_in(cx, v, "burst_bytes", 64, 1 << 32)? as u64,
            None => (bps / 80).max(1514),
        };
        out.byte_cost_ps = 8_000_000_000_000 / bps;
        out.byte_tolerance_ns = burst_bytes * out.byte_cost_ps / 1000;
    } else if let Some(b) = &s.burst_bytes {
        return Err(cx.err(b.span(), "burst_bytes needs bps"));
    }
    Ok(out)
}

/// Inline prefixes plus those of the list files, each error at its place.
fn prefix_lists(
    cx: &Ctx<'_>,
    inline: &[Spanned<String>],
    files: &[Spanned<String>],
    base: &Path,
    hasher: &mut Sha256,
) -> Result<Vec<Prefix>, RuleError> {
    let mut out = Vec::new();
    for p in inline {
        out.push(parse_prefix(p.get_ref()).map_err(|e| cx.err(p.span(), e))?);
    }
    for f in files {
        let path = base.join(f.get_ref());
        let text = std::fs::read_to_string(&path).map_err(|e| {
            cx.err(
                f.span(),
                format!("cannot read list file {}: {e}", path.display()),
            )
        })?;
        hasher.update(text.as_bytes());
        let list = parse_list(&text).map_err(|(line, e)| RuleError {
            file: path.display().to_string(),
            line,
            column: 1,
            message: e,
        })?;
        out.extend(list);
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_PREFIXES as usize {
        return Err(cx.err(
            files.first().map_or(0..0, |f| f.span()),
            format!("{} prefixes: at most {MAX_PREFIXES} per list", out.len()),
        ));
    }
    Ok(out)
}

fn rule_spec(
    cx: &Ctx<'_>,
    r: &RuleSchema,
    limits: &[(String, Limit)],
    default_limit: u32,
) -> Result<RuleSpec, RuleError> {
    let name = r.name.get_ref();
    if !valid_name(name) {
        return Err(cx.err(
            r.name.span(),
            format!(
                "bad rule name {name:?}: use 1 to {} characters from a-z, A-Z, 0-9, '-' and '_'",
                RULE_NAME_LEN - 1
            ),
        ));
    }
    let proto = match r.protocol.get_ref().as_str() {
        "udp" => IPPROTO_UDP,
        "tcp" => IPPROTO_TCP,
        other => {
            return Err(cx.err(
                r.protocol.span(),
                format!("unknown protocol {other:?}: allowed are \"udp\" and \"tcp\""),
            ));
        }
    };
    let action = match r.action.get_ref().as_str() {
        "drop" => ACTION_DROP,
        "pass" => ACTION_PASS,
        "limit" => ACTION_LIMIT,
        other => {
            return Err(cx.err(
                r.action.span(),
                format!("unknown action {other:?}: allowed are \"drop\", \"pass\" and \"limit\""),
            ));
        }
    };
    let mut limit_id = 0u8;
    if let Some(l) = &r.limit {
        if action != ACTION_LIMIT {
            return Err(cx.err(l.span(), "limit = ... needs action = \"limit\""));
        }
        let Some(i) = limits.iter().position(|(n, _)| n == l.get_ref()) else {
            let known: Vec<&str> = limits.iter().map(|(n, _)| n.as_str()).collect();
            return Err(cx.err(
                l.span(),
                format!(
                    "no limit named {:?}: defined are {}",
                    l.get_ref(),
                    if known.is_empty() {
                        "none (add [limits.NAME])".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        limit_id = (i + 1) as u8;
    } else if action == ACTION_LIMIT {
        limit_id = default_limit as u8;
    }
    let (mut agg_interval_ns, mut agg_tolerance_ns) = (0, 0);
    if let Some(a) = &r.aggregate_pps {
        if action != ACTION_LIMIT {
            return Err(cx.err(a.span(), "aggregate_pps needs action = \"limit\""));
        }
        let pps = int_in(cx, a, "aggregate_pps", 1, 100_000_000)? as u64;
        let burst = match &r.aggregate_burst {
            Some(b) => int_in(cx, b, "aggregate_burst", 1, 100_000_000)? as u64,
            None => (pps / 10).max(1),
        };
        agg_interval_ns = 1_000_000_000 / pps;
        agg_tolerance_ns = (burst - 1) * agg_interval_ns;
    } else if let Some(b) = &r.aggregate_burst {
        return Err(cx.err(b.span(), "aggregate_burst needs aggregate_pps"));
    }
    if action == ACTION_LIMIT && limit_id == 0 && agg_interval_ns == 0 {
        return Err(cx.err(
            r.action.span(),
            "action \"limit\" needs a limit: name one (limit = ...), set [per_source], or give aggregate_pps",
        ));
    }
    let src_ports = range(cx, r.src_port.as_ref(), "src_port", 65535)?;
    let dst_ports = range(cx, r.dst_port.as_ref(), "dst_port", 65535)?;
    let lens = range(cx, r.payload_len.as_ref(), "payload_len", 65535)?;

    let mut rule = Rule {
        agg_interval_ns,
        agg_tolerance_ns,
        limit: limit_id,
        dst_port_lo: dst_ports.0,
        dst_port_hi: dst_ports.1,
        len_lo: lens.0,
        len_hi: lens.1,
        action,
        ..Rule::default()
    };
    if let Some(p) = &r.payload {
        let p = p.get_ref();
        let offset = *p.offset.get_ref();
        if !(0..=MATCH_OFFSET_MAX as i64).contains(&offset) {
            return Err(cx.err(
                p.offset.span(),
                format!("payload offset {offset} out of range: allowed is 0 to {MATCH_OFFSET_MAX}"),
            ));
        }
        let mask = hex_bytes(cx, &p.mask, "mask")?;
        let value = hex_bytes(cx, &p.value, "value")?;
        if mask.len() != value.len() {
            return Err(cx.err(
                p.value.span(),
                format!(
                    "payload value has {} bytes but mask has {}: they must be the same length",
                    value.len(),
                    mask.len()
                ),
            ));
        }
        if let Some(i) = (0..mask.len()).find(|&i| value[i] & !mask[i] != 0) {
            return Err(cx.err(
                p.value.span(),
                format!(
                    "payload value byte {i} (0x{:02x}) has bits outside the mask (0x{:02x}): it could never match",
                    value[i], mask[i]
                ),
            ));
        }
        rule.match_offset = offset as u16;
        rule.match_len = mask.len() as u8;
        rule.match_mask[..mask.len()].copy_from_slice(&mask);
        rule.match_value[..value.len()].copy_from_slice(&value);
    }
    rule.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(RuleSpec {
        name: name.clone(),
        proto,
        src_ports,
        rule,
    })
}

/// An inclusive range; absent means everything.
fn range(
    cx: &Ctx<'_>,
    v: Option<&Spanned<RangeValue>>,
    what: &str,
    max: i64,
) -> Result<(u16, u16), RuleError> {
    let Some(v) = v else {
        return Ok((0, max as u16));
    };
    let bad = |msg: String| cx.err(v.span(), msg);
    let (lo, hi) = match v.get_ref() {
        RangeValue::One(n) => (*n, *n),
        RangeValue::Text(t) => {
            let parse_num = |s: &str| {
                s.trim().parse::<i64>().map_err(|_| {
                    bad(format!(
                        "{what} {t:?} is not a number or a range: write 123 or \"1024-65535\""
                    ))
                })
            };
            match t.split_once('-') {
                Some((a, b)) => (parse_num(a)?, parse_num(b)?),
                None => {
                    let n = parse_num(t)?;
                    (n, n)
                }
            }
        }
    };
    for n in [lo, hi] {
        if !(0..=max).contains(&n) {
            return Err(bad(format!(
                "{what} {n} out of range: allowed is 0 to {max}"
            )));
        }
    }
    if lo > hi {
        return Err(bad(format!(
            "{what} range {lo}-{hi} is empty: the low end must come first"
        )));
    }
    Ok((lo as u16, hi as u16))
}

fn hex_bytes(cx: &Ctx<'_>, s: &Spanned<String>, what: &str) -> Result<Vec<u8>, RuleError> {
    let t = s.get_ref().trim_start_matches("0x");
    let bad = || {
        cx.err(
            s.span(),
            format!(
                "payload {what} {:?} is not 1 to {MATCH_MAX} bytes of hex, like \"07\" or \"0x1700\"",
                s.get_ref()
            ),
        )
    };
    if t.is_empty() || !t.len().is_multiple_of(2) || t.len() / 2 > MATCH_MAX {
        return Err(bad());
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

/// What the XDP program's rule maps hold for a rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub config: Config,
    pub rules: Vec<Rule>,
    /// Index 0 is the empty chain.
    pub chains: Vec<Chain>,
    /// (port slot, chain index) for every slot whose chain is not empty.
    pub port_chains: Vec<(u32, u32)>,
    /// By limit id; id 0 is "no limit".
    pub limits: Vec<Limit>,
}

struct ChainOverflow {
    rule: usize,
    message: String,
}

/// Splits each protocol's source-port space at every rule boundary; each
/// piece gets the list of rules covering it, in file order. Identical lists
/// share one chain.
/// Chains and the port slots that lead to them.
struct Chains {
    chains: Vec<Chain>,
    port_chains: Vec<(u32, u32)>,
}

fn compile_chains(set: &RuleSet) -> Result<Chains, ChainOverflow> {
    let mut chains = vec![Chain::default()];
    let mut ids: HashMap<Vec<u16>, u32> = HashMap::new();
    let mut port_chains = Vec::new();
    for proto in [IPPROTO_UDP, IPPROTO_TCP] {
        let rules: Vec<(usize, &RuleSpec)> = set
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.proto == proto)
            .collect();
        let mut cuts: Vec<u32> = vec![0, 65536];
        for (_, r) in &rules {
            cuts.push(r.src_ports.0 as u32);
            cuts.push(r.src_ports.1 as u32 + 1);
        }
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let list: Vec<u16> = rules
                .iter()
                .filter(|(_, r)| (r.src_ports.0 as u32) <= lo && lo <= r.src_ports.1 as u32)
                .map(|(i, _)| *i as u16)
                .collect();
            if list.is_empty() {
                continue;
            }
            if list.len() > MAX_CHAIN {
                let culprit = list[MAX_CHAIN] as usize;
                let names: Vec<&str> = list
                    .iter()
                    .map(|&i| set.rules[i as usize].name.as_str())
                    .collect();
                return Err(ChainOverflow {
                    rule: culprit,
                    message: format!(
                        "more than {MAX_CHAIN} rules apply to {} source port {lo}: {}; use fewer rules on that port, or narrow their src_port ranges",
                        if proto == IPPROTO_UDP { "udp" } else { "tcp" },
                        names.join(", ")
                    ),
                });
            }
            let id = match ids.get(&list) {
                Some(id) => *id,
                None => {
                    let id = chains.len() as u32;
                    let mut chain = Chain {
                        len: list.len() as u16,
                        ..Chain::default()
                    };
                    chain.rules[..list.len()].copy_from_slice(&list);
                    chains.push(chain);
                    ids.insert(list, id);
                    id
                }
            };
            for port in lo..hi {
                let slot = port_slot(proto, port as u16).expect("udp and tcp have ports");
                port_chains.push((slot, id));
            }
        }
    }
    assert!(
        chains.len() <= MAX_CHAINS as usize,
        "bounded by 2N+1 pieces per protocol"
    );
    Ok(Chains {
        chains,
        port_chains,
    })
}

impl RuleSet {
    pub fn compile(&self) -> Compiled {
        let Chains {
            chains,
            port_chains,
        } = match compile_chains(self) {
            Ok(c) => c,
            Err(e) => unreachable!("parse() already checked chain limits: {}", e.message),
        };
        let mut flags = 0;
        if self.mode == Mode::Monitor {
            flags |= CONFIG_MONITOR;
        }
        if self.fragments == FragmentPolicy::Drop {
            flags |= CONFIG_FRAGMENT_DROP;
        }
        if !self.allow.is_empty() {
            flags |= CONFIG_HAS_ALLOW;
        }
        if !self.deny.is_empty() {
            flags |= CONFIG_HAS_DENY;
        }
        Compiled {
            config: Config {
                flags,
                src_prefix_v4: self.src_prefix_v4,
                src_prefix_v6: self.src_prefix_v6,
                ban_after_ns: self.ban_after_ns,
                ban_for_ns: self.ban_for_ns,
                frag_track_ns: self.fragment_memory_ns,
                default_limit: self.default_limit,
                ..Config::default()
            },
            rules: self.rules.iter().map(|r| r.rule).collect(),
            chains,
            port_chains,
            limits: std::iter::once(Limit::default())
                .chain(self.limits.iter().map(|(_, l)| *l))
                .collect(),
        }
    }

    pub fn digest_hex(&self) -> String {
        hex(&self.digest)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> RuleError {
        parse("t.toml", text).expect_err("should be rejected")
    }

    const NTP: &str = r#"
[[rule]]
name = "ntp-time"
protocol = "udp"
src_port = 123
payload = { offset = 0, mask = "07", value = "04" }
action = "pass"

[[rule]]
name = "ntp-reflection"
protocol = "udp"
src_port = 123
action = "drop"
"#;

    #[test]
    fn parses_a_valid_file_with_defaults() {
        let set = parse("t.toml", NTP).unwrap();
        assert_eq!(set.mode, Mode::Enforce);
        assert_eq!(set.fragments, FragmentPolicy::Pass);
        assert_eq!(set.rules.len(), 2);
        let time = &set.rules[0];
        assert_eq!(time.src_ports, (123, 123));
        assert_eq!(time.rule.dst_port_hi, 65535);
        assert_eq!(time.rule.match_len, 1);
        assert_eq!(time.rule.match_mask[0], 7);
        assert_eq!(time.rule.match_value[0], 4);
        assert_eq!(&time.rule.name[..8], b"ntp-time");
        assert_eq!(time.rule.name[8], 0);
    }

    #[test]
    fn compiles_port_chains_in_file_order() {
        let c = parse("t.toml", NTP).unwrap().compile();
        assert_eq!(c.chains.len(), 2);
        assert_eq!(c.chains[1].len, 2);
        assert_eq!(&c.chains[1].rules[..2], &[0, 1]);
        assert_eq!(c.port_chains, vec![(123, 1)]);
    }

    #[test]
    fn overlapping_ranges_split_into_shared_chains() {
        let text = r#"
[[rule]]
name = "a"
protocol = "udp"
src_port = "100-200"
action = "drop"
[[rule]]
name = "b"
protocol = "udp"
src_port = "150-300"
action = "pass"
[[rule]]
name = "c"
protocol = "tcp"
src_port = "100-200"
action = "drop"
"#;
        let c = parse("t.toml", text).unwrap().compile();
        let chain_of = |slot: u32| {
            c.port_chains
                .iter()
                .find(|(s, _)| *s == slot)
                .map(|(_, id)| {
                    c.chains[*id as usize].rules[..c.chains[*id as usize].len as usize].to_vec()
                })
        };
        assert_eq!(chain_of(99), None);
        assert_eq!(chain_of(100), Some(vec![0]));
        assert_eq!(chain_of(150), Some(vec![0, 1]));
        assert_eq!(chain_of(200), Some(vec![0, 1]));
        assert_eq!(chain_of(201), Some(vec![1]));
        assert_eq!(chain_of(300), Some(vec![1]));
        assert_eq!(chain_of(301), None);
        assert_eq!(chain_of(65536 + 150), Some(vec![2]));
        // Chains {0}, {0,1}, {1}, {2} plus the empty one.
        assert_eq!(c.chains.len(), 5);
    }

    #[test]
    fn modes_and_fragment_policy_set_config_flags() {
        let text = format!("mode = \"monitor\"\nfragments = \"drop\"\n{NTP}");
        let c = parse("t.toml", &text).unwrap().compile();
        assert_eq!(c.config.flags, CONFIG_MONITOR | CONFIG_FRAGMENT_DROP);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = err(
            "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = 70000\naction = \"drop\"\n",
        );
        assert_eq!((e.file.as_str(), e.line, e.column), ("t.toml", 4, 12));
        assert!(e.message.contains("out of range"), "{e}");
        assert!(e.to_string().starts_with("t.toml:4:12: "), "{e}");
    }

    #[test]
    fn rejects_broken_files_with_a_reason() {
        let base = "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\naction = \"drop\"\n";
        let cases: &[(&str, String, usize, &str)] = &[
            ("empty", String::new(), 1, "empty rule file"),
            ("only comments", "# nothing\n".into(), 1, "no [[rule]]"),
            ("no rules", "mode = \"enforce\"\n".into(), 1, "no [[rule]]"),
            (
                "unknown key",
                format!("{base}colour = \"red\"\n"),
                5,
                "unknown field",
            ),
            (
                "unknown top key",
                format!("speed = 1\n{base}"),
                1,
                "unknown field",
            ),
            (
                "bad protocol",
                base.replace("udp", "sctp"),
                3,
                "unknown protocol",
            ),
            (
                "bad action",
                base.replace("\"drop\"", "\"reject\""),
                4,
                "unknown action",
            ),
            (
                "bad mode",
                format!("mode = \"loud\"\n{base}"),
                1,
                "unknown mode",
            ),
            (
                "bad fragments",
                format!("fragments = \"eat\"\n{base}"),
                1,
                "fragment policy",
            ),
            (
                "inverted range",
                format!("{base}src_port = \"200-100\"\n"),
                5,
                "empty",
            ),
            (
                "text port",
                format!("{base}dst_port = \"ntp\"\n"),
                5,
                "not a number",
            ),
            (
                "negative length",
                format!("{base}payload_len = -1\n"),
                5,
                "out of range",
            ),
            (
                "bad name",
                base.replace("\"x\"", "\"no spaces\""),
                2,
                "bad rule name",
            ),
            (
                "duplicate name",
                format!("{base}{base}"),
                6,
                "already used on line 2",
            ),
            (
                "missing action",
                "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\n".into(),
                1,
                "missing field `action`",
            ),
            ("syntax", format!("{base}src_port = \n"), 5, ""),
            (
                "mask too long",
                format!(
                    "{base}payload = {{ offset = 0, mask = \"0102030405\", value = \"0102030405\" }}\n"
                ),
                5,
                "1 to 4 bytes",
            ),
            (
                "value outside mask",
                format!("{base}payload = {{ offset = 0, mask = \"07\", value = \"08\" }}\n"),
                5,
                "outside the mask",
            ),
            (
                "offset too far",
                format!("{base}payload = {{ offset = 65, mask = \"07\", value = \"04\" }}\n"),
                5,
                "out of range",
            ),
        ];
        for (what, text, line, needle) in cases {
            let e = err(text);
            assert_eq!(e.line, *line, "{what}: {e}");
            assert!(e.message.contains(needle), "{what}: {e}");
        }
    }

    #[test]
    fn more_rules_on_one_port_than_a_chain_holds_is_refused() {
        let mut text = String::new();
        for i in 0..=MAX_CHAIN {
            text.push_str(&format!(
                "[[rule]]\nname = \"r{i}\"\nprotocol = \"udp\"\nsrc_port = 53\naction = \"drop\"\n"
            ));
        }
        let e = err(&text);
        assert!(e.message.contains("more than 8 rules"), "{e}");
        assert_eq!(e.line, 2 + 5 * MAX_CHAIN, "{e}");
    }

    #[test]
    fn shipped_rule_files_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load_file(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no rule files in {}", dir.display());
    }

    #[test]
    fn digest_changes_with_the_bytes() {
        let a = parse("t.toml", NTP).unwrap();
        let b = parse("t.toml", &format!("{NTP}\n# comment\n")).unwrap();
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.digest_hex().len(), 64);
    }
}
