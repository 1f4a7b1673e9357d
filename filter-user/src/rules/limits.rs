//! The file's limits (`[per_source]` and `[limits.NAME]`) in the program's
//! terms, and the names that limits and rules may take.

use filter_common::{Limit, RULE_NAME_LEN};
use toml::Spanned;

use super::{
    compile::{gcra_bytes, gcra_packets},
    error::{Ctx, RuleError},
    schema::LimitSchema,
    units::parse_bitrate,
    values::int_in,
};

/// The `[per_source]` limit and the named ones, by limit id - 1.
pub(super) type Limits = Vec<(String, Limit)>;

/// Whether `name` may name a limit or a rule: a-z, A-Z, 0-9, '-' and '_',
/// short enough for the program's name field.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < RULE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A limit in the program's terms: GCRA spacing and tolerance. The burst
/// defaults to a tenth of a second at the rate (at least one packet).
pub(super) fn limit(cx: &Ctx<'_>, l: &Spanned<LimitSchema>) -> Result<Limit, RuleError> {
    let s = l.get_ref();
    if s.pps.is_none() && s.bps.is_none() {
        return Err(cx.err(l.span(), "a limit needs pps, bps or both"));
    }
    let mut out = Limit::default();
    if let Some(p) = &s.pps {
        let pps = int_in(cx, p, "pps", 1, 100_000_000)? as u64;
        let burst = match &s.burst_packets {
            Some(b) => Some(int_in(cx, b, "burst_packets", 1, 100_000_000)? as u64),
            None => None,
        };
        (out.pkt_interval_ns, out.pkt_tolerance_ns) = gcra_packets(pps, burst);
    } else if let Some(b) = &s.burst_packets {
        return Err(cx.err(b.span(), "burst_packets needs pps"));
    }
    if let Some(b) = &s.bps {
        let bps = parse_bitrate(b.get_ref()).map_err(|e| cx.err(b.span(), e.to_string()))?;
        let burst = match &s.burst_bytes {
            Some(v) => Some(int_in(cx, v, "burst_bytes", 64, 1 << 32)? as u64),
            None => None,
        };
        (out.byte_cost_ps, out.byte_tolerance_ns) = gcra_bytes(bps, burst).ok_or_else(|| {
            cx.err(
                s.burst_bytes.as_ref().map_or(b.span(), |v| v.span()),
                format!(
                    "a burst of {} bytes at {} takes longer than the limiter can count: use a smaller burst_bytes or a higher bps",
                    burst.unwrap_or_default(),
                    b.get_ref()
                ),
            )
        })?;
    } else if let Some(b) = &s.burst_bytes {
        return Err(cx.err(b.span(), "burst_bytes needs bps"));
    }
    Ok(out)
}
