//! Epochs, fencing and the divergence quarantine.
//!
//! Every epoch begins with an `epoch_began` record written by its primary,
//! carrying the *fork*: for every origin region, the highest `origin_seq`
//! of its changes the new primary held. That is the history the epoch
//! continues. A change of an older epoch beyond the fork of the epoch that
//! followed it was accepted by a deposed primary (or reached only regions
//! the new primary did not hear from): it is **fenced**. A fenced change is
//! never applied. If it arrives after the epoch began, it is journaled as
//! voided; if this region applied it before it learnt of the epoch, it is
//! voided when the `epoch_began` record arrives and the state is rebuilt
//! from the journal without it. Either way the change goes to the
//! divergence quarantine, with its content, until somebody re-applies it on
//! purpose. Changes of multi-writer classes are never fenced: they merge.
//!
//! All of it is decided from the journal alone, so replaying a journal
//! rebuilds the same state, the same voids and the same quarantine.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};
use tandem_core::journal::{Change, JournalRecord};

use super::{decode_journal_row, merge, JOURNAL_COLUMNS};
use crate::error::{StoreError, StoreResult};
use crate::{DivergentRecord, EpochInfo};

/// The history this region holds: for every origin region, the highest
/// `origin_seq` of its changes that are part of the state.
pub(crate) async fn fork_point(tx: &mut AnyConnection) -> StoreResult<BTreeMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT origin_region, MAX(origin_seq) AS origin_seq FROM journal WHERE voided IS NULL GROUP BY origin_region",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut fork: BTreeMap<String, i64> = rows
        .iter()
        .map(|row| Ok((row.try_get("origin_region")?, row.try_get("origin_seq")?)))
        .collect::<StoreResult<_>>()?;
    // A region that followed a source's journal passed over the records of
    // classes it does not replicate (hot-cold): they are part of the history
    // it continues (restored from the archive at failover), so the fork of
    // the source's own changes reaches as far as it followed.
    let positions = sqlx::query("SELECT source_region, position FROM replication_positions")
        .fetch_all(&mut *tx)
        .await?;
    for row in &positions {
        let source: String = row.try_get("source_region")?;
        let position: i64 = row.try_get("position")?;
        if let Some(held) = fork.get_mut(&source) {
            *held = (*held).max(position);
        }
    }
    Ok(fork)
}

fn decode_fork(text: &str) -> StoreResult<BTreeMap<String, i64>> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("epoch fork: {error}")))
}

/// The epoch that fences `record`, if one does: the first epoch after the
/// record's own, if the record lies beyond that epoch's fork.
pub(crate) async fn fencing_epoch(
    tx: &mut AnyConnection,
    record: &JournalRecord,
) -> StoreResult<Option<i64>> {
    if record.seen.is_some() {
        return Ok(None);
    }
    let Some(row) = sqlx::query("SELECT epoch, fork FROM epochs WHERE epoch > $1 ORDER BY epoch LIMIT 1")
        .bind(record.epoch)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let fork = decode_fork(&row.try_get::<String, _>("fork")?)?;
    let kept = fork.get(&record.origin_region).copied().unwrap_or(0);
    Ok((record.origin_seq > kept)
        .then(|| row.try_get("epoch"))
        .transpose()?)
}

/// The quarantine's id of a change: the same in every region that holds it.
pub(crate) fn divergence_id(record: &JournalRecord) -> String {
    format!("{}-{}", record.origin_region, record.origin_seq)
}

/// Puts `record` (as journaled here, at `record.seq`) into the quarantine.
pub(crate) async fn quarantine(
    tx: &mut AnyConnection,
    record: &JournalRecord,
    voided_by: i64,
    now: i64,
) -> StoreResult<()> {
    let primary: Option<String> = sqlx::query_scalar("SELECT primary_region FROM epochs WHERE epoch = $1")
        .bind(voided_by)
        .fetch_optional(&mut *tx)
        .await?;
    let reason = format!(
        "accepted by '{}' in epoch {}, after epoch {voided_by} began at '{}' without it",
        record.origin_region,
        record.epoch,
        primary.unwrap_or_default()
    );
    let artifact_state = record.change.written_content().is_some().then_some("pending");
    sqlx::query(
        "INSERT INTO divergence (divergence_id, seq, workspace_id, origin_region, origin_seq, record_epoch, voided_by_epoch, kind, record, reason, found_at, status, artifact_state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'quarantined', $12) ON CONFLICT (divergence_id) DO NOTHING",
    )
    .bind(divergence_id(record))
    .bind(record.seq)
    .bind(&record.workspace_id)
    .bind(&record.origin_region)
    .bind(record.origin_seq)
    .bind(record.epoch)
    .bind(voided_by)
    .bind(record.change.kind())
    .bind(serde_json::to_string(record).expect("records encode"))
    .bind(reason)
    .bind(now)
    .bind(artifact_state)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// After the `epoch_began` record `epoch` was applied here: voids every
/// change held here that the new epoch's fork lacks, quarantines it, and
/// rebuilds the state without them. Returns how many were voided.
pub(crate) async fn void_divergent(
    tx: &mut AnyConnection,
    epoch: i64,
    fork: &BTreeMap<String, i64>,
    now: i64,
) -> StoreResult<usize> {
    let held = sqlx::query(
        "SELECT origin_region, MAX(origin_seq) AS origin_seq FROM journal \
         WHERE voided IS NULL AND seen IS NULL AND epoch < $1 GROUP BY origin_region",
    )
    .bind(epoch)
    .fetch_all(&mut *tx)
    .await?;
    let mut beyond = Vec::new();
    for row in &held {
        let origin: String = row.try_get("origin_region")?;
        let highest: i64 = row.try_get("origin_seq")?;
        let kept = fork.get(&origin).copied().unwrap_or(0);
        if highest > kept {
            beyond.push((origin, kept));
        }
    }
    let mut voided = Vec::new();
    for (origin, kept) in beyond {
        let rows = sqlx::query(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE voided IS NULL AND seen IS NULL AND epoch < $1 \
             AND origin_region = $2 AND origin_seq > $3 ORDER BY seq"
        ))
        .bind(epoch)
        .bind(&origin)
        .bind(kept)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            voided.push(decode_journal_row(row)?);
        }
    }
    if voided.is_empty() {
        return Ok(0);
    }
    for record in &voided {
        sqlx::query("UPDATE journal SET voided = $1 WHERE seq = $2")
            .bind(epoch)
            .bind(record.seq)
            .execute(&mut *tx)
            .await?;
        quarantine(tx, record, epoch, now).await?;
    }
    tracing::warn!(
        epoch,
        records = voided.len(),
        "records this region held never reached the new primary: voided and quarantined; rebuilding the state without them"
    );
    rebuild(tx).await?;
    Ok(voided.len())
}

/// The records `void_divergent` takes (or took) for `epoch` forked at
/// `fork`: of older epochs, not merged (`seen` unset), beyond the fork, and
/// not voided by another epoch.
pub(crate) async fn records_beyond_fork(
    pool: &sqlx::AnyPool,
    epoch: i64,
    fork: &BTreeMap<String, i64>,
) -> StoreResult<i64> {
    let origins: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT origin_region FROM journal WHERE seen IS NULL AND epoch < $1 AND (voided IS NULL OR voided = $1)",
    )
    .bind(epoch)
    .fetch_all(pool)
    .await?;
    let mut count = 0;
    for origin in origins {
        let kept = fork.get(&origin).copied().unwrap_or(0);
        let beyond: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM journal WHERE seen IS NULL AND epoch < $1 AND (voided IS NULL OR voided = $1) \
             AND origin_region = $2 AND origin_seq > $3",
        )
        .bind(epoch)
        .bind(&origin)
        .bind(kept)
        .fetch_one(pool)
        .await?;
        count += beyond;
    }
    Ok(count)
}

/// Empties every table derived from the journal and applies the journal's
/// records that are part of the state again, in order.
async fn rebuild(tx: &mut AnyConnection) -> StoreResult<()> {
    for table in
        super::dump::state_tables().chain(["merge_registers", "conflicts", "origin_progress", "epochs"])
    {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await?;
    }
    const PAGE: i64 = 500;
    let mut after = 0;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE seq > $1 AND voided IS NULL ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let record = decode_journal_row(row)?;
            after = record.seq;
            merge::apply_record(tx, &record).await.map_err(|error| {
                StoreError::Corrupt(format!(
                    "rebuilding the state without divergent records: record {} ({}) no longer applies: {error}",
                    record.seq,
                    record.change.kind()
                ))
            })?;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    sqlx::query(
        "INSERT INTO origin_progress (origin_region, origin_seq) \
         SELECT origin_region, MAX(origin_seq) FROM journal WHERE voided IS NULL GROUP BY origin_region",
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(crate) async fn list_epochs(pool: &sqlx::AnyPool) -> StoreResult<Vec<EpochInfo>> {
    let rows = sqlx::query("SELECT epoch, primary_region, fork, began_at FROM epochs ORDER BY epoch")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(EpochInfo {
                epoch: row.try_get("epoch")?,
                primary: row.try_get("primary_region")?,
                fork: decode_fork(&row.try_get::<String, _>("fork")?)?,
                began_at: row.try_get("began_at")?,
            })
        })
        .collect()
}

const DIVERGENCE_COLUMNS: &str = "divergence_id, seq, reason, found_at, status, artifact_state, applied_seq, applied_at, record, voided_by_epoch";

fn decode_divergence(row: &sqlx::any::AnyRow) -> StoreResult<DivergentRecord> {
    let record: JournalRecord = serde_json::from_str(&row.try_get::<String, _>("record")?)
        .map_err(|error| StoreError::Corrupt(format!("quarantined record: {error}")))?;
    Ok(DivergentRecord {
        id: row.try_get("divergence_id")?,
        seq: row.try_get("seq")?,
        voided_by_epoch: row.try_get("voided_by_epoch")?,
        reason: row.try_get("reason")?,
        found_at: row.try_get("found_at")?,
        status: row.try_get("status")?,
        artifact_state: row.try_get("artifact_state")?,
        applied_seq: row.try_get("applied_seq")?,
        applied_at: row.try_get("applied_at")?,
        record,
    })
}

pub(crate) async fn list_divergence(pool: &sqlx::AnyPool) -> StoreResult<Vec<DivergentRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {DIVERGENCE_COLUMNS} FROM divergence ORDER BY seq"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode_divergence).collect()
}

pub(crate) async fn get_divergence(pool: &sqlx::AnyPool, id: &str) -> StoreResult<Option<DivergentRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {DIVERGENCE_COLUMNS} FROM divergence WHERE divergence_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(decode_divergence).transpose()
}

impl super::SqlStore {
    /// See [`crate::MetadataStore::reapply_divergent`].
    pub(crate) async fn reapply(&self, record: &JournalRecord) -> StoreResult<i64> {
        if matches!(record.change, Change::EpochBegan { .. }) {
            return Err(StoreError::Domain(tandem_core::Error::invalid(
                "the beginning of an epoch cannot be re-applied: only workspace changes can",
            )));
        }
        let id = divergence_id(record);
        let mut write = self.begin_write(&record.workspace_id).await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM divergence_resolutions WHERE divergence_id = $1")
                .bind(&id)
                .fetch_optional(&mut *write.tx)
                .await?;
        if let Some(seq) = done {
            return Ok(seq);
        }
        if !matches!(record.change, Change::WorkspaceCreated { .. }) {
            let workspace: Option<String> =
                sqlx::query_scalar("SELECT workspace_id FROM workspaces WHERE workspace_id = $1")
                    .bind(&record.workspace_id)
                    .fetch_optional(&mut *write.tx)
                    .await?;
            if workspace.is_none() {
                return Err(StoreError::Domain(tandem_core::Error::invalid_state(format!(
                    "change '{id}' belongs to workspace {}, which does not exist here",
                    record.workspace_id
                ))));
            }
        }
        let seq = self.record(&mut write, record.change.clone()).await?;
        sqlx::query(
            "INSERT INTO divergence_resolutions (divergence_id, seq, resolved_at) VALUES ($1, $2, $3)",
        )
        .bind(&id)
        .bind(seq)
        .bind(write.now)
        .execute(&mut *write.tx)
        .await?;
        sqlx::query(
            "UPDATE divergence SET status = 'applied', applied_seq = $1, applied_at = $2 WHERE divergence_id = $3",
        )
        .bind(seq)
        .bind(write.now)
        .bind(&id)
        .execute(&mut *write.tx)
        .await?;
        Self::commit(write).await?;
        Ok(seq)
    }
}
