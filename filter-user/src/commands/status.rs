//! `status`: which interfaces carry the filter and which rules they run;
//! with --memory, what their maps cost in kernel memory.

use anyhow::Context as _;
use serde::Serialize;

use super::common::{DEFAULT_RULES_NAME, default_rule_set, elsewhere, upstream_summary};
use crate::{
    filter::{
        lifecycle::program,
        observe::{
            counters,
            memory::{self, Footprint},
            status::{self, Status},
        },
    },
    state::PinRoot,
};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    json: bool,
    /// Kernel memory of each interface's maps instead (as the kernel counts
    /// it), at this host's CPUs and at 2, 64 and 192; of the built-in rules
    /// as `load` would size them when no filter is loaded.
    #[arg(long)]
    memory: bool,
}

pub(crate) fn run(root: &PinRoot, a: StatusArgs) -> anyhow::Result<u8> {
    if a.memory {
        let all = memory_of(root)?;
        if a.json {
            let doc = serde_json::json!({
                "schema_version": crate::JSON_SCHEMA_VERSION,
                "memory": all,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            print!("{}", render_memory(&all));
        }
        return Ok(0);
    }
    let mut all = Vec::new();
    for iface in root.interfaces()? {
        all.push(
            status::status(root, &iface)
                .with_context(|| format!("cannot read the state of {iface}"))?,
        );
    }
    if a.json {
        let doc = serde_json::json!({
            "schema_version": crate::JSON_SCHEMA_VERSION,
            "interfaces": all,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(root, &all));
    }
    Ok(0)
}

fn render(root: &PinRoot, all: &[Status]) -> String {
    use std::fmt::Write as _;
    if all.is_empty() {
        return format!("no filter loaded{}\n", elsewhere(root));
    }
    let mut o = String::new();
    for s in all {
        let git = match (&s.git_commit, s.git_modified) {
            (Some(c), false) => format!(", git {}", &c[..12]),
            (Some(c), true) => format!(", git {} + local changes", &c[..12]),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            o,
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
        if s.request_recorder == Some("clsact") {
            let _ = writeln!(o, "  request recorder on clsact (this kernel has no TCX)");
        }
        if let Some(line) = requests_line(s) {
            let _ = writeln!(o, "  {line}");
        }
        if !s.interface_present {
            let _ = writeln!(
                o,
                "  interface {} is gone: the filter is attached to nothing (`filterctl unload --iface {}` removes its pins)",
                s.interface, s.interface
            );
        }
        if let Some(line) = upstream_summary(root, &s.interface) {
            let _ = writeln!(o, "  {line}");
        }
        for b in &s.adaptive_blocks {
            let _ = writeln!(
                o,
                "  adaptive block: UDP source port {} since {} (unix), started at {} packets/s, {}% of UDP (rule {}, not in the file)",
                b.port,
                b.since_unix,
                b.trigger_pps,
                b.trigger_share_percent,
                b.rule_name()
            );
        }
        for i in &s.flowspec_imports {
            let _ = writeln!(
                o,
                "  imported FlowSpec route from {}: {} (rule {}, not in the file)",
                i.peer, i.route, i.name
            );
        }
        if !s.stale_generations.is_empty() {
            let _ = writeln!(
                o,
                "  stale generations {:?} from an interrupted reload (removed by the next reload)",
                s.stale_generations
            );
        }
    }
    o
}

/// Which interfaces share the host's requests with this one, and what is
/// amiss with that; none for an interface alone under its root.
fn requests_line(s: &Status) -> Option<String> {
    let mut parts = Vec::new();
    if !s.requests_shared_with.is_empty() {
        let mut line = format!(
            "requests shared with {} (one table of the host's requests)",
            s.requests_shared_with.join(", ")
        );
        if s.requests_shared_flag != Some(true) {
            line += &format!(
                ", but generation {} drops the answers to theirs that return here (`filterctl reload --iface {}` mends it)",
                s.generation, s.interface
            );
        }
        parts.push(line);
    }
    if !s.requests_apart_from.is_empty() {
        parts.push(format!(
            "requests apart from {} (another build's table): an answer that returns by another interface than its request left by is dropped (unload and load them with one build to share it)",
            s.requests_apart_from.join(", ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// One interface's maps, or those `load` would make.
#[derive(Serialize)]
struct MemoryOf {
    /// None when no filter is loaded.
    interface: Option<String>,
    sized_by: String,
    #[serde(flatten)]
    footprint: Footprint,
}

fn memory_of(root: &PinRoot) -> anyhow::Result<Vec<MemoryOf>> {
    let defs = memory::definitions(crate::EBPF_OBJECT)?;
    let host = counters::possible_cpus()?;
    let set = default_rule_set()?;
    let sizes = program::load_sizes(&set, &set.compile());
    let mut all = Vec::new();
    for iface in root.interfaces()? {
        let running = memory::running_sizes(root, &iface, &defs, &sizes)
            .with_context(|| format!("cannot read the maps of {iface}"))?;
        all.push(MemoryOf {
            interface: Some(iface),
            sized_by: "the running maps".into(),
            footprint: memory::footprint(&defs, &running, host),
        });
    }
    if all.is_empty() {
        all.push(MemoryOf {
            interface: None,
            sized_by: DEFAULT_RULES_NAME.into(),
            footprint: memory::footprint(&defs, &sizes, host),
        });
    }
    Ok(all)
}

fn render_memory(all: &[MemoryOf]) -> String {
    let mut o = String::new();
    for m in all {
        match &m.interface {
            Some(iface) => o += &format!("{iface}: kernel memory of its maps, sized as they run\n"),
            None => {
                o += &format!(
                    "no filter loaded: kernel memory of the maps `load` makes for {}\n",
                    m.sized_by
                )
            }
        }
        o += &memory::render(&m.footprint, "  ");
    }
    o
}
