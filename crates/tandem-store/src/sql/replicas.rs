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

/// A replica of the region as it last said it was alive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaSeen {
    pub replica: String,
    pub url: Option<String>,
    pub holds_duties: bool,
    /// When (ms since the epoch, its clock).
    pub seen_at: i64,
}

/// How long a replica that stopped saying it is alive is still listed.
const REPLICA_LISTED_MS: i64 = 10_000;
/// How long before its row is dropped.
const REPLICA_FORGOTTEN_MS: i64 = 3_600_000;

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
        .bind(crate::now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn heartbeat_replica_impl(
        &self,
        replica: &str,
        url: Option<&str>,
        holds_duties: bool,
    ) -> StoreResult<Vec<ReplicaSeen>> {
        let now = crate::now_millis();
        let this = ReplicaSeen {
            replica: replica.to_string(),
            url: url.map(str::to_string),
            holds_duties,
            seen_at: now,
        };
        if self.backend == Backend::Sqlite {
            return Ok(vec![this]);
        }
        sqlx::query(
            "INSERT INTO region_replicas (replica, url, holds_duties, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (replica) DO UPDATE SET url = excluded.url, holds_duties = excluded.holds_duties, seen_at = excluded.seen_at",
        )
        .bind(replica)
        .bind(url)
        .bind(i64::from(holds_duties))
        .bind(now)
        .execute(&self.pool)
        .await?;
        if holds_duties {
            // One replica forgets the long gone.
            sqlx::query("DELETE FROM region_replicas WHERE seen_at < $1")
                .bind(now - REPLICA_FORGOTTEN_MS)
                .execute(&self.pool)
                .await?;
        }
        let rows = sqlx::query(
            "SELECT replica, url, holds_duties, seen_at FROM region_replicas WHERE seen_at >= $1 ORDER BY replica",
        )
        .bind(now - REPLICA_LISTED_MS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReplicaSeen {
                    replica: row.try_get("replica")?,
                    url: row.try_get("url")?,
                    holds_duties: row.try_get::<i64, _>("holds_duties")? != 0,
                    seen_at: row.try_get("seen_at")?,
                })
            })
            .collect()
    }

    pub(crate) async fn open_direct_upload_impl(
        &self,
        key: &str,
        upload_id: &str,
        num_parts: u32,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO direct_uploads (storage_key, upload_id, num_parts, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (storage_key, upload_id) DO UPDATE SET num_parts = excluded.num_parts",
        )
        .bind(key)
        .bind(upload_id)
        .bind(i64::from(num_parts))
        .bind(crate::now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn take_direct_upload_impl(
        &self,
        key: &str,
        upload_id: &str,
    ) -> StoreResult<Option<u32>> {
        // One statement: of two replicas taking it at once, one gets the row.
        let parts: Option<i64> = sqlx::query_scalar(
            "DELETE FROM direct_uploads WHERE storage_key = $1 AND upload_id = $2 RETURNING num_parts",
        )
        .bind(key)
        .bind(upload_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(parts.map(|parts| parts as u32))
    }

    pub(crate) async fn direct_uploads_opened_before_impl(
        &self,
        max_age_ms: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT storage_key, upload_id FROM direct_uploads WHERE created_at < $1")
            .bind(crate::now_millis() - max_age_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("storage_key")?, row.try_get("upload_id")?)))
            .collect()
    }

    pub(crate) async fn direct_uploads_open_impl(&self) -> StoreResult<usize> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM direct_uploads")
            .fetch_one(&self.pool)
            .await?;
        Ok(count as usize)
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

/// Creates database `name` on the PostgreSQL server of `admin_url` unless
/// it exists, and returns its URL (the admin URL with the database's name
/// as its path): where `tandem up --replicas` puts a region's metadata.
pub async fn ensure_postgres_database(admin_url: &str, name: &str) -> StoreResult<String> {
    use sqlx::Connection;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(tandem_core::Error::invalid(format!(
            "database name '{name}': letters, digits and '_' only"
        ))
        .into());
    }
    // postgres://user@host:port/admin?options → …/name?options
    let mut url = url::Url::parse(admin_url)
        .map_err(|error| tandem_core::Error::invalid(format!("PostgreSQL URL: {error}")))?;
    url.set_path(name);
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(admin_url).await?;
    let exists = sqlx::query("SELECT 1 AS found FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?
        .is_some();
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await?;
    }
    let _ = admin.close().await;
    Ok(url.to_string())
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
