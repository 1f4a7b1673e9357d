//! Rust source as the checks read it: words, `::`, braces and the few
//! punctuation marks they need, each with its line; comments, strings and
//! character literals are dropped. A token scanner, not a parser: enough to
//! find paths and calls in code and skip what is not code.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    Word(String),
    PathSep,
    Open,
    Close,
    Semi,
    Comma,
    Star,
    Dollar,
    Punct(char),
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) line: u32,
}

/// A cursor over a file's characters that counts lines.
struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: u32,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_line_comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    /// Block comments nest in Rust.
    fn skip_block_comment(&mut self) {
        self.at += 2;
        let mut depth = 1;
        while depth > 0 {
            match (self.bump(), self.peek(0)) {
                (None, _) => return,
                (Some('/'), Some('*')) => {
                    self.at += 1;
                    depth += 1;
                }
                (Some('*'), Some('/')) => {
                    self.at += 1;
                    depth -= 1;
                }
                _ => {}
            }
        }
    }

    /// From the opening quote of a string with escapes.
    fn skip_string(&mut self) {
        self.bump();
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    self.bump();
                }
                '"' => return,
                _ => {}
            }
        }
    }

    /// From the first `#` or quote after the `r` of a raw string.
    fn skip_raw_string(&mut self) {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            self.bump();
            hashes += 1;
        }
        self.bump();
        while let Some(c) = self.bump() {
            if c == '"' && (0..hashes).all(|i| self.peek(i) == Some('#')) {
                self.at += hashes;
                return;
            }
        }
    }

    /// From a `'`: a character literal (skipped whole) or a lifetime or
    /// label (its name skipped too, so `'crate` never reads as a word).
    fn skip_quote(&mut self) {
        self.bump();
        if self.peek(0) == Some('\\') {
            self.bump();
            self.bump();
            while self.peek(0).is_some_and(|c| c != '\'') {
                self.bump();
            }
            self.bump();
        } else if self.peek(1) == Some('\'') {
            self.at += 2;
        } else {
            while self.peek(0).is_some_and(is_word_char) {
                self.bump();
            }
        }
    }

    /// A literal prefix (`r`, `b`, `br`, `c`, `cr`) followed by its literal,
    /// skipped whole; false when the word is just a word.
    fn skip_prefixed_literal(&mut self, word_len: usize) -> bool {
        let word: String = self.chars[self.at..self.at + word_len].iter().collect();
        let next = self.peek(word_len);
        let raw = matches!(word.as_str(), "r" | "br" | "cr");
        let raw_string = raw
            && match next {
                Some('"') => true,
                Some('#') => {
                    let mut i = word_len;
                    while self.peek(i) == Some('#') {
                        i += 1;
                    }
                    self.peek(i) == Some('"')
                }
                _ => false,
            };
        if raw_string {
            self.at += word_len;
            self.skip_raw_string();
            true
        } else if matches!(word.as_str(), "b" | "c") && next == Some('"') {
            self.at += word_len;
            self.skip_string();
            true
        } else if word == "b" && next == Some('\'') {
            self.at += word_len;
            self.skip_quote();
            true
        } else {
            false
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The tokens of a Rust source file, comments and literals left out.
pub(crate) fn tokens(src: &str) -> Vec<Token> {
    let mut lx = Lexer {
        chars: src.chars().collect(),
        at: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while let Some(c) = lx.peek(0) {
        let line = lx.line;
        let tok = match c {
            _ if c.is_whitespace() => {
                lx.bump();
                continue;
            }
            '/' if lx.peek(1) == Some('/') => {
                lx.skip_line_comment();
                continue;
            }
            '/' if lx.peek(1) == Some('*') => {
                lx.skip_block_comment();
                continue;
            }
            '"' => {
                lx.skip_string();
                continue;
            }
            '\'' => {
                lx.skip_quote();
                continue;
            }
            _ if is_word_char(c) => {
                let mut len = 0;
                while lx.peek(len).is_some_and(is_word_char) {
                    len += 1;
                }
                if lx.skip_prefixed_literal(len) {
                    continue;
                }
                // A raw identifier (`r#mod`) keeps its prefix: never a keyword.
                if len == 1 && c == 'r' && lx.peek(1) == Some('#') {
                    len = 2;
                    while lx.peek(len).is_some_and(is_word_char) {
                        len += 1;
                    }
                }
                let word = lx.chars[lx.at..lx.at + len].iter().collect();
                lx.at += len;
                Tok::Word(word)
            }
            ':' if lx.peek(1) == Some(':') => {
                lx.at += 2;
                Tok::PathSep
            }
            _ => {
                lx.bump();
                match c {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ';' => Tok::Semi,
                    ',' => Tok::Comma,
                    '*' => Tok::Star,
                    '$' => Tok::Dollar,
                    _ => Tok::Punct(c),
                }
            }
        };
        out.push(Token { tok, line });
    }
    out
}

/// The index after the block whose `{` is at `open`.
pub(crate) fn after_block(toks: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

#[cfg(test)]
mod tests {
    use super::tokens;

    #[test]
    fn comments_strings_and_chars_are_not_tokens() {
        let words: Vec<String> = tokens(
            "a /* crate::x /* nested */ still */ b // crate::y\n\
             \"crate::z\" r#\"crate::w\"# b\"q\" br##\"x\"## c \
             '{' '\\'' '\\u{7b}' b'}' 'life ::",
        )
        .into_iter()
        .map(|t| format!("{:?}", t.tok))
        .collect();
        assert_eq!(
            words,
            ["Word(\"a\")", "Word(\"b\")", "Word(\"c\")", "PathSep"],
            "only code words survive"
        );
    }
}
