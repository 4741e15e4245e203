//! What the other processes sharing a PostgreSQL database commit. A
//! process learns of its own commits as it makes them (the journal head it
//! announces to followers, the access generation credential caches
//! compare); another process's commits reach it only through the database.
//! So on PostgreSQL a task reads the committed journal head every
//! [`WATCH_EVERY`] and, when it has moved past what this task last saw,
//! announces it (a follower streaming from this process wakes up for
//! records another process wrote) and advances the access generation when
//! any of the new records changes principals, tokens, role assignments or
//! workspaces (a token revoked through one process is refused by every
//! other within about [`WATCH_EVERY`], not after its cache's lifetime).
//! SQLite is one process's database: nothing to watch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{AnyPool, Row};
use tandem_core::journal::ACCESS_KIND_PREFIXES;
use tokio::sync::watch;

/// How often the committed head is read.
pub(crate) const WATCH_EVERY: Duration = Duration::from_millis(250);

/// `kind LIKE 'principal\_%' OR …`: the records a credential cache
/// depends on (`Change::kind_touches_access`), as SQL on the stored kinds.
fn access_kinds() -> String {
    let tests: Vec<String> = ACCESS_KIND_PREFIXES
        .iter()
        .map(|prefix| format!("kind LIKE '{}%' ESCAPE '\\'", prefix.replace('_', "\\_")))
        .collect();
    format!("({})", tests.join(" OR "))
}

/// Watches the database behind `pool` from `seen` on, until the store
/// (its head's sender) is dropped.
pub(crate) fn watch(
    pool: AnyPool,
    head: &Arc<watch::Sender<i64>>,
    access_generation: Arc<AtomicU64>,
    seen: i64,
) {
    let head: Weak<watch::Sender<i64>> = Arc::downgrade(head);
    let access_sql = format!(
        "SELECT COUNT(*) FROM journal WHERE seq > $1 AND seq <= $2 AND {}",
        access_kinds()
    );
    tokio::spawn(async move {
        let mut seen = seen;
        let mut ticks = tokio::time::interval(WATCH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(head) = head.upgrade() else { return };
            match step(&pool, &access_sql, seen).await {
                Ok(Some((committed, access))) => {
                    seen = committed;
                    if access {
                        access_generation.fetch_add(1, Ordering::AcqRel);
                    }
                    super::writer::announce(&head, committed);
                }
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "cannot read the committed journal head; will retry"),
            }
        }
    });
}

/// The committed head when it moved past `seen`, and whether the records
/// since touch access.
async fn step(pool: &AnyPool, access_sql: &str, seen: i64) -> Result<Option<(i64, bool)>, sqlx::Error> {
    let committed: i64 = sqlx::query("SELECT journal_head FROM region_state WHERE id = 1")
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    if committed <= seen {
        return Ok(None);
    }
    let access: i64 = sqlx::query(access_sql)
        .bind(seen)
        .bind(committed)
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    Ok(Some((committed, access > 0)))
}
