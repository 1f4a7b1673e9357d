//! The pin-ownership check: no file of filter-user's outside `state/` makes,
//! opens or removes a pin itself (`.pin(`, `.unpin(`, `from_pin(` as in
//! `MapData::from_pin` or `PinnedLink::from_pin`); `state::pins` does it for
//! everyone, so what lives on bpffs has one owner. A test fails listing
//! `file:line` of each call found.
//!
//! Comments and literals are not code, and `#[cfg(test)]` items (a test
//! module, a test helper) are left out: a test may look at the pins
//! directly. Limits, since this reads tokens and not types: any method
//! named `pin` or `unpin` counts, whatever its type, but not one called as
//! `Map::pin(&map, ..)` (`Box::pin(..)` is no bpffs pin); and a test module
//! in a file of its own (`#[cfg(test)] mod tests;`) would be scanned
//! (filter-user has none).

use std::path::{Path, PathBuf};

use crate::lexer::{Tok, Token, after_block, tokens};

/// The crate checked, and its one module that may touch pins.
const CRATE_SRC: &str = "filter-user/src";
const OWNER: &str = "state";

/// The calls that make, open or remove a pin.
const PIN_CALLS: &[&str] = &["pin", "unpin", "from_pin"];

/// Every pin call in the `.rs` files under `src` but for those under
/// `src/<owner>/`, as `path:line: name(` with paths relative to `base`.
fn pin_calls_under(src: &Path, owner: &str, base: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        if file.starts_with(src.join(owner)) {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let short = file
            .strip_prefix(base)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (line, name) in pin_calls(&text) {
            found.push(format!("{short}:{line}: {name}("));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The pin calls in one file's code: (line, name). A call is `.pin(` or
/// `.unpin(`, or `from_pin(` however it is reached.
fn pin_calls(src: &str) -> Vec<(u32, &'static str)> {
    let toks = tokens(src);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let Some(next) = test_only_item(&toks, i) {
            i = next;
            continue;
        }
        if let Tok::Word(w) = &toks[i].tok
            && let Some(&name) = PIN_CALLS.iter().find(|n| **n == w)
            && is(toks.get(i + 1), &Tok::Punct('('))
            && (name == "from_pin" || is(toks.get(i.wrapping_sub(1)), &Tok::Punct('.')))
        {
            out.push((toks[i].line, name));
        }
        i += 1;
    }
    out
}

fn is(t: Option<&Token>, tok: &Tok) -> bool {
    t.is_some_and(|t| t.tok == *tok)
}

/// When `#[cfg(test)]` starts at `at`: the index after the item it is on
/// (its block, or its `;`); for `#![cfg(test)]`, the end of the file.
fn test_only_item(toks: &[Token], at: usize) -> Option<usize> {
    let inner = is(toks.get(at + 1), &Tok::Punct('!'));
    let open = at + 1 + inner as usize;
    let attr = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Word("cfg".into()),
        Tok::Punct('('),
        Tok::Word("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let matches = is(toks.get(at), &attr[0])
        && attr[1..]
            .iter()
            .enumerate()
            .all(|(k, t)| is(toks.get(open + k), t));
    if !matches {
        return None;
    }
    if inner {
        return Some(toks.len());
    }
    let after_attr = open + attr.len() - 1;
    let end = (after_attr..toks.len())
        .find(|&j| matches!(toks[j].tok, Tok::Open | Tok::Semi))
        .unwrap_or(toks.len());
    Some(match toks.get(end).map(|t| &t.tok) {
        Some(Tok::Open) => after_block(toks, end),
        _ => end + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::{CRATE_SRC, OWNER, pin_calls, pin_calls_under};
    use crate::cmd::root;

    /// The check itself, on this workspace.
    #[test]
    fn only_state_touches_pins() {
        let root = root();
        let src = root.join(CRATE_SRC);
        assert!(
            src.join(OWNER).join("pins.rs").is_file(),
            "{} has no {OWNER}/pins.rs: the check looks in the wrong place",
            src.display()
        );
        let found = pin_calls_under(&src, OWNER, &root);
        assert!(
            found.is_empty(),
            "pins made, opened or removed outside {CRATE_SRC}/{OWNER}/ (go through state::pins):\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn calls_in_code_are_found_and_the_rest_is_not() {
        let src = "use aya::maps::MapData;\n\
                   fn f(m: &Map, p: &Path) {\n    m.pin(p).unwrap();\n\
                   \x20   let d = MapData::from_pin(p);\n    let l = PinnedLink::from_pin(p)?.unpin();\n\
                   \x20   Box::pin(fut);\n}\n\
                   // m.pin(p) in a comment\n/* from_pin(p) */\n\
                   fn g() { let s = \".pin(\"; spin(1); pin_it(2); pinned.pin; }\n\
                   #[cfg(test)]\nmod tests {\n    fn t() { m.pin(p); MapData::from_pin(p); }\n}\n\
                   #[cfg(test)]\nfn helper() { x.unpin(); }\n\
                   fn h() { y.pin(q); }\n";
        assert_eq!(
            pin_calls(src),
            [
                (3, "pin"),
                (4, "from_pin"),
                (5, "from_pin"),
                (5, "unpin"),
                (17, "pin")
            ]
        );
        assert!(pin_calls("#![cfg(test)]\nfn f() { m.pin(p); }\n").is_empty());
    }

    /// A scratch crate: a pin in its owner is allowed, one elsewhere is
    /// reported by file and line.
    #[test]
    fn a_scratch_pin_outside_the_owner_is_reported() {
        let base = std::env::temp_dir().join(format!("xtask-pins-check-{}", std::process::id()));
        let src = base.join("src");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(src.join("state")).unwrap();
        std::fs::create_dir_all(src.join("filter/lifecycle")).unwrap();
        std::fs::write(
            src.join("state/pins.rs"),
            "pub fn pin_map(m: &Map, p: &Path) { m.pin(p).unwrap(); }\n",
        )
        .unwrap();
        std::fs::write(
            src.join("filter/lifecycle/load.rs"),
            "fn load() {\n    state::pins::pin_map(&m, &p);\n    link.pin(dir.join(LINK))?;\n}\n",
        )
        .unwrap();
        let found = pin_calls_under(&src, "state", &base);
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(found, ["src/filter/lifecycle/load.rs:3: pin("]);
    }
}
