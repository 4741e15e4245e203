//! The deployment file: which regions serve the same workspaces, which pairs
//! with which, which is primary at bootstrap, and for each asset class its
//! continuity level.
//!
//! The file is parsed once into [`Deployment`], whose constructor checks
//! every cross-reference, so code holding a `Deployment` never meets a pairing
//! to an unknown region or a synchronous `hot-cold` class.
//!
//! Architecture invariant: pure configuration; no I/O beyond reading the
//! file, no knowledge of HTTP or storage.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tandem_core::journal::AssetClass;

mod definition;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeploymentError {
    #[error("cannot read deployment file {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid deployment file: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, DeploymentError>;

fn invalid(message: impl Into<String>) -> DeploymentError {
    DeploymentError::Invalid(message.into())
}

/// How an asset class survives the loss of a region (the seeds' hot/hot,
/// hot/warm and hot/cold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContinuityLevel {
    /// Every region accepts reads and writes; changes flow both ways.
    HotHot,
    /// Continuous one-way replication; secondaries serve reads.
    HotWarm,
    /// Not replicated continuously; restored from backup and journal archive
    /// at failover.
    HotCold,
}

impl ContinuityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ContinuityLevel::HotHot => "hot-hot",
            ContinuityLevel::HotWarm => "hot-warm",
            ContinuityLevel::HotCold => "hot-cold",
        }
    }

    fn parse(value: &str) -> Result<Self> {
        match value {
            "hot-hot" => Ok(ContinuityLevel::HotHot),
            "hot-warm" => Ok(ContinuityLevel::HotWarm),
            "hot-cold" => Ok(ContinuityLevel::HotCold),
            other => Err(invalid(format!(
                "unknown continuity level '{other}': use hot-hot, hot-warm or hot-cold"
            ))),
        }
    }

    /// Whether the class's journal records flow to secondaries as they happen.
    pub fn replicates_continuously(self) -> bool {
        !matches!(self, ContinuityLevel::HotCold)
    }
}

/// The policy of one asset class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassPolicy {
    pub level: ContinuityLevel,
    /// A write is acknowledged only once the secondary has durably applied it.
    pub sync: bool,
    /// The most a secondary may lag before the primary refuses new writes of
    /// the class.
    pub max_rpo: Option<Duration>,
}

impl Default for ClassPolicy {
    fn default() -> Self {
        ClassPolicy {
            level: ContinuityLevel::HotWarm,
            sync: false,
            max_rpo: None,
        }
    }
}

/// Where primary leadership is held (`[witness]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessKind {
    /// An etcd v3 cluster, reached through its HTTP/JSON gateway.
    Etcd { endpoints: Vec<String> },
    /// Tandem's embedded witness (`tandem witness`), for one host.
    Embedded { url: String },
}

/// The witness and the lease timings of primary leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessSpec {
    pub kind: WitnessKind,
    /// Lease lifetime without renewal.
    pub ttl: Duration,
    /// How often the primary renews, and how often other regions look.
    pub renew_interval: Duration,
    /// How long one request to the witness may take.
    pub retry_timeout: Duration,
}

/// Whether a region takes over by itself when the primary is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// When the primary's lease lapses and it stays unreachable for
    /// `grace_period`, the most caught-up healthy secondary takes over.
    Automatic,
    /// Only `tandem failover` changes the primary.
    Manual,
}

/// `[failover]`: when a secondary may take over by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverPolicy {
    pub mode: FailoverMode,
    /// How long the primary must stay unreachable (and its lease lapsed)
    /// before a secondary takes over. Azure SQL failover groups wait an hour
    /// by default; Tandem's default is 5 s, so the lease's lapse decides.
    pub grace_period: Duration,
    /// The most journal records a secondary may lack of the lost primary's
    /// journal (as last reported by it) and still take over automatically.
    pub maximum_lag_on_failover: i64,
}

pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);
pub const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: i64 = 1000;

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy {
            mode: FailoverMode::Automatic,
            grace_period: DEFAULT_GRACE_PERIOD,
            maximum_lag_on_failover: DEFAULT_MAXIMUM_LAG_ON_FAILOVER,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionSpec {
    pub name: String,
    /// Where the region's API answers (its gateway-facing address): `url`
    /// in the file, else its first replica.
    pub url: String,
    /// The addresses of the region's server processes when it runs several
    /// on one database (`replicas = [...]`): the gateway balances across
    /// the ready ones, and other regions try them in turn. Empty: `url` is
    /// the only address (one process, or a load balancer in front of them).
    pub replicas: Vec<String>,
    /// The region this one pairs with, if any.
    pub pair: Option<String>,
}

impl RegionSpec {
    /// Every address the region answers at: its replicas, else its URL.
    pub fn endpoints(&self) -> Vec<String> {
        if self.replicas.is_empty() {
            vec![self.url.clone()]
        } else {
            self.replicas.clone()
        }
    }
}

/// A validated deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub name: String,
    regions: Vec<RegionSpec>,
    primary: String,
    classes: BTreeMap<AssetClass, ClassPolicy>,
    /// Shared secret authenticating replication and gateway traffic.
    pub replication_secret: Option<String>,
    /// Where leadership is held; without one the bootstrap primary stays
    /// primary and only its operator can change that (by editing the file).
    pub witness: Option<WitnessSpec>,
    pub failover: FailoverPolicy,
    /// Where every region archives its journal and scheduled backups go.
    pub backup: Option<BackupPolicy>,
    /// `[verify] interval`: how often the primary proves every region's
    /// replica equal to its own (`tandem verify`); None: only on demand.
    pub verify_interval: Option<Duration>,
    /// PEM certificates (a CA) regions, the gateway and the witness client
    /// trust for `https://` URLs, besides the system's: the file's
    /// `ca_file` (relative to it), or a process's `--ca-file`.
    pub ca_pem: Option<Vec<u8>>,
    /// The definition as the file gave it (see [`Deployment::definition`]).
    definition: serde_json::Value,
    /// SHA-256 of `definition` (see [`Deployment::digest`]).
    digest: String,
}

/// How often the primary verifies the replicas when nothing says otherwise.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(6 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyFile {
    /// A duration (`6h`, `30m`), or `off`.
    interval: Option<String>,
}

fn parse_verify(file: Option<VerifyFile>) -> Result<Option<Duration>> {
    match file.and_then(|file| file.interval) {
        None => Ok(Some(DEFAULT_VERIFY_INTERVAL)),
        Some(text) if text == "off" => Ok(None),
        Some(text) => {
            let interval = parse_duration(&text)?;
            if interval.is_zero() {
                return Err(DeploymentError::Invalid(
                    "[verify] interval must be positive, or \"off\"".to_string(),
                ));
            }
            Ok(Some(interval))
        }
    }
}

/// How often a region archives its journal when nothing says otherwise.
pub const DEFAULT_ARCHIVE_INTERVAL: Duration = Duration::from_secs(10);

/// `[backup]`: continuous archiving of every region's journal (and the bytes
/// of its artifacts) to a backup repository, and scheduled backups there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPolicy {
    /// The backup repository: any URL Tandem's storage opens.
    pub url: String,
    /// How long a region's journal may go unarchived: the RPO of a restore
    /// from the archive, and of `hot-cold` classes at failover.
    pub archive_interval: Duration,
    /// Time between scheduled backups of every workspace, by the primary.
    pub schedule: Option<Duration>,
    /// Every `full_every`-th scheduled backup is a full one (the others are
    /// incremental on it), so old backups and the archive behind them can
    /// be pruned.
    pub full_every: u32,
    /// Retention: keep the newest `keep` backups of each series...
    pub keep: Option<u32>,
    /// ...and (either rule keeps a backup) every backup younger than `ttl`.
    /// With neither, nothing is pruned.
    pub ttl: Option<Duration>,
}

/// Scheduled backups between two full ones, plus one, when nothing says otherwise.
pub const DEFAULT_FULL_EVERY: u32 = 7;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupFile {
    url: String,
    archive_interval: Option<String>,
    schedule: Option<String>,
    full_every: Option<u32>,
    keep: Option<u32>,
    ttl: Option<String>,
}

fn parse_backup(file: BackupFile) -> Result<BackupPolicy> {
    if file.url.trim().is_empty() {
        return Err(DeploymentError::Invalid("[backup] url is empty".to_string()));
    }
    let archive_interval = file
        .archive_interval
        .as_deref()
        .map(parse_duration)
        .transpose()?
        .unwrap_or(DEFAULT_ARCHIVE_INTERVAL);
    if archive_interval.is_zero() {
        return Err(DeploymentError::Invalid(
            "[backup] archive_interval must be positive".to_string(),
        ));
    }
    let schedule = file.schedule.as_deref().map(parse_duration).transpose()?;
    if schedule.is_some_and(|schedule| schedule.is_zero()) {
        return Err(DeploymentError::Invalid(
            "[backup] schedule must be positive".to_string(),
        ));
    }
    if file.full_every == Some(0) {
        return Err(DeploymentError::Invalid(
            "[backup] full_every must be at least 1 (1: every scheduled backup is full)".to_string(),
        ));
    }
    if file.keep == Some(0) {
        return Err(DeploymentError::Invalid(
            "[backup] keep must be at least 1: the newest backup is always kept".to_string(),
        ));
    }
    let ttl = file.ttl.as_deref().map(parse_duration).transpose()?;
    if ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(DeploymentError::Invalid(
            "[backup] ttl must be positive".to_string(),
        ));
    }
    Ok(BackupPolicy {
        url: file.url,
        archive_interval,
        schedule,
        full_every: file.full_every.unwrap_or(DEFAULT_FULL_EVERY),
        keep: file.keep,
        ttl,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentFile {
    #[serde(default = "default_name")]
    name: String,
    primary: String,
    regions: Vec<RegionFile>,
    #[serde(default)]
    classes: BTreeMap<String, ClassFile>,
    replication_secret: Option<String>,
    replication_secret_file: Option<String>,
    witness: Option<WitnessFile>,
    failover: Option<FailoverFile>,
    backup: Option<BackupFile>,
    verify: Option<VerifyFile>,
    /// A PEM CA file to trust for the regions' and the witness's `https://`
    /// URLs (relative to this file).
    ca_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessFile {
    kind: String,
    #[serde(default)]
    endpoints: Vec<String>,
    url: Option<String>,
    ttl: Option<String>,
    renew_interval: Option<String>,
    retry_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverFile {
    mode: Option<String>,
    grace_period: Option<String>,
    maximum_lag_on_failover: Option<i64>,
}

fn default_name() -> String {
    "tandem".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionFile {
    name: String,
    url: Option<String>,
    #[serde(default)]
    replicas: Vec<String>,
    pair: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassFile {
    level: String,
    #[serde(default)]
    sync: bool,
    max_rpo: Option<String>,
}

/// Parses durations written as `500ms`, `5s`, `2m`, `1h` or `30d`.
pub fn parse_duration(value: &str) -> Result<Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| invalid(format!("'{value}' is not a duration like 5s or 500ms")))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" | "" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        other => {
            return Err(invalid(format!(
                "unknown duration unit '{other}' in '{value}': use ms, s, m, h or d"
            )))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(invalid(format!("'{value}' is not a duration")));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn url_list(what: &str, urls: &[String]) -> Result<()> {
    for url in urls {
        url::Url::parse(url).map_err(|error| invalid(format!("{what}: url '{url}': {error}")))?;
    }
    Ok(())
}

fn parse_witness(file: WitnessFile) -> Result<WitnessSpec> {
    let kind = match file.kind.as_str() {
        "etcd" => {
            if file.endpoints.is_empty() {
                return Err(invalid(
                    "witness kind 'etcd' needs endpoints = [\"http://host:2379\", …]",
                ));
            }
            if file.url.is_some() {
                return Err(invalid("witness kind 'etcd' takes endpoints, not url"));
            }
            url_list("witness endpoint", &file.endpoints)?;
            WitnessKind::Etcd {
                endpoints: file
                    .endpoints
                    .iter()
                    .map(|url| url.trim_end_matches('/').to_string())
                    .collect(),
            }
        }
        "embedded" => {
            let url = file
                .url
                .ok_or_else(|| invalid("witness kind 'embedded' needs url = \"http://host:port\""))?;
            if !file.endpoints.is_empty() {
                return Err(invalid("witness kind 'embedded' takes url, not endpoints"));
            }
            url_list("witness", std::slice::from_ref(&url))?;
            WitnessKind::Embedded {
                url: url.trim_end_matches('/').to_string(),
            }
        }
        other => {
            return Err(invalid(format!(
                "unknown witness kind '{other}': use etcd or embedded"
            )))
        }
    };
    let duration = |value: Option<String>, default: Duration| {
        value
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map(|d| d.unwrap_or(default))
    };
    // The witness crate's defaults and rule: 6 s / 1 s / 2 s, and Patroni's
    // renew_interval + 2 × retry_timeout ≤ ttl.
    let defaults = tandem_witness::LeaseTimings::default();
    let spec = WitnessSpec {
        kind,
        ttl: duration(file.ttl, defaults.ttl)?,
        renew_interval: duration(file.renew_interval, defaults.renew_interval)?,
        retry_timeout: duration(file.retry_timeout, defaults.retry_timeout)?,
    };
    tandem_witness::validate_lease_timings(spec.ttl, spec.renew_interval, spec.retry_timeout)
        .map_err(|error| invalid(format!("witness timings: {error}")))?;
    Ok(spec)
}

fn parse_failover(file: Option<FailoverFile>) -> Result<FailoverPolicy> {
    let mut policy = FailoverPolicy::default();
    let Some(file) = file else { return Ok(policy) };
    if let Some(mode) = file.mode {
        policy.mode = match mode.as_str() {
            "automatic" => FailoverMode::Automatic,
            "manual" => FailoverMode::Manual,
            other => {
                return Err(invalid(format!(
                    "unknown failover mode '{other}': use automatic or manual"
                )))
            }
        };
    }
    if let Some(grace) = file.grace_period {
        policy.grace_period = parse_duration(&grace)?;
    }
    if let Some(lag) = file.maximum_lag_on_failover {
        if lag < 0 {
            return Err(invalid(
                "maximum_lag_on_failover must be 0 or more journal records",
            ));
        }
        policy.maximum_lag_on_failover = lag;
    }
    Ok(policy)
}

impl Deployment {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| DeploymentError::Read {
            path: path.display().to_string(),
            message: error.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base)
    }

    /// Parses a deployment; relative secret-file paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self> {
        let file: DeploymentFile = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
        let mut regions = Vec::new();
        for region in file.regions {
            if region.name.is_empty()
                || !region
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(format!(
                    "region name '{}' must be letters, digits, '-' or '_'",
                    region.name
                )));
            }
            for url in region.url.iter().chain(&region.replicas) {
                url::Url::parse(url)
                    .map_err(|error| invalid(format!("region {}: url '{url}': {error}", region.name)))?;
            }
            let replicas: Vec<String> = region
                .replicas
                .iter()
                .map(|url| url.trim_end_matches('/').to_string())
                .collect();
            if let Some(twice) = replicas
                .iter()
                .enumerate()
                .find(|(index, url)| replicas[..*index].contains(url))
            {
                return Err(invalid(format!(
                    "region {}: replica '{}' is listed twice",
                    region.name, twice.1
                )));
            }
            let Some(url) = region.url.clone().or_else(|| replicas.first().cloned()) else {
                return Err(invalid(format!(
                    "region {} needs url = \"http://host:port\" or replicas = [\"http://host:port\", …]",
                    region.name
                )));
            };
            if regions
                .iter()
                .any(|existing: &RegionSpec| existing.name == region.name)
            {
                return Err(invalid(format!("region '{}' is declared twice", region.name)));
            }
            regions.push(RegionSpec {
                name: region.name,
                url: url.trim_end_matches('/').to_string(),
                replicas,
                pair: region.pair,
            });
        }
        if regions.is_empty() {
            return Err(invalid("a deployment needs at least one region"));
        }
        for region in &regions {
            if let Some(pair) = &region.pair {
                if !regions.iter().any(|candidate| &candidate.name == pair) {
                    return Err(invalid(format!(
                        "region '{}' pairs with unknown region '{pair}'",
                        region.name
                    )));
                }
            }
        }
        for region in &regions {
            if let Some(pair) = &region.pair {
                if pair == &region.name {
                    return Err(invalid(format!(
                        "region '{}' cannot pair with itself",
                        region.name
                    )));
                }
                let partner = regions
                    .iter()
                    .find(|candidate| &candidate.name == pair)
                    .ok_or_else(|| {
                        invalid(format!(
                            "region '{}' pairs with unknown region '{pair}'",
                            region.name
                        ))
                    })?;
                if partner.pair.as_deref().is_some_and(|back| back != region.name) {
                    return Err(invalid(format!(
                        "pairing is not symmetric: '{}' pairs with '{pair}', which pairs with '{}'",
                        region.name,
                        partner.pair.as_deref().unwrap_or_default()
                    )));
                }
            }
        }
        if !regions.iter().any(|region| region.name == file.primary) {
            return Err(invalid(format!(
                "the primary '{}' is not one of the regions",
                file.primary
            )));
        }
        let mut classes: BTreeMap<AssetClass, ClassPolicy> = AssetClass::ALL
            .into_iter()
            .map(|class| (class, ClassPolicy::default()))
            .collect();
        for (name, class) in file.classes {
            let asset_class = AssetClass::parse(&name).ok_or_else(|| {
                invalid(format!(
                    "unknown asset class '{name}': use tracking, registry, assets, files or access"
                ))
            })?;
            let level = ContinuityLevel::parse(&class.level)?;
            let max_rpo = class.max_rpo.as_deref().map(parse_duration).transpose()?;
            if level == ContinuityLevel::HotCold && (class.sync || max_rpo.is_some()) {
                return Err(invalid(format!(
                    "class '{name}' is hot-cold: it is not replicated continuously, so sync and max_rpo do not apply"
                )));
            }
            classes.insert(
                asset_class,
                ClassPolicy {
                    level,
                    sync: class.sync,
                    max_rpo,
                },
            );
        }
        let replication_secret = match (file.replication_secret, file.replication_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give replication_secret or replication_secret_file, not both",
                ));
            }
            (Some(secret), None) => Some(secret),
            (None, Some(path)) => {
                let path = base.join(path);
                let secret = std::fs::read_to_string(&path).map_err(|error| DeploymentError::Read {
                    path: path.display().to_string(),
                    message: error.to_string(),
                })?;
                Some(secret.trim().to_string())
            }
            (None, None) => None,
        };
        let ca_pem = match &file.ca_file {
            Some(path) => Some(read_ca(&base.join(path))?),
            None => None,
        };
        let witness = file.witness.map(parse_witness).transpose()?;
        let failover = parse_failover(file.failover)?;
        let backup = file.backup.map(parse_backup).transpose()?;
        let verify_interval = parse_verify(file.verify)?;
        let mut deployment = Deployment {
            name: file.name,
            regions,
            primary: file.primary,
            classes,
            replication_secret,
            witness,
            failover,
            backup,
            verify_interval,
            ca_pem,
            definition: serde_json::Value::Null,
            digest: String::new(),
        };
        // Taken from the file as parsed, before any region-local override
        // (`reach_witness_at`), so regions that loaded the same file agree.
        deployment.definition = definition::canonical(&deployment);
        deployment.digest = definition::digest(&deployment.definition);
        Ok(deployment)
    }

    /// The deployment as its file defines it, in one canonical JSON form
    /// (durations in milliseconds, every default filled in): two files that
    /// mean the same thing give the same definition whatever their layout
    /// and comments. The replication secret is left out — only whether
    /// there is one — so the definition can be shown to anyone; whether
    /// regions share the secret is proven by using it, not by comparing it.
    pub fn definition(&self) -> &serde_json::Value {
        &self.definition
    }

    /// SHA-256 (hex) of [`Deployment::definition`]: regions that loaded
    /// equivalent files report the same digest.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn regions(&self) -> &[RegionSpec] {
        &self.regions
    }

    pub fn region(&self, name: &str) -> Option<&RegionSpec> {
        self.regions.iter().find(|region| region.name == name)
    }

    /// The primary at bootstrap (the witness decides it afterwards).
    pub fn bootstrap_primary(&self) -> &RegionSpec {
        self.region(&self.primary).expect("validated at construction")
    }

    /// Reaches the witness at `urls` instead of the file's addresses (one
    /// region's own way there: a local proxy, a nearer etcd member).
    /// Trusts the PEM CA in `path` (a process's `--ca-file`) instead of the
    /// file's `ca_file`.
    pub fn trust_ca_file(&mut self, path: &std::path::Path) -> Result<()> {
        self.ca_pem = Some(read_ca(path)?);
        Ok(())
    }

    pub fn reach_witness_at(&mut self, urls: Vec<String>) -> Result<()> {
        let Some(witness) = self.witness.as_mut() else {
            return Err(invalid("the deployment has no [witness] to reach"));
        };
        url_list("witness endpoint", &urls)?;
        let urls: Vec<String> = urls
            .iter()
            .map(|url| url.trim_end_matches('/').to_string())
            .collect();
        witness.kind = match &witness.kind {
            WitnessKind::Etcd { .. } => WitnessKind::Etcd { endpoints: urls },
            WitnessKind::Embedded { .. } => WitnessKind::Embedded {
                url: urls
                    .into_iter()
                    .next()
                    .ok_or_else(|| invalid("no witness address given"))?,
            },
        };
        Ok(())
    }

    /// A client of the witness this deployment names, if any (nothing is
    /// sent until it is used).
    pub fn open_witness(&self) -> Result<Option<std::sync::Arc<dyn tandem_witness::Witness>>> {
        let Some(spec) = &self.witness else {
            return Ok(None);
        };
        let witness: std::sync::Arc<dyn tandem_witness::Witness> = match &spec.kind {
            WitnessKind::Etcd { endpoints } => {
                let mut config = tandem_witness::EtcdWitnessConfig::new(endpoints.clone(), &self.name);
                config.request_timeout = spec.retry_timeout;
                std::sync::Arc::new(
                    tandem_witness::EtcdWitness::new(config).map_err(|error| invalid(error.to_string()))?,
                )
            }
            WitnessKind::Embedded { url } => std::sync::Arc::new(
                tandem_witness::HttpWitness::new(url, spec.retry_timeout)
                    .and_then(|witness| {
                        witness.with_secret(
                            self.replication_secret.as_deref(),
                            self.ca_pem.as_deref(),
                            spec.retry_timeout,
                        )
                    })
                    .map_err(|error| invalid(error.to_string()))?,
            ),
        };
        Ok(Some(witness))
    }

    pub fn policy(&self, class: AssetClass) -> ClassPolicy {
        self.classes.get(&class).copied().unwrap_or_default()
    }

    pub fn classes(&self) -> impl Iterator<Item = (AssetClass, ClassPolicy)> + '_ {
        self.classes.iter().map(|(class, policy)| (*class, *policy))
    }
}

/// Reads a PEM CA file, checking it holds a certificate.
fn read_ca(path: &std::path::Path) -> Result<Vec<u8>> {
    let pem = std::fs::read(path).map_err(|error| DeploymentError::Read {
        path: path.display().to_string(),
        message: error.to_string(),
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name = "contoso"
primary = "eastus"
replication_secret = "s3cret"

[[regions]]
name = "eastus"
url = "http://127.0.0.1:5001/"
pair = "westus"

[[regions]]
name = "westus"
url = "http://127.0.0.1:5002"
pair = "eastus"

[classes.tracking]
level = "hot-warm"
max_rpo = "5s"

[classes.registry]
level = "hot-hot"
sync = true

[classes.files]
level = "hot-cold"
"#;

    fn parse(text: &str) -> Result<Deployment> {
        Deployment::from_toml(text, Path::new("."))
    }

    #[test]
    fn verify_runs_every_six_hours_unless_told_otherwise() {
        assert_eq!(
            parse(EXAMPLE).unwrap().verify_interval,
            Some(DEFAULT_VERIFY_INTERVAL)
        );
        let every = parse(&format!("{EXAMPLE}\n[verify]\ninterval = \"30m\"\n")).unwrap();
        assert_eq!(every.verify_interval, Some(Duration::from_secs(1800)));
        let off = parse(&format!("{EXAMPLE}\n[verify]\ninterval = \"off\"\n")).unwrap();
        assert_eq!(off.verify_interval, None);
        assert!(parse(&format!("{EXAMPLE}\n[verify]\ninterval = \"0s\"\n")).is_err());
        assert!(parse(&format!("{EXAMPLE}\n[verify]\nevery = \"1h\"\n")).is_err());
    }

    #[test]
    fn the_digest_follows_meaning_not_layout_and_never_shows_the_secret() {
        let deployment = parse(EXAMPLE).unwrap();
        assert_eq!(deployment.digest().len(), 64);
        // Comments, order of sections and a trailing slash mean nothing.
        let rearranged = format!("# a comment\n{}", EXAMPLE.replace("5001/", "5001"));
        assert_eq!(parse(&rearranged).unwrap().digest(), deployment.digest());
        // Another secret is not a different definition (it is proven by use)...
        let other_secret = EXAMPLE.replace("s3cret", "other");
        assert_eq!(parse(&other_secret).unwrap().digest(), deployment.digest());
        assert!(!deployment.definition().to_string().contains("s3cret"));
        assert_eq!(deployment.definition()["replication_secret"], true);
        // ...but a changed setting is, and the definition says where.
        let changed = parse(&EXAMPLE.replace("max_rpo = \"5s\"", "max_rpo = \"10s\"")).unwrap();
        assert_ne!(changed.digest(), deployment.digest());
        assert_eq!(changed.definition()["classes"]["tracking"]["max_rpo_ms"], 10_000);
        // A region reaching the witness its own way keeps the file's digest.
        let with_witness =
            format!("{EXAMPLE}\n[witness]\nkind = \"etcd\"\nendpoints = [\"http://10.0.0.9:2379\"]\n");
        let mut here = parse(&with_witness).unwrap();
        let digest = here.digest().to_string();
        here.reach_witness_at(vec!["http://127.0.0.1:12379".to_string()])
            .unwrap();
        assert_eq!(here.digest(), digest);
    }

    #[test]
    fn a_full_file_parses_into_policies() {
        let deployment = parse(EXAMPLE).unwrap();
        assert_eq!(deployment.name, "contoso");
        assert_eq!(deployment.bootstrap_primary().name, "eastus");
        assert_eq!(deployment.bootstrap_primary().url, "http://127.0.0.1:5001");
        assert_eq!(
            deployment.region("westus").unwrap().pair.as_deref(),
            Some("eastus")
        );
        let tracking = deployment.policy(AssetClass::Tracking);
        assert_eq!(tracking.level, ContinuityLevel::HotWarm);
        assert_eq!(tracking.max_rpo, Some(Duration::from_secs(5)));
        let registry = deployment.policy(AssetClass::Registry);
        assert_eq!((registry.level, registry.sync), (ContinuityLevel::HotHot, true));
        assert_eq!(
            deployment.policy(AssetClass::Files).level,
            ContinuityLevel::HotCold
        );
        // Classes not named default to hot-warm.
        assert_eq!(deployment.policy(AssetClass::Access), ClassPolicy::default());
        assert_eq!(deployment.replication_secret.as_deref(), Some("s3cret"));
    }

    #[test]
    fn a_region_may_list_its_replicas() {
        let text = EXAMPLE.replace(
            "url = \"http://127.0.0.1:5002\"",
            "replicas = [\"http://127.0.0.1:5002/\", \"http://127.0.0.1:5003\"]",
        );
        let deployment = Deployment::from_toml(&text, Path::new(".")).unwrap();
        let west = deployment.region("westus").unwrap();
        // Its address is its first replica; its endpoints are all of them.
        assert_eq!(west.url, "http://127.0.0.1:5002");
        assert_eq!(
            west.endpoints(),
            vec!["http://127.0.0.1:5002", "http://127.0.0.1:5003"]
        );
        let east = deployment.region("eastus").unwrap();
        assert!(east.replicas.is_empty());
        assert_eq!(east.endpoints(), vec!["http://127.0.0.1:5001"]);

        let refused = |text: String, expected: &str| {
            let error = Deployment::from_toml(&text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        };
        refused(
            EXAMPLE.replace("url = \"http://127.0.0.1:5002\"", ""),
            "needs url",
        );
        refused(
            EXAMPLE.replace(
                "url = \"http://127.0.0.1:5002\"",
                "replicas = [\"http://127.0.0.1:5002\", \"http://127.0.0.1:5002/\"]",
            ),
            "listed twice",
        );
        refused(
            EXAMPLE.replace("url = \"http://127.0.0.1:5002\"", "replicas = [\"nope\"]"),
            "url 'nope'",
        );
    }

    #[test]
    fn wrong_cross_references_are_refused() {
        let cases = [
            (
                EXAMPLE.replace("primary = \"eastus\"", "primary = \"mars\""),
                "primary",
            ),
            (
                EXAMPLE.replace("pair = \"eastus\"", "pair = \"mars\""),
                "unknown region",
            ),
            (
                EXAMPLE.replace("level = \"hot-cold\"", "level = \"hot-cold\"\nsync = true"),
                "hot-cold",
            ),
            (
                EXAMPLE.replace("level = \"hot-hot\"", "level = \"lukewarm\""),
                "unknown continuity level",
            ),
            (
                EXAMPLE.replace("[classes.files]", "[classes.notebooks]"),
                "unknown asset class",
            ),
            (
                EXAMPLE.replace("max_rpo = \"5s\"", "max_rpo = \"5 fortnights\""),
                "unit",
            ),
            (
                EXAMPLE.replace("name = \"westus\"", "name = \"eastus\""),
                "declared twice",
            ),
            (
                EXAMPLE.replace("url = \"http://127.0.0.1:5002\"", "url = \"not a url\""),
                "url",
            ),
            (
                EXAMPLE.replace("name = \"contoso\"", "name = \"contoso\"\ncolour = 1"),
                "colour",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "expected '{expected}' in: {error}");
        }
    }

    #[test]
    fn witness_and_failover_sections() {
        let deployment = parse(EXAMPLE).unwrap();
        assert_eq!(deployment.witness, None);
        assert_eq!(deployment.failover, FailoverPolicy::default());

        let text = format!(
            "{EXAMPLE}\n[witness]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379/\"]\n\n[failover]\nmode = \"manual\"\ngrace_period = \"1h\"\nmaximum_lag_on_failover = 0\n"
        );
        let deployment = parse(&text).unwrap();
        let witness = deployment.witness.unwrap();
        assert_eq!(
            witness.kind,
            WitnessKind::Etcd {
                endpoints: vec!["http://127.0.0.1:2379".into()]
            }
        );
        let defaults = tandem_witness::LeaseTimings::default();
        assert_eq!(
            (witness.ttl, witness.renew_interval, witness.retry_timeout),
            (defaults.ttl, defaults.renew_interval, defaults.retry_timeout)
        );
        assert_eq!(deployment.failover.mode, FailoverMode::Manual);
        assert_eq!(deployment.failover.grace_period, Duration::from_secs(3600));
        assert_eq!(deployment.failover.maximum_lag_on_failover, 0);

        let embedded =
            format!("{EXAMPLE}\n[witness]\nkind = \"embedded\"\nurl = \"http://127.0.0.1:7000\"\n");
        assert_eq!(
            parse(&embedded).unwrap().witness.unwrap().kind,
            WitnessKind::Embedded {
                url: "http://127.0.0.1:7000".into()
            }
        );

        let cases = [
            ("[witness]\nkind = \"zookeeper\"\n", "unknown witness kind"),
            ("[witness]\nkind = \"etcd\"\n", "needs endpoints"),
            ("[witness]\nkind = \"embedded\"\n", "needs url"),
            (
                "[witness]\nkind = \"etcd\"\nendpoints = [\"http://e:2379\"]\nttl = \"5s\"\nrenew_interval = \"2s\"\nretry_timeout = \"2s\"\n",
                "+ 2 × retry timeout",
            ),
            (
                "[witness]\nkind = \"etcd\"\nendpoints = [\"http://e:2379\"]\nttl = \"2500ms\"\n",
                "whole, non-zero number of seconds",
            ),
            ("[failover]\nmode = \"sometimes\"\n", "unknown failover mode"),
            ("[failover]\nmaximum_lag_on_failover = -1\n", "0 or more"),
            ("[failover]\ngrace = \"1s\"\n", "grace"),
        ];
        for (section, expected) in cases {
            let error = parse(&format!("{EXAMPLE}\n{section}")).unwrap_err().to_string();
            assert!(error.contains(expected), "expected '{expected}' in: {error}");
        }
    }

    #[test]
    fn backup_section() {
        let deployment = parse(&format!(
            "{EXAMPLE}\n[backup]\nurl = \"file:///backups\"\narchive_interval = \"2s\"\nschedule = \"1h\"\n"
        ))
        .unwrap();
        assert_eq!(deployment.verify_interval, Some(DEFAULT_VERIFY_INTERVAL));
        let backup = deployment.backup.unwrap();
        assert_eq!(backup.url, "file:///backups");
        assert_eq!(backup.archive_interval, Duration::from_secs(2));
        assert_eq!(backup.schedule, Some(Duration::from_secs(3600)));
        let error = parse(&format!("{EXAMPLE}\n[backup]\nurl = \"\"\n")).unwrap_err();
        assert!(error.to_string().contains("url is empty"), "{error}");
        assert_eq!(backup.full_every, DEFAULT_FULL_EVERY);
        assert_eq!((backup.keep, backup.ttl), (None, None));
        let deployment = parse(&format!(
            "{EXAMPLE}\n[backup]\nurl = \"x\"\nkeep = 3\nttl = \"30d\"\nfull_every = 2\n"
        ))
        .unwrap();
        let backup = deployment.backup.unwrap();
        assert_eq!(backup.keep, Some(3));
        assert_eq!(backup.ttl, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(backup.full_every, 2);
        for (extra, expected) in [
            ("keep = 0", "keep must be at least 1"),
            ("ttl = \"0s\"", "ttl must be positive"),
            ("ttl = \"3 weeks\"", "unknown duration unit"),
            ("full_every = 0", "full_every must be at least 1"),
            ("keep = -1", "keep"),
            ("retain = 3", "retain"),
        ] {
            let error = parse(&format!("{EXAMPLE}\n[backup]\nurl = \"x\"\n{extra}\n")).unwrap_err();
            assert!(error.to_string().contains(expected), "{extra}: {error}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn secrets_come_from_files_relative_to_the_deployment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "from-file\n").unwrap();
        let text = EXAMPLE.replace(
            "replication_secret = \"s3cret\"",
            "replication_secret_file = \"secret\"",
        );
        let path = dir.path().join("deployment.toml");
        std::fs::write(&path, text).unwrap();
        let deployment = Deployment::from_file(&path).unwrap();
        assert_eq!(deployment.replication_secret.as_deref(), Some("from-file"));
    }
}
