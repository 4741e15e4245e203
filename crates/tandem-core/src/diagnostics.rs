//! What one region reports about its own part in a failover
//! (`GET /api/tandem/v1/diagnostics`): the facts only that region can see —
//! its wall clock, whether it reaches the witness, whether its storage
//! takes writes and has room, whether its peers accept its replication
//! secret, when its workspaces were last backed up, which deployment
//! definition it loaded. `tandem-replication` composes it, `tandem doctor`
//! reads it through `tandem-client`; plain data, so both sides share one
//! definition.

use serde::{Deserialize, Serialize};

/// The version of [`RegionDiagnostics`]; a reader refuses a newer one.
pub const DIAGNOSTICS_FORMAT: u32 = 1;

/// One region's diagnostics document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionDiagnostics {
    pub format: u32,
    pub region: String,
    pub deployment: String,
    /// The region's wall clock (ms since the Unix epoch) when the request
    /// arrived and when the answer was composed: NTP's t1 and t2, so the
    /// caller can estimate the clock's offset from its own without the
    /// probes' duration in between counting as distance.
    pub received_at_ms: i64,
    pub answered_at_ms: i64,
    /// SHA-256 of the deployment definition the region loaded (the file as
    /// parsed, the replication secret left out): equal in every region when
    /// their files agree.
    pub deployment_digest: String,
    /// That definition, so a difference can be named key by key.
    pub deployment_definition: serde_json::Value,
    /// The witness as this region reaches it; none without a `[witness]`.
    pub witness: Option<WitnessProbe>,
    pub storage: StorageProbe,
    /// One authenticated call to every other region.
    pub peers: Vec<PeerProbe>,
    /// The backup repository as this region sees it; none when it has none.
    pub backups: Option<BackupReport>,
    pub tls: TlsReport,
    /// The last `tandem verify` this region ran; none if it has not since
    /// it started (the primary verifies every `[verify] interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSummary>,
    /// The deployment's `[verify] interval` (ms); none: on demand only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_interval_ms: Option<u64>,
}

/// What the last verification of the replicas found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationSummary {
    pub verified_by: String,
    pub finished_at_ms: i64,
    /// Every workspace equal in every region, every region reached.
    pub ok: bool,
    /// Objects that differed between regions.
    pub differences: usize,
    /// Regions that could not be asked.
    #[serde(default)]
    pub unreachable: Vec<String>,
    /// Workspaces that kept changing until they could not be compared.
    #[serde(default)]
    pub unverified_workspaces: usize,
}

/// One round trip to the witness (asking who leads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WitnessProbe {
    /// `etcd` or `embedded`.
    pub kind: String,
    /// The addresses this region uses (its own override included).
    pub endpoints: Vec<String>,
    /// How long one request to the witness may take (`retry_timeout`).
    pub retry_timeout_ms: u64,
    pub round_trip_ms: f64,
    /// Why the witness did not answer; none when it did.
    pub error: Option<String>,
    /// Who leads, as the witness answered.
    pub leader: Option<String>,
    pub epoch: Option<u64>,
}

/// The region's storage: one real write to each store, and room left on
/// its local volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageProbe {
    pub metadata: WriteProbe,
    pub artifacts: WriteProbe,
    pub volumes: Vec<VolumeSpace>,
}

/// A write made only to see that it can be made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteProbe {
    /// What was written to (a database or storage URL, password hidden).
    pub target: String,
    pub duration_ms: f64,
    /// Why the write failed; none when it succeeded.
    pub error: Option<String>,
}

/// Room on one local filesystem the region writes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeSpace {
    /// What lives there: `data`, `metadata`, `artifacts`.
    pub label: String,
    pub path: String,
    pub total_bytes: u64,
    /// What an unprivileged writer may still use.
    pub available_bytes: u64,
    /// Why the filesystem could not be asked; none when it answered.
    pub error: Option<String>,
}

/// How a peer answered an authenticated replication call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerOutcome {
    /// The peer accepted this region's replication secret.
    Accepted,
    /// The peer answered 401: the secrets differ.
    Refused,
    /// No answer (connection refused, timed out).
    Unreachable,
    /// Some other answer (an error status, an older version).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerProbe {
    pub region: String,
    pub url: String,
    pub outcome: PeerOutcome,
    pub round_trip_ms: f64,
    /// What went wrong, in the peer's or the transport's words.
    pub detail: Option<String>,
}

/// The backup repository as one region sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    pub repository: String,
    /// Why the repository could not be read; none when it could.
    pub error: Option<String>,
    /// Time between scheduled backups, when they are scheduled.
    pub schedule_seconds: Option<f64>,
    pub archive_interval_seconds: f64,
    /// The newest backup in the repository.
    pub latest: Option<BackupSummary>,
    /// Every active workspace of the region and its newest backup.
    pub workspaces: Vec<WorkspaceBackup>,
    /// This region's journal head and how far its archive reaches.
    pub journal_head: i64,
    pub archived_to: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub id: String,
    /// `full` or `incremental`.
    pub kind: String,
    pub region: String,
    pub created_at: i64,
    /// None: every workspace of its region.
    pub workspace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceBackup {
    pub name: String,
    pub workspace_id: String,
    pub last_backup_id: Option<String>,
    pub last_backup_at: Option<i64>,
}

/// The region's own TLS certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsReport {
    /// Whether the region serves TLS itself.
    pub configured: bool,
    /// When its certificate expires (ms since the Unix epoch).
    pub certificate_not_after_ms: Option<i64>,
    /// In words: what serves TLS, or why nothing does.
    pub detail: String,
}
