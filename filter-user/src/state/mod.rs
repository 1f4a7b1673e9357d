//! The one owner of what lives on bpffs. A loaded filter is one folder per
//! interface under the pin root, holding the XDP link, the state maps that
//! outlive reloads, and one folder per program generation with the program,
//! its rule maps and the records of what it enforces:
//!
//! ```text
//! <root>/<iface>/link            the XDP link: names the generation that runs
//! <root>/<iface>/egress-link     the TC egress link recording the host's requests
//! <root>/<iface>/COUNTERS, BANS... state maps, shared by every generation
//! <root>/<iface>/LOCAL_PORTS, REPLIES, PEERS  the host's request table: the
//!                                same maps as its siblings' (see `shared`)
//! <root>/<iface>/gen-<n>/prog    a generation's program
//! <root>/<iface>/gen-<n>/META    what it enforces (digest, source, git, attach mode)
//! <root>/<iface>/gen-<n>/RULESET its rule set in canonical form (for diff)
//! <root>/<iface>/gen-<n>/egress-link its recorder's link, during a reload
//!                                (moved to <iface>/egress-link after the switch)
//! <root>/<iface>/gen-<n>/egress-tc its recorder's program again, where the
//!                                kernel has no TCX: says that a clsact filter
//!                                with the generation's number runs it
//! <root>netns:<name>/...         `--netns NAME` under the default root
//! <root>/unloaded:<iface>         an empty folder: an operator's `unload`
//!                                left it off on purpose (`serve` does not
//!                                load it again; `load` removes it)
//! ```
//!
//! `layout` names these places, `pins` is the only code that makes, opens or
//! removes a pin, `generation` and `record` read what a generation says,
//! `bpffs` makes sure the root lies on a bpffs, `lock` keeps writers apart,
//! `owner` says who may act on a folder and hands what root makes in the
//! service user's folders to that user, `shared` tells which interfaces
//! share the host's request table, `unloaded` keeps the marker of a filter
//! unloaded on purpose.

pub(crate) mod bpffs;
pub(crate) mod generation;
pub mod layout;
pub mod lock;
pub mod owner;
pub mod pins;
pub mod record;
pub mod shared;
pub mod unloaded;

pub use self::{generation::current_generation, layout::PinRoot};
pub(crate) use self::{
    generation::{read_config, read_meta},
    layout::DEFAULT_ROOT,
};
