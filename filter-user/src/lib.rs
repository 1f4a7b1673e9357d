//! filterctl: loads the XDP filter, feeds it rule files and reads its counters.
//!
//! Layers, each importing only from the ones above it in this list:
//! - `sys`: the few libc calls, `privilege`: capabilities; `rules`: rule files, from text to map values;
//! - `lockout`: the guard against rules that cut the operator off; `state`:
//!   what lives on bpffs (pin layout, generations, their records), and the
//!   only code that makes, opens or removes a pin;
//! - `filter`: operations on a filter (`lifecycle`: what runs; `observe`:
//!   reading it; `guard`: bans and the reply guard's state), capture, and
//!   the simulator;
//! - `replay`, `upstream`: the capture replayer, and the routes that ask
//!   routers upstream to drop (FlowSpec, blackhole) through a BGP speaker;
//! - `serve`: the daemon;
//! - `commands`: the command line, one function per command.

// The library is public only for the binary, the integration tests and the
// examples; the rest is `pub(crate)`. This lint flags a `pub` that nothing
// outside the crate can reach (in a private module): an error under
// clippy's `-D warnings`.
#![warn(unreachable_pub)]

/// The version of every JSON document filterctl prints or serves (the
/// `schema_version` field; the shapes are in docs/json.md).
const JSON_SCHEMA_VERSION: u32 = 1;

pub mod commands;
pub mod filter;
mod lockout;
mod privilege;
mod probe;
pub mod replay;
pub mod rules;
pub mod serve;
pub mod state;
pub mod sys;
pub mod upstream;

/// The XDP object built from filter-ebpf, embedded so filterctl is one binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter"));
