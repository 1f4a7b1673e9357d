//! `check`: validates rule files without loading them, and warns about
//! what is valid but rarely meant.

use std::path::PathBuf;

use crate::rules::{self, lint};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Exit status 1 on warnings too.
    #[arg(long)]
    strict: bool,
}

pub(crate) fn run(a: CheckArgs) -> anyhow::Result<u8> {
    let (paths, strict) = (&a.paths, a.strict);
    let (mut bad, mut warned) = (0, 0);
    for p in paths {
        match lint::check_file(p) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("{w}");
                }
                let note = match c.warnings.len() {
                    0 => String::new(),
                    1 => ", 1 warning".to_string(),
                    n => format!(", {n} warnings"),
                };
                println!("{}: ok, {} rules{note}", p.display(), c.set.rules.len());
                warned += usize::from(!c.warnings.is_empty());
                if let Some(w) = rules::guard::ban_warning(&c.set) {
                    // A note, not a warning: the host's own peers are
                    // protected anyway, and `--strict` is for mistakes.
                    println!(
                        "{}: note: {}",
                        p.display(),
                        w.trim_start_matches("warning: ")
                    );
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
    if strict && warned > 0 {
        anyhow::bail!(
            "{warned} of {} rule files have warnings (--strict)",
            paths.len()
        );
    }
    Ok(0)
}
