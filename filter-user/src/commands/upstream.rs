//! `upstream`: what serve announces to the BGP peers and why, from its
//! state file.

use std::fmt::Write as _;

use super::common::{interfaces, upstream_headline};
use crate::{
    state::PinRoot,
    upstream::state::{self, UpstreamState},
};

#[derive(clap::Args, Debug)]
pub struct UpstreamArgs {
    #[arg(long)]
    iface: Option<String>,
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(root: &PinRoot, a: UpstreamArgs) -> anyhow::Result<u8> {
    let json = a.json;
    let mut all = Vec::new();
    for i in interfaces(root, a.iface)? {
        match state::read(root, &i)? {
            Some(s) => all.push(s),
            None if !json => println!(
                "{i}: nothing upstream (no `filterctl serve` with an [upstream] section runs for it)"
            ),
            None => {}
        }
    }
    if json {
        let doc = serde_json::json!({
            "schema_version": crate::JSON_SCHEMA_VERSION,
            "interfaces": all,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&all));
    }
    Ok(0)
}

fn render(all: &[UpstreamState]) -> String {
    let mut o = String::new();
    for s in all {
        let _ = writeln!(o, "{}: {}", s.interface, upstream_headline(s));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::state::RouteState;

    #[test]
    fn shows_each_route_with_its_state_and_why() {
        let s = UpstreamState {
            interface: "eth0".into(),
            speaker: "gobgp 127.0.0.1:50051".into(),
            peers: vec!["192.0.2.254 AS 64512".into()],
            routes: vec![RouteState {
                kind: "flowspec".into(),
                route:
                    "flowspec destination 192.0.2.1/32 protocol udp source-port ==1900 then discard"
                        .into(),
                why: "rule ssdp-reflection (discard)".into(),
                announced: true,
                selected_for_s: 12.0,
                pps: 5000,
                bps: 4_000_000,
            }],
            over_cap: 3,
            last_error: Some("`gobgp ...` failed: connection refused".into()),
            ..UpstreamState::default()
        };
        let text = render(&[s]);
        assert!(
            text.starts_with(
                "eth0: 1 flowspec, 0 blackhole announced via gobgp 127.0.0.1:50051, peers"
            ),
            "{text}"
        );
        assert!(
            text.contains("[announced] flowspec destination 192.0.2.1/32"),
            "{text}"
        );
        assert!(
            text.contains("why: rule ssdp-reflection (discard), last 5000 pps"),
            "{text}"
        );
        assert!(text.contains("3 more qualify beyond max_routes"), "{text}");
        assert!(text.contains("speaker error: `gobgp ...` failed"), "{text}");
    }
}
