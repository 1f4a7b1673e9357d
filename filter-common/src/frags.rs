//! Fragments: the datagram a fragment belongs to (what the follow-drop
//! memory keys) and the policy for later fragments no earlier step decided.

use crate::abi::{CONFIG_FRAGMENT_DROP, FragKey, Reason};
use crate::packet::{Addr, Packet, addr_bytes};

/// The datagram a fragment belongs to: what remembers that its first
/// fragment was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub family: u8,
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    /// The protocol every fragment names ([`Packet::frag_proto`]).
    pub proto: u8,
}

impl Datagram {
    /// As the shared fragment map keys it.
    #[inline(always)]
    pub fn key(&self) -> FragKey {
        FragKey {
            src: addr_bytes(&self.src),
            dst: addr_bytes(&self.dst),
            id: self.id,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }

    /// The same, as words: compared in five loads, and hashed.
    #[inline(always)]
    pub fn words(&self) -> [u64; 5] {
        [
            self.src[0],
            self.src[1],
            self.dst[0],
            self.dst[1],
            self.id as u64 | (self.proto as u64) << 32 | (self.family as u64) << 40,
        ]
    }
}

#[inline(always)]
pub fn datagram(p: &Packet) -> Datagram {
    Datagram {
        family: p.family,
        src: p.src,
        dst: p.dst,
        id: p.frag_id,
        proto: p.frag_proto,
    }
}

/// Reason for a non-first fragment that no earlier step decided.
#[inline(always)]
pub fn later_fragment_reason(config_flags: u32) -> Reason {
    if config_flags & CONFIG_FRAGMENT_DROP != 0 {
        Reason::FragmentDrop
    } else {
        Reason::FragmentPass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_policy() {
        assert_eq!(later_fragment_reason(0), Reason::FragmentPass);
        assert_eq!(
            later_fragment_reason(CONFIG_FRAGMENT_DROP),
            Reason::FragmentDrop
        );
    }
}
