//! The project's build and run tool: `cargo xtask setup|build|test|demo`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what a fresh machine lacks (idempotent).
    Setup,
    /// Build filterctl with the XDP object embedded.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// fmt, clippy per package, and every test (the privileged ones too).
    Test {
        /// Extra arguments for `cargo test` (a name filter, say).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Two test hosts, a reflection flood, and what the filter did with it.
    Demo,
}

const DEBIAN_PACKAGES: &[&str] = &["llvm-22-dev", "iproute2", "nftables", "util-linux"];
/// Prefixes of what tests may create; none may be left after a run.
const NS_PREFIX: &str = "flt-";
const PIN_PREFIXES: &[&str] = &["filterctl-test-", "filterctl-demo"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command in the workspace root, echoing it first.
fn run(mut cmd: Command) -> anyhow::Result<()> {
    cmd.current_dir(root());
    let line = show(&cmd);
    println!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Output of a command that may legitimately fail (a probe).
fn probe(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn setup() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            probe("dpkg-query", &["-W", "-f=${Status}", p])
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        println!(
            "setup: Debian packages present ({})",
            DEBIAN_PACKAGES.join(", ")
        );
    } else {
        println!("setup: installing Debian packages {}", missing.join(", "));
        run(cmd("apt-get", &["update"]))?;
        let mut install = cmd("apt-get", &["install", "-y", "--no-install-recommends"]);
        install
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(install)?;
    }

    let toolchains = probe("rustup", &["toolchain", "list"]).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "no nightly Rust toolchain: the eBPF crate needs one (with rust-src) and it cannot be \
             downloaded on this machine"
        );
    }
    let components = probe(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if components.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: nightly rust-src present");
    } else {
        println!("setup: adding rust-src to the nightly toolchain");
        run(cmd(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        ))?;
    }
    for (tool, component) in [("clippy", "clippy"), ("fmt", "rustfmt")] {
        if probe("cargo", &[tool, "--version"]).is_none() {
            println!("setup: adding {component} to the stable toolchain");
            run(cmd("rustup", &["component", "add", component]))?;
        }
    }

    if let Some(v) = probe("bpf-linker", &["--version"]) {
        println!("setup: {} present", v.trim());
    } else {
        println!("setup: building bpf-linker against LLVM 22 (about a minute)");
        let path = format!(
            "/usr/lib/llvm-22/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let mut install = cmd(
            "cargo",
            &[
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ],
        );
        install
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env("PATH", path);
        run(install)?;
    }
    Ok(())
}

fn clippy(package: &str, extra: &[&str]) -> Command {
    let mut c = cmd("cargo", &["clippy", "-p", package, "--all-targets"]);
    c.args(extra).args(["--", "-D", "warnings"]);
    c
}

fn test(args: &[String]) -> anyhow::Result<()> {
    setup()?;
    run(cmd("cargo", &["fmt", "--all", "--", "--check"])).context("formatting: run `cargo fmt`")?;
    // Per package: a workspace-wide clippy unifies features and drags std
    // into the eBPF crate.
    run(clippy("filter-common", &[]))?;
    run(clippy("filter-common", &["--features", "user"]))?;
    run(clippy("filter-user", &[]))?;
    run(clippy("xtask", &[]))?;
    let mut ebpf = cmd(
        "cargo",
        &[
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
    ebpf.env("CARGO_TARGET_DIR", root().join("target/ebpf-clippy"));
    run(ebpf)?;

    let mut t = cmd(
        "cargo",
        &[
            "test",
            "-p",
            "filter-common",
            "-p",
            "filter-user",
            "-p",
            "xtask",
        ],
    );
    if !args.is_empty() {
        t.arg("--").args(args);
    }
    let (passed, failed) = run_counting_tests(t)?;
    check_leftovers()?;
    // One plain closing line for whoever reads the log's end.
    println!("{passed} passed, {failed} failed");
    Ok(())
}

/// Passed and failed counts of a libtest `test result:` line.
fn result_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';')
            .find_map(|part| {
                let n = part.trim().strip_suffix(word)?.trim();
                n.rsplit(' ').next()?.parse::<u64>().ok()
            })
            .unwrap_or(0)
    };
    Some((count("passed"), count("failed")))
}

/// Runs `cargo test`, echoing its output, and adds up its result lines.
fn run_counting_tests(mut cmd: Command) -> anyhow::Result<(u64, u64)> {
    use std::io::{BufRead as _, BufReader};
    cmd.current_dir(root()).stdout(std::process::Stdio::piped());
    let line = show(&cmd);
    println!("$ {line}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let (mut passed, mut failed) = (0, 0);
    for l in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let l = l?;
        println!("{l}");
        if let Some((p, f)) = result_counts(&l) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("{passed} passed, {failed} failed");
        bail!("`{line}` failed ({status})");
    }
    if passed == 0 {
        bail!("`{line}` ran no test");
    }
    Ok((passed, failed))
}

/// Fails when a test left a namespace or a pin behind: every test must
/// clean up on every path.
fn check_leftovers() -> anyhow::Result<()> {
    let mut left = Vec::new();
    let netns = probe("ip", &["netns", "list"]).unwrap_or_default();
    left.extend(
        netns
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(NS_PREFIX))
            .map(|n| format!("namespace {n}")),
    );
    if let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if PIN_PREFIXES.iter().any(|p| name.starts_with(p)) {
                left.push(format!("pin /sys/fs/bpf/{name}"));
            }
        }
    }
    if !left.is_empty() {
        bail!("tests left behind: {}", left.join(", "));
    }
    println!("no namespace or pin left behind");
    Ok(())
}

fn demo() -> anyhow::Result<()> {
    setup()?;
    run(cmd(
        "cargo",
        &["build", "-p", "filter-user", "--bins", "--examples"],
    ))?;
    let demo = root().join("target/debug/examples/demo");
    println!("$ {}", demo.display());
    let mut child = Command::new(&demo)
        .current_dir(root())
        .spawn()
        .with_context(|| format!("cannot start {}", demo.display()))?;
    // Ctrl-C reaches the whole process group: ignore it here (after the
    // spawn, so the demo does not inherit SIG_IGN) and let the demo, which
    // removes its test hosts on SIGINT, decide when to exit.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = child.wait()?;
    if !status.success() {
        bail!("the demo failed ({status})");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::Setup => setup(),
        Cmd::Build { release } => {
            setup()?;
            let mut c = cmd("cargo", &["build", "-p", "filter-user"]);
            if release {
                c.arg("--release");
            }
            run(c)
        }
        Cmd::Test { args } => test(&args),
        Cmd::Demo => demo(),
    }
}

#[cfg(test)]
mod tests {
    use super::result_counts;

    #[test]
    fn reads_libtest_result_lines() {
        assert_eq!(
            result_counts(
                "test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.36s"
            ),
            Some((6, 0))
        );
        assert_eq!(
            result_counts(
                "test result: FAILED. 8 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out"
            ),
            Some((8, 1))
        );
        assert_eq!(result_counts("running 3 tests"), None);
    }
}
