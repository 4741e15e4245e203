//! The tokenizer: a filter or order-by string to a flat list of tokens.
//!
//! MLflow tokenizes with sqlparse's SQL lexer. We only need the handful of
//! token kinds that its search grammar uses, so this is a small hand-written
//! scanner that reproduces sqlparse's choices where they are visible to users:
//! string literals keep their escapes verbatim (`'it''s'` stays `it''s`), a
//! number glued to letters (`1e`, `1_000`) is a word rather than a number, and
//! an unterminated quote is a lone stray character, so the error names it.

/// What a token is. Its text is the source slice `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A bare name: a letter or `_`, then letters, digits, `_` or `$`.
    Word,
    /// `` `...` ``, with ``` `` ``` inside standing for a backquote.
    Backquoted,
    /// `"..."`; sqlparse reads it as a name, MLflow accepts it as a string value.
    DoubleQuoted,
    /// `'...'`: a string literal.
    SingleQuoted,
    /// A numeric literal; `integer` when it has neither a fraction nor an exponent.
    Number {
        integer: bool,
    },
    Dot,
    /// One of `=`, `==`, `!=`, `<>`, `<`, `<=`, `>`, `>=`.
    Operator,
    LParen,
    RParen,
    Comma,
    Semicolon,
    /// Anything else, including the opening character of an unterminated quote.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// Byte offsets into the source.
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'s>(&self, source: &'s str) -> &'s str {
        &source[self.start..self.end]
    }
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Splits `source` into tokens, dropping whitespace. Never fails: whatever it
/// cannot classify becomes an [`TokenKind::Other`] token for the parser to
/// report.
pub(crate) fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<(usize, char)> = source.char_indices().collect();
    let offset = |index: usize| chars.get(index).map_or(source.len(), |&(byte, _)| byte);
    let char_at = |index: usize| chars.get(index).map(|&(_, c)| c);
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let kind;
        match c {
            '\'' | '"' | '`' => match scan_quoted(&chars, i) {
                Some(end) => {
                    kind = match c {
                        '\'' => TokenKind::SingleQuoted,
                        '"' => TokenKind::DoubleQuoted,
                        _ => TokenKind::Backquoted,
                    };
                    i = end;
                }
                None => {
                    kind = TokenKind::Other;
                    i += 1;
                }
            },
            _ if starts_number(&chars, i, tokens.last(), offset(i)) => {
                let (end, integer) = scan_number(&chars, i);
                if char_at(end).is_some_and(is_word_char) {
                    // `1e`, `1_000`, `2abc`: sqlparse reads a name here.
                    let mut end = if c == '-' { i + 1 } else { i };
                    if c == '-' {
                        tokens.push(Token {
                            kind: TokenKind::Other,
                            start: offset(i),
                            end: offset(i + 1),
                        });
                    }
                    let word_start = end;
                    while char_at(end).is_some_and(|c| is_word_char(c) || c == '.') {
                        end += 1;
                    }
                    tokens.push(Token {
                        kind: TokenKind::Word,
                        start: offset(word_start),
                        end: offset(end),
                    });
                    i = end;
                    continue;
                }
                kind = TokenKind::Number { integer };
                i = end;
            }
            _ if is_word_start(c) => {
                i += 1;
                while char_at(i).is_some_and(is_word_char) {
                    i += 1;
                }
                kind = TokenKind::Word;
            }
            '=' | '!' | '<' | '>' => {
                let next = char_at(i + 1);
                let two = matches!(
                    (c, next),
                    ('=', Some('='))
                        | ('!', Some('='))
                        | ('<', Some('>'))
                        | ('<', Some('='))
                        | ('>', Some('='))
                );
                if two {
                    i += 2;
                    kind = TokenKind::Operator;
                } else if c == '!' {
                    i += 1;
                    kind = TokenKind::Other;
                } else {
                    i += 1;
                    kind = TokenKind::Operator;
                }
            }
            '.' => {
                i += 1;
                kind = TokenKind::Dot;
            }
            '(' => {
                i += 1;
                kind = TokenKind::LParen;
            }
            ')' => {
                i += 1;
                kind = TokenKind::RParen;
            }
            ',' => {
                i += 1;
                kind = TokenKind::Comma;
            }
            ';' => {
                i += 1;
                kind = TokenKind::Semicolon;
            }
            _ => {
                i += 1;
                kind = TokenKind::Other;
            }
        }
        tokens.push(Token {
            kind,
            start: offset(start),
            end: offset(i),
        });
    }
    tokens
}

/// Returns the index just past the closing quote of the quoted token that
/// starts at `start`, or `None` if it is never closed.
///
/// sqlparse's patterns are `'(''|\\'|[^'])*'` (and the same for `"`) and
/// ``` `(``|[^`])*` ```. A doubled quote or, for `'` and `"`, a backslashed
/// quote does not close the token. Like the regex engine backtracking, when
/// honouring those escapes leaves the token unclosed we fall back to the first
/// plain closing quote (so `'abc\'` is the string `abc\`).
fn scan_quoted(chars: &[(usize, char)], start: usize) -> Option<usize> {
    let quote = chars[start].1;
    let backslash_escapes = quote != '`';
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i].1;
        let next = chars.get(i + 1).map(|&(_, c)| c);
        let doubled = c == quote && next == Some(quote);
        let backslashed = backslash_escapes && c == '\\' && next == Some(quote);
        if doubled || backslashed {
            i += 2;
        } else if c == quote {
            return Some(i + 1);
        } else {
            i += 1;
        }
    }
    // Unclosed with escapes honoured: the first quote closes it, if any.
    chars[start + 1..]
        .iter()
        .position(|&(_, c)| c == quote)
        .map(|pos| start + 1 + pos + 1)
}

/// Whether a numeric literal starts at `i`: a digit, a `.` before a digit, or
/// a `-` before either. A `.` right after a name is the dot of a dotted
/// identifier (`metrics.1`), not a fraction.
fn starts_number(chars: &[(usize, char)], i: usize, previous: Option<&Token>, byte: usize) -> bool {
    let at = |index: usize| chars.get(index).map(|&(_, c)| c);
    let digit_at = |index: usize| at(index).is_some_and(|c| c.is_ascii_digit());
    let after_name = previous.is_some_and(|token| {
        token.end == byte
            && matches!(
                token.kind,
                TokenKind::Word | TokenKind::Backquoted | TokenKind::DoubleQuoted | TokenKind::SingleQuoted
            )
    });
    match at(i) {
        Some(c) if c.is_ascii_digit() => true,
        Some('.') => !after_name && digit_at(i + 1),
        Some('-') => digit_at(i + 1) || (at(i + 1) == Some('.') && digit_at(i + 2)),
        _ => false,
    }
}

/// Scans `-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?` from `i`; returns the end index
/// and whether the literal is an integer.
fn scan_number(chars: &[(usize, char)], mut i: usize) -> (usize, bool) {
    let at = |index: usize| chars.get(index).map(|&(_, c)| c);
    let digit_at = |index: usize| at(index).is_some_and(|c| c.is_ascii_digit());
    let mut integer = true;
    if at(i) == Some('-') {
        i += 1;
    }
    while digit_at(i) {
        i += 1;
    }
    if at(i) == Some('.') {
        integer = false;
        i += 1;
        while digit_at(i) {
            i += 1;
        }
    }
    if matches!(at(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(at(j), Some('-' | '+')) {
            j += 1;
        }
        if digit_at(j) {
            while digit_at(j) {
                j += 1;
            }
            integer = false;
            i = j;
        }
    }
    (i, integer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_and_texts(source: &str) -> Vec<(TokenKind, &str)> {
        tokenize(source)
            .into_iter()
            .map(|t| (t.kind, t.text(source)))
            .collect()
    }

    #[test]
    fn tokenizes_a_comparison() {
        assert_eq!(
            kinds_and_texts("metrics.acc >= 0.5"),
            vec![
                (TokenKind::Word, "metrics"),
                (TokenKind::Dot, "."),
                (TokenKind::Word, "acc"),
                (TokenKind::Operator, ">="),
                (TokenKind::Number { integer: false }, "0.5"),
            ]
        );
    }

    #[test]
    fn numbers_follow_sqlparse() {
        for (text, integer) in [
            ("1", true),
            ("-1", true),
            ("1.5", false),
            (".5", false),
            ("5.", false),
            ("1e3", false),
            ("-1.5E-3", false),
        ] {
            assert_eq!(
                kinds_and_texts(text),
                vec![(TokenKind::Number { integer }, text)],
                "{text}"
            );
        }
        // A number glued to letters is a word.
        assert_eq!(kinds_and_texts("1e"), vec![(TokenKind::Word, "1e")]);
        assert_eq!(kinds_and_texts("1_000"), vec![(TokenKind::Word, "1_000")]);
        // `.5` right after a name is a dotted identifier part.
        assert_eq!(
            kinds_and_texts("metrics.5"),
            vec![
                (TokenKind::Word, "metrics"),
                (TokenKind::Dot, "."),
                (TokenKind::Number { integer: true }, "5")
            ]
        );
    }

    #[test]
    fn quotes_keep_their_escapes() {
        assert_eq!(
            kinds_and_texts("'it''s'"),
            vec![(TokenKind::SingleQuoted, "'it''s'")]
        );
        assert_eq!(
            kinds_and_texts(r"'a\'b'"),
            vec![(TokenKind::SingleQuoted, r"'a\'b'")]
        );
        assert_eq!(
            kinds_and_texts(r"'abc\'"),
            vec![(TokenKind::SingleQuoted, r"'abc\'")]
        );
        assert_eq!(
            kinds_and_texts("\"a b\""),
            vec![(TokenKind::DoubleQuoted, "\"a b\"")]
        );
        assert_eq!(kinds_and_texts("`a``b`"), vec![(TokenKind::Backquoted, "`a``b`")]);
    }

    #[test]
    fn an_unterminated_quote_is_a_stray_character() {
        assert_eq!(
            kinds_and_texts("= 'oops"),
            vec![
                (TokenKind::Operator, "="),
                (TokenKind::Other, "'"),
                (TokenKind::Word, "oops")
            ]
        );
    }

    #[test]
    fn operators_and_punctuation() {
        assert_eq!(
            kinds_and_texts("= == != <> < <= > >= ( ) , ; ! ?"),
            vec![
                (TokenKind::Operator, "="),
                (TokenKind::Operator, "=="),
                (TokenKind::Operator, "!="),
                (TokenKind::Operator, "<>"),
                (TokenKind::Operator, "<"),
                (TokenKind::Operator, "<="),
                (TokenKind::Operator, ">"),
                (TokenKind::Operator, ">="),
                (TokenKind::LParen, "("),
                (TokenKind::RParen, ")"),
                (TokenKind::Comma, ","),
                (TokenKind::Semicolon, ";"),
                (TokenKind::Other, "!"),
                (TokenKind::Other, "?"),
            ]
        );
    }

    #[test]
    fn unicode_words_keep_byte_offsets() {
        let source = "tags.ключ = 'значение'";
        assert_eq!(
            kinds_and_texts(source),
            vec![
                (TokenKind::Word, "tags"),
                (TokenKind::Dot, "."),
                (TokenKind::Word, "ключ"),
                (TokenKind::Operator, "="),
                (TokenKind::SingleQuoted, "'значение'"),
            ]
        );
    }
}
