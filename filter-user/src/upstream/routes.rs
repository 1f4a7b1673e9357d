//! Routes as values: FlowSpec rules (RFC 8955 for IPv4, RFC 8956 for IPv6:
//! the match components this filter can fill and the traffic-rate action)
//! and blackhole routes (RFC 7999), rendered for the speakers that carry
//! them.

use std::fmt;

use filter_common::{FAMILY_V4, IPPROTO_TCP, IPPROTO_UDP};

use crate::rules::Prefix;

/// RFC 7999's well-known BLACKHOLE community.
pub(crate) const BLACKHOLE_COMMUNITY: &str = "65535:666";

/// What the router does with matching traffic: the traffic-rate extended
/// community (rate 0 is discard).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Action {
    Discard,
    RateLimit { bytes_per_s: u64 },
}

/// An inclusive range of a numeric component; `lo == hi` is one value.
pub(crate) type Span = (u16, u16);

#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct FlowSpec {
    #[serde(with = "prefix_text")]
    pub(crate) dst: Prefix,
    #[serde(with = "prefix_text::option")]
    pub(crate) src: Option<Prefix>,
    pub(crate) proto: Option<u8>,
    pub(crate) src_ports: Option<Span>,
    pub(crate) dst_ports: Option<Span>,
    /// RFC 8955: the IPv4 total length; RFC 8956: the IPv6 payload length.
    pub(crate) pkt_len: Option<Span>,
    pub(crate) action: Action,
}

/// Serializable for the state file, which keeps what the speaker holds
/// across a serve that died without withdrawing it.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    FlowSpec(FlowSpec),
    /// The host's own address, for the upstream to drop everything to it.
    Blackhole {
        #[serde(with = "prefix_text")]
        dst: Prefix,
    },
}

/// Prefixes as their text ("192.0.2.1/32") in JSON.
mod prefix_text {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    use crate::rules::{Prefix, prefixes::parse_prefix};

    pub(crate) fn serialize<S: Serializer>(p: &Prefix, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Prefix, D::Error> {
        parse_prefix(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            p: &Option<Prefix>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match p {
                Some(p) => s.collect_str(p),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Prefix>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| parse_prefix(&t).map_err(D::Error::custom))
                .transpose()
        }
    }
}

impl Route {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Route::FlowSpec(_) => "flowspec",
            Route::Blackhole { .. } => "blackhole",
        }
    }

    pub(crate) fn is_v4(&self) -> bool {
        let dst = match self {
            Route::FlowSpec(f) => &f.dst,
            Route::Blackhole { dst } => dst,
        };
        dst.family == FAMILY_V4
    }
}

fn proto_name(p: u8) -> String {
    match p {
        IPPROTO_UDP => "udp".into(),
        IPPROTO_TCP => "tcp".into(),
        other => other.to_string(),
    }
}

/// A numeric component in the operator syntax GoBGP and ExaBGP share:
/// `==123` or `>=1024&<=65535`.
fn numeric((lo, hi): Span) -> String {
    if lo == hi {
        format!("=={lo}")
    } else {
        format!(">={lo}&<={hi}")
    }
}

impl FlowSpec {
    /// Match components as (GoBGP keyword, value), in RFC type order.
    pub(crate) fn components(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("destination", self.dst.to_string())];
        out.extend(self.src.map(|s| ("source", s.to_string())));
        out.extend(self.proto.map(|p| ("protocol", proto_name(p))));
        out.extend(self.dst_ports.map(|r| ("destination-port", numeric(r))));
        out.extend(self.src_ports.map(|r| ("source-port", numeric(r))));
        out.extend(self.pkt_len.map(|r| ("packet-length", numeric(r))));
        out
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Discard => f.write_str("discard"),
            Action::RateLimit { bytes_per_s } => write!(f, "rate-limit {bytes_per_s}"),
        }
    }
}

/// One line, for logs, the state file and `filterctl upstream`.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::FlowSpec(spec) => {
                f.write_str("flowspec")?;
                for (k, v) in spec.components() {
                    write!(f, " {k} {v}")?;
                }
                write!(f, " then {}", spec.action)
            }
            Route::Blackhole { dst } => {
                write!(f, "blackhole {dst} community {BLACKHOLE_COMMUNITY}")
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::prefixes::parse_prefix;

    pub(crate) fn flow(dst: &str, src: Option<&str>) -> FlowSpec {
        FlowSpec {
            dst: parse_prefix(dst).unwrap(),
            src: src.map(|s| parse_prefix(s).unwrap()),
            proto: Some(IPPROTO_UDP),
            src_ports: Some((123, 123)),
            dst_ports: None,
            pkt_len: Some((128, 65535)),
            action: Action::Discard,
        }
    }

    #[test]
    fn renders_components_in_rfc_order() {
        let mut f = flow("192.0.2.1/32", Some("198.51.100.0/24"));
        f.dst_ports = Some((1024, 65535));
        assert_eq!(
            Route::FlowSpec(f.clone()).to_string(),
            "flowspec destination 192.0.2.1/32 source 198.51.100.0/24 protocol udp \
             destination-port >=1024&<=65535 source-port ==123 packet-length >=128&<=65535 then discard"
        );
        f.action = Action::RateLimit { bytes_per_s: 1000 };
        assert!(
            Route::FlowSpec(f)
                .to_string()
                .ends_with("then rate-limit 1000")
        );
        let b = Route::Blackhole {
            dst: parse_prefix("2001:db8::1/128").unwrap(),
        };
        assert_eq!(
            b.to_string(),
            "blackhole 2001:db8::1/128 community 65535:666"
        );
        assert!(!b.is_v4());
        assert_eq!(b.kind(), "blackhole");
    }

    #[test]
    fn routes_survive_a_trip_through_json() {
        let routes = vec![
            Route::FlowSpec(flow("192.0.2.1/32", Some("198.51.100.0/24"))),
            Route::FlowSpec(flow("2001:db8::1/128", None)),
            Route::Blackhole {
                dst: parse_prefix("192.0.2.1/32").unwrap(),
            },
        ];
        let text = serde_json::to_string(&routes).unwrap();
        assert!(text.contains("\"198.51.100.0/24\""), "{text}");
        let back: Vec<Route> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, routes);
    }
}
