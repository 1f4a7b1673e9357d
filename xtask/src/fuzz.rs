//! `cargo xtask fuzz`: the cargo-fuzz targets of filter-user/fuzz/
//! (libFuzzer, coverage-guided), one after the other for a set time each,
//! with their executions, coverage and findings; or, with `--mutation`,
//! filter-user's seeded mutation fuzzer (tests/integration/fuzz.rs),
//! optimised, with its budget and seed in the environment.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{cmd, probe, root, run, shell_line},
    setup::setup_with_fuzzing,
};

/// The cargo-fuzz crate, relative to the workspace root.
const FUZZ_DIR: &str = "filter-user/fuzz";

/// Each target (`FUZZ_DIR/fuzz_targets/NAME.rs`) and the folders of its
/// seeds, relative to the workspace root: the repository's own rule files
/// and broken corpus where they fit, and the target's `seeds/` folder.
/// libFuzzer writes what it finds to `FUZZ_DIR/corpus/NAME` (not kept in
/// git) and only reads these.
const TARGETS: &[(&str, &[&str])] = &[
    (
        "rules",
        &[
            "rules",
            "filter-user/tests/broken",
            "filter-user/fuzz/seeds/rules",
        ],
    ),
    (
        "lists",
        &[
            "filter-user/tests/broken/lists",
            "filter-user/fuzz/seeds/lists",
        ],
    ),
    ("capture", &["filter-user/fuzz/seeds/capture"]),
    ("serve", &["filter-user/fuzz/seeds/serve"]),
];

/// One input running longer than this is a hang (the mutation fuzzer's
/// limit too).
const HANG_SECONDS: u64 = 10;

/// What `cargo xtask fuzz` was asked.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// The seeded mutation fuzzer (tests/integration/fuzz.rs: rule files
    /// and captures, side by side, not coverage-guided).
    #[arg(long)]
    pub mutation: bool,
    /// Only this cargo-fuzz target (rules, lists, capture, serve); repeatable.
    #[arg(long = "target", value_name = "NAME", conflicts_with = "mutation")]
    pub targets: Vec<String>,
    /// Mutated rule files at most (default: as many as the time allows).
    #[arg(long, requires = "mutation")]
    pub rules: Option<u64>,
    /// Mutated captures at most (default: as many as the time allows).
    #[arg(long, requires = "mutation")]
    pub captures: Option<u64>,
    /// Time for each target [default: 300; 60 with --mutation].
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Seed of the mutations (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
}

pub fn fuzz(args: FuzzArgs) -> anyhow::Result<()> {
    setup_with_fuzzing()?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!("fuzz seed {seed} (--seed {seed} repeats this run)");
    if args.mutation {
        return mutation(args.rules, args.captures, args.seconds.unwrap_or(60), seed);
    }
    coverage_guided(&args.targets, args.seconds.unwrap_or(300), seed)
}

/// Runs tests/integration/fuzz.rs with its budget in the environment, optimised.
fn mutation(
    rules: Option<u64>,
    captures: Option<u64>,
    seconds: u64,
    seed: u64,
) -> anyhow::Result<()> {
    let args = [
        "test",
        "-p",
        "filter-user",
        "--release",
        "--test",
        "integration",
    ];
    let mut c = cmd("cargo", args);
    c.args(["--", "--nocapture", "fuzz::"])
        .env(
            "FILTERCTL_FUZZ_RULES",
            rules.unwrap_or(u64::MAX).to_string(),
        )
        .env(
            "FILTERCTL_FUZZ_CAPTURES",
            captures.unwrap_or(u64::MAX).to_string(),
        )
        .env("FILTERCTL_FUZZ_SECONDS", seconds.to_string())
        .env("FILTERCTL_FUZZ_SEED", seed.to_string());
    run(c)
}

/// `cargo +nightly fuzz build` of every target: no sanitizer (the code
/// under test is safe Rust: a panic is the finding, and ASan would cost most
/// of the executions) and debug assertions on, as in the tests, so that an
/// overflow panics.
fn build_targets() -> anyhow::Result<()> {
    let mut c = cmd(
        "cargo",
        [
            "+nightly",
            "fuzz",
            "build",
            "--fuzz-dir",
            FUZZ_DIR,
            "--sanitizer",
            "none",
            "--debug-assertions",
        ],
    );
    // The nightly named here is the one installed, never a download.
    c.env("RUSTUP_AUTO_INSTALL", "0");
    run(c)
}

/// Builds every target, then runs the chosen ones one after the other for
/// `seconds` each; fails when one of them crashed or hung.
fn coverage_guided(only: &[String], seconds: u64, seed: u64) -> anyhow::Result<()> {
    if probe("cargo", &["fuzz", "--version"]).is_none() {
        bail!("cargo-fuzz is not installed (`cargo xtask setup` installs it)");
    }
    for name in only {
        if !TARGETS.iter().any(|(t, _)| t == name) {
            let names: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
            bail!(
                "no fuzz target {name:?}: the targets are {}",
                names.join(", ")
            );
        }
    }
    // libFuzzer's seed is 32 bits, and 0 asks it for a random one.
    let seed = u32::try_from(seed)
        .ok()
        .filter(|s| *s != 0)
        .context("--seed: libFuzzer takes seeds from 1 to 4294967295")?;
    build_targets()?;
    let binaries = binaries_dir()?;
    let mut results = Vec::new();
    for (name, seeds) in TARGETS {
        if only.is_empty() || only.iter().any(|o| o == name) {
            let binary = binaries.join(name);
            results.push((*name, run_target(name, &binary, seeds, seconds, seed)?));
        }
    }
    println!("\nfuzz: {seconds} s per target, seed {seed}");
    println!("{}", Figures::HEADER);
    for (name, figures) in &results {
        println!("{}", figures.row(name));
    }
    let found: Vec<String> = results
        .iter()
        .filter_map(|(name, f)| f.finding.as_ref().map(|why| format!("{name}: {why}")))
        .collect();
    if !found.is_empty() {
        bail!(
            "{}\nrepeat one with `{}/TARGET ARTIFACT`; make it a regression case (tests/broken/ or a unit test)",
            found.join("\n"),
            binaries.display()
        );
    }
    Ok(())
}

/// Where `cargo fuzz build` left the targets. The runs start them from
/// there rather than through `cargo fuzz run`, which builds again: every
/// target runs the build just made, even when the sources change meanwhile.
fn binaries_dir() -> anyhow::Result<PathBuf> {
    let version = probe("rustc", &["+nightly", "-vV"]).context("`rustc +nightly -vV` fails")?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("`rustc +nightly -vV` names no host")?;
    Ok(root()
        .join(FUZZ_DIR)
        .join("target")
        .join(host)
        .join("release"))
}

/// Creates a folder of the fuzz crate (all of them are git-ignored).
fn fuzz_folder(path: &str) -> anyhow::Result<PathBuf> {
    let dir = root().join(FUZZ_DIR).join(path);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// One target for `seconds`: libFuzzer's log goes to
/// `FUZZ_DIR/target/logs/NAME.log`, and to the terminal without the line it
/// prints for each input that found something new.
fn run_target(
    name: &str,
    binary: &Path,
    seeds: &[&str],
    seconds: u64,
    seed: u32,
) -> anyhow::Result<Figures> {
    let corpus = fuzz_folder(&format!("corpus/{name}"))?;
    let artifacts = fuzz_folder(&format!("artifacts/{name}"))?;
    let log_path = fuzz_folder("target/logs")?.join(format!("{name}.log"));
    let mut log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;

    let mut c = cmd(&binary.to_string_lossy(), [&corpus]);
    // The seeds are only read: what libFuzzer finds goes to the corpus.
    c.args(seeds).args([
        format!("-artifact_prefix={}/", artifacts.display()),
        format!("-max_total_time={seconds}"),
        format!("-timeout={HANG_SECONDS}"),
        format!("-seed={seed}"),
        "-print_final_stats=1".to_string(),
    ]);
    println!("\n$ {}", shell_line(&c));
    let mut child = c
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut figures = Figures::default();
    for line in stderr.lines() {
        let line = line.context("reading libFuzzer's output")?;
        writeln!(log, "{line}")?;
        figures.read(&line);
        if !found_something(&line) {
            eprintln!("{line}");
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", binary.display()))?;
    if !status.success() && figures.finding.is_none() {
        figures.finding = Some(format!("{status}; see {}", log_path.display()));
    }
    Ok(figures)
}

/// libFuzzer's line for an input that reached something new ("#N\tNEW
/// cov: ...", "#N\tREDUCE ..."): thousands in a run, kept in the log only.
fn found_something(line: &str) -> bool {
    line.starts_with('#') && matches!(line.split_whitespace().nth(1), Some("NEW" | "REDUCE"))
}

/// What a libFuzzer run printed: its final statistics and status line, and
/// what it found.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    executions: Option<u64>,
    per_second: Option<u64>,
    /// Edges covered, and features (edges with hit counts and more).
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<u64>,
    /// A crash or a hang, with the input it kept.
    finding: Option<String>,
    kind: Option<&'static str>,
}

impl Figures {
    const HEADER: &str = "target       executions    exec/s      cov       ft   corpus  result";

    /// Takes what a line of libFuzzer's output says.
    fn read(&mut self, line: &str) {
        let stat = |key: &str| {
            line.strip_prefix(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(n) = stat("stat::number_of_executed_units:") {
            self.executions = Some(n);
        }
        if let Some(n) = stat("stat::average_exec_per_sec:") {
            self.per_second = Some(n);
        }
        // Status lines: "#1234	pulse  cov: 812 ft: 2107 corp: 96/4213b ...".
        if line.starts_with('#') {
            let after = |key: &str| {
                line.split_once(key)
                    .and_then(|(_, rest)| rest.split(['/', ' ']).next())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            self.cov = after(" cov: ").or(self.cov);
            self.ft = after(" ft: ").or(self.ft);
            self.corpus = after(" corp: ").or(self.corpus);
        }
        if line.contains("ERROR: libFuzzer: timeout") || line.starts_with("ALARM: working on") {
            self.kind = Some("hang");
        } else if line.contains("ERROR: libFuzzer:") || line.contains("panicked at") {
            self.kind = self.kind.or(Some("crash"));
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            let kind = self.kind.unwrap_or("crash");
            self.finding = Some(format!("{kind}, input kept in {}", path.trim()));
        }
    }

    fn row(&self, name: &str) -> String {
        let n = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        let result = match &self.finding {
            None => "ok",
            Some(_) => self.kind.unwrap_or("failed"),
        };
        format!(
            "{name:<10} {:>12} {:>9} {:>8} {:>8} {:>8}  {result}",
            n(self.executions),
            n(self.per_second),
            n(self.cov),
            n(self.ft),
            n(self.corpus),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Figures {
        let mut f = Figures::default();
        text.lines().for_each(|l| f.read(l));
        f
    }

    /// The lines of a clean run that matter, as libFuzzer prints them.
    const CLEAN_RUN: &str = "INFO: Seed: 7\n\
         #2\tINITED cov: 9 ft: 9 corp: 1/1b exec/s: 0 rss: 30Mb\n\
         #130861\tNEW    cov: 3013 ft: 11841 corp: 1291/171Kb lim: 4096 exec/s: 4362 rss: 390Mb L: 64/4096 MS: 1 ChangeBit-\n\
         #131072\tpulse  cov: 3013 ft: 11841 corp: 1291/171Kb lim: 4096 exec/s: 4369 rss: 390Mb\n\
         #131100\tREDUCE cov: 3020 ft: 11900 corp: 1300/173Kb lim: 4096 exec/s: 4369 rss: 390Mb L: 20/4096 MS: 1 EraseBytes-\n\
         #1311000\tDONE   cov: 3020 ft: 11900 corp: 1300/173Kb lim: 4096 exec/s: 4370 rss: 391Mb\n\
         Done 1311000 runs in 300 second(s)\n\
         stat::number_of_executed_units: 1311000\n\
         stat::average_exec_per_sec:     4370\n\
         stat::new_units_added:          1043\n";

    #[test]
    fn reads_a_clean_run() {
        let f = read(CLEAN_RUN);
        assert_eq!(
            (f.executions, f.per_second, f.cov, f.ft, f.corpus),
            (
                Some(1311000),
                Some(4370),
                Some(3020),
                Some(11900),
                Some(1300)
            )
        );
        assert_eq!(f.finding, None);
        assert!(f.row("rules").ends_with("  ok"), "{}", f.row("rules"));
    }

    #[test]
    fn progress_lines_stay_in_the_log() {
        let shown: Vec<&str> = CLEAN_RUN.lines().filter(|l| !found_something(l)).collect();
        assert_eq!(shown.len(), 8, "{shown:#?}");
        assert!(
            shown
                .iter()
                .all(|l| !l.contains("NEW") && !l.contains("REDUCE"))
        );
    }

    #[test]
    fn reads_a_crash_and_a_hang() {
        let crash = read(
            "thread '<unnamed>' panicked at fuzz_targets/rules.rs:20:9:\n\
             ==1== ERROR: libFuzzer: deadly signal\n\
             artifact_prefix='/w/fuzz/artifacts/rules/'; Test unit written to /w/fuzz/artifacts/rules/crash-da39a3ee\n",
        );
        assert_eq!(
            crash.finding.as_deref(),
            Some("crash, input kept in /w/fuzz/artifacts/rules/crash-da39a3ee")
        );
        let hang = read(
            "ALARM: working on the last Unit for 11 seconds\n\
             ==1== ERROR: libFuzzer: timeout after 11 seconds\n\
             artifact_prefix='a/'; Test unit written to a/timeout-0123\n",
        );
        assert_eq!(
            hang.finding.as_deref(),
            Some("hang, input kept in a/timeout-0123")
        );
        assert!(
            hang.row("serve").ends_with("  hang"),
            "{}",
            hang.row("serve")
        );
    }
}
