//! `ban`, `unban` and `top`: who is banned or limited right now.

use crate::{
    filter::bans::{self, Entry},
    lockout,
    rules::units::parse_duration,
    state::PinRoot,
};

pub fn ban(
    root: &PinRoot,
    target: &str,
    duration: &str,
    iface: Option<String>,
    force: bool,
) -> anyhow::Result<()> {
    let target = bans::parse_target(target)?;
    if !force {
        lockout::check_ban(&target, &lockout::protected_addresses())?;
    }
    let ns = parse_duration(duration)?;
    for iface in super::interfaces(root, iface)? {
        let banned = bans::ban(root, &iface, target, std::time::Duration::from_nanos(ns))?;
        println!("{iface}: banned {banned} for {duration}");
    }
    Ok(())
}

pub fn unban(root: &PinRoot, target: &str, iface: Option<String>) -> anyhow::Result<()> {
    let target = bans::parse_target(target)?;
    for iface in super::interfaces(root, iface)? {
        let lifted = bans::unban(root, &iface, target)?;
        println!("{iface}: lifted the ban on {lifted}");
    }
    Ok(())
}

pub fn top(root: &PinRoot, iface: Option<String>, n: usize, json: bool) -> anyhow::Result<()> {
    let report = bans::top_report(root, super::interfaces(root, iface)?, n)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for t in &report.interfaces {
            print!("{}", render(&t.interface, &t.sources));
        }
    }
    Ok(())
}

fn render(iface: &str, entries: &[Entry]) -> String {
    use std::fmt::Write as _;
    let mut o = format!("{iface}:\n");
    let _ = writeln!(
        o,
        "  {:<44} {:>5} {:>10} {:>10} {:>10}",
        "source", "limit", "dropped", "over (s)", "banned (s)"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for e in entries {
        let _ = writeln!(
            o,
            "  {:<44} {:>5} {:>10} {:>10} {:>10}",
            e.source,
            e.limit,
            e.dropped,
            opt(e.over_for_s),
            opt(e.banned_for_s)
        );
    }
    o
}
