//! `diff`: what reloading an interface with a rule file would change.

use std::path::Path;

use crate::{filter::diff, rules, state::PinRoot};

pub fn diff(root: &PinRoot, iface: &str, rules: &Path, json: bool) -> anyhow::Result<()> {
    let set = rules::load_file(rules)?;
    let plan = diff::plan(root, iface, &set)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.render());
    }
    Ok(())
}
