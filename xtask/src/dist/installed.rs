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

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

/// dpkg wants the sbin folders on PATH; nothing else of the caller's
/// environment reaches the maintainer scripts or the shells.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// The throwaway root, with dpkg's log and the shells' home beside it:
/// removed when dropped, whichever way the check ends.
struct Root {
    /// Holds the three.
    base: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    home: PathBuf,
}

impl Root {
    /// An empty root with the admin folder dpkg needs.
    fn new(base: &Path) -> anyhow::Result<Root> {
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
    fn dpkg<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> anyhow::Result<String> {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", self.dir.display()))
            .arg(format!("--log={}", self.log.display()))
            .arg("--force-script-chrootless")
            .args(args);
        output(c.env_clear().env("PATH", PATH))
    }

    /// `${field}` of the package in the root's database, None when it is
    /// not there.
    fn query(&self, format: &str) -> Option<String> {
        let mut c = Command::new("dpkg-query");
        c.arg(format!(
            "--admindir={}",
            self.dir.join("var/lib/dpkg").display()
        ))
        .args(["-W", &format!("-f={format}"), "filterctl"]);
        output(&mut c).ok()
    }

    fn expect_status(&self, expected: Option<&str>) -> anyhow::Result<()> {
        let status = self.query("${Status}");
        ensure!(
            status.as_deref() == expected,
            "dpkg says {status:?}, expected {expected:?}"
        );
        Ok(())
    }

    /// A command of the root's shell tools, with the root's home.
    fn shell(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear().env("PATH", PATH).env("HOME", &self.home);
        c
    }

    /// Every path in the root but dpkg's database, relative, folders with a
    /// trailing slash.
    fn tree(&self) -> anyhow::Result<BTreeSet<String>> {
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
fn output(c: &mut Command) -> anyhow::Result<String> {
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

/// Every man page renders without a warning and names itself; `man` finds
/// the main page by name in the root's man tree.
fn man_pages(root: &Root) -> anyhow::Result<()> {
    let tree = root.dir.join("usr/share/man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(tree.join("man1"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    ensure!(pages.len() > 1, "only {pages:?}");
    for page in &pages {
        let name = page
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".1.gz"))
            .with_context(|| format!("{} is no section 1 page", page.display()))?;
        let mut man = root.shell("man");
        man.args(["--warnings", "-l"]).arg(page);
        let out = man.env("MANWIDTH", "80").output()?;
        let (text, errors) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        ensure!(
            out.status.success() && errors.trim().is_empty(),
            "man -l {name}: {} {errors}",
            out.status
        );
        ensure!(
            text.contains("NAME") && text.contains(name),
            "man -l {name} printed no NAME section of {name}: {text}"
        );
    }
    let mut find = root.shell("man");
    find.arg(format!("--manpath={}", tree.display()))
        .args(["-w", "filterctl"]);
    let found = output(&mut find)?;
    let expected = tree.join("man1/filterctl.1.gz");
    ensure!(
        Path::new(found.trim()) == expected,
        "man -w filterctl: {found}"
    );
    Ok(())
}

/// Parses, registers `_filterctl` for filterctl, and completes `filterctl
/// lo` to `load`.
fn bash(root: &Root) -> anyhow::Result<()> {
    let file = root
        .dir
        .join("usr/share/bash-completion/completions/filterctl");
    output(root.shell("bash").arg("-n").arg(&file))?;
    let script = r#"source "$1" && complete -p filterctl &&
        COMP_WORDS=(filterctl lo) && COMP_CWORD=1 && _filterctl filterctl lo filterctl &&
        printf '%s\n' "${COMPREPLY[@]}""#;
    let out = output(
        root.shell("bash")
            .args(["--norc", "--noprofile", "-c", script, "bash"])
            .arg(&file),
    )?;
    ensure!(
        out.contains("-F _filterctl") && out.lines().any(|l| l == "load"),
        "bash: {out}"
    );
    Ok(())
}

/// Parses; zsh looks in the package's folder, and compinit finds
/// `_filterctl` there for filterctl.
fn zsh(root: &Root) -> anyhow::Result<()> {
    let dir = root.dir.join("usr/share/zsh/vendor-completions");
    output(root.shell("zsh").arg("-n").arg(dir.join("_filterctl")))?;
    let fpath = output(root.shell("zsh").args(["-f", "-c", "print -rl -- $fpath"]))?;
    ensure!(
        fpath
            .lines()
            .any(|l| l == "/usr/share/zsh/vendor-completions"),
        "zsh does not look in /usr/share/zsh/vendor-completions: {fpath}"
    );
    let script = r#"fpath=("$1" $fpath); autoload -Uz compinit; compinit -u -D;
        print -r -- "${_comps[filterctl]}""#;
    let out = output(
        root.shell("zsh")
            .args(["-f", "-c", script, "zsh"])
            .arg(&dir),
    )?;
    ensure!(
        out.trim() == "_filterctl",
        "zsh's completion of filterctl: {out:?}"
    );
    Ok(())
}

/// Parses; fish looks in the package's folder, loads the file by the
/// command's name from there and completes `filterctl lo` to `load`.
fn fish(root: &Root) -> anyhow::Result<()> {
    let dir = root.dir.join("usr/share/fish/vendor_completions.d");
    output(root.shell("fish").arg("-n").arg(dir.join("filterctl.fish")))?;
    let path = output(
        root.shell("fish")
            .args(["-c", "string join \\n $fish_complete_path"]),
    )?;
    ensure!(
        path.lines()
            .any(|l| l == "/usr/share/fish/vendor_completions.d"),
        "fish does not look in /usr/share/fish/vendor_completions.d: {path}"
    );
    // fish loads a command's completions only when the command is on PATH.
    let bin = root.dir.join("usr/bin");
    let script = "set -p fish_complete_path $argv[1]; complete -C 'filterctl lo'";
    let out = output(
        root.shell("fish")
            .env("PATH", format!("{}:{PATH}", bin.display()))
            .args(["-c", script])
            .arg(&dir),
    )?;
    ensure!(
        out.lines().any(|l| l.starts_with("load\t")),
        "fish completes `filterctl lo` with: {out}"
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
