//! `diff`: what reloading an interface with a rule file would change.

use std::path::PathBuf;

use crate::{filter::observe::diff, rules, state::PinRoot};

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    #[arg(long)]
    iface: String,
    #[arg(long)]
    rules: PathBuf,
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(root: &PinRoot, a: DiffArgs) -> anyhow::Result<u8> {
    let (iface, rules) = (&a.iface, &a.rules);
    let set = rules::load_file(rules)?;
    let plan = diff::plan(root, iface, &set)?;
    if a.json {
        let doc = serde_json::json!({
            "schema_version": crate::JSON_SCHEMA_VERSION,
            "interface": iface,
            "rules_file": rules,
            "rules_digest": set.digest_hex(),
            "plan": plan,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", plan.render());
    }
    Ok(0)
}
