//! A reload's one step that changes what an interface runs: a new
//! generation built aside with its own rule maps and the running one's
//! state maps, pinned, its request recorder attached beside the old one
//! and its copy of the open requests filled, then the XDP link switched to
//! it. Any failure before the switch leaves the old generation enforcing
//! and nothing of the new one behind.

use std::path::Path;

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{Xdp, xdp::XdpLink},
};
use filter_common::PROGRAM_NAME;

use super::{
    failpoint, generation, program, recorder,
    state_maps::{self, ReloadOptions},
};
use crate::{
    filter::guard::open_ports,
    privilege,
    rules::RuleSet,
    state::{
        current_generation,
        layout::{EGRESS_LINK, LINK, generation_dir, generations},
        owner::hand_over_files,
        pins::{self, Unfinished},
        read_meta,
    },
};

/// Builds, pins and switches to a new generation of `set` on `iface`
/// (pins in `dir`); returns its number, the loaded object (its maps are
/// needed after the switch) and the state maps it made anew.
pub(crate) fn switch(
    dir: &Path,
    iface: &str,
    set: &RuleSet,
    source: &Path,
    opts: ReloadOptions,
) -> anyhow::Result<(u32, Ebpf, Vec<&'static str>)> {
    privilege::require("reload", privilege::LOAD)?;
    let current = current_generation(dir)
        .with_context(|| format!("no filter running on {iface}: use `filterctl load` first"))?;
    let old_meta = read_meta(&current.dir)?;
    let remade = state_maps::plan(dir, set, opts)?;

    let mut ebpf = program::prepare(set, Some(dir), &remade)?;
    // The loader pins the state maps an older build lacked in `dir`
    // itself: root's go to the folder's owner, like everything it makes.
    hand_over_files(dir)?;
    failpoint::hit("after-prepare")?;
    let generation = generations(dir)?.into_iter().max().unwrap_or(0) + 1;
    let gen_dir = generation_dir(dir, generation);
    let unfinished = Unfinished::new(gen_dir.clone(), || {
        let _ = recorder::detach_clsact(iface, &gen_dir, generation);
    });
    generation::write(
        &mut ebpf,
        set,
        source,
        old_meta.attach_mode,
        generation,
        &gen_dir,
    )?;
    // The new recorder runs beside the old one from here, then the new
    // generation's copy of the open requests is filled (see open_ports).
    // Pinned with its generation: a reload that stops short leaves both
    // recorders running, and the next one removes it with the generation.
    recorder::attach(
        &mut ebpf,
        iface,
        generation,
        &gen_dir.join(EGRESS_LINK),
        &gen_dir,
    )?;
    open_ports::seed(&mut ebpf)?;

    let link = XdpLink::try_from(pins::open_link(&dir.join(LINK))?)
        .context("the pinned link is not an XDP link")?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("prepare checked it")
        .try_into()?;
    failpoint::hit("before-switch")?;
    // The one step that changes what the interface runs.
    program
        .attach_to_link(link)
        .context("failed to switch the XDP link to the new program")?;
    unfinished.keep();
    Ok((generation, ebpf, remade))
}
