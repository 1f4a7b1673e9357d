//! What the wrapped calls report when an operator can act on the cause: a
//! bad or missing interface, a bad path, a refused mount or file limit.

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("bad interface name {0:?}")]
    BadInterfaceName(String),
    #[error("no such interface: {0} (see `ip link` for the interfaces of this host)")]
    NoInterface(String),
    #[error("bad path {0:?}: it holds a NUL byte")]
    BadPath(String),
    #[error("mounting a bpffs at {at} failed: {source}")]
    Mount { at: String, source: std::io::Error },
    #[error("cannot raise the open-file limit (RLIMIT_NOFILE) from {soft} to {hard}: {source}")]
    NoFileLimit {
        soft: u64,
        hard: u64,
        source: std::io::Error,
    },
}
