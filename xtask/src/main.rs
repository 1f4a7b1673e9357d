//! The project's task runner (`cargo xtask setup|build|test|demo|bench|fuzz|dist`), so that a
//! fresh Debian 12 machine with rustup needs nothing else typed.

use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod dist;

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
    /// target/dist, list the package's contents and check it with lintian.
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
    /// Set up, then fuzz the rule-file parser and the capture reader with
    /// seeded mutations (not coverage-guided) for a bounded time.
    Fuzz {
        /// Mutated rule files at most (default: as many as the time allows).
        #[arg(long)]
        rules: Option<u64>,
        /// Mutated captures at most (default: as many as the time allows).
        #[arg(long)]
        captures: Option<u64>,
        /// Time for each of the two targets, which run side by side.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seed of the mutations (default: from the clock, printed).
        #[arg(long)]
        seed: Option<u64>,
    },
}

const DEBIAN_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "nftables",
    "util-linux",
    "ethtool",
    // The upstream test: GoBGP as the speaker beside the filter, BIRD 2 as
    // the router peering with it.
    "gobgpd",
    "bird2",
    // The metrics test runs a real Prometheus; promtool checks the alerts.
    "prometheus",
    // systemd-analyze verifies the unit; setpriv runs filterctl with only
    // its capabilities.
    "systemd",
    // The capture test reads filterctl's pcapng files with tshark.
    "tshark",
    // `cargo xtask dist` checks the Debian package with lintian.
    "lintian",
    // Real peers for the reply guard's tests: a resolver, a DNS client, an
    // NTP server and client, an SNMP agent and poller.
    "dnsmasq-base",
    "bind9-dnsutils",
    "chrony",
    "snmp",
    "snmpd",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Prefix of the network namespaces tests and the demo create.
const NETNS_PREFIX: &str = "flt-";
/// Prefixes of the pins under /sys/fs/bpf that tests and the demo create.
const PIN_PREFIXES: &[&str] = &["filterctl-test", "filterctl-demo"];

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup(),
        Task::Build { release } => build(release),
        Task::Test { args } => test(&args),
        Task::Demo => demo(),
        Task::Bench {
            quick,
            json,
            against,
        } => bench(quick, json, against),
        Task::Fuzz {
            rules,
            captures,
            seconds,
            seed,
        } => fuzz(rules, captures, seconds, seed),
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

/// The workspace root: every command runs there, wherever xtask was started.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Where cargo builds: CARGO_TARGET_DIR (relative to the workspace root) or
/// `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), |d| root().join(d))
}

/// A command to run in the workspace root.
fn cmd<S: AsRef<OsStr>>(program: &str, args: impl IntoIterator<Item = S>) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(root());
    c
}

/// The command as a shell line, with the variables it sets in front.
fn shell_line(cmd: &Command) -> String {
    let outer_path = std::env::var("PATH").unwrap_or_default();
    let mut words = Vec::new();
    for (key, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        let mut value = value.to_string_lossy().into_owned();
        // A prepended PATH would otherwise print the whole inherited PATH.
        if key == "PATH"
            && !outer_path.is_empty()
            && let Some(added) = value.strip_suffix(&outer_path)
        {
            value = format!("{added}$PATH");
        }
        words.push(format!("{}={value}", key.to_string_lossy()));
    }
    words.push(cmd.get_program().to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Echoes a command, runs it, and fails unless it succeeds.
fn run(mut cmd: Command) -> anyhow::Result<()> {
    let line = shell_line(&cmd);
    println!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Stdout of a quiet check; `None` when it cannot start or fails, which is
/// the answer the caller is after, not an error.
fn probe(program: &str, args: &[&str]) -> Option<String> {
    let out = cmd(program, args).stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn setup() -> anyhow::Result<()> {
    debian_packages().context("setup: Debian packages")?;
    rust_components().context("setup: Rust toolchains")?;
    bpf_linker().context("setup: bpf-linker")?;
    Ok(())
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            probe("dpkg-query", &["-W", "-f=${Status}", pkg])
                .is_none_or(|status| !status.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        println!(
            "setup: Debian packages installed: {}",
            DEBIAN_PACKAGES.join(", ")
        );
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(", "));
    // A fresh machine's package lists may be empty or stale.
    run(cmd("apt-get", ["update"]))?;
    let mut install = cmd("apt-get", ["install", "-y"]);
    // CI has no stdin: no package may stop to ask a question.
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(&missing);
    run(install)
}

fn rust_components() -> anyhow::Result<()> {
    let toolchains = probe("rustup", &["toolchain", "list"]).context("`rustup` does not run")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "no nightly toolchain: the eBPF crate needs one (`-Z build-std`), and it cannot be \
             downloaded here; install it with `rustup toolchain install nightly`"
        );
    }
    println!("setup: nightly toolchain installed");

    let installed = probe(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: nightly rust-src installed");
    } else {
        // build-std compiles core for bpfel-unknown-none from these sources.
        println!("setup: adding rust-src to the nightly toolchain");
        run(cmd(
            "rustup",
            ["component", "add", "rust-src", "--toolchain", "nightly"],
        ))?;
    }

    let has_clippy = probe("cargo", &["clippy", "--version"]).is_some();
    let has_rustfmt = probe("cargo", &["fmt", "--version"]).is_some();
    if has_clippy && has_rustfmt {
        println!("setup: stable clippy and rustfmt installed");
    } else {
        println!("setup: adding clippy and rustfmt to the stable toolchain");
        // Best effort: only `test` needs them, and it names the step that fails.
        if let Err(e) = run(cmd(
            "rustup",
            [
                "component",
                "add",
                "clippy",
                "rustfmt",
                "--toolchain",
                "stable",
            ],
        )) {
            eprintln!("setup: warning: {e:#}");
        }
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Some(version) = probe("bpf-linker", &["--version"]) {
        println!("setup: {} installed", version.trim());
        return Ok(());
    }
    println!("setup: building bpf-linker against LLVM 22 (a few minutes)");
    let mut install = cmd(
        "cargo",
        [
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            "llvm-22",
        ],
    );
    // Link against Debian's llvm-22-dev rather than a downloaded LLVM.
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    install.env("LLVM_PREFIX", LLVM_PREFIX).env("PATH", path);
    run(install)
}

fn build(release: bool) -> anyhow::Result<()> {
    setup()?;
    let mut build = cmd("cargo", ["build", "-p", "filter-user"]);
    if release {
        build.arg("--release");
    }
    run(build)
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

fn test(args: &[String]) -> anyhow::Result<()> {
    setup()?;
    // Clippy per package: a workspace-wide run unifies features and drags
    // std into the eBPF crate.
    let checks = [
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
    ];
    for (step, check) in checks {
        run(check).with_context(|| format!("test step `{step}` failed"))?;
    }
    check_failpoints_gate().context("test step `failpoints gate` failed")?;

    let mut tests = cmd(
        "cargo",
        [
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
        tests.arg("--").args(args);
    }
    let (passed, failed) = run_counting_tests(tests).context("test step `cargo test` failed")?;
    check_leftovers().context("test step `leftovers` failed")?;
    // One closing line for whoever reads only the end of the log.
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

/// Runs `cargo test`, echoing its output, and adds up its result lines; a
/// run that tests nothing fails, since tests must never silently vanish.
fn run_counting_tests(mut cmd: Command) -> anyhow::Result<(u64, u64)> {
    let line = shell_line(&cmd);
    println!("$ {line}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let (mut passed, mut failed) = (0, 0);
    let stdout = child.stdout.take().expect("stdout is piped");
    for out in BufReader::new(stdout).lines() {
        let out = out.context("reading the test output")?;
        println!("{out}");
        if let Some((p, f)) = result_counts(&out) {
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

/// Fails when a namespace or a pin outlived the tests: every test must clean
/// up on every path, or the next run (or the machine) inherits the mess.
fn check_leftovers() -> anyhow::Result<()> {
    let mut left = Vec::new();
    let netns = probe("ip", &["netns", "list"]).context("`ip netns list` failed")?;
    // Lines look like `flt-victim-1234 (id: 3)`.
    left.extend(
        netns
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| name.starts_with(NETNS_PREFIX))
            .map(|name| format!("namespace {name}")),
    );
    let bpffs = Path::new("/sys/fs/bpf");
    let entries =
        std::fs::read_dir(bpffs).with_context(|| format!("cannot list {}", bpffs.display()))?;
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if PIN_PREFIXES.iter().any(|p| name.starts_with(p)) {
            left.push(format!("pin {}", bpffs.join(name).display()));
        }
    }
    if !left.is_empty() {
        bail!("left behind: {}", left.join(", "));
    }
    println!("no namespace or pin left behind");
    Ok(())
}

/// Fault injection (FILTERCTL_FAILPOINT) must exist in test builds only
/// (a step of `xtask test`, and a test of this crate for a bare `cargo test`):
/// the tests turn the `failpoints` feature on through filter-user's
/// dev-dependency on itself, which a product build never resolves. Asked of
/// cargo's feature resolution (no build): off without dev-dependencies, on
/// with them, so that the check can tell the two apart.
fn check_failpoints_gate() -> anyhow::Result<()> {
    let features = |edges: &str| {
        let args = ["tree", "-p", "filter-user", "-e", edges, "--depth", "0"];
        let mut c = cmd("cargo", args);
        c.args(["-f", "{p} [{f}]"]);
        let out = c.output().context("cannot run cargo tree")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let first = text.lines().next().unwrap_or_default().to_string();
        anyhow::ensure!(out.status.success(), "cargo tree failed: {first}");
        Ok::<_, anyhow::Error>(first)
    };
    let product = features("no-dev")?;
    let tests = features("normal,dev")?;
    if product.contains("failpoints") {
        bail!("a product build of filter-user has fault injection: {product}");
    }
    if !tests.contains("failpoints") {
        bail!("the test build of filter-user lacks fault injection: {tests}");
    }
    println!("failpoints: off in the product ({product}), on in tests ({tests})");
    Ok(())
}

/// Runs tests/fuzz.rs with its budget in the environment, optimised.
fn fuzz(
    rules: Option<u64>,
    captures: Option<u64>,
    seconds: u64,
    seed: Option<u64>,
) -> anyhow::Result<()> {
    setup()?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!("fuzz seed {seed} (--seed {seed} repeats this run)");
    let args = ["test", "-p", "filter-user", "--release", "--test", "fuzz"];
    let mut c = cmd("cargo", args);
    c.args(["--", "--nocapture"])
        .env(
            "FILTERCTL_FUZZ_RULES",
            rules.unwrap_or(u64::MAX).to_string(),
        )
        .env(
            "FILTERCTL_FUZZ_CAPTURES",
            captures.unwrap_or(u64::MAX).to_string(),
        )
        .env("FILTERCTL_FUZZ_SECONDS", seconds.to_string())
        .env("FILTERCTL_FUZZ_SEED", seed.to_string());
    run(c)
}

fn demo() -> anyhow::Result<()> {
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

fn bench(quick: bool, json: Option<PathBuf>, against: Option<PathBuf>) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::{check_failpoints_gate, ebpf_clippy, result_counts, shell_line};

    /// The same check `xtask test` runs: cheap (cargo tree, no build).
    #[test]
    fn fault_injection_is_in_test_builds_only() {
        check_failpoints_gate().unwrap_or_else(|e| panic!("{e:#}"));
    }

    #[test]
    fn echoes_variables_before_the_command() {
        assert!(shell_line(&ebpf_clippy()).starts_with(
            "CARGO_TARGET_DIR=target/ebpf-clippy cargo +nightly clippy -p filter-ebpf"
        ));
    }

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
