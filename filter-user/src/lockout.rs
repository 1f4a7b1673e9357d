//! The lockout guard: a rule set that would drop traffic from this host's
//! own addresses, or from the operator's SSH session, is refused unless
//! forced. Deny entries and TCP drop rules are what can cut an operator off;
//! limits only slow a source down, and allow entries win over everything.

use std::{ffi::CStr, net::IpAddr};

use filter_common::{ACTION_DROP, FAMILY_V4, FAMILY_V6, IPPROTO_TCP};

use crate::{prefixes::Prefix, rules::RuleSet};

/// An address to protect and why.
#[derive(Clone, Debug)]
pub struct Protected {
    pub addr: IpAddr,
    pub why: String,
    /// For an SSH session: (client port, server port).
    pub ssh_ports: Option<(u16, u16)>,
}

fn as_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (FAMILY_V4, b)
        }
        IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
    }
}

/// Addresses of this host's interfaces (in the current network namespace),
/// loopback and link-local excluded, and the SSH session's client.
pub fn protected_addresses() -> Vec<Protected> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut ifap) } == 0 {
        let mut cur = ifap;
        while !cur.is_null() {
            // SAFETY: cur is a node of the list getifaddrs returned.
            let ifa = unsafe { &*cur };
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() {
                continue;
            }
            // SAFETY: ifa_addr points to a sockaddr of the family it says.
            let addr = unsafe {
                match (*ifa.ifa_addr).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes())
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        IpAddr::from(sin6.sin6_addr.s6_addr)
                    }
                    _ => continue,
                }
            };
            let link_local = matches!(addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            if addr.is_loopback() || link_local {
                continue;
            }
            // SAFETY: ifa_name is a NUL-terminated interface name.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
            out.push(Protected {
                addr,
                why: format!("an address of this host ({name})"),
                ssh_ports: None,
            });
        }
        // SAFETY: ifap came from getifaddrs.
        unsafe { libc::freeifaddrs(ifap) };
    }
    out.extend(ssh_client());
    out
}

/// The client of the SSH session filterctl runs in, from SSH_CONNECTION
/// ("client port server port") or SSH_CLIENT ("client port serverport").
fn ssh_client() -> Option<Protected> {
    let (client, cport, sport) = if let Ok(c) = std::env::var("SSH_CONNECTION") {
        let f: Vec<&str> = c.split_whitespace().collect();
        (
            f.first()?.to_string(),
            f.get(1)?.parse().ok()?,
            f.get(3)?.parse().ok()?,
        )
    } else {
        let c = std::env::var("SSH_CLIENT").ok()?;
        let f: Vec<&str> = c.split_whitespace().collect();
        (
            f.first()?.to_string(),
            f.get(1)?.parse().ok()?,
            f.get(2)?.parse().ok()?,
        )
    };
    Some(Protected {
        addr: client.parse().ok()?,
        why: "the client of your SSH session".to_string(),
        ssh_ports: Some((cport, sport)),
    })
}

/// Why `set` would cut off one of `protected`, if it would.
pub fn check(set: &RuleSet, protected: &[Protected]) -> Result<(), String> {
    let mut problems = Vec::new();
    for p in protected {
        let (family, bytes) = as_bytes(p.addr);
        let covers = |list: &[Prefix]| list.iter().find(|x| x.contains(family, &bytes)).copied();
        if covers(&set.allow).is_some() {
            continue;
        }
        if let Some(d) = covers(&set.deny) {
            problems.push(format!("deny entry {d} covers {}, {}", p.addr, p.why));
        }
        if let Some((cport, sport)) = p.ssh_ports {
            for r in &set.rules {
                let hits = r.proto == IPPROTO_TCP
                    && r.rule.action == ACTION_DROP
                    && (r.src_ports.0..=r.src_ports.1).contains(&cport)
                    && (r.rule.dst_port_lo..=r.rule.dst_port_hi).contains(&sport);
                if hits {
                    problems.push(format!(
                        "rule {:?} drops TCP from port {cport} to port {sport}: {}",
                        r.name, p.why
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "refusing a rule set that would lock you out: {}. Add the address to `allow`, or use --force if you mean it",
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse;

    fn host(ip: &str) -> Protected {
        Protected {
            addr: ip.parse().unwrap(),
            why: "an address of this host (eth0)".into(),
            ssh_ports: None,
        }
    }

    fn ssh(ip: &str) -> Protected {
        Protected {
            addr: ip.parse().unwrap(),
            why: "the client of your SSH session".into(),
            ssh_ports: Some((51234, 22)),
        }
    }

    const RULE: &str =
        "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n";

    #[test]
    fn deny_covering_the_host_or_the_operator_is_refused() {
        let set = parse("t.toml", &format!("deny = [\"192.0.2.0/24\"]\n{RULE}")).unwrap();
        let e = check(&set, &[host("192.0.2.1")]).unwrap_err();
        assert!(
            e.contains("deny entry 192.0.2.0/24 covers 192.0.2.1, an address of this host (eth0)"),
            "{e}"
        );
        assert!(check(&set, &[host("198.51.100.1")]).is_ok());
        let e = check(&set, &[ssh("192.0.2.200")]).unwrap_err();
        assert!(e.contains("SSH session"), "{e}");
    }

    #[test]
    fn allow_wins_over_deny() {
        let set = parse(
            "t.toml",
            &format!("allow = [\"192.0.2.1\"]\ndeny = [\"192.0.2.0/24\"]\n{RULE}"),
        )
        .unwrap();
        assert!(check(&set, &[host("192.0.2.1")]).is_ok());
    }

    #[test]
    fn tcp_drop_rules_hitting_the_ssh_session_are_refused() {
        let set = parse(
            "t.toml",
            "[[rule]]\nname = \"no-ssh\"\nprotocol = \"tcp\"\ndst_port = 22\naction = \"drop\"\n",
        )
        .unwrap();
        let e = check(&set, &[ssh("198.51.100.9")]).unwrap_err();
        assert!(
            e.contains("rule \"no-ssh\" drops TCP from port 51234 to port 22"),
            "{e}"
        );
        // Not a lockout for someone who is not on that session.
        assert!(check(&set, &[host("192.0.2.1")]).is_ok());
        let udp = parse("t.toml", RULE).unwrap();
        assert!(check(&udp, &[ssh("198.51.100.9")]).is_ok());
    }

    #[test]
    fn finds_this_hosts_addresses() {
        // Whatever the machine, the list never holds loopback.
        assert!(protected_addresses().iter().all(|p| !p.addr.is_loopback()));
    }
}
