//! The reflection vectors filterctl knows, in one table, [`CATALOGUE`]: the
//! reply guard's default ports and each vector's own budget, the
//! reply-guard tests' floods and the table in docs/operations.md come from
//! it (with the request shapes and port pairs of
//! `filter_common::shapes`), and tests here fail when the presets
//! (rules/vectors.toml, rules/default.toml) or the docs drift from it.

use filter_common::GuardPort;

/// How the reply guard treats a vector's source port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Request and reply: guarded, with the rule file's budget (or the
    /// vector's own, [`Budget`]).
    Replies,
    /// Discovery asked of a multicast group, which many devices answer:
    /// guarded, with [`DISCOVERY_PACKETS`] replies a request.
    Discovery,
    /// A stream: one request is followed by far more replies than any
    /// budget allows, so the guard leaves it out; only its preset names it.
    Stream,
}

/// A protocol whose replies, from one well-known UDP source port, are
/// larger than its requests and so get reflected at spoofed victims.
///
/// Entries are built with [`Vector::new`] and its `const` setters, so that
/// a field added later (the request shapes) takes a default and the
/// existing entries stay as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Vector {
    /// Short name; the preset in rules/vectors.toml is the rule
    /// `{name}-amplification`.
    pub name: &'static str,
    /// What the docs call the protocol.
    pub(crate) protocol: &'static str,
    /// The UDP source port of its replies.
    pub port: u16,
    pub(crate) guard: Guard,
    /// UDP payload of a typical amplified reply, in bytes (what the tests
    /// flood with; above the MTU, the reply arrives fragmented).
    pub reply_bytes: usize,
    /// What its protocol asks of a request's budget.
    pub budget: Budget,
}

/// Replies a discovery request may draw: a whole network answers it.
pub const DISCOVERY_PACKETS: u32 = 256;

/// What a vector's protocol asks of its requests' budget, over the rule
/// file's `[reply_guard]` keys, which give the rest; a
/// `[reply_guard.port.N]` section overrides both. `None`: the rule file's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Replies a request may draw (a game server's bursts per client
    /// packet; a network's answers to discovery).
    pub packets: Option<u32>,
    /// How long a request to a group is answered, in ms (SSDP: devices
    /// wait up to the search's MX, 120 s at most).
    pub group_window_ms: Option<u32>,
    /// Notifications and window (ms) of a request that subscribes to them
    /// (CoAP Observe; see `filter_common::shapes::subscribes`).
    pub observe: Option<(u32, u32)>,
}

impl Budget {
    const NONE: Budget = Budget {
        packets: None,
        group_window_ms: None,
        observe: None,
    };

    /// `base` with this protocol's own values.
    pub fn over(&self, base: GuardPort) -> GuardPort {
        let (observe_packets, observe_expiry_ms) = self
            .observe
            .unwrap_or((base.observe_packets, base.observe_expiry_ms));
        GuardPort {
            packets: self.packets.unwrap_or(base.packets),
            multicast_expiry_ms: self.group_window_ms.unwrap_or(base.multicast_expiry_ms),
            observe_packets,
            observe_expiry_ms,
            ..base
        }
    }

    /// The docs' words for it; empty when the rule file's keys decide.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.packets {
            parts.push(format!("{n} replies a request"));
        }
        if let Some(ms) = self.group_window_ms {
            parts.push(format!("group requests answered for {}", span(ms)));
        }
        if let Some((n, ms)) = self.observe {
            parts.push(format!("a subscription (Observe): {n} in {}", span(ms)));
        }
        parts.join("; ")
    }
}

/// A window in the docs' words: whole hours, minutes or seconds.
fn span(ms: u32) -> String {
    let s = ms / 1000;
    match s {
        _ if s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{} min", s / 60),
        _ => format!("{s} s"),
    }
}

impl Vector {
    /// A request-reply vector, guarded with the rule file's budget.
    pub(crate) const fn new(
        name: &'static str,
        protocol: &'static str,
        port: u16,
        reply_bytes: usize,
    ) -> Self {
        Self {
            name,
            protocol,
            port,
            guard: Guard::Replies,
            reply_bytes,
            budget: Budget::NONE,
        }
    }

    /// Marks a multicast discovery protocol, with its budget.
    pub const fn discovery(self) -> Self {
        Self {
            guard: Guard::Discovery,
            ..self
        }
        .packets(DISCOVERY_PACKETS)
    }

    /// Replies a request may draw, whatever the rule file's `packets`.
    pub const fn packets(self, n: u32) -> Self {
        let mut v = self;
        v.budget.packets = Some(n);
        v
    }

    /// How long a request to a group is answered, in seconds.
    pub const fn group_window(self, seconds: u32) -> Self {
        let mut v = self;
        v.budget.group_window_ms = Some(seconds * 1000);
        v
    }

    /// The budget of a request that subscribes to notifications.
    pub const fn observe(self, packets: u32, seconds: u32) -> Self {
        let mut v = self;
        v.budget.observe = Some((packets, seconds * 1000));
        v
    }

    /// Marks a stream, which the guard leaves out.
    pub(crate) const fn stream(self) -> Self {
        Self {
            guard: Guard::Stream,
            ..self
        }
    }

    /// Whether the reply guard holds its port by default.
    pub(crate) fn guarded(&self) -> bool {
        self.guard != Guard::Stream
    }
}

/// Every vector, by source port; its preset is in rules/vectors.toml,
/// NTP's and SSDP's in rules/default.toml (sources: the comments there).
/// Vectors without a fixed source port (BitTorrent, Kad) can't be told by
/// their port and are left out.
pub const CATALOGUE: &[Vector] = &[
    Vector::new("qotd", "QOTD", 17, 500),
    Vector::new("chargen", "CharGEN", 19, 1000),
    Vector::new("dns", "DNS", 53, 3500),
    Vector::new("tftp", "TFTP", 69, 516),
    Vector::new("portmap", "Portmap (rpcbind)", 111, 1000),
    Vector::new("ntp", "NTP", 123, 468),
    Vector::new("netbios-ns", "NetBIOS Name Service", 137, 200),
    Vector::new("snmp", "SNMP", 161, 1200),
    Vector::new("cldap", "CLDAP", 389, 3000),
    Vector::new("slp", "SLP", 427, 1400),
    Vector::new("dtls", "DTLS (and QUIC)", 443, 1200).stream(),
    Vector::new("ripv1", "RIPv1", 520, 504),
    Vector::new("openvpn", "OpenVPN", 1194, 100).stream(),
    Vector::new("mssql-ssrp", "MS-SQL Server Resolution (SSRP)", 1434, 600),
    Vector::new("citrix-ima", "Citrix ICA Browser / IMA", 1604, 400),
    // Devices answer an M-SEARCH within its MX: up to 120 s (UPnP 1.0).
    Vector::new("ssdp", "SSDP", 1900, 300)
        .discovery()
        .group_window(125),
    Vector::new("arms", "ARMS (Apple Remote Desktop)", 3283, 1000),
    Vector::new("rdp-udp", "RDP over UDP", 3389, 1232).stream(),
    Vector::new("wsd", "WS-Discovery", 3702, 1000).discovery(),
    Vector::new("mdns", "mDNS", 5353, 400).discovery(),
    // A server notifies an observer at will (RFC 7641), for as long as
    // the observer keeps its interest; a re-registration renews this.
    Vector::new("coap", "CoAP", 5683, 500).observe(4096, 3600),
    Vector::new("ubiquiti", "Ubiquiti discovery", 10001, 150),
    Vector::new("tp240", "Mitel TP-240", 10074, 1000),
    Vector::new("memcached", "memcached", 11211, 1400),
    // Game servers on these ports: a client's packets renew its flow, and
    // the server sends bursts between them (snapshots, downloads).
    Vector::new("steam-a2s", "Steam server queries (A2S)", 27015, 200).packets(1024),
    Vector::new("quake3", "Quake 3", 27960, 1000).packets(1024),
    Vector::new("plex-gdm", "Plex GDM discovery", 32414, 260),
    Vector::new("jenkins", "Jenkins auto-discovery", 33848, 250),
    Vector::new("dhdiscover", "DHDiscover (Dahua)", 37810, 800),
];

/// The vectors of `catalogue` the reply guard holds by default, in its
/// order: the guard's default ports and the tests' floods.
pub fn guarded(catalogue: &[Vector]) -> impl Iterator<Item = &Vector> {
    catalogue.iter().filter(|v| v.guarded())
}

/// The lines around the generated table in docs/operations.md.
#[cfg(test)]
pub(crate) const DOCS_BEGIN: &str =
    "<!-- vectors: generated from CATALOGUE in filter-user/src/rules/vectors.rs -->";
#[cfg(test)]
pub(crate) const DOCS_END: &str = "<!-- end of vectors -->";

/// The Markdown table docs/operations.md holds between [`DOCS_BEGIN`] and
/// [`DOCS_END`]: one row per vector of `catalogue`, in its order.
#[cfg(test)]
fn docs_table(catalogue: &[Vector]) -> String {
    let mut out = String::from(
        "| Source port | Vector | Reply guard | Its own budget | To a server on the port (request shape) |\n\
         | ---: | --- | --- | --- | --- |\n",
    );
    for v in catalogue {
        let guard = match v.guard {
            Guard::Replies => "guarded",
            Guard::Discovery => "guarded; discovery (asked of a group)",
            Guard::Stream => "left out: a stream",
        };
        // From filter-common's one table of request shapes, which the
        // program and the reference model read too.
        let mut served = match filter_common::shapes::describe(v.port) {
            Some((_, requests, replies)) => format!("passes {requests}; drops {replies}"),
            None if v.guarded() => {
                "cannot be told apart in a few bytes: passes from the same port".to_string()
            }
            None => String::new(),
        };
        if let Some((to, passes, drops)) = filter_common::shapes::describe_pair(v.port) {
            served.push_str(&format!(
                "; to a server on {to} (a pair): passes {passes}; drops {drops}"
            ));
        }
        let budget = match v.budget.describe() {
            _ if !v.guarded() => String::new(),
            own if own.is_empty() => "`[reply_guard]`'s".to_string(),
            own => own,
        };
        out.push_str(&format!(
            "| {} | {} | {guard} | {budget} | {served} |\n",
            v.port, v.protocol
        ));
    }
    out
}

/// The text between [`DOCS_BEGIN`] and [`DOCS_END`] of a document, if it
/// has both.
#[cfg(test)]
pub(crate) fn docs_section(doc: &str) -> Option<&str> {
    let start = doc.find(DOCS_BEGIN)? + DOCS_BEGIN.len();
    let len = doc[start..].find(DOCS_END)?;
    Some(doc[start..start + len].trim_start_matches('\n'))
}

#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeMap, BTreeSet},
        path::{Path, PathBuf},
    };

    use filter_common::MAX_GUARDED_PORTS;

    use super::*;
    use crate::rules::{
        guard::{DEFAULT_BUDGET, default_ports},
        load_file,
        schema::{FileSchema, RangeValue},
    };

    /// A file of the repository, by its path there, and its text.
    fn repo_file(path: &str) -> (PathBuf, String) {
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
        (full, text)
    }

    /// The `[[rule]]`s of a shipped rule file, read with the rule-file
    /// schema: name, source port (single ports only) and whether enabled.
    fn rules_of(path: &str) -> Vec<(String, Option<u16>, bool)> {
        let (_, text) = repo_file(path);
        let file: FileSchema = toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        file.rules
            .into_iter()
            .map(|r| {
                let r = r.into_inner();
                let port = match r.src_port.map(|p| p.into_inner()) {
                    Some(RangeValue::One(p)) => u16::try_from(p).ok(),
                    _ => None,
                };
                (r.name.into_inner(), port, r.enabled != Some(false))
            })
            .collect()
    }

    #[test]
    fn the_catalogue_is_by_port_with_unique_names() {
        for pair in CATALOGUE.windows(2) {
            assert!(
                pair[0].port < pair[1].port,
                "CATALOGUE: {} ({}) before {} ({}): keep it in port order, each port once",
                pair[0].name,
                pair[0].port,
                pair[1].name,
                pair[1].port
            );
        }
        let names: BTreeSet<_> = CATALOGUE.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), CATALOGUE.len(), "CATALOGUE: a name used twice");
        assert!(guarded(CATALOGUE).count() <= MAX_GUARDED_PORTS as usize);
        assert!(CATALOGUE.iter().all(|v| v.reply_bytes > 0 && v.port != 0));
    }

    /// Every vector has its preset: a disabled `{name}-amplification` rule
    /// on its port in rules/vectors.toml, or (NTP, SSDP) a rule on its port
    /// in rules/default.toml; vectors.toml has no other rule.
    #[test]
    fn presets_cover_the_catalogue() {
        let default_ports: BTreeSet<u16> = rules_of("rules/default.toml")
            .into_iter()
            .filter_map(|(_, port, _)| port)
            .collect();
        let presets = rules_of("rules/vectors.toml");
        let mut expected = BTreeMap::new();
        for v in CATALOGUE
            .iter()
            .filter(|v| !default_ports.contains(&v.port))
        {
            expected.insert(format!("{}-amplification", v.name), v);
        }
        for (name, port, enabled) in &presets {
            assert!(
                !enabled,
                "rules/vectors.toml: {name} is enabled; presets are off"
            );
            let Some(want) = expected.remove(name) else {
                panic!(
                    "rules/vectors.toml: {name} is no vector of CATALOGUE in \
                     filter-user/src/rules/vectors.rs (its rule is NAME-amplification)"
                );
            };
            assert_eq!(
                *port,
                Some(want.port),
                "rules/vectors.toml: {name} is not on its vector's port"
            );
        }
        let missing: Vec<String> = expected
            .iter()
            .map(|(name, Vector { protocol, port, .. })| {
                format!(
                    "# --- {protocol}, source port {port} ---\n# Amplification: ...\n\
                     # Also hits: ...\n[[rule]]\nname = \"{name}\"\nenabled = false\n\
                     protocol = \"udp\"\nsrc_port = {port}\naction = \"drop\"\n"
                )
            })
            .collect();
        assert!(
            missing.is_empty(),
            "rules/vectors.toml lacks the presets of catalogue vectors; add, in port order:\n{}",
            missing.join("\n")
        );
    }

    /// rules/default.toml guards the catalogue's ports with the
    /// catalogue's budgets: it lists neither ports nor per-port budgets of
    /// its own, and its section-wide keys reach only the vectors that
    /// have no budget of their own.
    #[test]
    fn the_shipped_profile_follows_the_catalogue() {
        let (path, text) = repo_file("rules/default.toml");
        let guard = load_file(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .reply_guard
            .expect("rules/default.toml turns the reply guard on");
        let want: Vec<u16> = guarded(CATALOGUE).map(|v| v.port).collect();
        assert_eq!(guard.ports.keys().copied().collect::<Vec<_>>(), want);
        let file: FileSchema = toml::from_str(&text).unwrap();
        let section = file.reply_guard.unwrap();
        assert!(
            section.ports.is_none(),
            "rules/default.toml lists its guarded ports: they come from the catalogue"
        );
        assert!(
            section.port.is_empty(),
            "rules/default.toml has [reply_guard.port.N] sections: a protocol's own budget \
             belongs to its vector in CATALOGUE"
        );
        let plain = guard.ports[&53];
        for v in guarded(CATALOGUE) {
            assert_eq!(guard.ports[&v.port], v.budget.over(plain), "{}", v.name);
        }
        for v in CATALOGUE.iter().filter(|v| v.guard == Guard::Discovery) {
            assert_eq!(
                guard.ports[&v.port].packets, DISCOVERY_PACKETS,
                "{}",
                v.name
            );
        }
    }

    /// The budgets the false positives needed: SSDP's group window
    /// covers MX's largest value (120 s), the game ports take a server's
    /// bursts, CoAP's subscriptions have a budget.
    #[test]
    fn protocols_that_ask_for_more_have_their_own_budget() {
        let of = |port: u16| CATALOGUE.iter().find(|v| v.port == port).unwrap().budget;
        assert!(of(1900).group_window_ms.unwrap() > 120_000);
        for game in [27015, 27960] {
            assert!(of(game).packets.unwrap() >= 256, "{game}");
        }
        assert!(of(5683).observe.is_some_and(|(n, ms)| n > 0 && ms > 0));
        assert_eq!(of(53), Budget::default());
    }

    #[test]
    fn docs_list_the_catalogue() {
        let (_, doc) = repo_file("docs/operations.md");
        let expected = docs_table(CATALOGUE);
        let Some(listed) = docs_section(&doc) else {
            panic!(
                "docs/operations.md has no generated vector table: put this under \"When the attackers switch vectors\":\n{DOCS_BEGIN}\n{expected}{DOCS_END}\n"
            );
        };
        assert!(
            listed == expected,
            "docs/operations.md's vector table differs from CATALOGUE in filter-user/src/rules/vectors.rs; between its markers it should read:\n{expected}"
        );
    }

    #[test]
    fn docs_section_between_the_markers() {
        let doc = format!("intro\n{DOCS_BEGIN}\n| a |\n{DOCS_END}\nmore\n");
        assert_eq!(docs_section(&doc), Some("| a |\n"));
        assert_eq!(docs_section(DOCS_BEGIN), None);
    }

    /// A vector added to a copy of the catalogue reaches the guard's
    /// defaults, the docs table and the tests' floods with no other edit; a
    /// stream reaches only the docs.
    #[test]
    fn a_new_vector_needs_only_its_catalogue_entry() {
        let mut scratch = CATALOGUE.to_vec();
        scratch.push(Vector::new("test-echo", "Echo", 7, 700));
        scratch.push(Vector::new("test-stream", "Some stream", 9, 90).stream());

        let ports = default_ports(&scratch, DEFAULT_BUDGET);
        let mut before = default_ports(CATALOGUE, DEFAULT_BUDGET);
        assert_eq!(ports.get(&7), Some(&DEFAULT_BUDGET));
        assert!(!ports.contains_key(&9));
        before.insert(7, DEFAULT_BUDGET);
        assert_eq!(ports, before);

        let docs = docs_table(&scratch);
        assert!(docs.starts_with(&docs_table(CATALOGUE)));
        assert!(
            docs.ends_with(
                "| 7 | Echo | guarded | `[reply_guard]`'s | cannot be told apart in a few bytes: passes from the same port |\n\
                 | 9 | Some stream | left out: a stream |  |  |\n"
            ),
            "{docs}"
        );
        // A budget of its own reaches the guard and the docs too.
        scratch.push(Vector::new("test-game", "Some game", 11, 90).packets(64));
        assert_eq!(default_ports(&scratch, DEFAULT_BUDGET)[&11].packets, 64);
        assert!(docs_table(&scratch).ends_with(
            "| 11 | Some game | guarded | 64 replies a request | \
             cannot be told apart in a few bytes: passes from the same port |\n"
        ));
        scratch.pop();

        // What tests/integration/reply_guard.rs floods: name, port and reply size.
        let floods: Vec<_> = guarded(&scratch)
            .map(|v| (v.name, v.port, v.reply_bytes))
            .collect();
        assert_eq!(floods.last(), Some(&("test-echo", 7, 700)));
        assert_eq!(floods.len(), guarded(CATALOGUE).count() + 1);
    }
}
