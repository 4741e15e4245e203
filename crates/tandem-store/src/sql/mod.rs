//! [`SqlStore`]: the metadata store on SQLite or PostgreSQL through sqlx's
//! `Any` driver, so both backends run the same statements and differ only in
//! their migrations and connection set-up.

mod access;
mod apply;
mod datasets;
mod dump;
pub(crate) mod duties;
mod epochs;
pub(crate) mod fence;
mod files;
mod fingerprint;
mod history;
mod load;
mod logged_models;
mod lookup;
mod merge;
mod migrate;
mod moving;
mod ops;
mod others;
mod pg_history;
mod read_pool;
mod registry;
mod replicas;
mod replication;
mod restore;
mod retention;
mod retention_apply;
mod rows;
mod run_data;
mod search_entities;
mod search_runs;
mod search_sql;
mod sqlite_reader;
mod statistics;
mod tracking;
mod transfer;
mod workspaces;
mod writer;

pub(crate) use replicas::fence_reason;

/// The advisory lock under which a PostgreSQL database is migrated and its
/// region state initialized: the ASCII of "tandemin" (per database).
const INIT_LOCK_KEY: i64 = 0x7461_6e64_656d_696e;
pub use replicas::{
    ensure_postgres_database, Acknowledgement, ReplicaSeen, RuntimeRecord, SharedAcknowledgement,
};

pub use ops::proxied_artifact_path;

use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Row};
use tandem_core::hlc::HybridClock;
use tandem_core::journal::AssetClass;
use tandem_core::journal::{Change, JournalRecord, FORMAT_VERSION};
use tokio::sync::watch;

use crate::error::{StoreError, StoreResult};
use crate::{written, Clock, RegionPolicy, Standalone, SystemClock, WorkspaceRef};

/// Which database engine holds the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend's name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` or `postgres://…`.
    pub url: String,
    /// This region's name, written as the origin of local changes.
    pub region: String,
    /// Connections in the pool. SQLite readers share the WAL; writers are
    /// serialized in-process anyway.
    pub max_connections: u32,
    /// SQLite's `synchronous` setting: `FULL` makes every commit durable
    /// before it is acknowledged; `NORMAL` may lose the last commits on power
    /// loss (never on a process crash).
    pub sqlite_synchronous: String,
    /// Create the `default` workspace on first open. Off for stores that are
    /// filled from another region's journal (replicas, restores), whose
    /// default workspace arrives with the records.
    pub bootstrap_default_workspace: bool,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>, region: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            region: region.into(),
            max_connections: 8,
            sqlite_synchronous: "FULL".to_string(),
            bootstrap_default_workspace: true,
        }
    }
}

/// The SQL implementation of [`crate::MetadataStore`].
pub struct SqlStore {
    /// Reads, and on PostgreSQL writes too.
    pool: AnyPool,
    /// Where write transactions run: on SQLite a pool of exactly one
    /// connection, whose page cache stays valid between writes (see
    /// `open_with_clock`); on PostgreSQL the same pool as `pool`.
    writer: AnyPool,
    /// Where the large reads run (see `read_pool::ReadPool`).
    read_pool: read_pool::ReadPool,
    backend: Backend,
    region: String,
    /// Serializes writers in this process and groups concurrent ones into
    /// shared commits (`writer.rs`). The journal head row serializes writers
    /// across processes too (PostgreSQL row lock), but serializing here first
    /// keeps SQLite free of busy errors and keeps commit order equal to
    /// sequence order, which readers of `journal_after` rely on.
    writes: writer::Writer,
    clock: Arc<dyn Clock>,
    hlc: HybridClock,
    /// The committed journal head, for followers of the journal to wait on.
    head: Arc<watch::Sender<i64>>,
    /// Active workspaces by name (SQLite only: one process owns the file, so
    /// every change to workspaces passes through this store).
    pub(crate) workspace_names: Arc<WorkspaceNames>,
    /// This region's epoch as stored in `region_state`.
    epoch: std::sync::atomic::AtomicI64,
    /// Decides whether this region may accept a local write of a class now
    /// (role, replication policy). Checked inside every write's transaction.
    policy: std::sync::RwLock<Arc<dyn RegionPolicy>>,
    /// Advanced whenever a change to principals, tokens or role assignments
    /// (or a workspace's lifecycle, which scopes assignments) commits here,
    /// locally or replicated, or (PostgreSQL) is seen committed by another
    /// process sharing the database (`others.rs`): caches of verified
    /// credentials compare it.
    access_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Whether this process runs the region's background duties (see
    /// `duties.rs`): contended for on PostgreSQL, held on SQLite.
    duties: duties::Duties,
    /// Between moves' copies and the garbage collector (`fence.rs`).
    fence: fence::Fence,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .field("region", &self.region)
            .finish()
    }
}

/// The context a write runs in: its transaction and the workspace it changes.
pub(crate) struct WriteTx {
    /// The write's connection, inside its savepoint of the shared
    /// transaction.
    pub tx: writer::WriterGuard,
    pub workspace_id: String,
    pub now: i64,
    /// The records this write appended: (sequence, asset class).
    appended: Vec<(i64, Option<AssetClass>)>,
    /// The sequence number the next record takes: writers are serialized
    /// by `writes`, which knows the last number written (on PostgreSQL read
    /// under the head row's lock when the transaction began); `region_state`
    /// is advanced by a trigger on SQLite, by `writes` before the commit on
    /// PostgreSQL.
    next_seq: i64,
    /// The highest hybrid-clock reading of the write's records.
    hlc: i64,
    workspace_names: Arc<WorkspaceNames>,
    access_generation: Arc<std::sync::atomic::AtomicU64>,
    /// When the writer was taken and on which backend, for the store's
    /// transaction and commit metrics.
    started: std::time::Instant,
    backend: Backend,
    /// Why the region's writes were fenced when the transaction began, if
    /// they were (see `replicas.rs`).
    fence: Option<String>,
}

/// A cache of workspace name resolution, emptied whenever a workspace
/// lifecycle change commits. The generation guards against a lookup that
/// raced such a commit putting a stale entry back.
#[derive(Default)]
pub(crate) struct WorkspaceNames {
    state: std::sync::RwLock<(u64, std::collections::HashMap<String, String>)>,
}

impl WorkspaceNames {
    pub(crate) fn get(&self, name: &str) -> (u64, Option<String>) {
        let state = self.state.read().expect("workspace cache poisoned");
        (state.0, state.1.get(name).cloned())
    }

    pub(crate) fn insert(&self, generation: u64, name: &str, workspace_id: &str) {
        let mut state = self.state.write().expect("workspace cache poisoned");
        if state.0 == generation {
            state.1.insert(name.to_string(), workspace_id.to_string());
        }
    }

    fn invalidate(&self) {
        let mut state = self.state.write().expect("workspace cache poisoned");
        state.0 += 1;
        state.1.clear();
    }
}

impl SqlStore {
    /// Opens (creating if needed) and migrates a store.
    pub async fn open(options: StoreOptions) -> StoreResult<SqlStore> {
        Self::open_with_clock(options, Arc::new(SystemClock)).await
    }

    pub async fn open_with_clock(options: StoreOptions, clock: Arc<dyn Clock>) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = if options.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if options.url.starts_with("postgres:") || options.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Domain(tandem_core::Error::invalid(format!(
                "unsupported metadata url '{}': use sqlite://PATH or postgres://…",
                options.url
            ))));
        };
        let url = match backend {
            Backend::Sqlite if !options.url.contains('?') => format!("{}?mode=rwc", options.url),
            _ => options.url.clone(),
        };
        let connect: AnyConnectOptions = url.parse().map_err(StoreError::database)?;
        let synchronous = match options.sqlite_synchronous.to_ascii_uppercase().as_str() {
            "NORMAL" => "NORMAL",
            "OFF" => "OFF",
            _ => "FULL",
        };
        let pool = connect_pool(
            &connect,
            backend,
            synchronous,
            options.max_connections.max(1),
            false,
        )
        .await?;
        // Processes of one region started together (`tandem up --replicas`)
        // would migrate a new database, initialize its state and create the
        // default workspace at once: the first does it, under an advisory
        // lock, and the others find it done. Released when the connection
        // holding it is closed below.
        let initializing = match backend {
            Backend::Postgres => {
                // A connection of its own, outside the pool: whatever the
                // pool's size, and an error below drops (closes) it.
                use sqlx::Connection;
                let mut conn = AnyConnection::connect_with(&connect).await?;
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_lock($1)) AS taken")
                    .bind(INIT_LOCK_KEY)
                    .execute(&mut conn)
                    .await?;
                Some(conn)
            }
            Backend::Sqlite => None,
        };
        migrate::run(&pool, backend).await?;
        // On SQLite every write goes through one connection of its own. In
        // WAL mode a connection drops its whole page cache when it finds
        // that another connection committed since its last transaction, so
        // writes spread over the pool re-read every page they touch; the
        // one writer connection keeps the pages of the B-trees it appends
        // to (journal, metrics, their indexes) cached from write to write.
        // Writers are serialized by `writes` anyway. PostgreSQL keeps
        // no such per-connection cache: there the pool serves writes too.
        let writer = match backend {
            Backend::Sqlite => connect_pool(&connect, backend, synchronous, 1, true).await?,
            Backend::Postgres => pool.clone(),
        };
        let read_pool = read_pool::ReadPool::open(&url, backend, options.max_connections).await?;

        let existing = sqlx::query("SELECT region, hlc FROM region_state WHERE id = 1")
            .fetch_optional(&pool)
            .await?;
        let hlc_floor = match existing {
            Some(row) => {
                let stored_region: String = row.try_get("region")?;
                if stored_region != options.region {
                    return Err(StoreError::Domain(tandem_core::Error::invalid_state(format!(
                        "this metadata store belongs to region '{stored_region}', not '{}'",
                        options.region
                    ))));
                }
                row.try_get::<i64, _>("hlc")? as u64
            }
            None => {
                sqlx::query(
                    "INSERT INTO region_state (id, region, epoch, journal_head, hlc) VALUES (1, $1, 1, 0, 0)",
                )
                .bind(&options.region)
                .execute(&pool)
                .await?;
                0
            }
        };
        let bootstrap = options.bootstrap_default_workspace;
        let state = sqlx::query("SELECT journal_head, epoch FROM region_state WHERE id = 1")
            .fetch_one(&pool)
            .await?;
        let current_head: i64 = state.try_get("journal_head")?;
        let epoch: i64 = state.try_get("epoch")?;
        let head = Arc::new(watch::channel(current_head).0);
        let access_generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        if backend == Backend::Postgres {
            // Other processes may share the database: learn of their commits.
            others::watch(pool.clone(), &head, access_generation.clone(), current_head);
        }
        let writes = writer::Writer::new(writer.clone(), backend, head.clone());
        let store = SqlStore {
            pool,
            writer,
            read_pool,
            backend,
            region: options.region,
            writes,
            clock,
            hlc: HybridClock::new(hlc_floor),
            head,
            epoch: std::sync::atomic::AtomicI64::new(epoch),
            workspace_names: Arc::new(WorkspaceNames::default()),
            access_generation,
            policy: std::sync::RwLock::new(Arc::new(Standalone)),
            duties: match backend {
                Backend::Sqlite => duties::Duties::always(),
                Backend::Postgres => duties::Duties::contend(url.clone()),
            },
            fence: fence::Fence::default(),
        };
        if bootstrap {
            store.ensure_default_workspace().await?;
        }
        if let Some(conn) = initializing {
            use sqlx::Connection;
            let _ = conn.close().await;
        }
        Ok(store)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether this process runs the region's background duties.
    pub fn duties(&self) -> duties::Duties {
        self.duties.clone()
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// See `MetadataStore::probe_write`: one committed upsert of the
    /// scratch row, on the writer connection under the writer lock, so it
    /// meets exactly what a change would (a full disk, a read-only file, a
    /// database that refuses writes).
    pub(crate) async fn probe_write_impl(&self) -> StoreResult<()> {
        let mut write = self.writes.begin(true).await?;
        sqlx::query(
            "INSERT INTO diagnostics_probe (id, written_at, writes) VALUES (1, $1, 1) \
             ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at, writes = diagnostics_probe.writes + 1",
        )
        .bind(self.now())
        .execute(&mut *write)
        .await?;
        write.finish(None, 0).await
    }

    /// Starts a write: takes the writer lock, joins or opens the shared
    /// transaction (see `writer.rs`).
    pub(crate) async fn begin_write(&self, workspace_id: &str) -> StoreResult<WriteTx> {
        self.begin_write_as(workspace_id, false).await
    }

    /// [`Self::begin_write`] for a write that runs long (a restore that
    /// streams): committed on its own, so the writes before it are not kept
    /// waiting for it.
    pub(crate) async fn begin_write_alone(&self, workspace_id: &str) -> StoreResult<WriteTx> {
        self.begin_write_as(workspace_id, true).await
    }

    async fn begin_write_as(&self, workspace_id: &str, alone: bool) -> StoreResult<WriteTx> {
        let tx = self.writes.begin(alone).await?;
        // Readings after every committed one, whichever process wrote it:
        // the journal's order by sequence is its order by clock too.
        self.hlc.observe(tx.hlc_floor().max(0) as u64);
        let next_seq = tx.last_seq() + 1;
        // Another process of the region may have begun a later epoch.
        self.learn_epoch(tx.epoch_seen());
        let fence = tx.fence();
        Ok(WriteTx {
            fence,
            tx,
            workspace_id: workspace_id.to_string(),
            now: self.now(),
            appended: Vec::new(),
            next_seq,
            hlc: 0,
            workspace_names: self.workspace_names.clone(),
            access_generation: self.access_generation.clone(),
            started: std::time::Instant::now(),
            backend: self.backend,
        })
    }

    /// Journals and applies `change` inside the write's transaction.
    pub(crate) async fn record(&self, write: &mut WriteTx, change: Change) -> StoreResult<i64> {
        self.record_as(write, change, true).await
    }

    /// [`Self::record`], asking the region's policy first only if `check`:
    /// a region that is becoming primary writes its epoch's first record
    /// before it accepts anything else.
    async fn record_as(&self, write: &mut WriteTx, change: Change, check: bool) -> StoreResult<i64> {
        let class = change.asset_class();
        let multi_writer = self.admit(write, class, check)?;
        let seen = match multi_writer {
            true => Some(self.seen_context(write).await?),
            false => None,
        };
        let record = self.numbered(write, change, seen);
        insert_journal(&mut write.tx, &record).await?;
        merge::apply_record(&mut write.tx, &record).await?;
        let seq = record.seq;
        write.appended.push((seq, class));
        Ok(seq)
    }

    /// Asks the region's policy and the database's write fence whether a
    /// change of `class` may be written now (only if `check`); whether the
    /// class has several writers, whose records carry a causal context.
    pub(crate) fn admit(&self, write: &WriteTx, class: Option<AssetClass>, check: bool) -> StoreResult<bool> {
        let policy = self.policy.read().expect("policy lock poisoned").clone();
        let hot_hot = class.is_some_and(|class| policy.multi_writer(class));
        if check {
            policy.check_write(class)?;
            // The database's word on the lease, for every process of the
            // region: this one's own view may be a moment old.
            if let (Some(reason), false) = (&write.fence, hot_hot) {
                return Err(
                    tandem_core::Error::new(tandem_core::ErrorKind::NotPrimary, reason.clone()).into(),
                );
            }
        }
        Ok(hot_hot)
    }

    /// `change` as the next record of `write`: numbered, stamped, signed.
    pub(crate) fn numbered(
        &self,
        write: &mut WriteTx,
        change: Change,
        seen: Option<std::collections::BTreeMap<String, i64>>,
    ) -> JournalRecord {
        let hlc = self.hlc.now(write.now);
        let (seq, epoch) = self.next_position(write, hlc);
        JournalRecord {
            seq,
            workspace_id: write.workspace_id.clone(),
            hlc,
            origin_region: self.region.clone(),
            origin_seq: seq,
            epoch,
            format: FORMAT_VERSION,
            recorded_at: write.now,
            change,
            seen,
            principal: crate::actor::current(),
        }
    }

    /// The sequence number and epoch of the next record of `write`.
    pub(crate) fn next_position(&self, write: &mut WriteTx, hlc: u64) -> (i64, i64) {
        let seq = write.next_seq;
        write.next_seq += 1;
        write.hlc = write.hlc.max(hlc as i64);
        (seq, self.epoch.load(std::sync::atomic::Ordering::Acquire))
    }

    /// What this region has applied of every other origin: the causal
    /// context of a local change to a multi-writer class.
    async fn seen_context(
        &self,
        write: &mut WriteTx,
    ) -> StoreResult<std::collections::BTreeMap<String, i64>> {
        let rows =
            sqlx::query("SELECT origin_region, origin_seq FROM origin_progress WHERE origin_region <> $1")
                .bind(&self.region)
                .fetch_all(&mut *write.tx)
                .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("origin_region")?, row.try_get("origin_seq")?)))
            .collect()
    }

    pub(crate) fn multi_writer(&self, class: AssetClass) -> bool {
        self.policy
            .read()
            .expect("policy lock poisoned")
            .multi_writer(class)
    }

    /// A new identifier for local allocation: the smallest number of this region's stripe at least `floor`, or `floor`
    /// itself while the class has a single writer.
    pub(crate) fn allocate_id(&self, class: AssetClass, floor: i64) -> i64 {
        let policy = self.policy.read().expect("policy lock poisoned").clone();
        match policy.id_stripe() {
            // Offset by one so that numbering starts at 1 in the first
            // region: 1, 3, 5, … there and 2, 4, 6, … in the second.
            Some(stripe) if policy.multi_writer(class) => stripe.next_at_least(floor - 1) + 1,
            _ => floor,
        }
    }

    /// Commits a write; a failure here leaves the outcome unknown. Once
    /// committed, the new head is announced to journal followers and the
    /// appended records are reported to the request's [`written`] scope.
    pub(crate) async fn commit(write: WriteTx) -> StoreResult<()> {
        let WriteTx {
            tx,
            appended,
            hlc,
            workspace_names,
            access_generation,
            started,
            backend,
            ..
        } = write;
        let committed = tx.finish(appended.last().map(|(seq, _)| *seq), hlc).await;
        metrics::histogram!("tandem_store_write_seconds", "backend" => backend.as_str())
            .record(started.elapsed().as_secs_f64());
        committed?;
        metrics::counter!("tandem_journal_records_total").increment(appended.len() as u64);
        if appended.iter().any(|(_, class)| class.is_none()) {
            workspace_names.invalidate();
        }
        if appended
            .iter()
            .any(|(_, class)| matches!(class, None | Some(AssetClass::Access)))
        {
            access_generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        if !appended.is_empty() {
            written::report(&appended);
        }
        Ok(())
    }

    /// Raises the epoch local records are stamped with to at least `epoch`.
    pub(crate) fn learn_epoch(&self, epoch: i64) {
        self.epoch.fetch_max(epoch, std::sync::atomic::Ordering::AcqRel);
    }

    /// Begins `epoch` with this region as primary: in one transaction, the
    /// epoch's first record (with the fork: the history this region holds)
    /// and the region's epoch. Every later local record carries it.
    pub(crate) async fn start_epoch(
        &self,
        epoch: i64,
    ) -> StoreResult<std::collections::BTreeMap<String, i64>> {
        let mut write = self.begin_write(tandem_core::journal::DEPLOYMENT_RECORD).await?;
        let current: i64 = sqlx::query_scalar("SELECT epoch FROM region_state WHERE id = 1")
            .fetch_one(&mut *write.tx)
            .await?;
        // A fresh store stands at epoch 1 with no epoch begun: a witness's
        // first grant (the embedded witness's revision 1) may begin it.
        let begun: Option<i64> = sqlx::query_scalar("SELECT MAX(epoch) FROM epochs")
            .fetch_one(&mut *write.tx)
            .await?;
        if epoch < current || (epoch == current && begun.is_some()) {
            return Err(StoreError::Domain(tandem_core::Error::invalid(format!(
                "cannot begin epoch {epoch}: this region already knows epoch {current}"
            ))));
        }
        let fork = epochs::fork_point(&mut write.tx).await?;
        sqlx::query("UPDATE region_state SET epoch = $1 WHERE id = 1")
            .bind(epoch)
            .execute(&mut *write.tx)
            .await?;
        let previous = self.epoch.swap(epoch, std::sync::atomic::Ordering::AcqRel);
        let change = Change::EpochBegan {
            epoch,
            primary: self.region.clone(),
            fork: fork.clone(),
            time: write.now,
        };
        let outcome = match self.record_as(&mut write, change, false).await {
            Ok(_) => Self::commit(write).await,
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            let _ = self.epoch.compare_exchange(
                epoch,
                previous,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            );
            return Err(error);
        }
        Ok(fork)
    }

    /// Returns once every write that began before the call has committed or
    /// failed: writers hold the writer lock from their policy check to their
    /// commit, so taking it once is a barrier.
    pub(crate) async fn drain_writes(&self) {
        self.writes.drain().await;
    }

    /// The fence between moves and the collector (see `fence.rs`).
    pub(crate) async fn artifact_fence(&self, exclusive: bool) -> StoreResult<fence::ArtifactFence> {
        match self.backend {
            Backend::Sqlite => Ok(self.fence.local(exclusive).await),
            Backend::Postgres => fence::Fence::session(&self.pool, exclusive).await,
        }
    }

    pub(crate) fn access_generation(&self) -> u64 {
        self.access_generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn install_policy(&self, policy: Arc<dyn RegionPolicy>) {
        *self.policy.write().expect("policy lock poisoned") = policy;
    }

    /// Convenience for writes that are a single change.
    pub(crate) async fn write_one(&self, ws: &WorkspaceRef, change: Change) -> StoreResult<()> {
        let mut write = self.begin_write(&ws.workspace_id).await?;
        self.record(&mut write, change).await?;
        Self::commit(write).await
    }
}

/// The columns [`decode_journal_row`] reads.
pub(crate) const JOURNAL_COLUMNS: &str =
    "seq, workspace_id, hlc, origin_region, origin_seq, epoch, format, recorded_at, payload, seen, voided, principal";

pub(crate) fn decode_journal_row(row: &sqlx::any::AnyRow) -> StoreResult<JournalRecord> {
    let format: i32 = row.try_get::<i64, _>("format")? as i32;
    let payload: String = row.try_get("payload")?;
    Ok(JournalRecord {
        seq: row.try_get("seq")?,
        workspace_id: row.try_get("workspace_id")?,
        hlc: row.try_get::<i64, _>("hlc")? as u64,
        origin_region: row.try_get("origin_region")?,
        origin_seq: row.try_get("origin_seq")?,
        epoch: row.try_get("epoch")?,
        format,
        recorded_at: row.try_get("recorded_at")?,
        change: JournalRecord::decode_change(format, &payload).map_err(StoreError::Corrupt)?,
        seen: row
            .try_get::<Option<String>, _>("seen")?
            .map(|seen| serde_json::from_str(&seen))
            .transpose()
            .map_err(|error| StoreError::Corrupt(format!("journal record context: {error}")))?,
        principal: row.try_get("principal")?,
    })
}

/// A pool of at most `max_connections` connections to `connect`, set up for
/// `backend` (on SQLite: WAL, the `synchronous` level, case-sensitive LIKE;
/// for the `writer`, temporary storage in memory).
async fn connect_pool(
    connect: &AnyConnectOptions,
    backend: Backend,
    synchronous: &'static str,
    max_connections: u32,
    writer: bool,
) -> StoreResult<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        // No ping before every checkout: it is a round trip per query
        // (to SQLite's connection thread, or to PostgreSQL), and a
        // broken connection fails its query with an error anyway.
        .test_before_acquire(false)
        .after_connect(move |connection, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers proceed beside the writer; LIKE must be
                    // case-sensitive as MLflow's is (ILIKE is spelled out).
                    for pragma in [
                        "PRAGMA journal_mode = WAL".to_string(),
                        format!("PRAGMA synchronous = {synchronous}"),
                        "PRAGMA busy_timeout = 10000".to_string(),
                        "PRAGMA case_sensitive_like = ON".to_string(),
                    ] {
                        sqlx::query(&pragma).execute(&mut *connection).await?;
                    }
                    if writer {
                        // A multi-row insert keeps a statement journal (the
                        // pages it changed, to undo it alone); past 64 KiB
                        // SQLite spills it to a temporary file, created anew
                        // for every large batch. The writer's statements are
                        // inserts and updates, whose temporary data is small.
                        sqlx::query("PRAGMA temp_store = MEMORY")
                            .execute(&mut *connection)
                            .await?;
                        // Table statistics for the query planner, refreshed
                        // where they are missing or stale (SQLite's advice
                        // for a new connection): without them it may read a
                        // page of runs through the workspace index instead of
                        // their primary keys, several times slower at
                        // 100,000 runs. Bounded work (an analysis limit).
                        sqlx::query("PRAGMA optimize = 0x10002")
                            .execute(&mut *connection)
                            .await?;
                    }
                }
                Ok(())
            })
        })
        .connect_with(connect.clone())
        .await
        .map_err(StoreError::database)
}

pub(crate) async fn insert_journal(tx: &mut AnyConnection, record: &JournalRecord) -> StoreResult<()> {
    insert_journal_voided(tx, record, None).await
}

/// Appends `record`; `voided` is the epoch that fenced it, if it is not part
/// of the state.
pub(crate) async fn insert_journal_voided(
    tx: &mut AnyConnection,
    record: &JournalRecord,
    voided: Option<i64>,
) -> StoreResult<()> {
    let query = sqlx::query(
        "INSERT INTO journal (seq, workspace_id, hlc, origin_region, origin_seq, epoch, format, kind, recorded_at, payload, asset_class, seen, voided, principal) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    );
    bind_journal_record(query, record, voided)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds a journal record's fourteen columns, in the order of
/// [`insert_journal_voided`]'s statement.
pub(crate) fn bind_journal_record<'q>(
    query: AnyQuery<'q>,
    record: &'q JournalRecord,
    voided: Option<i64>,
) -> AnyQuery<'q> {
    query
        .bind(record.seq)
        .bind(&record.workspace_id)
        .bind(record.hlc as i64)
        .bind(&record.origin_region)
        .bind(record.origin_seq)
        .bind(record.epoch)
        .bind(record.format)
        .bind(record.change.kind())
        .bind(record.recorded_at)
        .bind(JournalRecord::encode_change(&record.change))
        .bind(
            record
                .change
                .asset_class()
                .map(|class| class.as_str())
                .unwrap_or(""),
        )
        .bind(
            record
                .seen
                .as_ref()
                .map(|seen| serde_json::to_string(seen).expect("maps encode")),
        )
        .bind(voided)
        .bind(record.principal.as_deref())
}
