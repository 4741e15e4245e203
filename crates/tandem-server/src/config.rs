//! The server's configuration: one struct, every field documented, with
//! defaults, a TOML file, and environment overrides (`TANDEM_*`). Secrets can
//! be read from files (`metadata_url_file`), so they need not sit in the
//! config or the environment.
//!
//! Precedence, highest first: command-line flags, environment variables, the
//! config file, defaults. The command line applies its part in the binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting {name}: {message}")]
    Invalid { name: String, message: String },
}

/// The default largest upload: 5 GiB.
pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Settings of one region's server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Directory for the embedded defaults: `metadata.db` (SQLite) and
    /// `artifacts/`. Required unless both URLs below are given.
    pub data: Option<PathBuf>,
    /// This region's name, recorded as the origin of every local change.
    pub region: String,
    /// Metadata database: `sqlite://PATH` or `postgres://…`. Default: SQLite
    /// under `data`.
    pub metadata_url: Option<String>,
    /// A file holding `metadata_url` (for passwords); wins over `metadata_url`.
    pub metadata_url_file: Option<PathBuf>,
    /// Artifact storage: `file://`, `memory://`, `s3://`, `az://`, `gs://`.
    /// Default: `data/artifacts`.
    pub artifacts_url: Option<String>,
    /// Options for the object store (endpoint, credentials, …), using the
    /// `object_store` crate's keys.
    pub artifacts_options: HashMap<String, String>,
    /// SQLite durability: `FULL` (every acknowledged write is on disk) or
    /// `NORMAL` (faster; the last writes may be lost on power failure).
    pub sqlite_synchronous: String,
    /// Largest JSON request body, in bytes.
    pub max_json_body: usize,
    /// Largest artifact or file upload, in bytes (default 5 GiB; 0: no
    /// limit). Bigger uploads are refused and nothing of them is kept.
    pub max_artifact_size: Option<u64>,
    /// The deployment file this region belongs to (regions, pairing,
    /// continuity levels). Without one the region runs on its own.
    pub deployment: Option<PathBuf>,
    /// How long a write of a `sync = true` class waits for every secondary
    /// to confirm it before the client is told it is not acknowledged.
    pub sync_timeout_ms: u64,
    /// How this region reaches the deployment's witness, when not by the
    /// address the deployment file gives (a local proxy or a nearer etcd
    /// member): comma-separated URLs.
    pub witness_endpoints: Option<String>,
    /// Where the region's other replicas (server processes sharing its
    /// PostgreSQL database) reach this one, for the requests only the one
    /// holding the region's duties carries out (`TANDEM_ADVERTISE_URL`).
    /// Default: the address it listens on.
    pub advertise_url: Option<String>,
    /// Backup repositories requests may name (backups, restores, prune,
    /// verify), besides the one this region archives to; a URL allows what
    /// lies under it (`TANDEM_BACKUP_REPOSITORIES`, comma-separated).
    pub backup_repositories: Vec<String>,
    /// A backup repository this region archives its journal to, continuously
    /// (the deployment file's `[backup] url` when not set here).
    pub backup_url: Option<String>,
    /// How often the journal is archived, when `backup_url` is set here.
    pub archive_interval_ms: u64,
    /// How often the automatic purge looks for items past their
    /// workspace's retention, in milliseconds (default one minute).
    pub purge_interval_ms: u64,
    /// How often the garbage collector drains the queue of purged
    /// artifacts, in milliseconds.
    pub gc_interval_ms: u64,
    /// Connections served at once; more are answered 503
    /// (`TANDEM_MAX_CONNECTIONS`; lowered to fit the fd limit).
    pub max_connections: usize,
    /// Time a request head may take to arrive, and longest idle time of a
    /// keep-alive connection (`TANDEM_HEADER_TIMEOUT_MS`).
    pub header_timeout_ms: u64,
    /// Longest a request body may make no progress (`TANDEM_BODY_TIMEOUT_MS`).
    pub body_timeout_ms: u64,
    /// Require authentication on every route but liveness and readiness
    /// (`TANDEM_AUTH=1`). With no principal yet, the region that accepts
    /// writes creates the `admin` user and writes its token to
    /// `admin_token_file`.
    pub auth: bool,
    /// Serve without authentication on a non-loopback address (refused
    /// otherwise; `TANDEM_INSECURE_NO_AUTH=1`).
    pub insecure_no_auth: bool,
    /// Where the bootstrap admin's token is read from or written to
    /// (default `<data>/admin.token`; `TANDEM_ADMIN_TOKEN_FILE`). If the
    /// file already holds a token, that token becomes the admin's: every
    /// region of a deployment can be given the same file.
    pub admin_token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain and key
    /// (`TANDEM_TLS_CERT`, `TANDEM_TLS_KEY`); both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A PEM CA to trust for the other regions' and the witness's
    /// `https://` URLs, instead of the deployment file's `ca_file`
    /// (`TANDEM_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// A build of MLflow's own web UI to serve at `/mlflow/` (the
    /// `mlflow/server/js/build` directory of an installed `mlflow` package)
    /// against this region (`TANDEM_MLFLOW_UI`).
    pub mlflow_ui: Option<PathBuf>,
    /// Let clients upload large artifacts straight to S3, Azure or GCS storage
    /// (MLflow's multipart protocol; default on, as in `mlflow server`).
    /// Off (`TANDEM_DIRECT_UPLOADS=0`) when clients cannot reach the bucket:
    /// then every upload goes through the region's proxy.
    pub direct_uploads: bool,
    /// Direct uploads still open this long after creation count as
    /// abandoned (their client went away) and are aborted, their parts
    /// removed from the bucket (`TANDEM_ABANDONED_UPLOAD_AFTER_MS`; default
    /// a day). Part URLs expire no later.
    pub abandoned_upload_after_ms: u64,
    /// A regular expression every model version source must match somewhere
    /// (Rust's `regex` syntax), on top of the fixed source checks:
    /// `MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX`, as for
    /// `mlflow server`. Give every region of a deployment the same one.
    pub model_version_source_regex: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5000".to_string(),
            data: None,
            region: "local".to_string(),
            metadata_url: None,
            metadata_url_file: None,
            artifacts_url: None,
            artifacts_options: HashMap::new(),
            sqlite_synchronous: "FULL".to_string(),
            max_json_body: 16 * 1024 * 1024,
            max_artifact_size: Some(DEFAULT_MAX_ARTIFACT_SIZE),
            deployment: None,
            sync_timeout_ms: 10_000,
            witness_endpoints: None,
            advertise_url: None,
            backup_url: None,
            backup_repositories: Vec::new(),
            archive_interval_ms: 10_000,
            purge_interval_ms: 60_000,
            gc_interval_ms: 5_000,
            max_connections: 10_000,
            header_timeout_ms: 30_000,
            body_timeout_ms: 60_000,
            auth: false,
            insecure_no_auth: false,
            admin_token_file: None,
            tls_cert: None,
            tls_key: None,
            ca_file: None,
            mlflow_ui: None,
            direct_uploads: true,
            abandoned_upload_after_ms: tandem_artifacts::DEFAULT_ABANDONED_AFTER.as_millis() as u64,
            model_version_source_regex: None,
        }
    }
}

impl ServerConfig {
    /// The TLS settings, if `tls_cert` and `tls_key` are given.
    pub fn tls(&self) -> Result<Option<tandem_http::tls::Tls>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => tandem_http::tls::Tls::from_pem_files(cert, key)
                .map(Some)
                .map_err(|message| ConfigError::Invalid {
                    name: "tls".to_string(),
                    message,
                }),
            _ => Err(ConfigError::Invalid {
                name: "tls".to_string(),
                message: "give both tls_cert and tls_key (--tls-cert, --tls-key), or neither".to_string(),
            }),
        }
    }

    /// The compiled `model_version_source_regex` (an empty one is none, as
    /// for MLflow).
    pub fn model_version_source_pattern(&self) -> Result<Option<regex::Regex>, ConfigError> {
        match self
            .model_version_source_regex
            .as_deref()
            .filter(|text| !text.is_empty())
        {
            None => Ok(None),
            Some(text) => regex::Regex::new(text)
                .map(Some)
                .map_err(|error| ConfigError::Invalid {
                    name: "model_version_source_regex".to_string(),
                    message: error.to_string(),
                }),
        }
    }

    /// What the server allows its clients.
    pub fn serve_limits(&self) -> tandem_http::ServeLimits {
        tandem_http::ServeLimits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
            body_timeout: std::time::Duration::from_millis(self.body_timeout_ms),
            ..tandem_http::ServeLimits::default()
        }
    }

    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            message: error.to_string(),
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.display().to_string(),
            message: error.to_string(),
        })
    }

    /// Applies `TANDEM_*` environment variables over the file's values.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(value) = env("TANDEM_LISTEN") {
            self.listen = value;
        }
        if let Some(value) = env("TANDEM_DATA") {
            self.data = Some(PathBuf::from(value));
        }
        if let Some(value) = env("TANDEM_REGION") {
            self.region = value;
        }
        if let Some(value) = env("TANDEM_METADATA_URL") {
            self.metadata_url = Some(value);
        }
        if let Some(value) = env("TANDEM_METADATA_URL_FILE") {
            self.metadata_url_file = Some(PathBuf::from(value));
        }
        if let Some(value) = env("TANDEM_ARTIFACTS_URL") {
            self.artifacts_url = Some(value);
        }
        if let Some(value) = env("TANDEM_SYNC_TIMEOUT_MS") {
            self.sync_timeout_ms = value.parse().map_err(|_| ConfigError::Invalid {
                name: "TANDEM_SYNC_TIMEOUT_MS".to_string(),
                message: format!("'{value}' is not a number of milliseconds"),
            })?;
        }
        for (name, target) in [
            ("TANDEM_PURGE_INTERVAL_MS", &mut self.purge_interval_ms),
            ("TANDEM_GC_INTERVAL_MS", &mut self.gc_interval_ms),
            (
                "TANDEM_ABANDONED_UPLOAD_AFTER_MS",
                &mut self.abandoned_upload_after_ms,
            ),
        ] {
            if let Some(value) = env(name) {
                *target =
                    value
                        .parse()
                        .ok()
                        .filter(|ms: &u64| *ms > 0)
                        .ok_or_else(|| ConfigError::Invalid {
                            name: name.to_string(),
                            message: format!("'{value}' is not a positive number of milliseconds"),
                        })?;
            }
        }
        let mut limits = self.serve_limits();
        limits.apply_env(&env).map_err(|message| ConfigError::Invalid {
            name: "serve limits".to_string(),
            message,
        })?;
        self.max_connections = limits.max_connections;
        self.header_timeout_ms = limits.header_timeout.as_millis() as u64;
        self.body_timeout_ms = limits.body_timeout.as_millis() as u64;
        for (name, target) in [
            ("TANDEM_AUTH", &mut self.auth),
            ("TANDEM_INSECURE_NO_AUTH", &mut self.insecure_no_auth),
            ("TANDEM_DIRECT_UPLOADS", &mut self.direct_uploads),
        ] {
            if let Some(value) = env(name) {
                *target = match value.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" | "" => false,
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: name.to_string(),
                            message: format!("'{value}' is not a boolean (1/0, true/false)"),
                        })
                    }
                };
            }
        }
        if let Some(value) = env("TANDEM_ADMIN_TOKEN_FILE") {
            self.admin_token_file = Some(PathBuf::from(value));
        }
        for (name, target) in [
            ("TANDEM_TLS_CERT", &mut self.tls_cert),
            ("TANDEM_TLS_KEY", &mut self.tls_key),
            ("TANDEM_CA_FILE", &mut self.ca_file),
            ("TANDEM_MLFLOW_UI", &mut self.mlflow_ui),
        ] {
            if let Some(value) = env(name).filter(|value| !value.trim().is_empty()) {
                *target = Some(PathBuf::from(value));
            }
        }
        // MLflow's own name, so an `mlflow server`'s setting carries over.
        if let Some(value) =
            env("MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX").filter(|value| !value.is_empty())
        {
            self.model_version_source_regex = Some(value);
        }
        if let Some(value) = env("TANDEM_WITNESS_ENDPOINTS") {
            self.witness_endpoints = Some(value);
        }
        if let Some(value) = env("TANDEM_ADVERTISE_URL").filter(|value| !value.is_empty()) {
            self.advertise_url = Some(value);
        }
        if let Some(value) = env("TANDEM_BACKUP_REPOSITORIES") {
            self.backup_repositories = value
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(value) = env("TANDEM_BACKUP_URL") {
            self.backup_url = Some(value);
        }
        if let Some(value) = env("TANDEM_ARCHIVE_INTERVAL_MS") {
            self.archive_interval_ms =
                value
                    .parse()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "TANDEM_ARCHIVE_INTERVAL_MS".to_string(),
                        message: format!("'{value}' is not a positive number of milliseconds"),
                    })?;
        }
        if let Some(value) = env("TANDEM_DEPLOYMENT") {
            self.deployment = Some(PathBuf::from(value));
        }
        if let Some(value) = env("TANDEM_SQLITE_SYNCHRONOUS") {
            self.sqlite_synchronous = value;
        }
        if let Some(value) = env("TANDEM_MAX_JSON_BODY") {
            self.max_json_body = value.parse().map_err(|_| ConfigError::Invalid {
                name: "TANDEM_MAX_JSON_BODY".to_string(),
                message: format!("'{value}' is not a byte count"),
            })?;
        }
        if let Some(value) = env("TANDEM_MAX_ARTIFACT_SIZE") {
            self.max_artifact_size = Some(value.parse().map_err(|_| ConfigError::Invalid {
                name: "TANDEM_MAX_ARTIFACT_SIZE".to_string(),
                message: format!("'{value}' is not a byte count"),
            })?);
        }
        Ok(())
    }

    /// The metadata URL in effect.
    pub fn metadata_url(&self) -> Result<String, ConfigError> {
        if let Some(path) = &self.metadata_url_file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.display().to_string(),
                message: error.to_string(),
            })?;
            return Ok(text.trim().to_string());
        }
        if let Some(url) = &self.metadata_url {
            return Ok(url.clone());
        }
        match &self.data {
            Some(data) => Ok(format!(
                "sqlite://{}",
                absolute(data).join("metadata.db").display()
            )),
            None => Err(ConfigError::Invalid {
                name: "data".to_string(),
                message: "give a data directory (--data) or both --metadata-url and --artifacts-url"
                    .to_string(),
            }),
        }
    }

    /// The artifact storage URL in effect.
    pub fn artifacts_url(&self) -> Result<String, ConfigError> {
        if let Some(url) = &self.artifacts_url {
            return Ok(url.clone());
        }
        match &self.data {
            Some(data) => Ok(format!("file://{}", absolute(data).join("artifacts").display())),
            None => Err(ConfigError::Invalid {
                name: "data".to_string(),
                message: "give a data directory (--data) or both --metadata-url and --artifacts-url"
                    .to_string(),
            }),
        }
    }
}

impl ServerConfig {
    /// The local directories this region writes to, each with what lives
    /// there (`data`, `metadata` for an SQLite database, `artifacts` for
    /// `file://` storage), each directory once: the volumes whose free
    /// space the region's diagnostics report.
    pub fn local_volumes(&self) -> Vec<(String, PathBuf)> {
        let mut volumes: Vec<(String, PathBuf)> = Vec::new();
        let mut add = |label: &str, path: PathBuf| {
            if !volumes.iter().any(|(_, known)| known == &path) {
                volumes.push((label.to_string(), path));
            }
        };
        if let Some(data) = &self.data {
            add("data", absolute(data));
        }
        if let Ok(url) = self.metadata_url() {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .map(|rest| rest.split('?').next().unwrap_or(rest));
            if let Some(directory) = path.and_then(|path| Path::new(path).parent()) {
                if !directory.as_os_str().is_empty() {
                    add("metadata", absolute(directory));
                }
            }
        }
        if let Some(path) = self
            .artifacts_url()
            .ok()
            .and_then(|url| url.strip_prefix("file://").map(PathBuf::from))
        {
            add("artifacts", absolute(&path));
        }
        volumes
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_version_source_pattern_is_compiled_once_and_checked_at_start() {
        let with = |text: &str| ServerConfig {
            model_version_source_regex: Some(text.to_string()),
            ..ServerConfig::default()
        };
        assert!(ServerConfig::default()
            .model_version_source_pattern()
            .unwrap()
            .is_none());
        assert!(with("").model_version_source_pattern().unwrap().is_none());
        let pattern = with("^mlflow-artifacts:/")
            .model_version_source_pattern()
            .unwrap()
            .unwrap();
        assert!(pattern.is_match("mlflow-artifacts:/1/abc/artifacts/model"));
        assert!(!pattern.is_match("s3://bucket/model"));
        let error = with("(").model_version_source_pattern().unwrap_err();
        assert!(
            error.to_string().contains("model_version_source_regex"),
            "{error}"
        );
    }

    #[test]
    fn local_volumes_are_the_directories_written_each_once() {
        let config = ServerConfig {
            data: Some(PathBuf::from("/srv/tandem")),
            ..ServerConfig::default()
        };
        let labels: Vec<(String, PathBuf)> = config.local_volumes();
        assert_eq!(
            labels,
            vec![
                ("data".to_string(), PathBuf::from("/srv/tandem")),
                ("artifacts".to_string(), PathBuf::from("/srv/tandem/artifacts")),
            ]
        );
        let elsewhere = ServerConfig {
            metadata_url: Some("sqlite:///var/db/tandem.db?mode=rwc".to_string()),
            artifacts_url: Some("s3://bucket/tandem".to_string()),
            ..ServerConfig::default()
        };
        assert_eq!(
            elsewhere.local_volumes(),
            vec![("metadata".to_string(), PathBuf::from("/var/db"))]
        );
        let postgres = ServerConfig {
            metadata_url: Some("postgres://u@h/db".to_string()),
            artifacts_url: Some("memory://".to_string()),
            ..ServerConfig::default()
        };
        assert!(postgres.local_volumes().is_empty());
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\nregion = \"eastus\"\ndata = \"/srv/tandem\"\n",
        )
        .unwrap();
        let mut config = ServerConfig::from_file(&path).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7000");
        config
            .apply_env(|name| (name == "TANDEM_REGION").then(|| "westus".to_string()))
            .unwrap();
        assert_eq!(config.region, "westus");
        assert_eq!(config.metadata_url().unwrap(), "sqlite:///srv/tandem/metadata.db");
        assert_eq!(config.artifacts_url().unwrap(), "file:///srv/tandem/artifacts");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, "listne = \"x\"\n").unwrap();
        let error = ServerConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("listne"), "{error}");
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("url");
        std::fs::write(&secret, "postgres://u:p@h/db\n").unwrap();
        let config = ServerConfig {
            metadata_url_file: Some(secret),
            ..ServerConfig::default()
        };
        assert_eq!(config.metadata_url().unwrap(), "postgres://u:p@h/db");
    }

    #[test]
    fn uploads_are_limited_and_connections_bounded_by_default() {
        let mut config = ServerConfig::default();
        assert_eq!(config.max_artifact_size, Some(5 * 1024 * 1024 * 1024));
        let limits = config.serve_limits();
        assert_eq!(limits.max_connections, 10_000);
        assert_eq!(limits.header_timeout, std::time::Duration::from_secs(30));
        assert_eq!(limits.body_timeout, std::time::Duration::from_secs(60));
        let env = |name: &str| match name {
            "TANDEM_MAX_CONNECTIONS" => Some("50".to_string()),
            "TANDEM_BODY_TIMEOUT_MS" => Some("1500".to_string()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!((config.max_connections, config.body_timeout_ms), (50, 1500));
        let zero = |name: &str| (name == "TANDEM_HEADER_TIMEOUT_MS").then(|| "0".to_string());
        assert!(config.apply_env(zero).is_err(), "a zero timeout is refused");
    }

    #[test]
    fn retention_intervals_default_and_come_from_the_environment() {
        let mut config = ServerConfig::default();
        assert_eq!((config.purge_interval_ms, config.gc_interval_ms), (60_000, 5_000));
        config
            .apply_env(|name| (name == "TANDEM_PURGE_INTERVAL_MS").then(|| "250".to_string()))
            .unwrap();
        assert_eq!(config.purge_interval_ms, 250);
        let error = config
            .apply_env(|name| (name == "TANDEM_GC_INTERVAL_MS").then(|| "0".to_string()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("TANDEM_GC_INTERVAL_MS"), "{error}");
    }

    #[test]
    fn a_bad_number_is_a_clear_error() {
        let mut config = ServerConfig::default();
        let error = config
            .apply_env(|name| (name == "TANDEM_MAX_JSON_BODY").then(|| "lots".to_string()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("TANDEM_MAX_JSON_BODY"), "{error}");
    }
}
