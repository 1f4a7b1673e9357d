//! `cargo xtask test`: fmt and clippy per package and the failpoints gate
//! (all of them, every failure listed, the tests only when all pass), then
//! every test binary even past a failing one, a closing list of the failing
//! tests, and the leftovers check whatever the tests did.

use std::{
    collections::BTreeSet,
    ffi::CString,
    io::{BufRead as _, BufReader, Read},
    mem::MaybeUninit,
    os::unix::ffi::OsStrExt as _,
    path::Path,
    process::{Command, ExitStatus},
    sync::mpsc::{self, RecvTimeoutError},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{cmd, probe, run, shell_line},
    setup::setup,
};

/// Prefix of the network namespaces tests and the demo create.
const NETNS_PREFIX: &str = "flt-";
/// Prefixes of the pins under /sys/fs/bpf that tests and the demo create.
const PIN_PREFIXES: &[&str] = &["filterctl-test", "filterctl-demo"];
/// Where pins live, when a bpffs is mounted there.
const BPFFS: &str = "/sys/fs/bpf";
/// How long the output of `cargo test` may stay open, and quiet, after cargo
/// exited before xtask stops reading it.
const LINGER: Duration = Duration::from_secs(1);

pub fn test(args: &[String]) -> anyhow::Result<()> {
    setup()?;
    run_checks()?;

    let mut tests = cmd(
        "cargo",
        [
            "test",
            "--no-fail-fast",
            "-p",
            "filter-common",
            "-p",
            "filter-user",
            "-p",
            "xtask",
        ],
    );
    if !args.is_empty() {
        tests.arg("--").args(args);
    }
    let mut outcome = run_tests(tests).context("test step `cargo test` failed")?;
    if args.is_empty() {
        // The reply guard's and the reload's tests again, on a kernel
        // without TCX (faked): the recorder then runs as a clsact filter,
        // the path of Linux 6.1 and older.
        let mut clsact = cmd(
            "cargo",
            [
                "test",
                "--no-fail-fast",
                "-p",
                "filter-user",
                "--test",
                "reply_guard",
                "--test",
                "reload",
            ],
        );
        clsact.env("FILTERCTL_FAKE", "tcx");
        let run = run_tests(clsact).context("test step `cargo test` (no TCX) failed")?;
        outcome.absorb(run, "no TCX");
        let start = std::time::Instant::now();
        let run = unprivileged_unit_tests().context("test step `unit tests as nobody` failed")?;
        println!(
            "unit tests as nobody, without capabilities: {} passed in {:.1} s",
            run.passed,
            start.elapsed().as_secs_f64()
        );
        outcome.absorb(run, "as nobody");
    }
    // After failed tests too: a failing test is the likeliest to have left a
    // namespace or a pin behind.
    let leftovers = check_leftovers();

    // The closing lines, for whoever reads only the end of the log.
    print!("{}", outcome.failure_list());
    let mut failed_steps = Vec::new();
    if !outcome.failures.is_empty() {
        failed_steps.push("`cargo test`");
    }
    if let Err(e) = &leftovers {
        println!("FAILED: test step `leftovers`: {e:#}");
        failed_steps.push("`leftovers`");
    }
    println!("{} passed, {} failed", outcome.passed, outcome.failed);
    if !failed_steps.is_empty() {
        bail!("test steps failed: {}", failed_steps.join(", "));
    }
    Ok(())
}

/// The libraries' unit tests again, as user nobody with no capability:
/// they need no root (what does lives in the integration tests), so a
/// contributor without privileges runs them. Each test binary is copied
/// where nobody may run it.
fn unprivileged_unit_tests() -> anyhow::Result<TestRun> {
    let args = [
        "test",
        "-p",
        "filter-user",
        "-p",
        "filter-common",
        "--lib",
        "--no-run",
        "--message-format=json",
    ];
    let out = cmd("cargo", args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed ({})", out.status);
    }
    let dir = std::env::temp_dir().join(format!("xtask-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut all = TestRun::default();
    for exe in test_executables(&String::from_utf8_lossy(&out.stdout)) {
        let name = Path::new(&exe)
            .file_name()
            .context("an executable's name")?;
        let copy = dir.join(name);
        std::fs::copy(&exe, &copy).with_context(|| format!("cannot copy {exe}"))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&copy)
        .current_dir(&dir);
        all.absorb(run_tests(c)?, &name.to_string_lossy());
    }
    let _ = std::fs::remove_dir_all(&dir);
    if all.passed == 0 {
        bail!("no unit test ran as nobody");
    }
    Ok(all)
}

/// The test executables cargo's JSON messages name (`"executable":"…"`).
fn test_executables(json_lines: &str) -> Vec<String> {
    json_lines
        .lines()
        .filter(|l| l.contains("\"test\":true"))
        .filter_map(|l| {
            let rest = l.split("\"executable\":\"").nth(1)?;
            Some(rest.split('"').next()?.to_string())
        })
        .collect()
}

fn clippy(package: &str, features: &[&str]) -> Command {
    let mut c = cmd("cargo", ["clippy", "-p", package, "--all-targets"]);
    c.args(features).args(["--", "-D", "warnings"]);
    c
}

fn ebpf_clippy() -> Command {
    let mut c = cmd(
        "cargo",
        [
            "+nightly",
            "clippy",
            "-p",
            "filter-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    );
    // Its own target dir: sharing the host's would make the stable and
    // nightly builds invalidate each other's cache.
    c.env("CARGO_TARGET_DIR", "target/ebpf-clippy");
    c
}

/// fmt, then clippy per package: a workspace-wide run unifies features and
/// drags std into the eBPF crate.
fn checks() -> Vec<(&'static str, Command)> {
    vec![
        ("fmt", cmd("cargo", ["fmt", "--all", "--", "--check"])),
        ("clippy filter-common", clippy("filter-common", &[])),
        (
            "clippy filter-common (user)",
            clippy("filter-common", &["--features", "user"]),
        ),
        ("clippy filter-user", clippy("filter-user", &[])),
        ("clippy filter-testkit", clippy("filter-testkit", &[])),
        ("clippy xtask", clippy("xtask", &[])),
        ("clippy filter-ebpf", ebpf_clippy()),
    ]
}

/// Runs every check and the failpoints gate, past the first failure, so that
/// one run lists all that is wrong. The tests run only when all pass: a
/// build that does not compile makes them meaningless.
fn run_checks() -> anyhow::Result<()> {
    let checks = checks();
    let steps = checks.len() + 1;
    let mut failed = Vec::new();
    for (step, check) in checks {
        if let Err(e) = run(check) {
            failed.push((step, e));
        }
    }
    if let Err(e) = check_failpoints_gate() {
        failed.push(("failpoints gate", e));
    }
    if failed.is_empty() {
        return Ok(());
    }
    println!("FAILED: {} of {steps} check steps:", failed.len());
    for (step, e) in &failed {
        println!("  {step}: {e:#}");
    }
    let names: Vec<String> = failed.iter().map(|(step, _)| format!("`{step}`")).collect();
    bail!(
        "test steps failed: {}; the tests did not run",
        names.join(", ")
    )
}

/// A failing test, or a test binary or a step of `cargo test` that failed
/// without one.
#[derive(Debug, PartialEq)]
struct Failure {
    binary: String,
    test: String,
}

/// What the output of `cargo test --no-fail-fast` tells, read line by line.
#[derive(Debug, Default)]
struct TestRun {
    passed: u64,
    failed: u64,
    /// Every failure, in the order of the output.
    failures: Vec<Failure>,
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
    fn read(&mut self, line: &str) {
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
    fn absorb(&mut self, other: TestRun, what: &str) {
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
    fn finish(&mut self, status: ExitStatus) {
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
    fn failure_list(&self) -> String {
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

/// Runs `cargo test`, echoing its output, and reads the counts and the
/// failures from it. Cargo's stderr (its `Running` lines) and the test
/// binaries' stdout (their results) share one pipe, so that each result
/// comes after the line that names its binary.
fn run_tests(mut cmd: Command) -> anyhow::Result<TestRun> {
    let line = shell_line(&cmd);
    println!("$ {line}");
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    cmd.stdout(writer.try_clone()?).stderr(writer);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    // The command keeps copies of the write end, which would keep the output
    // from ever ending.
    drop(cmd);
    let lines = lines_of(reader);
    let mut run = TestRun::default();
    let mut exited = None;
    loop {
        match lines.recv_timeout(LINGER) {
            Ok(out) => {
                let out = out.context("reading the test output")?;
                println!("{out}");
                run.read(&out);
            }
            Err(RecvTimeoutError::Disconnected) => break,
            // A process a test started and left running holds the pipe:
            // waiting for it would hang the run before the leftovers check.
            Err(RecvTimeoutError::Timeout) if exited.is_some() => {
                println!(
                    "xtask: `cargo test` exited, but a process it started still holds its output"
                );
                break;
            }
            Err(RecvTimeoutError::Timeout) => {
                exited = child.try_wait().context("waiting for cargo test")?;
            }
        }
    }
    let status = match exited {
        Some(status) => status,
        None => child.wait().context("waiting for cargo test")?,
    };
    run.finish(status);
    Ok(run)
}

/// The lines `reader` gives, read by a thread of their own so that their
/// reader can stop waiting.
fn lines_of(reader: impl Read + Send + 'static) -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).split(b'\n') {
            // Tests may print bytes that are not UTF-8.
            let line = line.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Fails when a namespace or a pin outlived the tests: every test must clean
/// up on every path, or the next run (or the machine) inherits the mess.
pub fn check_leftovers() -> anyhow::Result<()> {
    let mut left = Vec::new();
    let netns = probe("ip", &["netns", "list"]).context("`ip netns list` failed")?;
    // Lines look like `flt-victim-1234 (id: 3)`.
    left.extend(
        netns
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| name.starts_with(NETNS_PREFIX))
            .map(|name| format!("namespace {name}")),
    );
    left.extend(
        pins(Path::new(BPFFS))?
            .into_iter()
            .map(|p| format!("pin {p}")),
    );
    if !left.is_empty() {
        bail!("left behind: {}", left.join(", "));
    }
    println!("no namespace or pin left behind");
    Ok(())
}

/// The pins under `bpffs` that tests and the demo create. None when no bpffs
/// is mounted there: nothing can have been pinned then.
fn pins(bpffs: &Path) -> anyhow::Result<Vec<String>> {
    if !is_bpffs(bpffs)? {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(bpffs).with_context(|| format!("cannot list {}", bpffs.display()))?;
    let mut pins = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if PIN_PREFIXES.iter().any(|p| name.starts_with(p)) {
            pins.push(bpffs.join(name).display().to_string());
        }
    }
    Ok(pins)
}

/// Whether a bpffs is mounted at `path` (its file system's magic number, as
/// libbpf tells); false when `path` does not exist.
fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut stat = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated and stat is a writable statfs.
    if unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::NotFound {
            return Ok(false);
        }
        return Err(err).with_context(|| format!("cannot statfs {}", path.display()));
    }
    // SAFETY: statfs succeeded, so it filled stat.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_type == libc::BPF_FS_MAGIC)
}

/// Fault injection (FILTERCTL_FAILPOINT) must exist in test builds only
/// (a step of `xtask test`, and a test of this crate for a bare `cargo test`):
/// the tests turn the `failpoints` feature on through filter-user's
/// dev-dependency on itself, which a product build never resolves. Asked of
/// cargo's feature resolution (no build): off without dev-dependencies, on
/// with them, so that the check can tell the two apart.
fn check_failpoints_gate() -> anyhow::Result<()> {
    let features = |edges: &str| {
        let args = ["tree", "-p", "filter-user", "-e", edges, "--depth", "0"];
        let mut c = cmd("cargo", args);
        c.args(["-f", "{p} [{f}]"]);
        let out = c.output().context("cannot run cargo tree")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let first = text.lines().next().unwrap_or_default().to_string();
        anyhow::ensure!(out.status.success(), "cargo tree failed: {first}");
        Ok::<_, anyhow::Error>(first)
    };
    let product = features("no-dev")?;
    let tests = features("normal,dev")?;
    if product.contains("failpoints") {
        bail!("a product build of filter-user has fault injection: {product}");
    }
    if !tests.contains("failpoints") {
        bail!("the test build of filter-user lacks fault injection: {tests}");
    }
    println!("failpoints: off in the product ({product}), on in tests ({tests})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{os::unix::process::ExitStatusExt as _, path::Path, process::ExitStatus};

    use super::{
        Failure, TestRun, binary_started, check_failpoints_gate, ebpf_clippy, failing_test, pins,
        result_counts, test_executables,
    };
    use crate::cmd::shell_line;

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

    /// The same check `xtask test` runs: cheap (cargo tree, no build).
    #[test]
    fn fault_injection_is_in_test_builds_only() {
        check_failpoints_gate().unwrap_or_else(|e| panic!("{e:#}"));
    }

    #[test]
    fn echoes_variables_before_the_command() {
        assert!(shell_line(&ebpf_clippy()).starts_with(
            "CARGO_TARGET_DIR=target/ebpf-clippy cargo +nightly clippy -p filter-ebpf"
        ));
    }

    #[test]
    fn finds_the_test_executables_in_cargos_messages() {
        let json = concat!(
            r#"{"reason":"compiler-artifact","profile":{"test":true},"executable":"/t/deps/filterctl-1"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(test_executables(json), ["/t/deps/filterctl-1"]);
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

    /// Pins exist only on a bpffs: a missing folder, or a plain one holding
    /// a file with a pin's name, has none.
    #[test]
    fn no_bpffs_means_no_pins() {
        assert_eq!(
            pins(Path::new("/nonexistent/sys/fs/bpf")).unwrap(),
            Vec::<String>::new()
        );
        let plain = std::env::temp_dir().join(format!("xtask-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("filterctl-test-1"), "").unwrap();
        let found = pins(&plain);
        std::fs::remove_dir_all(&plain).unwrap();
        assert_eq!(found.unwrap(), Vec::<String>::new());
    }
}
