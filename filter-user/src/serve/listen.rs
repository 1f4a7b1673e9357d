//! Where `serve` listens: the forms `--listen` takes. An address alone
//! takes the default port, so that a deployment can pass the node's
//! address as it comes (Kubernetes' `$(NODE_IP)`), IPv4 or IPv6, where
//! gluing `:19419` to it would make an IPv6 address unreadable.

use std::net::{IpAddr, SocketAddr};

/// serve's port unless `--listen` names one: see `DEFAULT_LISTEN`.
pub const DEFAULT_PORT: u16 = 19419;

/// A `--listen` value that is no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?}: write IP:PORT, [IPV6]:PORT, or an address alone for port {DEFAULT_PORT} (192.0.2.1:19419, [2001:db8::5]:19419, 2001:db8::5)"
)]
pub struct ListenSyntax(String);

/// Parses `IP:PORT`, `[IPV6]:PORT`, `IP` or `[IPV6]` (the last two on
/// [`DEFAULT_PORT`]).
pub fn parse_listen(s: &str) -> Result<SocketAddr, ListenSyntax> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|v6| v6.strip_suffix(']'))
        .unwrap_or(s);
    match bare.parse::<IpAddr>() {
        // "[192.0.2.1]" is no way to write an IPv4 address.
        Ok(IpAddr::V4(_)) if bare.len() != s.len() => Err(ListenSyntax(s.to_string())),
        Ok(ip) => Ok(SocketAddr::new(ip, DEFAULT_PORT)),
        Err(_) => Err(ListenSyntax(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for (given, addr) in [
            ("127.0.0.1:19419", "127.0.0.1:19419"),
            ("192.0.2.1:8080", "192.0.2.1:8080"),
            ("192.0.2.1", "192.0.2.1:19419"),
            ("[2001:db8::5]:9000", "[2001:db8::5]:9000"),
            ("2001:db8::5", "[2001:db8::5]:19419"),
            ("[2001:db8::5]", "[2001:db8::5]:19419"),
            ("::", "[::]:19419"),
            ("[::1]:0", "[::1]:0"),
        ] {
            assert_eq!(parse_listen(given).unwrap().to_string(), addr, "{given}");
        }
    }

    #[test]
    fn refused_with_the_forms() {
        // An IPv6 address with a port glued on, as `$(NODE_IP):19419`
        // gives it: not an address, and not read as one.
        for bad in [
            "2001:db8::5:19419",
            "",
            "localhost:19419",
            "192.0.2.1:",
            "192.0.2.1:99999",
            "[192.0.2.1]",
            "[2001:db8::5",
        ] {
            let e = parse_listen(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("[IPV6]:PORT"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_default_is_on_the_default_port() {
        let addr = parse_listen(crate::serve::DEFAULT_LISTEN).unwrap();
        assert_eq!(addr.port(), DEFAULT_PORT);
        assert!(addr.ip().is_loopback());
    }
}
