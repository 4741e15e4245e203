//! A server spoken to over HTTP: an MLflow tracking server's REST API (the
//! source of a copy), and the target Tandem's import endpoint and artifact
//! proxy. Only MLflow's documented REST calls are used on a source, so any
//! recent `mlflow server` (or a Tandem workspace URL) is one.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::TransferError;

/// How long connecting may take: an unreachable source fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests are retried this many times when the connection fails or the
/// server answers 502/503/504 (a gateway during a failover, a restart).
const ATTEMPTS: u32 = 4;

/// How a copy proves who it is to one side.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Token(String),
    Basic {
        username: String,
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(***)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

/// One server: its base URL (a tracking URI, possibly with a Tandem
/// workspace prefix `/w/<name>`) and credentials.
#[derive(Debug, Clone)]
pub struct Endpoint {
    base: String,
    http: reqwest::Client,
}

impl Endpoint {
    pub fn new(base: &str, auth: &Auth) -> Result<Endpoint, TransferError> {
        let base = base.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base)
            .map_err(|error| TransferError::Usage(format!("'{base}' is not a URL: {error}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(TransferError::Usage(format!(
                "'{base}' is not an http(s) tracking URI"
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(TransferError::Usage(
                "put credentials in options or MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN, not in the URL"
                    .to_string(),
            ));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        let value = match auth {
            Auth::None => None,
            Auth::Token(token) => Some(format!("Bearer {}", token.trim())),
            Auth::Basic { username, password } => {
                use base64::Engine;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
                ))
            }
        };
        if let Some(value) = value {
            let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                TransferError::Usage("credentials hold characters a header cannot carry".to_string())
            })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .default_headers(headers)
            .build()
            .map_err(|error| TransferError::Usage(error.to_string()))?;
        Ok(Endpoint { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Sends a request built by `build`, retrying what a restart or a
    /// failover explains; an answer that is an error becomes
    /// [`TransferError::Api`].
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, TransferError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = build(&self.http)
                .build()
                .map_err(|error| self.transport(&error))?;
            let url = request.url().to_string();
            // A read sent on a kept-alive connection the server was closing
            // (uvicorn, which `mlflow server` runs, closes idle ones after
            // 5 s) fails with a reset before any answer: sent again on a
            // new connection it is answered. Writes are not sent twice.
            let idempotent = matches!(*request.method(), reqwest::Method::GET | reqwest::Method::HEAD);
            match self.http.execute(request).await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if matches!(response.status().as_u16(), 502..=504) && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
                }
                Ok(response) => return Err(api_error(&url, response).await),
                Err(error) if (error.is_connect() || error.is_timeout()) && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
                }
                Err(error) if idempotent && error.is_request() && attempt < ATTEMPTS => {
                    tracing::debug!(%url, error = %self.transport(&error), "sending the read again");
                }
                Err(error) => return Err(self.transport(&error)),
            }
        }
    }

    /// One attempt, for a request whose streamed body cannot be sent twice.
    pub async fn send_once(&self, request: reqwest::RequestBuilder) -> Result<(), TransferError> {
        let request = request.build().map_err(|error| self.transport(&error))?;
        let url = request.url().to_string();
        match self.http.execute(request).await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(api_error(&url, response).await),
            Err(error) => Err(self.transport(&error)),
        }
    }

    /// The client, to build a request for [`Self::send_once`].
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn transport(&self, error: &reqwest::Error) -> TransferError {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            message = format!("{message}: {inner}");
            source = inner.source();
        }
        TransferError::Transport {
            url: self.base.clone(),
            message,
        }
    }

    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, TransferError> {
        let url = self.url(path);
        let response = self.send(|http| http.get(&url).query(query)).await?;
        decode(&url, response).await
    }

    pub async fn post_json<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, TransferError> {
        let url = self.url(path);
        let response = self.send(|http| http.post(&url).json(body)).await?;
        decode(&url, response).await
    }

    /// A JSON request with another method (MLflow's PATCH and DELETE routes
    /// take a JSON body too).
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<T, TransferError> {
        let url = self.url(path);
        let response = self
            .send(|http| http.request(method.clone(), &url).json(body))
            .await?;
        decode(&url, response).await
    }

    /// Every page of a paged MLflow search: `field` of each answer, the
    /// next page asked with its `next_page_token`.
    pub async fn pages(
        &self,
        path: &str,
        method_post: bool,
        body: Value,
        field: &str,
    ) -> Result<Vec<Value>, TransferError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = body.clone();
            if let Some(token) = &token {
                request["page_token"] = json!(token);
            }
            let page: Value = if method_post {
                self.post_json(path, &request).await?
            } else {
                let query: Vec<(&str, String)> = request
                    .as_object()
                    .map(|fields| {
                        fields
                            .iter()
                            .map(|(key, value)| {
                                let text = match value {
                                    Value::String(text) => text.clone(),
                                    other => other.to_string(),
                                };
                                (key.as_str(), text)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.get_json(path, &query).await?
            };
            if let Some(items) = page.get(field).and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            match page.get("next_page_token").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => return Ok(out),
            }
        }
    }
}

async fn decode<T: DeserializeOwned>(url: &str, response: reqwest::Response) -> Result<T, TransferError> {
    let bytes = response.bytes().await.map_err(|error| TransferError::Transport {
        url: url.to_string(),
        message: error.to_string(),
    })?;
    // MLflow writes NaN and ±Infinity as bare words (Python's json.dumps).
    let text = String::from_utf8_lossy(&bytes);
    serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&python_literals(&text)))
        .map_err(|error| TransferError::Decode(format!("{url}: {error}")))
}

/// `NaN`, `Infinity` and `-Infinity` outside strings, as JSON strings that
/// `tandem_core`'s float fields read back as those values.
fn python_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let c = bytes[index] as char;
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            index += 1;
            continue;
        }
        let rest = &text[index..];
        if c == '"' {
            in_string = true;
            out.push(c);
            index += 1;
        } else if rest.starts_with("NaN") {
            out.push_str("\"NaN\"");
            index += 3;
        } else if rest.starts_with("-Infinity") {
            out.push_str("\"-Infinity\"");
            index += 9;
        } else if rest.starts_with("Infinity") {
            out.push_str("\"Infinity\"");
            index += 8;
        } else {
            out.push(c);
            index += 1;
        }
    }
    out
}

async fn api_error(url: &str, response: reqwest::Response) -> TransferError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let code = parsed
        .as_ref()
        .and_then(|value| value.get("error_code"))
        .and_then(Value::as_str)
        .unwrap_or(match status {
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "ENDPOINT_NOT_FOUND",
            _ => "",
        })
        .to_string();
    let message = parsed
        .as_ref()
        .and_then(|value| value.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(300).collect());
    TransferError::Api {
        url: url.to_string(),
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_literals_become_strings_outside_strings_only() {
        let text = r#"{"a": NaN, "b": -Infinity, "c": Infinity, "d": "NaN Infinity", "e": "x\"NaN"}"#;
        let value: Value = serde_json::from_str(&python_literals(text)).unwrap();
        assert_eq!(value["a"], "NaN");
        assert_eq!(value["b"], "-Infinity");
        assert_eq!(value["c"], "Infinity");
        assert_eq!(value["d"], "NaN Infinity");
        assert_eq!(value["e"], "x\"NaN");
    }

    /// A server that closes its first connection once it has read the
    /// request, unanswered (what a server closing an idle kept-alive
    /// connection does to a request that crossed it), and answers on the
    /// others. Returns its URL and the number of requests it read.
    async fn closes_first_connection() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut read = Vec::new();
                let mut buffer = [0u8; 1024];
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read.extend_from_slice(&buffer[..n]),
                    }
                }
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    drop(socket);
                    continue;
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .await;
            }
        });
        (url, requests)
    }

    #[tokio::test]
    async fn a_read_cut_off_before_its_answer_is_sent_again_and_a_write_is_not() {
        use std::sync::atomic::Ordering;
        let (url, requests) = closes_first_connection().await;
        let endpoint = Endpoint::new(&url, &Auth::None).unwrap();
        let response = endpoint.send(|http| http.get(format!("{url}/x"))).await.unwrap();
        assert_eq!(response.text().await.unwrap(), "ok");
        assert_eq!(requests.load(Ordering::SeqCst), 2, "the read was sent again");

        let (url, requests) = closes_first_connection().await;
        let endpoint = Endpoint::new(&url, &Auth::None).unwrap();
        let error = endpoint
            .send(|http| http.post(format!("{url}/x")).body("{}"))
            .await
            .unwrap_err();
        assert!(matches!(error, TransferError::Transport { .. }), "{error}");
        assert_eq!(requests.load(Ordering::SeqCst), 1, "the write was sent once");
    }

    #[test]
    fn credentials_in_the_url_are_refused() {
        let error = Endpoint::new("http://user:pw@localhost:5000", &Auth::None).unwrap_err();
        assert!(error.to_string().contains("not in the URL"));
        assert!(Endpoint::new("file:///tmp", &Auth::None).is_err());
        assert_eq!(
            Endpoint::new("http://h:1/w/a/", &Auth::None).unwrap().base(),
            "http://h:1/w/a"
        );
    }
}
