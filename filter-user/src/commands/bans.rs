//! `ban`, `unban` and `top`: who is banned or limited right now.

use super::common::interfaces;
use crate::{
    filter::{
        guard::bans,
        observe::top::{self as top_of, Entry},
    },
    lockout,
    rules::units::parse_duration,
    state::PinRoot,
};

#[derive(clap::Args, Debug)]
pub struct BanArgs {
    /// 198.51.100.7, 2001:db8::/48, ...
    target: String,
    /// How long: 30s, 10m, 2h, 1d.
    #[arg(long = "for", value_name = "DURATION")]
    duration: String,
    #[arg(long)]
    iface: Option<String>,
    /// Ban even a prefix that covers everyone, this host's own addresses
    /// or your SSH session.
    #[arg(long)]
    force: bool,
}

pub(crate) fn ban(root: &PinRoot, a: BanArgs) -> anyhow::Result<u8> {
    let target = bans::parse_target(&a.target)?;
    let ifaces = interfaces(root, a.iface)?;
    if !a.force {
        let protected = lockout::protected_addresses();
        lockout::check_ban(&target, &protected)?;
        // What the kernel would ban: the target widened to the prefix its
        // sources are keyed by.
        for iface in &ifaces {
            lockout::check_ban(&bans::banned_prefix(root, iface, target)?, &protected)?;
        }
    }
    let ns = parse_duration(&a.duration)?;
    for iface in ifaces {
        let banned = bans::ban(root, &iface, target, std::time::Duration::from_nanos(ns))?;
        println!("{iface}: banned {banned} for {}", a.duration);
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct UnbanArgs {
    target: String,
    #[arg(long)]
    iface: Option<String>,
}

pub(crate) fn unban(root: &PinRoot, a: UnbanArgs) -> anyhow::Result<u8> {
    let target = bans::parse_target(&a.target)?;
    for iface in interfaces(root, a.iface)? {
        let lifted = bans::unban(root, &iface, target)?;
        println!("{iface}: lifted the ban on {lifted}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    #[arg(long)]
    iface: Option<String>,
    #[arg(short, default_value_t = 20)]
    n: usize,
    #[arg(long)]
    json: bool,
}

pub(crate) fn top(root: &PinRoot, a: TopArgs) -> anyhow::Result<u8> {
    let report = top_of::top_report(root, interfaces(root, a.iface)?, a.n)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for t in &report.interfaces {
            print!("{}", render(&t.interface, &t.sources));
        }
    }
    Ok(0)
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
