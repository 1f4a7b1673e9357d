//! Map names, sizes, keys and values: the contract between the XDP program and
//! filterctl. Every value type is `#[repr(C)]` with explicit padding and a
//! compile-time size check, because both sides read the same bytes.

use core::mem::size_of;

/// Per-CPU `{packets, bytes}` for every [`Reason`] (and the monitor slot).
pub const MAP_STATS: &str = "STATS";
/// Per-CPU `{packets, bytes}` for every rule, indexed like [`MAP_RULES`].
pub const MAP_RULE_STATS: &str = "RULE_STATS";
/// One [`Config`]: switches the controller flips without reloading.
pub const MAP_CONFIG: &str = "CONFIG";
/// One [`Meta`]: which rule set is loaded, kept next to the pins.
pub const MAP_META: &str = "META";
/// [`Rule`] by rule index.
pub const MAP_RULES: &str = "RULES";
/// Chain index (u32) by [`port_slot`]: which rules a (protocol, source port) can hit.
pub const MAP_PORT_CHAINS: &str = "PORT_CHAINS";
/// [`Chain`] by chain index; chain 0 is always empty.
pub const MAP_CHAINS: &str = "CHAINS";

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "filter";

pub const MAX_RULES: u32 = 256;
/// Longest list of candidate rules one (protocol, source port) leads to. The
/// program walks at most this many, whatever the total number of rules.
pub const MAX_CHAIN: usize = 8;
/// Distinct chains: a rule set of N rules splits the port space into at most
/// 2N+1 ranges per protocol, so this covers MAX_RULES with room to spare.
pub const MAX_CHAINS: u32 = 4 * MAX_RULES + 4;
/// UDP and TCP, each with 65536 source ports.
pub const PORT_SLOTS: u32 = 2 * 65536;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Index into [`MAP_PORT_CHAINS`] for a protocol and source port; `None` for
/// protocols that have no ports.
#[inline(always)]
pub fn port_slot(proto: u8, src_port: u16) -> Option<u32> {
    match proto {
        IPPROTO_UDP => Some(src_port as u32),
        IPPROTO_TCP => Some(65536 + src_port as u32),
        _ => None,
    }
}

/// Why a packet got its verdict; the index of its counter in [`MAP_STATS`].
/// The counters of all reasons add up to the frames the program saw.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// IP packet that no rule dropped.
    Pass = 0,
    /// ARP, LLDP and everything else that is not IPv4 or IPv6.
    NonIp = 1,
    /// A rule with action `pass` matched.
    RulePass = 2,
    /// A rule with action `drop` matched.
    RuleDrop = 3,
    /// Truncated frame, IPv4 IHL < 5, lying length fields, IPv6 extension
    /// chain longer than we walk: dropped, the kernel would drop most anyway.
    Malformed = 4,
    /// Non-first fragment (no ports to match), passed by the fragment policy.
    FragmentPass = 5,
    /// Non-first fragment dropped by the fragment policy.
    FragmentDrop = 6,
}

pub const REASON_COUNT: u32 = 7;
/// Extra slot in [`MAP_STATS`]: packets that a reason said to drop but that
/// passed because the filter runs in monitor mode. Not a reason of its own,
/// so the reason counters still add up to the frames seen.
pub const STATS_MONITOR_SLOT: u32 = REASON_COUNT;
pub const STATS_SLOTS: u32 = REASON_COUNT + 1;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::Pass,
        Reason::NonIp,
        Reason::RulePass,
        Reason::RuleDrop,
        Reason::Malformed,
        Reason::FragmentPass,
        Reason::FragmentDrop,
    ];

    /// Stable name used in JSON and Prometheus labels.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::NonIp => "non_ip",
            Reason::RulePass => "rule_pass",
            Reason::RuleDrop => "rule_drop",
            Reason::Malformed => "malformed",
            Reason::FragmentPass => "fragment_pass",
            Reason::FragmentDrop => "fragment_drop",
        }
    }

    pub const fn drops(self) -> bool {
        matches!(
            self,
            Reason::RuleDrop | Reason::Malformed | Reason::FragmentDrop
        )
    }
}

/// Packets and bytes; one per CPU, summed by the controller.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<Counter>() == 16);

pub const ACTION_PASS: u8 = 0;
pub const ACTION_DROP: u8 = 1;

/// Longest payload match, in bytes.
pub const MATCH_MAX: usize = 4;
pub const RULE_NAME_LEN: usize = 32;
/// Furthest payload offset a match may start at; keeps the read bounded for
/// the verifier and within the first bytes of the payload.
pub const MATCH_OFFSET_MAX: u16 = 64;

/// One match rule. The protocol and source port range are not stored here:
/// they decide which chains list the rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub dst_port_lo: u16,
    pub dst_port_hi: u16,
    /// L4 payload length range, inclusive.
    pub len_lo: u16,
    pub len_hi: u16,
    pub match_offset: u16,
    /// 0 means no payload match.
    pub match_len: u8,
    pub action: u8,
    pub match_mask: [u8; MATCH_MAX],
    pub match_value: [u8; MATCH_MAX],
    /// Rule name, NUL-padded; only the controller reads it (for stats).
    pub name: [u8; RULE_NAME_LEN],
}
const _: () = assert!(size_of::<Rule>() == 52);

/// Candidate rules for one (protocol, source port), in priority order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub rules: [u16; MAX_CHAIN],
    pub len: u16,
    pub _pad: [u8; 6],
}
const _: () = assert!(size_of::<Chain>() == 24);

/// Non-first fragments are dropped instead of passed.
pub const CONFIG_FRAGMENT_DROP: u32 = 1 << 0;
/// Count what would be dropped, but pass it.
pub const CONFIG_MONITOR: u32 = 1 << 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Config>() == 8);

pub const META_SOURCE_LEN: usize = 256;

/// What is loaded, written by the controller next to the pins so that a
/// restarted controller or a second operator sees which rules run.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// SHA-256 of the rule file's bytes.
    pub digest: [u8; 32],
    pub loaded_at_unix: u64,
    /// 1 native, 2 generic (skb), 3 offload.
    pub attach_mode: u32,
    pub rule_count: u32,
    /// Rule file path, NUL-padded, truncated if longer.
    pub source: [u8; META_SOURCE_LEN],
}
const _: () = assert!(size_of::<Meta>() == 304);

impl Default for Meta {
    fn default() -> Self {
        Meta {
            digest: [0; 32],
            loaded_at_unix: 0,
            attach_mode: 0,
            rule_count: 0,
            source: [0; META_SOURCE_LEN],
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for Rule {}
    unsafe impl aya::Pod for Chain {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Meta {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_slots_are_disjoint_and_in_range() {
        assert_eq!(port_slot(IPPROTO_UDP, 0), Some(0));
        assert_eq!(port_slot(IPPROTO_UDP, 65535), Some(65535));
        assert_eq!(port_slot(IPPROTO_TCP, 0), Some(65536));
        assert_eq!(port_slot(IPPROTO_TCP, 65535), Some(PORT_SLOTS - 1));
        assert_eq!(port_slot(IPPROTO_ICMP, 7), None);
    }

    #[test]
    fn reasons_are_indexed_in_order_with_unique_names() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32);
            for other in &Reason::ALL[i + 1..] {
                assert_ne!(r.name(), other.name());
            }
        }
    }
}
