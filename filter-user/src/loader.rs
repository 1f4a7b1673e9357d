//! Loading, attaching, pinning and unloading the XDP filter, and reading back
//! what is loaded. Rule maps are filled before the program is attached, so an
//! interface never runs the filter with a partial rule set.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, Map, MapData,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        ProgramInfo, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLinkId,
    },
};
use filter_common::{
    Chain, Config, FAMILY_V4, Limit, MAP_ALLOW_V4, MAP_ALLOW_V6, MAP_CHAINS, MAP_CONFIG,
    MAP_DENY_V4, MAP_DENY_V6, MAP_LIMITS, MAP_META, MAP_PORT_CHAINS, MAP_RULES, MAP_SOURCES,
    META_SOURCE_LEN, Meta, PROGRAM_NAME, Rule,
};

use crate::{
    EBPF_OBJECT,
    pins::{self, PinRoot},
    prefixes::Prefix,
    rules::{Compiled, RuleSet},
};

/// How to attach: `auto` tries the driver (native) first and falls back to
/// generic (skb) mode, which every interface supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    Auto,
    Native,
    Generic,
}

pub const META_MODE_NATIVE: u32 = 1;
pub const META_MODE_GENERIC: u32 = 2;

pub fn mode_name(meta_mode: u32) -> &'static str {
    match meta_mode {
        META_MODE_NATIVE => "native",
        META_MODE_GENERIC => "generic",
        _ => "unknown",
    }
}

pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("filterctl {what} needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo");
    }
    Ok(())
}

fn ifindex(iface: &str) -> anyhow::Result<u32> {
    let c = CString::new(iface).map_err(|_| anyhow!("bad interface name {iface:?}"))?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("no such interface: {iface} (see `ip link` for the interfaces of this host)");
    }
    Ok(index)
}

/// Removes a half-made pin folder unless disarmed: a failed load leaves
/// nothing behind.
struct PinDirGuard(Option<PathBuf>);

impl Drop for PinDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
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
    require_root("load")?;
    let index = ifindex(iface)?;
    root.ensure_bpffs()?;
    let dir = root.iface_dir(iface);
    if dir.exists() {
        bail!(
            "a filter is already loaded on {iface} (pins in {}): use `filterctl unload --iface {iface}` first",
            dir.display()
        );
    }

    let mut ebpf = prepare(set)?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("prepare checked it")
        .try_into()?;
    let (link_id, meta_mode) = attach(program, iface, index, mode)?;
    write_meta(&mut ebpf, set, source, meta_mode, set.rules.len())?;

    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut guard = PinDirGuard(Some(dir.clone()));
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .expect("checked above")
        .try_into()?;
    let link = program.take_link(link_id)?;
    let link: FdLink = link.try_into().context(
        "the kernel attached XDP without a bpf_link; filterctl needs Linux 5.9 or later",
    )?;
    program
        .pin(dir.join(pins::PROG))
        .context("failed to pin the program")?;
    // Section maps (.rodata and friends) hold constants the program keeps
    // alive itself; bpffs refuses names with dots anyway.
    for (name, map) in ebpf.maps().filter(|(name, _)| !name.starts_with('.')) {
        map.pin(dir.join(name))
            .with_context(|| format!("failed to pin map {name}"))?;
    }
    // The link is pinned last: once it is, the filter stays attached after
    // we exit, and everything it needs is already pinned beside it.
    link.pin(dir.join(pins::LINK))
        .context("failed to pin the XDP link")?;
    guard.0 = None;
    Ok(mode_name(meta_mode))
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
            .map(|id| (id, META_MODE_NATIVE))
            .with_context(|| {
                format!("failed to attach to {iface} in native mode (try --mode generic)")
            }),
        AttachMode::Generic => program
            .attach_to_if_index(index, XdpMode::Skb)
            .map(|id| (id, META_MODE_GENERIC))
            .with_context(|| format!("failed to attach to {iface} in generic mode")),
        AttachMode::Auto => match program.attach_to_if_index(index, XdpMode::Driver) {
            Ok(id) => Ok((id, META_MODE_NATIVE)),
            Err(native_err) => program
                .attach_to_if_index(index, XdpMode::Skb)
                .map(|id| (id, META_MODE_GENERIC))
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

/// Loads the embedded object into the kernel with `compiled` in its rule
/// maps and the program verified, but attached nowhere. `load` attaches it;
/// tests and `replay` run frames through it with BPF_PROG_TEST_RUN.
pub fn prepare(set: &RuleSet) -> anyhow::Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_SOURCES, set.table_size)
        .load(EBPF_OBJECT)
        .context("failed to load the eBPF object into the kernel")?;
    write_rules(&mut ebpf, &set.compile())?;
    write_prefixes(&mut ebpf, MAP_ALLOW_V4, MAP_ALLOW_V6, &set.allow)?;
    write_prefixes(&mut ebpf, MAP_DENY_V4, MAP_DENY_V6, &set.deny)?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| anyhow!("program {PROGRAM_NAME} missing from the eBPF object"))?
        .try_into()?;
    program
        .load()
        .context("the kernel verifier rejected the XDP program")?;
    Ok(ebpf)
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
    rule_count: usize,
) -> anyhow::Result<()> {
    let mut meta = Meta {
        digest: set.digest,
        loaded_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        attach_mode,
        rule_count: rule_count as u32,
        ..Meta::default()
    };
    let source = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let bytes = source.as_os_str().as_encoded_bytes();
    let n = bytes.len().min(META_SOURCE_LEN - 1);
    meta.source[..n].copy_from_slice(&bytes[..n]);
    let mut map: Array<_, Meta> = Array::try_from(map_mut(ebpf, MAP_META)?)?;
    map.set(0, meta, 0).context("failed to write META")?;
    Ok(())
}

/// Detaches the filter from `iface` and removes every pin of it.
pub fn unload(root: &PinRoot, iface: &str) -> anyhow::Result<()> {
    require_root("unload")?;
    let dir = root.iface_dir(iface);
    if !dir.is_dir() {
        bail!("no filter loaded on {iface} (no pins in {})", dir.display());
    }
    let link_path = dir.join(pins::LINK);
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
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// What `status` reports for one interface.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub interface: String,
    pub program_id: Option<u32>,
    pub link_id: Option<u32>,
    pub attach_mode: &'static str,
    pub rules_digest: String,
    pub rules_source: String,
    pub rule_count: u32,
    pub mode: &'static str,
    pub fragments: &'static str,
    pub loaded_at_unix: u64,
}

pub fn read_meta(dir: &Path) -> anyhow::Result<Meta> {
    let map = open_map(dir, MAP_META)?;
    let array: Array<_, Meta> = Array::try_from(map)?;
    Ok(array.get(&0, 0)?)
}

pub fn read_config(dir: &Path) -> anyhow::Result<Config> {
    let map = open_map(dir, MAP_CONFIG)?;
    let array: Array<_, Config> = Array::try_from(map)?;
    Ok(array.get(&0, 0)?)
}

pub fn open_map(dir: &Path, name: &str) -> anyhow::Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open pinned map {}", path.display()))?;
    Ok(Map::from_map_data(data)?)
}

pub fn status(root: &PinRoot, iface: &str) -> anyhow::Result<Status> {
    let dir = root.iface_dir(iface);
    let meta = read_meta(&dir)?;
    let config = read_config(&dir)?;
    let program_id = ProgramInfo::from_pin(dir.join(pins::PROG))
        .ok()
        .map(|i| i.id());
    let link_id = PinnedLink::from_pin(dir.join(pins::LINK))
        .ok()
        .and_then(|l| FdLink::from(l).info().ok())
        .map(|i| i.id());
    let source_len = meta
        .source
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(META_SOURCE_LEN);
    Ok(Status {
        interface: iface.to_string(),
        program_id,
        link_id,
        attach_mode: mode_name(meta.attach_mode),
        rules_digest: crate::rules::hex(&meta.digest),
        rules_source: String::from_utf8_lossy(&meta.source[..source_len]).into_owned(),
        rule_count: meta.rule_count,
        mode: if config.flags & filter_common::CONFIG_MONITOR != 0 {
            "monitor"
        } else {
            "enforce"
        },
        fragments: if config.flags & filter_common::CONFIG_FRAGMENT_DROP != 0 {
            "drop"
        } else {
            "pass"
        },
        loaded_at_unix: meta.loaded_at_unix,
    })
}
