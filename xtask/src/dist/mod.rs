//! `cargo xtask dist`: a release tarball and a Debian package of filterctl
//! (binary, man pages and completions generated from the clap definitions,
//! the systemd unit with its user and pin root, default rules under
//! /etc/filterctl), the package's contents listed, checked by lintian and
//! installed into a throwaway root (`installed`). The maintainer scripts are
//! in `scripts`. A test of this crate builds, lints and installs the same
//! package from a dev build.

use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use self::{installed::check_installed, scripts::SCRIPTS};
use crate::cmd::{cmd, root, run, shell_line, target_dir};

mod installed;
mod scripts;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAINTAINER: &str = "xdp-reflect-filter maintainers <filterctl@example.org>";

/// (source: the binary, in the repository or in the docs folder;
/// destination in the package; mode).
fn layout(binary: &Path, docs: &Path) -> Vec<(PathBuf, &'static str, u32)> {
    let r = root();
    let mut files = vec![
        (binary.to_path_buf(), "usr/bin/filterctl", 0o755),
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

/// The files every install gets: binary (stripped here, the build's own
/// copy left as it is), unit, rules, man pages, docs.
fn stage_tree(stage: &Path, binary: &Path, docs: &Path, output: Output) -> anyhow::Result<()> {
    for (src, dest, mode) in layout(binary, docs) {
        install(&src, stage, dest, mode)?;
    }
    let strip = ["--strip-unneeded", "--remove-section=.comment"];
    exec(
        with(cmd("strip", strip), [stage.join("usr/bin/filterctl")]),
        output,
    )?;
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

/// The C library, and systemd-sysusers (systemd's, or a package providing
/// it) for the postinst to create the service's user.
const DEPENDS: &str = "libc6 (>= 2.36), systemd | systemd-standalone-sysusers | systemd-sysusers";

/// The files under /etc whose edits an upgrade keeps.
const CONFFILES: [&str; 2] = ["/etc/default/filterctl", "/etc/filterctl/rules.toml"];

/// The DEBIAN folder: control, conffiles, md5sums (for `dpkg --verify`; of
/// the files but the conffiles, which dpkg sums itself, as dh_md5sums
/// does), maintainer scripts.
fn control(stage: &Path) -> anyhow::Result<()> {
    let mut files = files_under(stage, "")?;
    files.retain(|f| !CONFFILES.contains(&format!("/{f}").as_str()));
    let dir = stage.join("DEBIAN");
    std::fs::create_dir_all(&dir)?;
    let sums = Command::new("md5sum")
        .args(&files)
        .current_dir(stage)
        .output()
        .context("cannot run md5sum")?;
    if !sums.status.success() {
        bail!("md5sum failed: {}", String::from_utf8_lossy(&sums.stderr));
    }
    std::fs::write(dir.join("md5sums"), sums.stdout)?;
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
        CONFFILES.map(|f| format!("{f}\n")).concat(),
    )?;
    for (name, text) in SCRIPTS {
        std::fs::write(dir.join(name), text)?;
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The files under `dir` (as `rel` + their path), sorted.
fn files_under(dir: &Path, rel: &str) -> anyhow::Result<Vec<String>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut files = Vec::new();
    for e in entries {
        let name = format!("{rel}{}", e.file_name().to_string_lossy());
        if e.file_type()?.is_dir() {
            files.extend(files_under(&e.path(), &format!("{name}/"))?);
        } else {
            files.push(name);
        }
    }
    Ok(files)
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

/// The build filterctl is packaged from: release for `cargo xtask dist`,
/// dev for the test (a fraction of the build time; the package's files,
/// scripts and layout are the same).
#[derive(Clone, Copy)]
enum Profile {
    Release,
    #[cfg_attr(not(test), expect(dead_code, reason = "the test's build"))]
    Dev,
}

impl Profile {
    /// cargo's flag for it.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Profile::Release => &["--release"],
            Profile::Dev => &[],
        }
    }

    /// Its folder in the target dir.
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "debug",
        }
    }
}

/// Whether the commands' output shows as they run (`cargo xtask dist`) or
/// is kept, and shown only in the error (the test: libtest would
/// interleave it with its result lines).
#[derive(Clone, Copy)]
enum Output {
    Shown,
    #[cfg_attr(not(test), expect(dead_code, reason = "the test's output"))]
    Kept,
}

fn exec(mut c: Command, output: Output) -> anyhow::Result<()> {
    if let Output::Shown = output {
        return run(c);
    }
    let line = shell_line(&c);
    let out = c
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
        // A failed build prints pages: its end says why.
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        bail!("`{line}` failed ({}):\n{tail}", out.status);
    }
    Ok(())
}

/// filterctl built with `profile` (no dev-dependencies: no fault
/// injection), and its man pages and completions generated into
/// `out/docs`: the binary's path and the docs folder.
fn build(profile: Profile, out: &Path, output: Output) -> anyhow::Result<(PathBuf, PathBuf)> {
    let build = ["build", "-p", "filter-user", "--bin", "filterctl"];
    exec(with(cargo(build), profile.flags()), output)?;
    let docs = out.join("docs");
    let gen_docs = ["run", "-q", "-p", "filter-user", "--example", "dist-docs"];
    let gen_docs = with(cargo(gen_docs), profile.flags());
    exec(with(with(gen_docs, ["--"]), [&docs]), output)?;
    let binary = target_dir()
        .join(PACKAGE_ARTIFACTS)
        .join(profile.dir())
        .join("filterctl");
    Ok((binary, docs))
}

/// Where, under the target dir, the packaged build puts its binaries.
const PACKAGE_ARTIFACTS: &str = "package";

/// cargo with the usual build folder (nothing is compiled twice) but its
/// own artifact folder: cargo copies the last build of a binary to
/// target/<profile>/filterctl, where the tests run theirs, with fault
/// injection; this build there would replace it under them.
fn cargo<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut c = cmd("cargo", args);
    c.env("CARGO_BUILD_BUILD_DIR", target_dir())
        .env("CARGO_TARGET_DIR", target_dir().join(PACKAGE_ARTIFACTS));
    c
}

/// The .deb of `binary` and `docs`, staged in `out/deb`.
fn build_deb(binary: &Path, docs: &Path, out: &Path, output: Output) -> anyhow::Result<PathBuf> {
    let stage = out.join("deb");
    let _ = std::fs::remove_dir_all(&stage);
    stage_tree(&stage, binary, docs, output)?;
    control(&stage)?;
    let deb = out.join(format!("filterctl_{VERSION}_amd64.deb"));
    exec(
        with(
            cmd("dpkg-deb", ["--root-owner-group", "--build"]),
            [&stage, &deb],
        ),
        output,
    )?;
    Ok(deb)
}

/// lintian on the package: an error or a warning fails (infos are printed
/// with `Output::Shown`).
fn lintian(deb: &Path, output: Output) -> anyhow::Result<()> {
    let args = [
        "--fail-on",
        "error,warning",
        "--display-info",
        "--tag-display-limit",
        "0",
    ];
    exec(with(cmd("lintian", args), [deb]), output)
}

pub fn dist() -> anyhow::Result<()> {
    let out = target_dir().join("dist");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let (binary, docs) = build(Profile::Release, &out, Output::Shown)?;

    let name = format!("filterctl-{VERSION}-x86_64-linux");
    stage_tree(&out.join(&name), &binary, &docs, Output::Shown)?;
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

    let deb = build_deb(&binary, &docs, &out, Output::Shown)?;
    run(with(cmd("dpkg-deb", ["--contents"]), [&deb]))?;
    lintian(&deb, Output::Shown)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let passed = check_installed(&deb, &out, VERSION)?;
        println!("dist: installed in a throwaway root: {}", passed.join(", "));
    } else {
        println!(
            "dist: not installed in a throwaway root: that needs root (`cargo xtask test` does it)"
        );
    }
    println!("dist: {}\ndist: {}", tarball.display(), deb.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder under the target dir, removed when dropped (a panic too).
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The package `cargo xtask dist` builds, from a dev build (a release
    /// build would add minutes to the suite), through lintian and into a
    /// throwaway root: files, modes, owners, the user and group, man pages,
    /// completions, the binary; then removed and purged.
    #[test]
    fn the_package_installs_and_purges_in_a_throwaway_root() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "dpkg installs the package as root: run the test as root"
        );
        let scratch = Scratch(
            target_dir()
                .join("tmp")
                .join(format!("xtask-package-{}", std::process::id())),
        );
        let out = &scratch.0;
        std::fs::create_dir_all(out).unwrap();
        let (binary, docs) =
            build(Profile::Dev, out, Output::Kept).unwrap_or_else(|e| panic!("{e:#}"));
        let deb = build_deb(&binary, &docs, out, Output::Kept).unwrap_or_else(|e| panic!("{e:#}"));
        lintian(&deb, Output::Kept).unwrap_or_else(|e| panic!("{e:#}"));
        let passed = check_installed(&deb, out, VERSION).unwrap_or_else(|e| panic!("{e:#}"));
        println!("passed: {}", passed.join(", "));
    }
}
