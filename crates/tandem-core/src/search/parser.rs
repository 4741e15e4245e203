//! The parser: tokens to an untyped AST of AND-ed comparisons.
//!
//! This layer knows MLflow's grammar but not what any identifier means: it
//! produces [`RawComparison`]s (identifier text, comparator, literal) and
//! leaves it to each entity's module to resolve the identifier, check the
//! comparator and type the value, because MLflow's rules for those differ per
//! entity. The grammar is MLflow's, as its sqlparse-based code accepts it:
//!
//! ```text
//! filter     := (comparison | AND)*          -- OR, NOT, parentheses: rejected
//! comparison := identifier op value          -- op: = != < <= > >= (== <>)
//!             | identifier [NOT] LIKE value | identifier [NOT] ILIKE value
//!             | identifier [NOT] IN '(' string, ... ')'
//!             | identifier IS [NOT] NULL
//! identifier := name ('.' name)*             -- name: word, `quoted`, "quoted"
//! value      := 'string' | "string" | number | (bare word, rejected later)
//! ```
//!
//! `==`, `<>`, `NOT LIKE` and `NOT ILIKE` parse (sqlparse groups them) so
//! that the comparator check can name them in its error.
//!
//! Like MLflow, stray `AND`s are ignored and every token that is not part of a
//! comparison is reported at once ("Invalid clause(s) in filter string: ...").

use super::lexer::{tokenize, Token, TokenKind};
use crate::error::{Error, Result};

/// A keyword of the filter grammar; matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    And,
    Or,
    Not,
    In,
    Is,
    Null,
    Like,
    ILike,
}

impl Keyword {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_uppercase().as_str() {
            "AND" => Keyword::And,
            "OR" => Keyword::Or,
            "NOT" => Keyword::Not,
            "IN" => Keyword::In,
            "IS" => Keyword::Is,
            "NULL" => Keyword::Null,
            "LIKE" => Keyword::Like,
            "ILIKE" => Keyword::ILike,
            _ => return None,
        })
    }
}

/// A token or group of tokens at statement level.
#[derive(Debug, Clone)]
enum Item<'s> {
    /// A possibly dotted name, as written (``tags.`a b` ``).
    Identifier(&'s str),
    Keyword(Keyword, &'s str),
    /// A single-quoted string: the raw text and the text between the quotes.
    Str {
        text: &'s str,
        inner: &'s str,
    },
    Number {
        text: &'s str,
        integer: bool,
    },
    Operator(&'s str),
    /// A parenthesized group: its raw text and its inner tokens.
    Paren {
        text: &'s str,
        inner: Vec<Token>,
    },
    /// Anything else: commas, stray parentheses and characters.
    Other(&'s str),
}

impl<'s> Item<'s> {
    fn text(&self) -> &'s str {
        match self {
            Item::Identifier(text)
            | Item::Keyword(_, text)
            | Item::Str { text, .. }
            | Item::Number { text, .. }
            | Item::Operator(text)
            | Item::Paren { text, .. }
            | Item::Other(text) => text,
        }
    }
}

/// The right-hand side of a comparison, untyped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawValue {
    /// `'...'`: `inner` is the text between the quotes, escapes untouched.
    Str {
        text: String,
        inner: String,
    },
    Number {
        text: String,
        integer: bool,
    },
    /// A name in value position: `"quoted"` (a string to MLflow) or a bare
    /// word (an error: "Parameter value is either not quoted ...").
    Identifier(String),
    /// `( ... )`, parsed into strings only where a list is allowed.
    List {
        text: String,
        items: Result<Vec<String>>,
    },
    /// `IS NULL` / `IS NOT NULL` have none.
    None,
}

impl RawValue {
    /// The value as written, for error messages.
    pub fn text(&self) -> &str {
        match self {
            RawValue::Str { text, .. } | RawValue::Number { text, .. } | RawValue::List { text, .. } => text,
            RawValue::Identifier(text) => text,
            RawValue::None => "None",
        }
    }
}

/// One comparison as written: `identifier` is the raw identifier text,
/// `comparator` is upper-cased with single spaces (`NOT IN`, `IS NULL`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawComparison {
    pub identifier: String,
    pub comparator: String,
    pub value: RawValue,
}

/// How "Invalid clause(s)" lists the offending tokens: the run search quotes
/// each one, the experiment and registry searches do not (as in MLflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClauseListStyle {
    Quoted,
    Plain,
}

/// Parses a filter string into its comparisons. An empty filter has none; a
/// blank one is an error, as sqlparse finds no statement in it.
pub(crate) fn parse_filter(filter: &str, style: ClauseListStyle) -> Result<Vec<RawComparison>> {
    if filter.is_empty() {
        return Ok(Vec::new());
    }
    let tokens = tokenize(filter);
    if tokens.is_empty() {
        return Err(Error::invalid(format!(
            "Invalid filter '{filter}'. Could not be parsed."
        )));
    }
    // sqlparse splits statements at `;`. A statement after the first one is
    // "multiple expressions"; a trailing `;` is just an invalid clause.
    if let Some(position) = tokens.iter().position(|t| t.kind == TokenKind::Semicolon) {
        if tokens[position + 1..]
            .iter()
            .any(|t| t.kind != TokenKind::Semicolon)
        {
            return Err(Error::invalid(format!(
                "Search filter contained multiple expression {}. Provide AND-ed expression list.",
                python_repr(filter)
            )));
        }
    }
    let items = group(filter, &tokens);
    let mut comparisons = Vec::new();
    let mut invalid: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            Item::Keyword(Keyword::And, _) => i += 1,
            Item::Identifier(identifier) => match comparison_after(&items, i + 1, filter) {
                Some((comparator, value, next)) => {
                    comparisons.push(RawComparison {
                        identifier: identifier.to_string(),
                        comparator,
                        value,
                    });
                    i = next;
                }
                None => {
                    invalid.push(identifier);
                    i += 1;
                }
            },
            // `'a' = tags.x`: a comparison, but the wrong way round.
            item @ (Item::Str { .. } | Item::Number { .. })
                if matches!(items.get(i + 1), Some(Item::Operator(_))) && items.get(i + 2).is_some() =>
            {
                return Err(Error::invalid(format!(
                    "Invalid comparison clause. Expected 'Identifier' found '{}'",
                    item.text()
                )));
            }
            item => {
                invalid.push(item.text());
                i += 1;
            }
        }
    }
    if !invalid.is_empty() {
        let listed: Vec<String> = match style {
            ClauseListStyle::Quoted => invalid.iter().map(|text| format!("'{text}'")).collect(),
            ClauseListStyle::Plain => invalid.iter().map(|text| text.to_string()).collect(),
        };
        return Err(Error::invalid(format!(
            "Invalid clause(s) in filter string: {}",
            listed.join(", ")
        )));
    }
    Ok(comparisons)
}

/// Tries to read a comparator and value starting at `items[i]`. Returns the
/// comparator, the value and the index after the comparison.
fn comparison_after(items: &[Item<'_>], i: usize, source: &str) -> Option<(String, RawValue, usize)> {
    let keyword = |index: usize| match items.get(index) {
        Some(Item::Keyword(keyword, _)) => Some(*keyword),
        _ => None,
    };
    let scalar = |index: usize| -> Option<RawValue> {
        match items.get(index)? {
            Item::Str { text, inner } => Some(RawValue::Str {
                text: text.to_string(),
                inner: inner.to_string(),
            }),
            Item::Number { text, integer } => Some(RawValue::Number {
                text: text.to_string(),
                integer: *integer,
            }),
            Item::Identifier(text) => Some(RawValue::Identifier(text.to_string())),
            Item::Paren { text, inner } => Some(list_value(text, inner, source)),
            _ => None,
        }
    };
    let list = |index: usize| match items.get(index) {
        Some(Item::Paren { text, inner }) => Some(list_value(text, inner, source)),
        _ => None,
    };
    match items.get(i)? {
        Item::Operator(op) => scalar(i + 1).map(|value| (op.to_string(), value, i + 2)),
        Item::Keyword(Keyword::Like | Keyword::ILike, word) => {
            scalar(i + 1).map(|value| (word.to_ascii_uppercase(), value, i + 2))
        }
        Item::Keyword(Keyword::In, _) => list(i + 1).map(|value| ("IN".to_string(), value, i + 2)),
        Item::Keyword(Keyword::Not, _) => match keyword(i + 1)? {
            Keyword::In => list(i + 2).map(|value| ("NOT IN".to_string(), value, i + 3)),
            // Grouped so that the comparator check names it.
            Keyword::Like => scalar(i + 2).map(|value| ("NOT LIKE".to_string(), value, i + 3)),
            Keyword::ILike => scalar(i + 2).map(|value| ("NOT ILIKE".to_string(), value, i + 3)),
            _ => None,
        },
        Item::Keyword(Keyword::Is, _) => match (keyword(i + 1)?, keyword(i + 2)) {
            (Keyword::Null, _) => Some(("IS NULL".to_string(), RawValue::None, i + 2)),
            (Keyword::Not, Some(Keyword::Null)) => Some(("IS NOT NULL".to_string(), RawValue::None, i + 3)),
            _ => None,
        },
        _ => None,
    }
}

fn list_value(text: &str, inner: &[Token], source: &str) -> RawValue {
    RawValue::List {
        text: text.to_string(),
        items: parse_string_list(inner, source),
    }
}

/// Groups tokens into statement items: dotted names into identifiers,
/// keywords, parenthesized groups.
fn group<'s>(source: &'s str, tokens: &[Token]) -> Vec<Item<'s>> {
    let mut items = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        let text = token.text(source);
        match token.kind {
            TokenKind::Word if Keyword::parse(text).is_some() => {
                items.push(Item::Keyword(Keyword::parse(text).expect("checked"), text));
                i += 1;
            }
            TokenKind::Word | TokenKind::Backquoted | TokenKind::DoubleQuoted => {
                let end = identifier_end(tokens, i);
                items.push(Item::Identifier(&source[token.start..tokens[end - 1].end]));
                i = end;
            }
            TokenKind::SingleQuoted => {
                items.push(Item::Str {
                    text,
                    inner: &text[1..text.len() - 1],
                });
                i += 1;
            }
            TokenKind::Number { integer } => {
                items.push(Item::Number { text, integer });
                i += 1;
            }
            TokenKind::Operator => {
                items.push(Item::Operator(text));
                i += 1;
            }
            TokenKind::LParen => match matching_paren(tokens, i) {
                Some(close) => {
                    items.push(Item::Paren {
                        text: &source[token.start..tokens[close].end],
                        inner: tokens[i + 1..close].to_vec(),
                    });
                    i = close + 1;
                }
                None => {
                    items.push(Item::Other(text));
                    i += 1;
                }
            },
            TokenKind::Dot
            | TokenKind::RParen
            | TokenKind::Comma
            | TokenKind::Semicolon
            | TokenKind::Other => {
                items.push(Item::Other(text));
                i += 1;
            }
        }
    }
    items
}

/// The index after the dotted identifier starting at `start`: parts joined by
/// dots with no whitespace between them.
fn identifier_end(tokens: &[Token], start: usize) -> usize {
    let mut end = start + 1;
    loop {
        let (Some(dot), Some(part)) = (tokens.get(end), tokens.get(end + 1)) else {
            return end;
        };
        let glued = tokens[end - 1].end == dot.start && dot.end == part.start;
        let is_part = matches!(
            part.kind,
            TokenKind::Word
                | TokenKind::Backquoted
                | TokenKind::DoubleQuoted
                | TokenKind::SingleQuoted
                | TokenKind::Number { integer: true }
        );
        if dot.kind != TokenKind::Dot || !glued || !is_part {
            return end;
        }
        end += 2;
    }
}

fn matching_paren(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

const ILL_FORMED_LIST: &str =
    "While parsing a list in the query, expected a non-empty list of string values, but got ill-formed list.";

/// Parses the inside of `( ... )` as MLflow does with Python's
/// `ast.literal_eval`: quoted strings separated by commas, a trailing comma
/// allowed, adjacent literals concatenated (`'a' 'b'` is `ab`) and Python
/// escapes processed. It must be non-empty and hold only strings.
fn parse_string_list(tokens: &[Token], source: &str) -> Result<Vec<String>> {
    if tokens.is_empty() {
        return Err(Error::invalid(
            "While parsing a list in the query, expected a non-empty list of string values, but got empty list",
        ));
    }
    let mut values: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut saw_non_string = false;
    let mut non_string_items: Vec<String> = Vec::new();
    let mut expect_element = true;
    for token in tokens {
        let text = token.text(source);
        match token.kind {
            TokenKind::SingleQuoted | TokenKind::DoubleQuoted => {
                let literal = python_string_literal(text);
                current = Some(current.unwrap_or_default() + &literal);
                expect_element = false;
            }
            TokenKind::Number { .. } if current.is_none() && expect_element => {
                saw_non_string = true;
                non_string_items.push(text.to_string());
                expect_element = false;
            }
            TokenKind::Comma if !expect_element => {
                if let Some(value) = current.take() {
                    values.push(value);
                }
                expect_element = true;
            }
            _ => return Err(Error::invalid(ILL_FORMED_LIST)),
        }
    }
    if let Some(value) = current {
        values.push(value);
    }
    if saw_non_string {
        let shown: Vec<String> = tokens
            .iter()
            .filter(|t| t.kind != TokenKind::Comma)
            .map(|t| match t.kind {
                TokenKind::SingleQuoted | TokenKind::DoubleQuoted => {
                    python_repr(&python_string_literal(t.text(source)))
                }
                _ => t.text(source).to_string(),
            })
            .collect();
        let tuple = if shown.len() == 1 {
            format!("({},)", shown[0])
        } else {
            format!("({})", shown.join(", "))
        };
        return Err(Error::invalid(format!(
            "While parsing a list in the query, expected string value, punctuation, or whitespace, but got \
             different type in list: {tuple}"
        )));
    }
    Ok(values)
}

/// The value of a Python string literal (`'...'` or `"..."`): a doubled quote
/// is two adjacent literals (so it vanishes) and backslash escapes apply.
fn python_string_literal(text: &str) -> String {
    let quote = text.chars().next().unwrap_or('\'');
    let inner = &text[1..text.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == quote && chars.peek() == Some(&quote) {
            chars.next();
        } else if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some(escaped @ ('\\' | '\'' | '"')) => out.push(escaped),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Python's `repr` of a string, as MLflow's messages print it.
pub(crate) fn python_repr(value: &str) -> String {
    let quote = if value.contains('\'') && !value.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(value.len() + 2);
    out.push(quote);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Removes one pair of surrounding backquotes, if present.
pub(crate) fn trim_backticks(value: &str) -> &str {
    if is_quoted(value, '`') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// Removes one pair of surrounding single or double quotes, if present.
pub(crate) fn strip_quotes(value: &str) -> &str {
    if is_quoted(value, '\'') || is_quoted(value, '"') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

fn is_quoted(value: &str, quote: char) -> bool {
    value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote)
}

/// The string a value stands for, where MLflow expects a quoted string:
/// `'single'` or `"double"` quoted. `None` for anything else.
pub(crate) fn quoted_string(value: &RawValue) -> Option<Result<String>> {
    match value {
        RawValue::Str { inner, .. } => Some(Ok(inner.clone())),
        RawValue::Identifier(text) => {
            if is_quoted(text, '\'') || is_quoted(text, '"') {
                Some(Ok(text[1..text.len() - 1].to_string()))
            } else {
                Some(Err(Error::invalid(format!(
                    "Parameter value is either not quoted or unidentified quote types used for string value \
                     {text}. Use either single or double quotes."
                ))))
            }
        }
        _ => None,
    }
}

/// Parses one `order_by` entry, `<identifier> [ASC|DESC]`, into the
/// identifier text with its quotes resolved and whether it is ascending.
///
/// MLflow requires the entry to be a single sqlparse identifier, then splits
/// it with `shlex` after turning backquotes into double quotes, so quotes are
/// removed wherever they are (``metrics.`my key` `` names `metrics.my key`).
/// Surrounding whitespace is tolerated here; MLflow rejects it.
pub(crate) fn parse_order_by(order_by: &str) -> Result<(String, bool)> {
    let could_not_parse = || {
        Error::invalid(format!(
            "Invalid order_by clause '{order_by}'. Could not be parsed."
        ))
    };
    let tokens = tokenize(order_by);
    let items = group(order_by, &tokens);
    let (identifier, direction) = match items.as_slice() {
        [Item::Identifier(identifier)] => (*identifier, None),
        [Item::Identifier(identifier), Item::Identifier(word) | Item::Keyword(_, word)] => {
            (*identifier, Some(*word))
        }
        _ => return Err(could_not_parse()),
    };
    let ascending = match direction {
        None => true,
        Some(word) => match word.to_ascii_lowercase().as_str() {
            "asc" => true,
            "desc" => false,
            _ => {
                return Err(Error::invalid(format!(
                    "Invalid ordering key in order_by clause '{order_by}'."
                )))
            }
        },
    };
    let unquoted = shlex_unquote(&identifier.replace('`', "\"")).ok_or_else(could_not_parse)?;
    Ok((unquoted, ascending))
}

/// Removes shell quoting from a single word, as `shlex.split` does.
fn shlex_unquote(word: &str) -> Option<String> {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => out.push(chars.next()?),
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                let next = chars.next()?;
                if !matches!(next, '\\' | '"' | '$' | '`') {
                    out.push('\\');
                }
                out.push(next);
            }
            (_, c) => out.push(c),
        }
    }
    quote.is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(filter: &str) -> Result<Vec<(String, String, RawValue)>> {
        parse_filter(filter, ClauseListStyle::Quoted).map(|cs| {
            cs.into_iter()
                .map(|c| (c.identifier, c.comparator, c.value))
                .collect()
        })
    }

    fn err(filter: &str) -> String {
        parse_filter(filter, ClauseListStyle::Quoted).unwrap_err().message
    }

    fn string(inner: &str) -> RawValue {
        RawValue::Str {
            text: format!("'{inner}'"),
            inner: inner.to_string(),
        }
    }

    #[test]
    fn empty_filters_have_no_clauses_and_blank_ones_are_invalid() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(err("   "), "Invalid filter '   '. Could not be parsed.");
    }

    #[test]
    fn parses_every_comparison_form() {
        let parsed = parse(
            "metrics.acc >= 0.5 AND params.p like 'a%' and tags.`a b` NOT IN ('x', \"y\") \
             AnD tags.t IS NULL AND tags.u is not null AND run_id IN ('r',) and tags.v ILIKE \"Q%\"",
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                (
                    "metrics.acc".into(),
                    ">=".into(),
                    RawValue::Number {
                        text: "0.5".into(),
                        integer: false
                    }
                ),
                ("params.p".into(), "LIKE".into(), string("a%")),
                (
                    "tags.`a b`".into(),
                    "NOT IN".into(),
                    RawValue::List {
                        text: "('x', \"y\")".into(),
                        items: Ok(vec!["x".into(), "y".into()])
                    }
                ),
                ("tags.t".into(), "IS NULL".into(), RawValue::None),
                ("tags.u".into(), "IS NOT NULL".into(), RawValue::None),
                (
                    "run_id".into(),
                    "IN".into(),
                    RawValue::List {
                        text: "('r',)".into(),
                        items: Ok(vec!["r".into()])
                    }
                ),
                (
                    "tags.v".into(),
                    "ILIKE".into(),
                    RawValue::Identifier("\"Q%\"".into())
                ),
            ]
        );
    }

    #[test]
    fn stray_ands_are_ignored_as_in_mlflow() {
        assert_eq!(parse("AND metrics.x > 1 AND AND").unwrap().len(), 1);
    }

    #[test]
    fn or_is_an_invalid_clause() {
        assert_eq!(
            err("params.x = 'a' or params.y = 'b'"),
            "Invalid clause(s) in filter string: 'or'"
        );
        assert_eq!(
            parse_filter("name = 'a' OR name = 'b'", ClauseListStyle::Plain)
                .unwrap_err()
                .message,
            "Invalid clause(s) in filter string: OR"
        );
    }

    #[test]
    fn incomplete_and_parenthesized_clauses_are_invalid() {
        assert_eq!(
            err("metrics.x"),
            "Invalid clause(s) in filter string: 'metrics.x'"
        );
        assert_eq!(
            err("metrics.x >"),
            "Invalid clause(s) in filter string: 'metrics.x', '>'"
        );
        assert_eq!(
            err("(metrics.x > 1)"),
            "Invalid clause(s) in filter string: '(metrics.x > 1)'"
        );
        assert_eq!(
            err("metrics.x = 1.0.0"),
            "Invalid clause(s) in filter string: '.0'"
        );
        assert_eq!(
            err("tags.x IS 'a'"),
            "Invalid clause(s) in filter string: 'tags.x', 'IS', ''a''"
        );
        assert_eq!(
            err("run_id IN 'a'"),
            "Invalid clause(s) in filter string: 'run_id', 'IN', ''a''"
        );
        assert_eq!(
            err("tags.x = 'a' AND not tags.y = 'b'"),
            "Invalid clause(s) in filter string: 'not'"
        );
    }

    #[test]
    fn unterminated_quotes_are_reported_token_by_token() {
        assert_eq!(
            err("tags.x = 'unterminated"),
            "Invalid clause(s) in filter string: 'tags.x', '=', ''', 'unterminated'"
        );
        assert_eq!(
            err("tags.x = 'a' AND tags.y = 'b''"),
            "Invalid clause(s) in filter string: '''"
        );
    }

    #[test]
    fn semicolons() {
        assert_eq!(err("metrics.x > 1;"), "Invalid clause(s) in filter string: ';'");
        assert_eq!(
            err("metrics.x > 1; metrics.y > 2"),
            "Search filter contained multiple expression 'metrics.x > 1; metrics.y > 2'. Provide AND-ed expression list."
        );
    }

    #[test]
    fn a_literal_on_the_left_is_rejected() {
        assert_eq!(
            err("'a' = tags.x"),
            "Invalid comparison clause. Expected 'Identifier' found ''a''"
        );
        assert_eq!(
            err("1 = metrics.x"),
            "Invalid comparison clause. Expected 'Identifier' found '1'"
        );
    }

    #[test]
    fn string_escapes_are_kept_verbatim_outside_lists() {
        assert_eq!(parse("tags.x = 'it''s'").unwrap()[0].2, string("it''s"));
        assert_eq!(parse(r"tags.x = 'a\'b'").unwrap()[0].2, string(r"a\'b"));
    }

    #[test]
    fn lists_follow_python_literal_rules() {
        let items = |filter: &str| match parse(filter).unwrap().remove(0).2 {
            RawValue::List { items, .. } => items.map_err(|e| e.message),
            other => panic!("not a list: {other:?}"),
        };
        assert_eq!(items("run_id IN ('a' 'b')"), Ok(vec!["ab".to_string()]));
        assert_eq!(
            items(r"run_id IN ('it\'s', 'x',)"),
            Ok(vec!["it's".to_string(), "x".to_string()])
        );
        assert_eq!(
            items("run_id IN ()"),
            Err("While parsing a list in the query, expected a non-empty list of string values, but got empty list"
                .to_string())
        );
        assert_eq!(
            items("run_id IN ('a', 1)"),
            Err("While parsing a list in the query, expected string value, punctuation, or whitespace, but got \
                 different type in list: ('a', 1)"
                .to_string())
        );
        assert_eq!(items("run_id IN (a, b)"), Err(ILL_FORMED_LIST.to_string()));
        assert_eq!(items("run_id IN ('a',, 'b')"), Err(ILL_FORMED_LIST.to_string()));
    }

    #[test]
    fn identifiers_group_only_glued_dots() {
        assert_eq!(parse("tags.mlflow.user = 'x'").unwrap()[0].0, "tags.mlflow.user");
        assert_eq!(
            parse("metrics.\"my key\" = 1").unwrap()[0].0,
            "metrics.\"my key\""
        );
        assert_eq!(parse("metrics.'my key' = 1").unwrap()[0].0, "metrics.'my key'");
        assert_eq!(
            err("params.my-param = 'x'"),
            "Invalid clause(s) in filter string: 'params.my', '-'"
        );
    }

    #[test]
    fn order_by_entries() {
        assert_eq!(
            parse_order_by("metrics.acc").unwrap(),
            ("metrics.acc".into(), true)
        );
        assert_eq!(
            parse_order_by("metrics.acc desc").unwrap(),
            ("metrics.acc".into(), false)
        );
        assert_eq!(
            parse_order_by("metrics.`my key` DESC").unwrap(),
            ("metrics.my key".into(), false)
        );
        assert_eq!(
            parse_order_by("tags.\"a b\" ASC").unwrap(),
            ("tags.a b".into(), true)
        );
        assert_eq!(
            parse_order_by("  start_time   ASC ").unwrap(),
            ("start_time".into(), true)
        );
        assert_eq!(
            parse_order_by("metrics.acc DOWN").unwrap_err().message,
            "Invalid ordering key in order_by clause 'metrics.acc DOWN'."
        );
        for bad in [
            "",
            "metrics.acc asc extra",
            "metrics.acc, params.x",
            "metrics.acc DESC;",
            "'x'",
        ] {
            assert_eq!(
                parse_order_by(bad).unwrap_err().message,
                format!("Invalid order_by clause '{bad}'. Could not be parsed."),
            );
        }
    }

    #[test]
    fn python_repr_matches_python() {
        assert_eq!(python_repr("abc"), "'abc'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("a'b\"c"), "'a\\'b\"c'");
    }
}
