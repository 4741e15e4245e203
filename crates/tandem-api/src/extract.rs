//! Request decoding in MLflow's conventions: GET parameters from the query
//! string, everything else from a JSON body; int64 as number or string;
//! repeated fields as repeated query keys. Unknown fields, wrong types and
//! malformed JSON are refused with the path of the offending field.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use serde_path_to_error::Segment;
use tandem_core::python_json::{self, Separators};
use tandem_store::{WorkspaceRef, DEFAULT_WORKSPACE};

use crate::error::ApiError;
use crate::AppState;

/// The header MLflow's client (3.x, `mlflow.set_workspace` or
/// `MLFLOW_WORKSPACE`) sends to name the workspace of a request.
pub const WORKSPACE_HEADER: &str = "x-mlflow-workspace";

/// The workspace a request addresses: `/w/<name>/…`, or the
/// `X-MLFLOW-WORKSPACE` header, or `default` at the root.
pub struct Ws(pub WorkspaceRef);

impl FromRequestParts<AppState> for Ws {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let name = workspace_name(parts, state).await?;
        Ok(Ws(state.store.resolve_workspace(&name).await?))
    }
}

/// The workspace named by the `{workspace}` path parameter of the
/// `/w/{workspace}` mount, or by the request's `X-MLFLOW-WORKSPACE` header,
/// else the default. (Nesting strips the prefix from the request's URI, so
/// the parameter is the only reliable source of the path's name.)
pub async fn workspace_name(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    let from_path = match RawPathParams::from_request_parts(parts, state).await {
        Ok(params) => params
            .iter()
            .find(|(key, _)| *key == "workspace")
            .map(|(_, value)| value.to_string()),
        Err(_) => None,
    };
    requested_workspace(from_path.as_deref(), &parts.headers)
}

/// The one rule for which workspace a request is about, shared by the
/// [`Ws`] extractor and the access gate (`access::workspace_of`) so that
/// the workspace authorized is always the workspace served: the `/w/<name>/`
/// prefix, else the `X-MLFLOW-WORKSPACE` header (trimmed; empty counts as
/// absent, as in MLflow), else `default`. A header that names another
/// workspace than the prefix is refused rather than one of them chosen.
pub fn requested_workspace(from_path: Option<&str>, headers: &HeaderMap) -> Result<String, ApiError> {
    let mut from_header: Option<&str> = None;
    for value in headers.get_all(WORKSPACE_HEADER) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("the X-MLFLOW-WORKSPACE header is not valid text"))?
            .trim();
        if value.is_empty() {
            continue;
        }
        match from_header {
            Some(earlier) if earlier != value => {
                return Err(ApiError::invalid(format!(
                    "the request names two workspaces in its X-MLFLOW-WORKSPACE headers ('{earlier}' and '{value}'); send one"
                )))
            }
            _ => from_header = Some(value),
        }
    }
    match (from_path, from_header) {
        (Some(path), Some(header)) if path != header => Err(ApiError::invalid(format!(
            "the request addresses workspace '{path}' by its URL (/w/{path}/) and workspace '{header}' by its \
             X-MLFLOW-WORKSPACE header; send only one of them, or the same workspace in both"
        ))),
        (Some(path), _) => Ok(path.to_string()),
        (None, Some(header)) => Ok(header.to_string()),
        (None, None) => Ok(DEFAULT_WORKSPACE.to_string()),
    }
}

/// A request message of type `T`.
pub struct Message<T>(pub T);

/// Fields that are lists in MLflow's messages: on a GET they arrive as
/// repeated query keys and must become arrays even when given once.
const REPEATED_FIELDS: &[&str] = &["order_by", "experiment_ids", "stages", "run_ids"];

impl<T: DeserializeOwned> FromRequest<AppState> for Message<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if request.method() == Method::GET {
            let value = query_to_json(request.uri().query().unwrap_or(""));
            return decode(value).map(Message);
        }
        let limit = state.limits.max_json_body;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|error| {
                let too_large = std::error::Error::source(&error)
                    .is_some_and(|source| source.to_string().contains("length limit"))
                    || error.to_string().contains("length limit");
                if too_large {
                    // 400, not 413 or 429: the client retries 429s, and MLflow
                    // refuses oversized batches as an invalid parameter.
                    ApiError::invalid(format!("request body exceeds the limit of {limit} bytes"))
                } else {
                    ApiError::bad_request(format!("could not read the request body: {error}"))
                }
            })?;
        match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
            None => return decode(Value::Object(Map::new())).map(Message),
            Some(b'{') => {}
            Some(_) => return Err(ApiError::bad_request("the request body must be a JSON object")),
        }
        // Straight from the bytes: no intermediate JSON tree for large batches.
        decode_slice(&bytes).map(Message)
    }
}

/// Decodes a request body, telling malformed JSON (BAD_REQUEST) from a
/// well-formed message with a wrong field (INVALID_PARAMETER_VALUE, naming it).
pub fn decode_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Most requests are well-formed: decode them without tracking the path,
    // which costs a large batch of metrics a good share of its decoding, and
    // decode again with it only to name the field of an error.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = match result {
        Ok(value) => value,
        Err(error) => {
            if let serde_json::error::Category::Syntax | serde_json::error::Category::Eof =
                error.inner().classify()
            {
                return Err(ApiError::bad_request(format!(
                    "Malformed JSON in request body: {}",
                    error.into_inner()
                )));
            }
            // Only on this error path: the body as a tree, to quote the
            // offending value the way MLflow does.
            let body: Option<Value> = serde_json::from_slice(bytes).ok();
            return Err(field_error(
                error.path(),
                error.inner().to_string(),
                body.as_ref(),
            ));
        }
    };
    deserializer
        .end()
        .map_err(|error| ApiError::bad_request(format!("Malformed JSON in request body: {error}")))?;
    Ok(value)
}

/// Decodes a JSON value into a message, naming the field that failed.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&value)
        .map_err(|error| field_error(error.path(), error.inner().to_string(), Some(&value)))
}

/// The refusal of a well-formed message with a wrong field. A value of the
/// wrong type (`"run_id": 31`, `"metrics": "foo"`, `"timestamp": "soon"`) is
/// refused in MLflow's words, which quote the value as `json.dumps` writes
/// it and name its Python type; anything else (an unknown field, a number
/// out of range) names the field and says what serde found wrong.
fn field_error(path: &serde_path_to_error::Path, message: String, request: Option<&Value>) -> ApiError {
    let path_text = path.to_string();
    if path_text == "." || path_text.is_empty() {
        return ApiError::invalid(format!("Invalid request: {message}"));
    }
    // serde's own wording for a value that does not fit the field's type
    // (`invalid type: integer `31`, expected a string`), or that has the
    // type but not a form the field accepts (`"soon"` for an int64).
    let wrong_type = ["invalid type:", "invalid value:", "invalid length"]
        .iter()
        .any(|prefix| message.starts_with(prefix));
    match request.and_then(|request| value_at(request, path)) {
        Some(value) if wrong_type => ApiError::invalid(format!(
            "Invalid value {} for parameter '{path_text}' supplied:  Hint: Value was of type '{}'. \
             See the API docs for more information about request parameters.",
            python_json::dumps(value, Separators::Compact, true),
            python_json::type_name(value),
        )),
        _ => ApiError::invalid(format!(
            "Invalid value for parameter '{path_text}' supplied: {message}"
        )),
    }
}

/// The value a deserializer's path leads to in the request's JSON.
fn value_at<'a>(request: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    let mut value = request;
    for segment in path.iter() {
        value = match segment {
            Segment::Seq { index } => value.get(*index)?,
            Segment::Map { key } => value.get(key.as_str())?,
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    Some(value)
}

fn query_to_json(query: &str) -> Value {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        map.entry(key.into_owned()).or_default().push(value.into_owned());
    }
    let mut object = Map::new();
    for (key, mut values) in map {
        let value = if REPEATED_FIELDS.contains(&key.as_str()) || values.len() > 1 {
            Value::Array(values.into_iter().map(Value::String).collect())
        } else {
            Value::String(values.pop().unwrap_or_default())
        };
        object.insert(key, value);
    }
    Value::Object(object)
}

/// Lenient decoders for proto3 JSON scalars: int64 as number or string,
/// bools as JSON bools or the strings a query string carries.
pub mod lenient {
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;

    struct IntVisitor;
    impl Visitor<'_> for IntVisitor {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer (as a number or a string)")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range for int64"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9.2e18 {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }

    pub fn int64_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
        struct OptVisitor;
        impl<'de> Visitor<'de> for OptVisitor {
            type Value = Option<i64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer (as a number or a string)")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(IntVisitor).map(Some)
            }
        }
        deserializer.deserialize_option(OptVisitor)
    }

    pub fn bool_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
        struct BoolVisitor;
        impl<'de> Visitor<'de> for BoolVisitor {
            type Value = Option<bool>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v.to_ascii_lowercase().as_str() {
                    "true" => Ok(Some(true)),
                    "false" => Ok(Some(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_option(BoolVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Metric {
        key: Option<String>,
        #[serde(default, deserialize_with = "lenient::int64_opt")]
        timestamp: Option<i64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Batch {
        run_id: Option<String>,
        #[serde(default)]
        metrics: Vec<Metric>,
    }

    fn refusal(body: &str) -> ApiError {
        decode_slice::<Batch>(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn values_of_the_wrong_type_are_refused_in_mlflow_words() {
        let see_docs = " See the API docs for more information about request parameters.";
        for (body, expected) in [
            (r#"{"run_id": 31}"#, format!("Invalid value 31 for parameter 'run_id' supplied:  Hint: Value was of type 'int'.{see_docs}")),
            (r#"{"metrics": "foo"}"#, format!("Invalid value \"foo\" for parameter 'metrics' supplied:  Hint: Value was of type 'str'.{see_docs}")),
            (
                r#"{"metrics": [{"key": "k"}, {"timestamp": "soon"}]}"#,
                format!("Invalid value \"soon\" for parameter 'metrics[1].timestamp' supplied:  Hint: Value was of type 'str'.{see_docs}"),
            ),
            (
                r#"{"run_id": {"z": [1.5], "a": null}}"#,
                format!("Invalid value {{\"a\":null,\"z\":[1.5]}} for parameter 'run_id' supplied:  Hint: Value was of type 'dict'.{see_docs}"),
            ),
        ] {
            let error = refusal(body);
            assert_eq!(error.kind, tandem_core::ErrorKind::InvalidParameterValue, "{body}");
            assert_eq!(error.message, expected, "{body}");
        }
        // The same words for a GET's query parameters.
        let error = decode::<Batch>(serde_json::json!({"run_id": ["a", "b"]})).unwrap_err();
        assert!(error.message.starts_with("Invalid value [\"a\",\"b\"] for parameter 'run_id' supplied:  Hint: Value was of type 'list'."), "{}", error.message);
    }

    #[test]
    fn unknown_fields_and_malformed_json_keep_their_refusals() {
        let error = refusal(r#"{"run_id": "r", "bogus": 1}"#);
        assert_eq!(error.kind, tandem_core::ErrorKind::InvalidParameterValue);
        assert!(
            error.message.contains("unknown field `bogus`"),
            "{}",
            error.message
        );
        let error = refusal(r#"{"run_id": "r", "#);
        assert_eq!(error.kind, tandem_core::ErrorKind::BadRequest);
        assert!(
            error.message.starts_with("Malformed JSON in request body"),
            "{}",
            error.message
        );
    }
}
