//! `upstream`: what serve announces to the BGP peers and why, from its
//! state file; and the line `status` shows for it.

use std::fmt::Write as _;

use crate::{
    state::PinRoot,
    upstream::state::{self, UpstreamState},
};

pub fn upstream(root: &PinRoot, iface: Option<String>, json: bool) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for i in super::interfaces(root, iface)? {
        match state::read(root, &i)? {
            Some(s) => all.push(s),
            None if !json => println!(
                "{i}: nothing upstream (no `filterctl serve` with an [upstream] section runs for it)"
            ),
            None => {}
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", render(&all));
    }
    Ok(())
}

fn render(all: &[UpstreamState]) -> String {
    let mut o = String::new();
    for s in all {
        let _ = writeln!(o, "{}: {}", s.interface, headline(s));
        for r in &s.routes {
            let state = match (r.announced, s.dry_run) {
                (true, _) => "announced",
                (false, true) => "dry run",
                (false, false) => "pending",
            };
            let _ = writeln!(
                o,
                "  [{state}] {} (for {:.0} s)\n      why: {}, last {} pps, {} bit/s",
                r.route, r.selected_for_s, r.why, r.pps, r.bps
            );
        }
        if s.over_cap > 0 {
            let _ = writeln!(o, "  {} more qualify beyond max_routes", s.over_cap);
        }
        if let Some(e) = &s.last_error {
            let _ = writeln!(o, "  speaker error: {e}");
        }
    }
    o
}

fn headline(s: &UpstreamState) -> String {
    let age_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .saturating_sub(s.updated_unix_ms)
        / 1000;
    format!(
        "{} flowspec, {} blackhole announced via {}{}, peers {:?}, {} speaker errors (serve, {age_s} s ago)",
        s.count("flowspec", true),
        s.count("blackhole", true),
        s.speaker,
        if s.dry_run { " (DRY RUN)" } else { "" },
        s.peers,
        s.speaker_errors,
    )
}

/// The `status` line, when serve drives a speaker for `iface`.
pub fn summary(root: &PinRoot, iface: &str) -> Option<String> {
    let s = state::read(root, iface).ok()??;
    Some(format!("upstream: {}", headline(&s)))
}
