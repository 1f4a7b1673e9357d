//! Turns a parsed packet into a reason: fragment policy, then the rule chain
//! for its protocol and source port. The arithmetic lives in filter-common.

use aya_ebpf::programs::XdpContext;
use filter_common::{
    MATCH_MAX, MATCH_OFFSET_MAX, MAX_CHAIN, Reason,
    decide::{later_fragment_reason, rule_matches, rule_reason},
    port_slot,
};

use crate::{
    maps,
    parse::{self, Frag, Parsed, Summary},
};

#[inline(always)]
pub fn reason(ctx: &XdpContext, config: u32, frame_len: u64) -> Reason {
    match parse::parse(ctx) {
        Parsed::NonIp => Reason::NonIp,
        Parsed::Malformed => Reason::Malformed,
        Parsed::Ip(s) if s.frag == Frag::Later => later_fragment_reason(config),
        Parsed::Ip(s) => match_rules(ctx, &s, frame_len).unwrap_or(Reason::Pass),
    }
}

/// Walks the chain of candidate rules for the packet's (protocol, source
/// port): at most MAX_CHAIN lookups, whatever the size of the rule set.
#[inline(always)]
fn match_rules(ctx: &XdpContext, s: &Summary, frame_len: u64) -> Option<Reason> {
    let chain = maps::chain_for(port_slot(s.proto, s.src_port)?)?;
    for i in 0..MAX_CHAIN {
        if i >= chain.len as usize {
            break;
        }
        let index = chain.rules[i] as u32;
        let rule = maps::rule(index)?;
        let head = payload_head(ctx, s.payload_off, rule.match_offset, rule.match_len);
        if rule_matches(rule, s.dst_port, s.payload_len, &head) {
            maps::count_rule(index, frame_len);
            return Some(rule_reason(rule.action));
        }
    }
    None
}

/// The payload bytes a rule compares; bytes past the frame read as zero and
/// `rule_matches` checks the payload really holds them.
#[inline(always)]
fn payload_head(ctx: &XdpContext, payload_off: usize, offset: u16, len: u8) -> [u8; MATCH_MAX] {
    let mut head = [0u8; MATCH_MAX];
    if len == 0 || offset > MATCH_OFFSET_MAX {
        return head;
    }
    let start = payload_off + offset as usize;
    for (i, b) in head.iter_mut().enumerate() {
        if let Some(v) = parse::u8_at(ctx, start + i) {
            *b = v;
        }
    }
    head
}
