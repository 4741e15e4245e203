//! Group commit: concurrent writes share one database transaction and one
//! commit.
//!
//! Writes are serialized in this process (one at a time holds [`Writer`]'s
//! lock, in arrival order). Each runs inside a savepoint of the open
//! transaction; when it ends and other writes are queued behind it, the
//! transaction stays open for them and the write waits for the commit that
//! ends it. The last write of a run of queued ones (or a flush task queued
//! behind them) commits, and the commit's outcome is every member's. On
//! SQLite with `synchronous = FULL` a commit is a WAL fsync: 64 writers
//! pay for one fsync instead of 64, and a write is still acknowledged only
//! once it is durable. On PostgreSQL the same holds for the commit record's
//! flush, and the journal head row lock is taken once per transaction.
//!
//! A write that fails (validation, a constraint, a lost race) is rolled back
//! to its savepoint before the next write runs, so it leaves nothing behind
//! and does not affect the others; a failure that ends the whole transaction
//! (a full disk on SQLite, a failed commit) is reported to every member:
//! none of them was acknowledged, so nothing acknowledged is lost.
//!
//! The journal stays gap-free and in commit order: sequence numbers are
//! taken in lock order, a rolled-back write gives its numbers back, and a
//! transaction commits all its writes' records or none.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Row};
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use super::Backend;
use crate::error::{StoreError, StoreResult, WriteOutcome};

/// How many writes one transaction holds at most: bounds what one failed
/// commit takes down and how long the first member waits. On PostgreSQL
/// each write's savepoint is a subtransaction, and past 64 of them in one
/// transaction other sessions' visibility checks slow down.
fn max_batch(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 256,
        Backend::Postgres => 64,
    }
}

/// Serializes this process's writes and groups the concurrent ones into
/// shared transactions. Clones share the state.
#[derive(Clone)]
pub(crate) struct Writer {
    pool: AnyPool,
    backend: Backend,
    state: Arc<Mutex<Batching>>,
    /// Writes waiting for the lock: the one ending its write leaves the
    /// transaction open for them.
    queued: Arc<AtomicUsize>,
    /// A flush task is queued for the lock (at most one is).
    flush_scheduled: Arc<AtomicBool>,
    /// The committed journal head, announced by the commit that advances it.
    head: Arc<watch::Sender<i64>>,
}

pub(crate) struct Batching {
    open: Option<Batch>,
    /// The sequence number of the last journal record written (committed,
    /// or in the open transaction); SQLite numbers records in memory.
    last_seq: i64,
    /// The last committed one: where `last_seq` returns if a transaction
    /// fails.
    committed_seq: i64,
    /// The highest hybrid-clock reading of the open transaction's records,
    /// stored with the head on PostgreSQL (a trigger does both on SQLite).
    hlc: i64,
    /// The highest reading committed when the open transaction began
    /// (PostgreSQL, read with the head): another server process sharing
    /// the database may have written it, and this one's records must order
    /// after it, as their sequence numbers do.
    hlc_floor: i64,
    /// The region's epoch and write fence as stored when the open
    /// transaction began (PostgreSQL, read with the head; 0 and none on
    /// SQLite, whose one process knows them). Another process of the
    /// region may have begun an epoch or closed the region's writes.
    epoch: i64,
    fence: Option<String>,
}

struct Batch {
    conn: PoolConnection<Any>,
    outcome: watch::Sender<Option<Result<(), Failure>>>,
    writes: usize,
    /// A write's savepoint is open: the write is running, or it was
    /// abandoned (an error, a dropped request) and must be rolled back
    /// before anything else runs.
    dirty: bool,
    /// A savepoint is open that no write has used yet: begun in the same
    /// round trip as something else — on SQLite the release of the write
    /// that left the transaction open for the next one (a round trip to
    /// SQLite's connection thread wakes two threads, nearly half of a small
    /// write's CPU), on PostgreSQL the transaction's BEGIN.
    armed: bool,
}

/// Why a shared transaction ended without committing, as each member sees it.
#[derive(Clone, Debug)]
struct Failure {
    message: String,
    full: bool,
    outcome: WriteOutcome,
}

impl Failure {
    fn of(error: StoreError, outcome: WriteOutcome) -> Failure {
        let (message, full) = match error {
            StoreError::Full { message } => (message, true),
            StoreError::Database { message, .. } => (message, false),
            other => (other.to_string(), false),
        };
        Failure {
            message,
            full,
            outcome,
        }
    }

    fn into_error(self) -> StoreError {
        if self.full {
            StoreError::Full {
                message: self.message,
            }
        } else {
            StoreError::Database {
                message: self.message,
                outcome: self.outcome,
            }
        }
    }
}

/// The lock held by one write, through which it reaches the transaction's
/// connection.
pub(crate) struct WriterGuard {
    guard: Option<OwnedMutexGuard<Batching>>,
    writer: Writer,
    /// Committed alone: the transaction is committed before this write
    /// begins and right after it ends (a restore, which streams for long).
    solo: bool,
}

/// Counts a writer queued for the lock, also when its future is dropped
/// while it waits.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

const SAVEPOINT: &str = "SAVEPOINT tandem_write";
const RELEASE_AND_BEGIN: [&str; 2] = ["RELEASE SAVEPOINT tandem_write", SAVEPOINT];
const ROLLBACK_TO: [&str; 2] = [
    "ROLLBACK TO SAVEPOINT tandem_write",
    "RELEASE SAVEPOINT tandem_write",
];

async fn exec(conn: &mut AnyConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(conn).await.map(|_| ())
}

/// Two statements in one round trip to SQLite's connection thread (each
/// round trip there wakes two threads, nearly half of a small write's CPU). SQLite
/// runs every statement of a query; PostgreSQL's prepared statements, which
/// sqlx makes of every query, take one.
async fn exec_sqlite(conn: &mut AnyConnection, statements: [&'static str; 2]) -> Result<(), sqlx::Error> {
    exec(conn, &statements.join("; ")).await
}

/// Several statements without binds in one round trip (PostgreSQL's simple
/// query protocol), their rows. Through `Executor`, whose boxed future can
/// be spawned (`RawSql::fetch_all`'s is generic over the executor's
/// lifetime).
fn simple_query<'c>(
    conn: &'c mut AnyConnection,
    sql: &'c str,
) -> futures::future::BoxFuture<'c, Result<Vec<sqlx::any::AnyRow>, sqlx::Error>> {
    sqlx::Executor::fetch_all(conn, sqlx::raw_sql(sql))
}

impl Writer {
    pub(crate) fn new(pool: AnyPool, backend: Backend, head: Arc<watch::Sender<i64>>) -> Writer {
        let at = *head.borrow();
        Writer {
            pool,
            backend,
            state: Arc::new(Mutex::new(Batching {
                open: None,
                last_seq: at,
                committed_seq: at,
                hlc: 0,
                hlc_floor: 0,
                epoch: 0,
                fence: None,
            })),
            queued: Arc::new(AtomicUsize::new(0)),
            flush_scheduled: Arc::new(AtomicBool::new(false)),
            head,
        }
    }

    /// Takes the lock, in arrival order.
    async fn lock(&self) -> OwnedMutexGuard<Batching> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _queued = Queued(&self.queued);
        self.state.clone().lock_owned().await
    }

    /// Begins a write: the lock, the transaction (joined or opened), the
    /// write's savepoint. Past the lock, in a task of its own: a request
    /// dropped meanwhile (a client that hung up) must not leave a
    /// transaction half-begun on the connection.
    pub(crate) async fn begin(&self, solo: bool) -> StoreResult<WriterGuard> {
        let state = self.lock().await;
        let writer = self.clone();
        let task = tokio::spawn(async move { writer.begin_locked(state, solo).await });
        task.await.expect("the writer's task panicked")
    }

    async fn begin_locked(
        self,
        mut state: OwnedMutexGuard<Batching>,
        solo: bool,
    ) -> StoreResult<WriterGuard> {
        self.settle(&mut state).await;
        if solo {
            self.commit_open(&mut state).await;
        }
        if state.open.is_none() {
            let mut conn = self.pool.acquire().await?;
            let mut armed = false;
            if self.backend == Backend::Postgres {
                // Other server processes may share this database: hold the
                // journal head from the start so validation reads see every
                // earlier commit and no other writer commits before us. The
                // transaction's records are numbered on from it in memory
                // (one statement a transaction, not one a record), and the
                // head is stored once, before the commit.
                // The epoch and the fence come with it: a write that
                // holds the row is ordered after every change to them.
                // One round trip, the first write's savepoint with it (a
                // simple query of three statements, which takes no binds).
                let head = simple_query(
                    &mut conn,
                    "BEGIN; SELECT journal_head, hlc, epoch, writes_until, writes_closed FROM region_state WHERE id = 1 FOR UPDATE; SAVEPOINT tandem_write",
                )
                .await
                .and_then(|rows| rows.into_iter().next().ok_or(sqlx::Error::RowNotFound))
                .and_then(|row| {
                    Ok((
                        row.try_get::<i64, _>(0)?,
                        row.try_get::<i64, _>(1)?,
                        row.try_get::<i64, _>(2)?,
                        row.try_get::<Option<i64>, _>(3)?,
                        row.try_get::<Option<String>, _>(4)?,
                    ))
                });
                match head {
                    Ok((head, hlc, epoch, until, closed)) => {
                        state.last_seq = head;
                        state.committed_seq = head;
                        state.hlc_floor = hlc;
                        state.epoch = epoch;
                        // The fence's deadline is wall-clock milliseconds,
                        // written by the process holding the lease (the
                        // region's processes share a clock source).
                        state.fence = crate::sql::fence_reason(until, closed, crate::now_millis());
                        armed = true;
                    }
                    Err(error) => {
                        if exec(&mut conn, "ROLLBACK").await.is_err() {
                            conn.close_on_drop();
                        }
                        return Err(error.into());
                    }
                }
            } else {
                exec(&mut conn, "BEGIN").await?;
            }
            state.hlc = 0;
            let (outcome, _) = watch::channel(None);
            state.open = Some(Batch {
                conn,
                outcome,
                writes: 0,
                dirty: false,
                armed,
            });
        }
        let batch = state.open.as_mut().expect("a transaction was just opened");
        if batch.armed {
            batch.armed = false;
            batch.dirty = true;
            return Ok(WriterGuard {
                guard: Some(state),
                writer: self,
                solo,
            });
        }
        if let Err(error) = exec(&mut batch.conn, SAVEPOINT).await {
            let message = format!("could not begin the write: {error}");
            let failure = Failure::of(StoreError::database(error), WriteOutcome::Aborted);
            self.rollback_open(&mut state, Some(failure)).await;
            return Err(StoreError::Database {
                message,
                outcome: WriteOutcome::Aborted,
            });
        }
        batch_of(&mut state).dirty = true;
        Ok(WriterGuard {
            guard: Some(state),
            writer: self,
            solo,
        })
    }

    /// Returns once every write that began before the call has committed or
    /// failed: the lock, then the open transaction committed.
    pub(crate) async fn drain(&self) {
        let state = self.lock().await;
        drop(self.settled(state).await);
    }

    /// The lock with no transaction open, for work on the writer's
    /// connection outside any write (statistics).
    pub(crate) async fn idle(&self) -> OwnedMutexGuard<Batching> {
        let state = self.lock().await;
        self.settled(state).await
    }

    /// `state` with any abandoned write rolled back and the open
    /// transaction committed. In a task of its own: a request dropped
    /// meanwhile (a client that hung up) must not cut a commit short, which
    /// would leave its members without an outcome and the numbering unsure.
    async fn settled(&self, mut state: OwnedMutexGuard<Batching>) -> OwnedMutexGuard<Batching> {
        let writer = self.clone();
        let task = tokio::spawn(async move {
            writer.settle(&mut state).await;
            writer.commit_open(&mut state).await;
            state
        });
        task.await.expect("the writer's task panicked")
    }

    /// Rolls back an abandoned write's savepoint. A rollback that fails
    /// ends the transaction (the others' writes with it).
    async fn settle(&self, state: &mut Batching) {
        let Some(batch) = state.open.as_mut() else { return };
        if !batch.dirty {
            return;
        }
        if batch.writes == 0 {
            // Nobody else is in the transaction: end it.
            self.rollback_open(state, None).await;
            return;
        }
        let rolled = match self.backend {
            Backend::Sqlite => exec_sqlite(&mut batch.conn, ROLLBACK_TO).await,
            // The savepoint stays, hidden by the next write's.
            Backend::Postgres => exec(&mut batch.conn, ROLLBACK_TO[0]).await,
        };
        match rolled {
            Ok(()) => batch.dirty = false,
            Err(error) => {
                let failure = Failure::of(StoreError::database(error), WriteOutcome::Aborted);
                self.rollback_open(state, Some(failure)).await;
            }
        }
    }

    /// Ends the open transaction by a rollback; members learn `failure`.
    async fn rollback_open(&self, state: &mut Batching, failure: Option<Failure>) {
        let Some(mut batch) = state.open.take() else {
            return;
        };
        if exec(&mut batch.conn, "ROLLBACK").await.is_err() {
            // In an unknown state: not back to the pool.
            batch.conn.close_on_drop();
        }
        state.last_seq = state.committed_seq;
        let failure = failure.unwrap_or_else(|| Failure {
            message: "the write's transaction was rolled back".into(),
            full: false,
            outcome: WriteOutcome::Aborted,
        });
        batch.outcome.send_replace(Some(Err(failure)));
    }

    /// Commits the open transaction, if any, and tells its members.
    async fn commit_open(&self, state: &mut Batching) {
        let Some(mut batch) = state.open.take() else {
            return;
        };
        let backend = self.backend.as_str();
        let committing = Instant::now();
        // On PostgreSQL the head and the commit go in one round trip: a
        // simple query of two statements (the numbers are formatted, not
        // bound). If the update fails, PostgreSQL skips the COMMIT and the
        // transaction is rolled back below.
        let committed = if self.backend == Backend::Postgres && state.last_seq > state.committed_seq {
            let sql = format!(
                "UPDATE region_state SET journal_head = {}, hlc = GREATEST(hlc, {}) WHERE id = 1; COMMIT",
                state.last_seq, state.hlc
            );
            simple_query(&mut batch.conn, &sql).await.map(|_| ())
        } else {
            exec(&mut batch.conn, "COMMIT").await
        };
        metrics::histogram!("tandem_store_commit_seconds", "backend" => backend)
            .record(committing.elapsed().as_secs_f64());
        metrics::histogram!("tandem_store_commit_writes", "backend" => backend).record(batch.writes as f64);
        let outcome = if committed.is_ok() { "committed" } else { "failed" };
        metrics::counter!("tandem_store_commits_total", "backend" => backend, "outcome" => outcome)
            .increment(1);
        match committed {
            Ok(()) => {
                state.committed_seq = state.last_seq;
                self.announce(state.committed_seq);
                batch.outcome.send_replace(Some(Ok(())));
            }
            Err(error) => {
                let error = StoreError::commit(error);
                let outcome = match &error {
                    StoreError::Database { outcome, .. } => *outcome,
                    _ => WriteOutcome::Aborted,
                };
                // A commit that failed may leave the transaction open
                // (SQLite's busy): end it, or drop the connection.
                if exec(&mut batch.conn, "ROLLBACK").await.is_err() {
                    batch.conn.close_on_drop();
                }
                state.last_seq = state.committed_seq;
                batch.outcome.send_replace(Some(Err(Failure::of(error, outcome))));
            }
        }
    }

    /// Commits whatever transaction is open once the writes queued now have
    /// run: a task queued for the lock behind them.
    fn schedule_flush(&self) {
        if self.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.flush_scheduled.store(false, Ordering::Release);
            return;
        };
        let writer = self.clone();
        runtime.spawn(async move {
            let mut state = writer.state.clone().lock_owned().await;
            writer.flush_scheduled.store(false, Ordering::Release);
            writer.settle(&mut state).await;
            writer.commit_open(&mut state).await;
        });
    }
}

impl WriterGuard {
    fn batch(&mut self) -> &mut Batch {
        batch_of(self.guard.as_mut().expect("write in progress"))
    }

    /// The sequence number of the last journal record written before this
    /// write (SQLite numbers records in memory).
    pub(crate) fn last_seq(&self) -> i64 {
        self.guard.as_ref().expect("write in progress").last_seq
    }

    /// The highest hybrid-clock reading committed before this write's
    /// transaction began, by any process sharing the database (PostgreSQL;
    /// 0 on SQLite, whose one process issues every reading).
    pub(crate) fn hlc_floor(&self) -> i64 {
        self.guard.as_ref().expect("write in progress").hlc_floor
    }

    /// The region's epoch when this write's transaction began (PostgreSQL;
    /// 0 on SQLite).
    pub(crate) fn epoch_seen(&self) -> i64 {
        self.guard.as_ref().expect("write in progress").epoch
    }

    /// Why the region's local writes were fenced when this write's
    /// transaction began, if they were (PostgreSQL; none on SQLite).
    pub(crate) fn fence(&self) -> Option<String> {
        self.guard.as_ref().expect("write in progress").fence.clone()
    }

    /// Ends the write: its savepoint released, then either committed with
    /// the writes before it or left open for the writes queued behind it,
    /// in which case this waits for the commit. `last_seq` is the sequence
    /// number of the write's last journal record (SQLite).
    pub(crate) async fn finish(self, last_seq: Option<i64>, hlc: i64) -> StoreResult<()> {
        // In a task of its own, like `Writer::begin`: once released, the
        // write's fate is its transaction's, whatever happens to the request.
        let ending = tokio::spawn(self.end(last_seq, hlc));
        let mut outcome = ending.await.expect("the writer's task panicked")?;
        let ended = outcome.wait_for(Option::is_some).await.map(|ended| ended.clone());
        match ended {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(failure))) => Err(failure.into_error()),
            Ok(None) | Err(_) => Err(StoreError::Database {
                message: "the write's transaction ended without an outcome".into(),
                outcome: WriteOutcome::Unknown,
            }),
        }
    }

    /// Releases the write's savepoint, then commits the transaction or
    /// leaves it open for the writes queued behind; the receiver learns how
    /// the transaction ended.
    async fn end(
        mut self,
        last_seq: Option<i64>,
        hlc: i64,
    ) -> StoreResult<watch::Receiver<Option<Result<(), Failure>>>> {
        let writer = self.writer.clone();
        let wait = !self.solo
            && self.batch().writes + 1 < max_batch(writer.backend)
            && writer.queued.load(Ordering::Acquire) > 0;
        if wait {
            // Others are queued: they join this transaction, the next one in
            // the savepoint begun here, and whoever ends the run commits it.
            // PostgreSQL keeps it: the next write's savepoint, of the same
            // name, hides it (a round trip saved; `max_batch` bounds them).
            let released = match writer.backend {
                Backend::Sqlite => exec_sqlite(&mut self.batch().conn, RELEASE_AND_BEGIN).await,
                Backend::Postgres => Ok(()),
            };
            if let Err(error) = released {
                // Still dirty: dropping the guard rolls it back.
                return Err(StoreError::database(error));
            }
        }
        let mut state = self.guard.take().expect("write in progress");
        let batch = batch_of(&mut state);
        batch.dirty = false;
        batch.armed = wait && writer.backend == Backend::Sqlite;
        batch.writes += 1;
        let outcome = batch.outcome.subscribe();
        if let Some(seq) = last_seq {
            state.last_seq = state.last_seq.max(seq);
        }
        state.hlc = state.hlc.max(hlc);
        if wait {
            writer.schedule_flush();
        } else {
            // COMMIT releases the write's savepoint with the transaction.
            writer.commit_open(&mut state).await;
        }
        Ok(outcome)
    }
}

fn batch_of(state: &mut Batching) -> &mut Batch {
    state
        .open
        .as_mut()
        .expect("a write's transaction is open while it runs")
}

impl Writer {
    /// Advances the announced committed head to `seq`.
    fn announce(&self, seq: i64) {
        announce(&self.head, seq);
    }
}

/// Advances the committed head announced on `head` to `seq` (never back):
/// this process's commits, and other processes' (`others.rs`).
pub(crate) fn announce(head: &watch::Sender<i64>, seq: i64) {
    head.send_if_modified(|current| {
        let advanced = seq > *current;
        if advanced {
            *current = seq;
        }
        advanced
    });
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // A write abandoned before `finish` (an error, a dropped request)
        // leaves its savepoint open; a write that left the transaction open
        // for others relies on someone committing it. Either way the flush
        // task settles and commits once the writes queued now have run.
        if let Some(state) = self.guard.as_ref() {
            if state.open.is_some() {
                self.writer.schedule_flush();
            }
        }
    }
}

impl std::ops::Deref for WriterGuard {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.guard
            .as_ref()
            .and_then(|state| state.open.as_ref())
            .map(|batch| &*batch.conn)
            .expect("a write's transaction is open while it runs")
    }
}

impl std::ops::DerefMut for WriterGuard {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.batch().conn
    }
}
