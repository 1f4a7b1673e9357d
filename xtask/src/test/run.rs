//! One run of `cargo test` (or of a test binary): its output echoed and read
//! into a `TestRun`, without hanging on a process a test left running.

use std::{
    io::{BufRead as _, BufReader, Read},
    process::Command,
    sync::mpsc::{self, RecvTimeoutError},
    time::Duration,
};

use anyhow::Context as _;

use super::results::TestRun;
use crate::cmd::shell_line;

/// How long the output of `cargo test` may stay open, and quiet, after cargo
/// exited before xtask stops reading it.
const LINGER: Duration = Duration::from_secs(1);

/// Runs `cargo test`, echoing its output, and reads the counts and the
/// failures from it. Cargo's stderr (its `Running` lines) and the test
/// binaries' stdout (their results) share one pipe, so that each result
/// comes after the line that names its binary.
pub(super) fn run_tests(mut cmd: Command) -> anyhow::Result<TestRun> {
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
