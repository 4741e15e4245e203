//! The fence between what writes a workspace's artifact storage outside a
//! write's transaction and the garbage collector. A move copies artifacts
//! to their keys in the destination, then commits; the collector checks
//! which owners still hold a prefix, then deletes the rest. Interleaved, a
//! collection checked before a move's commit could delete what the move
//! had just copied into a prefix that a purge (or an earlier move out of
//! that workspace) queued: an experiment moved out and back within seconds
//! would lose its files. Moves hold the fence shared from their first copy
//! to their commit; the collector holds it alone while it collects. On
//! SQLite (one process) it is a lock in memory; on PostgreSQL, where the
//! collector runs in one process and moves in any, an advisory lock held
//! on a connection of its own, which PostgreSQL releases when the
//! connection closes (when the fence is dropped, or its process dies).

use std::sync::Arc;

use sqlx::{AnyConnection, AnyPool};

use crate::StoreResult;

/// The advisory lock's key: the ASCII of "tandemaf" (every Tandem process
/// on a database shares it).
const LOCK_KEY: i64 = 0x7461_6e64_656d_6166;

/// Held while artifacts are moved in or collected (see the module).
pub struct ArtifactFence {
    _held: Held,
}

enum Held {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
    /// Dropping the connection closes its session, and the lock with it.
    Session(#[allow(dead_code)] AnyConnection),
}

impl std::fmt::Debug for ArtifactFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactFence")
    }
}

/// The fence of one process's database.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fence {
    local: Arc<tokio::sync::RwLock<()>>,
}

impl Fence {
    pub(crate) async fn local(&self, exclusive: bool) -> ArtifactFence {
        let held = if exclusive {
            Held::Exclusive(self.local.clone().write_owned().await)
        } else {
            Held::Shared(self.local.clone().read_owned().await)
        };
        ArtifactFence { _held: held }
    }

    /// On PostgreSQL: the advisory lock, on a connection taken out of the
    /// pool for as long as it is held.
    pub(crate) async fn session(pool: &AnyPool, exclusive: bool) -> StoreResult<ArtifactFence> {
        let mut connection = pool.acquire().await?.detach();
        let sql = if exclusive {
            "SELECT 1 FROM (SELECT pg_advisory_lock($1)) AS taken"
        } else {
            "SELECT 1 FROM (SELECT pg_advisory_lock_shared($1)) AS taken"
        };
        sqlx::query(sql).bind(LOCK_KEY).execute(&mut connection).await?;
        Ok(ArtifactFence {
            _held: Held::Session(connection),
        })
    }
}
