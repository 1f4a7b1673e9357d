//! Where a rule file came from: the commit of the git work tree that holds
//! it, and whether the file differs from that commit.
//!
//! filterctl often runs as root (or under sudo) on a file in someone's
//! repository, and git runs code that a repository configures (fsmonitor
//! hooks, clean filters). So git runs here with fsmonitor off, no optional
//! locks, and its own ownership check in force: under sudo, git would trust
//! the repositories of the user who called sudo (SUDO_UID); without that
//! variable it refuses a repository that root does not own, and the rule
//! set is then recorded without a commit.

use std::{path::Path, process::Command};

/// Variables through which git would trust another user's repository.
const TRUST_VARIABLES: &[&str] = &["SUDO_UID", "SUDO_GID", "SUDO_USER", "DOAS_USER"];

/// The commit of the git work tree holding `file`, and whether the file
/// differs from it; None outside a work tree or in one git does not trust.
pub fn git_state(file: &Path) -> Option<(String, bool)> {
    git_state_in(file, &[])
}

/// `git_state` with extra environment variables for git (for the tests).
/// [`git_state`] with extra variables in git's environment (the tests'
/// HOME, tests/integration/hardening.rs).
#[doc(hidden)]
pub fn git_state_in(file: &Path, env: &[(&str, &str)]) -> Option<(String, bool)> {
    let dir = file.parent()?;
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.arg("-C")
            .arg(dir)
            .args(["-c", "core.fsmonitor=false", "--no-optional-locks"])
            .args(args)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .stdin(std::process::Stdio::null());
        for v in TRUST_VARIABLES {
            c.env_remove(v);
        }
        c.envs(env.iter().copied());
        c
    };
    let out = git(&["rev-parse", "HEAD"]).output().ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if !out.status.success() || commit.len() != 40 {
        return None;
    }
    let status = git(&["status", "--porcelain", "--"])
        .arg(file)
        .output()
        .ok()?;
    if !status.status.success() {
        return None;
    }
    Some((commit, !status.stdout.is_empty()))
}
