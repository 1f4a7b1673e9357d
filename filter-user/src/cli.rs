//! Command line of filterctl and what each command does.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{
    bans,
    loader::{self, AttachMode},
    lockout,
    pins::{DEFAULT_ROOT, PinRoot},
    rules::{self, RuleSet},
    stats, status, units,
};

/// The rule file used when `load` gets no --rules.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.toml");
const DEFAULT_RULES_NAME: &str = "(built-in rules/default.toml)";

/// Host-level XDP filter against UDP reflection floods.
#[derive(Parser, Debug)]
#[command(name = "filterctl", version)]
pub struct Cli {
    /// Folder on bpffs that holds one subfolder of pins per interface.
    #[arg(long, global = true, env = "FILTERCTL_PIN_ROOT", default_value = DEFAULT_ROOT)]
    pub pin_root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the filter on an interface with a rule file, pin it and exit;
    /// the filter keeps running without filterctl.
    Load {
        #[arg(long)]
        iface: String,
        /// Rule file (TOML); the built-in default profile when absent.
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        mode: AttachMode,
        /// Load even if the rules would drop traffic from this host's own
        /// addresses or from your SSH session.
        #[arg(long)]
        force: bool,
    },
    /// Replace the rule set of a loaded filter in one atomic step; rate
    /// limit, ban and counter state carry over. If the new rules fail to
    /// load, the old ones keep enforcing.
    Reload {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        rules: PathBuf,
        /// Reload even if the rules would lock you out (see `load --force`).
        #[arg(long)]
        force: bool,
    },
    /// Show what reloading an interface with a rule file would change:
    /// settings, rules added, removed and changed, prefixes.
    Diff {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        rules: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Switch between enforcing and only counting (monitor) at once,
    /// without reloading; the next load or reload uses the file's mode.
    Mode {
        #[arg(long)]
        iface: String,
        #[arg(value_enum)]
        mode: ModeArg,
    },
    /// Detach the filter from an interface (or all) and remove its pins.
    Unload {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        iface: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Show which interfaces carry the filter and which rules they run.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Per-reason and per-rule packet and byte counters.
    Stats {
        #[arg(long)]
        iface: Option<String>,
        #[arg(long)]
        json: bool,
        /// Print rates (per second over this many seconds) until stopped.
        #[arg(long, value_name = "SECS")]
        watch: Option<u64>,
    },
    /// Ban a source address or prefix at once (on every loaded interface
    /// unless --iface); bans expire by themselves and survive reloads.
    Ban {
        /// 198.51.100.7, 2001:db8::/48, ...
        target: String,
        /// How long: 30s, 10m, 2h, 1d.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Lift a ban set with `ban` (or by the limiter).
    Unban {
        target: String,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Sources over their limit or banned right now, most dropped first.
    Top {
        #[arg(long)]
        iface: Option<String>,
        #[arg(short, default_value_t = 20)]
        n: usize,
        #[arg(long)]
        json: bool,
    },
    /// Run every frame of a capture (pcap or pcapng, Ethernet) through the
    /// filter with a rule file, in the kernel but attached nowhere, and show
    /// what each frame would get: test a rule change against a recorded
    /// attack. Rate limits, bans and fragment memory run at replay speed,
    /// not at the capture's timestamps. Needs root.
    Replay {
        /// Rule file (TOML) to test.
        #[arg(long)]
        rules: PathBuf,
        /// Capture file (.pcap or .pcapng).
        capture: PathBuf,
        /// Print the report as JSON (every frame, totals per reason and rule).
        #[arg(long)]
        json: bool,
        /// List every frame in the human report.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Run as a daemon: metrics on /metrics, stats on /stats, rule files
    /// followed.
    ///
    /// Prometheus metrics (OpenMetrics text) on /metrics and the `stats
    /// --json` document on /stats, read from the pins at each request. Each
    /// watched rule file is reloaded when its content changes (checked
    /// every second) and on SIGHUP, behind the lockout guard; a broken one
    /// is logged and not loaded. SIGTERM or SIGINT stops the daemon and
    /// leaves the filter attached. Logs at info unless RUST_LOG says else.
    Serve {
        /// Address to listen on (loopback only by default).
        #[arg(long, default_value = crate::serve::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Interface whose rules follow the --rules file given with it
        /// (repeatable: --iface IF --rules FILE ...).
        #[arg(long, requires = "rules")]
        iface: Vec<String>,
        /// Rule file watched for the --iface given with it.
        #[arg(long, requires = "iface")]
        rules: Vec<PathBuf>,
        /// Same as --iface IF --rules FILE, in one argument (repeatable).
        #[arg(long, value_name = "IF=FILE", value_parser = crate::serve::parse_watch)]
        watch: Vec<crate::serve::Watch>,
    },
    /// Validate rule files without loading them (no root needed). Exit status
    /// 1 if any is invalid: usable in a pre-commit hook or CI.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Enforce,
    Monitor,
}

fn rules_for(path: Option<&Path>) -> anyhow::Result<(RuleSet, PathBuf)> {
    match path {
        Some(p) => Ok((rules::load_file(p)?, p.to_path_buf())),
        None => Ok((
            rules::parse(DEFAULT_RULES_NAME, DEFAULT_RULES)?,
            PathBuf::from(DEFAULT_RULES_NAME),
        )),
    }
}

/// The lockout guard, unless forced.
fn guard(set: &RuleSet, force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    lockout::check(set, &lockout::protected_addresses()).map_err(|e| anyhow::anyhow!(e))
}

/// The named interface, or every loaded one.
fn interfaces(root: &PinRoot, iface: Option<String>) -> anyhow::Result<Vec<String>> {
    let all = match iface {
        Some(i) => vec![i],
        None => root.interfaces()?,
    };
    if all.is_empty() {
        anyhow::bail!("no filter loaded");
    }
    Ok(all)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let root = PinRoot::new(&cli.pin_root);
    match cli.command {
        Command::Serve {
            listen,
            iface,
            rules,
            watch,
        } => crate::serve::serve(root, listen, crate::serve::watches(iface, rules, watch)?).await?,
        Command::Load {
            iface,
            rules,
            mode,
            force,
        } => {
            let (set, source) = rules_for(rules.as_deref())?;
            guard(&set, force)?;
            let used = loader::load(&root, &iface, &set, &source, mode)
                .with_context(|| format!("failed to load the filter on {iface}"))?;
            println!(
                "loaded on {iface} ({used} mode): {} rules from {}, digest {}",
                set.rules.len(),
                source.display(),
                &set.digest_hex()[..16]
            );
        }
        Command::Reload {
            iface,
            rules,
            force,
        } => {
            let set = rules::load_file(&rules)?;
            guard(&set, force)?;
            let generation = loader::reload(&root, &iface, &set, &rules).with_context(|| {
                format!("failed to reload {iface}; the previous rules are still enforcing")
            })?;
            println!(
                "reloaded {iface}: generation {generation}, {} rules from {}, digest {}",
                set.rules.len(),
                rules.display(),
                &set.digest_hex()[..16]
            );
        }
        Command::Diff { iface, rules, json } => {
            let set = rules::load_file(&rules)?;
            let plan = crate::diff::plan(&root, &iface, &set)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", plan.render());
            }
        }
        Command::Mode { iface, mode } => {
            loader::set_mode(&root, &iface, mode == ModeArg::Monitor)?;
            println!(
                "{iface}: {}",
                if mode == ModeArg::Monitor {
                    "monitor"
                } else {
                    "enforce"
                }
            );
        }
        Command::Unload { iface, all } => {
            let targets = match iface {
                Some(i) => vec![i],
                None => root.interfaces()?,
            };
            if all && targets.is_empty() {
                println!("no filter loaded");
            }
            for iface in targets {
                loader::unload(&root, &iface)?;
                println!("unloaded from {iface}");
            }
        }
        Command::Status { json } => {
            let mut all = Vec::new();
            for iface in root.interfaces()? {
                all.push(
                    status::status(&root, &iface)
                        .with_context(|| format!("cannot read the state of {iface}"))?,
                );
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no filter loaded");
            } else {
                for s in all {
                    let git = match (&s.git_commit, s.git_modified) {
                        (Some(c), false) => format!(", git {}", &c[..12]),
                        (Some(c), true) => format!(", git {} + local changes", &c[..12]),
                        (None, _) => String::new(),
                    };
                    println!(
                        "{}: program {} generation {} ({} mode, {}), {} rules from {} (sha256 {}{git}), fragments {}",
                        s.interface,
                        s.program_id,
                        s.generation,
                        s.attach_mode,
                        s.mode,
                        s.rule_count,
                        s.rules_source,
                        s.rules_digest,
                        s.fragments
                    );
                    if !s.stale_generations.is_empty() {
                        println!(
                            "  stale generations {:?} from an interrupted reload (removed by the next reload)",
                            s.stale_generations
                        );
                    }
                }
            }
        }
        Command::Stats { iface, json, watch } => match watch {
            None => {
                let snap = stats::snapshot(&root, iface.as_deref())?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&snap)?);
                } else {
                    print!("{}", stats::render_table(&snap));
                }
            }
            Some(secs) => stats::watch(&root, iface.as_deref(), secs.max(1), json)?,
        },
        Command::Ban {
            target,
            duration,
            iface,
        } => {
            let target = bans::parse_target(&target)?;
            let ns = units::parse_duration(&duration).map_err(|e| anyhow::anyhow!(e))?;
            for iface in interfaces(&root, iface)? {
                let banned = bans::ban(&root, &iface, target, std::time::Duration::from_nanos(ns))?;
                println!("{iface}: banned {banned} for {duration}");
            }
        }
        Command::Unban { target, iface } => {
            let target = bans::parse_target(&target)?;
            for iface in interfaces(&root, iface)? {
                let lifted = bans::unban(&root, &iface, target)?;
                println!("{iface}: lifted the ban on {lifted}");
            }
        }
        Command::Top { iface, n, json } => {
            for iface in interfaces(&root, iface)? {
                let entries = bans::top(&root, &iface, n)?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "interface": iface, "sources": entries })
                    );
                    continue;
                }
                println!("{iface}:");
                println!(
                    "  {:<44} {:>5} {:>10} {:>10} {:>10}",
                    "source", "limit", "dropped", "over (s)", "banned (s)"
                );
                for e in entries {
                    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
                    println!(
                        "  {:<44} {:>5} {:>10} {:>10} {:>10}",
                        e.source,
                        e.limit,
                        e.dropped,
                        opt(e.over_for_s),
                        opt(e.banned_for_s)
                    );
                }
            }
        }
        Command::Replay {
            rules,
            capture,
            json,
            verbose,
        } => crate::replay::command(&rules, &capture, json, verbose)?,
        Command::Check { paths } => {
            let mut bad = 0;
            for p in &paths {
                match rules::load_file(p) {
                    Ok(set) => println!("{}: ok, {} rules", p.display(), set.rules.len()),
                    Err(e) => {
                        eprintln!("{e}");
                        bad += 1;
                    }
                }
            }
            if bad > 0 {
                anyhow::bail!("{bad} of {} rule files invalid", paths.len());
            }
        }
    }
    Ok(())
}
