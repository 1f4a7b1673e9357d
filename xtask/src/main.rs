//! The project's task runner (`cargo xtask setup|build|test|demo|bench|fuzz|dist`), so that a
//! fresh Debian 12 machine with rustup needs nothing else typed.
//!
//! One module per task (`setup`, `test`, `demo`, `bench`, `fuzz`, `dist`),
//! each importing the shared command helpers of `cmd` and, to run first,
//! `setup`; `bench` also imports `test`'s leftovers check. No task module
//! imports main or one that imports it back.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    bench::bench,
    cmd::{cmd, run},
    demo::demo,
    fuzz::{FuzzArgs, fuzz},
    setup::setup,
    test::test,
};

mod bench;
mod cmd;
mod demo;
mod dist;
mod fuzz;
// Only a test: `cargo test -p xtask` fails on files that import each other.
#[cfg(test)]
mod imports;
// The token scanner of the two checks.
#[cfg(test)]
mod lexer;
// Only a test: `cargo test -p xtask` fails on a pin made outside filter-user's state/.
#[cfg(test)]
mod pins_check;
mod setup;
mod test;

/// Build, test and demo tasks for the XDP reflection filter.
#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks, each only when missing (a second run is a no-op).
    Setup,
    /// Set up, then build filterctl with the XDP object embedded.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Set up, then run fmt, clippy per package and every test (the privileged ones too).
    Test {
        /// Extra arguments for `cargo test`, after `--` (a name filter, say).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, then run the demo: two test hosts, a reflection flood, and what the filter did.
    Demo,
    /// Set up, then build a release tarball and a Debian package in
    /// target/dist, list the package's contents, check it with lintian and
    /// (as root) install, remove and purge it in a throwaway root.
    Dist,
    /// Set up, then measure: per-frame kernel cost against floor programs,
    /// a spoofed flood, rules at scale, veth rates, the control plane.
    Bench {
        /// Fewer repeats and frames: under two minutes.
        #[arg(long)]
        quick: bool,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Only measure this build's filter against another build's eBPF
        /// object (frame by frame, interleaved in one process), e.g. one
        /// kept from `target/release/build/filter-user-*/out/filter`.
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Set up, then run the cargo-fuzz targets (rule files, list files,
    /// captures, serve's requests: coverage-guided, libFuzzer) one after the
    /// other; fails on a crash or a hang. With --mutation, the seeded
    /// mutation fuzzer of the tests instead.
    Fuzz(FuzzArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup::setup_with_fuzzing(),
        Task::Build { release } => build(release),
        Task::Test { args } => test(&args),
        Task::Demo => demo(),
        Task::Bench {
            quick,
            json,
            against,
        } => bench(quick, json, against),
        Task::Fuzz(args) => fuzz(args),
        Task::Dist => setup().and_then(|()| dist::dist()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask build`, small enough to stay beside the dispatch.
fn build(release: bool) -> anyhow::Result<()> {
    setup()?;
    let mut build = cmd("cargo", ["build", "-p", "filter-user"]);
    if release {
        build.arg("--release");
    }
    run(build)
}
