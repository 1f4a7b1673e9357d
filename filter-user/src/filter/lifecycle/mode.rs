//! The two modes of a filter: how its XDP program attaches to an
//! interface (native or generic, chosen at load), and whether it enforces
//! or only monitors (flipped at any time with `filterctl mode`).

use anyhow::{Context as _, anyhow};
use aya::{
    maps::Array,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use filter_common::{ATTACH_GENERIC, ATTACH_NATIVE, CONFIG_MONITOR, Config, MAP_CONFIG, MODE_FLAG};

use super::flags;
use crate::state::{
    PinRoot, current_generation,
    lock::{IfaceLock, LOCK_WAIT},
    pins::open_map,
};

/// How to attach: `auto` tries the driver (native) first and falls back to
/// generic (skb) mode, which every interface supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Auto,
    Native,
    Generic,
}

/// Attaches `program` to interface `iface` (index `index`) in `mode`;
/// returns the link and the mode used, as META records it.
pub(crate) fn attach(
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

/// Flips monitor mode in the running generation: the program reads it per
/// packet, so it applies at once. The config record says so too.
pub(crate) fn set_mode(root: &PinRoot, iface: &str, monitor: bool) -> anyhow::Result<()> {
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
