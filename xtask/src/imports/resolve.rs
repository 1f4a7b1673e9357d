//! A crate's paths resolved to the files that hold what they name: its file
//! graph.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{
    graph::{Graph, Import},
    modules::{ModPath, Modules, walk},
    scan::{Named, Scan},
};

/// The file graph of the crate whose root is `root`.
pub(super) fn crate_graph(root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Graph {
    let (modules, scans) = walk(root, read);
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

/// The tests, and the crates in memory that the other files' tests use too.
#[cfg(test)]
pub(super) mod tests {
    use std::{
        collections::BTreeMap,
        path::{Path, PathBuf},
    };

    use super::{Import, crate_graph};
    use crate::imports::scan::scan;

    /// A crate in memory: (path under `src/`, text).
    pub(in crate::imports) fn graph_of(files: &[(&str, &str)]) -> super::Graph {
        graph_at("lib.rs", files)
    }

    /// The same, from another root file.
    pub(in crate::imports) fn graph_at(root: &str, files: &[(&str, &str)]) -> super::Graph {
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, s)| (Path::new("src").join(p), s.to_string()))
            .collect();
        crate_graph(&Path::new("src").join(root), &|p: &Path| {
            files.get(p).cloned()
        })
    }

    /// The graph's edges as `from -> to` with `src/` left off.
    pub(in crate::imports) fn edges(graph: &super::Graph) -> Vec<String> {
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
}
