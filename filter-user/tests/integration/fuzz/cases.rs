//! One fuzzing case per kind of untrusted input, with what it asserts: a
//! rule file read, validated, linted and compiled, and a capture read to
//! its end. Shared by the mutation fuzzer (`fuzz.rs`) and the cargo-fuzz
//! targets (`filter-user/fuzz/`, which include this file by path), so that
//! both hold the input to the same promises.

use std::path::Path;

use filterctl::{
    replay::capture::Capture,
    rules::{RuleError, files, lint, parse},
};

/// A rule error's place and explanation, as a person reads them.
pub fn check_rule_error(e: &RuleError, name: &str, text: &str) -> Result<(), String> {
    let lines = text.lines().count() + 1;
    let placed =
        !e.file.is_empty() && e.line >= 1 && e.column >= 1 && (e.file != name || e.line <= lines);
    if !placed || e.message.trim().is_empty() {
        return Err(format!("badly placed or empty: {e:?}"));
    }
    Ok(())
}

/// One rule file: read as bytes, validated, linted and compiled. Ok(true)
/// when accepted, Ok(false) when refused with good messages.
pub fn rule_case(path: &Path, base: &Path, input: &[u8]) -> Result<bool, String> {
    std::fs::write(path, input).unwrap();
    let name = path.display().to_string();
    match files::read_rules(path) {
        Ok(text) => text_case(&name, &text, base),
        Err(files::FileError::NotUtf8 { line, column, .. }) if line >= 1 && column >= 1 => {
            // The reader stops there; the parser still gets the text with
            // replacement characters, which is non-ASCII text all the same.
            text_case(&name, &String::from_utf8_lossy(input), base).map(|_| false)
        }
        Err(e) => Err(format!("file error without a place: {e}")),
    }
}

/// Rule-file text validated, and when valid linted and compiled.
pub fn text_case(name: &str, text: &str, base: &Path) -> Result<bool, String> {
    match parse::parse_in(name, text, base) {
        Err(errors) if errors.is_empty() => Err("refused without an error".to_string()),
        Err(errors) => {
            for e in &errors {
                check_rule_error(e, name, text)?;
            }
            Ok(false)
        }
        Ok(set) => {
            for w in lint::lint(name, text, base, &set) {
                check_rule_error(&w.0, name, text)?;
            }
            set.compile();
            Ok(true)
        }
    }
}

/// An error and every cause under it say something.
pub fn check_capture_error(e: &anyhow::Error) -> Result<(), String> {
    if e.chain().any(|c| c.to_string().trim().is_empty()) {
        return Err(format!("empty explanation in {e:?}"));
    }
    Ok(())
}

/// One capture: opened and read to its end or its first error.
pub fn capture_case(path: &Path, input: &[u8]) -> Result<bool, String> {
    std::fs::write(path, input).unwrap();
    let mut capture = match Capture::open(path) {
        Ok(c) => c,
        Err(e) => return check_capture_error(&e).map(|()| false),
    };
    // Every record takes at least 16 bytes of the file: more frames than
    // that is a reader going round in circles.
    let most = input.len() / 16 + 1;
    let mut frames = 0;
    loop {
        match capture.next_frame() {
            Ok(Some(f)) => {
                frames += 1;
                if frames > most || f.data.len() > input.len() {
                    return Err(format!(
                        "{frames} frames or one of {} bytes from {} bytes",
                        f.data.len(),
                        input.len()
                    ));
                }
            }
            Ok(None) => return Ok(true),
            Err(e) => return check_capture_error(&e).map(|()| false),
        }
    }
}
