//! The comparison core every entity shares: typed comparators and literals,
//! how a field's value compares with a literal (MLflow's
//! `SearchUtils.get_comparison_func`, including LIKE/ILIKE), and the sort
//! order of field values with missing and NaN values last.

use std::cmp::Ordering;

use super::parser::{quoted_string, RawValue};
use crate::error::{Error, Result};

/// A comparator, once validated for the field it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl Cmp {
    fn parse(comparator: &str) -> Option<Self> {
        Some(match comparator {
            "=" => Cmp::Eq,
            "!=" => Cmp::Ne,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            "LIKE" => Cmp::Like,
            "ILIKE" => Cmp::ILike,
            "IN" => Cmp::In,
            "NOT IN" => Cmp::NotIn,
            "IS NULL" => Cmp::IsNull,
            "IS NOT NULL" => Cmp::IsNotNull,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "!=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Like => "LIKE",
            Cmp::ILike => "ILIKE",
            Cmp::In => "IN",
            Cmp::NotIn => "NOT IN",
            Cmp::IsNull => "IS NULL",
            Cmp::IsNotNull => "IS NOT NULL",
        }
    }
}

/// MLflow's `VALID_METRIC_COMPARATORS`, also used for numeric attributes.
pub(crate) const NUMERIC: &[Cmp] = &[Cmp::Gt, Cmp::Ge, Cmp::Ne, Cmp::Eq, Cmp::Lt, Cmp::Le];
/// `VALID_STRING_ATTRIBUTE_COMPARATORS` (and `VALID_DATASET_COMPARATORS`).
pub(crate) const STRING: &[Cmp] = &[Cmp::Ne, Cmp::Eq, Cmp::Like, Cmp::ILike, Cmp::In, Cmp::NotIn];
/// `VALID_TAG_COMPARATORS` / `VALID_PARAM_COMPARATORS` of runs and experiments.
pub(crate) const KEY_VALUE_NULLABLE: &[Cmp] = &[
    Cmp::Ne,
    Cmp::Eq,
    Cmp::Like,
    Cmp::ILike,
    Cmp::IsNull,
    Cmp::IsNotNull,
];
/// Tag and param comparators of the registry and logged models: no IS NULL.
pub(crate) const KEY_VALUE: &[Cmp] = &[Cmp::Ne, Cmp::Eq, Cmp::Like, Cmp::ILike];

/// Checks `comparator` (upper-cased, as the parser gives it) against the
/// comparators a field allows.
pub(crate) fn check_comparator(comparator: &str, allowed: &[Cmp]) -> Result<Cmp> {
    match Cmp::parse(comparator) {
        Some(cmp) if allowed.contains(&cmp) => Ok(cmp),
        _ => {
            let names: Vec<&str> = allowed.iter().map(|c| c.as_str()).collect();
            Err(Error::invalid(format!(
                "Invalid comparator '{comparator}' not one of '{}'",
                python_set(&names)
            )))
        }
    }
}

/// Renders names as a Python set literal, as MLflow's messages show them (in
/// a fixed order: Python's varies from run to run).
pub(crate) fn python_set(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("'{name}'")).collect();
    format!("{{{}}}", quoted.join(", "))
}

/// A numeric literal: its value, and the exact integer when it was written as
/// one (timestamps compare exactly then).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number {
    pub value: f64,
    pub integer: Option<i64>,
}

impl Number {
    #[cfg(test)]
    pub fn from_f64(value: f64) -> Self {
        Number { value, integer: None }
    }
    pub fn from_i64(value: i64) -> Self {
        Number {
            value: value as f64,
            integer: Some(value),
        }
    }
}

/// The right-hand side of a typed comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Number(Number),
    List(Vec<String>),
    /// For IS NULL / IS NOT NULL.
    None,
}

/// The numeric literal a raw value holds, if it is one.
pub(crate) fn number_literal(value: &RawValue) -> Option<Number> {
    match value {
        RawValue::Number { text, integer } => {
            let float = text.parse::<f64>().ok()?;
            let exact = if *integer { text.parse::<i64>().ok() } else { None };
            Some(Number {
                value: float,
                integer: exact,
            })
        }
        _ => None,
    }
}

/// The string literal a raw value holds (`'x'` or `"x"`), if it is one; an
/// error for a bare word.
pub(crate) fn string_literal(value: &RawValue) -> Option<Result<String>> {
    quoted_string(value)
}

/// The list a raw value holds, if it is one.
pub(crate) fn list_literal(value: &RawValue) -> Option<Result<Vec<String>>> {
    match value {
        RawValue::List { items, .. } => Some(items.clone()),
        _ => None,
    }
}

/// A field's value, as the left-hand side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Lhs<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
}

/// Whether a field's value satisfies `cmp value`. A missing field satisfies
/// only IS NULL, as in MLflow (`lhs is None` → no match), so `!=` does not
/// match an entity that lacks the key.
pub(crate) fn satisfies(lhs: Option<Lhs<'_>>, cmp: Cmp, value: &Literal) -> bool {
    match (cmp, lhs) {
        (Cmp::IsNull, lhs) => lhs.is_none(),
        (Cmp::IsNotNull, lhs) => lhs.is_some(),
        (_, None) => false,
        (_, Some(lhs)) => compare(lhs, cmp, value),
    }
}

/// Compares a present value. Mismatched types never match, except that `!=`
/// holds (as Python's `!=` does between a string and a tuple).
pub(crate) fn compare(lhs: Lhs<'_>, cmp: Cmp, value: &Literal) -> bool {
    match (lhs, value) {
        (Lhs::Str(s), Literal::Str(v)) => match cmp {
            Cmp::Like => like(s, v, false),
            Cmp::ILike => like(s, v, true),
            _ => ordering_satisfies(cmp, Some(s.cmp(v.as_str()))),
        },
        (Lhs::Str(s), Literal::List(values)) => match cmp {
            Cmp::In => values.iter().any(|v| v == s),
            Cmp::NotIn => !values.iter().any(|v| v == s),
            Cmp::Ne => true,
            _ => false,
        },
        (Lhs::Int(i), Literal::Number(n)) => {
            let ordering = match n.integer {
                Some(j) => Some(i.cmp(&j)),
                None => (i as f64).partial_cmp(&n.value),
            };
            ordering_satisfies(cmp, ordering)
        }
        (Lhs::Float(f), Literal::Number(n)) => ordering_satisfies(cmp, f.partial_cmp(&n.value)),
        _ => cmp == Cmp::Ne,
    }
}

/// Applies an ordering comparator; `None` (a NaN was involved) satisfies only
/// `!=`, as IEEE comparisons do in Python.
fn ordering_satisfies(cmp: Cmp, ordering: Option<Ordering>) -> bool {
    use Ordering::*;
    match cmp {
        Cmp::Eq => ordering == Some(Equal),
        Cmp::Ne => ordering != Some(Equal),
        Cmp::Gt => ordering == Some(Greater),
        Cmp::Ge => matches!(ordering, Some(Greater | Equal)),
        Cmp::Lt => ordering == Some(Less),
        Cmp::Le => matches!(ordering, Some(Less | Equal)),
        _ => false,
    }
}

/// MLflow's ILIKE of `value` by `pattern` (see [`like`]): what a store's
/// database calls to decide it as the grammar does.
pub fn ilike(value: &str, pattern: &str) -> bool {
    like(value, pattern, true)
}

/// SQL LIKE as MLflow evaluates it in memory: `%` matches any run of
/// characters, `_` exactly one, everything else (backslash included) itself,
/// and the whole value must match. Case-insensitive for ILIKE.
pub(crate) fn like(value: &str, pattern: &str, case_insensitive: bool) -> bool {
    let text: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let same = |p: char, t: char| p == t || (case_insensitive && p.to_lowercase().eq(t.to_lowercase()));
    let (mut p, mut t) = (0, 0);
    // Where the last `%` was, and where in the text it is resumed from.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '%' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == '_' || same(pattern[p], text[t])) {
            p += 1;
            t += 1;
        } else if let Some((star, resume)) = backtrack {
            p = star + 1;
            t = resume + 1;
            backtrack = Some((star, resume + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '%')
}

/// A field's value as a sort key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SortValue<'a> {
    Missing,
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl SortValue<'_> {
    /// Present values first, then NaN, then missing values: MLflow's
    /// `_get_value_for_sort` puts them there in both directions.
    fn rank(&self) -> u8 {
        match self {
            SortValue::Missing => 2,
            SortValue::Float(f) if f.is_nan() => 1,
            _ => 0,
        }
    }
}

/// Orders two sort keys of one `order_by` entry. A total order (numbers before
/// strings, should a field ever mix them), so sorting never panics.
pub(crate) fn compare_sort_values(a: SortValue<'_>, b: SortValue<'_>, ascending: bool) -> Ordering {
    match (a.rank(), b.rank()) {
        (0, 0) => {
            let ordering = match (a, b) {
                (SortValue::Int(x), SortValue::Int(y)) => x.cmp(&y),
                (SortValue::Str(x), SortValue::Str(y)) => x.cmp(y),
                (SortValue::Str(_), _) => Ordering::Greater,
                (_, SortValue::Str(_)) => Ordering::Less,
                (x, y) => as_f64(x).partial_cmp(&as_f64(y)).unwrap_or(Ordering::Equal),
            };
            if ascending {
                ordering
            } else {
                ordering.reverse()
            }
        }
        (rank_a, rank_b) => rank_a.cmp(&rank_b),
    }
}

fn as_f64(value: SortValue<'_>) -> f64 {
    match value {
        SortValue::Int(i) => i as f64,
        SortValue::Float(f) => f,
        _ => f64::NAN,
    }
}

/// Sorts `items` by `keys` in order (each with its direction), stably.
/// MLflow sorts once per key, last key first, relying on stability; comparing
/// the keys lexicographically in one stable sort gives the same order.
pub(crate) fn sort_by_keys<T, K>(
    items: &mut [T],
    keys: &[(K, bool)],
    value: impl for<'a> Fn(&'a T, &K) -> SortValue<'a>,
) {
    items.sort_by(|a, b| {
        keys.iter()
            .map(|(key, ascending)| compare_sort_values(value(a, key), value(b, key), *ascending))
            .find(|ordering| ordering.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

/// An identifier that may be numeric (experiment ids, version numbers) sorts
/// numerically when it is: as MLflow's SQL store does with its integer
/// columns, so `10` follows `9`.
pub(crate) fn numeric_or_str(value: &str) -> SortValue<'_> {
    value.parse::<i64>().map_or(SortValue::Str(value), SortValue::Int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_anchored_and_case_sensitive() {
        assert!(like("abc", "abc", false));
        assert!(like("abc", "a%", false));
        assert!(like("abc", "%c", false));
        assert!(like("abc", "%b%", false));
        assert!(like("abc", "a_c", false));
        assert!(like("abc", "%", false));
        assert!(like("", "%", false));
        assert!(like("a%c", "a%%c", false));
        assert!(like("aXbXc", "a%b%c", false));
        assert!(!like("abc", "ab", false));
        assert!(!like("abc", "bc", false));
        assert!(!like("abc", "a_", false));
        assert!(!like("ABC", "abc", false));
        assert!(!like("ab", "a_c", false));
        // Backslash is an ordinary character: there is no escape.
        assert!(like(r"a\bc", r"a\%", false));
        assert!(!like("a%", r"a\%", false));
    }

    #[test]
    fn ilike_ignores_case_including_non_ascii() {
        assert!(like("ABC", "abc", true));
        assert!(like("Hello World", "hello%", true));
        assert!(like("ÄBC", "äb_", true));
        assert!(!like("abd", "ABC", true));
    }

    #[test]
    fn comparator_check_names_the_allowed_set() {
        assert_eq!(check_comparator("LIKE", STRING).unwrap(), Cmp::Like);
        assert_eq!(
            check_comparator("==", NUMERIC).unwrap_err().message,
            "Invalid comparator '==' not one of '{'>', '>=', '!=', '=', '<', '<='}'"
        );
        assert_eq!(
            check_comparator("IS NULL", KEY_VALUE).unwrap_err().message,
            "Invalid comparator 'IS NULL' not one of '{'!=', '=', 'LIKE', 'ILIKE'}'"
        );
    }

    #[test]
    fn numbers_compare_exactly_and_nan_only_differs() {
        let five = Literal::Number(Number::from_i64(5));
        assert!(compare(Lhs::Int(5), Cmp::Eq, &five));
        assert!(compare(Lhs::Int(6), Cmp::Gt, &five));
        assert!(compare(Lhs::Float(4.5), Cmp::Lt, &five));
        assert!(compare(
            Lhs::Int(5),
            Cmp::Le,
            &Literal::Number(Number::from_f64(5.5))
        ));
        // Beyond f64's exact range integers still compare exactly.
        let big = Literal::Number(Number::from_i64(9_007_199_254_740_993));
        assert!(!compare(Lhs::Int(9_007_199_254_740_992), Cmp::Eq, &big));
        let nan = Lhs::Float(f64::NAN);
        for cmp in [Cmp::Eq, Cmp::Gt, Cmp::Ge, Cmp::Lt, Cmp::Le] {
            assert!(!compare(nan, cmp, &five), "{cmp:?}");
        }
        assert!(compare(nan, Cmp::Ne, &five));
    }

    #[test]
    fn missing_values_satisfy_only_is_null() {
        let a = Literal::Str("a".into());
        assert!(!satisfies(None, Cmp::Eq, &a));
        assert!(!satisfies(None, Cmp::Ne, &a));
        assert!(satisfies(None, Cmp::IsNull, &Literal::None));
        assert!(!satisfies(None, Cmp::IsNotNull, &Literal::None));
        assert!(satisfies(Some(Lhs::Str("")), Cmp::IsNotNull, &Literal::None));
    }

    #[test]
    fn lists_and_string_ordering() {
        let list = Literal::List(vec!["a".into(), "b".into()]);
        assert!(compare(Lhs::Str("a"), Cmp::In, &list));
        assert!(!compare(Lhs::Str("c"), Cmp::In, &list));
        assert!(compare(Lhs::Str("c"), Cmp::NotIn, &list));
        assert!(!compare(Lhs::Str("a"), Cmp::Eq, &list));
        assert!(compare(Lhs::Str("b"), Cmp::Gt, &Literal::Str("a".into())));
        assert!(compare(Lhs::Str("B"), Cmp::Lt, &Literal::Str("a".into())));
    }

    #[test]
    fn sort_puts_nan_then_missing_last_in_both_directions() {
        let values = [
            SortValue::Missing,
            SortValue::Float(1.0),
            SortValue::Float(f64::NAN),
            SortValue::Float(3.0),
            SortValue::Float(2.0),
        ];
        for ascending in [true, false] {
            let mut sorted = values;
            sorted.sort_by(|a, b| compare_sort_values(*a, *b, ascending));
            let shown: Vec<String> = sorted.iter().map(|v| format!("{v:?}")).collect();
            let expected = if ascending {
                ["Float(1.0)", "Float(2.0)", "Float(3.0)", "Float(NaN)", "Missing"]
            } else {
                ["Float(3.0)", "Float(2.0)", "Float(1.0)", "Float(NaN)", "Missing"]
            };
            assert_eq!(shown, expected, "ascending={ascending}");
        }
    }

    #[test]
    fn numeric_ids_sort_numerically() {
        let mut ids = ["10", "9", "abc", "100"];
        ids.sort_by(|a, b| compare_sort_values(numeric_or_str(a), numeric_or_str(b), true));
        assert_eq!(ids, ["9", "10", "100", "abc"]);
    }
}
