//! `filterctl check` against a corpus of broken rule files, one problem
//! each (tests/broken/*.toml): the real binary must refuse every one with
//! a non-zero exit status and name the file, line and column of the
//! problem and say what is wrong. Every shipped rule file (rules/*.toml)
//! must pass. No root needed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// One broken file and what `check` must say about it.
struct Case {
    /// Under tests/broken/.
    file: &'static str,
    /// The file the error names, when it is not `file` (a list file).
    reported: Option<&'static str>,
    line: usize,
    column: usize,
    message: &'static str,
}

const fn case(file: &'static str, line: usize, column: usize, message: &'static str) -> Case {
    Case {
        file,
        reported: None,
        line,
        column,
        message,
    }
}

const CASES: &[Case] = &[
    case(
        "bad-prefix.toml",
        2,
        26,
        "\"192.0.2.300/24\" is not an IP prefix",
    ),
    case(
        "prefix-host-bits.toml",
        2,
        9,
        "has bits set past its prefix length: did you mean 192.0.2.0/24?",
    ),
    case(
        "allow-and-deny.toml",
        2,
        27,
        "198.51.100.0/24 is in both allow and deny",
    ),
    case(
        "chain-overflow.toml",
        60,
        8,
        "more than 8 rules apply to udp source port 53",
    ),
    case(
        "inverted-range.toml",
        4,
        12,
        "src_port range 200-100 is empty: the low end must come first",
    ),
    case(
        "unknown-top-key.toml",
        2,
        1,
        "unknown field `interface`, expected one of `mode`",
    ),
    case(
        "unknown-rule-key.toml",
        6,
        1,
        "unknown field `comment`, expected one of `name`",
    ),
    case(
        "unknown-per-source-key.toml",
        3,
        1,
        "unknown field `packets_per_second`, expected one of `pps`",
    ),
    case(
        "port-out-of-range.toml",
        4,
        12,
        "src_port 70000 out of range: allowed is 0 to 65535",
    ),
    case(
        "pps-zero.toml",
        2,
        7,
        "pps 0 out of range: allowed is 1 to 100000000",
    ),
    case(
        "ipv4-prefix-33.toml",
        2,
        15,
        "ipv4_prefix 33 out of range: allowed is 1 to 32",
    ),
    case(
        "payload-offset-65.toml",
        5,
        22,
        "payload offset 65 out of range: allowed is 0 to 64",
    ),
    case(
        "bps-megabytes.toml",
        2,
        7,
        "bit rate \"50MB\" has an unknown unit \"MB\"",
    ),
    case("bps-no-unit.toml", 2, 7, "bit rate \"50\" needs a unit"),
    case(
        "ban-after-words.toml",
        5,
        9,
        "duration \"10 minutes\" has an unknown unit \"minutes\": use ms, s, m, h or d",
    ),
    case(
        "fragment-memory-no-unit.toml",
        2,
        19,
        "duration \"5\" needs a unit",
    ),
    case("empty.toml", 1, 1, "empty rule file"),
    case(
        "only-comments.toml",
        1,
        1,
        "no [[rule]], allow, deny or limit in the file",
    ),
    case(
        "duplicate-names.toml",
        8,
        8,
        "rule name \"reflection\" is already used on line 2",
    ),
    case(
        "limit-unknown.toml",
        9,
        9,
        "no limit named \"nosuch\": defined are ntp-peers",
    ),
    case(
        "aggregate-on-drop.toml",
        6,
        17,
        "aggregate_pps needs action = \"limit\"",
    ),
    case(
        "ban-without-limit.toml",
        2,
        9,
        "[ban] bans sources that exceed a limit, but no [per_source] or [limits] is set",
    ),
    case("missing-action.toml", 3, 1, "missing field `action`"),
    case("syntax-error.toml", 7, 10, "invalid string"),
    case(
        "payload-bad-hex.toml",
        5,
        32,
        "payload mask \"0g\" is not 1 to 4 bytes of hex",
    ),
    case(
        "payload-value-outside-mask.toml",
        5,
        46,
        "payload value byte 0 (0x0c) has bits outside the mask (0x07)",
    ),
    case(
        "deny-file-missing.toml",
        1,
        15,
        "cannot read list file tests/broken/lists/no-such-list.txt",
    ),
    Case {
        file: "list-bad-line.toml",
        reported: Some("lists/bad-list.txt"),
        line: 3,
        column: 1,
        message: "prefix length in \"198.51.100.0/33\" must be 0 to 32",
    },
];

/// The package directory: `check` runs there, on paths relative to it, so
/// the messages (and list files, relative to their rule file) are stable.
fn package_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check(paths: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_filterctl"))
        .arg("check")
        .args(paths)
        .current_dir(package_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run filterctl check")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_broken_file_is_refused_at_its_place() {
    let mut failures = Vec::new();
    for c in CASES {
        let path = format!("tests/broken/{}", c.file);
        let reported = match c.reported {
            Some(list) => format!("tests/broken/{list}"),
            None => path.clone(),
        };
        let out = check(&[&path]);
        let stderr = text(&out.stderr);
        let place = format!("{reported}:{}:{}: ", c.line, c.column);
        let line = stderr.lines().find(|l| l.starts_with(&place));
        if out.status.success() {
            failures.push(format!("{path}: check succeeded: {}", text(&out.stdout)));
        } else if line.is_none() {
            failures.push(format!("{path}: no line starting {place:?} in:\n{stderr}"));
        } else if !line.is_some_and(|l| l.contains(c.message)) {
            failures.push(format!("{path}: {:?} not in:\n{stderr}", c.message));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every file in the corpus has its case, so none is silently left out.
#[test]
fn the_table_covers_the_whole_corpus() {
    let dir = package_dir().join("tests/broken");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut in_table: Vec<String> = CASES.iter().map(|c| c.file.to_string()).collect();
    in_table.sort();
    assert_eq!(on_disk, in_table);
}

fn shipped_rule_files() -> Vec<PathBuf> {
    let dir = package_dir().join("../rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule files in {}", dir.display());
    files
}

#[test]
fn every_shipped_rule_file_passes() {
    for file in shipped_rule_files() {
        let path = file.to_string_lossy().into_owned();
        let out = check(&[&path]);
        assert!(
            out.status.success(),
            "{path}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(&format!("{path}: ok, ")),
            "{path}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn one_broken_file_among_good_ones_fails_the_run() {
    let good = "../rules/default.toml";
    let broken = "tests/broken/inverted-range.toml";
    for paths in [[good, broken], [broken, good]] {
        let out = check(&paths);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{paths:?}: succeeded");
        assert!(
            stdout.contains(&format!("{good}: ok, ")),
            "{paths:?}: {stdout}"
        );
        assert!(!stdout.contains(broken), "{paths:?}: {stdout}");
        assert!(
            stderr.contains(&format!("{broken}:4:12: src_port range 200-100 is empty")),
            "{paths:?}: {stderr}"
        );
        assert!(!stderr.contains(good), "{paths:?}: {stderr}");
        assert!(
            stderr.contains("1 of 2 rule files invalid"),
            "{paths:?}: {stderr}"
        );
    }
}
