//! Rule files: the TOML schema operators keep in git, its validation with
//! file, line and column in every message, and its compilation into the
//! values the XDP program's maps hold.

pub mod adaptive;
pub(crate) mod compile;
pub(crate) mod error;
pub mod files;
pub(crate) mod guard;
pub(crate) mod imports;
mod limits;
pub mod lint;
pub mod parse;
pub(crate) mod prefixes;
mod rule;
pub(crate) mod schema;
pub(crate) mod set;
pub(crate) mod units;
pub(crate) mod upstream;
pub(crate) mod v4lists;
mod values;
pub mod vectors;

// Declarations and re-exports only. The children never import this file
// (they name each other: `super::set::RuleSet`), so these re-exports, kept
// for the rest of the crate, cannot close an import circle.
pub use self::parse::{RulesError, load_file};
pub(crate) use self::set::{Mode, RuleSpec};
pub use self::{
    compile::Compiled,
    error::RuleError,
    parse::parse,
    prefixes::Prefix,
    set::{RuleSet, hex},
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{set::FragmentPolicy, *};
    use filter_common::{CONFIG_FRAGMENT_DROP, CONFIG_MONITOR, MAX_CHAIN};

    fn err(text: &str) -> RuleError {
        parse("t.toml", text).expect_err("should be rejected")
    }

    const NTP: &str = r#"
[[rule]]
name = "ntp-time"
protocol = "udp"
src_port = 123
payload = { offset = 0, mask = "07", value = "04" }
action = "pass"

[[rule]]
name = "ntp-reflection"
protocol = "udp"
src_port = 123
action = "drop"
"#;

    #[test]
    fn parses_a_valid_file_with_defaults() {
        let set = parse("t.toml", NTP).unwrap();
        assert_eq!(set.mode, Mode::Enforce);
        assert_eq!(set.fragments, FragmentPolicy::Pass);
        assert_eq!(set.rules.len(), 2);
        let time = &set.rules[0];
        assert_eq!(time.src_ports, (123, 123));
        assert_eq!(time.rule.dst_port_hi, 65535);
        assert_eq!(time.rule.match_len, 1);
        assert_eq!(time.rule.match_mask[0], 7);
        assert_eq!(time.rule.match_value[0], 4);
        assert_eq!(&time.rule.name[..8], b"ntp-time");
        assert_eq!(time.rule.name[8], 0);
    }

    #[test]
    fn compiles_port_chains_in_file_order() {
        let c = parse("t.toml", NTP).unwrap().compile();
        assert_eq!(c.chains.len(), 2);
        assert_eq!(c.chains[1].len, 2);
        assert_eq!(&c.chains[1].rules[..2], &[0, 1]);
        assert_eq!(c.port_chains, vec![(123, 1)]);
    }

    #[test]
    fn overlapping_ranges_split_into_shared_chains() {
        let text = r#"
[[rule]]
name = "a"
protocol = "udp"
src_port = "100-200"
action = "drop"
[[rule]]
name = "b"
protocol = "udp"
src_port = "150-300"
action = "pass"
[[rule]]
name = "c"
protocol = "tcp"
src_port = "100-200"
action = "drop"
"#;
        let c = parse("t.toml", text).unwrap().compile();
        let chain_of = |slot: u32| {
            c.port_chains
                .iter()
                .find(|(s, _)| *s == slot)
                .map(|(_, id)| {
                    c.chains[*id as usize].rules[..c.chains[*id as usize].len as usize].to_vec()
                })
        };
        assert_eq!(chain_of(99), None);
        assert_eq!(chain_of(100), Some(vec![0]));
        assert_eq!(chain_of(150), Some(vec![0, 1]));
        assert_eq!(chain_of(200), Some(vec![0, 1]));
        assert_eq!(chain_of(201), Some(vec![1]));
        assert_eq!(chain_of(300), Some(vec![1]));
        assert_eq!(chain_of(301), None);
        assert_eq!(chain_of(65536 + 150), Some(vec![2]));
        // Chains {0}, {0,1}, {1}, {2} plus the empty one.
        assert_eq!(c.chains.len(), 5);
    }

    #[test]
    fn modes_and_fragment_policy_set_config_flags() {
        let text = format!("mode = \"monitor\"\nfragments = \"drop\"\n{NTP}");
        let c = parse("t.toml", &text).unwrap().compile();
        assert_eq!(c.config.flags, CONFIG_MONITOR | CONFIG_FRAGMENT_DROP);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = err(
            "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\nsrc_port = 70000\naction = \"drop\"\n",
        );
        assert_eq!((e.file.as_str(), e.line, e.column), ("t.toml", 4, 12));
        assert!(e.message.contains("out of range"), "{e}");
        assert!(e.to_string().starts_with("t.toml:4:12: "), "{e}");
    }

    #[test]
    fn rejects_broken_files_with_a_reason() {
        let base = "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\naction = \"drop\"\n";
        let cases: &[(&str, String, usize, &str)] = &[
            ("empty", String::new(), 1, "empty rule file"),
            ("only comments", "# nothing\n".into(), 1, "no [[rule]]"),
            ("no rules", "mode = \"enforce\"\n".into(), 1, "no [[rule]]"),
            (
                "unknown key",
                format!("{base}colour = \"red\"\n"),
                5,
                "unknown field",
            ),
            (
                "unknown top key",
                format!("speed = 1\n{base}"),
                1,
                "unknown field",
            ),
            (
                "bad protocol",
                base.replace("udp", "sctp"),
                3,
                "unknown protocol",
            ),
            (
                "bad action",
                base.replace("\"drop\"", "\"reject\""),
                4,
                "unknown action",
            ),
            (
                "bad mode",
                format!("mode = \"loud\"\n{base}"),
                1,
                "unknown mode",
            ),
            (
                "bad fragments",
                format!("fragments = \"eat\"\n{base}"),
                1,
                "fragment policy",
            ),
            (
                "inverted range",
                format!("{base}src_port = \"200-100\"\n"),
                5,
                "empty",
            ),
            (
                "text port",
                format!("{base}dst_port = \"ntp\"\n"),
                5,
                "not a number",
            ),
            (
                "negative length",
                format!("{base}payload_len = -1\n"),
                5,
                "out of range",
            ),
            (
                "bad name",
                base.replace("\"x\"", "\"no spaces\""),
                2,
                "bad rule name",
            ),
            (
                "duplicate name",
                format!("{base}{base}"),
                6,
                "already used on line 2",
            ),
            (
                "missing action",
                "[[rule]]\nname = \"x\"\nprotocol = \"udp\"\n".into(),
                1,
                "missing field `action`",
            ),
            ("syntax", format!("{base}src_port = \n"), 5, ""),
            (
                "mask too long",
                format!(
                    "{base}payload = {{ offset = 0, mask = \"0102030405\", value = \"0102030405\" }}\n"
                ),
                5,
                "1 to 4 bytes",
            ),
            (
                "value outside mask",
                format!("{base}payload = {{ offset = 0, mask = \"07\", value = \"08\" }}\n"),
                5,
                "outside the mask",
            ),
            (
                "offset too far",
                format!("{base}payload = {{ offset = 65, mask = \"07\", value = \"04\" }}\n"),
                5,
                "out of range",
            ),
        ];
        for (what, text, line, needle) in cases {
            let e = err(text);
            assert_eq!(e.line, *line, "{what}: {e}");
            assert!(e.message.contains(needle), "{what}: {e}");
        }
    }

    #[test]
    fn more_rules_on_one_port_than_a_chain_holds_is_refused() {
        let mut text = String::new();
        for i in 0..=MAX_CHAIN {
            text.push_str(&format!(
                "[[rule]]\nname = \"r{i}\"\nprotocol = \"udp\"\nsrc_port = 53\naction = \"drop\"\n"
            ));
        }
        let e = err(&text);
        assert!(e.message.contains("more than 8 rules"), "{e}");
        assert_eq!(e.line, 2 + 5 * MAX_CHAIN, "{e}");
    }

    #[test]
    fn shipped_rule_files_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load_file(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no rule files in {}", dir.display());
    }

    #[test]
    fn digest_changes_with_the_bytes() {
        let a = parse("t.toml", NTP).unwrap();
        let b = parse("t.toml", &format!("{NTP}\n# comment\n")).unwrap();
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.digest_hex().len(), 64);
    }
}
