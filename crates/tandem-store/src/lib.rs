//! The metadata store: every workspace's state and the journal of its
//! changes, in one database.
//!
//! Architecture invariant: this is the only crate that writes state, and it
//! writes nothing without journaling it. Every write method validates the
//! request against the current state, turns it into a
//! [`tandem_core::journal::Change`], and in one transaction appends the
//! journal record and applies the change with the same function that
//! [`MetadataStore::apply_record`] uses to replay or replicate records. So the
//! journal always describes the state exactly, and the state can always be
//! rebuilt from the journal.
//!
//! API boundary: [`MetadataStore`], implemented by [`SqlStore`] on SQLite
//! (embedded default) and PostgreSQL. Only this crate imports sqlx.

mod error;
pub mod fingerprint;
pub mod retention;
mod sql;

pub use error::{StoreError, StoreResult, WriteOutcome};
pub use sql::duties::{Duties, CONTEND_EVERY};
pub use sql::fence::ArtifactFence;
pub use sql::{
    ensure_postgres_database, proxied_artifact_path, Acknowledgement, Backend, ReplicaSeen, RuntimeRecord,
    SharedAcknowledgement, SqlStore, StoreOptions,
};

use async_trait::async_trait;
use tandem_core::journal::AssetClass;
use tandem_core::journal::JournalRecord;
use tandem_core::model::*;
use tandem_core::search::{LoggedModelDataset, LoggedModelOrder, Page};

/// What this region's role and its deployment's replication policy allow
/// now. The store asks it before journaling any local change (a refused
/// write certainly did not happen); the API asks it before serving a read and
/// before acknowledging a write (synchronous replication). `None` is the
/// class of workspace lifecycle changes.
#[async_trait]
pub trait RegionPolicy: Send + Sync {
    /// Whether a local write of `class` may happen now.
    fn check_write(&self, class: Option<AssetClass>) -> Result<(), tandem_core::Error>;
    /// Whether this region may serve workspace data at all: a region that
    /// joined a deployment starts empty and does not, until the bootstrap
    /// data (the `default` workspace) has arrived from the primary.
    fn check_serving(&self) -> Result<(), tandem_core::Error> {
        Ok(())
    }
    /// Whether this region may serve reads of `class` (a secondary does not
    /// serve a class it does not replicate continuously: its copy is stale).
    fn check_read(&self, _class: AssetClass) -> Result<(), tandem_core::Error> {
        Ok(())
    }
    /// Returns once the committed records a request appended may be
    /// acknowledged to the client.
    async fn acknowledge(&self, _appended: &[(i64, Option<AssetClass>)]) -> Result<(), tandem_core::Error> {
        Ok(())
    }
    /// Whether several regions write `class` at once (`hot-hot`): its local
    /// changes carry their causal context and every change of it is merged.
    fn multi_writer(&self, _class: AssetClass) -> bool {
        false
    }
    /// This region's stripe of identifiers that must not collide with other
    /// regions' (experiment ids, model version numbers).
    fn id_stripe(&self) -> Option<tandem_core::merge::IdStripe> {
        None
    }
}

/// The policy of a region on its own: everything is allowed at once.
pub struct Standalone;

impl RegionPolicy for Standalone {
    fn check_write(&self, _class: Option<AssetClass>) -> Result<(), tandem_core::Error> {
        Ok(())
    }
}

/// Which journal records a request's writes appended. A request handler runs
/// inside [`written::scope`]; after it, the caller knows the sequence numbers
/// and classes to wait on (synchronous replication acknowledges a write only
/// once the secondary has it).
pub mod written {
    use std::cell::RefCell;
    use tandem_core::journal::AssetClass;

    tokio::task_local! {
        static APPENDED: RefCell<Vec<(i64, Option<AssetClass>)>>;
    }

    /// Runs `future`, collecting the records its committed writes appended.
    pub async fn scope<F: std::future::Future>(future: F) -> (F::Output, Vec<(i64, Option<AssetClass>)>) {
        APPENDED
            .scope(RefCell::new(Vec::new()), async move {
                let output = future.await;
                let appended = APPENDED.with(|cell| cell.take());
                (output, appended)
            })
            .await
    }

    pub(crate) fn report(appended: &[(i64, Option<AssetClass>)]) {
        let _ = APPENDED.try_with(|cell| cell.borrow_mut().extend_from_slice(appended));
    }
}

/// Who is making a request's writes: the HTTP layer runs each
/// authenticated request inside [`actor::scope`], and every journal record
/// the request's writes append carries that principal (the audit).
pub mod actor {
    tokio::task_local! {
        static PRINCIPAL: Option<String>;
    }

    /// Runs `future` with `principal` as the author of its writes.
    pub async fn scope<F: std::future::Future>(principal: Option<String>, future: F) -> F::Output {
        PRINCIPAL.scope(principal, future).await
    }

    /// The principal of the current request, if any.
    pub fn current() -> Option<String> {
        PRINCIPAL.try_with(|principal| principal.clone()).ok().flatten()
    }
}

/// The name of the workspace that also answers at the root of the API.
pub const DEFAULT_WORKSPACE: &str = "default";
/// MLflow's default experiment, present in every workspace.
pub const DEFAULT_EXPERIMENT_ID: &str = "0";
pub const DEFAULT_EXPERIMENT_NAME: &str = "Default";

/// A workspace resolved from its name: what every workspace-scoped call takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRef {
    pub workspace_id: String,
    pub name: String,
}

/// The source of the time written into changes. Injectable so that tests of
/// timers (retention, purge) need not wait.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_millis(&self) -> Millis;
}

#[derive(Debug, Default)]
pub struct SystemClock;

/// The system's time, as [`SystemClock`] gives it.
pub fn now_millis() -> Millis {
    SystemClock.now_millis()
}

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default)]
pub struct CreateRun {
    pub experiment_id: String,
    pub user_id: String,
    pub start_time: Option<Millis>,
    pub run_name: Option<String>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateRun {
    pub status: Option<RunStatus>,
    pub end_time: Option<Millis>,
    pub run_name: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SearchRuns {
    pub experiment_ids: Vec<String>,
    pub filter: String,
    pub view_type: ViewType,
    pub max_results: usize,
    pub order_by: Vec<String>,
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub filter: String,
    pub view_type: ViewType,
    pub max_results: usize,
    pub order_by: Vec<String>,
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CreateLoggedModel {
    pub experiment_id: String,
    pub name: Option<String>,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
    pub creator_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct SearchLoggedModels {
    pub experiment_ids: Vec<String>,
    pub filter: String,
    pub datasets: Vec<LoggedModelDataset>,
    pub max_results: usize,
    pub order_by: Vec<LoggedModelOrder>,
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CreateModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: String,
    pub run_link: String,
    pub description: String,
    pub tags: Vec<Tag>,
    pub model_id: String,
    pub user_id: String,
}

/// Where a region's journal stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalPosition {
    pub region: String,
    pub epoch: i64,
    pub head: i64,
}

/// Records of one class a follower has not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreplicatedClass {
    /// None for workspace lifecycle records.
    pub class: Option<AssetClass>,
    pub oldest_recorded_at: Millis,
    pub records: i64,
    /// Size of the encoded records (artifact bytes travel separately).
    pub bytes: i64,
}

/// One leadership epoch as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EpochInfo {
    pub epoch: i64,
    pub primary: String,
    /// For every origin region, the highest `origin_seq` of its changes the
    /// new primary held: the history the epoch continues.
    pub fork: std::collections::BTreeMap<String, i64>,
    pub began_at: Millis,
}

/// A change that never reached the primary of a later epoch: voided here and
/// kept, with its content, until someone re-applies it on purpose.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DivergentRecord {
    /// `<origin region>-<origin seq>`: the same in every region holding it.
    pub id: String,
    /// Its position in this region's journal.
    pub seq: i64,
    pub voided_by_epoch: i64,
    pub reason: String,
    pub found_at: Millis,
    /// `quarantined` or `applied`.
    pub status: String,
    /// For an artifact write, where its bytes are: `pending` (not yet moved
    /// aside), `kept` (in the quarantine area of this region's storage) or
    /// `missing` (overwritten before they could be kept).
    pub artifact_state: Option<String>,
    /// The journal position, at the primary that re-applied it, of the new change.
    pub applied_seq: Option<i64>,
    pub applied_at: Option<Millis>,
    pub record: JournalRecord,
}

/// A move between two workspaces (`tandem move`), planned against the
/// state it was read from: what it will do, and the artifacts whose bytes
/// the caller copies to the destination before committing it.
#[derive(Debug, Clone, PartialEq)]
pub struct MovePlan {
    pub outcome: tandem_core::transfer::MoveOutcome,
    pub artifacts: Vec<MovedArtifact>,
    pub(crate) departures: Vec<tandem_core::journal::Change>,
    pub(crate) arrivals: Vec<tandem_core::journal::Change>,
    /// Each moved experiment's id here and there, kept when re-planned.
    pub(crate) experiment_ids: std::collections::BTreeMap<String, String>,
}

/// One artifact a move takes: its path in the source workspace's artifact
/// area and in the destination's, with the size and digest recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MovedArtifact {
    pub from_path: String,
    pub to_path: String,
    pub size: i64,
    pub sha256: String,
}

/// What committing a planned move did.
#[derive(Debug, Clone, PartialEq)]
pub enum MoveCommit {
    Committed(tandem_core::transfer::MoveOutcome),
    /// Something the move takes changed after it was planned: this is the
    /// plan of the state now (copy its artifacts and commit it instead).
    Changed(Box<MovePlan>),
}

/// A canonical, ordered dump of every table but the journal: two stores hold
/// the same state exactly when their dumps are equal.
pub type StateDump = Vec<(String, Vec<serde_json::Value>)>;

/// The workspace state and its journal. One implementation, [`SqlStore`],
/// runs on SQLite and PostgreSQL; `tests/conformance.rs` holds the suite
/// every backend passes.
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> Backend;

    /// Whether this process runs the region's background duties (purge,
    /// garbage collection, scheduled backups): one of the processes sharing
    /// a database at a time.
    fn duties(&self) -> Duties;

    /// Sets the region's write fence, which every process sharing the
    /// database reads with its writes (PostgreSQL; nothing on SQLite, whose
    /// one process checks its lease in memory): local writes that need the
    /// primary's lease are refused from `until` (ms since the epoch) on, or
    /// while `closed` says why. Returns once no write begun under the old
    /// fence is still open, in any process.
    async fn set_write_fence(&self, until: Option<i64>, closed: Option<&str>) -> StoreResult<()>;
    /// Publishes the duty holder's runtime document for the region's other
    /// processes (PostgreSQL; nothing on SQLite).
    async fn publish_runtime(&self, holder: &str, document: &str) -> StoreResult<()>;
    /// Says this replica of the region is alive (with whether it holds the
    /// duties) and returns the replicas alive in the last seconds
    /// (PostgreSQL; on SQLite this process alone).
    async fn heartbeat_replica(
        &self,
        replica: &str,
        url: Option<&str>,
        holds_duties: bool,
    ) -> StoreResult<Vec<ReplicaSeen>>;
    /// The direct multipart uploads shared by the region's replicas (see
    /// `tandem_artifacts::UploadLedger`; region-local, not journaled).
    async fn open_direct_upload(&self, key: &str, upload_id: &str, num_parts: u32) -> StoreResult<()>;
    /// Removes an open direct upload, returning its number of parts.
    async fn take_direct_upload(&self, key: &str, upload_id: &str) -> StoreResult<Option<u32>>;
    /// The direct uploads opened more than `max_age_ms` ago.
    async fn direct_uploads_opened_before(&self, max_age_ms: i64) -> StoreResult<Vec<(String, String)>>;
    /// How many direct uploads are open.
    async fn direct_uploads_open(&self) -> StoreResult<usize>;
    /// The runtime document last published, if any.
    async fn runtime(&self) -> StoreResult<Option<RuntimeRecord>>;
    /// Adds this process's latest acknowledgements from secondaries to the
    /// shared ones (each position only moves forward) and returns them all.
    async fn share_acknowledgements(
        &self,
        ours: &[Acknowledgement<'_>],
    ) -> StoreResult<Vec<SharedAcknowledgement>>;

    /// The fence between a move's artifact copies and its commit (held
    /// shared) and the garbage collector's check-then-delete (held alone),
    /// across every process on the database: see [`ArtifactFence`].
    async fn artifact_fence(&self, exclusive: bool) -> StoreResult<ArtifactFence>;

    // Journal.
    async fn journal_position(&self) -> StoreResult<JournalPosition>;
    /// Records after `after`, in order, at most `limit`, optionally only one
    /// workspace's.
    async fn journal_after(
        &self,
        after: i64,
        workspace_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<JournalRecord>>;
    /// Records after `after`, in order, at most `limit`, each with whether
    /// it was voided (fenced by a later epoch): what a backup archives.
    async fn journal_entries_after(&self, after: i64, limit: i64) -> StoreResult<Vec<(JournalRecord, bool)>>;
    /// Applies a record read from another region's archive (the `hot-cold`
    /// classes restored at failover), with its origin kept, unless this
    /// region already holds that exact change. Unlike `apply_record` it does
    /// not assume an origin's changes arrive in order: the archive fills in
    /// what replication skipped. Returns whether it was applied.
    async fn apply_archived(&self, record: &JournalRecord) -> StoreResult<bool>;
    /// Applies a record written elsewhere (replay, replication, restore),
    /// appending it to this journal with its origin kept. Records from an
    /// origin already applied up to or past `origin_seq` are skipped, so
    /// re-delivery is harmless. Returns whether it was applied.
    async fn apply_record(&self, record: &JournalRecord) -> StoreResult<bool>;
    async fn dump_state(&self) -> StoreResult<StateDump>;
    /// Fingerprints of every workspace (or one, by id), each read in one
    /// consistent snapshot (see [`fingerprint`]).
    async fn fingerprints(
        &self,
        workspace_id: Option<&str>,
    ) -> StoreResult<Vec<fingerprint::WorkspaceFingerprint>>;
    /// The rows of one state table of one workspace, with their digests.
    async fn fingerprint_rows(&self, workspace_id: &str, table: &str) -> StoreResult<fingerprint::TableRows>;
    /// Applies a record read from `source_region`'s journal (replication).
    /// With `apply` false (a class this region does not replicate
    /// continuously) only the position advances. The position is kept in the
    /// same transaction, so after a crash the follower resumes exactly after
    /// the last record it applied. Returns whether the record changed state.
    async fn apply_replicated(
        &self,
        source_region: &str,
        record: &JournalRecord,
        apply: bool,
    ) -> StoreResult<bool>;
    /// Whether the change `origin_seq` of `origin_region` is in this
    /// region's journal (applied here, or written here).
    async fn knows_change(&self, origin_region: &str, origin_seq: i64) -> StoreResult<bool>;
    /// How far this region has applied `source_region`'s journal.
    async fn replication_position(&self, source_region: &str) -> StoreResult<i64>;
    /// The committed journal head, updated as writes commit.
    fn subscribe_head(&self) -> tokio::sync::watch::Receiver<i64>;
    /// For each asset class with changes written here after journal position
    /// `after`: the oldest such change's time and how many there are (what
    /// losing this region would lose while a peer is at `after`: the RPO).
    async fn unreplicated_since(&self, after: i64) -> StoreResult<Vec<UnreplicatedClass>>;
    /// Conflicts between concurrent writes of multi-writer classes merged
    /// here, newest first (all workspaces when `workspace_id` is None).
    async fn list_conflicts(
        &self,
        workspace_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<tandem_core::merge::Conflict>>;
    /// Installs the policy that decides which local writes this region takes.
    fn set_policy(&self, policy: std::sync::Arc<dyn RegionPolicy>);

    // Epochs and the divergence quarantine.
    /// Begins `epoch` with this region as primary: journals the epoch's
    /// first record, carrying the fork (returned), and stamps every later
    /// local record with the epoch. Refused unless `epoch` is newer than
    /// every epoch this region knows.
    async fn begin_epoch(&self, epoch: i64) -> StoreResult<std::collections::BTreeMap<String, i64>>;
    /// The history this region holds: for every origin region, the highest
    /// `origin_seq` of its changes that are part of the state.
    async fn history(&self) -> StoreResult<std::collections::BTreeMap<String, i64>>;
    /// The epochs this region knows, oldest first.
    async fn epochs(&self) -> StoreResult<Vec<EpochInfo>>;
    /// How many records this region holds that epoch `epoch`, forked at
    /// `fork`, fences: exactly what its quarantine takes (or took) when it
    /// follows that epoch. What a forced failover to `epoch` lost here.
    async fn records_beyond_fork(
        &self,
        epoch: i64,
        fork: &std::collections::BTreeMap<String, i64>,
    ) -> StoreResult<i64>;
    /// Returns once every local write that started before the call has
    /// committed or failed (a planned failover's barrier after writes stop).
    async fn drain_writes(&self);
    /// The quarantine, in journal order.
    async fn list_divergence(&self) -> StoreResult<Vec<DivergentRecord>>;
    async fn get_divergence(&self, id: &str) -> StoreResult<DivergentRecord>;
    /// At the primary: applies a quarantined change again, on purpose, as a
    /// new local change (policy checked, journaled, replicated). Applying
    /// the same one twice returns the first application's position.
    async fn reapply_divergent(&self, record: &JournalRecord) -> StoreResult<i64>;
    /// Marks a quarantined change as re-applied at `applied_seq` by the primary.
    async fn mark_divergence_applied(&self, id: &str, applied_seq: i64) -> StoreResult<()>;
    /// Records where a quarantined artifact write's bytes are.
    async fn set_divergence_artifact_state(&self, id: &str, state: &str) -> StoreResult<()>;

    // Workspaces.
    async fn create_workspace(&self, name: &str, description: &str) -> StoreResult<Workspace>;
    async fn get_workspace(&self, name: &str) -> StoreResult<Workspace>;
    async fn list_workspaces(&self, view: ViewType) -> StoreResult<Vec<Workspace>>;
    async fn delete_workspace(&self, name: &str) -> StoreResult<Workspace>;
    /// Resolves an active workspace by name, for every scoped call.
    async fn resolve_workspace(&self, name: &str) -> StoreResult<WorkspaceRef>;

    // Experiments.
    async fn create_experiment(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        artifact_location: Option<&str>,
        tags: Vec<Tag>,
    ) -> StoreResult<String>;
    async fn get_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<Experiment>;
    async fn get_experiment_by_name(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<Experiment>;
    async fn search_experiments(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<Experiment>>;
    async fn rename_experiment(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        new_name: &str,
    ) -> StoreResult<()>;
    async fn delete_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<()>;
    async fn restore_experiment(&self, ws: &WorkspaceRef, experiment_id: &str) -> StoreResult<()>;
    async fn set_experiment_tag(&self, ws: &WorkspaceRef, experiment_id: &str, tag: Tag) -> StoreResult<()>;
    async fn delete_experiment_tag(
        &self,
        ws: &WorkspaceRef,
        experiment_id: &str,
        key: &str,
    ) -> StoreResult<()>;

    // Runs.
    async fn create_run(&self, ws: &WorkspaceRef, request: CreateRun) -> StoreResult<Run>;
    async fn get_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<Run>;
    async fn update_run(&self, ws: &WorkspaceRef, run_id: &str, update: UpdateRun) -> StoreResult<RunInfo>;
    async fn delete_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<()>;
    async fn restore_run(&self, ws: &WorkspaceRef, run_id: &str) -> StoreResult<()>;
    async fn search_runs(&self, ws: &WorkspaceRef, query: SearchRuns) -> StoreResult<Page<Run>>;
    /// `log-batch`; also what log-metric, log-parameter and set-tag use.
    async fn log_batch(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<Param>,
        tags: Vec<Tag>,
    ) -> StoreResult<()>;
    async fn delete_run_tag(&self, ws: &WorkspaceRef, run_id: &str, key: &str) -> StoreResult<()>;
    async fn log_inputs(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    ) -> StoreResult<()>;
    async fn log_outputs(&self, ws: &WorkspaceRef, run_id: &str, models: Vec<ModelOutput>)
        -> StoreResult<()>;
    async fn get_metric_history(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        max_results: Option<usize>,
        page_token: Option<&str>,
    ) -> StoreResult<tandem_core::history::HistoryPage>;
    /// The history of `key` in `run_id` within `range` of `axis` (inclusive),
    /// made chartable: every point when there are at most `2 × buckets`,
    /// else each of about `buckets` buckets' minimum and maximum, computed
    /// by the database without reading every point.
    async fn metric_history_envelope(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        axis: tandem_core::history::HistoryAxis,
        range: Option<(i64, i64)>,
        buckets: usize,
    ) -> StoreResult<tandem_core::history::HistoryEnvelope>;
    /// The distinct datasets the runs of `experiment_ids` used as inputs,
    /// each with its context, ordered by experiment, name, digest and
    /// context; at most `limit` of them (MLflow's `SearchDatasets`).
    async fn search_datasets(
        &self,
        ws: &WorkspaceRef,
        experiment_ids: &[String],
        limit: usize,
    ) -> StoreResult<Vec<tandem_core::model::DatasetSummary>>;
    /// MLflow 3.17's bulk-interval sample of `key` in `run_id` (at most
    /// about `max_results` points, the first and last kept, within `range`
    /// of steps), ordered by step, timestamp and value, without reading
    /// every point.
    /// Writes one object copied from another server, whole, in one
    /// transaction with its origin (see `tandem_core::transfer`): created,
    /// brought up to date, left unchanged (same digest) or skipped.
    async fn import_object(
        &self,
        ws: &WorkspaceRef,
        request: tandem_core::transfer::ImportRequest,
    ) -> StoreResult<tandem_core::transfer::ImportOutcome>;
    /// Plans moving the experiments and registered models `request` names
    /// from `from` to `to` (see `tandem_core::transfer::MoveRequest`):
    /// refuses what cannot move (a name the destination holds, a reference
    /// that would cross the two workspaces); writes nothing.
    async fn plan_move(
        &self,
        from: &WorkspaceRef,
        to: &WorkspaceRef,
        request: &tandem_core::transfer::MoveRequest,
    ) -> StoreResult<MovePlan>;
    /// Writes a planned move in one transaction (the departures in `from`'s
    /// journal, the arrivals in `to`'s), once the plan's artifacts are at
    /// the destination, unless what it takes changed since it was planned.
    async fn commit_move(
        &self,
        from: &WorkspaceRef,
        to: &WorkspaceRef,
        request: &tandem_core::transfer::MoveRequest,
        planned: &MovePlan,
    ) -> StoreResult<MoveCommit>;
    /// The origins of the workspace's copies of `source`'s objects.
    async fn transfer_origins(
        &self,
        ws: &WorkspaceRef,
        source: &str,
    ) -> StoreResult<Vec<tandem_core::transfer::Origin>>;
    async fn metric_history_sampled(
        &self,
        ws: &WorkspaceRef,
        run_id: &str,
        key: &str,
        max_results: usize,
        range: Option<(i64, i64)>,
    ) -> StoreResult<Vec<Metric>>;

    // Logged models.
    async fn create_logged_model(
        &self,
        ws: &WorkspaceRef,
        request: CreateLoggedModel,
    ) -> StoreResult<LoggedModel>;
    async fn get_logged_model(&self, ws: &WorkspaceRef, model_id: &str) -> StoreResult<LoggedModel>;
    async fn finalize_logged_model(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> StoreResult<LoggedModel>;
    async fn delete_logged_model(&self, ws: &WorkspaceRef, model_id: &str) -> StoreResult<()>;
    async fn set_logged_model_tags(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        tags: Vec<Tag>,
    ) -> StoreResult<()>;
    async fn delete_logged_model_tag(&self, ws: &WorkspaceRef, model_id: &str, key: &str) -> StoreResult<()>;
    async fn log_logged_model_params(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        params: Vec<Param>,
    ) -> StoreResult<()>;
    async fn search_logged_models(
        &self,
        ws: &WorkspaceRef,
        query: SearchLoggedModels,
    ) -> StoreResult<Page<LoggedModel>>;

    // Registered models.
    async fn create_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        description: &str,
        tags: Vec<Tag>,
        user_id: &str,
    ) -> StoreResult<RegisteredModel>;
    async fn get_registered_model(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<RegisteredModel>;
    async fn rename_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        new_name: &str,
    ) -> StoreResult<RegisteredModel>;
    async fn update_registered_model(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        description: &str,
    ) -> StoreResult<RegisteredModel>;
    async fn delete_registered_model(&self, ws: &WorkspaceRef, name: &str) -> StoreResult<()>;
    async fn search_registered_models(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<RegisteredModel>>;
    async fn get_latest_versions(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        stages: &[String],
    ) -> StoreResult<Vec<ModelVersion>>;
    async fn set_registered_model_tag(&self, ws: &WorkspaceRef, name: &str, tag: Tag) -> StoreResult<()>;
    async fn delete_registered_model_tag(&self, ws: &WorkspaceRef, name: &str, key: &str) -> StoreResult<()>;
    async fn set_registered_model_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
        version: &str,
    ) -> StoreResult<()>;
    async fn delete_registered_model_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
    ) -> StoreResult<()>;
    async fn get_model_version_by_alias(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
    ) -> StoreResult<ModelVersion>;

    // Model versions.
    async fn create_model_version(
        &self,
        ws: &WorkspaceRef,
        request: CreateModelVersion,
    ) -> StoreResult<ModelVersion>;
    async fn get_model_version(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<ModelVersion>;
    /// Where a version's files are (MLflow's `get-download-uri`): the source,
    /// or what a `models:/` source resolved to.
    async fn get_model_version_download_uri(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<String>;
    async fn update_model_version(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        description: &str,
    ) -> StoreResult<ModelVersion>;
    async fn transition_model_version_stage(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> StoreResult<ModelVersion>;
    async fn delete_model_version(&self, ws: &WorkspaceRef, name: &str, version: &str) -> StoreResult<()>;
    async fn search_model_versions(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<ModelVersion>>;
    async fn set_model_version_tag(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        tag: Tag,
    ) -> StoreResult<()>;
    async fn delete_model_version_tag(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        key: &str,
    ) -> StoreResult<()>;

    // Artifacts (the index of what the artifact proxy stored).
    /// Checks that `path` lies inside the artifact root of an existing run or
    /// logged model of the workspace that still accepts artifacts.
    async fn check_artifact_owner(&self, ws: &WorkspaceRef, path: &str, for_write: bool) -> StoreResult<()>;
    async fn record_artifact(
        &self,
        ws: &WorkspaceRef,
        path: &str,
        size: i64,
        sha256: &str,
    ) -> StoreResult<()>;
    async fn delete_artifact(&self, ws: &WorkspaceRef, path: &str) -> StoreResult<()>;
    async fn list_artifact_entries(&self, ws: &WorkspaceRef, prefix: &str)
        -> StoreResult<Vec<ArtifactEntry>>;

    // The workspace file share (the index; bytes at `workspaces/<id>/files/`).
    /// Refuses a write to `path` before its bytes are stored: the workspace
    /// is not active, or `path` is a directory or lies under a file.
    async fn check_file_write(&self, ws: &WorkspaceRef, path: &str) -> StoreResult<()>;
    /// Journals a file written at `path` (checked again under the writer
    /// lock).
    async fn record_file(
        &self,
        ws: &WorkspaceRef,
        path: &str,
        size: i64,
        sha256: &str,
    ) -> StoreResult<FileEntry>;
    /// Deletes a file or a directory (every file under it); returns what it
    /// removed, or not-found when nothing is there.
    async fn delete_file(&self, ws: &WorkspaceRef, path: &str) -> StoreResult<Vec<FileEntry>>;
    /// The files at or under `prefix` (all of them for ""), in path order.
    async fn list_files(&self, ws: &WorkspaceRef, prefix: &str) -> StoreResult<Vec<FileEntry>>;

    // Soft delete with retention (see `retention`).
    /// Creates a workspace with its retention settings, in one write.
    async fn create_workspace_with(
        &self,
        name: &str,
        description: &str,
        settings: retention::WorkspaceSettings,
    ) -> StoreResult<Workspace>;
    /// A workspace by name or id, active or deleted.
    async fn find_workspace(&self, name_or_id: &str) -> StoreResult<Workspace>;
    /// Changes an active workspace's description, retention or purge
    /// protection (which never turns off again).
    async fn update_workspace(
        &self,
        name: &str,
        update: retention::WorkspaceUpdate,
    ) -> StoreResult<Workspace>;
    async fn recover_workspace(&self, name_or_id: &str) -> StoreResult<Workspace>;
    /// Removes a deleted workspace and every row of it for good (refused
    /// under purge protection before its retention ends).
    async fn purge_workspace(&self, name_or_id: &str, keep_artifacts: bool) -> StoreResult<Workspace>;
    /// Deleted items of an active workspace, oldest deletion first.
    async fn list_deleted(&self, ws: &WorkspaceRef) -> StoreResult<Vec<retention::DeletedItem>>;
    /// Recovers a deleted item under its own name. A deleted registered
    /// model is found by its id or, when only one deleted model has it,
    /// by its name.
    async fn recover_deleted(
        &self,
        ws: &WorkspaceRef,
        kind: retention::DeletedKind,
        id: &str,
    ) -> StoreResult<()> {
        self.recover_deleted_as(ws, kind, id, None).await
    }
    /// Recovers a deleted item; a registered model under `new_name` if
    /// given (its versions, tags and aliases follow it). Refused with
    /// `RESOURCE_ALREADY_EXISTS` when the name it would take is held by an
    /// active model.
    async fn recover_deleted_as(
        &self,
        ws: &WorkspaceRef,
        kind: retention::DeletedKind,
        id: &str,
        new_name: Option<&str>,
    ) -> StoreResult<()>;
    async fn purge_deleted(
        &self,
        ws: &WorkspaceRef,
        kind: retention::DeletedKind,
        id: &str,
        keep_artifacts: bool,
    ) -> StoreResult<()>;
    /// Refreshes the statistics the database plans queries with where they
    /// are stale (SQLite's `PRAGMA optimize`: cheap when nothing grew; on
    /// PostgreSQL an `ANALYZE` of the tables autovacuum would analyze, for
    /// when it is off). Called periodically.
    async fn refresh_planner_statistics(&self) -> StoreResult<()>;
    /// Purges every workspace and item whose retention ended (by the
    /// store's clock). Does nothing where local writes are refused: a
    /// secondary receives the primary's purges by replication.
    async fn purge_expired(&self) -> StoreResult<retention::PurgeReport>;
    /// Garbage-collection queue entries due now, at most `limit`.
    async fn gc_due(&self, limit: i64) -> StoreResult<Vec<retention::GcEntry>>;
    /// Every entry of the queue, due or not (status and tests).
    async fn gc_pending(&self) -> StoreResult<Vec<retention::GcEntry>>;
    /// Commits one write to a region-local scratch row (not journaled, not
    /// state), through the same writer every change takes: proof that the
    /// database takes writes now (`tandem doctor`). A full disk is
    /// `StoreError::Full`, as for any write.
    async fn probe_write(&self) -> StoreResult<()>;
    async fn gc_done(&self, prefix: &str) -> StoreResult<()>;
    /// Refuses (507 `RESOURCE_EXHAUSTED`) a write of `size` bytes at `path`
    /// of `area` (`artifacts` or `files`) that would take the workspace past
    /// its storage quota; checked before an upload streams, and again when
    /// it is recorded.
    async fn check_storage_quota(
        &self,
        ws: &WorkspaceRef,
        area: &str,
        path: &str,
        size: i64,
    ) -> StoreResult<()>;
    /// The artifact roots (paths in the workspace's proxied storage) of the
    /// runs, logged models and model versions the workspace still has that
    /// lie under `under` (ending in `/`): what collecting `under` must spare.
    async fn protected_artifact_roots(&self, workspace_id: &str, under: &str) -> StoreResult<Vec<String>>;
    /// Records a failed attempt; the entry is retried after `retry_after_ms`.
    async fn gc_failed(&self, prefix: &str, error: &str, retry_after_ms: i64) -> StoreResult<()>;
    // Restore (tandem-backup).
    /// Begins restoring workspace `workspace_id` named `name` in ONE
    /// transaction: refused (already exists) if a workspace, active or
    /// deleted, holds the id or the name. The session's first change must be
    /// that workspace's creation; nothing is visible before `commit`, and a
    /// session dropped uncommitted rolls everything back.
    async fn begin_restore<'a>(
        &'a self,
        workspace_id: &str,
        name: &str,
    ) -> StoreResult<Box<dyn RestoreSession + 'a>>;

    // Access: principals, tokens, role assignments (deployment-wide records
    // of the `access` class). Only hashes reach the store.
    /// Creates a user or service principal; `password_hash` is an Argon2id
    /// PHC string.
    async fn create_principal(
        &self,
        name: &str,
        kind: &str,
        password_hash: Option<String>,
    ) -> StoreResult<tandem_core::access::Principal>;
    async fn principal(&self, name: &str) -> StoreResult<Option<tandem_core::access::Principal>>;
    async fn list_principals(&self) -> StoreResult<Vec<tandem_core::access::Principal>>;
    /// The stored password hash of `name`, for verifying a login.
    async fn password_hash(&self, name: &str) -> StoreResult<Option<String>>;
    async fn set_password(&self, name: &str, password_hash: Option<String>) -> StoreResult<()>;
    async fn set_principal_disabled(&self, name: &str, disabled: bool) -> StoreResult<()>;
    /// Deletes the principal with its tokens and role assignments.
    async fn delete_principal(&self, name: &str) -> StoreResult<()>;
    async fn create_token(
        &self,
        token_id: &str,
        principal: &str,
        token_hash: &str,
        description: &str,
        expires_at: Option<Millis>,
    ) -> StoreResult<tandem_core::access::TokenInfo>;
    async fn token(&self, token_id: &str) -> StoreResult<Option<tandem_core::access::TokenInfo>>;
    async fn token_by_hash(&self, token_hash: &str) -> StoreResult<Option<tandem_core::access::TokenInfo>>;
    async fn list_tokens(&self, principal: Option<&str>) -> StoreResult<Vec<tandem_core::access::TokenInfo>>;
    async fn revoke_token(&self, token_id: &str) -> StoreResult<tandem_core::access::TokenInfo>;
    /// Records (region-locally, not journaled) that a token was used.
    async fn touch_token(&self, token_id: &str, at: Millis) -> StoreResult<()>;
    /// Assigns `role` to `principal` in workspace `workspace` (by name) or,
    /// with None, at deployment scope. Assigning what is held is a no-op.
    async fn assign_role(
        &self,
        principal: &str,
        role: tandem_core::access::Role,
        workspace: Option<&str>,
    ) -> StoreResult<tandem_core::access::RoleAssignment>;
    async fn remove_role(
        &self,
        principal: &str,
        role: tandem_core::access::Role,
        workspace: Option<&str>,
    ) -> StoreResult<()>;
    /// Role assignments, by principal and/or by workspace name.
    async fn role_assignments(
        &self,
        principal: Option<&str>,
        workspace: Option<&str>,
    ) -> StoreResult<Vec<tandem_core::access::RoleAssignment>>;
    /// Every principal, token and role assignment, hashes included: what a
    /// backup keeps.
    async fn access_snapshot(&self) -> StoreResult<tandem_core::access::AccessSnapshot>;
    /// Advances whenever an access change (or a workspace lifecycle change)
    /// commits in this process: credential caches compare it.
    fn access_generation(&self) -> u64;
}

/// A restore under way (see [`MetadataStore::begin_restore`]): changes are
/// fed in chunks so a large workspace never sits in memory whole. Each one
/// is journaled as a new local change of this region (the region's policy
/// decides per change class) and applied as any change is.
#[async_trait]
pub trait RestoreSession: Send {
    async fn apply(&mut self, changes: Vec<tandem_core::journal::Change>) -> StoreResult<()>;
    /// Commits the restore; returns how many changes it wrote.
    async fn commit(self: Box<Self>) -> StoreResult<i64>;
}
