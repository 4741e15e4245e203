//! `tandem up`: a whole deployment on this host. Each region is its own
//! `tandem server` process with its own data directory and port, joined by a
//! generated deployment file, and a `tandem gateway` process in front of them
//! is the tracking URI; `DIR/up.json` says where everything is. Run again
//! with the same directory, it restarts the same deployment on the same
//! ports (the gateway's is kept in `DIR/gateway.listen`), with its data.
//!
//! Leadership: by default an embedded witness (`tandem witness`, its state in
//! `DIR/witness`, its address kept in `DIR/witness.listen`) starts first, and
//! the deployment file names it in `[witness]`, so failover works out of the
//! box; `--witness etcd` names an etcd cluster run elsewhere instead, and
//! `--witness none` leaves the bootstrap primary in place for good. Once the
//! deployment file exists, it decides: edit it rather than pass flags.
//! `DIR/.tandem.toml` points the CLI, run in `DIR` or below, at the gateway.
//!
//! Start-up waits until every part is alive (`/health`) and ready
//! (`/ready`). Then `up` supervises ([`supervise`]): a part that dies is
//! reported and started again while the rest keeps running, so a killed
//! primary fails over and comes back as a secondary; a crash-looping part is
//! left down. Ctrl-C (or SIGTERM) stops every part cleanly: the gateway and
//! the regions first, the witness last.

mod parts;
mod supervise;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tandem_deployment::{FailoverMode, WitnessKind};
use tokio::process::Child;

use parts::{Kind, PartSpec, Probe};
use supervise::{Board, PartStatus, RestartPolicy, State, UpFile};

/// How long, after every part is alive, start-up waits for all of them to
/// be ready before it reports the ones that are not and goes on.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// The longest delay between two restarts of a part.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory for the deployment's files, data and logs.
    #[arg(long, default_value = "./tandem-up")]
    pub dir: PathBuf,
    /// Number of regions (2 or 3).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub regions: u8,
    /// Server processes per region (1 to 5). With more than one, a region's
    /// replicas share a PostgreSQL database (on --postgres) and its artifact
    /// directory, one holds its duties, and the gateway balances requests
    /// across them. Applies when DIR has no deployment file yet; afterwards
    /// each region's `replicas` in the file decide.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// The PostgreSQL server regions with several replicas keep their
    /// metadata on: an administrator's URL, with which `tandem up` creates
    /// a database per region (once; DIR/<region>/metadata.url keeps it).
    #[arg(
        long,
        env = "TANDEM_UP_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        value_name = "URL"
    )]
    pub postgres: String,
    /// Print up.json instead of a summary once everything answers.
    #[arg(long)]
    pub json: bool,
    /// Where primary leadership is held [default: embedded]: `embedded` (a
    /// `tandem witness` process started here), `etcd` (an etcd cluster run
    /// elsewhere, see --etcd-endpoints) or `none` (the first region stays
    /// primary; no failover). Applies when DIR has no deployment file yet.
    #[arg(long, value_enum, value_name = "KIND")]
    pub witness: Option<WitnessChoice>,
    /// The etcd cluster's client URLs, comma-separated (with --witness etcd).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "URL,...",
        required_if_eq("witness", "etcd")
    )]
    pub etcd_endpoints: Vec<String>,
    /// A part that exits this many times within --restart-window is left
    /// down instead of being started again.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub restart_limit: u32,
    /// See --restart-limit (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = duration)]
    pub restart_window: Duration,
    /// Delay before a part that died is started again; it doubles with each
    /// exit within --restart-window, up to 30s.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = duration)]
    pub restart_delay: Duration,
    /// Run the regions without authentication (anyone who reaches a port may
    /// do everything). By default every region requires credentials and an
    /// `admin` is created, its token in DIR/admin.token.
    #[arg(long)]
    pub no_auth: bool,
    /// Serve MLflow's own web UI from this build directory at the gateway's
    /// /mlflow/ (the mlflow/server/js/build directory of an installed
    /// mlflow package).
    #[arg(long, value_name = "DIR")]
    pub mlflow_ui: Option<PathBuf>,
}

fn duration(value: &str) -> Result<Duration, String> {
    tandem_deployment::parse_duration(value).map_err(|error| error.to_string())
}

/// `tandem up --witness`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessChoice {
    /// An embedded witness process started by `tandem up`.
    Embedded,
    /// An etcd cluster run elsewhere (--etcd-endpoints).
    Etcd,
    /// No witness: the bootstrap primary stays primary.
    #[value(name = "none")]
    Without,
}

impl WitnessChoice {
    fn as_str(self) -> &'static str {
        match self {
            WitnessChoice::Embedded => "embedded",
            WitnessChoice::Etcd => "etcd",
            WitnessChoice::Without => "none",
        }
    }
}

const REGION_NAMES: [&str; 3] = ["eastus", "westus", "centralus"];

/// A port on 127.0.0.1 that nothing listens on, below the kernel's
/// ephemeral range and never handed out twice by this process.
///
/// Why not `bind(0)`: the port it returns is in the ephemeral range, and
/// between choosing it and the part binding it, any outgoing connection
/// (a region calling the witness as it starts) may take it as its source
/// port; the part then fails with "address in use". Ports below the range
/// are never chosen by the kernel for outgoing connections, and a part
/// restarted on its port finds it free for the same reason.
fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = if ephemeral_start > 11024 {
        (ephemeral_start - 10000, ephemeral_start)
    } else {
        // An unusual range that starts low: fall back to the kernel's choice.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
        return Ok(listener.local_addr()?.port());
    };
    let mut given = GIVEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..500 {
        let port = low + (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port on 127.0.0.1 between {low} and {high} after 500 tries")
}

/// The `[witness]` section (and the `[failover]` comment) of a generated
/// deployment file.
fn witness_section(dir: &Path, choice: WitnessChoice, etcd_endpoints: &[String]) -> anyhow::Result<String> {
    let failover = "\n# Failover (with a witness): automatic by default, a secondary takes over once the\n\
         # primary's lease lapses and it stays unreachable for grace_period; mode = \"manual\"\n\
         # leaves it to `tandem failover`.\n# [failover]\n# mode = \"automatic\"\n# grace_period = \"5s\"\n";
    let section = match choice {
        WitnessChoice::Embedded => format!(
            "\n# Primary leadership is a lease in this witness (`tandem witness`, started by `tandem up`).\n\
             [witness]\nkind = \"embedded\"\nurl = \"http://{}\"\n{failover}",
            witness_listen(dir)?
        ),
        WitnessChoice::Etcd => {
            let endpoints: Vec<String> = etcd_endpoints
                .iter()
                .map(|endpoint| toml::Value::String(endpoint.clone()).to_string())
                .collect();
            format!(
                "\n# Primary leadership is a lease in this etcd cluster.\n\
                 [witness]\nkind = \"etcd\"\nendpoints = [{}]\n{failover}",
                endpoints.join(", ")
            )
        }
        WitnessChoice::Without => {
            "\n# No [witness]: the primary above stays primary and nothing fails over.\n\
             # Add [witness] kind = \"embedded\", url = \"http://…\" (`tandem witness`) or\n\
             # kind = \"etcd\", endpoints = [\"http://…:2379\"] to enable failover.\n"
                .to_string()
        }
    };
    Ok(section)
}

/// Writes a deployment file for `count` regions of `replicas` server
/// processes each unless one exists.
fn ensure_deployment(dir: &Path, count: usize, replicas: usize, witness: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("deployment.toml");
    if path.exists() {
        return Ok(path);
    }
    let secret_path = dir.join("replication.secret");
    std::fs::write(&secret_path, format!("{}\n", uuid::Uuid::new_v4().simple()))?;
    let mut text = String::from(
        "# Generated by `tandem up`. Edit freely: it is read again on the next `tandem up --dir` here.\n\
         name = \"local\"\nprimary = \"eastus\"\nreplication_secret_file = \"replication.secret\"\n",
    );
    for (index, name) in REGION_NAMES.iter().take(count).enumerate() {
        let pair = match index {
            0 => "\npair = \"westus\"",
            1 => "\npair = \"eastus\"",
            _ => "",
        };
        let address = if replicas > 1 {
            let urls = (0..replicas)
                .map(|_| Ok(format!("\"http://127.0.0.1:{}\"", free_port()?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            format!(
                "# {replicas} server processes on one PostgreSQL database\nreplicas = [{}]",
                urls.join(", ")
            )
        } else {
            format!("url = \"http://127.0.0.1:{}\"", free_port()?)
        };
        text.push_str(&format!("\n[[regions]]\nname = \"{name}\"\n{address}{pair}\n"));
    }
    text.push_str(
        "\n# Continuity level per asset class: hot-warm (replicated continuously, secondaries serve reads)\n\
         # or hot-cold (restored at failover). Optional: sync = true, max_rpo = \"5s\".\n\
         [classes.tracking]\nlevel = \"hot-warm\"\n\n[classes.registry]\nlevel = \"hot-warm\"\n",
    );
    text.push_str(witness);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Where a region of several replicas keeps its database's URL.
fn metadata_url_file(dir: &Path, region: &str) -> PathBuf {
    dir.join(region).join("metadata.url")
}

/// Makes sure every region of several replicas has its PostgreSQL database:
/// created on `postgres` (an administrator's URL) the first time, its URL
/// kept in DIR/<region>/metadata.url (readable by its owner only: it may
/// hold a password).
async fn ensure_databases(
    dir: &Path,
    deployment: &tandem_deployment::Deployment,
    postgres: &str,
) -> anyhow::Result<()> {
    for region in deployment.regions() {
        let replicas = region.endpoints().len();
        let path = metadata_url_file(dir, &region.name);
        if replicas < 2 || path.exists() {
            continue;
        }
        let database = format!(
            "tandem_up_{}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8],
            region.name.replace('-', "_")
        );
        let url = tandem_store::ensure_postgres_database(postgres, &database)
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "region '{}' runs {replicas} replicas, which share a PostgreSQL database, and the PostgreSQL server at {} cannot be used: {error}. \
                     Start PostgreSQL, pass --postgres URL (an administrator's), or run one replica per region",
                    region.name,
                    tandem_server::redact(postgres)
                )
            })?;
        std::fs::create_dir_all(dir.join(&region.name))?;
        tandem_server::bootstrap::write_token(&path, &url).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// The gateway's listen address: the one chosen the first time in this
/// directory, so a restarted deployment keeps its tracking URI.
fn gateway_listen(dir: &Path) -> anyhow::Result<String> {
    kept_listen_address(&dir.join("gateway.listen"))
}

/// The embedded witness's listen address, kept like the gateway's. (Once
/// the deployment file names the witness, its `url` is what counts.)
fn witness_listen(dir: &Path) -> anyhow::Result<String> {
    kept_listen_address(&dir.join("witness.listen"))
}

/// The address in `path`, or a free port on 127.0.0.1 written there.
fn kept_listen_address(path: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if !text.trim().is_empty() {
            return Ok(text.trim().to_string());
        }
    }
    let listen = format!("127.0.0.1:{}", free_port()?);
    std::fs::write(path, format!("{listen}\n"))?;
    Ok(listen)
}

/// The local address to serve an embedded witness named by `url` on, or
/// none when the URL points at another host (a witness run elsewhere).
fn local_witness_listen(url: &str) -> Option<String> {
    let address = url.strip_prefix("http://")?.trim_end_matches('/');
    let host = address.rsplit_once(':')?.0;
    matches!(host, "127.0.0.1" | "localhost" | "[::1]").then(|| address.to_string())
}

/// Stops started parts: everything but the witness first (regions may
/// still resign their leadership), then the witness.
async fn stop_all(started: &mut [(PartSpec, Child)]) {
    let (witnesses, others): (Vec<_>, Vec<_>) = started
        .iter_mut()
        .partition(|(spec, _)| spec.kind == Kind::Witness);
    futures::future::join_all(others.into_iter().map(|(spec, child)| parts::stop(spec, child))).await;
    futures::future::join_all(
        witnesses
            .into_iter()
            .map(|(spec, child)| parts::stop(spec, child)),
    )
    .await;
}

/// The parts of `deployment`, in start order: the embedded witness (when
/// it is served here), the regions, the gateway.
fn part_specs(
    dir: &Path,
    deployment_path: &Path,
    deployment: &tandem_deployment::Deployment,
    admin_token_file: Option<&Path>,
    mlflow_ui: Option<&Path>,
) -> anyhow::Result<Vec<PartSpec>> {
    let mut specs = Vec::new();
    let log = |name: &str| dir.join(format!("{name}.log"));
    // The witness first: regions campaign for leadership as they start.
    if let Some(WitnessKind::Embedded { url }) = deployment.witness.as_ref().map(|spec| &spec.kind) {
        if let Some(listen) = local_witness_listen(url) {
            specs.push(PartSpec {
                name: "witness".to_string(),
                kind: Kind::Witness,
                url: url.trim_end_matches('/').to_string(),
                arguments: vec![
                    "witness".into(),
                    "--listen".into(),
                    listen.into(),
                    "--data".into(),
                    dir.join("witness").into(),
                    // Its replication secret: the witness answers the regions only.
                    "--deployment".into(),
                    deployment_path.into(),
                ],
                log: log("witness"),
                env: Vec::new(),
            });
        }
    }
    for region in deployment.regions() {
        let endpoints = region.endpoints();
        for (index, url) in endpoints.iter().enumerate() {
            let mut arguments: Vec<std::ffi::OsString> = vec![
                "server".into(),
                "--deployment".into(),
                deployment_path.into(),
                "--region".into(),
                region.name.clone().into(),
                // Replicas share the directory: its artifacts.
                "--data".into(),
                dir.join(&region.name).into(),
                "--listen".into(),
                url.trim_start_matches("http://").into(),
            ];
            if let Some(token_file) = admin_token_file {
                // Every region gets the same token file: whichever leads first
                // creates the admin with it.
                arguments.extend(["--auth".into(), "--admin-token-file".into(), token_file.into()]);
            }
            let mut env = Vec::new();
            let name = if endpoints.len() > 1 {
                env.push((
                    "TANDEM_METADATA_URL_FILE".to_string(),
                    metadata_url_file(dir, &region.name).into(),
                ));
                format!("{}-{}", region.name, index + 1)
            } else {
                region.name.clone()
            };
            specs.push(PartSpec {
                log: log(&name),
                name,
                kind: Kind::Region,
                url: url.clone(),
                arguments,
                env,
            });
        }
    }
    // The gateway last: it finds the primary among regions that answer.
    let gateway_listen = gateway_listen(dir)?;
    let mut arguments: Vec<std::ffi::OsString> = vec![
        "gateway".into(),
        "--deployment".into(),
        deployment_path.into(),
        "--listen".into(),
        gateway_listen.clone().into(),
    ];
    if let Some(build) = mlflow_ui {
        arguments.extend(["--mlflow-ui".into(), build.into()]);
    }
    specs.push(PartSpec {
        name: "gateway".to_string(),
        kind: Kind::Gateway,
        url: format!("http://{gateway_listen}"),
        arguments,
        log: log("gateway"),
        env: Vec::new(),
    });
    Ok(specs)
}

/// DIR/admin.token: the admin's token, created (readable by its owner
/// only) on the first `up`.
fn admin_token(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let path = dir.join("admin.token");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_string();
        if !token.is_empty() {
            return Ok((path, token));
        }
    }
    let token = tandem_auth::secret::mint_token().secret;
    tandem_server::bootstrap::write_token(&path, &token).map_err(anyhow::Error::msg)?;
    Ok((path, token))
}

/// Starts every part and waits until each answers `/health`; the witness
/// must also be ready before the regions start. On failure, stops what was
/// started.
async fn start(
    executable: &Path,
    probe: &Probe,
    specs: Vec<PartSpec>,
) -> anyhow::Result<Vec<(PartSpec, Child)>> {
    let mut started: Vec<(PartSpec, Child)> = Vec::new();
    for spec in specs {
        let child = match spec.spawn(executable) {
            Ok(child) => child,
            Err(error) => {
                stop_all(&mut started).await;
                return Err(error);
            }
        };
        started.push((spec, child));
        let (spec, child) = started.last_mut().expect("just pushed");
        if spec.kind == Kind::Witness {
            let waited = match probe.wait_alive(spec, child).await {
                Ok(()) => probe
                    .wait_ready(&spec.url, tokio::time::Instant::now() + parts::ALIVE_WITHIN)
                    .await
                    .map(|_| ())
                    .map_err(|reason| anyhow::anyhow!("the witness is not ready: {reason}")),
                Err(error) => Err(error),
            };
            if let Err(error) = waited {
                let log = spec.log.clone();
                stop_all(&mut started).await;
                bail!("{error:#}; see {}{}", log.display(), log_tail(&log));
            }
        }
    }
    for index in 0..started.len() {
        let (spec, child) = &mut started[index];
        if let Err(error) = probe.wait_alive(spec, child).await {
            let log = spec.log.clone();
            stop_all(&mut started).await;
            bail!("{error:#}; see {}{}", log.display(), log_tail(&log));
        }
    }
    Ok(started)
}

/// The last lines of a part's log, indented, for an error that says why
/// the part did not start (the log's directory may be gone by the time
/// someone reads the error, as in CI).
fn log_tail(log: &Path) -> String {
    const LINES: usize = 8;
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(LINES)..];
    if tail.is_empty() {
        return String::new();
    }
    format!("; it ended with:\n  {}", tail.join("\n  "))
}

pub async fn run(args: UpArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    if !args.etcd_endpoints.is_empty() && args.witness != Some(WitnessChoice::Etcd) {
        return Err(crate::Refusal::Usage("--etcd-endpoints goes with --witness etcd".to_string()).into());
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let deployment_exists = dir.join("deployment.toml").exists();
    let choice = args.witness.unwrap_or(WitnessChoice::Embedded);
    let witness = if deployment_exists {
        String::new()
    } else {
        witness_section(&dir, choice, &args.etcd_endpoints)?
    };
    let deployment_path = ensure_deployment(&dir, args.regions as usize, args.replicas as usize, &witness)?;
    let deployment = tandem_deployment::Deployment::from_file(&deployment_path)?;
    ensure_databases(&dir, &deployment, &args.postgres).await?;
    let file_choice = match deployment.witness.as_ref().map(|spec| &spec.kind) {
        Some(WitnessKind::Embedded { .. }) => WitnessChoice::Embedded,
        Some(WitnessKind::Etcd { .. }) => WitnessChoice::Etcd,
        None => WitnessChoice::Without,
    };
    if let Some(asked) = args
        .witness
        .filter(|asked| deployment_exists && *asked != file_choice)
    {
        eprintln!(
            "note: {} exists and names witness '{}': it decides, --witness {} is ignored (edit the file to change it)",
            deployment_path.display(),
            file_choice.as_str(),
            asked.as_str()
        );
    }
    let executable = std::env::current_exe().context("cannot find the tandem executable")?;
    let probe = Probe::new()?;
    // The admin's token, made here (once) so that every region bootstraps
    // the same admin and the client config can carry it.
    let admin_token = if args.no_auth {
        None
    } else {
        Some(admin_token(&dir)?)
    };
    let admin_token_file = admin_token.as_ref().map(|(path, _)| path.clone());
    let mlflow_ui = match &args.mlflow_ui {
        Some(build) => Some(
            tandem_http::web_app::checked_build(&build.canonicalize().unwrap_or_else(|_| build.clone()))
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let specs = part_specs(
        &dir,
        &deployment_path,
        &deployment,
        admin_token_file.as_deref(),
        mlflow_ui.as_deref(),
    )?;
    let witness_summary = match &deployment.witness {
        None => "no witness (the primary never changes)".to_string(),
        Some(spec) => match &spec.kind {
            WitnessKind::Etcd { endpoints } => format!("etcd at {} as the witness", endpoints.join(",")),
            WitnessKind::Embedded { .. } if specs.iter().any(|spec| spec.kind == Kind::Witness) => {
                "an embedded witness".to_string()
            }
            WitnessKind::Embedded { url } => format!("the witness at {url} (not started here)"),
        },
    };

    // Ctrl-C during start-up stops what was started (dropping a child kills it).
    tokio::pin!(shutdown);
    let starting = async {
        let mut started = start(&executable, &probe, specs).await?;
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        // Per part, why it is not ready (None: ready).
        let mut not_ready = Vec::new();
        for (spec, _) in &started {
            not_ready.push(probe.wait_ready(&spec.url, deadline).await.err());
        }
        let tracking_uri = started
            .last()
            .map(|(spec, _)| spec.url.clone())
            .expect("the gateway is always started");
        if let Some((_, token)) = &admin_token {
            // The leading region creates the admin as it takes the lead;
            // wait until the gateway accepts its token.
            if let Err(error) = probe.wait_authenticated(&tracking_uri, token, deadline).await {
                stop_all(&mut started).await;
                return Err(error);
            }
        }
        let token = admin_token.as_ref().map(|(_, token)| token.as_str());
        let client_config = match crate::config::write_project_config(&dir, &tracking_uri, token) {
            Ok(path) => path,
            Err(error) => {
                stop_all(&mut started).await;
                return Err(error);
            }
        };
        anyhow::Ok((started, not_ready, tracking_uri, client_config))
    };
    let (started, not_ready, tracking_uri, client_config) = tokio::select! {
        outcome = starting => outcome?,
        _ = &mut shutdown => {
            println!("Interrupted during start-up; stopped.");
            return Ok(());
        }
    };
    let up = UpFile {
        admin_token_file: admin_token_file.as_ref().map(|path| path.display().to_string()),
        tracking_uri,
        deployment: deployment_path.display().to_string(),
        client_config: client_config.display().to_string(),
        parts: started
            .iter()
            .zip(&not_ready)
            .map(|((spec, child), not_ready)| PartStatus {
                name: spec.name.clone(),
                kind: spec.kind,
                pid: child.id(),
                url: spec.url.clone(),
                state: if not_ready.is_none() {
                    State::Running
                } else {
                    State::Starting
                },
                restarts: 0,
                last_exit: None,
                log: spec.log.display().to_string(),
            })
            .collect(),
    };
    let board = Board::new(dir.join("up.json"), up.clone());
    if let Err(error) = board.write() {
        let mut started = started;
        stop_all(&mut started).await;
        return Err(error);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&up)?);
    } else {
        println!(
            "Tandem is up: {} regions, a gateway and {witness_summary}; primary {}",
            deployment.regions().len(),
            deployment.bootstrap_primary().name
        );
        for part in &up.parts {
            println!(
                "  {:<10} {:<8} pid {:<7} {}",
                part.name,
                part.kind.as_str(),
                part.pid.unwrap_or(0),
                part.url
            );
        }
        println!("\n  export MLFLOW_TRACKING_URI={}", up.tracking_uri);
        match &up.admin_token_file {
            Some(path) => println!("  export MLFLOW_TRACKING_TOKEN=$(cat {path})   # the admin's token"),
            None => println!("  (authentication is off: --no-auth)"),
        }
        println!(
            "\n  {} points tandem commands run in {} (or below) at the gateway:\n  \
             cd {} && tandem status\n  tandem status --url {}   (from anywhere)\n\n\
             Logs and data in {}. A part that dies is started again. Ctrl-C stops everything.",
            client_config.display(),
            dir.display(),
            dir.display(),
            up.tracking_uri,
            dir.display()
        );
    }
    for ((spec, _), reason) in started.iter().zip(&not_ready) {
        if let Some(reason) = reason {
            eprintln!(
                "warning: {} is running but not ready after {}s: {reason} (see {})",
                spec.label(),
                READY_WITHIN.as_secs(),
                spec.log.display()
            );
        }
    }

    // Supervise until asked to stop.
    let failover_wait = deployment
        .witness
        .as_ref()
        .filter(|_| deployment.failover.mode == FailoverMode::Automatic)
        .map(|witness| witness.ttl + deployment.failover.grace_period + Duration::from_secs(10));
    let context = supervise::Supervision {
        executable,
        probe,
        board: board.clone(),
        policy: RestartPolicy {
            limit: args.restart_limit,
            window: args.restart_window,
            first_delay: args.restart_delay,
            max_delay: MAX_RESTART_DELAY,
        },
        regions: deployment
            .regions()
            .iter()
            .map(|region| (region.name.clone(), region.url.clone()))
            .collect(),
        failover_wait,
    };
    let (stop_parts, parts_stopping) = tokio::sync::watch::channel(false);
    let (stop_witness, witness_stopping) = tokio::sync::watch::channel(false);
    let mut others = Vec::new();
    let mut witnesses = Vec::new();
    for (index, ((spec, child), not_ready)) in started.into_iter().zip(not_ready).enumerate() {
        let witness = spec.kind == Kind::Witness;
        let stopping = if witness {
            witness_stopping.clone()
        } else {
            parts_stopping.clone()
        };
        let task = tokio::spawn(supervise::supervise(
            context.clone(),
            index,
            spec,
            child,
            not_ready.is_none(),
            stopping,
        ));
        if witness {
            witnesses.push(task);
        } else {
            others.push(task);
        }
    }
    shutdown.await;
    // The witness last: regions stopping may still resign their leadership.
    stop_parts.send_replace(true);
    futures::future::join_all(others).await;
    stop_witness.send_replace(true);
    futures::future::join_all(witnesses).await;
    let down: Vec<String> = board
        .snapshot()
        .parts
        .iter()
        .filter(|part| part.state == State::Down)
        .map(|part| format!("{} {}", part.kind.as_str(), part.name))
        .collect();
    board.remove();
    if down.is_empty() {
        println!("Tandem stopped.");
    } else {
        println!(
            "Tandem stopped ({} had been left down after crash-looping).",
            down.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_witness_is_served_here_only_at_a_local_address() {
        assert_eq!(
            local_witness_listen("http://127.0.0.1:5070"),
            Some("127.0.0.1:5070".to_string())
        );
        assert_eq!(
            local_witness_listen("http://localhost:5070/"),
            Some("localhost:5070".to_string())
        );
        assert_eq!(local_witness_listen("http://witness.example:5070"), None);
        assert_eq!(local_witness_listen("https://127.0.0.1:5070"), None);
    }

    fn generated(
        choice: WitnessChoice,
        endpoints: &[&str],
    ) -> (tempfile::TempDir, tandem_deployment::Deployment) {
        let dir = tempfile::tempdir().unwrap();
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        let section = witness_section(dir.path(), choice, &endpoints).unwrap();
        let path = ensure_deployment(dir.path(), 2, 1, &section).unwrap();
        let deployment = tandem_deployment::Deployment::from_file(&path).unwrap();
        (dir, deployment)
    }

    #[test]
    fn a_generated_deployment_of_replicas_lists_them_and_each_is_a_part() {
        let dir = tempfile::tempdir().unwrap();
        let section = witness_section(dir.path(), WitnessChoice::Without, &[]).unwrap();
        let path = ensure_deployment(dir.path(), 2, 3, &section).unwrap();
        let deployment = tandem_deployment::Deployment::from_file(&path).unwrap();
        for region in deployment.regions() {
            assert_eq!(region.endpoints().len(), 3, "{region:?}");
            assert_eq!(region.url, region.replicas[0]);
        }
        let specs = part_specs(dir.path(), &path, &deployment, None, None).unwrap();
        let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
        assert_eq!(
            names,
            ["eastus-1", "eastus-2", "eastus-3", "westus-1", "westus-2", "westus-3", "gateway"]
        );
        // Each replica listens at its own address, on the region's database.
        let east: Vec<&PartSpec> = specs
            .iter()
            .filter(|spec| spec.name.starts_with("eastus"))
            .collect();
        for (spec, url) in east.iter().zip(deployment.region("eastus").unwrap().endpoints()) {
            assert_eq!(spec.url, url);
            assert_eq!(spec.env[0].0, "TANDEM_METADATA_URL_FILE");
            assert_eq!(
                spec.env[0].1,
                metadata_url_file(dir.path(), "eastus").into_os_string()
            );
        }
    }

    #[test]
    fn the_generated_deployment_names_the_embedded_witness_at_its_kept_address() {
        let (dir, deployment) = generated(WitnessChoice::Embedded, &[]);
        let kept = std::fs::read_to_string(dir.path().join("witness.listen")).unwrap();
        assert_eq!(
            deployment.witness.unwrap().kind,
            WitnessKind::Embedded {
                url: format!("http://{}", kept.trim())
            }
        );
        // Asked again, the same address.
        assert_eq!(witness_listen(dir.path()).unwrap(), kept.trim());
    }

    #[test]
    fn the_generated_deployment_names_etcd_or_no_witness() {
        let (_dir, deployment) = generated(
            WitnessChoice::Etcd,
            &["http://127.0.0.1:2379", "http://127.0.0.1:22379"],
        );
        assert_eq!(
            deployment.witness.unwrap().kind,
            WitnessKind::Etcd {
                endpoints: vec![
                    "http://127.0.0.1:2379".to_string(),
                    "http://127.0.0.1:22379".to_string()
                ]
            }
        );
        let (_dir, deployment) = generated(WitnessChoice::Without, &[]);
        assert!(deployment.witness.is_none());
    }
}
