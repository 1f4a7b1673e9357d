//! `filterctl check` against a corpus of broken rule files, one problem
//! each (tests/broken/*.toml): the real binary must refuse every one with
//! a non-zero exit status and name the file, line and column of the
//! problem and say what is wrong. Every shipped rule file (rules/*.toml)
//! must pass. No root needed.

// For TempDir only: this test needs no root, so common's re-export of
// require_bpf goes unused here.
#[allow(unused_imports)]
use crate::common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::cli::TempDir;

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
    case(
        "payload-non-ascii.toml",
        5,
        32,
        "payload mask \"0é\" is not 1 to 4 bytes of hex",
    ),
    case(
        "payload-value-non-ascii.toml",
        5,
        46,
        "payload value \"€€\" is not 1 to 4 bytes of hex",
    ),
    case(
        "comment-del.toml",
        1,
        17,
        "control character U+007F (DEL) is not allowed in TOML",
    ),
    case(
        "port-list.toml",
        4,
        12,
        "invalid type: sequence, expected a whole number like 123 or a range like \"1024-65535\"",
    ),
    case(
        "port-float.toml",
        4,
        12,
        "invalid type: floating point `123.0`, expected a whole number like 123",
    ),
    case(
        "bps-burst-overflow.toml",
        3,
        15,
        "a burst of 4294967296 bytes at 1bit takes longer than the limiter can count",
    ),
    case(
        "too-many-limits.toml",
        134,
        9,
        "too many limits: at most 63 ([per_source] included)",
    ),
    case(
        "not-utf8.toml",
        1,
        4,
        "not UTF-8 text: rule files are UTF-8",
    ),
    case(
        "three-errors.toml",
        3,
        8,
        "bad rule name \"ntp reflection\"",
    ),
    Case {
        file: "list-not-a-list.toml",
        reported: Some("lists/shadow-like.txt"),
        line: 1,
        column: 1,
        message: "line 1 holds no IP prefix (its text is not shown: is this a list file?)",
    },
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
        } else if out.status.code() != Some(1) {
            // 101 is a panic: a broken file must get a message, not a crash.
            failures.push(format!("{path}: exit status {}: {stderr}", out.status));
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

#[test]
fn check_reports_every_error_of_a_file() {
    let out = check(&["tests/broken/three-errors.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        "tests/broken/three-errors.toml:3:8: bad rule name \"ntp reflection\"",
        "tests/broken/three-errors.toml:10:12: unknown protocol \"icmp\"",
        "tests/broken/three-errors.toml:16:12: src_port 70000 out of range",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(want)),
            "{want:?} not in:\n{stderr}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_list_is_never_echoed() {
    let out = check(&["tests/broken/list-not-a-list.toml"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    let secret = std::fs::read_to_string(package_dir().join("tests/broken/lists/shadow-like.txt"))
        .expect("the fake shadow file");
    // Any piece of a line, a user name or the salt, would be a leak.
    for piece in secret.split([':', '$', '\n']).filter(|p| p.len() > 1) {
        assert!(!all.contains(piece), "{piece:?} echoed in:\n{all}");
    }
    assert!(all.contains("holds no IP prefix"), "{all}");
}

/// What a bounded run of `check` gave: its output and its peak memory.
struct Bounded {
    code: Option<i32>,
    stderr: String,
    max_rss_kb: u64,
}

/// Runs `check`, killed and reported as a hang past `limit`.
fn check_bounded(paths: &[&str], limit: std::time::Duration) -> Bounded {
    use std::io::Read as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_filterctl"))
        .arg("check")
        .args(paths)
        .current_dir(package_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run filterctl check");
    let waited = filter_testkit::child::wait_bounded(&mut child, limit);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .unwrap();
    Bounded {
        code: waited.status.code(),
        stderr,
        max_rss_kb: waited.max_rss_kb,
    }
}

#[test]
fn devices_and_fifos_as_list_files_are_refused_at_once() {
    let dir = TempDir::new("check-special");
    let fifo = dir.path().join("list.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let rule = "[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n";
    let cases = [
        ("/dev/zero", "/dev/zero is a device, not a regular file"),
        ("list.fifo", "list.fifo is a FIFO, not a regular file"),
        ("/dev/null", "/dev/null is a device, not a regular file"),
    ];
    // A baseline from the same run: the same check on a small good file.
    let good = dir.write("good.toml", rule);
    let base = check_bounded(&[&good], std::time::Duration::from_secs(60));
    assert_eq!(base.code, Some(0), "{}", base.stderr);
    for (list, want) in cases {
        let file = dir.write("r.toml", &format!("deny_files = [{list:?}]\n{rule}"));
        let out = check_bounded(&[&file], std::time::Duration::from_secs(60));
        assert_eq!(out.code, Some(1), "{list}: {}", out.stderr);
        assert!(
            out.stderr.contains("r.toml:1:15: list file ") && out.stderr.contains(want),
            "{list}: {want:?} not in {}",
            out.stderr
        );
        // /dev/zero read whole would grow without bound: the peak must stay
        // near that of a check of a small file.
        assert!(
            out.max_rss_kb < base.max_rss_kb + 64 * 1024,
            "{list}: peak {} KB, a small file's {} KB",
            out.max_rss_kb,
            base.max_rss_kb
        );
    }
}

/// A valid file that `check` warns about: exit 0, and 1 with --strict.
fn warns(name: &str, body: &str, want: &[&str]) {
    let dir = TempDir::new(&format!("check-{name}"));
    let file = dir.write(&format!("{name}.toml"), body);
    let out = check(&[&file]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
    for w in want {
        let line = format!("{file}:{w}");
        assert!(
            stderr.lines().any(|l| l.starts_with(&line)),
            "{name}: {line:?} not in:\n{stderr}"
        );
    }
    assert!(
        text(&out.stdout).contains(&format!("{file}: ok, ")),
        "{name}: {}",
        text(&out.stdout)
    );
    let strict = Command::new(env!("CARGO_BIN_EXE_filterctl"))
        .args(["check", "--strict", &file])
        .output()
        .expect("run filterctl check --strict");
    assert_eq!(
        strict.status.code(),
        Some(1),
        "{name} --strict: {}",
        text(&strict.stderr)
    );
    assert!(
        text(&strict.stderr).contains("have warnings (--strict)"),
        "{name}: {}",
        text(&strict.stderr)
    );
}

#[test]
fn warnings_leave_the_exit_status_alone_unless_strict() {
    let rule = "[[rule]]\nname = \"ntp\"\nprotocol = \"udp\"\nsrc_port = 123\naction = \"drop\"\n";
    warns(
        "deny-all",
        &format!("deny = [\"0.0.0.0/0\"]\n{rule}"),
        &["1:9: warning: deny \"0.0.0.0/0\" covers every address"],
    );
    warns(
        "shadowed",
        &format!("{rule}{}", rule.replace("ntp\"", "ntp-again\"")),
        &["7:8: warning: rule \"ntp-again\" never matches: rule \"ntp\" (line 2)"],
    );
    warns(
        "small-burst",
        &format!("[per_source]\nbps = \"10Mbit\"\nburst_bytes = 1000\n{rule}"),
        &["3:15: warning: [per_source]: burst_bytes = 1000 is less than one full-size frame"],
    );
    // The shipped files are clean even with --strict.
    for file in shipped_rule_files() {
        let out = Command::new(env!("CARGO_BIN_EXE_filterctl"))
            .args(["check", "--strict"])
            .arg(&file)
            .output()
            .expect("run filterctl check --strict");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
    }
}
