//! What the gateway's tests run against: real regions (`tandem server`
//! in-process, joined by a deployment file written here), the gateway
//! in-process, and stub regions for what real regions cannot do yet
//! (change leadership, break a connection on purpose).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_deployment::Deployment;
use tandem_gateway::GatewayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn wait_healthy(url: &str) {
    wait_for_200(url, "/health").await
}

/// Until `url` answers `/ready` (a region has caught up with its primary).
pub async fn wait_ready(url: &str) {
    wait_for_200(url, "/ready").await
}

async fn wait_for_200(url: &str, path: &str) {
    let http = http();
    for _ in 0..400 {
        if let Ok(response) = http.get(format!("{url}{path}")).send().await {
            if response.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url}{path} did not answer 200 within 20s");
}

/// A running `tandem server`, in this process.
pub struct LiveRegion {
    pub name: String,
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tandem_server::ServerError>>>,
}

impl LiveRegion {
    /// Shuts the region down gracefully and waits until it stopped: its
    /// port refuses connections afterwards.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the region stops within 20s")
                .unwrap()
                .unwrap();
        }
    }
}

/// Regions of one deployment, each a real server on its own data directory.
pub struct LiveDeployment {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub deployment: Deployment,
    pub regions: Vec<LiveRegion>,
}

impl LiveDeployment {
    /// Starts `names` (the first is the primary) with the `classes` section
    /// of the deployment file.
    pub async fn start(names: &[&str], classes: &str) -> LiveDeployment {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut text = format!(
            "name = \"gateway-test\"\nprimary = \"{}\"\nreplication_secret = \"s3cret\"\n",
            names[0]
        );
        for name in names {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            text.push_str(&format!("\n[[regions]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
            listeners.push((name.to_string(), url, listener));
        }
        text.push('\n');
        text.push_str(classes);
        let path = dir.path().join("deployment.toml");
        std::fs::write(&path, &text).unwrap();
        let deployment = Deployment::from_file(&path).unwrap();
        let mut regions = Vec::new();
        for (name, url, listener) in listeners {
            let config = tandem_server::ServerConfig {
                data: Some(dir.path().join(&name)),
                region: name.clone(),
                deployment: Some(path.clone()),
                sqlite_synchronous: "NORMAL".to_string(),
                ..tandem_server::ServerConfig::default()
            };
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(tandem_server::serve(config, listener, async {
                let _ = stopped.await;
            }));
            wait_ready(&url).await;
            regions.push(LiveRegion {
                name,
                url,
                stop: Some(stop),
                task: Some(task),
            });
        }
        LiveDeployment {
            dir,
            path,
            deployment,
            regions,
        }
    }

    pub fn region(&mut self, name: &str) -> &mut LiveRegion {
        self.regions
            .iter_mut()
            .find(|region| region.name == name)
            .unwrap()
    }

    pub async fn stop_all(&mut self) {
        for region in &mut self.regions {
            region.stop().await;
        }
    }
}

/// A gateway running in this process.
pub struct RunningGateway {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tandem_gateway::GatewayError>>>,
}

impl RunningGateway {
    pub async fn start(config: GatewayConfig) -> RunningGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tandem_gateway::serve(config, listener, async {
            let _ = stopped.await;
        }));
        wait_healthy(&url).await;
        RunningGateway {
            url,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The gateway's `/gateway/status` document (for operators: asked
    /// with the deployment's replication secret).
    pub async fn status(&self) -> serde_json::Value {
        http()
            .get(format!("{}/gateway/status", self.url))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the gateway names `primary` as primary (None: no primary).
    pub async fn wait_for_primary(&self, primary: Option<&str>) {
        for _ in 0..200 {
            let status = self.status().await;
            if status["primary"]["region"].as_str() == primary {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the gateway never saw primary {primary:?}: {}",
            self.status().await
        );
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the gateway stops within 20s")
                .unwrap()
                .unwrap();
        }
    }
}

/// What a stub region does with a request other than its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads the whole request and answers 200 with what it received.
    Serve,
    /// Acts as a secondary: serves reads (GET, HEAD, `…/search`), refuses
    /// anything else as not primary (403) after reading it whole.
    Secondary,
    /// Answers 503 TEMPORARILY_UNAVAILABLE.
    Unavailable,
    /// Reads the request head and closes the connection without answering.
    Break,
}

/// A request a stub region received (status requests are not recorded).
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body_len: usize,
}

struct StubState {
    role: String,
    epoch: u64,
    primary: String,
    mode: Mode,
    /// What its status says of its readiness (None: says nothing, as
    /// regions of older versions).
    ready: Option<bool>,
    received: Vec<Received>,
}

/// A region stand-in speaking just enough HTTP/1.1 (one request per
/// connection): its status says whatever role and epoch the test sets, and
/// other requests get what its [`Mode`] says. Real regions cannot yet change
/// leadership or break a connection on demand; the gateway's retry rules
/// are about exactly those moments.
pub struct StubRegion {
    pub name: String,
    pub url: String,
    state: Arc<Mutex<StubState>>,
    accepting: JoinHandle<()>,
}

impl StubRegion {
    pub async fn start(name: &str, role: &str, epoch: u64, primary: &str) -> StubRegion {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(StubState {
            role: role.to_string(),
            epoch,
            primary: primary.to_string(),
            mode: if role == "primary" {
                Mode::Serve
            } else {
                Mode::Secondary
            },
            ready: None,
            received: Vec::new(),
        }));
        let accepting = {
            let state = state.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(stub_connection(socket, name.clone(), state.clone()));
                }
            })
        };
        StubRegion {
            name: name.to_string(),
            url,
            state,
            accepting,
        }
    }

    /// Changes what the region says of itself; the mode follows the role.
    pub fn set_role(&self, role: &str, epoch: u64, primary: &str) {
        let mut state = self.state.lock().unwrap();
        state.role = role.to_string();
        state.epoch = epoch;
        state.primary = primary.to_string();
        state.mode = if role == "primary" {
            Mode::Serve
        } else {
            Mode::Secondary
        };
    }

    /// Makes its status say it is (not) ready, with a reason when not.
    pub fn set_ready(&self, ready: bool) {
        self.state.lock().unwrap().ready = Some(ready);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Stops listening: new connections are refused.
    pub async fn stop(&self) {
        self.accepting.abort();
        for _ in 0..100 {
            if self.accepting.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A deployment file over stub regions (the first is the bootstrap primary).
pub fn stub_deployment(regions: &[&StubRegion], classes: &str) -> Deployment {
    // The secret lets the tests read the gateway's own status, which is
    // for operators (stubs answer no `whoami`).
    let mut text = format!(
        "name = \"stubs\"\nprimary = \"{}\"\nreplication_secret = \"s3cret\"\n",
        regions[0].name
    );
    for region in regions {
        text.push_str(&format!(
            "\n[[regions]]\nname = \"{}\"\nurl = \"{}\"\n",
            region.name, region.url
        ));
    }
    text.push('\n');
    text.push_str(classes);
    Deployment::from_toml(&text, std::path::Path::new(".")).unwrap()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Decodes a complete chunked body; None while incomplete.
fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut rest = raw;
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return find(rest, b"\r\n").map(|_| body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

async fn respond(socket: &mut TcpStream, status: &str, body: &serde_json::Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn stub_connection(mut socket: TcpStream, name: String, state: Arc<Mutex<StubState>>) {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    if path == "/api/tandem/v1/regions" {
        let document = {
            let state = state.lock().unwrap();
            let mut document = serde_json::json!({
                "deployment": "stubs",
                "region": name,
                "role": state.role,
                "primary": state.primary,
                "epoch": state.epoch,
            });
            if let Some(ready) = state.ready {
                document["ready"] = serde_json::json!(ready);
                document["readiness"] = serde_json::json!([
                    {"name": "store", "ok": true, "detail": "journal head 1, epoch 1"},
                    {"name": "caught_up", "ok": ready, "detail": "catching up with 'eastus': applied 1 of 9"},
                ]);
            }
            document
        };
        respond(&mut socket, "200 OK", &document).await;
        return;
    }
    let mode = state.lock().unwrap().mode;
    if mode == Mode::Break {
        state.lock().unwrap().received.push(Received {
            method,
            path,
            body_len: buffer.len() - head_end,
        });
        // Closing with unread bytes resets the connection.
        drop(socket);
        return;
    }
    let content_length = header("content-length").and_then(|value| value.parse::<usize>().ok());
    let chunked = header("transfer-encoding").is_some_and(|value| value.contains("chunked"));
    let body = loop {
        let raw = &buffer[head_end..];
        if chunked {
            if let Some(body) = dechunk(raw) {
                break body;
            }
        } else if raw.len() >= content_length.unwrap_or(0) {
            break raw.to_vec();
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let primary = {
        let mut state = state.lock().unwrap();
        state.received.push(Received {
            method: method.clone(),
            path: path.clone(),
            body_len: body.len(),
        });
        state.primary.clone()
    };
    let read = method == "GET" || method == "HEAD" || path.ends_with("/search");
    let serves = mode == Mode::Serve || (mode == Mode::Secondary && read);
    match mode {
        _ if serves => {
            let document = serde_json::json!({
                "served_by": name,
                "method": method,
                "path": path,
                "body_len": body.len(),
            });
            respond(&mut socket, "200 OK", &document).await;
        }
        Mode::Secondary => {
            let document = serde_json::json!({
                "error_code": "PERMISSION_DENIED",
                "message": format!("region '{name}' is a read-only secondary (tracking is hot-warm here): send writes to the primary region '{primary}'"),
            });
            respond(&mut socket, "403 Forbidden", &document).await;
        }
        Mode::Unavailable => {
            let document = serde_json::json!({
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": "refusing tracking writes: another region is 9.0s behind, past max_rpo 5.0s",
            });
            respond(&mut socket, "503 Service Unavailable", &document).await;
        }
        Mode::Serve | Mode::Break => unreachable!("handled above"),
    }
}
