//! Serving HTTP so that connections cannot exhaust the process. Every
//! Tandem process (region, gateway, witness) serves through [`serve`]:
//!
//! - a **connection cap**: past `max_connections` a new connection is
//!   answered `503 Service Unavailable` with `Retry-After` and closed, so
//!   the process keeps file descriptors and memory for the connections it
//!   serves (and for `/health`), instead of failing `accept`;
//! - a **header timeout**: a request head must arrive whole within
//!   `header_timeout` (slowloris), and a keep-alive connection idle between
//!   requests is closed after the same time (hyper's header read timer
//!   covers both);
//! - a **body timeout**: a request body that makes no progress for
//!   `body_timeout` fails the read, so the handler fails (an upload keeps
//!   nothing) and the connection closes; a declared `Content-Length` with
//!   nothing behind it does not hold a connection forever;
//! - **fd-exhaustion-safe accepts**: `EMFILE`/`ENFILE` pause accepting
//!   briefly (logged, counted) rather than spinning or stopping;
//! - small per-connection buffers (an idle connection holds its task and
//!   hyper's state, not a 400 KB read buffer);
//! - graceful shutdown: on `shutdown`, stop accepting, let requests in
//!   flight finish (bounded by `shutdown_grace`), close the rest.
//!
//! [`raise_nofile_limit`] raises the soft fd limit to the hard one at start.
//!
//! Architecture invariant: knows nothing of Tandem's domain.

mod body;
pub mod tls;
pub mod web_app;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// What a server allows its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
    /// Time to receive a whole request head, and longest idle time of a
    /// keep-alive connection between requests.
    pub header_timeout: Duration,
    /// Longest a request body may make no progress.
    pub body_timeout: Duration,
    /// After shutdown begins, how long requests in flight may take.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServeLimits {
    /// Applies `TANDEM_MAX_CONNECTIONS`, `TANDEM_HEADER_TIMEOUT_MS` and
    /// `TANDEM_BODY_TIMEOUT_MS`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let number = |name: &str| -> Result<Option<u64>, String> {
            match env(name) {
                None => Ok(None),
                Some(value) => value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Some)
                    .ok_or_else(|| format!("{name}: '{value}' is not a positive number")),
            }
        };
        if let Some(max) = number("TANDEM_MAX_CONNECTIONS")? {
            self.max_connections = max as usize;
        }
        if let Some(ms) = number("TANDEM_HEADER_TIMEOUT_MS")? {
            self.header_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = number("TANDEM_BODY_TIMEOUT_MS")? {
            self.body_timeout = Duration::from_millis(ms);
        }
        Ok(())
    }

    /// The defaults with the environment's overrides (gateway, witness).
    pub fn from_env() -> Result<Self, String> {
        let mut limits = ServeLimits::default();
        limits.apply_env(|name| std::env::var(name).ok())?;
        Ok(limits)
    }

    /// The cap made to fit the process's fd limit: room is kept for the
    /// process's own files, database and outgoing connections.
    pub fn fitted_to_fd_limit(mut self) -> Self {
        if let Ok((soft, _)) = rlimit::Resource::NOFILE.get() {
            let room = soft.saturating_sub(RESERVED_FDS) as usize;
            if room < self.max_connections {
                tracing::warn!(
                    max_connections = self.max_connections,
                    fd_limit = soft,
                    capped_at = room.max(1),
                    "the connection cap exceeds what the fd limit allows; lowering it"
                );
                self.max_connections = room.max(1);
            }
        }
        self
    }
}

/// File descriptors kept for everything but client connections.
const RESERVED_FDS: u64 = 128;
/// Pause after `accept` found no file descriptor.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);
/// Time a refused connection gets to take its 503.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head and read buffer per connection (hyper's default
/// is ~400 KB; MLflow's requests are small and bodies stream).
const MAX_BUF: usize = 64 * 1024;

/// Raises the soft limit on open files to the hard limit; returns
/// `(soft, hard)` after.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
        tracing::info!(from = soft, to = hard, "raised the open-file limit");
    }
    rlimit::Resource::NOFILE.get()
}

/// MLflow's error JSON for a connection past the cap.
const REFUSAL_BODY: &str = r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"too many connections: the server is at its connection cap; retry shortly"}"#;

fn refusal() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    )
    .into_bytes()
}

/// Whether `headers` carry `Authorization: Bearer <secret>`, compared in
/// time that does not depend on where they differ: how regions, the gateway
/// and the witness recognise the deployment's replication secret.
pub fn presents_bearer(headers: &axum::http::HeaderMap, secret: &str) -> bool {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    presented.len() == secret.len()
        && presented
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The value of cookie `name` in `headers`, if it is there and not empty
/// (the console's session cookie, read by regions and the gateway alike).
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// The header the console's script sends with its requests.
pub const CONSOLE_HEADER: &str = "x-tandem-console";

/// Whether a request comes from the console's script: a refusal then
/// carries no `WWW-Authenticate` challenge, which would make the browser
/// pop up its own credentials dialog over the page (the page says the
/// session ended and links to the sign-in page instead).
pub fn from_console(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(CONSOLE_HEADER)
}

fn is_fd_exhaustion(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if code == 24 || code == 23) // EMFILE, ENFILE
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves;
/// `service` labels the metrics (`region`, `gateway`, `witness`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    service: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, app, limits, None, service, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (every connection's handshake
/// in its own task, within the header timeout).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    tls: Option<tls::Tls>,
    service: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let mut stopped = stopping.clone();
    let open = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    tokio::spawn(return_memory(open.clone(), peak.clone(), stopping.clone()));
    let mut last_exhaustion_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() { break } else { continue }
            }
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_fd_exhaustion(&error) => {
                metrics::counter!("tandem_http_accept_errors_total", "service" => service, "reason" => "fd_exhausted")
                    .increment(1);
                if last_exhaustion_log.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::error!(%error, "accept: no file descriptor left; pausing accepts (raise `ulimit -n` or lower max_connections)");
                    last_exhaustion_log = Some(Instant::now());
                }
                tokio::time::sleep(FD_EXHAUSTED_PAUSE).await;
                continue;
            }
            // A connection that died before it was accepted, and the like.
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let app = app.clone();
                let limits = limits.clone();
                let stopping = stopping.clone();
                let open = open.clone();
                let peak = peak.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let count = open.fetch_add(1, Ordering::Relaxed) + 1;
                    peak.fetch_max(count, Ordering::Relaxed);
                    metrics::gauge!("tandem_http_connections_open", "service" => service).set(count as f64);
                    let peer = stream.peer_addr().ok();
                    match tls {
                        None => serve_connection(stream, peer, app, &limits, service, stopping).await,
                        Some(tls) => {
                            match tokio::time::timeout(limits.header_timeout, tls.acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => {
                                    serve_connection(stream, peer, app, &limits, service, stopping).await
                                }
                                Ok(Err(error)) => {
                                    metrics::counter!("tandem_http_connections_closed_total", "service" => service, "reason" => "tls_handshake")
                                        .increment(1);
                                    tracing::debug!(%error, ?peer, "TLS handshake failed");
                                }
                                Err(_) => {
                                    metrics::counter!("tandem_http_connections_closed_total", "service" => service, "reason" => "timeout")
                                        .increment(1);
                                    tracing::debug!(?peer, "TLS handshake timed out");
                                }
                            }
                        }
                    }
                    let count = open.fetch_sub(1, Ordering::Relaxed) - 1;
                    metrics::gauge!("tandem_http_connections_open", "service" => service).set(count as f64);
                    drop(slot);
                });
            }
            Err(_) => {
                metrics::counter!("tandem_http_connections_refused_total", "service" => service).increment(1);
                tokio::spawn(refuse(stream));
            }
        }
    }
    // Wait for connections to finish their requests (each closes after its
    // response once shutdown began), then give up on the rest.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all)).await;
    Ok(())
}

/// How often the server looks whether connections went away.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);
/// Connections that must have closed since the last look to trim.
const TRIM_AFTER_CLOSED: u64 = 256;

/// Gives the memory of closed connections back to the system. glibc's
/// allocator keeps freed memory in its per-thread arenas: after a burst of
/// thousands of connections the process would keep their peak for good.
async fn return_memory(open: Arc<AtomicU64>, peak: Arc<AtomicU64>, mut stopping: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TRIM_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopping.changed() => return,
        }
        let now = open.load(Ordering::Relaxed);
        let high = peak.swap(now, Ordering::Relaxed);
        if high.saturating_sub(now) >= TRIM_AFTER_CLOSED {
            trim();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(released, "returned freed memory to the system");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Answers 503 to a connection over the cap, and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(&refusal()).await?;
        stream.shutdown().await
    })
    .await;
}

async fn serve_connection<S>(
    stream: S,
    peer: Option<std::net::SocketAddr>,
    app: Router,
    limits: &ServeLimits,
    service: &'static str,
    mut stopping: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let body_timeout = limits.body_timeout;
    let handler = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request =
            request.map(|incoming| axum::body::Body::new(body::Stalling::new(incoming, body_timeout)));
        if let Some(peer) = peer {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        }
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(stream), handler)
        .with_upgrades();
    tokio::pin!(connection);
    let stop = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = stop => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = outcome {
        let reason = if error.is_timeout() {
            "timeout"
        } else if error.is_incomplete_message() {
            "incomplete"
        } else {
            "error"
        };
        metrics::counter!("tandem_http_connections_closed_total", "service" => service, "reason" => reason)
            .increment(1);
        tracing::debug!(%error, reason, "connection closed");
    }
}
