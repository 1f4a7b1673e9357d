//! One file, scanned: its module declarations and the paths it names, each
//! with the inline module (`scope`, relative to the file's module) it is in.

use crate::lexer::{Tok, Token, after_block, tokens};

/// A path as written, not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Named {
    pub(super) scope: Vec<String>,
    pub(super) segments: Vec<String>,
    pub(super) line: u32,
    /// The name a `use` binds (the last segment or its `as`), if any.
    pub(super) binds: Option<String>,
    /// A `use` of everything in a module (`a::*`).
    pub(super) glob: bool,
}

#[derive(Debug, Default)]
pub(super) struct Scan {
    /// `mod name;`: (scope, name).
    pub(super) declared: Vec<(Vec<String>, String)>,
    /// `mod name { .. }`: the scope it opens.
    pub(super) inline: Vec<Vec<String>>,
    /// `use` items (one per leaf of a group), in file order.
    pub(super) uses: Vec<Named>,
    /// Paths in code (`a::b`, first segment anything): most name other crates
    /// or local items and resolve to nothing.
    pub(super) paths: Vec<Named>,
    /// Items declared at module level (`fn name`, `struct name`, ..): (scope,
    /// name), to tell the function `parse` from the module `parse`.
    pub(super) items: Vec<(Vec<String>, String)>,
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
pub(super) fn scan(src: &str) -> Scan {
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

#[cfg(test)]
mod tests {
    use super::{Named, scan};

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
}
