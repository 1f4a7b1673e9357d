//! The command line: `Cli` and one `Command` variant per command, its
//! help in the variant's doc comment and its options in the args struct
//! beside the command's code.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub(crate) use super::{
    apply::ApplyArgs,
    bans::{BanArgs, TopArgs, UnbanArgs},
    capture::CaptureArgs,
    check::CheckArgs,
    diff::DiffArgs,
    doctor::DoctorArgs,
    load::{LoadArgs, ModeArgs, ReloadArgs, UnloadArgs},
    replay::ReplayArgs,
    serve::ServeArgs,
    stats::StatsArgs,
    status::StatusArgs,
    upstream::UpstreamArgs,
};
use crate::state::{DEFAULT_ROOT, PinRoot};

/// Host-level XDP filter against UDP reflection floods.
#[derive(Parser, Debug)]
#[command(name = "filterctl", version)]
pub struct Cli {
    /// Folder on bpffs that holds one subfolder of pins per interface
    /// [default: /sys/fs/bpf/filterctl; with --netns NAME, its subfolder
    /// netns:NAME].
    #[arg(long, global = true, env = "FILTERCTL_PIN_ROOT")]
    pub(crate) pin_root: Option<PathBuf>,
    /// Act on the interfaces of the named network namespace (as `ip -n
    /// NAME`; see `ip netns list`): filterctl enters only that network
    /// namespace and keeps the host's mounts, bpffs included, which `ip
    /// netns exec` would hide.
    #[arg(long, global = true, value_name = "NAME", env = "FILTERCTL_NETNS")]
    pub netns: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Command {
    /// Whether it runs as a daemon (serve, and the keeper it starts): logs
    /// at info, and a closed pipe does not end it.
    pub fn is_daemon(&self) -> bool {
        match self {
            Command::Serve(_) => true,
            Command::Upstream(a) => a.is_keeper(),
            _ => false,
        }
    }
}

impl Cli {
    /// The pin root this command works under: the one given, or the
    /// default (a namespace's own folder in it with --netns).
    pub(crate) fn pin_root(&self) -> PinRoot {
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
    Load(LoadArgs),
    /// Make an interface run a rule file, whatever runs now: load it when
    /// nothing does, reload atomically when another rule set does, nothing
    /// when the file's rule set already runs. For boot scripts and GitOps.
    ///
    /// Exit status: 0 nothing to do, 10 loaded, 11 reloaded (0 for both
    /// with --exit-zero), 1 error (the previous rules, if any, still
    /// enforcing).
    Apply(ApplyArgs),
    /// Replace the rule set of a loaded filter in one atomic step; rate
    /// limit, ban and counter state carry over. If the new rules fail to
    /// load, the old ones keep enforcing.
    Reload(ReloadArgs),
    /// Show what reloading an interface with a rule file would change:
    /// settings, rules added, removed and changed, prefixes.
    Diff(DiffArgs),
    /// Switch between enforcing and only counting (monitor) at once,
    /// without reloading; the next load or reload uses the file's mode.
    Mode(ModeArgs),
    /// Detach the filter from an interface (or all) and remove its pins.
    ///
    /// A marker stays beside the pins (`unloaded:IF` under the pin root)
    /// that says it was on purpose: a `serve` watching the interface leaves
    /// it off, where it would load a filter that went missing (bpffs
    /// emptied, pins removed by hand) again. `load` and `apply` remove it;
    /// a reboot clears it with the pins.
    Unload(UnloadArgs),
    /// Show which interfaces carry the filter and which rules they run.
    Status(StatusArgs),
    /// Per-reason and per-rule packet and byte counters.
    Stats(StatsArgs),
    /// Ban a source address or prefix at once (on every loaded interface
    /// unless --iface); bans expire by themselves and survive reloads.
    Ban(BanArgs),
    /// Probe this machine: which features run (bpffs, capabilities, the
    /// XDP filter, the reply guard's TCX or clsact hook, the capture ring,
    /// live-frame test runs, native XDP per interface), which do not, and
    /// why. Changes nothing. Exit status 1 when the filter cannot load.
    Doctor(DoctorArgs),
    /// Lift a ban set with `ban` (or by the limiter).
    Unban(UnbanArgs),
    /// Sources over their limit or banned right now, most dropped first.
    Top(TopArgs),
    /// Write a sampled, rate-bounded copy of the frames the filter drops to
    /// a pcapng file, each frame's reason and rule in its comment (tcpdump
    /// does not see XDP drops). Stops after --duration, --count, or on
    /// Ctrl-C; a capture whose filterctl died stops by itself within
    /// seconds. Costs nothing while no capture runs.
    Capture(CaptureArgs),
    /// Run every frame of a capture (pcap or pcapng; Ethernet, or Linux
    /// cooked from `tcpdump -i any`) through the filter with a rule file,
    /// in the kernel but attached nowhere, and show what each frame would
    /// get: received frames through XDP, the host's own through the
    /// request recorder, on the capture's clock. Test a rule change
    /// against a recorded attack (--against), or gate a rules repository
    /// on stored captures (--expect). Needs root.
    Replay(ReplayArgs),
    /// Run as a daemon: metrics on /metrics, stats on /stats, rule files
    /// followed.
    ///
    /// Prometheus metrics (OpenMetrics text) on /metrics and the `stats
    /// --json` document on /stats, read from the pins at each request. Each
    /// watched rule file is reloaded when its content changes (checked
    /// every second) and on SIGHUP, behind the lockout guard; a broken one
    /// is logged and not loaded. SIGTERM or SIGINT stops the daemon and
    /// leaves the filter attached. Logs at info unless RUST_LOG says else.
    Serve(ServeArgs),
    /// What `serve` announces to the BGP peers for each interface right now
    /// (FlowSpec rules, blackhole routes), why, and its speaker's health,
    /// read from the state file serve rewrites at every step.
    Upstream(UpstreamArgs),
    /// Validate rule files without loading them (no root needed): every
    /// error, and warnings about what is valid but rarely meant. Exit status
    /// 1 if any is invalid: usable in a pre-commit hook or CI.
    Check(CheckArgs),
}
