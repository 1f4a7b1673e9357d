//! `cargo xtask setup`, which every other task runs first: the Debian
//! packages, the Python tools Debian lacks (from PyPI), the Rust components,
//! bpf-linker and cargo-fuzz, each installed only when missing (a second
//! run is a no-op).

use anyhow::{Context as _, bail};

use crate::cmd::{cmd, probe, run};

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
    // The replay test records live traffic the way README says to.
    "tcpdump",
    // `cargo xtask dist` checks the Debian package with lintian; its test
    // loads the package's zsh and fish completions in those shells.
    "lintian",
    "zsh",
    "fish",
    // Real peers for the reply guard's tests: a resolver, a DNS client, an
    // NTP server and client, an SNMP agent and poller.
    "dnsmasq-base",
    "bind9-dnsutils",
    "chrony",
    "snmp",
    "snmpd",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Tools from PyPI that Debian does not package: (package, version, the
/// command it installs, which prints the version with `--version`).
const PYTHON_TOOLS: &[(&str, &str, &str)] = &[
    // The deploy test validates the Kubernetes manifests against the API's
    // schemas, which it bundles (kubeconform is not in Debian).
    ("kubernetes-validate", "1.37.0", "kubernetes-validate"),
];

pub fn setup() -> anyhow::Result<()> {
    debian_packages().context("setup: Debian packages")?;
    python_tools().context("setup: Python tools")?;
    rust_components().context("setup: Rust toolchains")?;
    bpf_linker().context("setup: bpf-linker")?;
    Ok(())
}

/// `cargo xtask setup` and `cargo xtask fuzz`: [`setup`], and cargo-fuzz,
/// which only the fuzz task runs (the tests would spend two minutes of a
/// fresh machine building it).
pub fn setup_with_fuzzing() -> anyhow::Result<()> {
    setup()?;
    cargo_fuzz();
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

fn python_tools() -> anyhow::Result<()> {
    for (package, version, command) in PYTHON_TOOLS {
        let installed = probe(command, &["--version"]);
        if installed.as_deref().map(str::trim) == Some(*version) {
            println!("setup: {package} {version} installed");
            continue;
        }
        println!("setup: installing {package} {version} from PyPI");
        run(cmd(
            "python3",
            [
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                &format!("{package}=={version}"),
            ],
        ))?;
        if probe(command, &["--version"]).is_none() {
            bail!("{package} installed, but `{command}` is not on PATH");
        }
    }
    Ok(())
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

/// cargo-fuzz, for `cargo xtask fuzz`. Best effort: only that task needs
/// it, and it says so when it is missing.
fn cargo_fuzz() {
    if let Some(version) = probe("cargo", &["fuzz", "--version"]) {
        println!("setup: {} installed", version.trim());
        return;
    }
    println!("setup: building cargo-fuzz (a few minutes)");
    if let Err(e) = run(cmd("cargo", ["install", "cargo-fuzz", "--locked"])) {
        eprintln!("setup: warning: {e:#} (only `cargo xtask fuzz` needs it)");
    }
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
