//! Rule files: bytes read as the CLI reads them (`files::read_rules`),
//! validated, and when valid linted and compiled. A panic, an error without
//! a place or an explanation, or a run over the timeout is a finding.

#![no_main]

use std::sync::LazyLock;

use filter_user_fuzz::{Scratch, cases::rule_case, package_dir};
use libfuzzer_sys::fuzz_target;

static SCRATCH: LazyLock<Scratch> = LazyLock::new(|| Scratch::new(c"rules.toml"));

fuzz_target!(|data: &[u8]| {
    // List files that the seeds (and their mutations) name are found here.
    let base = package_dir().join("tests/broken");
    if let Err(why) = rule_case(SCRATCH.path(), &base, data) {
        panic!("{why}");
    }
});
