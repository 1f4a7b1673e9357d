//! What reads the installed files the way a machine would: man for the
//! pages, bash, zsh and fish for the completions.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};

use super::root::{PATH, Root, output};

/// Every man page renders without a warning and names itself; `man` finds
/// the main page by name in the root's man tree.
pub(super) fn man_pages(root: &Root) -> anyhow::Result<()> {
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
pub(super) fn bash(root: &Root) -> anyhow::Result<()> {
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
pub(super) fn zsh(root: &Root) -> anyhow::Result<()> {
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
pub(super) fn fish(root: &Root) -> anyhow::Result<()> {
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
