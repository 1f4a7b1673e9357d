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
/// `rule_matches` checks the payload really holds them. Near the end of the
/// frame the four bytes are read ending at the frame's end and shifted, so
/// that every read stays a bounds-checked four-byte read.
#[inline(always)]
fn payload_head(ctx: &XdpContext, payload_off: usize, offset: u16, len: u8) -> [u8; MATCH_MAX] {
    if len == 0 || offset > MATCH_OFFSET_MAX {
        return [0; MATCH_MAX];
    }
    let start = payload_off + offset as usize;
    if let Some(b) = parse::bytes_at::<MATCH_MAX>(ctx, start) {
        return b;
    }
    let frame_len = ctx.data_end() - ctx.data();
    let shift = start.wrapping_sub(frame_len.saturating_sub(MATCH_MAX));
    let mut head = [0u8; MATCH_MAX];
    if shift == 0 || shift >= MATCH_MAX || start < shift {
        return head;
    }
    // Derived from the bounded `start`, not from the frame length, so the
    // verifier knows its range.
    if let Some(tail) = parse::bytes_at::<MATCH_MAX>(ctx, start - shift) {
        // Shift in a register: indexing the array by `shift` would be a
        // variable stack offset, which the verifier refuses.
        head = (u32::from_be_bytes(tail) << (8 * shift as u32)).to_be_bytes();
    }
    head
}
