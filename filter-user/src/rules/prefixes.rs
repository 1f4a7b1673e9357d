//! Source prefixes for allow and deny lists: "192.0.2.0/24", "2001:db8::/32"
//! or a bare address, inline or one a line in a plain list file, so that
//! published blocklists can be used as they are.

use std::net::IpAddr;

use filter_common::{FAMILY_V4, FAMILY_V6};

/// Text that is not a prefix, and what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PrefixError {
    #[error("{0:?} is not an IP prefix: write \"192.0.2.0/24\", \"2001:db8::/32\" or an address")]
    NotPrefix(String),
    #[error("prefix length in {text:?} must be 0 to {max}")]
    Length { text: String, max: u8 },
    #[error("{text:?} has bits set past its prefix length: did you mean {meant}?")]
    HostBits { text: String, meant: Prefix },
}

/// A line of a list file that holds no prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub(crate) struct ListError {
    /// 1-based.
    pub(crate) line: usize,
    /// 1-based, in characters: where the line's first word starts.
    pub(crate) column: usize,
    pub(crate) error: ListLineError,
}

/// What is wrong with a line of a list file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ListLineError {
    /// Text that is not even an attempt at a prefix: the file may be
    /// something else than a list (a password file), so it is not quoted.
    #[error(
        "line {0} holds no IP prefix (its text is not shown: is this a list file?); a list holds one prefix a line, like \"192.0.2.0/24\""
    )]
    NoPrefix(usize),
    #[error(transparent)]
    Prefix(#[from] PrefixError),
}

/// A prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub(crate) family: u8,
    /// IPv4 in the first 4 bytes.
    pub(crate) addr: [u8; 16],
    pub(crate) len: u8,
}

impl Prefix {
    pub fn contains(&self, family: u8, addr: &[u8; 16]) -> bool {
        family == self.family && filter_common::decide::mask(addr, self.len) == self.addr
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip: IpAddr = if self.family == FAMILY_V4 {
            IpAddr::from([self.addr[0], self.addr[1], self.addr[2], self.addr[3]])
        } else {
            IpAddr::from(self.addr)
        };
        write!(f, "{ip}/{}", self.len)
    }
}

pub(crate) fn parse_prefix(text: &str) -> Result<Prefix, PrefixError> {
    let t = text.trim();
    let (addr, len) = match t.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (t, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| PrefixError::NotPrefix(t.to_string()))?;
    let (family, max, bytes) = match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (FAMILY_V4, 32, b)
        }
        IpAddr::V6(v6) => (FAMILY_V6, 128, v6.octets()),
    };
    let len = match len {
        None => max,
        Some(l) => {
            l.parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| PrefixError::Length {
                    text: t.to_string(),
                    max,
                })?
        }
    };
    let masked = filter_common::decide::mask(&bytes, len);
    if masked != bytes {
        return Err(PrefixError::HostBits {
            text: t.to_string(),
            meant: Prefix {
                family,
                addr: masked,
                len,
            },
        });
    }
    Ok(Prefix {
        family,
        addr: masked,
        len,
    })
}

/// Prefixes of a list file: one per line; blank lines and text after '#'
/// or ';' are ignored. Errors carry the 1-based line number.
pub(crate) fn parse_list(text: &str) -> Result<Vec<Prefix>, ListError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.split(['#', ';']).next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        // Published lists often carry extra columns after the prefix.
        let first = body.split_whitespace().next().unwrap_or(body);
        out.push(parse_prefix(first).map_err(|e| {
            let lead = line.len() - line.trim_start().len();
            ListError {
                line: i + 1,
                column: line[..lead].chars().count() + 1,
                error: if looks_like_prefix(first) {
                    ListLineError::Prefix(e)
                } else {
                    ListLineError::NoPrefix(i + 1)
                },
            }
        })?);
    }
    Ok(out)
}

/// Text made only of what IP prefixes are written with, with a dot or a
/// colon, and no longer than the longest prefix: a mistyped prefix, safe to
/// quote back, rather than a line of some other kind of file (a hex secret
/// such as /etc/machine-id's line, a megabyte of one line).
fn looks_like_prefix(word: &str) -> bool {
    word.len() <= "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128".len()
        && word.contains(['.', ':'])
        && word
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hex secret (a line of /etc/machine-id) and a megabyte of one line
    /// are not quoted back; a mistyped address is.
    #[test]
    fn list_errors_quote_only_what_looks_like_a_prefix() {
        let e = parse_list("0123456789abcdef0123456789abcdef\n").unwrap_err();
        assert_eq!(e.error, ListLineError::NoPrefix(1));
        let long = format!("1.2.3.4{}\n", "5".repeat(1 << 20));
        let e = parse_list(&long).unwrap_err();
        assert_eq!(e.error, ListLineError::NoPrefix(1));
        assert!(e.to_string().len() < 300, "{} bytes", e.to_string().len());
        let e = parse_list("198.51.100.300\n").unwrap_err();
        assert!(e.to_string().contains("198.51.100.300"), "{e}");
    }

    #[test]
    fn prefixes() {
        let p = parse_prefix("192.0.2.0/24").unwrap();
        assert_eq!(
            (p.family, p.len, &p.addr[..4]),
            (FAMILY_V4, 24, &[192, 0, 2, 0][..])
        );
        assert_eq!(parse_prefix("198.51.100.7").unwrap().len, 32);
        assert_eq!(parse_prefix("2001:db8::/32").unwrap().len, 32);
        assert_eq!(
            parse_prefix("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(
            parse_prefix("192.0.2.1/24")
                .unwrap_err()
                .to_string()
                .contains("did you mean 192.0.2.0/24")
        );
        assert!(
            parse_prefix("192.0.2.0/33")
                .unwrap_err()
                .to_string()
                .contains("0 to 32")
        );
        assert!(
            parse_prefix("example.com")
                .unwrap_err()
                .to_string()
                .contains("not an IP prefix")
        );
        assert!(p.contains(FAMILY_V4, &parse_prefix("192.0.2.77").unwrap().addr));
        assert!(!p.contains(FAMILY_V4, &parse_prefix("192.0.3.1").unwrap().addr));
    }

    #[test]
    fn list_files() {
        let text =
            "# blocklist\n\n203.0.113.0/24 ; SBL123\n198.51.100.9\t# one host\n2001:db8:bad::/48\n";
        let l = parse_list(text).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(
            parse_list("192.0.2.0/24\nnot-a-prefix\n").unwrap_err().line,
            2
        );
    }

    #[test]
    fn bad_list_lines_are_quoted_only_when_they_look_like_prefixes() {
        let shadow = "root:$6$Zq9sEcReT$hashhashhash:19700:0:99999:7:::\n";
        let e = parse_list(shadow).unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        let m = e.to_string();
        assert!(m.contains("line 1 holds no IP prefix"), "{m}");
        assert!(!m.contains("root") && !m.contains("Zq9s"), "{m}");

        let e = parse_list("# list\n  192.0.2.0/33\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.to_string().contains("\"192.0.2.0/33\""), "{e}");
        let e = parse_list("2001:db8::g/32\n").unwrap_err();
        assert!(
            e.to_string().contains("holds no IP prefix"),
            "a non-hex letter is not quoted: {e}"
        );
        let e = parse_list("198.51.100.300\n").unwrap_err();
        assert!(e.to_string().contains("\"198.51.100.300\""), "{e}");
    }
}
