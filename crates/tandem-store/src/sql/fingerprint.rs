//! Fingerprints of workspaces (see [`crate::fingerprint`]), read in one
//! snapshot: a read transaction on SQLite (WAL gives it a snapshot at its
//! first read), `REPEATABLE READ` on PostgreSQL (its default, `READ
//! COMMITTED`, would let each statement see newer commits).

use std::collections::BTreeMap;

use sqlx::{AnyConnection, AnyPool, Row};

use super::dump::{row_values, ColumnType, TABLES};
use super::Backend;
use crate::error::{StoreError, StoreResult};
use crate::fingerprint::{
    digest_row, seal, Applied, ClassFingerprint, ContentRow, RowDigest, TableRows, WorkspaceFingerprint,
    WORKSPACE_CLASS,
};

/// How a table's rows belong to a workspace, its class, and its key.
struct TableSpec {
    class: &'static str,
    scope: Scope,
    key: &'static [&'static str],
}

enum Scope {
    /// The table has a `workspace_id` column.
    Workspace,
    /// Rows of the workspace's runs.
    Run,
    /// Rows of the workspace's logged models.
    LoggedModel,
}

fn spec(table: &str) -> Option<TableSpec> {
    use Scope::*;
    let (class, scope, key): (&str, Scope, &[&str]) = match table {
        "workspaces" => (WORKSPACE_CLASS, Workspace, &["workspace_id"]),
        "experiments" => ("tracking", Workspace, &["experiment_id"]),
        "experiment_tags" => ("tracking", Workspace, &["experiment_id", "key"]),
        "runs" => ("tracking", Workspace, &["run_id"]),
        "run_params" => ("tracking", Run, &["run_id", "key"]),
        "run_tags" => ("tracking", Run, &["run_id", "key"]),
        "metrics" => ("tracking", Run, &["run_id", "key", "step", "timestamp"]),
        "latest_metrics" => ("tracking", Run, &["run_id", "key"]),
        "run_dataset_inputs" => ("tracking", Run, &["run_id", "name", "digest"]),
        "run_model_inputs" => ("tracking", Run, &["run_id", "model_id"]),
        "run_model_outputs" => ("tracking", Run, &["run_id", "model_id", "step"]),
        "logged_models" => ("tracking", Workspace, &["model_id"]),
        "logged_model_tags" => ("tracking", LoggedModel, &["model_id", "key"]),
        "logged_model_params" => ("tracking", LoggedModel, &["model_id", "key"]),
        "artifacts" => ("tracking", Workspace, &["path"]),
        "registered_models" => ("registry", Workspace, &["name"]),
        "registered_model_tags" => ("registry", Workspace, &["name", "key"]),
        "registered_model_aliases" => ("registry", Workspace, &["name", "alias"]),
        "model_versions" => ("registry", Workspace, &["name", "version"]),
        "model_version_tags" => ("registry", Workspace, &["name", "version", "key"]),
        "files" => ("files", Workspace, &["path"]),
        "transfer_origins" => ("tracking", Workspace, &["source", "kind", "source_id"]),
        _ => return None,
    };
    Some(TableSpec { class, scope, key })
}

fn condition(scope: &Scope) -> &'static str {
    match scope {
        Scope::Workspace => "workspace_id = $1",
        Scope::Run => "run_id IN (SELECT run_id FROM runs WHERE workspace_id = $1)",
        Scope::LoggedModel => "model_id IN (SELECT model_id FROM logged_models WHERE workspace_id = $1)",
    }
}

async fn begin(pool: &AnyPool, backend: Backend) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
    let mut tx = pool.begin().await?;
    if backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

/// Per class: what the region holds of the workspace's changes.
async fn applied(conn: &mut AnyConnection, workspace_id: &str) -> StoreResult<BTreeMap<String, Applied>> {
    let rows = sqlx::query(
        "SELECT asset_class, origin_region, MAX(origin_seq) AS high, COUNT(*) AS records FROM journal \
         WHERE workspace_id = $1 AND voided IS NULL AND kind <> 'epoch_began' \
         GROUP BY asset_class, origin_region",
    )
    .bind(workspace_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_class: BTreeMap<String, Applied> = BTreeMap::new();
    for row in rows {
        let class: String = row.try_get("asset_class")?;
        let class = if class.is_empty() {
            WORKSPACE_CLASS.to_string()
        } else {
            class
        };
        by_class.entry(class).or_default().insert(
            row.try_get("origin_region")?,
            (row.try_get("high")?, row.try_get("records")?),
        );
    }
    Ok(by_class)
}

async fn rows_of(
    conn: &mut AnyConnection,
    workspace_id: &str,
    table: &str,
    columns: &[(&str, ColumnType)],
    spec: &TableSpec,
) -> StoreResult<(Vec<RowDigest>, Vec<Vec<serde_json::Value>>)> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "SELECT {} FROM {table} WHERE {}",
        names.join(", "),
        condition(&spec.scope)
    );
    let rows = sqlx::query(&sql).bind(workspace_id).fetch_all(&mut *conn).await?;
    let mut digests = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        let record = row_values(&row, columns)?;
        let key = spec
            .key
            .iter()
            .map(|column| {
                let index = names
                    .iter()
                    .position(|name| name == column)
                    .expect("key columns are columns");
                match &record[index] {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        digests.push(RowDigest {
            key,
            digest: digest_row(&serde_json::Value::Array(record.clone())),
        });
        values.push(record);
    }
    Ok((digests, values))
}

pub(super) async fn fingerprints(
    pool: &AnyPool,
    backend: Backend,
    only: Option<&str>,
) -> StoreResult<Vec<WorkspaceFingerprint>> {
    let mut tx = begin(pool, backend).await?;
    let workspaces = sqlx::query("SELECT workspace_id, name FROM workspaces ORDER BY name")
        .fetch_all(&mut *tx)
        .await?;
    let mut fingerprints = Vec::new();
    for row in workspaces {
        let workspace_id: String = row.try_get("workspace_id")?;
        if only.is_some_and(|only| only != workspace_id) {
            continue;
        }
        let mut classes: BTreeMap<String, ClassFingerprint> = applied(&mut tx, &workspace_id)
            .await?
            .into_iter()
            .map(|(class, applied)| {
                (
                    class,
                    ClassFingerprint {
                        applied,
                        tables: BTreeMap::new(),
                    },
                )
            })
            .collect();
        let mut content = Vec::new();
        for (table, columns) in TABLES {
            let spec = spec(table)
                .ok_or_else(|| StoreError::Corrupt(format!("table {table} has no fingerprint spec")))?;
            let (mut digests, values) = rows_of(&mut tx, &workspace_id, table, columns, &spec).await?;
            if matches!(*table, "artifacts" | "files") {
                let column = |name: &str| {
                    columns
                        .iter()
                        .position(|(column, _)| *column == name)
                        .expect("column")
                };
                let (path, sha256) = (column("path"), column("sha256"));
                for record in &values {
                    content.push(ContentRow {
                        area: table.to_string(),
                        path: record[path].as_str().unwrap_or_default().to_string(),
                        sha256: record[sha256].as_str().unwrap_or_default().to_string(),
                    });
                }
            }
            let digest = seal(&mut digests);
            classes
                .entry(spec.class.to_string())
                .or_default()
                .tables
                .insert(table.to_string(), digest);
        }
        fingerprints.push(WorkspaceFingerprint {
            workspace_id,
            name: row.try_get("name")?,
            classes,
            content,
        });
    }
    tx.commit().await?;
    Ok(fingerprints)
}

pub(super) async fn table_rows(
    pool: &AnyPool,
    backend: Backend,
    workspace_id: &str,
    table: &str,
) -> StoreResult<TableRows> {
    let (spec, columns) = match (spec(table), TABLES.iter().find(|(name, _)| *name == table)) {
        (Some(spec), Some((_, columns))) => (spec, *columns),
        _ => {
            return Err(StoreError::Domain(tandem_core::Error::invalid(format!(
                "'{table}' is not a state table"
            ))))
        }
    };
    let mut tx = begin(pool, backend).await?;
    let applied = applied(&mut tx, workspace_id)
        .await?
        .remove(spec.class)
        .unwrap_or_default();
    let (mut rows, _) = rows_of(&mut tx, workspace_id, table, columns, &spec).await?;
    tx.commit().await?;
    seal(&mut rows);
    Ok(TableRows { applied, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_table_has_a_class_and_a_key_among_its_columns() {
        for (table, columns) in TABLES {
            let spec = spec(table).unwrap_or_else(|| panic!("{table} has no spec"));
            for key in spec.key {
                assert!(columns.iter().any(|(name, _)| name == key), "{table}.{key}");
            }
            if matches!(spec.scope, Scope::Workspace) {
                assert!(columns.iter().any(|(name, _)| *name == "workspace_id"), "{table}");
            }
        }
    }
}
