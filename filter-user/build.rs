//! Builds the XDP program for bpfel-unknown-none with the nightly toolchain so
//! that `cargo build` of the controller always embeds a fresh object.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "filter-ebpf")
        .ok_or_else(|| anyhow!("filter-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
        .as_str();
    aya_build::build_ebpf(
        [Package {
            name: name.as_str(),
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )?;
    // For filter-testkit (through `links`): the floor programs, built with
    // the filter but not part of filterctl.
    let out_dir = std::env::var("OUT_DIR").context("OUT_DIR")?;
    println!("cargo:floors={out_dir}/floors");
    Ok(())
}
