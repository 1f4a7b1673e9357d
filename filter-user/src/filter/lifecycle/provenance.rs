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
fn git_state_in(file: &Path, env: &[(&str, &str)]) -> Option<(String, bool)> {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, chown};

    use super::*;

    fn sh(dir: &Path, script: &str) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }

    /// A repository whose fsmonitor hook leaves a mark when git runs it.
    fn hostile_repo(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("flt-git-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mark = dir.with_extension("pwned");
        let _ = std::fs::remove_file(&mark);
        std::fs::write(dir.join("rules.toml"), "# rules\n").unwrap();
        std::fs::write(
            dir.join("hook.sh"),
            format!("#!/bin/sh\ntouch {}\n", mark.display()),
        )
        .unwrap();
        std::fs::set_permissions(dir.join("hook.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        sh(
            &dir,
            "git init -q . && git -c user.name=t -c user.email=t@example.org commit -q --allow-empty -m x \
             && git add rules.toml && git -c user.name=t -c user.email=t@example.org commit -q -m rules \
             && git config core.fsmonitor \"$PWD/hook.sh\"",
        );
        (dir, mark)
    }

    #[test]
    fn a_hostile_repository_runs_nothing_and_another_users_is_not_trusted() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test checks what git does as root: run `sudo cargo xtask test`");
        }
        // Root's own repository: read, and its fsmonitor hook does not run.
        let (dir, mark) = hostile_repo("root");
        let (commit, modified) = git_state(&dir.join("rules.toml")).expect("a commit");
        assert_eq!(commit.len(), 40);
        assert!(!modified);
        assert!(!mark.exists(), "the fsmonitor hook ran");
        // The same hook also has to be harmless when a user owns the
        // repository and root runs under that user's sudo.
        for entry in walk(&dir) {
            chown(&entry, Some(65534), Some(65534)).unwrap();
        }
        let state = git_state_in(&dir.join("rules.toml"), &[("HOME", dir.to_str().unwrap())]);
        assert_eq!(state, None, "git trusted a repository root does not own");
        assert!(!mark.exists(), "the fsmonitor hook ran");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![dir.to_path_buf()];
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
