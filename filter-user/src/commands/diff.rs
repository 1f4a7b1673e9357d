//! `diff`: what reloading an interface with a rule file would change.

use std::path::Path;

use crate::{filter::diff, rules, state::PinRoot};

pub fn diff(root: &PinRoot, iface: &str, rules: &Path, json: bool) -> anyhow::Result<()> {
    let set = rules::load_file(rules)?;
    let plan = diff::plan(root, iface, &set)?;
    if json {
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
    Ok(())
}
