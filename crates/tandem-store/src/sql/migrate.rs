//! Versioned schema migrations, embedded in the binary. Each backend has its
//! own numbered SQL files; `schema_migrations` records which ran, so a store
//! opened by a newer build is upgraded in order and one written by a newer
//! build is refused.

use sqlx::{AnyPool, Row};

use super::Backend;
use crate::error::{StoreError, StoreResult};

struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial",
        sql: include_str!("../../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "replication positions",
        sql: include_str!("../../migrations/sqlite/0002_replication.sql"),
    },
    Migration {
        version: 3,
        description: "multi-writer merge registers and conflicts",
        sql: include_str!("../../migrations/sqlite/0003_merge.sql"),
    },
    Migration {
        version: 4,
        description: "epochs, fencing and the divergence quarantine",
        sql: include_str!("../../migrations/sqlite/0004_failover.sql"),
    },
    Migration {
        version: 5,
        description: "metrics, latest metrics and artifacts clustered on their primary keys",
        sql: include_str!("../../migrations/sqlite/0005_without_rowid.sql"),
    },
    Migration {
        version: 6,
        description: "soft delete with retention, purge protection and the garbage-collection queue",
        sql: include_str!("../../migrations/sqlite/0006_retention.sql"),
    },
    Migration {
        version: 7,
        description: "the workspace file share",
        sql: include_str!("../../migrations/sqlite/0007_files.sql"),
    },
    Migration {
        version: 8,
        description: "metric points keyed by step before timestamp",
        sql: include_str!("../../migrations/sqlite/0008_metrics_by_step.sql"),
    },
    Migration {
        version: 12,
        description: "a scratch row for the diagnostics' write probe",
        sql: include_str!("../../migrations/sqlite/0012_diagnostics.sql"),
    },
    Migration {
        version: 13,
        description: "per-workspace storage quota",
        sql: include_str!("../../migrations/sqlite/0013_storage_quota.sql"),
    },
    Migration {
        version: 14,
        description: "principals, tokens, role assignments and the journal's principal",
        sql: include_str!("../../migrations/sqlite/0014_access.sql"),
    },
    Migration {
        version: 15,
        description: "runs indexed by start time within an experiment",
        sql: include_str!("../../migrations/sqlite/0015_runs_by_start_time.sql"),
    },
    Migration {
        version: 16,
        description: "where copied objects came from",
        sql: include_str!("../../migrations/sqlite/0016_transfer_origins.sql"),
    },
    Migration {
        version: 17,
        description: "several server processes per region: the write fence, the runtime document, shared acknowledgements",
        sql: include_str!("../../migrations/sqlite/0017_replicas.sql"),
    },
    // Versions 18 and 19 are PostgreSQL's alone: SQLite's planner reads
    // its searches by the primary keys fast enough without another index
    // to write, and SQLite has no visibility map to keep.
];

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial",
        sql: include_str!("../../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "replication positions",
        sql: include_str!("../../migrations/postgres/0002_replication.sql"),
    },
    Migration {
        version: 3,
        description: "multi-writer merge registers and conflicts",
        sql: include_str!("../../migrations/postgres/0003_merge.sql"),
    },
    Migration {
        version: 4,
        description: "epochs, fencing and the divergence quarantine",
        sql: include_str!("../../migrations/postgres/0004_failover.sql"),
    },
    Migration {
        version: 5,
        description: "metrics, latest metrics and artifacts clustered on their primary keys",
        sql: include_str!("../../migrations/postgres/0005_without_rowid.sql"),
    },
    Migration {
        version: 6,
        description: "soft delete with retention, purge protection and the garbage-collection queue",
        sql: include_str!("../../migrations/postgres/0006_retention.sql"),
    },
    Migration {
        version: 7,
        description: "the workspace file share",
        sql: include_str!("../../migrations/postgres/0007_files.sql"),
    },
    Migration {
        version: 8,
        description: "metric points keyed by step before timestamp",
        sql: include_str!("../../migrations/postgres/0008_metrics_by_step.sql"),
    },
    Migration {
        version: 12,
        description: "a scratch row for the diagnostics' write probe",
        sql: include_str!("../../migrations/postgres/0012_diagnostics.sql"),
    },
    Migration {
        version: 13,
        description: "per-workspace storage quota",
        sql: include_str!("../../migrations/postgres/0013_storage_quota.sql"),
    },
    Migration {
        version: 14,
        description: "principals, tokens, role assignments and the journal's principal",
        sql: include_str!("../../migrations/postgres/0014_access.sql"),
    },
    Migration {
        version: 15,
        description: "runs indexed by start time within an experiment",
        sql: include_str!("../../migrations/postgres/0015_runs_by_start_time.sql"),
    },
    Migration {
        version: 16,
        description: "where copied objects came from",
        sql: include_str!("../../migrations/postgres/0016_transfer_origins.sql"),
    },
    Migration {
        version: 17,
        description: "several server processes per region: the write fence, the runtime document, shared acknowledgements",
        sql: include_str!("../../migrations/postgres/0017_replicas.sql"),
    },
    Migration {
        version: 18,
        description: "params, tags and latest metrics indexed by key and value",
        sql: include_str!("../../migrations/postgres/0018_runs_by_key.sql"),
    },
    Migration {
        version: 19,
        description: "tables read by index-only scans vacuumed every 10,000 inserted rows",
        sql: include_str!("../../migrations/postgres/0019_visible_sooner.sql"),
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 19;

pub(super) async fn run(pool: &AnyPool, backend: Backend) -> StoreResult<()> {
    let migrations = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get("version"))
        .collect::<Result<_, _>>()?;
    let current = applied.iter().copied().max().unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the metadata schema is at version {current}, newer than this build's {SCHEMA_VERSION}; upgrade tandem"
        )));
    }
    // Every migration not yet recorded, in order: numbers are not always
    // contiguous (versions written on parallel branches), so a store that
    // already has a later version still receives an earlier one it lacks.
    for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        let mut tx = pool.begin().await?;
        for statement in split_statements(migration.sql) {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        sqlx::query("INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)")
            .bind(migration.version)
            .bind(migration.description)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.map_err(StoreError::commit)?;
        tracing::info!(
            version = migration.version,
            description = migration.description,
            "applied schema migration"
        );
    }
    Ok(())
}

/// Splits a migration file into statements: comment lines are dropped, a
/// statement ends with a line ending in `;`, except inside a trigger body
/// (from a line ending in `BEGIN` to a line `END;`). The files hold plain DDL
/// with no semicolons inside literals, so this is exact.
fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut in_block = false;
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        let upper = trimmed.to_ascii_uppercase();
        if upper.ends_with("BEGIN") {
            in_block = true;
        } else if in_block && upper == "END;" {
            in_block = false;
        }
        if !in_block && trimmed.ends_with(';') {
            statements.push(current.trim().trim_end_matches(';').to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        statements.push(current.trim().to_string());
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn statements_split_on_semicolons_but_not_inside_triggers_or_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (x INTEGER);\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE b SET y = NEW.x;\nEND;\nCREATE INDEX i ON a (x);\n";
        let statements = split_statements(sql);
        assert_eq!(statements.len(), 3, "{statements:?}");
        assert!(statements[1].starts_with("CREATE TRIGGER") && statements[1].ends_with("END"));
        assert_eq!(statements[2], "CREATE INDEX i ON a (x)");
    }
}
