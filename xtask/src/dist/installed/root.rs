//! The throwaway root a package is installed into: its folders, dpkg and
//! the shells run against it with a clean environment, removed on drop.

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

pub(super) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The throwaway root, with dpkg's log and the shells' home beside it:
/// removed when dropped, whichever way the check ends.
pub(super) struct Root {
    /// Holds the three.
    base: PathBuf,
    pub(super) dir: PathBuf,
    log: PathBuf,
    home: PathBuf,
}

impl Root {
    /// An empty root with the admin folder dpkg needs.
    pub(super) fn new(base: &Path) -> anyhow::Result<Root> {
        let _ = std::fs::remove_dir_all(base);
        let root = Root {
            base: base.to_path_buf(),
            dir: base.join("root"),
            log: base.join("dpkg.log"),
            home: base.join("home"),
        };
        let admin = root.dir.join("var/lib/dpkg");
        for dir in [admin.join("info"), admin.join("updates"), root.home.clone()] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(admin.join("status"), "")?;
        std::fs::write(admin.join("available"), "")?;
        Ok(root)
    }

    /// `dpkg` on the root, its log beside it (not the host's); stdout.
    pub(super) fn dpkg<S: AsRef<OsStr>>(
        &self,
        args: impl IntoIterator<Item = S>,
    ) -> anyhow::Result<String> {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", self.dir.display()))
            .arg(format!("--log={}", self.log.display()))
            .arg("--force-script-chrootless")
            .args(args);
        output(c.env_clear().env("PATH", PATH))
    }

    /// `${field}` of the package in the root's database, None when it is
    /// not there.
    pub(super) fn query(&self, format: &str) -> Option<String> {
        let mut c = Command::new("dpkg-query");
        c.arg(format!(
            "--admindir={}",
            self.dir.join("var/lib/dpkg").display()
        ))
        .args(["-W", &format!("-f={format}"), "filterctl"]);
        output(&mut c).ok()
    }

    pub(super) fn expect_status(&self, expected: Option<&str>) -> anyhow::Result<()> {
        let status = self.query("${Status}");
        ensure!(
            status.as_deref() == expected,
            "dpkg says {status:?}, expected {expected:?}"
        );
        Ok(())
    }

    /// A command of the root's shell tools, with the root's home.
    pub(super) fn shell(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear().env("PATH", PATH).env("HOME", &self.home);
        c
    }

    /// Every path in the root but dpkg's database, relative, folders with a
    /// trailing slash.
    pub(super) fn tree(&self) -> anyhow::Result<BTreeSet<String>> {
        fn walk(dir: &Path, rel: &str, out: &mut BTreeSet<String>) -> anyhow::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let name = format!("{rel}{}", entry.file_name().to_string_lossy());
                if name == "var/lib/dpkg" {
                    continue;
                }
                if entry.file_type()?.is_dir() {
                    out.insert(format!("{name}/"));
                    walk(&entry.path(), &format!("{name}/"), out)?;
                } else {
                    out.insert(name);
                }
            }
            Ok(())
        }
        let mut out = BTreeSet::new();
        walk(&self.dir, "", &mut out).with_context(|| format!("listing {}", self.dir.display()))?;
        Ok(out)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Runs `c`: its stdout, or an error with what it printed.
pub(super) fn output(c: &mut Command) -> anyhow::Result<String> {
    let line = format!("{c:?}");
    let out = c.output().with_context(|| format!("cannot run {line}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{line} failed ({}): {}{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}
