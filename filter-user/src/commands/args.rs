//! The command line: clap's types, with the doc comments as help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{
    filter::load::AttachMode,
    serve::{
        self,
        watch::{Watch, parse_watch},
    },
    state::{DEFAULT_ROOT, PinRoot},
};

/// Host-level XDP filter against UDP reflection floods.
#[derive(Parser, Debug)]
#[command(name = "filterctl", version)]
pub struct Cli {
    /// Folder on bpffs that holds one subfolder of pins per interface
    /// [default: /sys/fs/bpf/filterctl; with --netns NAME, its subfolder
    /// netns:NAME].
    #[arg(long, global = true, env = "FILTERCTL_PIN_ROOT")]
    pub pin_root: Option<PathBuf>,
    /// Act on the interfaces of the named network namespace (as `ip -n
    /// NAME`; see `ip netns list`): filterctl enters only that network
    /// namespace and keeps the host's mounts, bpffs included, which `ip
    /// netns exec` would hide.
    #[arg(long, global = true, value_name = "NAME", env = "FILTERCTL_NETNS")]
    pub netns: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The pin root this command works under: the one given, or the
    /// default (a namespace's own folder in it with --netns).
    pub fn pin_root(&self) -> PinRoot {
        match (&self.pin_root, &self.netns) {
            (Some(root), _) => PinRoot::new(root),
            (None, Some(ns)) => PinRoot::new(DEFAULT_ROOT).for_netns(ns),
            (None, None) => PinRoot::new(DEFAULT_ROOT),
        }
    }
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
    /// Make an interface run a rule file, whatever runs now: load it when
    /// nothing does, reload atomically when another rule set does, nothing
    /// when the file's rule set already runs. For boot scripts and GitOps.
    ///
    /// Exit status: 0 nothing to do, 10 loaded, 11 reloaded (0 for both
    /// with --exit-zero), 1 error (the previous rules, if any, still
    /// enforcing).
    Apply {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        rules: PathBuf,
        /// Attach mode for a first load (ignored when a filter runs).
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        mode: AttachMode,
        /// Apply even if the rules would lock you out (see `load --force`).
        #[arg(long)]
        force: bool,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 0 whether it loaded, reloaded or found nothing to do (for
        /// systemd's ExecStartPre and init containers); errors still exit 1.
        #[arg(long)]
        exit_zero: bool,
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
        /// Accept state maps (counters, bans, limiter) whose pins were
        /// removed: they start empty. Without it such a reload fails.
        #[arg(long)]
        reset_state: bool,
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
        /// Ban even a prefix that covers everyone, this host's own addresses
        /// or your SSH session.
        #[arg(long)]
        force: bool,
    },
    /// Probe this machine: which features run (bpffs, capabilities, the
    /// XDP filter, the reply guard's TCX or clsact hook, the capture ring,
    /// live-frame test runs, native XDP per interface), which do not, and
    /// why. Changes nothing. Exit status 1 when the filter cannot load.
    Doctor {
        #[arg(long)]
        json: bool,
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
    /// Write a sampled, rate-bounded copy of the frames the filter drops to
    /// a pcapng file, each frame's reason and rule in its comment (tcpdump
    /// does not see XDP drops). Stops after --duration, --count, or on
    /// Ctrl-C; a capture whose filterctl died stops by itself within
    /// seconds. Costs nothing while no capture runs.
    Capture {
        #[arg(long)]
        iface: String,
        /// Only frames dropped for this reason (repeatable; e.g. rule_drop,
        /// rate_limit_drop, deny_drop); all drop reasons when absent.
        #[arg(long = "reason", value_name = "REASON")]
        reasons: Vec<String>,
        /// Only frames this rule matched (of the rule set running when the
        /// capture starts: restart it after a reload that reorders rules).
        #[arg(long)]
        rule: Option<String>,
        /// Copy one frame in N (per CPU).
        #[arg(long, value_name = "N", default_value_t = 1)]
        sample: u32,
        /// At most this many frames per second are written.
        #[arg(long, value_name = "M", default_value_t = 1000)]
        max_pps: u32,
        /// Bytes of each frame to keep (at most 1528).
        #[arg(long, value_name = "B", default_value_t = 1528)]
        snaplen: u32,
        /// The pcapng file to write.
        #[arg(short = 'w', value_name = "FILE")]
        write: PathBuf,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// Stop after this many frames.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Run every frame of a capture (pcap or pcapng; Ethernet, or Linux
    /// cooked from `tcpdump -i any`) through the
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
        #[arg(long, default_value = serve::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Interface whose rules follow the --rules file given with it
        /// (repeatable: --iface IF --rules FILE ...).
        #[arg(long, requires = "rules")]
        iface: Vec<String>,
        /// Rule file watched for the --iface given with it.
        #[arg(long, requires = "iface")]
        rules: Vec<PathBuf>,
        /// Same as --iface IF --rules FILE, in one argument (repeatable).
        #[arg(long, value_name = "IF=FILE", value_parser = parse_watch)]
        watch: Vec<Watch>,
    },
    /// What `serve` announces to the BGP peers for each interface right now
    /// (FlowSpec rules, blackhole routes), why, and its speaker's health,
    /// read from the state file serve rewrites at every step.
    Upstream {
        #[arg(long)]
        iface: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Validate rule files without loading them (no root needed): every
    /// error, and warnings about what is valid but rarely meant. Exit status
    /// 1 if any is invalid: usable in a pre-commit hook or CI.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Exit status 1 on warnings too.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Enforce,
    Monitor,
}
