//! The import-circle check: which source files of a crate import each other,
//! found from their `use` items and `crate::`/`super::`/`self::` paths, and
//! reported as cycles (`a.rs -> b.rs -> a.rs`) so a test fails on each one.
//!
//! A file imports another when one of its paths names an item that lives in
//! the other: the path is resolved to a module (`crate::`, `self::`,
//! `super::`, a child module's name, or a name an earlier `use` bound) and the
//! module to its file (`foo.rs` or `foo/mod.rs`, or the file holding an inline
//! `mod foo { .. }`). Declaring `mod child;` is not an import; `pub use
//! self::child::X` (a re-export) is, and `super::` from a child to its
//! parent's `mod.rs` is too. Each crate (a package's lib.rs, main.rs,
//! `src/bin/*.rs` and the `path`s of its manifest's `[lib]` and `[[bin]]`)
//! is a graph of its own, from its root along `mod` declarations.
//!
//! Test modules (`#[cfg(test)] mod ..`, inline or a file) are left out: a
//! test may take what it tests from above it (a rule file parsed by the
//! crate's parser), which says nothing about how the product is layered.
//!
//! Limits, since this is a token scanner and not a compiler:
//! - other `#[cfg]`s are taken as on (a `#[cfg(test)] fn` counts), and
//!   `#[path = ..]` on a `mod` is ignored; files no root reaches are unseen;
//! - in code a path's last segment is taken as an item, so `rules::parse(..)`
//!   is the function in `rules/mod.rs`; a `use` leaf that names a module and
//!   an item of its parent alike is taken as the item (items are known only
//!   by their keyword: `fn`, `struct`, `const`, ..; not a macro's);
//! - names brought in by a glob (`use x::*`) are not followed further, a
//!   `use` is resolved only against the `use` items above it, and a binding
//!   of a name is visible in its whole inline module (block scopes ignored);
//! - a re-exported item counts as living in the file that re-exports it
//!   (which is what a circle through a `mod.rs` is made of);
//! - macros are scanned as text: paths inside `macro_rules!` bodies count,
//!   `$crate::` paths and paths a macro builds are not seen;
//! - comments (doc links too: they are not imports here) and string and
//!   character literals are skipped.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use crate::lexer::{Tok, Token, after_block, tokens};

/// The crates whose files are checked, as directories under the workspace.
const CRATES: &[&str] = &["filter-common", "filter-user", "filter-ebpf", "xtask"];

/// One import that makes a file depend on another: where, and what it named.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Import {
    line: u32,
    path: String,
}

/// The file graph of one crate: which file imports which (first import kept).
#[derive(Debug, Default)]
struct Graph {
    edges: BTreeMap<PathBuf, BTreeMap<PathBuf, Import>>,
}

/// Every import circle between files of the checked crates, each as a
/// readable block: the cycle, then the import behind each of its steps.
fn workspace_cycles(workspace: &Path) -> Result<Vec<String>, String> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut report = Vec::new();
    for name in CRATES {
        let package = workspace.join(name);
        let roots = crate_roots(&package);
        if roots.is_empty() {
            return Err(format!("{} has no crate root", package.display()));
        }
        // A package's lib.rs and each binary are crates of their own.
        let mut importing = 0;
        for root in roots {
            let graph = crate_graph(&root, &read);
            importing += graph.edges.len();
            for cycle in cycles(&graph) {
                report.push(render(&cycle, &graph, workspace));
            }
        }
        // So that a scanner that sees nothing cannot pass.
        if importing < 2 {
            return Err(format!(
                "{}: fewer than two files import another; the scanner is broken",
                package.display()
            ));
        }
    }
    Ok(report)
}

/// A package's crate roots: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`,
/// and the `path` of each `[lib]` and `[[bin]]` table of its manifest.
fn crate_roots(package: &Path) -> BTreeSet<PathBuf> {
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

/// `a.rs -> b.rs -> a.rs`, then one line per step: the line that imports.
fn render(cycle: &[PathBuf], graph: &Graph, base: &Path) -> String {
    let short = |p: &Path| p.strip_prefix(base).unwrap_or(p).display().to_string();
    let mut out = cycle
        .iter()
        .map(|p| short(p))
        .collect::<Vec<_>>()
        .join(" -> ");
    for step in cycle.windows(2) {
        let import = &graph.edges[&step[0]][&step[1]];
        let _ = write!(
            out,
            "\n    {}:{} uses {}",
            short(&step[0]),
            import.line,
            import.path
        );
    }
    out
}

// ---------------------------------------------------------------------------
// One file, scanned: its module declarations and the paths it names, each
// with the inline module (`scope`, relative to the file's module) it is in.

/// A path as written, not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Named {
    scope: Vec<String>,
    segments: Vec<String>,
    line: u32,
    /// The name a `use` binds (the last segment or its `as`), if any.
    binds: Option<String>,
    /// A `use` of everything in a module (`a::*`).
    glob: bool,
}

#[derive(Debug, Default)]
struct Scan {
    /// `mod name;`: (scope, name).
    declared: Vec<(Vec<String>, String)>,
    /// `mod name { .. }`: the scope it opens.
    inline: Vec<Vec<String>>,
    /// `use` items (one per leaf of a group), in file order.
    uses: Vec<Named>,
    /// Paths in code (`a::b`, first segment anything): most name other crates
    /// or local items and resolve to nothing.
    paths: Vec<Named>,
    /// Items declared at module level (`fn name`, `struct name`, ..): (scope,
    /// name), to tell the function `parse` from the module `parse`.
    items: Vec<(Vec<String>, String)>,
}

/// Keywords that declare an item named by the next word.
const ITEM_KEYWORDS: &[&str] = &[
    "const", "enum", "fn", "static", "struct", "trait", "type", "union",
];

fn word(t: Option<&Token>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(Tok::Word(w)) => Some(w),
        _ => None,
    }
}

fn is(t: Option<&Token>, tok: &Tok) -> bool {
    t.is_some_and(|t| t.tok == *tok)
}

/// Walks a file's tokens, keeping track of inline modules by brace depth.
fn scan(src: &str) -> Scan {
    let toks = tokens(src);
    let mut out = Scan::default();
    // Inline modules open here, with the brace depth inside each.
    let mut scope: Vec<(String, usize)> = Vec::new();
    let names = |scope: &[(String, usize)]| scope.iter().map(|(n, _)| n.clone()).collect();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let prev = i.checked_sub(1).map(|p| &toks[p]);
        match (&toks[i].tok, word(toks.get(i + 1))) {
            (Tok::Word(w), Some(name)) if w == "mod" => {
                let test_only = is_test_only(&toks, i);
                if is(toks.get(i + 2), &Tok::Semi) {
                    if !test_only {
                        out.declared.push((names(&scope), name.to_string()));
                    }
                    i += 3;
                    continue;
                }
                if is(toks.get(i + 2), &Tok::Open) {
                    if test_only {
                        i = after_block(&toks, i + 2);
                        continue;
                    }
                    depth += 1;
                    scope.push((name.to_string(), depth));
                    out.inline.push(names(&scope));
                    i += 3;
                    continue;
                }
            }
            (Tok::Word(w), Some(name))
                if ITEM_KEYWORDS.contains(&w.as_str())
                    && depth == scope.last().map_or(0, |(_, d)| *d) =>
            {
                // `static mut NAME`; `const fn` is left to its `fn`.
                let name = if name == "mut" {
                    word(toks.get(i + 2)).unwrap_or("_")
                } else {
                    name
                };
                if !["fn", "_"].contains(&name) {
                    out.items.push((names(&scope), name.to_string()));
                }
            }
            // Not `use<'a>`, which is a bound.
            (Tok::Word(w), _)
                if w == "use"
                    && (word(toks.get(i + 1)).is_some() || is(toks.get(i + 1), &Tok::PathSep)) =>
            {
                i = use_item(&toks, i + 1, &names(&scope), &mut out.uses);
                continue;
            }
            // `pub(in crate::x)` is a visibility, not an import.
            (Tok::Word(w), _) if w == "pub" && is(toks.get(i + 1), &Tok::Punct('(')) => {
                while i < toks.len() && !is(toks.get(i), &Tok::Punct(')')) {
                    i += 1;
                }
            }
            (Tok::Word(_), _)
                if is(toks.get(i + 1), &Tok::PathSep)
                    && !is(prev, &Tok::PathSep)
                    && !is(prev, &Tok::Dollar) =>
            {
                let (segments, next) = path_at(&toks, i);
                out.paths.push(Named {
                    scope: names(&scope),
                    segments,
                    line: toks[i].line,
                    binds: None,
                    glob: false,
                });
                i = next;
                continue;
            }
            (Tok::Open, _) => depth += 1,
            (Tok::Close, _) => {
                if scope.last().is_some_and(|(_, d)| *d == depth) {
                    scope.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether the `mod` at `at` is under `#[cfg(test)]`: its attributes, and a
/// visibility, are the tokens just before it.
fn is_test_only(toks: &[Token], at: usize) -> bool {
    let text = |from: usize, to: usize| -> String {
        toks[from..to]
            .iter()
            .map(|t| match &t.tok {
                Tok::Word(w) => w.clone(),
                Tok::Punct(c) => c.to_string(),
                _ => " ".to_string(),
            })
            .collect()
    };
    let mut end = at;
    // A visibility: `pub`, `pub(crate)`, `pub(in a::b)`.
    if is(toks.get(end.wrapping_sub(1)), &Tok::Punct(')')) {
        if let Some(pub_at) = (end.saturating_sub(8)..end)
            .rev()
            .find(|&j| word(toks.get(j)) == Some("pub"))
        {
            end = pub_at;
        }
    } else if word(toks.get(end.wrapping_sub(1))) == Some("pub") {
        end -= 1;
    }
    // Attributes, one `#[..]` at a time from the last.
    while end >= 2 && is(toks.get(end - 1), &Tok::Punct(']')) {
        let Some(open) = (0..end - 1)
            .rev()
            .find(|&j| is(toks.get(j), &Tok::Punct('[')))
        else {
            return false;
        };
        if open == 0 || !is(toks.get(open - 1), &Tok::Punct('#')) {
            return false;
        }
        if text(open + 1, end - 1) == "cfg(test)" {
            return true;
        }
        end = open - 1;
    }
    false
}

/// `a::b::c` from `at`: its words, and the index after them (a trailing
/// `::` before `<` or `{` is left alone).
fn path_at(toks: &[Token], at: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    let mut i = at;
    while let Some(w) = word(toks.get(i)) {
        segments.push(w.to_string());
        if is(toks.get(i + 1), &Tok::PathSep) && word(toks.get(i + 2)).is_some() {
            i += 2;
        } else {
            i += 1;
            break;
        }
    }
    (segments, i)
}

/// The tree of a `use` item from `at` (after `use`) to its `;`, flattened
/// into one path per leaf; returns the index after the `;`.
fn use_item(toks: &[Token], at: usize, scope: &[String], out: &mut Vec<Named>) -> usize {
    let end = (at..toks.len())
        .find(|&i| is(toks.get(i), &Tok::Semi))
        .unwrap_or(toks.len());
    // `use ::std::..` names another crate.
    if !is(toks.get(at), &Tok::PathSep) {
        let mut i = at;
        use_tree(
            &toks[..end],
            &mut i,
            &[],
            &mut |segments, binds, glob, line| {
                out.push(Named {
                    scope: scope.to_vec(),
                    segments,
                    line,
                    binds,
                    glob,
                });
            },
        );
    }
    end + 1
}

/// One use tree: `a::b`, `a::b as c`, `a::*`, `a::{self, b, c::*}`.
fn use_tree(
    toks: &[Token],
    i: &mut usize,
    prefix: &[String],
    leaf: &mut dyn FnMut(Vec<String>, Option<String>, bool, u32),
) {
    let mut path = prefix.to_vec();
    let line = toks.get(*i).map_or(0, |t| t.line);
    loop {
        match toks.get(*i).map(|t| &t.tok) {
            Some(Tok::Word(w)) => {
                path.push(w.clone());
                *i += 1;
                if is(toks.get(*i), &Tok::PathSep) {
                    *i += 1;
                    continue;
                }
                // `self` in a group names the group's prefix.
                if path.last().is_some_and(|l| l == "self") && path.len() > 1 {
                    path.pop();
                }
                let mut binds = path.last().cloned();
                if word(toks.get(*i)) == Some("as") {
                    binds = word(toks.get(*i + 1))
                        .filter(|a| *a != "_")
                        .map(str::to_string);
                    *i += 2;
                }
                leaf(path, binds, false, line);
                return;
            }
            Some(Tok::Star) => {
                *i += 1;
                leaf(path, None, true, line);
                return;
            }
            Some(Tok::Open) => {
                *i += 1;
                while toks.get(*i).is_some_and(|t| t.tok != Tok::Close) {
                    use_tree(toks, i, &path, leaf);
                    if is(toks.get(*i), &Tok::Comma) {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            // Anything else (a stray token): skip it rather than loop.
            Some(_) => {
                *i += 1;
                return;
            }
            None => return,
        }
    }
}

// ---------------------------------------------------------------------------
// A crate: its modules (from the root, following `mod name;`), then each
// file's paths resolved to the files they name.

/// A module path from the crate root (empty for the root itself).
type ModPath = Vec<String>;

#[derive(Debug, Default)]
struct Modules {
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

    fn has_child(&self, module: &[String], name: &str) -> bool {
        self.children.get(module).is_some_and(|c| c.contains(name))
    }

    fn has_item(&self, module: &[String], name: &str) -> bool {
        self.items.contains(&(module.to_vec(), name.to_string()))
    }

    /// The file of the longest prefix of `path` that is a module: where the
    /// item the path names is defined (or re-exported).
    fn file_of(&self, path: &[String]) -> Option<&PathBuf> {
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

/// The file graph of the crate whose root is `root`.
fn crate_graph(root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Graph {
    let mut modules = Modules::default();
    let mut scans: Vec<(PathBuf, ModPath, Scan)> = Vec::new();
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
    let mut graph = Graph::default();
    for (file, module, scan) in &scans {
        for (to, import) in file_imports(module, scan, &modules) {
            if to != *file {
                graph
                    .edges
                    .entry(file.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(import);
            }
        }
    }
    graph
}

/// Every (file, import) a scanned file's `use` items and paths name.
fn file_imports(module: &[String], scan: &Scan, modules: &Modules) -> Vec<(PathBuf, Import)> {
    // Names the `use` items bind, per scope, as absolute module paths.
    let mut bound: BTreeMap<(Vec<String>, String), ModPath> = BTreeMap::new();
    let mut out = Vec::new();
    let mut resolved =
        |named: &Named, bound: &BTreeMap<(Vec<String>, String), ModPath>, is_use: bool| {
            let here = [module, &named.scope[..]].concat();
            let abs = absolute(&here, &named.segments, modules, |name| {
                // A name bound in this inline module or one around it.
                (0..=named.scope.len())
                    .rev()
                    .find_map(|n| bound.get(&(named.scope[..n].to_vec(), name.to_string())))
                    .cloned()
            })?;
            // In code a path's last segment is an item, never a module (the
            // function `rules::parse`, not the module); so is a `use` leaf that
            // names both (its paths to the module's items are seen on their own).
            let item_of = match abs.split_last() {
                Some((last, parent))
                    if !is_use
                        || (!named.glob
                            && modules.has_child(parent, last)
                            && modules.has_item(parent, last)) =>
                {
                    Some(parent)
                }
                _ => None,
            };
            let file = modules.file_of(item_of.unwrap_or(&abs))?.clone();
            out.push((
                file,
                Import {
                    line: named.line,
                    path: named.segments.join("::"),
                },
            ));
            Some(abs)
        };
    for u in &scan.uses {
        if let (Some(abs), Some(name)) = (resolved(u, &bound, true), &u.binds) {
            bound.insert((u.scope.clone(), name.clone()), abs);
        }
    }
    for p in &scan.paths {
        resolved(p, &bound, false);
    }
    out
}

/// `segments` as written in module `here`, made absolute: `None` when it
/// names another crate or an item that is not a path into this crate.
fn absolute(
    here: &[String],
    segments: &[String],
    modules: &Modules,
    bound: impl Fn(&str) -> Option<ModPath>,
) -> Option<ModPath> {
    let (first, rest) = segments.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "self" => Some([here, rest].concat()),
        "super" => {
            let ups = segments.iter().take_while(|s| *s == "super").count();
            let base = here.get(..here.len().checked_sub(ups)?)?;
            Some([base, &segments[ups..]].concat())
        }
        name if modules.has_child(here, name) => Some([here, segments].concat()),
        name => bound(name).map(|abs| [&abs[..], rest].concat()),
    }
}

// ---------------------------------------------------------------------------
// Cycles: the strongly connected components (Tarjan), each reported as the
// shortest cycles that together use every one of its edges.

/// Every cycle, each starting and ending at the same file.
fn cycles(graph: &Graph) -> Vec<Vec<PathBuf>> {
    let mut out = Vec::new();
    for component in components(graph) {
        let inside = |from: &PathBuf| {
            graph
                .edges
                .get(from)
                .into_iter()
                .flat_map(|e| e.keys())
                .filter(|to| component.contains(*to))
        };
        let mut covered: BTreeSet<(PathBuf, PathBuf)> = BTreeSet::new();
        for from in &component {
            for to in inside(from) {
                if covered.contains(&(from.clone(), to.clone())) {
                    continue;
                }
                let Some(back) = shortest_path(to, from, &inside) else {
                    continue;
                };
                let cycle: Vec<PathBuf> = std::iter::once(from.clone()).chain(back).collect();
                for step in cycle.windows(2) {
                    covered.insert((step[0].clone(), step[1].clone()));
                }
                out.push(cycle);
            }
        }
    }
    out
}

/// Breadth-first from `from` to `to` (both included).
fn shortest_path<'a, I: Iterator<Item = &'a PathBuf>>(
    from: &'a PathBuf,
    to: &PathBuf,
    next: &impl Fn(&'a PathBuf) -> I,
) -> Option<Vec<PathBuf>> {
    let mut came_from: BTreeMap<&PathBuf, &PathBuf> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![at.clone()];
            let mut cur = at;
            while let Some(prev) = came_from.get(cur) {
                path.push((*prev).clone());
                cur = prev;
            }
            path.reverse();
            return Some(path);
        }
        for n in next(at) {
            if n != from && !came_from.contains_key(n) {
                came_from.insert(n, at);
                queue.push_back(n);
            }
        }
    }
    None
}

/// Tarjan's strongly connected components with more than one file.
fn components(graph: &Graph) -> Vec<BTreeSet<PathBuf>> {
    let nodes: BTreeSet<&PathBuf> = graph
        .edges
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to.keys()))
        .collect();
    let nodes: Vec<&PathBuf> = nodes.into_iter().collect();
    let index_of: BTreeMap<&PathBuf, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let succ: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            graph
                .edges
                .get(*n)
                .into_iter()
                .flat_map(|e| e.keys())
                .map(|t| index_of[t])
                .collect()
        })
        .collect();
    let mut t = Tarjan {
        succ: &succ,
        index: vec![None; nodes.len()],
        low: vec![0; nodes.len()],
        on_stack: vec![false; nodes.len()],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..nodes.len() {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.found
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().map(|i| nodes[i].clone()).collect())
        .collect()
}

struct Tarjan<'a> {
    succ: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    found: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    /// Recursive: a crate's file graph is a few hundred files deep at most.
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.succ[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.found.push(component);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        path::{Path, PathBuf},
    };

    use super::{Import, Named, crate_graph, crate_roots, cycles, render, scan, workspace_cycles};
    use crate::cmd::root;

    /// The check itself, on this workspace.
    #[test]
    fn no_import_cycles_between_files() {
        let found = workspace_cycles(&root()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            found.is_empty(),
            "files that import each other (move what both need down into a third file):\n{}",
            found.join("\n")
        );
    }

    /// A crate in memory: (path under `src/`, text).
    fn graph_of(files: &[(&str, &str)]) -> super::Graph {
        graph_at("lib.rs", files)
    }

    /// The same, from another root file.
    fn graph_at(root: &str, files: &[(&str, &str)]) -> super::Graph {
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, s)| (Path::new("src").join(p), s.to_string()))
            .collect();
        crate_graph(&Path::new("src").join(root), &|p: &Path| {
            files.get(p).cloned()
        })
    }

    /// The graph's edges as `from -> to` with `src/` left off.
    fn edges(graph: &super::Graph) -> Vec<String> {
        let short = |p: &PathBuf| p.strip_prefix("src").unwrap().display().to_string();
        graph
            .edges
            .iter()
            .flat_map(|(from, to)| {
                to.keys()
                    .map(move |t| format!("{} -> {}", short(from), short(t)))
            })
            .collect()
    }

    fn rendered_cycles(files: &[(&str, &str)]) -> Vec<String> {
        let graph = graph_of(files);
        cycles(&graph)
            .iter()
            .map(|c| {
                render(c, &graph, Path::new("src"))
                    .lines()
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn use_groups_flatten_to_one_path_per_leaf() {
        let s = scan(
            "use crate::a::{self, b::{C, d as e}, f::*};\n\
             pub use ::std::fmt;\n\
             use super::g as _;",
        );
        let leaves: Vec<(String, Option<String>)> = s
            .uses
            .iter()
            .map(|n| (n.segments.join("::"), n.binds.clone()))
            .collect();
        let owned = |p: &str, b: Option<&str>| (p.to_string(), b.map(str::to_string));
        assert_eq!(
            leaves,
            [
                owned("crate::a", Some("a")),
                owned("crate::a::b::C", Some("C")),
                owned("crate::a::b::d", Some("e")),
                owned("crate::a::f", None),
                owned("super::g", None),
            ]
        );
    }

    #[test]
    fn inline_modules_scope_what_is_in_them() {
        let s = scan(
            "mod a;\nfn f() { if x { y::z(); } }\n\
             pub(crate) mod inner {\n    use super::*;\n    fn t() { crate::q::r(); }\n}\n\
             fn u<'a>() -> impl Sized + use<'a> { 1 }\nfn g() { self::h(); }",
        );
        assert_eq!(s.declared, [(vec![], "a".to_string())]);
        assert_eq!(s.inline, [vec!["inner".to_string()]]);
        let scoped = |n: &Named| (n.scope.join("::"), n.segments.join("::"));
        let paths: Vec<_> = s.paths.iter().map(scoped).collect();
        assert_eq!(
            paths,
            [
                (String::new(), "y::z".to_string()),
                ("inner".to_string(), "crate::q::r".to_string()),
                (String::new(), "self::h".to_string()),
            ]
        );
    }

    #[test]
    fn test_modules_are_left_out() {
        let s = scan(
            "#[cfg(test)]\nmod t1 { use crate::a; fn f() { crate::b::c(); } }\n\
             #[cfg(test)]\n#[allow(dead_code)]\npub(crate) mod t2;\n\
             #[cfg(feature = \"x\")]\nmod kept { use crate::d; }\n\
             #[cfg(test)]\nfn helper() { crate::e::f(); }",
        );
        assert!(s.declared.is_empty(), "{:?}", s.declared);
        assert_eq!(s.inline, [vec!["kept".to_string()]]);
        let named: Vec<String> = s
            .uses
            .iter()
            .chain(&s.paths)
            .map(|n| n.segments.join("::"))
            .collect();
        // Only test modules: a test-only function is counted.
        assert_eq!(named, ["crate::d", "crate::e::f"]);
    }

    #[test]
    fn paths_resolve_to_the_files_that_hold_them() {
        let graph = graph_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\npub use a::X;"),
            // A child's file is `a/x.rs` for a file `a.rs`.
            ("a.rs", "mod x;\npub struct X;\nfn f() { x::g(); }"),
            ("a/x.rs", "use super::X;\npub fn g() {}"),
            // `b/mod.rs`: a re-export is an edge, a declaration is not.
            (
                "b/mod.rs",
                "mod inner;\nmod other;\npub use self::inner::Y;",
            ),
            ("b/inner.rs", "pub struct Y;"),
            ("b/other.rs", "use crate::b;\nfn f() { b::inner::Y; }"),
            // A bound name, an inline module and `super::super`.
            (
                "c.rs",
                "use crate::d as dee;\nmod deep { fn f() { super::super::a::X; } }\nfn f() { dee::Z; }",
            ),
            (
                "d.rs",
                "pub struct Z;\n#[cfg(test)]\nmod tests { use super::*; use std::fmt; }",
            ),
        ]);
        assert_eq!(
            edges(&graph),
            [
                // Paths sort by component: `a` before `a.rs`.
                "a/x.rs -> a.rs",
                "a.rs -> a/x.rs",
                "b/mod.rs -> b/inner.rs",
                "b/other.rs -> b/inner.rs",
                "b/other.rs -> b/mod.rs",
                "c.rs -> a.rs",
                "c.rs -> d.rs",
                "lib.rs -> a.rs",
            ]
        );
        let import = &graph.edges[Path::new("src/c.rs")][Path::new("src/a.rs")];
        assert_eq!(
            *import,
            Import {
                line: 2,
                path: "super::super::a::X".to_string()
            }
        );
    }

    #[test]
    fn a_function_named_like_a_module_is_the_function() {
        let graph = graph_of(&[
            ("lib.rs", "mod m;\nmod a;\nmod b;\nmod c;"),
            (
                "m/mod.rs",
                "pub mod parse;\npub fn parse() { parse::inner(); }\nimpl X { fn a() {} }",
            ),
            ("m/parse.rs", "pub fn inner() {}"),
            // The function, used or called.
            ("a.rs", "use crate::m::parse;\nfn f() { parse(); }"),
            ("b.rs", "fn f() { crate::m::parse(); }"),
            // The module, through its parent.
            ("c.rs", "use crate::m;\nfn f() { m::parse::inner(); }"),
        ]);
        assert_eq!(
            edges(&graph),
            [
                "a.rs -> m/mod.rs",
                "b.rs -> m/mod.rs",
                "c.rs -> m/mod.rs",
                "c.rs -> m/parse.rs",
                "m/mod.rs -> m/parse.rs",
            ]
        );
        let items =
            scan("const fn f() {}\nstatic mut S: u8 = 0;\nconst _: () = ();\nimpl X { fn g() {} }")
                .items;
        let names: Vec<&str> = items.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["f", "S"], "module-level items only");
    }

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

    #[test]
    fn a_scratch_circle_is_found() {
        let found = rendered_cycles(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;"),
            ("a.rs", "use crate::b::B;\npub struct A;"),
            ("b.rs", "pub struct B(pub crate::c::C);"),
            ("c.rs", "use crate::a;\npub struct C(a::A);"),
        ]);
        assert_eq!(found, ["a.rs -> b.rs -> c.rs -> a.rs"]);
    }

    #[test]
    fn a_child_using_its_parent_that_re_exports_it_is_a_circle() {
        let found = rendered_cycles(&[
            ("lib.rs", "mod m;"),
            ("m/mod.rs", "mod k;\npub use self::k::K;\npub struct P;"),
            ("m/k.rs", "pub struct K(super::P);"),
        ]);
        assert_eq!(found, ["m/k.rs -> m/mod.rs -> m/k.rs"]);
    }

    #[test]
    fn every_edge_of_a_tangle_is_in_some_reported_cycle() {
        let found = rendered_cycles(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;"),
            ("a.rs", "use crate::{b::B, c::C};"),
            ("b.rs", "use crate::a::A;"),
            ("c.rs", "use crate::a::A;"),
        ]);
        assert_eq!(found, ["a.rs -> b.rs -> a.rs", "a.rs -> c.rs -> a.rs"]);
    }

    #[test]
    fn imports_that_run_downhill_are_no_circle() {
        let found = rendered_cycles(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\npub use a::A;"),
            ("a.rs", "use crate::b::B;\nuse crate::c::C;"),
            ("b.rs", "use crate::c::C;"),
            ("c.rs", "#[cfg(test)]\nmod tests { use super::*; }"),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }
}
