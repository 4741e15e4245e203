//! The `tandem` command. Thin by design: it parses arguments and calls the
//! libraries — `tandem-server` to run a region, `tandem-gateway` to run the
//! deployment's global endpoint, `tandem-client` (the HTTP API users call)
//! for everything else.
//!
//! Exit codes: 0 success; 1 failure; 2 usage error; 3 not found; 4 already
//! exists or conflicting state; 5 server unreachable.
//!
//! Client commands find their server through `config`: `--url`, else
//! `TANDEM_URL`, else the nearest `.tandem.toml` or `~/.tandem/config.toml`,
//! else `http://127.0.0.1:5000`.

mod access;
mod backup;
mod config;
mod deleted;
mod divergence;
mod doctor;
mod failover;
mod files;
mod gateway;
mod progress;
mod restore;
mod transfer;
mod up;
mod verify;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use tandem_client::{ClientError, TandemClient};
use tandem_core::model::Workspace;
use tandem_server::ServerConfig;

/// How client commands find their server, shown by `tandem --help`.
const CONFIG_HELP: &str = "\
Finding the server: client commands (status, doctor, conflicts, workspace, journal,
failover, divergence, backup, files) talk to the URL given by, in order of precedence:
  1. --url URL
  2. the TANDEM_URL environment variable
  3. `url` in the client config file: the nearest .tandem.toml in the working directory
     or one of its parents, else ~/.tandem/config.toml
  4. http://127.0.0.1:5000
The config file is TOML with two keys, both optional:
  url = \"http://127.0.0.1:5080\"   # the server or, normally, the deployment's gateway
  json = true                      # print JSON by default (--json=false to override)
`tandem up --dir DIR` writes DIR/.tandem.toml pointing at its gateway.

Credentials: client commands send --token TOKEN, else $TANDEM_TOKEN, else
$MLFLOW_TRACKING_TOKEN, else HTTP Basic from $MLFLOW_TRACKING_USERNAME and
$MLFLOW_TRACKING_PASSWORD, else `token = \"…\"` of the config file (`tandem login` and
`tandem up` write it; the file is then readable by its owner only).

Exit codes: 0 success, 1 failure, 2 usage error, 3 not found, 4 already exists or
conflicting state, 5 server unreachable, 6 not authenticated or not allowed.";

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "A self-hosted ML workspace server with business continuity built in",
    after_help = CONFIG_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one region's server (MLflow REST API, artifact proxy, Tandem API).
    Server(ServerArgs),
    /// Create, inspect, list, update, delete, recover and purge workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// List, recover and purge the deleted items of a workspace.
    #[command(subcommand)]
    Deleted(deleted::DeletedCommand),
    /// Print the journal as newline-delimited JSON.
    Journal(JournalArgs),
    /// Start a whole deployment on this host (an embedded witness, the regions and a gateway as
    /// separate processes) and point the CLI at it (DIR/.tandem.toml).
    Up(up::UpArgs),
    /// Run the deployment's global endpoint: proxies every request to the
    /// primary region (reads to any healthy region where the class allows).
    Gateway(gateway::GatewayArgs),
    /// Show the deployment: each region's role, epoch, position, lag and RPO.
    Status(ClientArgs),
    /// Would a failover succeed now? Checks every region (reachable and ready,
    /// witness, clocks, lag and RPO, storage, backups, deployment files,
    /// replication secret, TLS) and says pass, warn or fail with the reason and
    /// the fix; exits 1 when a check fails.
    Doctor(doctor::DoctorArgs),
    /// List conflicts between concurrent writes in hot-hot classes, with both
    /// versions and how each was resolved.
    Conflicts(ConflictsArgs),
    /// Make another region the primary: planned (zero loss, through the
    /// current primary) or, with --force, taken by the target when the
    /// primary is gone.
    Failover(failover::FailoverArgs),
    /// Prove the replicas equal: every region fingerprints each workspace's
    /// content (rows and stored bytes) and the differences are named. Exit 1
    /// when anything differs or could not be compared.
    Verify(verify::VerifyArgs),
    /// Inspect and re-apply records a failover voided: writes of a deposed
    /// primary that no other region had, kept in its quarantine.
    Divergence(divergence::DivergenceArgs),
    /// Run the embedded witness that holds primary leadership for a
    /// deployment on one host (`[witness] kind = "embedded"`).
    Witness(witness::WitnessArgs),
    /// Back up workspaces to any object-store URL, list, verify and restore backups.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// The workspace file share (upload, list, download, delete) and salvage
    /// of a deleted or purged workspace's files.
    #[command(subcommand)]
    Files(files::FilesCommand),
    /// Store a token in the client config file (after checking it works),
    /// or create one from a username and password.
    Login(access::LoginArgs),
    /// Who the client's credentials authenticate as, and their roles.
    Whoami(ClientArgs),
    /// Users and service principals (admins).
    #[command(subcommand)]
    User(access::UserCommand),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// Role assignments (principal, role, scope): Reader, Contributor, Owner
    /// in a workspace or everywhere; Operator and Admin for the deployment.
    #[command(subcommand)]
    Role(access::RoleCommand),
    /// Who did what and when, from the journal: deletes, purges, restores,
    /// failovers, role and token changes, every write.
    Audit(access::AuditArgs),
    /// Copy everything an MLflow tracking server (or another Tandem
    /// workspace) holds into a workspace: experiments, runs with complete
    /// histories, artifacts (SHA-256 checked), logged models, registered
    /// models with their version numbers. Idempotent, resumable,
    /// incremental; exits 1 when an object failed (each one listed).
    Import(transfer::ImportArgs),
    /// Write a workspace (or some of its experiments and registered models)
    /// as a bundle on a file system or object store: versioned records and
    /// content-addressed blobs under a manifest with counts and digests, for
    /// `tandem import --from <bundle URL>` anywhere.
    Export(transfer::ExportArgs),
    /// Keep a workspace a copy of a source: `import` again and again (only
    /// what changed is copied), once or every --watch seconds.
    Sync(transfer::SyncArgs),
    /// Move experiments (with their runs, logged models and artifacts) and
    /// registered models (with their versions) to another workspace of the
    /// deployment, online, in one transaction; moving back undoes it.
    Move(transfer::MoveArgs),
}

#[derive(Args)]
struct ConflictsArgs {
    /// Only this workspace's conflicts.
    #[arg(long)]
    workspace: Option<String>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct ServerArgs {
    /// TOML config file; flags and TANDEM_* variables override it.
    #[arg(long, env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long)]
    listen: Option<String>,
    /// Data directory for the embedded defaults (SQLite and local artifacts).
    #[arg(long)]
    data: Option<PathBuf>,
    /// This region's name [default: local].
    #[arg(long)]
    region: Option<String>,
    /// Metadata database URL: sqlite://PATH or postgres://…
    #[arg(long)]
    metadata_url: Option<String>,
    /// Artifact storage URL: file://, memory://, s3://, az://, gs://
    #[arg(long)]
    artifacts_url: Option<String>,
    /// Deployment file: join the regions it declares (replication).
    #[arg(long)]
    deployment: Option<PathBuf>,
    /// Require authentication (Basic or Bearer) on every route but health
    /// and readiness; bootstraps an `admin` user on a fresh deployment
    /// [env: TANDEM_AUTH].
    #[arg(long)]
    auth: bool,
    /// Serve without authentication on a non-loopback address (refused
    /// otherwise) [env: TANDEM_INSECURE_NO_AUTH].
    #[arg(long, conflicts_with = "auth")]
    insecure_no_auth: bool,
    /// Where the bootstrap admin's token is written (or read from, if it
    /// holds one) [default: DATA/admin.token; env: TANDEM_ADMIN_TOKEN_FILE].
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    /// [env: TANDEM_TLS_CERT].
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key [env: TANDEM_TLS_KEY].
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A PEM CA to trust for the other regions' and the witness's https://
    /// URLs [env: TANDEM_CA_FILE; default: the deployment file's ca_file].
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Serve MLflow's own web UI from this build directory at /mlflow/ (the
    /// mlflow/server/js/build directory of an installed mlflow package)
    /// [env: TANDEM_MLFLOW_UI].
    #[arg(long, value_name = "DIR")]
    mlflow_ui: Option<PathBuf>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], env = "TANDEM_LOG_FORMAT")]
    log_format: String,
}

/// The flags every client command takes; see [`ClientArgs::resolve`].
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct ClientArgs {
    /// The server or gateway to talk to [default: $TANDEM_URL, else `url` of
    /// the nearest .tandem.toml or ~/.tandem/config.toml, else http://127.0.0.1:5000].
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// Print JSON instead of text [default: `json` of the config file, else
    /// false]; --json=false prints text whatever the file says.
    #[arg(
        long,
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    json: Option<bool>,
    /// API token to authenticate with [default: $TANDEM_TOKEN, else
    /// $MLFLOW_TRACKING_TOKEN, else $MLFLOW_TRACKING_USERNAME and
    /// $MLFLOW_TRACKING_PASSWORD, else `token` of the config file].
    #[arg(long, global = true, value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM CA to trust for an https:// server [env: TANDEM_CA_FILE].
    #[arg(long, global = true, value_name = "PATH", env = "TANDEM_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// Where a client command sends its requests and how it prints.
pub(crate) struct Target {
    pub client: TandemClient,
    /// What the client authenticates with (for commands that also speak
    /// to the server through another HTTP client, as `import` does).
    pub credentials: Option<tandem_client::Credentials>,
    pub url: String,
    pub url_source: config::UrlSource,
    pub json: bool,
}

impl ClientArgs {
    /// Applies the precedence `--url` > `TANDEM_URL` > config file > default.
    pub(crate) fn resolve(&self) -> anyhow::Result<Target> {
        let environment = config::Environment::current()?;
        // A broken config file is the user's to fix, like a bad flag: exit 2.
        let resolved = config::resolve(self.url.as_deref(), self.json, &environment)
            .map_err(|error| Refusal::Usage(format!("{error:#}")))?;
        let _ = URL_IN_USE.set(format!("{} (from {})", resolved.url, resolved.url_source));
        let credentials = match &self.token {
            Some(token) => Some(tandem_client::Credentials::Token(token.trim().to_string())),
            None => resolved.credentials.clone(),
        };
        let ca = match &self.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|error| {
                Refusal::Usage(format!("cannot read the CA file {}: {error}", path.display()))
            })?),
            None => None,
        };
        let client = TandemClient::with_options(&resolved.url, credentials.as_ref(), ca.as_deref()).map_err(
            |error| {
                Refusal::Usage(format!(
                    "invalid server URL '{}' (from {}): {error}",
                    resolved.url, resolved.url_source
                ))
            },
        )?;
        Ok(Target {
            client,
            credentials,
            url: resolved.url,
            url_source: resolved.url_source,
            json: resolved.json,
        })
    }
}

/// The server URL a client command resolved and where it came from, said
/// when the server cannot be reached: the fix is often in the config file.
static URL_IN_USE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A failure the CLI itself decides, with the exit code it deserves.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Exit 2: the command cannot mean anything.
    Usage(String),
    /// Exit 3.
    NotFound(String),
    /// Exit 4: something in the way (a local file that exists).
    Conflict(String),
    /// Exit 5.
    Unreachable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Usage(message)
            | Refusal::NotFound(message)
            | Refusal::Conflict(message)
            | Refusal::Unreachable(message) => formatter.write_str(message),
        }
    }
}

impl std::error::Error for Refusal {}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Days a deleted item (or the deleted workspace) is kept before it
        /// is purged, 1 to 90 (default 14).
        #[arg(long)]
        retention_days: Option<i64>,
        /// Turn purge protection on: nothing is purged before its retention
        /// ends, and it cannot be turned off.
        #[arg(long)]
        purge_protection: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one workspace.
    Get {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List workspaces.
    List {
        /// List deleted workspaces instead.
        #[arg(long, conflicts_with = "all")]
        deleted: bool,
        /// List active and deleted workspaces.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a workspace (softly: kept for its retention, recoverable).
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Recover a deleted workspace (by name or id).
    Recover {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Purge a deleted workspace for good (refused under purge protection
    /// before its retention ends); its artifacts are removed from storage
    /// unless --keep-artifacts (its files always stay).
    Purge {
        name: String,
        /// Leave the workspace's artifacts in storage.
        #[arg(long)]
        keep_artifacts: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a workspace's description, retention or purge protection.
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// 1 to 90.
        #[arg(long)]
        retention_days: Option<i64>,
        /// Turn purge protection on (it cannot be turned off).
        #[arg(long)]
        purge_protection: bool,
        /// Bytes of artifacts and files the workspace may hold (`10GiB`,
        /// `500MB`, `1048576`), or `none`; uploads past it are refused (507).
        #[arg(long, value_name = "SIZE")]
        storage_quota: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
struct JournalArgs {
    /// Print records after this position.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// Only this workspace's records.
    #[arg(long)]
    workspace: Option<String>,
    /// At most this many records.
    #[arg(long)]
    limit: Option<i64>,
    #[command(flatten)]
    client: ClientArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Client commands die quietly when stdout is closed (`tandem status |
    // head`), as Unix tools do. Long-running processes keep Rust's default
    // (SIGPIPE ignored): a peer that hangs up mid-response must cost one
    // connection an EPIPE, never the whole server (a region died of
    // SIGPIPE when a client closed a streamed response).
    let serves = matches!(
        cli.command,
        Command::Server(_) | Command::Up(_) | Command::Gateway(_) | Command::Witness(_)
    );
    if !serves {
        // SAFETY: restoring the default disposition of a signal at start-up,
        // before any thread is spawned.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            let code = exit_code(&error);
            if code == 5 {
                if let Some(url) = URL_IN_USE.get() {
                    eprintln!(
                        "note: the server URL in use is {url}; see `tandem --help` for how it is found"
                    );
                }
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(refusal) = error.downcast_ref::<Refusal>() {
        return match refusal {
            Refusal::Usage(_) => 2,
            Refusal::NotFound(_) => 3,
            Refusal::Conflict(_) => 4,
            Refusal::Unreachable(_) => 5,
        };
    }
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Api { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => 3,
        Some(ClientError::Api { code, .. })
            if code == "RESOURCE_ALREADY_EXISTS" || code == "INVALID_STATE" =>
        {
            4
        }
        Some(ClientError::Transport { .. }) => 5,
        Some(ClientError::Api { code, .. }) if code == "UNAUTHENTICATED" => 6,
        // PERMISSION_DENIED is also what a secondary answers a write with
        // (MLflow's client must not retry it): only the gate's refusal is 6.
        Some(ClientError::Api { code, message, .. })
            if code == "PERMISSION_DENIED" && message.starts_with("Permission denied:") =>
        {
            6
        }
        _ => 1,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => run_server(args).await,
        Command::Workspace(command) => run_workspace(command).await,
        Command::Deleted(command) => deleted::run(command).await,
        Command::Up(args) => up::run(args, shutdown_signal()).await,
        Command::Gateway(args) => gateway::run(args, shutdown_signal()).await,
        Command::Witness(args) => witness::run(args, shutdown_signal()).await,
        Command::Failover(args) => failover::run(args).await,
        Command::Divergence(args) => divergence::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Backup(command) => backup::run(command).await,
        Command::Files(command) => files::run(command).await,
        Command::Import(args) => transfer::import(args).await,
        Command::Export(args) => transfer::export(args).await,
        Command::Sync(args) => transfer::sync(args).await,
        Command::Move(args) => transfer::move_objects(args).await,
        Command::Login(args) => access::login(args).await,
        Command::Whoami(args) => access::whoami(args).await,
        Command::User(command) => access::run_user(command).await,
        Command::Token(command) => access::run_token(command).await,
        Command::Role(command) => access::run_role(command).await,
        Command::Audit(args) => access::audit(args).await,
        Command::Status(args) => {
            let target = args.resolve()?;
            let status = target.client.regions().await?;
            print_status(&status, target.json)
        }
        Command::Conflicts(args) => {
            let target = args.client.resolve()?;
            let conflicts = target
                .client
                .conflicts(args.workspace.as_deref(), Some(args.limit))
                .await?;
            print_conflicts(&conflicts, target.json)
        }
        Command::Journal(args) => {
            // Always NDJSON: one record a line is the journal's text form.
            let client = args.client.resolve()?.client;
            let mut records = client
                .journal(args.after, args.workspace.as_deref(), args.limit)
                .await?;
            while let Some(record) = records.next().await {
                println!("{}", serde_json::to_string(&record?)?);
            }
            Ok(())
        }
    }
}

/// A serving process takes every file descriptor it is allowed: with the
/// common soft limit of 1,024, a thousand idle sockets would otherwise
/// exhaust it (the connection cap is fitted under the limit either way).
pub(crate) fn raise_fd_limit() {
    if let Err(error) = tandem_http::raise_nofile_limit() {
        tracing::warn!(%error, "could not raise the open-file limit");
    }
}

pub(crate) fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: `tandem up` writes each region's log to a file.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    raise_fd_limit();
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    config.apply_env(|name| std::env::var(name).ok())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data = Some(data);
    }
    if let Some(region) = args.region {
        config.region = region;
    }
    if let Some(url) = args.metadata_url {
        config.metadata_url = Some(url);
        config.metadata_url_file = None;
    }
    if let Some(url) = args.artifacts_url {
        config.artifacts_url = Some(url);
    }
    if let Some(path) = args.deployment {
        config.deployment = Some(path);
    }
    if args.auth {
        config.auth = true;
    }
    if args.insecure_no_auth {
        config.insecure_no_auth = true;
    }
    if let Some(path) = args.admin_token_file {
        config.admin_token_file = Some(path);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
    }
    if let Some(path) = args.ca_file {
        config.ca_file = Some(path);
    }
    if let Some(path) = args.mlflow_ui {
        config.mlflow_ui = Some(path);
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tandem_server::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("interrupted; shutting down"),
        _ = terminate => tracing::info!("terminated; shutting down"),
    }
}

fn print_status(status: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    println!(
        "deployment {}   seen from {} ({})   primary {}   epoch {}",
        text(&status["deployment"]),
        text(&status["region"]),
        text(&status["role"]),
        text(&status["primary"]),
        text(&status["epoch"])
    );
    if status["ready"] == false {
        let missing: Vec<String> = status["readiness"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|check| check["ok"] == false)
            .map(|check| format!("{}: {}", text(&check["name"]), text(&check["detail"])))
            .collect();
        println!("{} is not ready: {}", text(&status["region"]), missing.join("; "));
    }
    println!(
        "\n{:<10} {:<10} {:<13} {:<26} {:>9} {:>11} {:>10} {:>11}",
        "REGION", "ROLE", "STATE", "URL", "APPLIED", "LAG RECS", "LAG BYTES", "LAG SECS"
    );
    // Links seen from the answering region: the journals it follows.
    let following: Vec<&serde_json::Value> = status["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|region| region["this_region"] == true)
        .flat_map(|region| region["following"].as_array().into_iter().flatten())
        .collect();
    for region in status["regions"].as_array().into_iter().flatten() {
        let applied = region
            .get("applied")
            .or_else(|| region.get("journal_head"))
            .cloned()
            .unwrap_or_default();
        println!(
            "{:<10} {:<10} {:<13} {:<26} {:>9} {:>11} {:>10} {:>11}",
            text(&region["name"]),
            text(&region["role"]),
            region_state(status, region, &following),
            text(&region["url"]),
            text(&applied),
            text(region.get("lag_records").unwrap_or(&serde_json::Value::Null)),
            text(region.get("lag_bytes").unwrap_or(&serde_json::Value::Null)),
            text(region.get("lag_seconds").unwrap_or(&serde_json::Value::Null)),
        );
    }
    // The answering region's replicas, when several share its database.
    let replicas: Vec<&serde_json::Value> = status["replicas"].as_array().into_iter().flatten().collect();
    if status["replica"]["shared_database"] == true && !replicas.is_empty() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0);
        println!(
            "\n{:<18} {:<9} {:<30} {:>9}",
            format!("REPLICAS OF {}", text(&status["region"])),
            "DUTIES",
            "URL",
            "SEEN"
        );
        for replica in replicas {
            let seen = replica["seen_at"]
                .as_i64()
                .map(|at| format!("{:.1}s ago", (now - at).max(0) as f64 / 1000.0))
                .unwrap_or_else(|| "-".to_string());
            let mut id = text(&replica["replica"]);
            if replica["replica"] == status["replica"]["id"] {
                id.push_str(" *");
            }
            println!(
                "{:<18} {:<9} {:<30} {:>9}",
                id,
                if replica["holds_duties"] == true {
                    "holds"
                } else {
                    "-"
                },
                text(&replica["url"]),
                seen
            );
        }
    }
    println!(
        "\n{:<10} {:<9} {:<5} {:>8} {:>8} {:>9}",
        "CLASS", "LEVEL", "SYNC", "MAX RPO", "RPO", "REFUSING"
    );
    for class in status["classes"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:<9} {:<5} {:>8} {:>8} {:>9}",
            text(&class["class"]),
            text(&class["level"]),
            text(&class["sync"]),
            text(&class["max_rpo_seconds"]),
            text(&class["rpo_seconds"]),
            text(&class["refusing_writes"])
        );
    }
    if let Ok(report) =
        serde_json::from_value::<tandem_client::FailoverReport>(status["last_failover"].clone())
    {
        println!(
            "\nlast failover run by {}: {}",
            text(&status["region"]),
            failover::describe(&report)
        );
    }
    Ok(())
}

/// What the answering region knows of `region` now: its own readiness, a
/// secondary's replication stream from it, or its stream to a source.
fn region_state(
    status: &serde_json::Value,
    region: &serde_json::Value,
    following: &[&serde_json::Value],
) -> &'static str {
    if region["this_region"] == true {
        return match status["ready"].as_bool() {
            Some(true) => "ready",
            Some(false) => "not ready",
            None => "-",
        };
    }
    if let Some(streaming) = region["streaming"].as_bool() {
        return if streaming { "streaming" } else { "not streaming" };
    }
    match following.iter().find(|state| state["source"] == region["name"]) {
        Some(state) if state["connected"] == true => "connected",
        Some(_) => "unreachable",
        None => "-",
    }
}

fn print_conflicts(conflicts: &[tandem_core::merge::Conflict], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(conflicts)?);
        return Ok(());
    }
    if conflicts.is_empty() {
        println!("no conflicts");
        return Ok(());
    }
    let change = |side: &tandem_core::merge::ConflictSide| {
        side.change
            .as_ref()
            .map(|change| serde_json::to_string(change).unwrap_or_default())
            .unwrap_or_else(|| "(no longer in the journal)".to_string())
    };
    for conflict in conflicts {
        println!(
            "{}  {}  {}  ({})",
            conflict.id, conflict.workspace_id, conflict.register, conflict.resolution
        );
        println!(
            "  winner  {}#{}  {}",
            conflict.winner.origin_region,
            conflict.winner.origin_seq,
            change(&conflict.winner)
        );
        println!(
            "  loser   {}#{}  {}",
            conflict.loser.origin_region,
            conflict.loser.origin_seq,
            change(&conflict.loser)
        );
    }
    Ok(())
}

fn print_workspace(workspace: &Workspace, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(workspace)?);
    } else {
        let quota = workspace
            .storage_quota
            .map(|bytes| format!("\tquota {}", bytesize::ByteSize::b(bytes.max(0) as u64)))
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}{quota}",
            workspace.name,
            workspace.workspace_id,
            workspace.lifecycle_stage.as_str()
        );
    }
    Ok(())
}

async fn run_workspace(command: WorkspaceCommand) -> anyhow::Result<()> {
    match command {
        WorkspaceCommand::Create {
            name,
            description,
            retention_days,
            purge_protection,
            client,
        } => {
            let target = client.resolve()?;
            let workspace = target
                .client
                .create_workspace_with(
                    &name,
                    &description,
                    retention_days,
                    purge_protection.then_some(true),
                )
                .await?;
            print_workspace(&workspace, target.json)
        }
        WorkspaceCommand::Recover { name, client } => deleted::recover_workspace(&name, &client).await,
        WorkspaceCommand::Purge {
            name,
            keep_artifacts,
            client,
        } => deleted::purge_workspace(&name, keep_artifacts, &client).await,
        WorkspaceCommand::Update {
            name,
            description,
            retention_days,
            purge_protection,
            storage_quota,
            client,
        } => {
            deleted::update_workspace(
                &name,
                description.as_deref(),
                retention_days,
                purge_protection,
                storage_quota.as_deref(),
                &client,
            )
            .await
        }
        WorkspaceCommand::Get { name, client } => {
            let target = client.resolve()?;
            let workspace = target.client.get_workspace(&name).await?;
            print_workspace(&workspace, target.json)
        }
        WorkspaceCommand::Delete { name, client } => {
            let target = client.resolve()?;
            let workspace = target.client.delete_workspace(&name).await?;
            print_workspace(&workspace, target.json)
        }
        WorkspaceCommand::List { deleted, all, client } => {
            let target = client.resolve()?;
            let workspaces = if all {
                target.client.list_all_workspaces().await?
            } else {
                target.client.list_workspaces(deleted).await?
            };
            if target.json {
                println!("{}", serde_json::to_string_pretty(&workspaces)?);
            } else {
                println!("NAME\tID\tSTATE");
                for workspace in &workspaces {
                    print_workspace(workspace, false)?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(arguments: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tandem").chain(arguments.iter().copied()))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn failover_takes_a_target_and_force() {
        let Command::Failover(args) = parse(&["failover", "--to", "westus"]).unwrap().command else {
            panic!("not failover")
        };
        assert_eq!(args.to, "westus");
        assert!(!args.force);
        assert_eq!(args.client.url, None);
        assert_eq!(args.client.json, None);

        let Command::Failover(args) = parse(&[
            "failover",
            "--to",
            "westus",
            "--force",
            "--json",
            "--url",
            "http://g:1",
        ])
        .unwrap()
        .command
        else {
            panic!("not failover")
        };
        assert!(args.force);
        assert_eq!(args.client.json, Some(true));
        assert_eq!(args.client.url.as_deref(), Some("http://g:1"));

        let missing_target = parse(&["failover", "--force"]).err().unwrap();
        assert_eq!(
            missing_target.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(missing_target.exit_code(), 2);
    }

    #[test]
    fn json_can_be_turned_off_explicitly_and_never_swallows_an_argument() {
        let Command::Status(args) = parse(&["status", "--json=false"]).unwrap().command else {
            panic!("not status")
        };
        assert_eq!(args.json, Some(false));
        let Command::Divergence(args) = parse(&["divergence", "show", "--json", "eastus-12"])
            .unwrap()
            .command
        else {
            panic!("not divergence")
        };
        assert_eq!(
            args.command,
            divergence::DivergenceCommand::Show {
                id: "eastus-12".to_string()
            }
        );
        assert_eq!(args.client.json, Some(true));
        assert!(parse(&["status", "--json=maybe"]).is_err());
    }

    #[test]
    fn divergence_has_list_show_and_apply_with_client_flags_anywhere() {
        let Command::Divergence(args) = parse(&["divergence", "list"]).unwrap().command else {
            panic!("not divergence")
        };
        assert_eq!(args.command, divergence::DivergenceCommand::List);
        let Command::Divergence(args) = parse(&["divergence", "--url", "http://g:1", "apply", "eastus-7"])
            .unwrap()
            .command
        else {
            panic!("not divergence")
        };
        assert_eq!(
            args.command,
            divergence::DivergenceCommand::Apply {
                id: "eastus-7".to_string()
            }
        );
        assert_eq!(args.client.url.as_deref(), Some("http://g:1"));
        let Command::Divergence(args) = parse(&["divergence", "apply", "eastus-7", "--url", "http://g:2"])
            .unwrap()
            .command
        else {
            panic!("not divergence")
        };
        assert_eq!(args.client.url.as_deref(), Some("http://g:2"));
        assert!(parse(&["divergence", "show"]).is_err());
        assert!(parse(&["divergence"]).is_err());
    }

    #[test]
    fn witness_takes_an_address_and_a_data_directory() {
        let Command::Witness(args) = parse(&["witness", "--listen", "127.0.0.1:7000", "--data", "/tmp/w"])
            .unwrap()
            .command
        else {
            panic!("not witness")
        };
        assert_eq!(args.listen, "127.0.0.1:7000");
        assert_eq!(args.data, PathBuf::from("/tmp/w"));
    }

    #[test]
    fn up_takes_a_witness_kind_and_etcd_endpoints() {
        let Command::Up(args) = parse(&["up"]).unwrap().command else {
            panic!("not up")
        };
        assert_eq!(args.witness, None);
        let Command::Up(args) = parse(&["up", "--witness", "none"]).unwrap().command else {
            panic!("not up")
        };
        assert_eq!(args.witness, Some(up::WitnessChoice::Without));
        let Command::Up(args) = parse(&[
            "up",
            "--witness",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:2379,http://127.0.0.1:22379",
        ])
        .unwrap()
        .command
        else {
            panic!("not up")
        };
        assert_eq!(args.witness, Some(up::WitnessChoice::Etcd));
        assert_eq!(
            args.etcd_endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        // etcd needs endpoints; unknown kinds are refused.
        assert!(parse(&["up", "--witness", "etcd"]).is_err());
        assert!(parse(&["up", "--witness", "zookeeper"]).is_err());
    }

    #[test]
    fn the_help_documents_how_the_server_is_found() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(".tandem.toml"), "{help}");
        assert!(help.contains("~/.tandem/config.toml"), "{help}");
        assert!(help.contains("TANDEM_URL"), "{help}");
    }

    #[test]
    fn refusals_and_server_errors_map_to_the_documented_exit_codes() {
        let api = |code: &str| {
            anyhow::Error::from(ClientError::Api {
                status: 400,
                code: code.to_string(),
                message: String::new(),
            })
        };
        assert_eq!(exit_code(&api("RESOURCE_DOES_NOT_EXIST")), 3);
        assert_eq!(exit_code(&api("INVALID_STATE")), 4);
        assert_eq!(exit_code(&api("PERMISSION_DENIED")), 1, "a secondary's refusal");
        assert_eq!(exit_code(&api("UNAUTHENTICATED")), 6);
        let denied = anyhow::Error::from(ClientError::Api {
            status: 403,
            code: "PERMISSION_DENIED".to_string(),
            message: "Permission denied: 'bob' lacks the 'operate' permission on the deployment".to_string(),
        });
        assert_eq!(exit_code(&denied), 6);
        let unreachable = anyhow::Error::from(ClientError::Transport {
            url: "http://x".to_string(),
            message: "refused".to_string(),
        })
        .context("cannot read the deployment's regions");
        assert_eq!(exit_code(&unreachable), 5);
        assert_eq!(exit_code(&Refusal::NotFound("x".to_string()).into()), 3);
        assert_eq!(exit_code(&Refusal::Usage("x".to_string()).into()), 2);
        assert_eq!(exit_code(&Refusal::Unreachable("x".to_string()).into()), 5);
    }
}
