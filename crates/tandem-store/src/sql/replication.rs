//! Applying records replicated from another region's journal, and the
//! position each source has been applied to.

use sqlx::Row;
use tandem_core::journal::{Change, JournalRecord};

use super::{epochs, insert_journal, insert_journal_voided, merge, SqlStore, WriteTx};
use crate::error::StoreResult;

impl SqlStore {
    /// Appends a record written elsewhere to this journal, its origin kept,
    /// and applies it: the common step of replay, restore and replication.
    pub(super) async fn append_foreign(
        &self,
        write: &mut WriteTx,
        record: &JournalRecord,
    ) -> StoreResult<i64> {
        self.hlc.observe(record.hlc);
        let (seq, _) = self.next_position(write, record.hlc);
        let local = JournalRecord {
            seq,
            ..record.clone()
        };
        if let Some(fenced_by) = epochs::fencing_epoch(&mut write.tx, &local).await? {
            // A deposed primary's change: kept in the journal, voided, and
            // quarantined, never applied.
            tracing::warn!(
                origin = %local.origin_region,
                origin_seq = local.origin_seq,
                epoch = local.epoch,
                fenced_by,
                "fenced a change of an older epoch: quarantined, not applied"
            );
            insert_journal_voided(&mut write.tx, &local, Some(fenced_by)).await?;
            epochs::quarantine(&mut write.tx, &local, fenced_by, write.now).await?;
            write.appended.push((seq, local.change.asset_class()));
            return Ok(seq);
        }
        insert_journal(&mut write.tx, &local).await?;
        sqlx::query(
            "INSERT INTO origin_progress (origin_region, origin_seq) VALUES ($1, $2) \
             ON CONFLICT (origin_region) DO UPDATE SET origin_seq = CASE WHEN origin_progress.origin_seq > excluded.origin_seq THEN origin_progress.origin_seq ELSE excluded.origin_seq END",
        )
        .bind(&local.origin_region)
        .bind(local.origin_seq)
        .execute(&mut *write.tx)
        .await?;
        merge::apply_record(&mut write.tx, &local).await?;
        if let Change::EpochBegan { epoch, fork, .. } = &local.change {
            self.learn_epoch(*epoch);
            epochs::void_divergent(&mut write.tx, *epoch, fork, write.now).await?;
        }
        write.appended.push((seq, local.change.asset_class()));
        Ok(seq)
    }

    pub(super) async fn apply_replicated_record(
        &self,
        source_region: &str,
        record: &JournalRecord,
        apply_change: bool,
    ) -> StoreResult<bool> {
        let mut write = self.begin_write(&record.workspace_id).await?;
        // Exactly once: the position says whether this source's record was
        // seen; (origin_region, origin_seq) says whether the change itself
        // arrived already by another path (for example, our own change
        // coming back from a peer that applied it).
        let position = position_in(&mut write, source_region).await?;
        if record.seq <= position {
            return Ok(false);
        }
        let known: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM journal WHERE origin_region = $1 AND origin_seq = $2")
                .bind(&record.origin_region)
                .bind(record.origin_seq)
                .fetch_optional(&mut *write.tx)
                .await?;
        let applied = apply_change && known.is_none() && record.origin_region != self.region;
        if applied {
            self.append_foreign(&mut write, record).await?;
        }
        sqlx::query(
            "INSERT INTO replication_positions (source_region, position, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (source_region) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(source_region)
        .bind(record.seq)
        .bind(write.now)
        .execute(&mut *write.tx)
        .await?;
        Self::commit(write).await?;
        Ok(applied)
    }

    pub(super) async fn source_position(&self, source_region: &str) -> StoreResult<i64> {
        let row = sqlx::query("SELECT position FROM replication_positions WHERE source_region = $1")
            .bind(source_region)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("position")?,
            None => 0,
        })
    }

    pub(super) fn head_receiver(&self) -> tokio::sync::watch::Receiver<i64> {
        self.head.subscribe()
    }

    pub(super) async fn unreplicated_after(&self, after: i64) -> StoreResult<Vec<crate::UnreplicatedClass>> {
        let rows = sqlx::query(
            "SELECT asset_class, MIN(recorded_at) AS oldest, COUNT(*) AS records, CAST(SUM(LENGTH(payload)) AS BIGINT) AS bytes \
             FROM journal WHERE seq > $1 AND origin_region = $2 GROUP BY asset_class",
        )
        .bind(after)
        .bind(&self.region)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let class: String = row.try_get("asset_class")?;
                Ok(crate::UnreplicatedClass {
                    class: tandem_core::journal::AssetClass::parse(&class),
                    oldest_recorded_at: row.try_get("oldest")?,
                    records: row.try_get("records")?,
                    bytes: row.try_get("bytes")?,
                })
            })
            .collect()
    }
}

async fn position_in(write: &mut super::WriteTx, source_region: &str) -> StoreResult<i64> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM replication_positions WHERE source_region = $1")
            .bind(source_region)
            .fetch_optional(&mut *write.tx)
            .await?;
    Ok(position.unwrap_or(0))
}
