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
//!
//! A file is scanned in `scan`, its crate's modules found in `modules`, its
//! paths resolved in `resolve` and the cycles found in `graph`.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use self::{
    graph::{Graph, cycles},
    modules::crate_roots,
    resolve::crate_graph,
};

mod graph;
mod modules;
mod resolve;
mod scan;

/// The crates whose files are checked, as directories under the workspace.
const CRATES: &[&str] = &["filter-common", "filter-user", "filter-ebpf", "xtask"];

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{cycles, render, workspace_cycles};
    use crate::{cmd::root, imports::resolve::tests::graph_of};

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
