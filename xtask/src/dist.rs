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

const POSTINST: &str = "#!/bin/sh
set -e
if [ \"$1\" = configure ]; then
    systemd-sysusers filterctl.conf || true
    systemd-tmpfiles --create filterctl.conf || true
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
# Not enabled or started: pick the interface in /etc/default/filterctl, then
# `systemctl enable --now filterctl`.
exit 0
";

const POSTRM: &str = "#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
";

/// The DEBIAN folder: control, conffiles, maintainer scripts.
fn control(stage: &Path) -> anyhow::Result<()> {
    let dir = stage.join("DEBIAN");
    std::fs::create_dir_all(&dir)?;
    let size_kb = dir_size(stage)? / 1024 + 1;
    let control = format!(
        "Package: filterctl\nVersion: {VERSION}\nArchitecture: amd64\nMaintainer: {MAINTAINER}\n\
         Installed-Size: {size_kb}\nDepends: libc6 (>= 2.36)\nSection: net\nPriority: optional\n\
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
    for (name, text) in [("postinst", POSTINST), ("postrm", POSTRM)] {
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
