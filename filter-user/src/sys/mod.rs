//! The few calls into libc that filterctl makes, each wrapped once in a safe
//! function: interface indexes, the kernel's coarse clock, filesystem
//! types and mounts, this host's addresses, the names of users, processes
//! (their start times, SIGTERM, a session of their own), and the
//! open-file limit (with the errors that say a process is out of
//! resources), and map values read whole where aya's by-value reads would
//! put them on the stack.

mod bpf;
mod error;
pub(crate) mod fake;
mod files;
mod net;
mod ns;
mod process;

// Declarations and re-exports only. The children never import this file
// (they name each other: `super::error::SysError`), so these re-exports,
// kept for the rest of the crate, cannot close an import circle.
pub(crate) use self::{
    bpf::{SharedMapping, map_read_all, map_update_batch, write_mapped},
    error::SysError,
    files::{is_connection_error, is_out_of_files, raise_nofile_limit, wait_readable},
    net::{driver_of, interface_addresses},
    ns::{NsId, is_bpffs, mount_bpffs, mount_namespace, named_net_namespace, unshare_net},
    process::{
        euid, kernel_release, monotonic_coarse_ns, own_session, parent_pid, process_environ,
        process_parent, process_started, terminate, user_name,
    },
};
pub use self::{net::ifindex, ns::enter_net_namespace};
