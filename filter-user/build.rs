//! Builds the XDP program for bpfel-unknown-none with the nightly toolchain so
//! that `cargo build` of the controller always embeds a fresh object.
//!
//! The same build as `aya_build::build_ebpf`, but quiet: aya-build turns
//! every line the nested cargo prints ("Compiling core ...", some hundred of
//! them) into a `cargo:warning`, which reads as if something were wrong.
//! Here the nested cargo's progress goes to `OUT_DIR/ebpf-build.log`, and
//! only the compiler's real diagnostics (warnings and errors in the eBPF
//! crates) become cargo warnings; a failed build shows the log's end.
use std::{
    fs::File,
    io::{BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Artifact, CompilerMessage, Message};

/// Lines of the log shown when the eBPF build fails.
const LOG_TAIL: usize = 40;

fn ebpf_package_dir() -> anyhow::Result<PathBuf> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let package = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "filter-ebpf")
        .ok_or_else(|| anyhow!("filter-ebpf package not found"))?;
    let dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
    Ok(dir.as_std_path().to_path_buf())
}

/// `rustup run nightly cargo build` of the eBPF binaries, as aya-build runs it.
fn nested_cargo(out_dir: &Path) -> anyhow::Result<Command> {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH")?;
    let target = match std::env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb-unknown-none",
        _ => "bpfel-unknown-none",
    };
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        "filter-ebpf",
    ])
    .args([
        "--bins",
        "--message-format=json",
        "--release",
        "--target",
        target,
    ])
    .args(["-Z", "build-std=core"])
    .arg("--target-dir")
    .arg(out_dir.join("aya-build/target/filter-ebpf"))
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
    )
    // The nested build picks its own toolchain's compiler.
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER");
    Ok(cmd)
}

fn log_tail(log: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(log).and_then(|mut f| f.read_to_string(&mut text));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
}

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?);
    let root_dir = ebpf_package_dir()?;
    // The eBPF binaries are not a build-dependency cargo tracks: watch them.
    println!("cargo:rerun-if-changed={}", root_dir.display());

    let log = out_dir.join("ebpf-build.log");
    let mut log_file =
        File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = nested_cargo(&out_dir)?
        .current_dir(&root_dir)
        .stdout(Stdio::piped())
        .stderr(log_file.try_clone()?)
        .spawn()
        .context(
            "cannot run `rustup run nightly cargo` (cargo xtask setup installs the toolchain)",
        )?;
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut executables = Vec::new();
    for message in Message::parse_stream(stdout) {
        match message.context("the eBPF build printed invalid JSON")? {
            Message::CompilerArtifact(Artifact {
                executable: Some(exe),
                target,
                ..
            }) => executables.push((target.name, exe.into_std_path_buf())),
            Message::CompilerMessage(CompilerMessage { message, .. }) => {
                for line in message.rendered.unwrap_or_default().lines() {
                    println!("cargo:warning={line}");
                }
            }
            Message::TextLine(line) => {
                writeln!(log_file, "{line}")?;
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    if !status.success() {
        for line in log_tail(&log).lines() {
            println!("cargo:warning={line}");
        }
        bail!(
            "the eBPF build failed ({status}); its log: {}",
            log.display()
        );
    }
    for (name, binary) in executables {
        std::fs::copy(&binary, out_dir.join(&name))
            .with_context(|| format!("cannot copy {}", binary.display()))?;
    }
    // For filter-testkit (through `links`): the floor programs, built with
    // the filter but not part of filterctl.
    println!("cargo:floors={}/floors", out_dir.display());
    Ok(())
}
