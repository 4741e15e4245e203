//! The few calls of etcd's v3 HTTP/JSON gateway the witness needs (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/{grant,keepalive,revoke,timetolive}`), typed.
//!
//! The gateway speaks protobuf's JSON mapping: keys and values are base64, 64-bit integers
//! are decimal strings, and fields with their zero value are omitted (an absent `TTL` is 0,
//! an absent `succeeded` is false). Errors come back as an HTTP status with
//! `{"error", "message", "code"}`, `code` being the gRPC status code.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::error::WitnessError;

/// gRPC's `INVALID_ARGUMENT`.
const GRPC_INVALID_ARGUMENT: i64 = 3;
/// gRPC's `NOT_FOUND`: etcd's "requested lease not found".
const GRPC_NOT_FOUND: i64 = 5;

/// A failed gateway call, before the caller decides what it means for leadership.
#[derive(Debug)]
pub(super) enum GatewayError {
    /// No answer: connection failure, timeout, unreadable response.
    Transport(String),
    /// etcd answered with an error.
    Status { grpc_code: i64, message: String },
}

impl GatewayError {
    pub(super) fn is_lease_not_found(&self) -> bool {
        matches!(self, GatewayError::Status { grpc_code, .. } if *grpc_code == GRPC_NOT_FOUND)
    }
}

impl From<GatewayError> for WitnessError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::Transport(message) => WitnessError::Unavailable(message),
            GatewayError::Status { grpc_code, message } if grpc_code == GRPC_INVALID_ARGUMENT => {
                WitnessError::Invalid(format!("etcd: {message}"))
            }
            GatewayError::Status { grpc_code, message } if grpc_code == GRPC_NOT_FOUND => {
                tracing::debug!(%message, "etcd lease not found");
                WitnessError::LeaseLost
            }
            GatewayError::Status { grpc_code, message } => {
                WitnessError::Unavailable(format!("etcd error (grpc code {grpc_code}): {message}"))
            }
        }
    }
}

/// Deserializes protobuf-JSON int64 (a string) or a plain number, absent as 0.
fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        String(String),
        Number(i64),
    }
    match StringOrNumber::deserialize(deserializer)? {
        StringOrNumber::Number(number) => Ok(number),
        StringOrNumber::String(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Header {
    #[serde(default, deserialize_with = "int64")]
    pub revision: i64,
}

/// One key as etcd stores it; `value` still base64.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct KeyValue {
    #[serde(default, deserialize_with = "int64")]
    pub mod_revision: i64,
    #[serde(default)]
    pub value: String,
    #[serde(default, deserialize_with = "int64")]
    pub lease: i64,
}

impl KeyValue {
    pub(super) fn value_bytes(&self) -> Result<Vec<u8>, WitnessError> {
        BASE64
            .decode(&self.value)
            .map_err(|error| WitnessError::Invalid(format!("etcd value is not base64: {error}")))
    }
}

#[derive(Debug, Default, Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct PutResponse {
    #[serde(default)]
    pub prev_kv: Option<KeyValue>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ResponseOp {
    #[serde(default)]
    response_range: Option<RangeResponse>,
    #[serde(default)]
    pub response_put: Option<PutResponse>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TxnResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub succeeded: bool,
    #[serde(default)]
    pub responses: Vec<ResponseOp>,
}

impl TxnResponse {
    /// The key read by a `request_range` operation of the branch that ran, if any.
    pub(super) fn ranged_key(&self) -> Option<&KeyValue> {
        self.responses
            .iter()
            .find_map(|op| op.response_range.as_ref())
            .and_then(|range| range.kvs.first())
    }

    /// The previous value overwritten by a `request_put` with `prev_kv`, if any.
    pub(super) fn previous_key(&self) -> Option<&KeyValue> {
        self.responses
            .iter()
            .find_map(|op| op.response_put.as_ref())
            .and_then(|put| put.prev_kv.as_ref())
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LeaseGrant {
    #[serde(rename = "ID", deserialize_with = "int64")]
    pub id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    pub ttl_seconds: i64,
}

#[derive(Debug, Default, Deserialize)]
struct LeaseTtl {
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    ttl_seconds: i64,
}

/// `/v3/lease/keepalive` is a streaming call; through the gateway each response is a line
/// `{"result": …}` or `{"error": …}`.
#[derive(Debug, Deserialize)]
struct KeepAliveLine {
    #[serde(default)]
    result: Option<LeaseTtl>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
}

/// A comparison of a transaction.
pub(super) enum Compare {
    /// The key does not exist (its create revision is 0).
    Absent,
    /// The key was last written at this revision.
    ModRevision(i64),
}

/// The gateway of one etcd cluster.
pub(super) struct Gateway {
    http: reqwest::Client,
    /// Client URLs of the members, without a trailing slash.
    endpoints: Vec<String>,
    /// Index of the endpoint that answered last; tried first, so a dead member costs one
    /// failed connection once rather than on every call.
    preferred: AtomicUsize,
}

impl Gateway {
    pub(super) fn new(endpoints: Vec<String>, request_timeout: Duration) -> Result<Self, WitnessError> {
        if endpoints.is_empty() {
            return Err(WitnessError::Invalid("no etcd endpoint given".to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .build()
            .map_err(|error| WitnessError::Invalid(format!("cannot build http client: {error}")))?;
        Ok(Gateway {
            http,
            endpoints: endpoints
                .into_iter()
                .map(|endpoint| endpoint.trim_end_matches('/').to_string())
                .collect(),
            preferred: AtomicUsize::new(0),
        })
    }

    /// POSTs `body` to `path` and returns the response text. Moves to the next endpoint
    /// only when a connection could not be made, because then the request certainly was
    /// not sent; a timeout is reported as is, since the request may have been applied.
    async fn post_text(&self, path: &str, body: &Value) -> Result<String, GatewayError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_error = String::new();
        for attempt in 0..self.endpoints.len() {
            let index = (first + attempt) % self.endpoints.len();
            let url = format!("{}{path}", self.endpoints[index]);
            let response = match self.http.post(&url).json(body).send().await {
                Ok(response) => response,
                Err(error) if error.is_connect() => {
                    last_error = format!("cannot connect to etcd at {url}: {error}");
                    continue;
                }
                Err(error) => return Err(GatewayError::Transport(format!("etcd request {url}: {error}"))),
            };
            self.preferred.store(index, Ordering::Relaxed);
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|error| GatewayError::Transport(format!("etcd response {url}: {error}")))?;
            if status.is_success() {
                return Ok(text);
            }
            let error: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
            return Err(GatewayError::Status {
                grpc_code: error.code,
                message: if error.message.is_empty() {
                    format!("http status {status}: {text}")
                } else {
                    error.message
                },
            });
        }
        Err(GatewayError::Transport(last_error))
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, GatewayError> {
        let text = self.post_text(path, body).await?;
        serde_json::from_str(&text).map_err(|error| {
            GatewayError::Transport(format!("unreadable etcd response from {path}: {error}"))
        })
    }

    /// Reads one key.
    pub(super) async fn get(&self, key: &str) -> Result<Option<KeyValue>, GatewayError> {
        let response: RangeResponse = self
            .post("/v3/kv/range", &json!({ "key": BASE64.encode(key) }))
            .await?;
        Ok(response.kvs.into_iter().next())
    }

    /// Runs `if compare then put(key, value, lease) else range(key)`; with no comparison
    /// the put always runs. The put returns the value it overwrote.
    pub(super) async fn put_if(
        &self,
        key: &str,
        compare: Option<Compare>,
        value: &[u8],
        lease: i64,
    ) -> Result<TxnResponse, GatewayError> {
        let key = BASE64.encode(key);
        let compares: Vec<Value> = match compare {
            None => vec![],
            Some(Compare::Absent) => vec![json!({
                "target": "CREATE", "key": key, "result": "EQUAL", "create_revision": "0"
            })],
            Some(Compare::ModRevision(revision)) => vec![json!({
                "target": "MOD", "key": key, "result": "EQUAL", "mod_revision": revision.to_string()
            })],
        };
        let body = json!({
            "compare": compares,
            "success": [{ "request_put": {
                "key": key, "value": BASE64.encode(value), "lease": lease.to_string(), "prev_kv": true
            }}],
            "failure": [{ "request_range": { "key": key } }],
        });
        self.post("/v3/kv/txn", &body).await
    }

    /// Deletes `key` if it was last written at `mod_revision`; true if it did.
    pub(super) async fn delete_if(&self, key: &str, mod_revision: i64) -> Result<bool, GatewayError> {
        let key = BASE64.encode(key);
        let body = json!({
            "compare": [{
                "target": "MOD", "key": key, "result": "EQUAL", "mod_revision": mod_revision.to_string()
            }],
            "success": [{ "request_delete_range": { "key": key } }],
        });
        let response: TxnResponse = self.post("/v3/kv/txn", &body).await?;
        Ok(response.succeeded)
    }

    pub(super) async fn grant(&self, ttl: Duration) -> Result<LeaseGrant, GatewayError> {
        self.post("/v3/lease/grant", &json!({ "TTL": ttl.as_secs().to_string() }))
            .await
    }

    /// Renews a lease once; returns its new TTL in seconds, 0 if it no longer exists.
    pub(super) async fn keep_alive(&self, lease: i64) -> Result<i64, GatewayError> {
        let text = self
            .post_text("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))
            .await?;
        let first_line = text.lines().find(|line| !line.trim().is_empty()).unwrap_or("");
        let line: KeepAliveLine = serde_json::from_str(first_line).map_err(|error| {
            GatewayError::Transport(format!("unreadable etcd keepalive response: {error}"))
        })?;
        match (line.result, line.error) {
            (Some(result), _) => Ok(result.ttl_seconds),
            (None, Some(error)) => {
                let body: ErrorBody = serde_json::from_value(error.clone()).unwrap_or_default();
                Err(GatewayError::Status {
                    grpc_code: body.code,
                    message: if body.message.is_empty() {
                        error.to_string()
                    } else {
                        body.message
                    },
                })
            }
            (None, None) => Err(GatewayError::Transport(
                "empty etcd keepalive response".to_string(),
            )),
        }
    }

    /// Revokes a lease (deleting the keys attached to it); a lease already gone is fine.
    pub(super) async fn revoke(&self, lease: i64) -> Result<(), GatewayError> {
        match self
            .post::<Value>("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .await
        {
            Err(error) if error.is_lease_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Remaining seconds of a lease; negative or 0 once it expired.
    pub(super) async fn time_to_live(&self, lease: i64) -> Result<i64, GatewayError> {
        let response: LeaseTtl = self
            .post("/v3/lease/timetolive", &json!({ "ID": lease.to_string() }))
            .await?;
        Ok(response.ttl_seconds)
    }
}
