//! `cargo xtask dist`: a release tarball and a Debian package of filterctl
//! (binary, man pages and completions generated from the clap definitions,
//! the systemd unit with its user and pin root, default rules under
//! /etc/filterctl), the package's contents listed and checked by lintian.

use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::cmd::{cmd, root, run, target_dir};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAINTAINER: &str = "xdp-reflect-filter maintainers <filterctl@example.org>";

/// (source in the repository or the docs folder, destination in the
/// package, mode).
fn layout(docs: &Path) -> Vec<(PathBuf, &'static str, u32)> {
    let r = root();
    let mut files = vec![
        (
            r.join("target/release/filterctl"),
            "usr/bin/filterctl",
            0o755,
        ),
        (
            r.join("rules/default.toml"),
            "etc/filterctl/rules.toml",
            0o644,
        ),
        (
            r.join("deploy/systemd/filterctl.default"),
            "etc/default/filterctl",
            0o644,
        ),
        (
            r.join("deploy/systemd/filterctl.service"),
            "lib/systemd/system/filterctl.service",
            0o644,
        ),
        (
            r.join("deploy/systemd/filterctl.sysusers"),
            "usr/lib/sysusers.d/filterctl.conf",
            0o644,
        ),
        (
            r.join("deploy/systemd/filterctl.tmpfiles"),
            "usr/lib/tmpfiles.d/filterctl.conf",
            0o644,
        ),
        (
            docs.join("completions/filterctl.bash"),
            "usr/share/bash-completion/completions/filterctl",
            0o644,
        ),
        (
            docs.join("completions/_filterctl"),
            "usr/share/zsh/vendor-completions/_filterctl",
            0o644,
        ),
        (
            docs.join("completions/filterctl.fish"),
            "usr/share/fish/vendor_completions.d/filterctl.fish",
            0o644,
        ),
        (
            r.join("deploy/grafana/dashboard.json"),
            "usr/share/filterctl/grafana/dashboard.json",
            0o644,
        ),
        (
            r.join("deploy/prometheus/alerts.yml"),
            "usr/share/filterctl/prometheus/alerts.yml",
            0o644,
        ),
    ];
    files.sort_by(|a, b| a.1.cmp(b.1));
    files
}

fn install(src: &Path, stage: &Path, dest: &str, mode: u32) -> anyhow::Result<()> {
    let to = stage.join(dest);
    std::fs::create_dir_all(to.parent().expect("a folder"))?;
    std::fs::copy(src, &to).with_context(|| format!("cannot copy {}", src.display()))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `gzip -9n` of `data` into `to`.
fn gzip_to(data: &[u8], to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.parent().expect("a folder"))?;
    let mut child = std::process::Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(to)?)
        .spawn()
        .context("cannot run gzip")?;
    child.stdin.take().expect("piped").write_all(data)?;
    if !child.wait()?.success() {
        bail!("gzip failed");
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// The files every install gets: binary, unit, rules, man pages, docs.
fn stage_tree(stage: &Path, docs: &Path) -> anyhow::Result<()> {
    for (src, dest, mode) in layout(docs) {
        install(&src, stage, dest, mode)?;
    }
    for page in std::fs::read_dir(docs.join("man"))? {
        let page = page?.path();
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        gzip_to(
            &std::fs::read(&page)?,
            &stage.join(format!("usr/share/man/man1/{name}.gz")),
        )?;
    }
    let doc = stage.join("usr/share/doc/filterctl");
    std::fs::create_dir_all(&doc)?;
    let r = root();
    let copyright = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: filterctl\n\n\
         Files: *\nCopyright: 2026 The xdp-reflect-filter authors\nLicense: MIT or Apache-2.0\n\n\
         License: MIT\n{}\n\nLicense: Apache-2.0\n On Debian systems, the full text of the Apache License 2.0\n can be found in /usr/share/common-licenses/Apache-2.0.\n",
        indent(&std::fs::read_to_string(r.join("LICENSE-MIT"))?)
    );
    std::fs::write(doc.join("copyright"), copyright)?;
    gzip_to(
        &std::fs::read(r.join("README.md"))?,
        &doc.join("README.md.gz"),
    )?;
    gzip_to(
        &std::fs::read(r.join("deploy/README.md"))?,
        &doc.join("deploy.md.gz"),
    )?;
    // README's links lead here: docs/X.md ships as docs/X.md.gz.
    let md = doc.join("docs");
    std::fs::create_dir_all(&md)?;
    for entry in std::fs::read_dir(r.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().expect("a file").to_string_lossy();
            gzip_to(&std::fs::read(&path)?, &md.join(format!("{name}.gz")))?;
        }
    }
    let changelog = format!(
        "filterctl ({VERSION}) unstable; urgency=medium\n\n  * Release {VERSION}.\n\n -- {MAINTAINER}  Sun, 29 Nov 2026 00:00:00 +0000\n"
    );
    gzip_to(changelog.as_bytes(), &doc.join("changelog.gz"))?;
    Ok(())
}

/// Debian copyright format: license text indented, blank lines as " .".
fn indent(text: &str) -> String {
    text.trim()
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .".to_string()
            } else {
                format!(" {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Creates the user and the pin root; fails, saying why, without
/// systemd-sysusers (the service cannot run without its user). Records the
/// links `systemctl enable` would make, so that the prerm can take them
/// away. Neither enables nor starts the service.
const POSTINST: &str = "#!/bin/sh
set -e
if [ \"$1\" = configure ]; then
    if ! command -v systemd-sysusers >/dev/null 2>&1; then
        echo \"filterctl: systemd-sysusers not found: cannot create the filterctl user the service runs as. Install systemd (or systemd-standalone-sysusers), then: dpkg --configure filterctl\" >&2
        exit 1
    fi
    systemd-sysusers filterctl.conf
    # The pin root is on bpffs, which a chroot or a container may lack: the
    # service's start then fails and says so; at boot, systemd makes it.
    systemd-tmpfiles --create filterctl.conf ||
        echo \"filterctl: /sys/fs/bpf/filterctl not created (is bpffs mounted?)\" >&2
    deb-systemd-helper update-state filterctl.service
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
# Not enabled or started: pick the interface in /etc/default/filterctl, then
# `systemctl enable --now filterctl`.
exit 0
";

/// Stops the daemon before its binary goes and takes the unit out of the
/// boot, on remove only: an upgrade leaves it running until `systemctl
/// restart filterctl`. Either way the filter stays attached and enforcing
/// (`filterctl unload --all` takes it off).
const PRERM: &str = "#!/bin/sh
set -e
if [ \"$1\" = remove ]; then
    if [ -d /run/systemd/system ]; then
        deb-systemd-invoke stop filterctl.service
    fi
    deb-systemd-helper disable filterctl.service
fi
exit 0
";

const POSTRM: &str = "#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
if [ \"$1\" = purge ]; then
    deb-systemd-helper purge filterctl.service
fi
exit 0
";

/// The maintainer scripts, by name.
const SCRIPTS: [(&str, &str); 3] = [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)];

/// The C library, and systemd-sysusers (systemd's, or a package providing
/// it) for the postinst to create the service's user.
const DEPENDS: &str = "libc6 (>= 2.36), systemd | systemd-standalone-sysusers | systemd-sysusers";

/// The DEBIAN folder: control, conffiles, maintainer scripts.
fn control(stage: &Path) -> anyhow::Result<()> {
    let dir = stage.join("DEBIAN");
    std::fs::create_dir_all(&dir)?;
    let size_kb = dir_size(stage)? / 1024 + 1;
    let control = format!(
        "Package: filterctl\nVersion: {VERSION}\nArchitecture: amd64\nMaintainer: {MAINTAINER}\n\
         Installed-Size: {size_kb}\nDepends: {DEPENDS}\nSection: net\nPriority: optional\n\
         Homepage: https://example.org/filterctl\n\
         Description: XDP filter against UDP reflection floods\n \
         filterctl loads an XDP program that drops reflected replies (NTP, SSDP and\n \
         others) before the kernel allocates anything for them, feeds it rule files\n \
         kept in git, and exports what it dropped to Prometheus.\n"
    );
    std::fs::write(dir.join("control"), control)?;
    std::fs::write(
        dir.join("conffiles"),
        "/etc/default/filterctl\n/etc/filterctl/rules.toml\n",
    )?;
    for (name, text) in SCRIPTS {
        std::fs::write(dir.join(name), text)?;
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// `c` with more arguments.
fn with<S: AsRef<std::ffi::OsStr>>(
    mut c: std::process::Command,
    args: impl IntoIterator<Item = S>,
) -> std::process::Command {
    c.args(args);
    c
}

pub fn dist() -> anyhow::Result<()> {
    let out = target_dir().join("dist");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let build = [
        "build",
        "--release",
        "-p",
        "filter-user",
        "--bin",
        "filterctl",
    ];
    run(cmd("cargo", build))?;
    let docs = out.join("docs");
    let gen_docs = [
        "run",
        "--release",
        "-q",
        "-p",
        "filter-user",
        "--example",
        "dist-docs",
        "--",
    ];
    run(with(cmd("cargo", gen_docs), [&docs]))?;
    let binary = target_dir().join("release/filterctl");
    run(with(cmd("strip", ["--strip-unneeded"]), [&binary]))?;

    let name = format!("filterctl-{VERSION}-x86_64-linux");
    let tree = out.join(&name);
    stage_tree(&tree, &docs)?;
    let tarball = out.join(format!("{name}.tar.gz"));
    run(with(
        cmd("tar", ["--owner=0", "--group=0", "-czf"]),
        [
            tarball.as_os_str(),
            "-C".as_ref(),
            out.as_os_str(),
            name.as_ref(),
        ],
    ))?;

    let stage = out.join("deb");
    stage_tree(&stage, &docs)?;
    control(&stage)?;
    let deb = out.join(format!("filterctl_{VERSION}_amd64.deb"));
    run(with(
        cmd("dpkg-deb", ["--root-owner-group", "--build"]),
        [&stage, &deb],
    ))?;
    run(with(cmd("dpkg-deb", ["--contents"]), [&deb]))?;
    // Errors fail the build; warnings are printed for the record.
    run(with(
        cmd(
            "lintian",
            ["--fail-on", "error", "--tag-display-limit", "0"],
        ),
        [&deb],
    ))?;
    println!("dist: {}\ndist: {}", tarball.display(), deb.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs maintainer script `text` with `arg`, its PATH holding only
    /// `tools` (each a stub that logs its arguments, or fails when its name
    /// is in `failing`): exit status, stderr, the stubs' calls.
    fn run_script(
        text: &str,
        arg: &str,
        tools: &[&str],
        failing: &[&str],
    ) -> (i32, String, String) {
        // Tests run at once: a folder for each run.
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xtask-dist-{}-{n}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.join("calls");
        for tool in tools {
            let status = if failing.contains(tool) { 1 } else { 0 };
            let stub = format!(
                "#!/bin/sh\necho \"{tool} $*\" >> {}\nexit {status}\n",
                log.display()
            );
            std::fs::write(bin.join(tool), stub).unwrap();
            std::fs::set_permissions(bin.join(tool), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", text, "script", arg])
            .env_clear()
            .env("PATH", &bin)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), stderr, calls)
    }

    /// systemctl is called only where systemd runs (as PID 1): not in
    /// these tests unless the machine runs it.
    fn systemd_runs() -> bool {
        Path::new("/run/systemd/system").is_dir()
    }

    #[test]
    fn postinst_fails_without_sysusers_and_says_why() {
        let (code, stderr, calls) = run_script(POSTINST, "configure", &["systemd-tmpfiles"], &[]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("systemd-sysusers not found"), "{stderr}");
        assert_eq!(calls, "", "nothing else ran");
    }

    #[test]
    fn postinst_makes_the_user_and_records_the_unit() {
        let tools = [
            "systemd-sysusers",
            "systemd-tmpfiles",
            "deb-systemd-helper",
            "systemctl",
        ];
        // bpffs missing: said, not fatal.
        let (code, stderr, calls) =
            run_script(POSTINST, "configure", &tools, &["systemd-tmpfiles"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("is bpffs mounted?"), "{stderr}");
        let mut expected = "systemd-sysusers filterctl.conf\n\
                            systemd-tmpfiles --create filterctl.conf\n\
                            deb-systemd-helper update-state filterctl.service\n"
            .to_string();
        if systemd_runs() {
            expected += "systemctl daemon-reload\n";
        }
        assert_eq!(calls, expected);
    }

    #[test]
    fn prerm_stops_and_disables_on_remove_only() {
        let tools = ["deb-systemd-invoke", "deb-systemd-helper"];
        let (code, stderr, calls) = run_script(PRERM, "remove", &tools, &[]);
        assert_eq!(code, 0, "{stderr}");
        let stop = if systemd_runs() {
            "deb-systemd-invoke stop filterctl.service\n"
        } else {
            ""
        };
        assert_eq!(
            calls,
            format!("{stop}deb-systemd-helper disable filterctl.service\n")
        );
        // A failed disable stops the removal rather than leave the unit
        // enabled without its files.
        let (code, _, _) = run_script(PRERM, "remove", &tools, &["deb-systemd-helper"]);
        assert_ne!(code, 0);
        for arg in ["upgrade", "deconfigure", "failed-upgrade"] {
            let (code, stderr, calls) = run_script(PRERM, arg, &tools, &[]);
            assert_eq!((code, calls.as_str()), (0, ""), "prerm {arg}: {stderr}");
        }
    }

    #[test]
    fn postrm_purges_the_recorded_links() {
        let tools = ["deb-systemd-helper", "systemctl"];
        let (code, stderr, calls) = run_script(POSTRM, "purge", &tools, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            calls.ends_with("deb-systemd-helper purge filterctl.service\n"),
            "{calls}"
        );
        let (_, _, calls) = run_script(POSTRM, "remove", &tools, &[]);
        assert!(!calls.contains("deb-systemd-helper"), "{calls}");
    }
}
