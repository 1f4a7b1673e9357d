//! The command helpers every task shares: where the workspace and its builds
//! are, and running a command with its line echoed. The bottom of xtask's
//! imports: it imports no task.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root: every command runs there, wherever xtask was started.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Where cargo builds: CARGO_TARGET_DIR (relative to the workspace root) or
/// `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), |d| root().join(d))
}

/// A command to run in the workspace root.
pub fn cmd<S: AsRef<OsStr>>(program: &str, args: impl IntoIterator<Item = S>) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(root());
    c
}

/// The command as a shell line, with the variables it sets in front.
pub fn shell_line(cmd: &Command) -> String {
    let outer_path = std::env::var("PATH").unwrap_or_default();
    let mut words = Vec::new();
    for (key, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        let mut value = value.to_string_lossy().into_owned();
        // A prepended PATH would otherwise print the whole inherited PATH.
        if key == "PATH"
            && !outer_path.is_empty()
            && let Some(added) = value.strip_suffix(&outer_path)
        {
            value = format!("{added}$PATH");
        }
        words.push(format!("{}={value}", key.to_string_lossy()));
    }
    words.push(cmd.get_program().to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Echoes a command, runs it, and fails unless it succeeds.
pub fn run(mut cmd: Command) -> anyhow::Result<()> {
    let line = shell_line(&cmd);
    println!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Stdout of a quiet check; `None` when it cannot start or fails, which is
/// the answer the caller is after, not an error.
pub fn probe(program: &str, args: &[&str]) -> Option<String> {
    let out = cmd(program, args).stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
