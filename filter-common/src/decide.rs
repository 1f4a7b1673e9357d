//! Packet decisions over an already-parsed header summary. Nothing here reads
//! packet memory, so the XDP program and the host tests run the same code.

use crate::maps::{
    ACTION_DROP, CONFIG_FRAGMENT_DROP, CONFIG_MONITOR, MATCH_MAX, MATCH_OFFSET_MAX, Reason, Rule,
};

/// Whether `rule` matches a packet whose protocol and source port already
/// selected it. `head` holds the payload bytes at `rule.match_offset`, as many
/// as the frame has (up to [`MATCH_MAX`]); missing bytes are zero.
#[inline(always)]
pub fn rule_matches(rule: &Rule, dst_port: u16, payload_len: u16, head: &[u8; MATCH_MAX]) -> bool {
    if dst_port < rule.dst_port_lo || dst_port > rule.dst_port_hi {
        return false;
    }
    if payload_len < rule.len_lo || payload_len > rule.len_hi {
        return false;
    }
    let n = rule.match_len as usize;
    if n == 0 {
        return true;
    }
    // The payload must really hold the bytes compared, or a short packet
    // would match against zeros.
    if n > MATCH_MAX || (rule.match_offset as usize + n) > payload_len as usize {
        return false;
    }
    let mut i = 0;
    while i < MATCH_MAX {
        if i < n && head[i] & rule.match_mask[i] != rule.match_value[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether a rule's payload match can be evaluated at all: the controller
/// refuses rules outside these bounds.
pub const fn match_in_bounds(offset: u16, len: u8) -> bool {
    offset <= MATCH_OFFSET_MAX && len as usize <= MATCH_MAX
}

/// Reason for a packet that matched a rule with `action`.
#[inline(always)]
pub fn rule_reason(action: u8) -> Reason {
    if action == ACTION_DROP {
        Reason::RuleDrop
    } else {
        Reason::RulePass
    }
}

/// Reason for a non-first fragment: it carries no ports, so only the
/// fragment policy applies.
#[inline(always)]
pub fn later_fragment_reason(config_flags: u32) -> Reason {
    if config_flags & CONFIG_FRAGMENT_DROP != 0 {
        Reason::FragmentDrop
    } else {
        Reason::FragmentPass
    }
}

/// What finally happens to a packet given its reason and the mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Drop,
    /// Would have been dropped; passed because the filter is in monitor mode.
    MonitoredPass,
}

#[inline(always)]
pub fn outcome(reason: Reason, config_flags: u32) -> Outcome {
    if !reason.drops() {
        Outcome::Pass
    } else if config_flags & CONFIG_MONITOR != 0 {
        Outcome::MonitoredPass
    } else {
        Outcome::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::ACTION_PASS;

    fn ntp_rule() -> Rule {
        Rule {
            dst_port_lo: 0,
            dst_port_hi: u16::MAX,
            len_lo: 0,
            len_hi: u16::MAX,
            action: ACTION_DROP,
            ..Rule::default()
        }
    }

    #[test]
    fn port_and_length_ranges_are_inclusive() {
        let rule = Rule {
            dst_port_lo: 1000,
            dst_port_hi: 2000,
            len_lo: 100,
            len_hi: 200,
            ..ntp_rule()
        };
        let h = [0; MATCH_MAX];
        assert!(rule_matches(&rule, 1000, 100, &h));
        assert!(rule_matches(&rule, 2000, 200, &h));
        assert!(!rule_matches(&rule, 999, 150, &h));
        assert!(!rule_matches(&rule, 2001, 150, &h));
        assert!(!rule_matches(&rule, 1500, 99, &h));
        assert!(!rule_matches(&rule, 1500, 201, &h));
    }

    #[test]
    fn payload_match_tells_ntp_modes_apart() {
        // NTP mode lives in the low 3 bits of the first byte: 4 server
        // (time reply), 6 control, 7 private (monlist).
        let mode4 = Rule {
            match_len: 1,
            match_mask: [0x07, 0, 0, 0],
            match_value: [0x04, 0, 0, 0],
            action: ACTION_PASS,
            ..ntp_rule()
        };
        assert!(rule_matches(&mode4, 123, 48, &[0x24, 0, 0, 0]));
        assert!(!rule_matches(&mode4, 123, 468, &[0x17, 0, 3, 0x2a]));
        assert!(!rule_matches(&mode4, 123, 468, &[0x16, 0, 0, 0]));
    }

    #[test]
    fn payload_match_needs_the_bytes_to_exist() {
        let rule = Rule {
            match_offset: 2,
            match_len: 2,
            match_mask: [0xff, 0xff, 0, 0],
            match_value: [0, 0, 0, 0],
            ..ntp_rule()
        };
        // Zeros would match, but a 3-byte payload has no bytes 2..4.
        assert!(!rule_matches(&rule, 1, 3, &[0; MATCH_MAX]));
        assert!(rule_matches(&rule, 1, 4, &[0; MATCH_MAX]));
    }

    #[test]
    fn match_bounds() {
        assert!(match_in_bounds(0, 4));
        assert!(match_in_bounds(MATCH_OFFSET_MAX, 1));
        assert!(!match_in_bounds(MATCH_OFFSET_MAX + 1, 1));
        assert!(!match_in_bounds(0, 5));
    }

    #[test]
    fn monitor_mode_passes_what_it_would_drop() {
        assert_eq!(outcome(Reason::RuleDrop, 0), Outcome::Drop);
        assert_eq!(
            outcome(Reason::RuleDrop, CONFIG_MONITOR),
            Outcome::MonitoredPass
        );
        assert_eq!(outcome(Reason::Pass, CONFIG_MONITOR), Outcome::Pass);
        assert_eq!(outcome(Reason::RulePass, 0), Outcome::Pass);
        assert_eq!(outcome(Reason::Malformed, 0), Outcome::Drop);
    }

    #[test]
    fn fragment_policy() {
        assert_eq!(later_fragment_reason(0), Reason::FragmentPass);
        assert_eq!(
            later_fragment_reason(CONFIG_FRAGMENT_DROP),
            Reason::FragmentDrop
        );
        assert_eq!(rule_reason(ACTION_DROP), Reason::RuleDrop);
        assert_eq!(rule_reason(ACTION_PASS), Reason::RulePass);
    }
}
