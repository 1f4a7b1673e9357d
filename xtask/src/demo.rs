//! `cargo xtask demo`: two test hosts, a reflection flood, and what the
//! filter did (filter-user's `demo` example).

use anyhow::{Context as _, bail};

use crate::{
    cmd::{cmd, run, shell_line},
    setup::setup,
};

pub fn demo() -> anyhow::Result<()> {
    setup()?;
    // The demo runs target/<profile>/filterctl, which building an example
    // alone does not produce.
    run(cmd("cargo", ["build", "-p", "filter-user", "--bins"]))?;
    let mut demo = cmd("cargo", ["run", "-p", "filter-user", "--example", "demo"]);
    let line = shell_line(&demo);
    println!("$ {line}");
    let mut child = demo
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    // Ctrl-C reaches the whole process group. The demo handles it by removing
    // its test hosts; xtask must outlive that, not die and hand the terminal
    // back mid-cleanup. Ignored after the spawn so the child starts with the
    // default disposition.
    // SAFETY: setting SIGINT's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = child.wait().context("waiting for the demo")?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}
