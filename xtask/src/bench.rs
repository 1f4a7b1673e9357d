//! `cargo xtask bench`: filter-user's `bench` example, built optimised, then
//! the same leftovers check as `cargo xtask test`.

use std::{path::PathBuf, process::Command};

use crate::{
    cmd::{cmd, run, target_dir},
    setup::setup,
    test::check_leftovers,
};

pub fn bench(quick: bool, json: Option<PathBuf>, against: Option<PathBuf>) -> anyhow::Result<()> {
    setup()?;
    run(cmd(
        "cargo",
        [
            "build",
            "--release",
            "-p",
            "filter-user",
            "--example",
            "bench",
        ],
    ))?;
    let mut bench = Command::new(target_dir().join("release/examples/bench"));
    if quick {
        bench.arg("--quick");
    }
    if let Some(j) = json {
        // Relative to where the user stands, not to the workspace root.
        let j = std::env::current_dir()?.join(j);
        bench.arg("--json").arg(j);
    }
    if let Some(o) = against {
        bench.arg("--against").arg(std::env::current_dir()?.join(o));
    }
    run(bench)?;
    check_leftovers()
}
