//! The Debian package installed into a throwaway root and checked as a
//! machine would get it: every file at its path with its mode and owner, the
//! conffiles, the service's user and group, the man pages read by man, the
//! completions loaded by bash, zsh and fish, the binary run; then removed
//! and purged, leaving only the user.
//!
//! `dpkg --root` with `--force-script-chrootless` (dpkg >= 1.18.5) runs the
//! maintainer scripts on this host with DPKG_ROOT set, which they honour
//! (`scripts.rs`): the root needs no shell or systemd of its own, and the
//! host's users, unit state and bpffs are checked untouched afterwards.

use std::{collections::BTreeSet, os::unix::fs::MetadataExt as _, path::Path};

use anyhow::{Context as _, bail, ensure};

/// dpkg wants the sbin folders on PATH; nothing else of the caller's
/// environment reaches the maintainer scripts or the shells.
mod reads;
mod root;

use self::{
    reads::{bash, fish, man_pages, zsh},
    root::{Root, output},
};

/// Every file the package installs, with its mode, but the per-command man
/// pages and the docs (`other_file`). All are root's.
const FILES: &[(&str, u32)] = &[
    ("usr/bin/filterctl", 0o755),
    ("lib/systemd/system/filterctl.service", 0o644),
    ("usr/lib/sysusers.d/filterctl.conf", 0o644),
    ("usr/lib/tmpfiles.d/filterctl.conf", 0o644),
    ("etc/filterctl/rules.toml", 0o644),
    ("etc/default/filterctl", 0o644),
    ("usr/share/man/man1/filterctl.1.gz", 0o644),
    ("usr/share/bash-completion/completions/filterctl", 0o644),
    ("usr/share/zsh/vendor-completions/_filterctl", 0o644),
    ("usr/share/fish/vendor_completions.d/filterctl.fish", 0o644),
    ("usr/share/filterctl/grafana/dashboard.json", 0o644),
    ("usr/share/filterctl/prometheus/alerts.yml", 0o644),
    ("usr/share/doc/filterctl/copyright", 0o644),
    ("usr/share/doc/filterctl/changelog.gz", 0o644),
];

/// The package's other files, each 0644: a man page per command, the docs.
fn other_file(path: &str) -> bool {
    path.starts_with("usr/share/doc/filterctl/")
        || (path.starts_with("usr/share/man/man1/filterctl-") && path.ends_with(".1.gz"))
}

/// The files an upgrade keeps the administrator's edits of.
const CONFFILES: &[&str] = &["/etc/default/filterctl", "/etc/filterctl/rules.toml"];

/// What a purge leaves in the root beside dpkg's database: the user, as
/// systemd-sysusers writes it (Debian's packages keep their system users:
/// files they own may outlive the package), and deb-systemd-helper's state
/// folder, emptied (every systemd machine has it).
const AFTER_PURGE: &[&str] = &[
    "etc/",
    "etc/.pwd.lock",
    "etc/group",
    "etc/gshadow",
    "etc/passwd",
    "etc/shadow",
    "var/lib/systemd/",
];

/// What a remove leaves beyond that: the conffiles, and the unit's recorded
/// links, which the purge forgets.
const AFTER_REMOVE: &[&str] = &[
    "etc/default/",
    "etc/default/filterctl",
    "etc/filterctl/",
    "etc/filterctl/rules.toml",
    "var/lib/systemd/deb-systemd-helper-enabled/",
    "var/lib/systemd/deb-systemd-helper-enabled/filterctl.service.dsh-also",
];

/// What of this host the maintainer scripts would change, were DPKG_ROOT
/// ignored: users, the unit's recorded links, the pin root on bpffs.
const HOST_PATHS: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/var/lib/systemd/deb-systemd-helper-enabled/filterctl.service.dsh-also",
    "/sys/fs/bpf/filterctl",
];

/// Installs `deb` (a package of filterctl `version`) into a throwaway root
/// under `scratch`, checks it, removes and purges it: the checks passed, or
/// every one that failed. Needs root: dpkg makes files owned by root.
pub fn check_installed(
    deb: &Path,
    scratch: &Path,
    version: &str,
) -> anyhow::Result<Vec<&'static str>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    ensure!(
        euid == 0,
        "installing {} into a throwaway root needs root (dpkg makes files owned by root); \
         running as uid {euid}",
        deb.display()
    );
    let host = host_state();
    let root = Root::new(&scratch.join("install"))?;
    let empty = root.tree()?;
    // The root holds no libc6 or systemd to meet the dependencies: the
    // host's stand in, since the maintainer scripts and the binary run here.
    root.dpkg([
        "--force-depends".as_ref(),
        "--install".as_ref(),
        deb.as_os_str(),
    ])?;

    let mut checks = Checks::default();
    checks.run("installed", || {
        root.expect_status(Some("install ok installed"))
    });
    checks.run("files, modes and owners", || files(&root));
    checks.run("conffiles", || conffiles(&root));
    checks.run("dpkg --verify", || {
        let out = root.dpkg(["--verify", "filterctl"])?;
        ensure!(
            out.trim().is_empty(),
            "files differ from the package: {out}"
        );
        Ok(())
    });
    checks.run("user and group", || account(&root));
    checks.run("man pages", || man_pages(&root));
    checks.run("bash completion", || bash(&root));
    checks.run("zsh completion", || zsh(&root));
    checks.run("fish completion", || fish(&root));
    checks.run("filterctl --version", || binary(&root, version));
    checks.run("remove", || {
        root.dpkg(["--remove", "filterctl"])?;
        root.expect_status(Some("deinstall ok config-files"))?;
        let left: Vec<&str> = AFTER_PURGE.iter().chain(AFTER_REMOVE).copied().collect();
        expect_tree(&root.tree()?, &empty, &left)
    });
    checks.run("purge", || {
        root.dpkg(["--purge", "filterctl"])?;
        root.expect_status(None)?;
        expect_tree(&root.tree()?, &empty, AFTER_PURGE)
    });
    checks.run("host untouched", || {
        let changed: Vec<&str> = HOST_PATHS
            .iter()
            .zip(host_state())
            .zip(&host)
            .filter(|((_, now), before)| now != *before)
            .map(|((path, _), _)| *path)
            .collect();
        ensure!(changed.is_empty(), "changed on this host: {changed:?}");
        Ok(())
    });
    checks.finish()
}

/// The checks' outcomes: every failure is listed, not only the first.
#[derive(Default)]
struct Checks {
    passed: Vec<&'static str>,
    failed: Vec<String>,
}

impl Checks {
    fn run(&mut self, name: &'static str, check: impl FnOnce() -> anyhow::Result<()>) {
        match check() {
            Ok(()) => self.passed.push(name),
            Err(e) => self.failed.push(format!("{name}: {e:#}")),
        }
    }

    fn finish(self) -> anyhow::Result<Vec<&'static str>> {
        if !self.failed.is_empty() {
            bail!(
                "{} of {} package checks failed:\n  {}",
                self.failed.len(),
                self.failed.len() + self.passed.len(),
                self.failed.join("\n  ")
            );
        }
        Ok(self.passed)
    }
}

/// Each of HOST_PATHS: whether it is a folder, and a file's bytes (None
/// when missing).
fn host_state() -> Vec<Option<(bool, Vec<u8>)>> {
    HOST_PATHS
        .iter()
        .map(|p| {
            let meta = std::fs::symlink_metadata(p).ok()?;
            Some((meta.is_dir(), std::fs::read(p).unwrap_or_default()))
        })
        .collect()
}

/// The root holds `empty`'s paths and `left`, nothing else.
fn expect_tree(
    tree: &BTreeSet<String>,
    empty: &BTreeSet<String>,
    left: &[&str],
) -> anyhow::Result<()> {
    let expected: BTreeSet<String> = empty
        .iter()
        .cloned()
        .chain(left.iter().map(|p| p.to_string()))
        .collect();
    let extra: Vec<&String> = tree.difference(&expected).collect();
    let missing: Vec<&String> = expected.difference(tree).collect();
    ensure!(
        extra.is_empty() && missing.is_empty(),
        "left behind: {extra:?}; missing: {missing:?}"
    );
    Ok(())
}

/// Every path dpkg lists for the package is root's, folders 0755, files as
/// FILES says (or 0644, for `other_file`); every one of FILES is there; man
/// pages are gzipped.
fn files(root: &Root) -> anyhow::Result<()> {
    let listed = root.query("${db-fsys:Files}").unwrap_or_default();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for rel in listed.lines().map(|l| l.trim().trim_start_matches('/')) {
        if rel.is_empty() || rel == "." {
            continue;
        }
        let meta = match std::fs::symlink_metadata(root.dir.join(rel)) {
            Ok(meta) => meta,
            Err(e) => {
                problems.push(format!("{rel}: {e}"));
                continue;
            }
        };
        let mode = meta.mode() & 0o7777;
        if (meta.uid(), meta.gid()) != (0, 0) {
            problems.push(format!("{rel}: owned by {}:{}", meta.uid(), meta.gid()));
        }
        let expected = if meta.is_dir() {
            Some(0o755)
        } else if !meta.is_file() {
            problems.push(format!("{rel}: neither a file nor a folder"));
            continue;
        } else {
            seen.insert(rel.to_string());
            FILES
                .iter()
                .find(|(path, _)| *path == rel)
                .map(|(_, mode)| *mode)
                .or_else(|| other_file(rel).then_some(0o644))
        };
        match expected {
            None => problems.push(format!("{rel}: not a file this package installs")),
            Some(want) if want != mode => {
                problems.push(format!("{rel}: mode {mode:04o}, expected {want:04o}"));
            }
            Some(_) => {}
        }
        if rel.starts_with("usr/share/man/") && meta.is_file() {
            let head = std::fs::read(root.dir.join(rel))?;
            if !head.starts_with(&[0x1f, 0x8b]) {
                problems.push(format!("{rel}: not gzipped"));
            }
        }
    }
    for (path, _) in FILES {
        if !seen.contains(*path) {
            problems.push(format!("{path}: not installed"));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

fn conffiles(root: &Root) -> anyhow::Result<()> {
    let listed = root.query("${Conffiles}").unwrap_or_default();
    // Lines ` /etc/default/filterctl <md5sum>`.
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ensure!(
        names == CONFFILES,
        "conffiles {names:?}, expected {CONFFILES:?}"
    );
    Ok(())
}

/// The user and group of filterctl.sysusers, made in the root by the
/// postinst: a system account that cannot log in.
fn account(root: &Root) -> anyhow::Result<()> {
    let entry = |file: &str| -> anyhow::Result<Vec<String>> {
        let path = root.dir.join("etc").join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let line = text
            .lines()
            .find(|l| l.starts_with("filterctl:"))
            .with_context(|| format!("no filterctl in /etc/{file}"))?;
        Ok(line.split(':').map(str::to_string).collect())
    };
    let user = entry("passwd")?;
    let group = entry("group")?;
    let shadow = entry("shadow")?;
    let uid: u32 = user[2].parse().context("uid")?;
    // Debian's system accounts: 100-999 (SYS_UID_MIN/MAX in login.defs).
    ensure!((100..1000).contains(&uid), "uid {uid} is not a system uid");
    ensure!(
        user[3] == group[2],
        "primary gid {}, the filterctl group's {}",
        user[3],
        group[2]
    );
    ensure!(
        user[4..] == ["filterctl XDP filter", "/nonexistent", "/usr/sbin/nologin"],
        "passwd entry {user:?}"
    );
    ensure!(
        shadow[1].starts_with('!'),
        "the password is not locked: {}",
        shadow[1]
    );
    Ok(())
}

/// The installed binary runs and says its version; it is a product build,
/// without the tests' fault injection.
fn binary(root: &Root, version: &str) -> anyhow::Result<()> {
    let path = root.dir.join("usr/bin/filterctl");
    let out = output(root.shell(&path.to_string_lossy()).arg("--version"))?;
    ensure!(
        out == format!("filterctl {version}\n"),
        "{} --version: {out:?}",
        path.display()
    );
    let bytes = std::fs::read(&path)?;
    let needle = b"FILTERCTL_FAILPOINT";
    ensure!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the binary has fault injection (FILTERCTL_FAILPOINT): a test build"
    );
    Ok(())
}
