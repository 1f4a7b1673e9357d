//! Errors in rule files, each placed at a file, line and column, and the
//! context that turns a span of the text into that place.

use std::{fmt, ops::Range};

/// A problem in a rule file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for RuleError {}

/// Line and column (1-based, columns in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // A span can end inside a multi-byte character; never slice there.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The file being validated: errors found in it are placed by span.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, span: Range<usize>, message: impl Into<String>) -> RuleError {
        let (line, column) = line_col(self.text, span.start);
        RuleError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    /// "unknown WHAT "GOT": allowed are "A", "B" and "C"".
    pub(crate) fn unknown(
        &self,
        span: Range<usize>,
        what: &str,
        got: &str,
        allowed: &[&str],
    ) -> RuleError {
        self.err(
            span,
            format!("unknown {what} {got:?}: allowed are {}", one_of(allowed)),
        )
    }
}

/// `"a"`, `"a" and "b"`, `"a", "b" and "c"`.
pub(crate) fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_in_characters_and_never_split_one() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        // "é" is two bytes: offset 2 is inside it.
        assert_eq!(line_col("é=1", 1), (1, 1));
        assert_eq!(line_col("é=1", 2), (1, 2));
        assert_eq!(line_col("x", 99), (1, 2));
    }

    #[test]
    fn lists_allowed_words() {
        assert_eq!(one_of(&["a"]), "\"a\"");
        assert_eq!(one_of(&["a", "b", "c"]), "\"a\", \"b\" and \"c\"");
    }
}
