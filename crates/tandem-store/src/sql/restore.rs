//! Restoring a workspace from a backup: the changes of the workspace as it
//! was, written as new local changes of this region in ONE transaction, so a
//! restore is all or nothing, replicates to the peers like any change, and
//! is archived like any change.

use async_trait::async_trait;
use sqlx::Row;
use tandem_core::journal::Change;
use tandem_core::Error;

use super::{SqlStore, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::RestoreSession;

/// A restore under way: holds the writer lock and the open transaction
/// until [`RestoreSession::commit`] (or drop, which rolls back).
struct SqlRestore<'a> {
    store: &'a SqlStore,
    write: Option<WriteTx>,
    name: String,
    records: i64,
}

impl SqlStore {
    pub(crate) async fn start_restore<'a>(
        &'a self,
        workspace_id: &str,
        name: &str,
    ) -> StoreResult<Box<dyn RestoreSession + 'a>> {
        tandem_core::validation::validate_workspace_name(name)?;
        let mut write = self.begin_write_alone(workspace_id).await?;
        // Checked inside the transaction: no workspace can take the id or
        // the name between the check and the commit (writers are serialized).
        let rows = sqlx::query(
            "SELECT workspace_id, name, lifecycle_stage FROM workspaces WHERE workspace_id = $1 OR name = $2",
        )
        .bind(workspace_id)
        .bind(name)
        .fetch_all(&mut *write.tx)
        .await?;
        if let Some(row) = rows.first() {
            let id: String = row.try_get("workspace_id")?;
            let held: String = row.try_get("name")?;
            let stage: String = row.try_get("lifecycle_stage")?;
            let deleted = if stage == "active" {
                String::new()
            } else {
                " (a deleted workspace: recover it, purge it, or restore it as a new workspace with --as)"
                    .to_string()
            };
            return Err(StoreError::Domain(Error::already_exists(format!(
                "cannot restore workspace '{name}' ({workspace_id}) here: workspace '{held}' ({id}) holds its id or name{deleted}"
            ))));
        }
        Ok(Box::new(SqlRestore {
            store: self,
            write: Some(write),
            name: name.to_string(),
            records: 0,
        }))
    }
}

#[async_trait]
impl RestoreSession for SqlRestore<'_> {
    async fn apply(&mut self, changes: Vec<Change>) -> StoreResult<()> {
        let write = self.write.as_mut().expect("restore session used after commit");
        for change in changes {
            if self.records == 0 {
                // The workspace's row must come first, with the target's id
                // and name: everything after it refers to it.
                match &change {
                    Change::WorkspaceCreated {
                        workspace_id, name, ..
                    } if *workspace_id == write.workspace_id && *name == self.name => {}
                    other => {
                        return Err(StoreError::Domain(Error::invalid(format!(
                            "a restore begins with the creation of workspace '{}', not with {}",
                            self.name,
                            other.kind()
                        ))))
                    }
                }
            } else if matches!(
                change,
                Change::WorkspaceCreated { .. } | Change::EpochBegan { .. }
            ) {
                return Err(StoreError::Domain(Error::invalid(format!(
                    "a restore cannot write a second {}",
                    change.kind()
                ))));
            }
            self.store.record(write, change).await?;
            self.records += 1;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<i64> {
        let write = self.write.take().expect("restore session committed twice");
        if self.records == 0 {
            return Err(StoreError::Domain(Error::invalid(
                "a restore writes at least the workspace's creation",
            )));
        }
        SqlStore::commit(write).await?;
        Ok(self.records)
    }
}
