//! `cargo xtask dist` runs this: man pages (filterctl.1 and one per
//! command, filterctl-load.1, ...) and bash, zsh and fish completions,
//! generated from the clap definitions, written to the folder given.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use filterctl::commands::args::Cli;

fn man_page(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let mut out = Vec::new();
    // clap names commands with &'static str: this one-shot tool leaks the
    // few names it makes.
    let name_static: &'static str = Box::leak(name.to_string().into_boxed_str());
    clap_mangen::Man::new(cmd.clone().name(name_static))
        .render(&mut out)
        .context("render a man page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: dist-docs OUT_DIR")?,
    );
    let (man, completions) = (out.join("man"), out.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = Cli::command();
    cmd.build();
    man_page(&cmd, "filterctl", &man)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        man_page(sub, &format!("filterctl-{}", sub.get_name()), &man)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "filterctl", &completions)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    Ok(())
}
