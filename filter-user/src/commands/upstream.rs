//! `upstream`: what serve announces to the BGP peers and why, from its
//! state file; and `upstream keep`, hidden, the keeper serve starts.

use std::fmt::Write as _;

use super::common::{interfaces, upstream_headline};
use crate::{
    state::PinRoot,
    upstream::{
        keeper,
        state::{self, Owner, Role, UpstreamState},
    },
};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UpstreamArgs {
    #[arg(long)]
    iface: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    keep: Option<Keep>,
}

#[derive(clap::Subcommand, Debug)]
enum Keep {
    /// Started by serve, in a session of its own, while it has routes
    /// announced: withdraws each at its deadline if serve dies, until a new
    /// serve takes them over (see upstream::keeper).
    #[command(hide = true)]
    Keep(KeepArgs),
}

#[derive(clap::Args, Debug)]
struct KeepArgs {
    #[arg(long)]
    iface: String,
    /// The serve it keeps the routes of: PID:START_TICKS.
    #[arg(long, value_parser = parse_serve)]
    serve: Owner,
}

fn parse_serve(s: &str) -> Result<Owner, String> {
    let bad = || format!("{s:?}: expected PID:START_TICKS (as serve writes it)");
    let (pid, ticks) = s.split_once(':').ok_or_else(bad)?;
    Ok(Owner {
        role: Role::Serve,
        pid: pid.parse().map_err(|_| bad())?,
        start_ticks: ticks.parse().map_err(|_| bad())?,
    })
}

impl UpstreamArgs {
    /// Whether this is the keeper, which runs as long as a daemon.
    pub fn is_keeper(&self) -> bool {
        self.keep.is_some()
    }
}

pub(super) async fn run(root: &PinRoot, a: UpstreamArgs) -> anyhow::Result<u8> {
    if let Some(Keep::Keep(k)) = a.keep {
        keeper::run(root.clone(), k.iface, k.serve).await?;
        return Ok(0);
    }
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
        if let Some(k) = s.owner.filter(|o| o.role == Role::Keeper) {
            let _ = writeln!(
                o,
                "  serve is gone: its keeper (pid {}) withdraws each route at its deadline, unless a serve starts",
                k.pid
            );
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

    /// The command line serve starts its keeper with is one this program
    /// takes, and says the same serve.
    #[test]
    fn the_keeper_command_line_parses() {
        use crate::commands::args::{Cli, Command};
        use clap::Parser as _;

        let root = PinRoot::new("/sys/fs/bpf/filterctl");
        let me = Owner::me(Role::Serve);
        let mut argv = vec![std::ffi::OsString::from("filterctl")];
        argv.extend(keeper::command_args(&root, "eth0", &me));
        let cli = Cli::try_parse_from(argv).unwrap();
        assert_eq!(cli.pin_root().path(), root.path());
        let Command::Upstream(a) = cli.command else {
            panic!("not upstream: {:?}", cli.command)
        };
        assert!(a.is_keeper());
        let Some(Keep::Keep(k)) = a.keep else {
            unreachable!()
        };
        assert_eq!((k.iface.as_str(), k.serve), ("eth0", me));
        let e = parse_serve("12").unwrap_err();
        assert!(e.contains("expected PID:START_TICKS"), "{e}");
    }

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
        assert!(!text.contains("keeper"), "{text}");
    }

    #[test]
    fn says_when_a_keeper_holds_the_routes_of_a_serve_that_is_gone() {
        let keeper = Owner::me(Role::Keeper);
        let s = UpstreamState {
            interface: "eth0".into(),
            owner: Some(keeper),
            ..UpstreamState::default()
        };
        let text = render(&[s]);
        let want = format!(
            "serve is gone: its keeper (pid {}) withdraws each route at its deadline",
            keeper.pid
        );
        assert!(text.contains(&want), "{text}");
    }
}
