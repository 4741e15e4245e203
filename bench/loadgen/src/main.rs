//! Many concurrent MLflow REST writers against one tracking server, for
//! `bench/writers.py` (issue 17: "64 concurrent clients logging metrics,
//! params and tags"). A Python client pool on this two-core machine spends
//! more CPU than the server it measures; this one spends a few percent of a
//! core, and prints its own CPU so a reader can check.
//!
//! Each client is one task with its own keep-alive connection and its own
//! run, created before the clock starts. It writes in a closed loop (the next
//! request leaves when the last was answered): with `--mix metric` only
//! `runs/log-metric`; with `--mix all` a metric, a param and a tag in turn
//! (params are immutable, so every param key is new); with `--mix read`, a
//! `runs/get` of its run and a `runs/search` of the experiment's first 100
//! runs in turn (each run holds 10 metrics, 5 params and 3 tags). Every
//! request must answer 200: anything else is counted as an error and
//! printed. The result is one JSON object on stdout.
//!
//! `--url` may list several servers, comma-separated (the replicas of a
//! region): client `i` talks to the `i % n`-th, so the load is spread evenly
//! without a balancer in between.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Concurrent MLflow REST writers; prints throughput and latency percentiles as JSON")]
struct Args {
    /// The tracking server, e.g. http://127.0.0.1:5000, or several,
    /// comma-separated: clients are spread over them evenly.
    #[arg(long, value_delimiter = ',', required = true)]
    url: Vec<String>,
    /// Concurrent clients, each with its own connection and run.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to write, after every client's run exists.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// What each client writes.
    #[arg(long, value_enum, default_value_t = Mix::Metric)]
    mix: Mix,
    /// The experiment the runs go into (created if missing).
    #[arg(long, default_value = "loadgen")]
    experiment: String,
    /// A bearer token, when the server wants one.
    #[arg(long, env = "TANDEM_TOKEN")]
    token: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mix {
    Metric,
    All,
    Read,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn post(&self, route: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let mut request = self
            .http
            .post(format!("{}/api/2.0/mlflow/{route}", self.base))
            .json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("POST {route}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!(
                "POST {route}: {status} {}",
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    async fn get(&self, route: &str, query: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut request = self
            .http
            .get(format!("{}/api/2.0/mlflow/{route}", self.base))
            .query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("GET {route}"))?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!(
                "GET {route}: {status} {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        Ok(())
    }
}

/// What a run read by `--mix read` holds: 10 metrics, 5 params, 3 tags.
async fn fill_run(client: &Client, run_id: &str) -> anyhow::Result<()> {
    let now = now_ms();
    let metrics: Vec<_> = (0..10)
        .map(|k| json!({"key": format!("m{k}"), "value": k as f64 / 10.0, "timestamp": now, "step": 0}))
        .collect();
    let params: Vec<_> = (0..5)
        .map(|k| json!({"key": format!("p{k}"), "value": format!("v{k}")}))
        .collect();
    let tags: Vec<_> = (0..3)
        .map(|k| json!({"key": format!("t{k}"), "value": format!("v{k}")}))
        .collect();
    client
        .post(
            "runs/log-batch",
            json!({"run_id": run_id, "metrics": metrics, "params": params, "tags": tags}),
        )
        .await?;
    Ok(())
}

/// What one client did: latencies of its successful writes in microseconds,
/// its errors.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: Vec<String>,
}

async fn experiment_id(client: &Client, name: &str) -> anyhow::Result<String> {
    let found = client.post("experiments/create", json!({ "name": name })).await;
    match found {
        Ok(created) => Ok(created["experiment_id"]
            .as_str()
            .context("no experiment_id")?
            .to_string()),
        Err(_) => {
            let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", client.base);
            let mut request = client.http.get(url).query(&[("experiment_name", name)]);
            if let Some(token) = &client.token {
                request = request.bearer_auth(token);
            }
            let answer: serde_json::Value = request.send().await?.error_for_status()?.json().await?;
            Ok(answer["experiment"]["experiment_id"]
                .as_str()
                .context("no experiment")?
                .to_string())
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn read(client: Client, run_id: String, experiment: String, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        let sent = Instant::now();
        let answer = if n.is_multiple_of(2) {
            client.get("runs/get", &[("run_id", run_id.as_str())]).await
        } else {
            client
                .post(
                    "runs/search",
                    json!({"experiment_ids": [experiment], "max_results": 100}),
                )
                .await
                .map(|_| ())
        };
        match answer {
            Ok(()) => tally
                .latencies_us
                .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(error) => tally.errors.push(format!("{error:#}")),
        }
        n += 1;
    }
    tally
}

async fn write(client: Client, run_id: String, index: usize, mix: Mix, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        let (route, body) = match (mix, n % 3) {
            (Mix::Metric, _) | (Mix::All, 0) | (Mix::Read, _) => (
                "runs/log-metric",
                json!({"run_id": run_id, "key": "loss", "value": 1.0 / (n + 1) as f64,
                       "timestamp": now_ms(), "step": n}),
            ),
            (Mix::All, 1) => (
                "runs/log-parameter",
                json!({"run_id": run_id, "key": format!("p{index}-{n}"), "value": n.to_string()}),
            ),
            _ => (
                "runs/set-tag",
                json!({"run_id": run_id, "key": "phase", "value": format!("step-{n}")}),
            ),
        };
        let sent = Instant::now();
        match client.post(route, body).await {
            Ok(_) => tally
                .latencies_us
                .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(error) => tally.errors.push(format!("{error:#}")),
        }
        n += 1;
    }
    tally
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`).
fn own_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12; 100 ticks a second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at] as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let make = |index: usize| -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(120))
                .build()?,
            base: args.url[index % args.url.len()].trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    };
    let setup = make(0)?;
    let experiment = experiment_id(&setup, &args.experiment).await?;
    let mut clients = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let client = make(index)?;
        let created = client
            .post(
                "runs/create",
                json!({"experiment_id": experiment, "run_name": format!("writer-{index}"), "start_time": now_ms()}),
            )
            .await?;
        let run_id = created["run"]["info"]["run_id"]
            .as_str()
            .context("no run_id")?
            .to_string();
        if matches!(args.mix, Mix::Read) {
            fill_run(&client, &run_id).await?;
        }
        clients.push((client, run_id));
    }
    let cpu0 = own_cpu_s();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, (client, run_id))| match args.mix {
            Mix::Read => tokio::spawn(read(client, run_id, experiment.clone(), deadline)),
            mix => tokio::spawn(write(client, run_id, index, mix, deadline)),
        })
        .collect();
    let mut per_client = Vec::with_capacity(tasks.len());
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let tally = task.await?;
        per_client.push(tally.latencies_us.len());
        all.extend_from_slice(&tally.latencies_us);
        errors.extend(tally.errors);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = own_cpu_s() - cpu0;
    all.sort_unstable();
    let mean = all.iter().map(|&l| l as f64).sum::<f64>() / all.len().max(1) as f64 / 1000.0;
    for error in errors.iter().take(5) {
        eprintln!("error: {error}");
    }
    let result = json!({
        "clients": args.clients,
        "seconds": elapsed,
        "ops": all.len(),
        "ops_per_s": all.len() as f64 / elapsed,
        "errors": errors.len(),
        "mean_ms": mean,
        "p50_ms": percentile(&all, 0.50),
        "p99_ms": percentile(&all, 0.99),
        "p999_ms": percentile(&all, 0.999),
        "max_ms": percentile(&all, 1.0),
        // No writer starved: the slowest client's share of the mean.
        "min_client_ops": per_client.iter().min().copied().unwrap_or(0),
        "max_client_ops": per_client.iter().max().copied().unwrap_or(0),
        "client_cpu_s": cpu,
    });
    println!("{result}");
    Ok(())
}
