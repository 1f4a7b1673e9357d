//! `load`: the filter's first generation on an interface. It is built
//! aside, rule maps filled and verified, attached, and pinned with the
//! link last, so an interface never runs a partial rule set and a failed
//! load leaves nothing behind.

use std::path::Path;

use anyhow::{Context as _, bail};
use aya::programs::{Xdp, links::FdLink};
use filter_common::PROGRAM_NAME;

use super::{
    generation,
    mode::{self, AttachMode},
    program, recorder, request_table,
};
use crate::{
    privilege,
    rules::RuleSet,
    state::{
        PinRoot,
        generation::attach_mode_name,
        layout::{EGRESS_LINK, LINK, generation_dir},
        lock::{IfaceLock, LOCK_WAIT},
        owner::{check_owner, hand_over_files},
        pins::{self, Unfinished},
        unloaded,
    },
    sys,
};

/// Loads the filter with `set` on `iface`, pins everything and returns the
/// attach mode used. Fails without changing anything when a filter is
/// already loaded there.
pub fn load(
    root: &PinRoot,
    iface: &str,
    set: &RuleSet,
    source: &Path,
    mode: AttachMode,
) -> anyhow::Result<&'static str> {
    privilege::require("load", privilege::LOAD)?;
    let index = sys::ifindex(iface)?;
    root.ensure_bpffs()?;
    let dir = root.iface_dir(iface);
    if dir.exists() {
        check_owner(&dir, root.path())?;
        bail!(
            "a filter is already loaded on {iface} (pins in {}): use `filterctl reload` to change its rules, or `filterctl unload --iface {iface}` first",
            dir.display()
        );
    }
    pins::create_dir(&dir)?;
    let generation = 1;
    let gen_dir = generation_dir(&dir, generation);
    // Not even a clsact recorder stays behind (unlike a link, it outlives
    // its process by itself).
    let unfinished = Unfinished::new(dir.clone(), || {
        let _ = recorder::detach_clsact(iface, &gen_dir, generation);
    });
    // mkdir above is what makes a second `load` fail; the lock makes a
    // reload, ban or unload that started meanwhile wait for this one.
    let _lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT)?;

    // The host's table of requests, if another interface has one: pinned
    // here before the loader looks for the state maps.
    let sharing = request_table::adopt(iface, &dir)?;
    let mut ebpf = program::prepare(set, Some(&dir), &[])?;
    // The loader pinned the state maps in `dir` itself.
    hand_over_files(&dir)?;
    // Before this interface's recorder runs: the siblings then let in the
    // answers to its requests from the first one on.
    if sharing.is_some() {
        request_table::tell_siblings(iface, &dir);
    }
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("prepare checked it")
        .try_into()?;
    let (link_id, meta_mode) = mode::attach(program, iface, index, mode)?;
    let link = program.take_link(link_id)?;
    let link: FdLink = link.try_into().context(
        "the kernel attached XDP without a bpf_link; filterctl needs Linux 5.9 or later",
    )?;
    generation::write(&mut ebpf, set, source, meta_mode, generation, &gen_dir)?;
    recorder::attach(
        &mut ebpf,
        iface,
        generation,
        &dir.join(EGRESS_LINK),
        &gen_dir,
    )?;
    // The link is pinned last: once it is, the filter stays attached after
    // we exit, and everything it needs is already pinned beside it.
    pins::pin_link(link, &dir.join(LINK)).context("failed to pin the XDP link")?;
    unfinished.keep();
    // The filter runs again: an earlier `unload` no longer keeps serve off.
    if let Err(e) = unloaded::clear(root, iface) {
        log::warn!("{e:#}: a `filterctl serve` watching {iface} will not load it again if it goes");
    }
    Ok(attach_mode_name(meta_mode))
}
