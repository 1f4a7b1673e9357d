//! What the output of `cargo test` tells: the counts, and each failing test
//! by the binary it ran in, read from libtest's and cargo's lines.

use std::{collections::BTreeSet, process::ExitStatus};

/// A failing test, or a test binary or a step of `cargo test` that failed
/// without one.
#[derive(Debug, PartialEq)]
pub(super) struct Failure {
    binary: String,
    test: String,
}

/// What the output of `cargo test --no-fail-fast` tells, read line by line.
#[derive(Debug, Default)]
pub(super) struct TestRun {
    pub(super) passed: u64,
    pub(super) failed: u64,
    /// Every failure, in the order of the output.
    pub(super) failures: Vec<Failure>,
    /// The test binary whose output the lines are; empty before the first.
    binary: String,
    /// Failures recorded for `binary`.
    binary_failures: u64,
    /// Past `binary`'s `failures:` line, where libtest echoes what the failed
    /// tests printed: a line there that looks like a result is not one.
    in_failures: bool,
    /// `binary` failed without a failing test: a line to come says why.
    awaiting_cause: bool,
}

impl TestRun {
    pub(super) fn read(&mut self, line: &str) {
        if let Some(binary) = binary_started(line) {
            self.binary = binary;
            self.binary_failures = 0;
            self.in_failures = false;
            self.awaiting_cause = false;
        } else if line == "failures:" {
            self.in_failures = true;
        } else if let Some(test) = failing_test(line) {
            if !self.in_failures {
                self.record(test.to_string());
            }
        } else if let Some((passed, failed)) = result_counts(line) {
            self.passed += passed;
            self.failed += failed;
            // Output of a test run with --nocapture can break libtest's
            // `... FAILED` line; the count still tells.
            if failed > self.binary_failures {
                let unnamed = failed - self.binary_failures;
                self.record(format!("{unnamed} more failing, not named in the output"));
            }
        } else if is_rerun_hint(line) {
            if self.binary_failures == 0 {
                self.record("failed without a failing test".to_string());
                self.awaiting_cause = true;
            }
        } else if self.awaiting_cause
            && let Some(cause) = exit_cause(line)
        {
            if let Some(last) = self.failures.last_mut() {
                last.test = format!("{} ({cause})", last.test);
            }
            self.awaiting_cause = false;
        } else if let Some(what) = line.strip_prefix("error: could not compile ") {
            self.failures.push(Failure {
                binary: "build".to_string(),
                test: format!("could not compile {what}"),
            });
        }
    }

    /// Adds another run's results, its failures marked with `what`.
    pub(super) fn absorb(&mut self, other: TestRun, what: &str) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.failures
            .extend(other.failures.into_iter().map(|f| Failure {
                binary: format!("{} ({what})", f.binary),
                test: f.test,
            }));
    }

    /// A failure of the current binary.
    fn record(&mut self, test: String) {
        let binary = if self.binary.is_empty() {
            "cargo test"
        } else {
            &self.binary
        };
        self.failures.push(Failure {
            binary: binary.to_string(),
            test,
        });
        self.binary_failures += 1;
    }

    /// Closes the run with cargo's exit status: a failure that named no test,
    /// and a run without a test (tests must never silently vanish), are
    /// failures too.
    pub(super) fn finish(&mut self, status: ExitStatus) {
        if !self.failures.is_empty() {
            return;
        }
        let why = if !status.success() {
            format!("failed ({status}) without a failing test")
        } else if self.passed == 0 {
            "ran no test".to_string()
        } else {
            return;
        };
        self.failures.push(Failure {
            binary: "cargo test".to_string(),
            test: why,
        });
    }

    /// `FAILED: 2 tests in 2 binaries:`, then one line per failure, binary
    /// first; empty when nothing failed.
    pub(super) fn failure_list(&self) -> String {
        if self.failures.is_empty() {
            return String::new();
        }
        let binaries: BTreeSet<&str> = self.failures.iter().map(|f| f.binary.as_str()).collect();
        let lines: String = self
            .failures
            .iter()
            .map(|f| format!("  {}: {}\n", f.binary, f.test))
            .collect();
        format!(
            "FAILED: {} in {}:\n{lines}",
            count(self.failures.len(), "test", "tests"),
            count(binaries.len(), "binary", "binaries"),
        )
    }
}

/// `1 test`, `2 tests`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The test binary that a cargo status line starts: `tests/reload.rs`;
/// `filter_common src/lib.rs` for unit tests, named by their crate since
/// every package has a src/lib.rs or src/main.rs; `doc-tests filter_common`.
fn binary_started(line: &str) -> Option<String> {
    if let Some(krate) = line.strip_prefix("   Doc-tests ") {
        return Some(format!("doc-tests {krate}"));
    }
    let rest = line.strip_prefix("     Running ")?;
    // `unittests src/lib.rs (target/debug/deps/filter_common-0f3c2a9b)`
    let Some((source, path)) = rest.strip_suffix(')').and_then(|r| r.rsplit_once(" (")) else {
        return Some(rest.to_string());
    };
    Some(match source.strip_prefix("unittests ") {
        Some(source) => format!("{} {source}", binary_name(path)),
        None => source.to_string(),
    })
}

/// A test binary's file name less cargo's hash: `filter_common` of
/// `target/debug/deps/filter_common-0f3c2a9b`.
fn binary_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.rsplit_once('-').map_or(file, |(name, _)| name)
}

/// The test of libtest's line for a failing one, `test rules::parses ... FAILED`.
fn failing_test(line: &str) -> Option<&str> {
    line.strip_prefix("test ")?.strip_suffix(" ... FAILED")
}

/// Cargo's line after a test binary that failed: `error: test failed, to
/// rerun pass `--test reload``.
fn is_rerun_hint(line: &str) -> bool {
    line.starts_with("error: ") && line.contains(" failed, to rerun pass `")
}

/// How a test binary ended, from cargo's `process didn't exit successfully:
/// `…` (signal: 6, SIGABRT: process abort signal)`.
fn exit_cause(line: &str) -> Option<&str> {
    let rest = line
        .trim_start()
        .strip_prefix("process didn't exit successfully: ")?;
    rest.rsplit_once("` (")?.1.strip_suffix(')')
}

/// Passed and failed counts of a libtest `test result:` line.
fn result_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';')
            .find_map(|part| {
                let n = part.trim().strip_suffix(word)?.trim();
                n.rsplit(' ').next()?.parse::<u64>().ok()
            })
            .unwrap_or(0)
    };
    Some((count("passed"), count("failed")))
}

#[cfg(test)]
mod tests {
    use std::{os::unix::process::ExitStatusExt as _, process::ExitStatus};

    use super::{Failure, TestRun, binary_started, failing_test, result_counts};

    /// Lines of a real `cargo test --no-fail-fast` run (backtraces cut):
    /// a failing unit test that prints a line like a result, a failing
    /// integration test, one that aborts, a failing doctest.
    const OUTPUT: &str = "\
   Compiling toy v0.1.0 (/tmp/toy)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.78s
     Running unittests src/lib.rs (target/debug/deps/toy-72d1228a8632fa39)

running 2 tests
test tests::good ... ok
test tests::bad ... FAILED

failures:

---- tests::bad stdout ----
test fake ... FAILED

thread 'tests::bad' (17330) panicked at src/lib.rs:8:58:
no

failures:
    tests::bad

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.09s

error: test failed, to rerun pass `--lib`
     Running tests/a.rs (target/debug/deps/a-42d82826c94c2d76)

running 3 tests
test a_good ... ok
test a_ignored ... ignored
test a_bad ... FAILED

failures:

---- a_bad stdout ----

thread 'a_bad' (17333) panicked at tests/a.rs:1:22:
assertion `left == right` failed

failures:
    a_bad

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.10s

error: test failed, to rerun pass `--test a`
     Running tests/crash.rs (target/debug/deps/crash-e4b1358f35a90a41)

running 1 test
error: test failed, to rerun pass `--test crash`

Caused by:
  process didn't exit successfully: `/tmp/toy/target/debug/deps/crash-e4b1358f35a90a41` (signal: 6, SIGABRT: process abort signal)
     Running tests/b.rs (target/debug/deps/b-0123456789abcdef)

running 1 test
test b_good ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests toy

running 1 test
test src/lib.rs - one (line 1) ... FAILED

failures:

---- src/lib.rs - one (line 1) stdout ----
Test executable failed (exit status: 101).

failures:
    src/lib.rs - one (line 1)

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.08s

all doctests ran in 0.27s; merged doctests compilation took 0.18s
error: doctest failed, to rerun pass `--doc`
error: 4 targets failed:
    `--lib`
    `--test a`
    `--test crash`
    `--doc`
";

    fn read(output: &str, status: ExitStatus) -> TestRun {
        let mut run = TestRun::default();
        for line in output.lines() {
            run.read(line);
        }
        run.finish(status);
        run
    }

    fn failure(binary: &str, test: &str) -> Failure {
        Failure {
            binary: binary.to_string(),
            test: test.to_string(),
        }
    }

    #[test]
    fn reads_libtest_result_lines() {
        assert_eq!(
            result_counts(
                "test result: ok. 6 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.36s"
            ),
            Some((6, 0))
        );
        assert_eq!(
            result_counts(
                "test result: FAILED. 8 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out"
            ),
            Some((8, 1))
        );
        assert_eq!(result_counts("running 3 tests"), None);
    }

    #[test]
    fn reads_failing_test_lines() {
        assert_eq!(
            failing_test("test reload::swaps_under_traffic ... FAILED"),
            Some("reload::swaps_under_traffic")
        );
        assert_eq!(
            failing_test("test src/lib.rs - one (line 1) ... FAILED"),
            Some("src/lib.rs - one (line 1)")
        );
        assert_eq!(failing_test("test reload::swaps ... ok"), None);
        assert_eq!(failing_test("test reload::swaps ... ignored"), None);
        assert_eq!(
            failing_test("test result: FAILED. 8 passed; 1 failed; 0 ignored"),
            None
        );
    }

    #[test]
    fn names_test_binaries_from_cargo_status_lines() {
        assert_eq!(
            binary_started(
                "     Running tests/reload.rs (target/debug/deps/reload-5f1e2d3c4b5a6978)"
            ),
            Some("tests/reload.rs".to_string())
        );
        // Every package has a src/lib.rs: the crate tells them apart.
        assert_eq!(
            binary_started(
                "     Running unittests src/lib.rs (/work/target/debug/deps/filter_common-0f3c2a9b)"
            ),
            Some("filter_common src/lib.rs".to_string())
        );
        assert_eq!(
            binary_started("   Doc-tests filter_common"),
            Some("doc-tests filter_common".to_string())
        );
        assert_eq!(binary_started("running 3 tests"), None);
        // A test's own output, not cargo's right-aligned status.
        assert_eq!(binary_started("Running tests/reload.rs (x-1)"), None);
    }

    #[test]
    fn attributes_each_failure_to_its_binary() {
        let run = read(OUTPUT, ExitStatus::from_raw(101 << 8));
        assert_eq!(
            run.failures,
            [
                failure("toy src/lib.rs", "tests::bad"),
                failure("tests/a.rs", "a_bad"),
                failure(
                    "tests/crash.rs",
                    "failed without a failing test (signal: 6, SIGABRT: process abort signal)"
                ),
                failure("doc-tests toy", "src/lib.rs - one (line 1)"),
            ]
        );
        assert_eq!((run.passed, run.failed), (3, 3));
    }

    #[test]
    fn sums_up_the_failures() {
        let run = read(OUTPUT, ExitStatus::from_raw(101 << 8));
        assert_eq!(
            run.failure_list(),
            "FAILED: 4 tests in 4 binaries:
  toy src/lib.rs: tests::bad
  tests/a.rs: a_bad
  tests/crash.rs: failed without a failing test (signal: 6, SIGABRT: process abort signal)
  doc-tests toy: src/lib.rs - one (line 1)
"
        );
        let one = read(
            "     Running tests/reload.rs (target/debug/deps/reload-5f1e2d3c)
test reload::a ... FAILED
test reload::b ... FAILED
test result: FAILED. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out
",
            ExitStatus::from_raw(101 << 8),
        );
        assert_eq!(
            one.failure_list(),
            "FAILED: 2 tests in 1 binary:\n  tests/reload.rs: reload::a\n  tests/reload.rs: reload::b\n"
        );
    }

    #[test]
    fn counts_failures_whose_lines_were_broken() {
        // --nocapture output between libtest's name and its verdict.
        let run = read(
            "     Running tests/serve.rs (target/debug/deps/serve-5f1e2d3c)
test serve::metrics ... daemon says hello
FAILED
test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out
",
            ExitStatus::from_raw(101 << 8),
        );
        assert_eq!(
            run.failures,
            [failure(
                "tests/serve.rs",
                "1 more failing, not named in the output"
            )]
        );
    }

    #[test]
    fn a_build_error_or_an_empty_run_fails() {
        let build = read(
            "error: could not compile `filter-user` (test \"reload\") due to 1 previous error\n",
            ExitStatus::from_raw(101 << 8),
        );
        assert_eq!(
            build.failures,
            [failure(
                "build",
                "could not compile `filter-user` (test \"reload\") due to 1 previous error"
            )]
        );
        let silent = read("error: no such package\n", ExitStatus::from_raw(101 << 8));
        assert_eq!(
            silent.failures,
            [failure(
                "cargo test",
                "failed (exit status: 101) without a failing test"
            )]
        );
        let empty = read(
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out\n",
            ExitStatus::from_raw(0),
        );
        assert_eq!(empty.failures, [failure("cargo test", "ran no test")]);
        let fine = read(
            "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n",
            ExitStatus::from_raw(0),
        );
        assert_eq!(fine.failures, []);
        assert_eq!(fine.failure_list(), "");
    }
}
