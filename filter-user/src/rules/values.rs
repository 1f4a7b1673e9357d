//! One value of a rule file checked where it stands, its error placed at
//! its span: a whole number in range, a duration, the name of a limit.
//! Shared by the file's parser and the parsers of its sections.

use filter_common::Limit;
use toml::Spanned;

use super::{
    error::{Ctx, RuleError},
    units::parse_duration,
};

/// `v` if it lies in `lo..=hi`; `what` names it in the error.
pub(super) fn int_in(
    cx: &Ctx<'_>,
    v: &Spanned<i64>,
    what: &str,
    lo: i64,
    hi: i64,
) -> Result<i64, RuleError> {
    let n = *v.get_ref();
    if !(lo..=hi).contains(&n) {
        return Err(cx.err(
            v.span(),
            format!("{what} {n} out of range: allowed is {lo} to {hi}"),
        ));
    }
    Ok(n)
}

/// Nanoseconds from a duration like "30s" (see [`parse_duration`]).
pub(super) fn duration(cx: &Ctx<'_>, d: &Spanned<String>) -> Result<u64, RuleError> {
    parse_duration(d.get_ref()).map_err(|e| cx.err(d.span(), e.to_string()))
}

/// The id of the limit `l` names: its index in `limits`, plus 1.
pub(super) fn named_limit(
    cx: &Ctx<'_>,
    l: &Spanned<String>,
    limits: &[(String, Limit)],
) -> Result<u8, RuleError> {
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
    Ok((i + 1) as u8)
}
