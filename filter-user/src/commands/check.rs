//! `check`: validates rule files without loading them.

use std::path::PathBuf;

use crate::rules;

pub fn check(paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut bad = 0;
    for p in paths {
        match rules::load_file(p) {
            Ok(set) => {
                println!("{}: ok, {} rules", p.display(), set.rules.len());
                if let Some(w) = rules::guard::ban_warning(&set) {
                    println!("{}: {w}", p.display());
                }
            }
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} rule files invalid", paths.len());
    }
    Ok(())
}
