//! `status`: which interfaces carry the filter and which rules they run.

use anyhow::Context as _;

use crate::{
    filter::status::{self, Status},
    state::PinRoot,
};

pub fn status(root: &PinRoot, json: bool) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for iface in root.interfaces()? {
        all.push(
            status::status(root, &iface)
                .with_context(|| format!("cannot read the state of {iface}"))?,
        );
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
    Ok(())
}

fn render(all: &[Status]) -> String {
    use std::fmt::Write as _;
    if all.is_empty() {
        return "no filter loaded\n".to_string();
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
