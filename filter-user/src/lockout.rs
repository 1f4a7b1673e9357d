//! The lockout guard: a rule set that would drop traffic from this host's
//! own addresses, or from the operator's SSH session, is refused unless
//! forced. Deny entries and TCP drop rules are what can cut an operator off;
//! limits only slow a source down, and allow entries win over everything.

use std::net::IpAddr;

use filter_common::{ACTION_DROP, FAMILY_V4, FAMILY_V6, IPPROTO_TCP};

use crate::{
    rules::{RuleSet, prefixes::Prefix},
    sys,
};

/// An address to protect and why.
#[derive(Clone, Debug)]
pub(crate) struct Protected {
    pub(crate) addr: IpAddr,
    pub(crate) why: String,
    /// For an SSH session: (client port, server port).
    pub(crate) ssh_ports: Option<(u16, u16)>,
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
pub(crate) fn protected_addresses() -> Vec<Protected> {
    let mut out: Vec<Protected> = sys::interface_addresses()
        .into_iter()
        .filter(|(_, addr)| {
            let link_local = matches!(addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            !addr.is_loopback() && !link_local
        })
        .map(|(name, addr)| Protected {
            addr,
            why: format!("an address of this host ({name})"),
            ssh_ports: None,
        })
        .collect();
    out.extend(ssh_client());
    out
}

/// The client of the SSH session filterctl runs in, from SSH_CONNECTION
/// ("client port server port") or SSH_CLIENT ("client port serverport"):
/// in its own environment, or else in its parents' (sudo's env_reset drops
/// both, but sudo and the shell that ran it still hold them).
pub(crate) fn ssh_client() -> Option<Protected> {
    let own = |name: &str| std::env::var(name).ok();
    if let Some((addr, ports)) = from_environment(own) {
        return Some(client(
            addr,
            ports,
            "the client of your SSH session".to_string(),
        ));
    }
    let mut pid = crate::sys::parent_pid();
    for _ in 0..16 {
        if pid <= 1 {
            break;
        }
        let environ = crate::sys::process_environ(pid).unwrap_or_default();
        if let Some((addr, ports)) = from_environment(|name| environ_var(&environ, name)) {
            return Some(client(
                addr,
                ports,
                format!(
                    "the client of your SSH session (from the environment of process {pid}, a parent of filterctl)"
                ),
            ));
        }
        pid = crate::sys::process_parent(pid)?;
    }
    None
}

fn client(addr: IpAddr, ports: (u16, u16), why: String) -> Protected {
    Protected {
        addr,
        why,
        ssh_ports: Some(ports),
    }
}

/// The client address and (client, server) ports from SSH_CONNECTION or
/// SSH_CLIENT, as `var` reads them.
fn from_environment(var: impl Fn(&str) -> Option<String>) -> Option<(IpAddr, (u16, u16))> {
    let (text, server_field) = match var("SSH_CONNECTION") {
        Some(c) => (c, 3),
        None => (var("SSH_CLIENT")?, 2),
    };
    let f: Vec<&str> = text.split_whitespace().collect();
    let addr = f.first()?.parse().ok()?;
    Some((
        addr,
        (f.get(1)?.parse().ok()?, f.get(server_field)?.parse().ok()?),
    ))
}

/// `name`'s value in a /proc/PID/environ (NUL-separated NAME=value).
fn environ_var(environ: &[u8], name: &str) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        String::from_utf8(rest.to_vec()).ok()
    })
}

/// A rule set that would cut off the operator or this host, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing a rule set that would lock you out: {}. Add the address to `allow`, or use --force if you mean it",
    .problems.join("; ")
)]
pub(crate) struct Lockout {
    problems: Vec<String>,
}

/// Why `set` would cut off one of `protected`, if it would.
pub(crate) fn check(set: &RuleSet, protected: &[Protected]) -> Result<(), Lockout> {
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
        Err(Lockout { problems })
    }
}

/// Why a ban of `target` would cut off everyone, this host or the
/// operator, if it would.
pub(crate) fn check_ban(target: &Prefix, protected: &[Protected]) -> Result<(), Lockout> {
    let mut problems = Vec::new();
    if target.len == 0 {
        problems.push(format!("a ban of {target} covers every source"));
    }
    for p in protected {
        let (family, bytes) = as_bytes(p.addr);
        if target.contains(family, &bytes) {
            problems.push(format!("a ban of {target} covers {}, {}", p.addr, p.why));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Lockout { problems })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ssh_client_from_an_environment_of_either_form() {
        let env = b"HOME=/root\0SSH_CONNECTION=198.51.100.7 52100 192.0.2.1 22\0TERM=xterm\0";
        let got = from_environment(|n| environ_var(env, n));
        assert_eq!(got, Some(("198.51.100.7".parse().unwrap(), (52100, 22))));
        let env = b"SSH_CLIENT=2001:db8::7 52100 2222\0";
        let got = from_environment(|n| environ_var(env, n));
        assert_eq!(got, Some(("2001:db8::7".parse().unwrap(), (52100, 2222))));
        assert_eq!(
            from_environment(|n| environ_var(b"SSH_CONNECTIONX=1\0", n)),
            None
        );
        assert_eq!(
            from_environment(|n| environ_var(b"SSH_CLIENT=junk\0", n)),
            None
        );
        // The parent chain is read from /proc.
        let me = std::process::id();
        assert_eq!(
            crate::sys::process_parent(me),
            Some(crate::sys::parent_pid())
        );
    }

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
        let e = check(&set, &[host("192.0.2.1")]).unwrap_err().to_string();
        assert!(
            e.contains("deny entry 192.0.2.0/24 covers 192.0.2.1, an address of this host (eth0)"),
            "{e}"
        );
        assert!(check(&set, &[host("198.51.100.1")]).is_ok());
        let e = check(&set, &[ssh("192.0.2.200")]).unwrap_err().to_string();
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
        let e = check(&set, &[ssh("198.51.100.9")]).unwrap_err().to_string();
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
    fn bans_that_cover_everyone_or_the_operator_are_refused() {
        let p = |t: &str| crate::rules::prefixes::parse_prefix(t).unwrap();
        let e = check_ban(&p("0.0.0.0/0"), &[]).unwrap_err().to_string();
        assert!(e.contains("covers every source"), "{e}");
        let e = check_ban(&p("192.0.2.0/24"), &[ssh("192.0.2.9")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("covers 192.0.2.9, the client of your SSH session"),
            "{e}"
        );
        assert!(check_ban(&p("198.51.100.7"), &[host("192.0.2.1")]).is_ok());
    }

    #[test]
    fn finds_this_hosts_addresses() {
        // Whatever the machine, the list never holds loopback.
        assert!(protected_addresses().iter().all(|p| !p.addr.is_loopback()));
    }
}
