//! A new program generation made to last: what it enforces written into it
//! (META, the never-ban set), then its folder made and its program, egress
//! program, rule maps and flags pinned there. The state maps are pinned
//! once, beside the link, and the link last, by `load` and `switch`.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow};
use aya::{Ebpf, maps::Array};
use filter_common::{
    FLAG_GLOBALS, GIT_CLEAN, GIT_MODIFIED, MAP_META, MAP_NEVER_BAN_V4, MAP_NEVER_BAN_V6,
    META_SOURCE_LEN, Meta, PROGRAM_NAME, REQUESTS_PROGRAM_NAME, STATE_MAPS,
};

use super::provenance;
use crate::{
    filter::guard::neverban,
    rules::RuleSet,
    state::{
        layout::{EGRESS_PROG, PROG},
        pins,
    },
};

/// Writes what generation `generation` of `set` (read from `source`,
/// attached in `attach_mode`) enforces into `ebpf`, and pins it in
/// `gen_dir`, which must not exist yet.
pub(crate) fn write(
    ebpf: &mut Ebpf,
    set: &RuleSet,
    source: &Path,
    attach_mode: u32,
    generation: u32,
    gen_dir: &Path,
) -> anyhow::Result<()> {
    write_meta(ebpf, set, source, attach_mode, generation)?;
    write_never_ban(ebpf, set)?;
    pin(ebpf, gen_dir)
}

fn write_meta(
    ebpf: &mut Ebpf,
    set: &RuleSet,
    source: &Path,
    attach_mode: u32,
    generation: u32,
) -> anyhow::Result<()> {
    let mut meta = Meta {
        digest: set.digest,
        loaded_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        attach_mode,
        // META has one count for the rules `serve` adds (its layout is
        // the kernel's too): adaptive blocks and imported routes alike.
        rule_count: (set.rules.len() - set.blocks.len() - set.imports.len()) as u32,
        adaptive_blocks: (set.blocks.len() + set.imports.len()) as u32,
        generation,
        ..Meta::default()
    };
    let source = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let bytes = source.as_os_str().as_encoded_bytes();
    let n = bytes.len().min(META_SOURCE_LEN - 1);
    meta.source[..n].copy_from_slice(&bytes[..n]);
    if let Some((commit, modified)) = provenance::git_state(&source) {
        meta.git_commit.copy_from_slice(commit.as_bytes());
        meta.git_state = if modified { GIT_MODIFIED } else { GIT_CLEAN };
    }
    let map = ebpf
        .map_mut(MAP_META)
        .ok_or_else(|| anyhow!("map {MAP_META} missing from the eBPF object"))?;
    let mut map: Array<_, Meta> = Array::try_from(map)?;
    map.set(0, meta, 0).context("failed to write META")?;
    Ok(())
}

/// The never-ban set (the rule file's and the host's) into the state maps.
fn write_never_ban(ebpf: &mut Ebpf, set: &RuleSet) -> anyhow::Result<()> {
    let mut take = |name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    };
    let (v4, v6) = (take(MAP_NEVER_BAN_V4)?, take(MAP_NEVER_BAN_V6)?);
    neverban::sync(v4, v6, &neverban::never_ban_set(set, &neverban::HOST))
}

/// Pins a generation's programs and its own maps (not the state maps,
/// which are pinned once, beside the link).
fn pin(ebpf: &mut Ebpf, gen_dir: &Path) -> anyhow::Result<()> {
    pins::create_dir(gen_dir)?;
    pins::pin_program(ebpf, PROGRAM_NAME, &gen_dir.join(PROG))
        .context("failed to pin the program")?;
    pins::pin_program(ebpf, REQUESTS_PROGRAM_NAME, &gen_dir.join(EGRESS_PROG))
        .context("failed to pin the egress program")?;
    // Section maps (.rodata and friends) live as long as the program that
    // uses them; bpffs refuses names with dots anyway.
    for (name, map) in ebpf
        .maps()
        .filter(|(name, _)| !name.starts_with('.') && !STATE_MAPS.contains(name))
    {
        pins::pin_map(map, &gen_dir.join(name))
            .with_context(|| format!("failed to pin map {name}"))?;
    }
    // Except the flags: the controller writes them while the program runs.
    for flag in FLAG_GLOBALS {
        let map = ebpf
            .map(flag.section)
            .ok_or_else(|| anyhow!("section {} missing from the eBPF object", flag.section))?;
        pins::pin_map(map, &gen_dir.join(flag.symbol))
            .with_context(|| format!("failed to pin {}", flag.symbol))?;
    }
    Ok(())
}
