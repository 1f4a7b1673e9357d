//! List files: bytes named by a rule file's `deny_files`, read and parsed
//! the way `check` and `reload` read them (`parse::parse_in`), and when
//! valid linted and compiled into the program's list tables. Besides the
//! rule files' promises (no panic, every error placed and explained), an
//! error in the list names a line and column the list has, and does not
//! quote a line back at length: a file that is no list (a password file,
//! a megabyte on one line) is never echoed.

#![no_main]

use std::{path::Path, sync::LazyLock};

use filter_user_fuzz::{Scratch, cases::check_rule_error};
use filterctl::rules::{RuleError, lint, parse};
use libfuzzer_sys::fuzz_target;

static SCRATCH: LazyLock<Scratch> = LazyLock::new(|| Scratch::new(c"list.txt"));

/// The rule file naming the list, kept in memory: only the list changes.
const RULES: &str = "rules.toml";

/// The longest message a list error may have: its explanation with at most
/// a prefix-sized word quoted.
const LONGEST_MESSAGE: usize = 400;

fn rule_text(list: &Path) -> String {
    format!(
        "deny_files = [{:?}]\n[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n",
        list.display().to_string()
    )
}

/// An error placed in the list: at a line and column it has, short.
fn check_list_error(e: &RuleError, list: &str) -> Result<(), String> {
    let line = list.lines().nth(e.line.wrapping_sub(1));
    let columns = line.map_or(1, |l| l.chars().count() + 1);
    if line.is_none() || e.column == 0 || e.column > columns {
        return Err(format!("placed outside the list: {e:?}"));
    }
    if e.message.len() > LONGEST_MESSAGE {
        return Err(format!(
            "a message of {} bytes quotes the list: {e:?}",
            e.message.len()
        ));
    }
    Ok(())
}

/// Ok(true) when the list is accepted, Ok(false) when refused well.
fn list_case(data: &[u8]) -> Result<bool, String> {
    let path = SCRATCH.path();
    std::fs::write(path, data).unwrap();
    let list = String::from_utf8_lossy(data);
    let rules = rule_text(path);
    let check = |e: &RuleError| {
        check_rule_error(e, RULES, &rules)?;
        if e.file == path.display().to_string() {
            check_list_error(e, &list)?;
        } else if e.file != RULES {
            return Err(format!("placed in neither file: {e:?}"));
        }
        Ok::<(), String>(())
    };
    let base = Path::new("/");
    match parse::parse_in(RULES, &rules, base) {
        Err(errors) if errors.is_empty() => Err("refused without an error".to_string()),
        Err(errors) => {
            errors.iter().try_for_each(check)?;
            Ok(false)
        }
        Ok(set) => {
            for w in lint::lint(RULES, &rules, base, &set) {
                check(&w.0)?;
            }
            set.compile();
            Ok(true)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Err(why) = list_case(data) {
        panic!("{why}");
    }
});
