//! A crate's modules: its roots in a package, then the file of each module
//! from the root along `mod name;` declarations, and the items each holds.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::{Path, PathBuf},
};

use super::scan::{Scan, scan};

/// A package's crate roots: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`,
/// and the `path` of each `[lib]` and `[[bin]]` table of its manifest.
pub(super) fn crate_roots(package: &Path) -> BTreeSet<PathBuf> {
    let mut roots: BTreeSet<PathBuf> = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|r| package.join(r))
        .collect();
    if let Ok(bins) = std::fs::read_dir(package.join("src/bin")) {
        roots.extend(bins.flatten().map(|e| e.path()));
    }
    let manifest = std::fs::read_to_string(package.join("Cargo.toml")).unwrap_or_default();
    let mut table = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            table = line;
        } else if let Some(value) = line.strip_prefix("path")
            && ["[lib]", "[[bin]]"].contains(&table)
        {
            let value = value.trim_start().trim_start_matches('=').trim();
            roots.insert(package.join(value.trim_matches('"')));
        }
    }
    roots.retain(|r| r.is_file() && r.extension().is_some_and(|e| e == "rs"));
    roots
}

/// A module path from the crate root (empty for the root itself).
pub(super) type ModPath = Vec<String>;

#[derive(Debug, Default)]
pub(super) struct Modules {
    file: BTreeMap<ModPath, PathBuf>,
    children: BTreeMap<ModPath, BTreeSet<String>>,
    items: BTreeSet<(ModPath, String)>,
}

impl Modules {
    fn add(&mut self, path: ModPath, file: &Path) {
        if let Some((name, parent)) = path.split_last() {
            self.children
                .entry(parent.to_vec())
                .or_default()
                .insert(name.clone());
        }
        self.file.insert(path, file.to_path_buf());
    }

    pub(super) fn has_child(&self, module: &[String], name: &str) -> bool {
        self.children.get(module).is_some_and(|c| c.contains(name))
    }

    pub(super) fn has_item(&self, module: &[String], name: &str) -> bool {
        self.items.contains(&(module.to_vec(), name.to_string()))
    }

    /// The file of the longest prefix of `path` that is a module: where the
    /// item the path names is defined (or re-exported).
    pub(super) fn file_of(&self, path: &[String]) -> Option<&PathBuf> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.file.get(&path[..n]))
    }
}

/// The file of `mod name;` declared in `file` (inside its inline `scope`):
/// `name.rs` or `name/mod.rs`, beside `file` when it owns its directory (a
/// crate root or a `mod.rs`), else in a directory named after it.
fn child_file(
    file: &Path,
    owns_dir: bool,
    scope: &[String],
    name: &str,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let dir = file.parent()?;
    let mut base = if owns_dir {
        dir.to_path_buf()
    } else {
        dir.join(file.file_stem()?)
    };
    base.extend(scope);
    [
        base.join(format!("{name}.rs")),
        base.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| exists(p))
}

/// A crate's files, each with its module and what its scan found.
pub(super) type Files = Vec<(PathBuf, ModPath, Scan)>;

/// The modules of the crate whose root is `root`, found along its `mod
/// name;` declarations, and every file of them scanned.
pub(super) fn walk(root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> (Modules, Files) {
    let mut modules = Modules::default();
    let mut scans: Files = Vec::new();
    let mut queue = VecDeque::from([(root.to_path_buf(), ModPath::new(), true)]);
    let exists = |p: &Path| read(p).is_some();
    while let Some((file, module, owns_dir)) = queue.pop_front() {
        let Some(src) = read(&file) else { continue };
        let scan = scan(&src);
        modules.add(module.clone(), &file);
        for inline in &scan.inline {
            modules.add([module.clone(), inline.clone()].concat(), &file);
        }
        for (scope, name) in &scan.items {
            modules
                .items
                .insert(([module.clone(), scope.clone()].concat(), name.clone()));
        }
        for (scope, name) in &scan.declared {
            if let Some(child) = child_file(&file, owns_dir, scope, name, &exists) {
                let path = [module.clone(), scope.clone(), vec![name.clone()]].concat();
                modules.add(path.clone(), &child);
                let is_mod_rs = child.file_name().is_some_and(|n| n == "mod.rs");
                queue.push_back((child, path, is_mod_rs));
            }
        }
        scans.push((file, module, scan));
    }
    (modules, scans)
}

#[cfg(test)]
mod tests {
    use super::crate_roots;
    use crate::imports::resolve::tests::{edges, graph_at};

    #[test]
    fn a_binary_root_owns_its_directory() {
        let graph = graph_at(
            "floors.rs",
            &[
                ("floors.rs", "mod counters;\nuse counters::C;"),
                ("counters.rs", "pub struct C;"),
                ("floors/counters.rs", "pub struct Elsewhere;"),
            ],
        );
        assert_eq!(edges(&graph), ["floors.rs -> counters.rs"]);
    }

    #[test]
    fn roots_come_from_the_layout_and_the_manifest() {
        let dir = std::env::temp_dir().join(format!("xtask-imports-{}", std::process::id()));
        let write = |p: &str, text: &str| {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "Cargo.toml",
            "[package]\nname = \"p\"\n[[bin]]\nname = \"floors\"\npath = \"src/floors.rs\"\n\
             [dependencies.q]\npath = \"../q/src/lib.rs\"\n",
        );
        for file in [
            "src/lib.rs",
            "src/bin/tool.rs",
            "src/floors.rs",
            "src/other.rs",
        ] {
            write(file, "");
        }
        let roots = crate_roots(&dir);
        let names: Vec<String> = roots
            .iter()
            .map(|r| r.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["src/bin/tool.rs", "src/floors.rs", "src/lib.rs"]);
    }
}
