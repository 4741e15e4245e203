//! The `tandem` command. Thin by design: it parses arguments and calls the
//! libraries — `tandem-server` to run a region, `tandem-gateway` to run the
//! deployment's global endpoint, `tandem-client` (the HTTP API users call)
//! for everything else.
//!
//! Exit codes: 0 success; 1 failure; 2 usage error; 3 not found; 4 already
//! exists or conflicting state; 5 server unreachable.

mod gateway;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use tandem_client::{ClientError, TandemClient};
use tandem_core::model::Workspace;
use tandem_server::ServerConfig;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "A self-hosted ML workspace server with business continuity built in"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one region's server (MLflow REST API, artifact proxy, Tandem API).
    Server(ServerArgs),
    /// Create, inspect, list and delete workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Print the journal as newline-delimited JSON.
    Journal(JournalArgs),
    /// Start a whole deployment on this host (regions and gateway as separate processes).
    Up(up::UpArgs),
    /// Run the deployment's global endpoint: proxies every request to the
    /// primary region (reads to any healthy region where the class allows).
    Gateway(gateway::GatewayArgs),
    /// Show the deployment: each region's role, epoch, position, lag and RPO.
    Status(ClientArgs),
    /// List conflicts between concurrent writes in hot-hot classes, with both
    /// versions and how each was resolved.
    Conflicts(ConflictsArgs),
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
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], env = "TANDEM_LOG_FORMAT")]
    log_format: String,
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// The server to talk to.
    #[arg(
        long,
        env = "TANDEM_URL",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    url: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
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
        #[arg(long)]
        deleted: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a workspace.
    Delete {
        name: String,
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
    // Die quietly when stdout is closed (`tandem status | head`), as Unix tools do.
    // SAFETY: restoring the default disposition of a signal at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
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
            ExitCode::from(exit_code(&error))
        }
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Api { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => 3,
        Some(ClientError::Api { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => 4,
        Some(ClientError::Transport { .. }) => 5,
        _ => 1,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => run_server(args).await,
        Command::Workspace(command) => run_workspace(command).await,
        Command::Up(args) => up::run(args, shutdown_signal()).await,
        Command::Gateway(args) => gateway::run(args, shutdown_signal()).await,
        Command::Status(args) => {
            let status = TandemClient::new(&args.url)?.regions().await?;
            print_status(&status, args.json)
        }
        Command::Conflicts(args) => {
            let conflicts = TandemClient::new(&args.client.url)?
                .conflicts(args.workspace.as_deref(), Some(args.limit))
                .await?;
            print_conflicts(&conflicts, args.client.json)
        }
        Command::Journal(args) => {
            let client = TandemClient::new(&args.client.url)?;
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

fn init_logging(format: &str) {
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
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tandem_server::serve(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
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
    println!(
        "\n{:<10} {:<10} {:<26} {:>9} {:>11} {:>10} {:>11}",
        "REGION", "ROLE", "URL", "APPLIED", "LAG RECS", "LAG BYTES", "LAG SECS"
    );
    for region in status["regions"].as_array().into_iter().flatten() {
        let applied = region
            .get("applied")
            .or_else(|| region.get("journal_head"))
            .cloned()
            .unwrap_or_default();
        println!(
            "{:<10} {:<10} {:<26} {:>9} {:>11} {:>10} {:>11}",
            text(&region["name"]),
            text(&region["role"]),
            text(&region["url"]),
            text(&applied),
            text(region.get("lag_records").unwrap_or(&serde_json::Value::Null)),
            text(region.get("lag_bytes").unwrap_or(&serde_json::Value::Null)),
            text(region.get("lag_seconds").unwrap_or(&serde_json::Value::Null)),
        );
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
    Ok(())
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
        println!(
            "{}\t{}\t{}",
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
            client,
        } => {
            let workspace = TandemClient::new(&client.url)?
                .create_workspace(&name, &description)
                .await?;
            print_workspace(&workspace, client.json)
        }
        WorkspaceCommand::Get { name, client } => {
            let workspace = TandemClient::new(&client.url)?.get_workspace(&name).await?;
            print_workspace(&workspace, client.json)
        }
        WorkspaceCommand::Delete { name, client } => {
            let workspace = TandemClient::new(&client.url)?.delete_workspace(&name).await?;
            print_workspace(&workspace, client.json)
        }
        WorkspaceCommand::List { deleted, client } => {
            let workspaces = TandemClient::new(&client.url)?.list_workspaces(deleted).await?;
            if client.json {
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
