//! Test helpers: the conformance suite's data generators and real emulators (Azurite for
//! Azure Blob, moto for S3) started per test and killed when the test ends.
//!
//! Emulators are found, in order:
//! * Azurite: `$AZURITE_BIN`, `azurite-blob` on `PATH`, `$(npm prefix -g)/bin/azurite-blob`.
//!   Install with `npm install -g azurite`. `TANDEM_SKIP_AZURITE=1` skips the Azure test.
//! * moto: `$TANDEM_VENV/bin/moto_server`, `moto_server` on `PATH`,
//!   `$HOME/.cache/tandem-venv/bin/moto_server`. Install with
//!   `pip install 'moto[server]'` (into the venv). `TANDEM_SKIP_MOTO=1` skips the S3 test.
//!
//! A missing emulator fails its test with these instructions rather than passing silently,
//! so CI cannot go green without having exercised the cloud backends.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Deterministic pseudo-random bytes (xorshift64*), so failures are reproducible and the
/// data does not compress or deduplicate into something unrepresentative.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Splits `data` into chunks of awkward, varying sizes (not aligned to anything).
pub fn odd_chunks(data: &[u8]) -> Vec<Bytes> {
    const SIZES: [usize; 6] = [1, 4093, 65_537, 1_000_003, 7, 3_333_331];
    let mut chunks = Vec::new();
    let mut offset = 0;
    let mut i = 0;
    while offset < data.len() {
        let n = SIZES[i % SIZES.len()].min(data.len() - offset);
        chunks.push(Bytes::copy_from_slice(&data[offset..offset + n]));
        offset += n;
        i += 1;
    }
    chunks
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(data))
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

/// A child process we started; killed (by its own pid, via `Child::kill`) when dropped.
pub struct Emulator {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    log: PathBuf,
    // Keeps the emulator's data/log directory alive as long as the process.
    _dir: tempfile::TempDir,
}

impl Emulator {
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_azurite() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("AZURITE_BIN") {
        let bin = PathBuf::from(bin);
        if is_executable(&bin) {
            return Some(bin);
        }
        panic!("AZURITE_BIN={} is not an executable file", bin.display());
    }
    if let Some(bin) = on_path("azurite-blob") {
        return Some(bin);
    }
    let output = Command::new("npm")
        .args(["prefix", "-g"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let prefix = String::from_utf8(output.stdout).ok()?;
    let candidate = PathBuf::from(prefix.trim()).join("bin").join("azurite-blob");
    is_executable(&candidate).then_some(candidate)
}

fn find_moto() -> Option<PathBuf> {
    if let Some(venv) = std::env::var_os("TANDEM_VENV") {
        let candidate = PathBuf::from(venv).join("bin").join("moto_server");
        if is_executable(&candidate) {
            return Some(candidate);
        }
    }
    if let Some(bin) = on_path("moto_server") {
        return Some(bin);
    }
    let home = std::env::var_os("HOME")?;
    let candidate = PathBuf::from(home).join(".cache/tandem-venv/bin/moto_server");
    is_executable(&candidate).then_some(candidate)
}

/// Starts `program` with `args(dir)`, `dir` being a fresh directory for its data and log.
fn spawn(name: &'static str, program: &Path, args: impl FnOnce(&Path) -> Vec<String>, port: u16) -> Emulator {
    let dir = tempfile::tempdir().expect("emulator tempdir");
    let args = args(dir.path());
    let log = dir.path().join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log).expect("emulator log file");
    let child = Command::new(program)
        .args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
    let mut emulator = Emulator {
        name,
        port,
        child,
        log,
        _dir: dir,
    };
    wait_for_port(&mut emulator);
    emulator
}

/// Polls until the emulator accepts connections; bounded (moto imports for a few seconds).
fn wait_for_port(emulator: &mut Emulator) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", emulator.port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = emulator.child.try_wait() {
            panic!(
                "{} exited early ({status}) before listening on port {}; its log:\n{}",
                emulator.name,
                emulator.port,
                emulator.log_tail()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "{} did not listen on port {} within 60 s; its log:\n{}",
                emulator.name,
                emulator.port,
                emulator.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts Azurite's blob service on a free port, or explains why it cannot.
pub fn start_azurite() -> Result<Emulator, String> {
    if env_flag("TANDEM_SKIP_AZURITE") {
        return Err("TANDEM_SKIP_AZURITE=1: skipping the Azure Blob (Azurite) conformance run".into());
    }
    let Some(bin) = find_azurite() else {
        panic!(
            "Azurite (azurite-blob) not found: looked at $AZURITE_BIN, PATH and `npm prefix -g`/bin. \
             Install it with `npm install -g azurite` (CI installs it), point AZURITE_BIN at the \
             azurite-blob executable, or set TANDEM_SKIP_AZURITE=1 to skip this test."
        );
    };
    let port = free_port();
    let args = move |dir: &Path| {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("azurite data dir");
        [
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &data.to_string_lossy(),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            // No phoning home from tests (and this machine has no route out anyway).
            "--disableTelemetry",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    Ok(spawn("azurite", &bin, args, port))
}

/// Starts moto's S3 server on a free port, or explains why it cannot.
pub fn start_moto() -> Result<Emulator, String> {
    if env_flag("TANDEM_SKIP_MOTO") {
        return Err("TANDEM_SKIP_MOTO=1: skipping the S3 (moto) conformance run".into());
    }
    let Some(bin) = find_moto() else {
        panic!(
            "moto_server not found: looked at $TANDEM_VENV/bin/moto_server, PATH and \
             ~/.cache/tandem-venv/bin/moto_server. Install it with `pip install 'moto[server]'` \
             (into $TANDEM_VENV; CI installs it), or set TANDEM_SKIP_MOTO=1 to skip this test."
        );
    };
    let port = free_port();
    let args = move |_: &Path| {
        vec![
            "-H".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            port.to_string(),
        ]
    };
    Ok(spawn("moto", &bin, args, port))
}

/// A minimal HTTP/1.1 request on loopback; returns the status code and the body text. The
/// tests only need it to create a container or bucket, which object_store cannot do.
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to emulator");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("malformed HTTP response: {text:?}"));
    (status, text)
}

/// Creates a blob container in Azurite with a Shared Key signed request
/// (https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key).
pub async fn azurite_create_container(port: u16, container: &str) {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2023-11-03";
    let path = format!("/{AZURITE_ACCOUNT}/{container}");
    // VERB, then 11 standard headers (all empty: Content-Length is omitted when 0),
    // then the canonicalized x-ms-* headers and resource.
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(string_to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let headers = vec![
        ("x-ms-date".to_string(), date),
        ("x-ms-version".to_string(), version.to_string()),
        (
            "Authorization".to_string(),
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        ),
    ];
    let (status, text) = http_request(port, "PUT", &format!("{path}?restype=container"), &headers).await;
    assert_eq!(
        status, 201,
        "creating Azurite container {container} failed: {text}"
    );
}

/// Creates a bucket in moto (which does not check signatures).
pub async fn moto_create_bucket(port: u16, bucket: &str) {
    let (status, text) = http_request(port, "PUT", &format!("/{bucket}"), &[]).await;
    assert_eq!(status, 200, "creating moto bucket {bucket} failed: {text}");
}
