//! Which of the server processes sharing one database runs the region's
//! background duties (purge, garbage collection, scheduled backups): the
//! holder of a PostgreSQL session-level advisory lock, taken on a
//! connection of its own. PostgreSQL releases the lock when that session
//! ends, so a process that dies (or loses its connection) hands the duties
//! over to another within about [`CONTEND_EVERY`]; a process that merely
//! stalls keeps them. On SQLite one process owns the database: its duties
//! are held from the start.

use std::time::Duration;

use sqlx::{AnyConnection, Connection};
use tokio::sync::watch;

/// How often a process that does not hold the duties tries to take them,
/// and how often the holder checks that its session is still alive.
pub const CONTEND_EVERY: Duration = Duration::from_secs(1);

/// The advisory lock's key: the ASCII of "tandemdu" (an arbitrary constant
/// shared by every Tandem process; advisory locks are per database).
const LOCK_KEY: i64 = 0x7461_6e64_656d_6475;

/// Whether this process holds the duties now. Dropping every clone ends the
/// contention (and releases the lock).
#[derive(Debug, Clone)]
pub struct Duties {
    held: watch::Receiver<bool>,
}

impl Duties {
    /// Held for good (one process owns the database).
    pub fn always() -> Duties {
        let (sender, held) = watch::channel(true);
        // The receiver keeps the value; the sender need not live on.
        drop(sender);
        Duties { held }
    }

    /// Contends for the duties of the database at `url` (PostgreSQL) from a
    /// task of its own, until every clone of the answer is dropped.
    pub(crate) fn contend(url: String) -> Duties {
        let (sender, held) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hold(&url, &sender) => {}
                    _ = sender.closed() => return,
                }
                sender.send_replace(false);
                tokio::select! {
                    _ = tokio::time::sleep(CONTEND_EVERY) => {}
                    _ = sender.closed() => return,
                }
            }
        });
        Duties { held }
    }

    pub fn held(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits until the duties are held here.
    pub async fn until_held(&mut self) {
        let _ = self.held.wait_for(|held| *held).await;
    }

    /// Resolves when the duties are next taken or given up here (never,
    /// when they are held for good).
    pub async fn changed(&mut self) {
        if self.held.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One session: connects, takes the lock when it is free, and keeps the
/// session alive while it holds it. Returns when the session is lost.
async fn hold(url: &str, held: &watch::Sender<bool>) {
    let mut session = match AnyConnection::connect(url).await {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(%error, "cannot reach the database to contend for the duties");
            return;
        }
    };
    loop {
        let taken = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut session)
            .await;
        match taken {
            Ok(true) => break,
            Ok(false) => tokio::time::sleep(CONTEND_EVERY).await,
            Err(error) => {
                tracing::warn!(%error, "lost the session contending for the duties");
                return;
            }
        }
    }
    tracing::info!("this process holds the region's duties (purge, garbage collection, scheduled backups)");
    held.send_replace(true);
    loop {
        tokio::time::sleep(CONTEND_EVERY).await;
        if let Err(error) = session.ping().await {
            tracing::warn!(%error, "lost the session holding the duties: giving them up");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Duties;

    #[test]
    fn one_process_of_a_database_holds_its_duties_for_good() {
        let duties = Duties::always();
        assert!(duties.held());
        assert!(duties.clone().held());
    }
}
