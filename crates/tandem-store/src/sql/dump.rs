//! A canonical dump of the workspace state: every table but the journal and
//! the region's own bookkeeping, rows in a fixed order, values typed. Two
//! stores hold the same state exactly when their dumps are equal — the check
//! behind "replaying the journal rebuilds the live state", and later behind
//! replication and restore verification.

use serde_json::Value;
use sqlx::{AnyPool, Row};

use crate::error::StoreResult;
use crate::StateDump;

/// The tables that hold workspace state (everything the journal rebuilds).
pub(crate) fn state_tables() -> impl Iterator<Item = &'static str> {
    TABLES.iter().chain(ACCESS_TABLES).map(|(table, _)| *table)
}

/// The deployment-wide state of the `access` class: not a workspace's, so
/// not in a workspace's fingerprint, but in the dump and rebuilt by replay.
pub(super) const ACCESS_TABLES: &[(&str, &[(&str, ColumnType)])] = {
    use ColumnType::*;
    &[
        (
            "principals",
            &[
                ("name", Text),
                ("kind", Text),
                ("password_hash", Text),
                ("disabled", Int),
                ("created_at", Int),
                ("updated_at", Int),
            ],
        ),
        (
            "tokens",
            &[
                ("token_id", Text),
                ("principal", Text),
                ("token_hash", Text),
                ("description", Text),
                ("created_at", Int),
                ("expires_at", Int),
                ("revoked_at", Int),
            ],
        ),
        (
            "role_assignments",
            &[
                ("principal", Text),
                ("role", Text),
                ("scope", Text),
                ("created_at", Int),
            ],
        ),
    ]
};

/// Each state table with its columns, typed so the dump does not depend on
/// how a backend reports column types.
pub(super) const TABLES: &[(&str, &[(&str, ColumnType)])] = {
    use ColumnType::*;
    &[
        (
            "workspaces",
            &[
                ("workspace_id", Text),
                ("name", Text),
                ("description", Text),
                ("creation_time", Int),
                ("last_update_time", Int),
                ("lifecycle_stage", Text),
                ("deletion_time", Int),
                ("next_experiment_id", Int),
                ("retention_days", Int),
                ("purge_protection", Int),
                ("storage_quota", Int),
            ],
        ),
        (
            "experiments",
            &[
                ("workspace_id", Text),
                ("experiment_id", Text),
                ("name", Text),
                ("artifact_location", Text),
                ("lifecycle_stage", Text),
                ("creation_time", Int),
                ("last_update_time", Int),
                ("deletion_time", Int),
            ],
        ),
        (
            "experiment_tags",
            &[
                ("workspace_id", Text),
                ("experiment_id", Text),
                ("key", Text),
                ("value", Text),
            ],
        ),
        (
            "runs",
            &[
                ("run_id", Text),
                ("workspace_id", Text),
                ("experiment_id", Text),
                ("run_name", Text),
                ("user_id", Text),
                ("status", Text),
                ("start_time", Int),
                ("end_time", Int),
                ("artifact_uri", Text),
                ("lifecycle_stage", Text),
                ("deleted_time", Int),
            ],
        ),
        ("run_params", &[("run_id", Text), ("key", Text), ("value", Text)]),
        ("run_tags", &[("run_id", Text), ("key", Text), ("value", Text)]),
        (
            "metrics",
            &[
                ("run_id", Text),
                ("key", Text),
                ("timestamp", Int),
                ("step", Int),
                ("value", Real),
                ("is_nan", Int),
                ("model_id", Text),
                ("dataset_name", Text),
                ("dataset_digest", Text),
            ],
        ),
        (
            "latest_metrics",
            &[
                ("run_id", Text),
                ("key", Text),
                ("timestamp", Int),
                ("step", Int),
                ("value", Real),
                ("is_nan", Int),
            ],
        ),
        (
            "run_dataset_inputs",
            &[
                ("run_id", Text),
                ("name", Text),
                ("digest", Text),
                ("position", Int),
                ("input", Text),
            ],
        ),
        ("run_model_inputs", &[("run_id", Text), ("model_id", Text)]),
        (
            "run_model_outputs",
            &[("run_id", Text), ("model_id", Text), ("step", Int)],
        ),
        (
            "logged_models",
            &[
                ("model_id", Text),
                ("workspace_id", Text),
                ("experiment_id", Text),
                ("name", Text),
                ("artifact_uri", Text),
                ("status", Text),
                ("status_message", Text),
                ("creator_id", Text),
                ("model_type", Text),
                ("source_run_id", Text),
                ("creation_time", Int),
                ("last_updated_time", Int),
                ("lifecycle_stage", Text),
                ("deletion_time", Int),
            ],
        ),
        (
            "logged_model_tags",
            &[("model_id", Text), ("key", Text), ("value", Text)],
        ),
        (
            "logged_model_params",
            &[("model_id", Text), ("key", Text), ("value", Text)],
        ),
        (
            "registered_models",
            &[
                ("workspace_id", Text),
                ("name", Text),
                ("description", Text),
                ("user_id", Text),
                ("creation_time", Int),
                ("last_updated_time", Int),
                ("next_version", Int),
                ("deletion_time", Int),
            ],
        ),
        (
            "registered_model_tags",
            &[
                ("workspace_id", Text),
                ("name", Text),
                ("key", Text),
                ("value", Text),
            ],
        ),
        (
            "registered_model_aliases",
            &[
                ("workspace_id", Text),
                ("name", Text),
                ("alias", Text),
                ("version", Int),
            ],
        ),
        (
            "model_versions",
            &[
                ("workspace_id", Text),
                ("name", Text),
                ("version", Int),
                ("creation_time", Int),
                ("last_updated_time", Int),
                ("user_id", Text),
                ("current_stage", Text),
                ("description", Text),
                ("source", Text),
                ("storage_location", Text),
                ("run_id", Text),
                ("run_link", Text),
                ("status", Text),
                ("status_message", Text),
                ("model_id", Text),
                ("deletion_time", Int),
            ],
        ),
        (
            "model_version_tags",
            &[
                ("workspace_id", Text),
                ("name", Text),
                ("version", Int),
                ("key", Text),
                ("value", Text),
            ],
        ),
        (
            "artifacts",
            &[
                ("workspace_id", Text),
                ("path", Text),
                ("size", Int),
                ("sha256", Text),
                ("created_at", Int),
            ],
        ),
        (
            "files",
            &[
                ("workspace_id", Text),
                ("path", Text),
                ("size", Int),
                ("sha256", Text),
                ("modified_at", Int),
            ],
        ),
        (
            "transfer_origins",
            &[
                ("workspace_id", Text),
                ("source", Text),
                ("kind", Text),
                ("source_id", Text),
                ("target_id", Text),
                ("digest", Text),
                ("time", Int),
            ],
        ),
    ]
};

#[derive(Clone, Copy)]
pub(super) enum ColumnType {
    Text,
    Int,
    Real,
}

pub(super) async fn dump(pool: &AnyPool) -> StoreResult<StateDump> {
    let mut dump = Vec::with_capacity(TABLES.len());
    for (table, columns) in TABLES.iter().chain(ACCESS_TABLES) {
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let sql = format!("SELECT {} FROM {table}", names.join(", "));
        let rows = sqlx::query(&sql).fetch_all(pool).await?;
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            values.push(Value::Array(row_values(&row, columns)?));
        }
        values.sort_by_key(|value| value.to_string());
        dump.push((table.to_string(), values));
    }
    Ok(dump)
}

/// A row's values, typed as the table declares them.
pub(super) fn row_values(row: &sqlx::any::AnyRow, columns: &[(&str, ColumnType)]) -> StoreResult<Vec<Value>> {
    let mut record = Vec::with_capacity(columns.len());
    for (name, column_type) in columns.iter() {
        let value = match column_type {
            ColumnType::Text => row.try_get::<Option<String>, _>(*name)?.map(Value::from),
            ColumnType::Int => row.try_get::<Option<i64>, _>(*name)?.map(Value::from),
            // Bit patterns, so that -0.0, infinities and NaN compare exactly.
            ColumnType::Real => row
                .try_get::<Option<f64>, _>(*name)?
                .map(|v| Value::from(format!("{:016x}", v.to_bits()))),
        };
        record.push(value.unwrap_or(Value::Null));
    }
    Ok(record)
}
