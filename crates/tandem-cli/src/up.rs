//! `tandem up`: a whole deployment on this host. Each region is its own
//! `tandem server` process with its own data directory and port, joined by a
//! generated deployment file, and a `tandem gateway` process in front of them
//! is the tracking URI; `DIR/up.json` says where everything is. Ctrl-C (or
//! SIGTERM) stops every part cleanly. Run again with the same directory, it
//! restarts the same deployment on the same ports (the gateway's is kept in
//! `DIR/gateway.listen`), with its data.
//!
//! Leadership: by default an embedded witness (`tandem witness`, its state in
//! `DIR/witness`, its address kept in `DIR/witness.listen`) starts first, and
//! the deployment file names it in `[witness]`, so failover works out of the
//! box; `--witness etcd` names an etcd cluster run elsewhere instead, and
//! `--witness none` leaves the bootstrap primary in place for good. Once the
//! deployment file exists, it decides: edit it rather than pass flags.
//! `DIR/.tandem.toml` points the CLI, run in `DIR` or below, at the gateway.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tandem_deployment::WitnessKind;
use tokio::process::{Child, Command};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory for the deployment's files, data and logs.
    #[arg(long, default_value = "./tandem-up")]
    pub dir: PathBuf,
    /// Number of regions (2 or 3).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub regions: u8,
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

/// The path the embedded witness answers a plain GET on (it has no /health).
const WITNESS_PROBE_PATH: &str = "/api/tandem/v1/witness/leader";

const REGION_NAMES: [&str; 3] = ["eastus", "westus", "centralus"];

#[derive(Serialize)]
struct Part {
    name: String,
    kind: &'static str,
    pid: u32,
    url: String,
}

#[derive(Serialize)]
struct UpFile {
    tracking_uri: String,
    deployment: String,
    /// The client config file pointing tandem commands at the gateway.
    client_config: String,
    parts: Vec<Part>,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
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

/// Writes a deployment file for `count` regions unless one exists.
fn ensure_deployment(dir: &Path, count: usize, witness: &str) -> anyhow::Result<PathBuf> {
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
        text.push_str(&format!(
            "\n[[regions]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{}\"{pair}\n",
            free_port()?
        ));
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

/// The path a part answers 200 on once it serves.
fn probe_path(kind: &str) -> &'static str {
    if kind == "witness" {
        WITNESS_PROBE_PATH
    } else {
        "/health"
    }
}

async fn wait_healthy(name: &str, kind: &str, url: &str, child: &mut Child) -> anyhow::Result<()> {
    let http = reqwest_free_get();
    let path = probe_path(kind);
    for _ in 0..200 {
        if let Some(status) = child.try_wait()? {
            bail!("{name} at {url} exited during start-up ({status})");
        }
        if http(url, path).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{name} at {url} did not answer {path} within 20s")
}

/// A minimal health probe over a raw TCP connection (the CLI reaches servers
/// through tandem-client for everything else; this avoids a client per probe).
fn reqwest_free_get(
) -> impl Fn(&str, &'static str) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
    |url: &str, path: &'static str| {
        let address = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
                return false;
            };
            let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_err() {
                return false;
            }
            let mut response = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response)).await;
            response.starts_with(b"HTTP/1.1 200")
        })
    }
}

/// "region eastus", "gateway": a part as messages name it.
fn label(kind: &str, name: &str) -> String {
    if kind == name {
        kind.to_string()
    } else {
        format!("{kind} {name}")
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: sending a signal to a child process we started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}

/// One started process of the deployment.
struct Running {
    name: String,
    kind: &'static str,
    url: String,
    child: Child,
}

fn terminate_all(parts: &[Running]) {
    for part in parts {
        terminate(&part.child);
    }
}

/// Stops `parts` (SIGTERM, then SIGKILL after 10 s).
async fn stop(parts: &mut [Running]) {
    terminate_all(parts);
    for part in parts.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), part.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "{} did not stop within 10s; killing it",
                label(part.kind, &part.name)
            );
            let _ = part.child.kill().await;
        }
    }
}

/// Starts `tandem ARGS…` with its output in `DIR/NAME.log`.
fn spawn_part(
    executable: &Path,
    dir: &Path,
    name: &str,
    arguments: &[&std::ffi::OsStr],
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(executable)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
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
    let deployment_path = ensure_deployment(&dir, args.regions as usize, &witness)?;
    let deployment = tandem_deployment::Deployment::from_file(&deployment_path)?;
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
    let mut parts: Vec<Running> = Vec::new();

    // The witness first: regions campaign for leadership as they start.
    let mut witness_summary = match &deployment.witness {
        None => "no witness (the primary never changes)".to_string(),
        Some(spec) => match &spec.kind {
            WitnessKind::Etcd { endpoints } => format!("etcd at {} as the witness", endpoints.join(",")),
            WitnessKind::Embedded { url } => format!("the witness at {url} (not started here)"),
        },
    };
    if let Some(WitnessKind::Embedded { url }) = deployment.witness.as_ref().map(|spec| &spec.kind) {
        if let Some(listen) = local_witness_listen(url) {
            let data = dir.join("witness");
            let arguments: [&std::ffi::OsStr; 5] = [
                "witness".as_ref(),
                "--listen".as_ref(),
                listen.as_ref(),
                "--data".as_ref(),
                data.as_os_str(),
            ];
            let child =
                spawn_part(&executable, &dir, "witness", &arguments).context("cannot start the witness")?;
            parts.push(Running {
                name: "witness".to_string(),
                kind: "witness",
                url: url.clone(),
                child,
            });
            let witness = &mut parts[0];
            if let Err(error) = wait_healthy("witness", "witness", &witness.url, &mut witness.child).await {
                stop(&mut parts).await;
                bail!("{error:#}; see {}", dir.join("witness.log").display());
            }
            witness_summary = "an embedded witness".to_string();
        }
    }

    for region in deployment.regions() {
        let listen = region.url.trim_start_matches("http://").to_string();
        let data = dir.join(&region.name);
        let arguments: [&std::ffi::OsStr; 9] = [
            "server".as_ref(),
            "--deployment".as_ref(),
            deployment_path.as_os_str(),
            "--region".as_ref(),
            region.name.as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
            "--listen".as_ref(),
            listen.as_ref(),
        ];
        match spawn_part(&executable, &dir, &region.name, &arguments) {
            Ok(child) => parts.push(Running {
                name: region.name.clone(),
                kind: "region",
                url: region.url.clone(),
                child,
            }),
            Err(error) => {
                stop(&mut parts).await;
                bail!("cannot start region {}: {error:#}", region.name);
            }
        }
    }
    // The gateway last: it finds the primary among regions that answer.
    let gateway_listen = gateway_listen(&dir)?;
    let gateway_arguments: [&std::ffi::OsStr; 5] = [
        "gateway".as_ref(),
        "--deployment".as_ref(),
        deployment_path.as_os_str(),
        "--listen".as_ref(),
        gateway_listen.as_ref(),
    ];
    match spawn_part(&executable, &dir, "gateway", &gateway_arguments) {
        Ok(child) => parts.push(Running {
            name: "gateway".to_string(),
            kind: "gateway",
            url: format!("http://{gateway_listen}"),
            child,
        }),
        Err(error) => {
            stop(&mut parts).await;
            bail!("cannot start the gateway: {error:#}");
        }
    }
    for index in 0..parts.len() {
        let part = &mut parts[index];
        if let Err(error) = wait_healthy(
            &label(part.kind, &part.name),
            part.kind,
            &part.url,
            &mut part.child,
        )
        .await
        {
            let log = dir.join(format!("{}.log", part.name));
            stop(&mut parts).await;
            bail!("{error:#}; see {}", log.display());
        }
    }
    let tracking_uri = format!("http://{gateway_listen}");
    let client_config = match crate::config::write_project_config(&dir, &tracking_uri) {
        Ok(path) => path,
        Err(error) => {
            stop(&mut parts).await;
            return Err(error);
        }
    };
    let up = UpFile {
        tracking_uri,
        deployment: deployment_path.display().to_string(),
        client_config: client_config.display().to_string(),
        parts: parts
            .iter()
            .map(|part| Part {
                name: part.name.clone(),
                kind: part.kind,
                pid: part.child.id().unwrap_or(0),
                url: part.url.clone(),
            })
            .collect(),
    };
    let up_path = dir.join("up.json");
    std::fs::write(&up_path, serde_json::to_string_pretty(&up)?)?;
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
                part.name, part.kind, part.pid, part.url
            );
        }
        println!("\n  export MLFLOW_TRACKING_URI={}", up.tracking_uri);
        println!(
            "\n  {} points tandem commands run in {} (or below) at the gateway:\n  \
             cd {} && tandem status\n  tandem status --url {}   (from anywhere)\n\n\
             Logs and data in {}. Ctrl-C stops everything.",
            client_config.display(),
            dir.display(),
            dir.display(),
            up.tracking_uri,
            dir.display()
        );
    }

    // Run until asked to stop or until a part dies (then stop the rest: a
    // half-running deployment is worse than a stopped one).
    let mut exited = None;
    {
        let watch_children = async {
            loop {
                for part in parts.iter_mut() {
                    if let Ok(Some(status)) = part.child.try_wait() {
                        return (label(part.kind, &part.name), status);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = shutdown => {}
            died = watch_children => exited = Some(died),
        }
    }
    // The witness last: regions stopping may still resign their leadership.
    let witness_count = parts.iter().filter(|part| part.kind == "witness").count();
    let (witnesses, others) = parts.split_at_mut(witness_count);
    stop(others).await;
    stop(witnesses).await;
    let _ = std::fs::remove_file(&up_path);
    match exited {
        Some((name, status)) => bail!("{name} exited unexpectedly ({status}); stopped the deployment"),
        None => {
            println!("Tandem stopped.");
            Ok(())
        }
    }
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
        let path = ensure_deployment(dir.path(), 2, &section).unwrap();
        let deployment = tandem_deployment::Deployment::from_file(&path).unwrap();
        (dir, deployment)
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
