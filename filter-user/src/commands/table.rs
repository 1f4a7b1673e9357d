//! The reason table that `stats` and `replay` both print: one row per
//! reason with its verdict, frames and bytes.

use std::fmt::Write as _;

use crate::filter::observe::stats::Totals;

/// Rows of `(reason, drops, totals)`, counted in `unit` ("packets",
/// "frames"); `of` is the whole the percentage is of, when there is one.
pub(crate) fn reasons<'a>(
    rows: impl IntoIterator<Item = (&'a str, bool, Totals)>,
    unit: &str,
    of: Option<u64>,
    indent: &str,
) -> String {
    let mut o = String::new();
    let pct_head = if of.is_some() { "       %" } else { "" };
    let _ = writeln!(
        o,
        "{indent}{:<22} {:>7} {:>12}{pct_head} {:>14}",
        "reason", "verdict", unit, "bytes"
    );
    for (name, drops, t) in rows {
        let pct = match of {
            Some(0) => format!(" {:>6.1}%", 0.0),
            Some(n) => format!(" {:>6.1}%", 100.0 * t.packets as f64 / n as f64),
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "{indent}{:<22} {:>7} {:>12}{pct} {:>14}",
            name,
            if drops { "drop" } else { "pass" },
            t.packets,
            t.bytes
        );
    }
    o
}

/// Rows of `(rule, action, packets, bytes)`, counted in `unit`.
pub(crate) fn rules<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str, u64, u64)>,
    unit: &str,
    indent: &str,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{indent}{:<32} {:>7} {:>12} {:>14}",
        "rule", "action", unit, "bytes"
    );
    for (name, action, packets, bytes) in rows {
        let _ = writeln!(
            o,
            "{indent}{:<32} {:>7} {:>12} {:>14}",
            name, action, packets, bytes
        );
    }
    o
}
