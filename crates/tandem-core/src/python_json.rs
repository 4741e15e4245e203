//! JSON written the way Python's `json.dumps` writes it, for the places
//! where MLflow shows or stores a `json.dumps` result and clients compare
//! the text: the value quoted in an invalid-parameter message
//! (`json.dumps(value, sort_keys=True, separators=(",", ":"))`) and the
//! `mlflow.modelVersions` tag (`json.dumps(value)`). Both escape every
//! non-ASCII character (`ensure_ascii`) and print floats as Python's `repr`.

use serde_json::Value;

/// The separators between items and between a key and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separators {
    /// `json.dumps(value)`: `", "` and `": "`.
    Default,
    /// `separators=(",", ":")`.
    Compact,
}

/// How `json.dumps` writes a value. `sort_keys` sorts the keys of every
/// object; without it they are written in the order `value` holds them.
pub fn dumps(value: &Value, separators: Separators, sort_keys: bool) -> String {
    let mut out = String::new();
    write_value(&mut out, value, separators, sort_keys);
    out
}

/// The name of the Python type `json.loads` gives a JSON value, as MLflow's
/// messages quote it (`Hint: Value was of type 'int'.`).
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn write_value(out: &mut String, value: &Value, separators: Separators, sort_keys: bool) {
    let (item_separator, key_separator) = match separators {
        Separators::Default => (", ", ": "),
        Separators::Compact => (",", ":"),
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() => out.push_str(&float_repr(float)),
            _ => out.push_str(&number.to_string()),
        },
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(item_separator);
                }
                write_value(out, item, separators, sort_keys);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if sort_keys {
                // Python sorts str keys by code point, as Rust orders `str`.
                entries.sort_by(|left, right| left.0.cmp(right.0));
            }
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(item_separator);
                }
                write_string(out, key);
                out.push_str(key_separator);
                write_value(out, item, separators, sort_keys);
            }
            out.push('}');
        }
    }
}

/// A string with `ensure_ascii`: everything outside printable ASCII escaped,
/// characters beyond the BMP as UTF-16 surrogate pairs.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(character),
            other => {
                let mut units = [0u16; 2];
                for unit in other.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr` of a float: the shortest digits that read back the same
/// value, positional for exponents from -4 to 15, scientific otherwise.
fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: "1.5e-7".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` always has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes an integer exponent");
    if (-4..16).contains(&exponent) {
        let positional = format!("{value}");
        if positional.contains('.') {
            positional
        } else {
            format!("{positional}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_what_python_json_dumps_writes() {
        let value = json!([{"name": "model", "version": 1}]);
        assert_eq!(
            dumps(&value, Separators::Default, true),
            r#"[{"name": "model", "version": 1}]"#
        );
        assert_eq!(
            dumps(&json!([{"name": "m"}, 2]), Separators::Default, false),
            r#"[{"name": "m"}, 2]"#
        );
        assert_eq!(
            dumps(&value, Separators::Compact, true),
            r#"[{"name":"model","version":1}]"#
        );
        assert_eq!(
            dumps(&json!("héllo 😀\n\"x\""), Separators::Compact, true),
            r#""h\u00e9llo \ud83d\ude00\n\"x\"""#
        );
        assert_eq!(dumps(&json!(31), Separators::Compact, true), "31");
        assert_eq!(dumps(&json!(-2), Separators::Compact, true), "-2");
        assert_eq!(dumps(&json!(1.0), Separators::Compact, true), "1.0");
        assert_eq!(dumps(&json!(1.5), Separators::Compact, true), "1.5");
        assert_eq!(dumps(&json!(1e16), Separators::Compact, true), "1e+16");
        assert_eq!(dumps(&json!(1.25e-7), Separators::Compact, true), "1.25e-07");
        assert_eq!(dumps(&json!(0.0001), Separators::Compact, true), "0.0001");
        assert_eq!(
            dumps(&json!(123456789012345.6), Separators::Compact, true),
            "123456789012345.6"
        );
        assert_eq!(
            dumps(&json!({"b": [true, null], "a": {}}), Separators::Default, true),
            r#"{"a": {}, "b": [true, null]}"#
        );
    }

    #[test]
    fn names_python_types() {
        assert_eq!(type_name(&json!(31)), "int");
        assert_eq!(type_name(&json!(3.5)), "float");
        assert_eq!(type_name(&json!("foo")), "str");
        assert_eq!(type_name(&json!([])), "list");
        assert_eq!(type_name(&json!({})), "dict");
        assert_eq!(type_name(&json!(true)), "bool");
        assert_eq!(type_name(&json!(null)), "NoneType");
    }
}
