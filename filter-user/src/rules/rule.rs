//! One `[[rule]]` of a rule file, validated into a `RuleSpec`: its name,
//! protocol, action, limits, port and length ranges and payload match.

use filter_common::{
    ACTION_DROP, ACTION_LIMIT, ACTION_PASS, IPPROTO_TCP, IPPROTO_UDP, MATCH_MAX, MATCH_OFFSET_MAX,
    RULE_NAME_LEN, Rule,
};
use toml::Spanned;

use super::{
    adaptive,
    compile::gcra_packets,
    error::{Ctx, RuleError},
    limits::{Limits, valid_name},
    schema::{PayloadSchema, RangeValue, RuleSchema},
    set::{FLOWSPEC_PREFIX, RuleSpec},
    values::{int_in, named_limit},
};

/// A `[[rule]]` checked whole; `limits` are the file's, by limit id - 1.
pub(super) fn rule_spec(
    cx: &Ctx<'_>,
    r: &RuleSchema,
    limits: &Limits,
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
    if name.starts_with(FLOWSPEC_PREFIX) {
        return Err(cx.err(
            r.name.span(),
            format!(
                "rule name {name:?}: names starting with {FLOWSPEC_PREFIX:?} are reserved for the FlowSpec routes of [upstream.import]"
            ),
        ));
    }
    if name.starts_with(adaptive::ADAPTIVE_PREFIX) {
        return Err(cx.err(
            r.name.span(),
            format!(
                "rule name {name:?}: names starting with {:?} are reserved for the blocks of [adaptive]",
                adaptive::ADAPTIVE_PREFIX
            ),
        ));
    }
    let proto = match r.protocol.get_ref().as_str() {
        "udp" => IPPROTO_UDP,
        "tcp" => IPPROTO_TCP,
        other => return Err(cx.unknown(r.protocol.span(), "protocol", other, &["udp", "tcp"])),
    };
    let action = match r.action.get_ref().as_str() {
        "drop" => ACTION_DROP,
        "pass" => ACTION_PASS,
        "limit" => ACTION_LIMIT,
        other => {
            return Err(cx.unknown(r.action.span(), "action", other, &["drop", "pass", "limit"]));
        }
    };
    let limit = limit_ref(cx, r, action, limits, default_limit)?;
    let (agg_interval_ns, agg_tolerance_ns) = aggregate(cx, r, action)?;
    if action == ACTION_LIMIT && limit == 0 && agg_interval_ns == 0 {
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
        limit,
        dst_port_lo: dst_ports.0,
        dst_port_hi: dst_ports.1,
        len_lo: lens.0,
        len_hi: lens.1,
        action,
        ..Rule::default()
    };
    if let Some(p) = &r.payload {
        payload(cx, p.get_ref(), &mut rule)?;
    }
    rule.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(RuleSpec {
        name: name.clone(),
        proto,
        src_ports,
        rule,
    })
}

/// The limit id a rule counts against: the one it names, or the per-source
/// limit for a `limit` rule that names none; 0 for none.
fn limit_ref(
    cx: &Ctx<'_>,
    r: &RuleSchema,
    action: u8,
    limits: &Limits,
    default_limit: u32,
) -> Result<u8, RuleError> {
    let Some(l) = &r.limit else {
        return Ok(if action == ACTION_LIMIT {
            default_limit as u8
        } else {
            0
        });
    };
    if action != ACTION_LIMIT {
        return Err(cx.err(l.span(), "limit = ... needs action = \"limit\""));
    }
    named_limit(cx, l, limits)
}

/// The aggregate limit of a `limit` rule: GCRA spacing and tolerance.
fn aggregate(cx: &Ctx<'_>, r: &RuleSchema, action: u8) -> Result<(u64, u64), RuleError> {
    let Some(a) = &r.aggregate_pps else {
        if let Some(b) = &r.aggregate_burst {
            return Err(cx.err(b.span(), "aggregate_burst needs aggregate_pps"));
        }
        return Ok((0, 0));
    };
    if action != ACTION_LIMIT {
        return Err(cx.err(a.span(), "aggregate_pps needs action = \"limit\""));
    }
    let pps = int_in(cx, a, "aggregate_pps", 1, 100_000_000)? as u64;
    let burst = match &r.aggregate_burst {
        Some(b) => Some(int_in(cx, b, "aggregate_burst", 1, 100_000_000)? as u64),
        None => None,
    };
    Ok(gcra_packets(pps, burst))
}

fn payload(cx: &Ctx<'_>, p: &PayloadSchema, rule: &mut Rule) -> Result<(), RuleError> {
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
    Ok(())
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
    // Checked as bytes first: slicing text with other characters could
    // cut one in half.
    if t.is_empty()
        || !t.len().is_multiple_of(2)
        || t.len() / 2 > MATCH_MAX
        || !t.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(bad());
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}
