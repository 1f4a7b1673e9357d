//! `cargo xtask test`: fmt and clippy per package and the failpoints gate
//! (all of them, every failure listed, the tests only when all pass), then
//! every test binary even past a failing one, a closing list of the failing
//! tests, and the leftovers check whatever the tests did.
//!
//! The steps live beside this file: `gate` (the failpoints gate), `run`
//! (one `cargo test` run read into `results`), `nobody` (the unit tests
//! without privileges) and `leftovers`.

use std::process::Command;

use anyhow::{Context as _, bail};

pub use self::leftovers::check_leftovers;
use self::{gate::check_failpoints_gate, nobody::unprivileged_unit_tests, run::run_tests};
use crate::{
    cmd::{cmd, run},
    setup::setup,
};

mod gate;
mod leftovers;
mod nobody;
mod results;
mod run;

pub fn test(args: &[String]) -> anyhow::Result<()> {
    setup()?;
    run_checks()?;

    let mut tests = cmd(
        "cargo",
        [
            "test",
            "--no-fail-fast",
            "-p",
            "filter-common",
            "-p",
            "filter-user",
            "-p",
            "xtask",
        ],
    );
    if !args.is_empty() {
        tests.arg("--").args(args);
    }
    let mut outcome = run_tests(tests).context("test step `cargo test` failed")?;
    if args.is_empty() {
        // The reply guard's and the reload's tests again, on a kernel
        // without TCX (faked): the recorder then runs as a clsact filter,
        // the path of Linux 6.1 and older.
        let mut clsact = cmd(
            "cargo",
            [
                "test",
                "--no-fail-fast",
                "-p",
                "filter-user",
                "--test",
                "integration",
                "--",
                "reply_guard::",
                "reload::",
            ],
        );
        clsact.env("FILTERCTL_FAKE", "tcx");
        let run = run_tests(clsact).context("test step `cargo test` (no TCX) failed")?;
        outcome.absorb(run, "no TCX");
        let start = std::time::Instant::now();
        let run = unprivileged_unit_tests().context("test step `unit tests as nobody` failed")?;
        println!(
            "unit tests as nobody, without capabilities: {} passed in {:.1} s",
            run.passed,
            start.elapsed().as_secs_f64()
        );
        outcome.absorb(run, "as nobody");
    }
    // After failed tests too: a failing test is the likeliest to have left a
    // namespace or a pin behind.
    let leftovers = check_leftovers();

    // The closing lines, for whoever reads only the end of the log.
    print!("{}", outcome.failure_list());
    let mut failed_steps = Vec::new();
    if !outcome.failures.is_empty() {
        failed_steps.push("`cargo test`");
    }
    if let Err(e) = &leftovers {
        println!("FAILED: test step `leftovers`: {e:#}");
        failed_steps.push("`leftovers`");
    }
    println!("{} passed, {} failed", outcome.passed, outcome.failed);
    if !failed_steps.is_empty() {
        bail!("test steps failed: {}", failed_steps.join(", "));
    }
    Ok(())
}

fn clippy(package: &str, features: &[&str]) -> Command {
    let mut c = cmd("cargo", ["clippy", "-p", package, "--all-targets"]);
    c.args(features).args(["--", "-D", "warnings"]);
    c
}

fn ebpf_clippy() -> Command {
    let mut c = cmd(
        "cargo",
        [
            "+nightly",
            "clippy",
            "-p",
            "filter-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    );
    // Its own target dir: sharing the host's would make the stable and
    // nightly builds invalidate each other's cache.
    c.env("CARGO_TARGET_DIR", "target/ebpf-clippy");
    c
}

/// fmt, then clippy per package: a workspace-wide run unifies features and
/// drags std into the eBPF crate.
fn checks() -> Vec<(&'static str, Command)> {
    vec![
        ("fmt", cmd("cargo", ["fmt", "--all", "--", "--check"])),
        ("clippy filter-common", clippy("filter-common", &[])),
        (
            "clippy filter-common (user)",
            clippy("filter-common", &["--features", "user"]),
        ),
        ("clippy filter-user", clippy("filter-user", &[])),
        ("clippy filter-testkit", clippy("filter-testkit", &[])),
        ("clippy xtask", clippy("xtask", &[])),
        ("clippy filter-ebpf", ebpf_clippy()),
    ]
}

/// Runs every check and the failpoints gate, past the first failure, so that
/// one run lists all that is wrong. The tests run only when all pass: a
/// build that does not compile makes them meaningless.
fn run_checks() -> anyhow::Result<()> {
    let checks = checks();
    let steps = checks.len() + 1;
    let mut failed = Vec::new();
    for (step, check) in checks {
        if let Err(e) = run(check) {
            failed.push((step, e));
        }
    }
    if let Err(e) = check_failpoints_gate() {
        failed.push(("failpoints gate", e));
    }
    if failed.is_empty() {
        return Ok(());
    }
    println!("FAILED: {} of {steps} check steps:", failed.len());
    for (step, e) in &failed {
        println!("  {step}: {e:#}");
    }
    let names: Vec<String> = failed.iter().map(|(step, _)| format!("`{step}`")).collect();
    bail!(
        "test steps failed: {}; the tests did not run",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::ebpf_clippy;
    use crate::cmd::shell_line;

    #[test]
    fn echoes_variables_before_the_command() {
        assert!(shell_line(&ebpf_clippy()).starts_with(
            "CARGO_TARGET_DIR=target/ebpf-clippy cargo +nightly clippy -p filter-ebpf"
        ));
    }
}
