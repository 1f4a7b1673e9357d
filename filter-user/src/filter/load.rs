//! Loading, reloading and unloading the XDP filter. A program generation is
//! always built aside, rule maps filled and verified, before anything points
//! to it, so an interface never runs a partial rule set.

use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, Map, MapData,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        SchedClassifier, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use filter_common::{
    ATTACH_GENERIC, ATTACH_NATIVE, BAN_FLAG_COPY, BAN_WIDE, CAPTURE_FLAG, CONFIG_MONITOR,
    CaptureConfig, Chain, Config, CpuCounters, FAMILY_V4, GIT_CLEAN, GIT_MODIFIED, GLOBAL_CONFIG,
    GLOBAL_GUARD_PORTS, GuardPort, Limit, MAP_ALLOW_V4, MAP_ALLOW_V6, MAP_BAN_FLAG, MAP_BAN_HINTS,
    MAP_CAPTURE, MAP_CHAINS, MAP_CONFIG, MAP_COUNTERS, MAP_DENY_V4, MAP_DENY_V6, MAP_GUARD_BUDGETS,
    MAP_LIMITS, MAP_META, MAP_NEVER_BAN_V4, MAP_NEVER_BAN_V6, MAP_PORT_CHAINS, MAP_RULES,
    MAP_RULESET, MAP_SOURCE_TAGS, MAP_SOURCES, MAP_SRC_HINTS, META_SOURCE_LEN, MODE_FLAG, Meta,
    OLDER_STATS, PROGRAM_NAME, REQUESTS_PROGRAM_NAME, RULESET_CHUNK, Rule, STATE_MAPS, SourceSlot,
    source_slots,
};

use super::{counters, failpoint, flags, neverban, open_ports, provenance, recorder};
use crate::{
    EBPF_OBJECT, privilege,
    rules::{Compiled, Prefix, RuleSet},
    state::{
        EGRESS_LINK, EGRESS_PROG, LINK, PROG, PinRoot,
        bpffs::check_owner,
        current_generation,
        generation::attach_mode_name,
        generation_dir, generations,
        lock::{IfaceLock, LOCK_WAIT},
        open_map, read_meta,
        record::Canonical,
    },
    sys,
};

/// How to attach: `auto` tries the driver (native) first and falls back to
/// generic (skb) mode, which every interface supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Auto,
    Native,
    Generic,
}

/// Removes a half-made pin folder unless disarmed: a failed load or reload
/// leaves nothing behind, not even a clsact recorder (which, unlike a
/// link, outlives its process by itself).
struct PinDirGuard {
    dir: Option<PathBuf>,
    iface: String,
    /// The generation that this load or reload made, and its folder.
    generation: (u32, PathBuf),
}

impl PinDirGuard {
    fn disarm(&mut self) {
        self.dir = None;
    }
}

impl Drop for PinDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let (n, gen_dir) = &self.generation;
            let _ = recorder::detach_clsact(&self.iface, gen_dir, *n);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

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
        check_owner(&dir)?;
        bail!(
            "a filter is already loaded on {iface} (pins in {}): use `filterctl reload` to change its rules, or `filterctl unload --iface {iface}` first",
            dir.display()
        );
    }
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let generation = 1;
    let gen_dir = generation_dir(&dir, generation);
    let mut guard = PinDirGuard {
        dir: Some(dir.clone()),
        iface: iface.to_string(),
        generation: (generation, gen_dir.clone()),
    };
    // mkdir above is what makes a second `load` fail; the lock makes a
    // reload, ban or unload that started meanwhile wait for this one.
    let _lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT)?;

    let mut ebpf = prepare(set, Some(&dir), &[])?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("prepare checked it")
        .try_into()?;
    let (link_id, meta_mode) = attach(program, iface, index, mode)?;
    let link = program.take_link(link_id)?;
    let link: FdLink = link.try_into().context(
        "the kernel attached XDP without a bpf_link; filterctl needs Linux 5.9 or later",
    )?;
    write_meta(&mut ebpf, set, source, meta_mode, generation)?;
    write_never_ban(&mut ebpf, set)?;
    pin_generation(&mut ebpf, &gen_dir)?;
    recorder::attach(&mut ebpf, iface, generation)?.keep(
        &mut ebpf,
        &dir.join(EGRESS_LINK),
        &gen_dir,
    )?;
    // The link is pinned last: once it is, the filter stays attached after
    // we exit, and everything it needs is already pinned beside it.
    link.pin(dir.join(LINK))
        .context("failed to pin the XDP link")?;
    guard.disarm();
    Ok(attach_mode_name(meta_mode))
}

/// A reload that failed, and whether the new rules got to enforce.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("failed to reload {iface}; the previous rules are still enforcing: {cause:#}")]
    NotSwitched { iface: String, cause: anyhow::Error },
    #[error(
        "{iface} runs the new rules (generation {generation}), but the reload did not finish: {cause:#}"
    )]
    AfterSwitch {
        iface: String,
        generation: u32,
        cause: anyhow::Error,
    },
}

/// How a reload treats the state maps.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReloadOptions {
    /// Accept state maps whose pins are missing: they start empty (counters
    /// at zero, no bans). Without it such a reload fails.
    pub reset_state: bool,
}

/// Replaces the rule set of the filter on `iface` in one atomic step: a new
/// program generation is built aside with its own rule maps and the state
/// maps (counters, limiter, bans, fragment memory) of the running one, then
/// the XDP link is switched to it. Every packet sees either the old or the
/// new rule set, never a mix. Any failure before the switch leaves the old
/// generation enforcing. One writer at a time: the interface is locked.
pub fn reload(
    root: &PinRoot,
    iface: &str,
    set: &RuleSet,
    source: &Path,
) -> Result<u32, ReloadError> {
    reload_with(root, iface, set, source, ReloadOptions::default())
}

pub fn reload_with(
    root: &PinRoot,
    iface: &str,
    set: &RuleSet,
    source: &Path,
    opts: ReloadOptions,
) -> Result<u32, ReloadError> {
    let not_switched = |cause| ReloadError::NotSwitched {
        iface: iface.to_string(),
        cause,
    };
    let dir = root.iface_dir(iface);
    let lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT).map_err(|e| not_switched(e.into()))?;
    let (generation, ebpf, remade) =
        switch(&dir, iface, set, source, opts).map_err(not_switched)?;
    let after = || -> anyhow::Result<()> {
        failpoint::hit("after-switch")?;
        repin_remade(&ebpf, &dir, &remade)?;
        counters::adopt_older(&dir)?;
        // The old recorders go: the program whose copy of the open
        // requests they kept no longer runs.
        recorder::retire_older(iface, &dir, generation)?;
        // Bans that the previous generation set after `prepare` copied the
        // flag: it no longer runs.
        flags::copy_ban_flag(&dir, &generation_dir(&dir, generation))?;
        // Older generations are no longer referenced by the link: their
        // pins are all that keep them (crashed reloads may have left some).
        // Nothing newer exists: this reload holds the lock.
        for g in generations(&dir)? {
            if g < generation {
                let _ = std::fs::remove_dir_all(generation_dir(&dir, g));
            }
        }
        Ok(())
    };
    let result = after().map_err(|cause| ReloadError::AfterSwitch {
        iface: iface.to_string(),
        generation,
        cause,
    });
    drop(lock);
    result.map(|()| generation)
}

/// Checks the state pins of a running filter before a reload: a missing
/// one would silently start empty. Returns the state maps whose pins can't
/// carry over and are made anew (see [`remade_state_maps`]).
fn check_state_pins(
    dir: &Path,
    set: &RuleSet,
    opts: ReloadOptions,
) -> anyhow::Result<Vec<&'static str>> {
    let remade = remade_state_maps(dir, set)?;
    // BAN_HINTS came later than the rest: a generation of an older build
    // has none, and it is made then (see `prepare`); so did SOURCE_TAGS,
    // made with the limiter table it goes with.
    let missing: Vec<&str> = STATE_MAPS
        .iter()
        .copied()
        .filter(|n| *n != MAP_BAN_HINTS && !dir.join(n).exists() && !remade.contains(n))
        .collect();
    if !missing.is_empty() && !opts.reset_state {
        bail!(
            "state maps {} are missing from {} (deleted by hand?): a reload would start them empty (counters, bans, limiter state); use --reset-state to accept that",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(remade)
}

/// The state maps whose pins can't carry over, because their shape is
/// fixed when a map is made: the limiter table (and its tags) of another
/// size or of an older build's kind (an LRU hash), and the counters of
/// another CPU count or of an older build (which kept them in maps of
/// other names; their totals carry over after the switch). They start
/// anew and are pinned after the switch.
fn remade_state_maps(dir: &Path, set: &RuleSet) -> anyhow::Result<Vec<&'static str>> {
    let mut remade = Vec::new();
    let slots = source_slots(set.table_size);
    if !pin_fits(dir, MAP_SOURCES, size_of::<SourceSlot>(), slots)?
        || !pin_fits(dir, MAP_SOURCE_TAGS, size_of::<u32>(), slots / 2)?
        || (dir.join(MAP_SOURCES).exists() && !dir.join(MAP_SOURCE_TAGS).exists())
    {
        remade.extend([MAP_SOURCES, MAP_SOURCE_TAGS]);
    }
    // An older build kept its counters in other maps (see
    // counters::adopt_older), or another CPU count its blocks.
    if (!dir.join(MAP_COUNTERS).exists() && dir.join(OLDER_STATS).exists())
        || !pin_fits(
            dir,
            MAP_COUNTERS,
            size_of::<CpuCounters>(),
            counters::blocks()?,
        )?
    {
        remade.push(MAP_COUNTERS);
    }
    Ok(remade)
}

/// Whether the array pinned as `name` (if any) has this value size and
/// number of entries: what the loader makes otherwise.
fn pin_fits(dir: &Path, name: &str, value_size: usize, max_entries: u32) -> anyhow::Result<bool> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(true);
    }
    let info = MapData::from_pin(&path)
        .and_then(|m| m.info())
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(matches!(info.map_type(), Ok(aya::maps::MapType::Array))
        && info.value_size() as usize == value_size
        && info.max_entries() == max_entries)
}

/// Pins the state maps made anew in place of the old ones.
fn repin_remade(ebpf: &Ebpf, dir: &Path, remade: &[&str]) -> anyhow::Result<()> {
    for name in remade {
        let path = dir.join(name);
        let map = ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
        if path.exists() {
            if *name == MAP_COUNTERS {
                // Counters only grow, across upgrades too.
                let old = MapData::from_pin(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                if let aya::maps::Map::Array(new) = map {
                    counters::carry_over(&old, new)?;
                }
            }
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        map.pin(&path)
            .with_context(|| format!("cannot pin the new {name} at {}", path.display()))?;
    }
    Ok(())
}

/// Builds, pins and switches to a new generation; returns its number, the
/// loaded object (its maps are needed after the switch) and the state maps
/// it made anew.
fn switch(
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
    let remade = check_state_pins(dir, set, opts)?;

    let mut ebpf = prepare(set, Some(dir), &remade)?;
    failpoint::hit("after-prepare")?;
    let generation = generations(dir)?.into_iter().max().unwrap_or(0) + 1;
    write_meta(&mut ebpf, set, source, old_meta.attach_mode, generation)?;
    write_never_ban(&mut ebpf, set)?;
    let gen_dir = generation_dir(dir, generation);
    let mut guard = PinDirGuard {
        dir: Some(gen_dir.clone()),
        iface: iface.to_string(),
        generation: (generation, gen_dir.clone()),
    };
    pin_generation(&mut ebpf, &gen_dir)?;
    // The new recorder runs beside the old one from here, then the new
    // generation's copy of the open requests is filled (see open_ports).
    // Pinned with its generation: a reload that stops short leaves both
    // recorders running, and the next one removes it with the generation.
    recorder::attach(&mut ebpf, iface, generation)?.keep(
        &mut ebpf,
        &gen_dir.join(EGRESS_LINK),
        &gen_dir,
    )?;
    open_ports::seed(&mut ebpf)?;

    let link_path = dir.join(LINK);
    let link: FdLink = PinnedLink::from_pin(&link_path)
        .with_context(|| format!("cannot open the pinned link {}", link_path.display()))?
        .into();
    let link = XdpLink::try_from(link).context("the pinned link is not an XDP link")?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("prepare checked it")
        .try_into()?;
    failpoint::hit("before-switch")?;
    // The one step that changes what the interface runs.
    program
        .attach_to_link(link)
        .context("failed to switch the XDP link to the new program")?;
    guard.disarm();
    Ok((generation, ebpf, remade))
}

/// The never-ban set (the rule file's and the host's) into the state maps.
fn write_never_ban(ebpf: &mut Ebpf, set: &RuleSet) -> anyhow::Result<()> {
    let want = neverban::never_ban_set(set, &neverban::HOST);
    let v4 = ebpf
        .take_map(MAP_NEVER_BAN_V4)
        .ok_or_else(|| anyhow!("map {MAP_NEVER_BAN_V4} missing from the eBPF object"))?;
    let v6 = ebpf
        .take_map(MAP_NEVER_BAN_V6)
        .ok_or_else(|| anyhow!("map {MAP_NEVER_BAN_V6} missing from the eBPF object"))?;
    neverban::sync(v4, v6, &want)
}

/// Pins a generation's program and its own maps (not the state maps, which
/// are pinned once, beside the link).
fn pin_generation(ebpf: &mut Ebpf, gen_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(gen_dir).with_context(|| format!("cannot create {}", gen_dir.display()))?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("prepare checked it")
        .try_into()?;
    program
        .pin(gen_dir.join(PROG))
        .context("failed to pin the program")?;
    let egress: &mut SchedClassifier = ebpf
        .program_mut(REQUESTS_PROGRAM_NAME)
        .expect("prepare checked it")
        .try_into()?;
    egress
        .pin(gen_dir.join(EGRESS_PROG))
        .context("failed to pin the egress program")?;
    // Section maps (.rodata and friends) live as long as the program that
    // uses them; bpffs refuses names with dots anyway.
    for (name, map) in ebpf
        .maps()
        .filter(|(name, _)| !name.starts_with('.') && !STATE_MAPS.contains(name))
    {
        map.pin(gen_dir.join(name))
            .with_context(|| format!("failed to pin map {name}"))?;
    }
    // Except the flags: the controller writes them.
    flags::pin(ebpf, gen_dir)
}

fn attach(
    program: &mut Xdp,
    iface: &str,
    index: u32,
    mode: AttachMode,
) -> anyhow::Result<(XdpLinkId, u32)> {
    match mode {
        AttachMode::Native => program
            .attach_to_if_index(index, XdpMode::Driver)
            .map(|id| (id, ATTACH_NATIVE))
            .with_context(|| {
                format!("failed to attach to {iface} in native mode (try --mode generic)")
            }),
        AttachMode::Generic => program
            .attach_to_if_index(index, XdpMode::Skb)
            .map(|id| (id, ATTACH_GENERIC))
            .with_context(|| format!("failed to attach to {iface} in generic mode")),
        AttachMode::Auto => match program.attach_to_if_index(index, XdpMode::Driver) {
            Ok(id) => Ok((id, ATTACH_NATIVE)),
            Err(native_err) => program
                .attach_to_if_index(index, XdpMode::Skb)
                .map(|id| (id, ATTACH_GENERIC))
                .map_err(|e| {
                    anyhow!(
                        "failed to attach to {iface}: native mode: {native_err}; generic mode: {e}"
                    )
                }),
        },
    }
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
}

/// Loads the embedded object into the kernel with `set` in its rule maps and
/// the program verified, but attached nowhere: `load` and `reload` attach
/// it; tests and `replay` run frames through it with BPF_PROG_TEST_RUN.
pub fn prepare(set: &RuleSet, state_dir: Option<&Path>, remade: &[&str]) -> anyhow::Result<Ebpf> {
    prepare_object(EBPF_OBJECT, set, state_dir, remade)
}

/// [`prepare`] with another build's object (`cargo xtask bench --against`
/// measures one against the other); its maps and globals must be this
/// build's.
pub fn prepare_object(
    object: &[u8],
    set: &RuleSet,
    state_dir: Option<&Path>,
    remade: &[&str],
) -> anyhow::Result<Ebpf> {
    let compiled = set.compile();
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(MAP_SOURCES, source_slots(set.table_size));
    loader.map_max_entries(MAP_SOURCE_TAGS, source_slots(set.table_size) / 2);
    loader.map_max_entries(MAP_COUNTERS, counters::blocks()?);
    // 2.2 MB of hints only for lists that need them (one word reads as
    // "look" while CONFIG says there is no list to look in).
    if compiled.hint_words.is_empty() {
        loader.map_max_entries(MAP_SRC_HINTS, 1);
    }
    // What the program runs on; monitor mode apart, which `mode` rewrites.
    let loaded = Config {
        flags: compiled.config.flags & !CONFIG_MONITOR,
        ..compiled.config
    };
    loader.override_global(GLOBAL_CONFIG, &loaded, true);
    // Empty while the reply guard is off: the program's zeros stay.
    if !compiled.guard_table.is_empty() {
        loader.override_global(GLOBAL_GUARD_PORTS, compiled.guard_table.as_slice(), true);
    }
    // State maps come from the pins of the running generation when there is
    // one (and are pinned there when there is not); those that can't carry
    // over are made anew and pinned after the switch.
    let state_pins: Vec<(&str, PathBuf)> = state_dir
        .map(|d| {
            STATE_MAPS
                .iter()
                .filter(|n| !remade.contains(n))
                .map(|n| (*n, d.join(n)))
                .collect()
        })
        .unwrap_or_default();
    for (name, path) in &state_pins {
        loader.map_pin_path(name, path.as_path());
    }
    let hints_missing = state_dir.is_some_and(|d| !d.join(MAP_BAN_HINTS).exists());
    let mut ebpf = loader
        .load(object)
        .context("failed to load the eBPF object into the kernel")?;
    let bans = ban_flag_at_load(&mut ebpf, hints_missing)?;
    seed_flags(&mut ebpf, compiled.config.flags & CONFIG_MONITOR, bans)?;
    write_rules(&mut ebpf, &compiled)?;
    write_prefixes(&mut ebpf, MAP_ALLOW_V4, MAP_ALLOW_V6, &set.allow)?;
    write_prefixes(&mut ebpf, MAP_DENY_V4, MAP_DENY_V6, &set.deny)?;
    let mut record: Array<_, [u8; RULESET_CHUNK]> =
        Array::try_from(map_mut(&mut ebpf, MAP_RULESET)?)?;
    for (i, chunk) in Canonical::of(set).to_chunks()?.iter().enumerate() {
        record
            .set(i as u32, chunk, 0)
            .context("failed to write RULESET")?;
    }
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| anyhow!("program {PROGRAM_NAME} missing from the eBPF object"))?
        .try_into()?;
    program
        .load()
        .context("the kernel verifier rejected the XDP program")?;
    let egress: &mut SchedClassifier = ebpf
        .program_mut(REQUESTS_PROGRAM_NAME)
        .ok_or_else(|| anyhow!("program {REQUESTS_PROGRAM_NAME} missing from the eBPF object"))?
        .try_into()?;
    egress
        .load()
        .context("the kernel verifier rejected the egress program")?;
    Ok(ebpf)
}

/// The ban flag as the new generation starts with it. Bans set before
/// BAN_HINTS existed (`hints_missing`) have no hints: they are marked too
/// wide for hints, which turns the early verdict off while bans exist, as
/// it was.
fn ban_flag_at_load(ebpf: &mut Ebpf, hints_missing: bool) -> anyhow::Result<u32> {
    let mut flag: Array<_, u32> = Array::try_from(map_mut(ebpf, MAP_BAN_FLAG)?)?;
    let bans = flag.get(&0, 0).context("failed to read BAN_FLAG")?;
    if !hints_missing || bans == 0 {
        return Ok(bans);
    }
    flag.set(0, bans | BAN_WIDE, 0)
        .context("failed to write BAN_FLAG")?;
    Ok(bans | BAN_WIDE)
}

/// The flags of a freshly made object: the rule file's mode, and the state
/// of the running filter (the ban flag `bans`, a capture that runs on).
fn seed_flags(ebpf: &mut Ebpf, mode: u32, bans: u32) -> anyhow::Result<()> {
    flags::set(ebpf, MODE_FLAG, mode)?;
    flags::set(ebpf, BAN_FLAG_COPY, bans)?;
    let capture: Array<_, CaptureConfig> = Array::try_from(map_mut(ebpf, MAP_CAPTURE)?)?;
    let on = capture
        .get(&0, 0)
        .context("failed to read CAPTURE")?
        .until_ns
        != 0;
    flags::set(ebpf, CAPTURE_FLAG, on as u32)
}

/// Writes the compiled rule set into a freshly loaded program's maps.
fn write_rules(ebpf: &mut Ebpf, c: &Compiled) -> anyhow::Result<()> {
    let mut rules: Array<_, Rule> = Array::try_from(map_mut(ebpf, MAP_RULES)?)?;
    for (i, r) in c.rules.iter().enumerate() {
        rules.set(i as u32, r, 0).context("failed to write RULES")?;
    }
    let mut chains: Array<_, Chain> = Array::try_from(map_mut(ebpf, MAP_CHAINS)?)?;
    for (i, ch) in c.chains.iter().enumerate() {
        chains
            .set(i as u32, ch, 0)
            .context("failed to write CHAINS")?;
    }
    let mut ports: Array<_, u32> = Array::try_from(map_mut(ebpf, MAP_PORT_CHAINS)?)?;
    for &(slot, chain) in &c.port_chains {
        ports
            .set(slot, chain, 0)
            .context("failed to write PORT_CHAINS")?;
    }
    let mut limits: Array<_, Limit> = Array::try_from(map_mut(ebpf, MAP_LIMITS)?)?;
    for (i, l) in c.limits.iter().enumerate() {
        limits
            .set(i as u32, l, 0)
            .context("failed to write LIMITS")?;
    }
    let mut budgets: HashMap<_, u32, GuardPort> =
        HashMap::try_from(map_mut(ebpf, MAP_GUARD_BUDGETS)?)?;
    for (port, b) in &c.guard_ports {
        budgets
            .insert(*port as u32, b, 0)
            .context("failed to write GUARD_BUDGETS")?;
    }
    let mut hints: Array<_, u64> = Array::try_from(map_mut(ebpf, MAP_SRC_HINTS)?)?;
    for (i, w) in &c.hint_words {
        hints.set(*i, w, 0).context("failed to write SRC_HINTS")?;
    }
    let mut config: Array<_, Config> = Array::try_from(map_mut(ebpf, MAP_CONFIG)?)?;
    config
        .set(0, c.config, 0)
        .context("failed to write CONFIG")?;
    Ok(())
}

/// Fills an allow or deny pair of tries.
fn write_prefixes(ebpf: &mut Ebpf, v4: &str, v6: &str, list: &[Prefix]) -> anyhow::Result<()> {
    let mut t4: LpmTrie<_, [u8; 4], u8> = LpmTrie::try_from(map_mut(ebpf, v4)?)?;
    for p in list.iter().filter(|p| p.family == FAMILY_V4) {
        let key = Key::new(p.len as u32, [p.addr[0], p.addr[1], p.addr[2], p.addr[3]]);
        t4.insert(&key, 1, 0)
            .with_context(|| format!("failed to add {p} to {v4}"))?;
    }
    let mut t6: LpmTrie<_, [u8; 16], u8> = LpmTrie::try_from(map_mut(ebpf, v6)?)?;
    for p in list.iter().filter(|p| p.family != FAMILY_V4) {
        t6.insert(&Key::new(p.len as u32, p.addr), 1, 0)
            .with_context(|| format!("failed to add {p} to {v6}"))?;
    }
    Ok(())
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
        rule_count: (set.rules.len() - set.blocks.len()) as u32,
        adaptive_blocks: set.blocks.len() as u32,
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
    let mut map: Array<_, Meta> = Array::try_from(map_mut(ebpf, MAP_META)?)?;
    map.set(0, meta, 0).context("failed to write META")?;
    Ok(())
}

/// Flips monitor mode in the running generation: the program reads it per
/// packet, so it applies at once. The config record says so too.
pub fn set_mode(root: &PinRoot, iface: &str, monitor: bool) -> anyhow::Result<()> {
    let dir = root.iface_dir(iface);
    let _lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT)?;
    let current =
        current_generation(&dir).with_context(|| format!("no filter running on {iface}"))?;
    let mut config: Array<_, Config> = Array::try_from(open_map(&current.dir, MAP_CONFIG)?)?;
    let mut c = config.get(&0, 0)?;
    if monitor {
        c.flags |= CONFIG_MONITOR;
    } else {
        c.flags &= !CONFIG_MONITOR;
    }
    // What the program reads first: if it can't be written, the record
    // stays as it was too.
    flags::write(&current.dir, MODE_FLAG, c.flags & CONFIG_MONITOR)?;
    config.set(0, c, 0).context("failed to write CONFIG")
}

/// Detaches the filter from `iface` and removes every pin of it.
pub fn unload(root: &PinRoot, iface: &str) -> anyhow::Result<()> {
    let dir = root.iface_dir(iface);
    let _lock = IfaceLock::acquire(iface, &dir, LOCK_WAIT)?;
    // Another unload may have removed it while this one waited.
    if !dir.is_dir() {
        bail!("no filter loaded on {iface} (no pins in {})", dir.display());
    }
    for name in [LINK, EGRESS_LINK] {
        let link_path = dir.join(name);
        if link_path.exists() {
            let link = PinnedLink::from_pin(&link_path)
                .with_context(|| format!("cannot open pinned link {}", link_path.display()))?;
            // Unpinning drops the last reference once this fd closes: the
            // kernel detaches the program from the interface.
            let fd_link = link
                .unpin()
                .with_context(|| format!("cannot unpin {}", link_path.display()))?;
            drop(fd_link);
        }
    }
    recorder::detach_all(iface, &dir)?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}
