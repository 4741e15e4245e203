//! What the server processes of one region share through its database
//! beyond the data (issue 17; PostgreSQL, where several may run): the write
//! fence, the duty holder's runtime document and the secondaries'
//! acknowledgements. All region-local bookkeeping: not journaled, not in
//! dumps. On SQLite one process owns the database and keeps all of it in
//! memory, so these are no-ops there.

use sqlx::Row;

use super::{Backend, SqlStore};
use crate::error::StoreResult;

/// The duty holder's runtime document as last published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeRecord {
    /// Which process published it (its replica id).
    pub holder: String,
    pub document: String,
    /// When (ms since the epoch, the publisher's clock).
    pub published_at: i64,
}

/// A secondary's acknowledgement: what it applied of this region's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledgement<'a> {
    pub region: &'a str,
    pub applied: i64,
    pub acknowledged_at: i64,
}

/// The shared acknowledgements, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedAcknowledgement {
    pub region: String,
    pub applied: i64,
    pub acknowledged_at: i64,
}

/// Why local writes that need the primary's lease are refused, given the
/// fence as stored and the time now (ms since the epoch), if they are.
pub(crate) fn fence_reason(until: Option<i64>, closed: Option<String>, now: i64) -> Option<String> {
    if let Some(closed) = closed {
        return Some(closed);
    }
    match until {
        Some(until) if now >= until => Some(format!(
            "the region's leadership lease was not renewed in time ({} ms ago): its writes stopped before another region could take over",
            now - until
        )),
        _ => None,
    }
}

impl SqlStore {
    pub(crate) async fn set_write_fence_impl(
        &self,
        until: Option<i64>,
        closed: Option<&str>,
    ) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        // Waits for the row: every write that began before holds it until
        // its commit, so when this returns no write of the old fence is in
        // flight in any process.
        sqlx::query("UPDATE region_state SET writes_until = $1, writes_closed = $2 WHERE id = 1")
            .bind(until)
            .bind(closed)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn publish_runtime_impl(&self, holder: &str, document: &str) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO region_runtime (id, holder, document, published_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, document = excluded.document, published_at = excluded.published_at",
        )
        .bind(holder)
        .bind(document)
        .bind(wall_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn runtime_impl(&self) -> StoreResult<Option<RuntimeRecord>> {
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query("SELECT holder, document, published_at FROM region_runtime WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(RuntimeRecord {
                holder: row.try_get("holder")?,
                document: row.try_get("document")?,
                published_at: row.try_get("published_at")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn share_acknowledgements_impl(
        &self,
        ours: &[Acknowledgement<'_>],
    ) -> StoreResult<Vec<SharedAcknowledgement>> {
        if self.backend == Backend::Sqlite {
            return Ok(ours
                .iter()
                .map(|ack| SharedAcknowledgement {
                    region: ack.region.to_string(),
                    applied: ack.applied,
                    acknowledged_at: ack.acknowledged_at,
                })
                .collect());
        }
        for ack in ours {
            // Positions only move forward, whichever process saw them.
            sqlx::query(
                "INSERT INTO replication_acks (region, applied, acknowledged_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (region) DO UPDATE SET \
                 applied = GREATEST(replication_acks.applied, excluded.applied), \
                 acknowledged_at = GREATEST(replication_acks.acknowledged_at, excluded.acknowledged_at)",
            )
            .bind(ack.region)
            .bind(ack.applied)
            .bind(ack.acknowledged_at)
            .execute(&self.pool)
            .await?;
        }
        let rows =
            sqlx::query("SELECT region, applied, acknowledged_at FROM replication_acks ORDER BY region")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(SharedAcknowledgement {
                    region: row.try_get("region")?,
                    applied: row.try_get("applied")?,
                    acknowledged_at: row.try_get("acknowledged_at")?,
                })
            })
            .collect()
    }
}

fn wall_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::fence_reason;

    #[test]
    fn the_fence_refuses_once_its_deadline_passed_or_while_it_is_closed() {
        assert_eq!(fence_reason(None, None, 1_000), None);
        assert_eq!(fence_reason(Some(2_000), None, 1_000), None);
        let lapsed = fence_reason(Some(1_000), None, 1_250).expect("lapsed");
        assert!(lapsed.contains("250 ms ago"), "{lapsed}");
        assert_eq!(
            fence_reason(Some(9_000), Some("handing over".into()), 1_000).as_deref(),
            Some("handing over")
        );
    }
}
