//! Test harness: a witness to run the conformance scenarios against — a real `etcd`
//! process, or the embedded witness server on a tokio task — with fresh ports and data
//! directories per test, clients for it, and a restart that keeps its data.
//!
//! etcd is found as `$ETCD_BIN`, `etcd` on `PATH`, or `/usr/bin/etcd` (Debian's
//! `etcd-server` package). Without it the etcd tests fail with instructions, unless
//! `TANDEM_SKIP_ETCD=1`, which skips them with a printed message. Each test's etcd listens
//! on its own free ports on 127.0.0.1 (never a system etcd on 2379) and is killed by its
//! own pid when the harness is dropped.

use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_witness::{serve_embedded, EtcdWitness, EtcdWitnessConfig, HttpWitness, Witness, WitnessError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The deployment name whose leader key the etcd tests use.
pub const DEPLOYMENT: &str = "conformance";

/// Request timeout of the test clients.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a witness may take to start or restart.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|value| value == "1" || value.eq_ignore_ascii_case("true"))
        .unwrap_or(false)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_etcd() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("ETCD_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            is_executable(&bin),
            "ETCD_BIN={} is not an executable file",
            bin.display()
        );
        return Some(bin);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| is_executable(candidate))
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|bin| is_executable(bin)))
}

/// A witness under test.
pub struct Harness {
    backend: Backend,
}

enum Backend {
    Etcd(EtcdProcess),
    Embedded(EmbeddedServer),
}

impl Harness {
    /// A fresh single-member etcd cluster, or `None` (after saying so) when etcd is not
    /// installed and `TANDEM_SKIP_ETCD=1`.
    pub async fn etcd() -> Option<Harness> {
        let Some(binary) = find_etcd() else {
            if env_flag("TANDEM_SKIP_ETCD") {
                eprintln!("skipping the etcd witness test: no etcd binary and TANDEM_SKIP_ETCD=1");
                return None;
            }
            panic!(
                "the etcd witness tests need the etcd binary: install it with \
                 `apt-get install -y etcd-server` (or set ETCD_BIN), or set TANDEM_SKIP_ETCD=1 to skip them"
            );
        };
        let process = EtcdProcess::start(binary).await;
        Some(Harness {
            backend: Backend::Etcd(process),
        })
    }

    /// A fresh embedded witness server on a free port with an empty data directory.
    pub async fn embedded() -> Harness {
        Harness {
            backend: Backend::Embedded(EmbeddedServer::start().await),
        }
    }

    /// A new client of the witness, as one region would hold.
    pub fn client(&self) -> Arc<dyn Witness> {
        match &self.backend {
            Backend::Etcd(process) => Arc::new(
                EtcdWitness::new(EtcdWitnessConfig {
                    request_timeout: REQUEST_TIMEOUT,
                    ..EtcdWitnessConfig::new(vec![process.url()], DEPLOYMENT)
                })
                .unwrap(),
            ),
            Backend::Embedded(server) => Arc::new(HttpWitness::new(&server.url(), REQUEST_TIMEOUT).unwrap()),
        }
    }

    /// A client of the same kind pointed at a port where nothing listens.
    pub fn unreachable_client(&self) -> Arc<dyn Witness> {
        let url = format!("http://127.0.0.1:{}", free_port());
        match &self.backend {
            Backend::Etcd(_) => Arc::new(
                EtcdWitness::new(EtcdWitnessConfig {
                    request_timeout: REQUEST_TIMEOUT,
                    ..EtcdWitnessConfig::new(vec![url], DEPLOYMENT)
                })
                .unwrap(),
            ),
            Backend::Embedded(_) => Arc::new(HttpWitness::new(&url, REQUEST_TIMEOUT).unwrap()),
        }
    }

    /// Stops the witness and starts it again on the same port and data directory (etcd:
    /// SIGKILL to its pid; the embedded server: a graceful shutdown, after which a new
    /// server loads its state from the file alone). Returns once it accepts connections.
    pub async fn restart(&mut self) {
        match &mut self.backend {
            Backend::Etcd(process) => process.restart().await,
            Backend::Embedded(server) => server.restart().await,
        }
    }

    /// The etcd client URL, for clients configured by hand.
    pub fn etcd_url(&self) -> Option<String> {
        match &self.backend {
            Backend::Etcd(process) => Some(process.url()),
            Backend::Embedded(_) => None,
        }
    }

    /// The embedded witness's data directory, for checks of its state file.
    pub fn embedded_data_dir(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Embedded(server) => Some(server.data_dir.path()),
            Backend::Etcd(_) => None,
        }
    }
}

/// A single-member etcd we started; killed by its own pid when dropped.
struct EtcdProcess {
    binary: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    // Data and log directory, alive as long as the process.
    dir: tempfile::TempDir,
}

impl EtcdProcess {
    async fn start(binary: PathBuf) -> EtcdProcess {
        let mut process = EtcdProcess {
            binary,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("etcd tempdir"),
        };
        process.spawn();
        process.wait_until_healthy().await;
        process
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn spawn(&mut self) {
        let client_url = self.url();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let child = Command::new(&self.binary)
            .args(["--name", "tandem-test"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("tandem-test={peer_url}")])
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary.display()));
        self.child = Some(child);
    }

    /// Polls `/health` until etcd has a leader and serves requests; bounded.
    async fn wait_until_healthy(&mut self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(response) = http.get(format!("{}/health", self.url())).send().await {
                if response.status().is_success()
                    && response.text().await.unwrap_or_default().contains("true")
                {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("etcd exited early ({status}); its log:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "etcd was not healthy within {START_TIMEOUT:?}; its log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals exactly this pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_until_healthy().await;
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The embedded witness served on a task of the test's runtime.
struct EmbeddedServer {
    port: u16,
    data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), WitnessError>>>,
}

impl EmbeddedServer {
    async fn start() -> EmbeddedServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut server = EmbeddedServer {
            port,
            data_dir: tempfile::tempdir().expect("witness tempdir"),
            stop: None,
            task: None,
        };
        server.serve(listener);
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let data_dir = self.data_dir.path().to_path_buf();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(serve_embedded(listener, data_dir, async move {
            let _ = stopped.await;
        })));
    }

    async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("embedded witness stops within 10 s")
                .expect("embedded witness task")
                .expect("embedded witness served without error");
        }
        // The old listener is closed; bind the same port again (bounded retries in case
        // the kernel has not released it yet).
        let deadline = Instant::now() + START_TIMEOUT;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot rebind port {}: {error}",
                        self.port
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.serve(listener);
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
