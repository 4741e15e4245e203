//! Principals, tokens and role assignments: deployment-wide records of the
//! `access` class. Writes validate against current state and journal one
//! change each (`apply_access` applies it, for local writes and replicated
//! records alike); reads serve the HTTP layer's authentication. The
//! store only ever sees hashes: the password's Argon2id PHC string and the
//! token's SHA-256 are computed above it.

use sqlx::{AnyConnection, Row};
use tandem_core::access::{Grant, Principal, Role, RoleAssignment, TokenInfo};
use tandem_core::journal::{Change, DEPLOYMENT_RECORD};
use tandem_core::model::Millis;
use tandem_core::Error;

use super::SqlStore;
use crate::error::{StoreError, StoreResult};

fn domain(error: Error) -> StoreError {
    StoreError::Domain(error)
}

fn no_principal(name: &str) -> StoreError {
    domain(Error::not_found(format!("Principal '{name}' does not exist")))
}

/// Applies an access change; false if `change` is not one.
pub(crate) async fn apply_access(tx: &mut AnyConnection, change: &Change) -> StoreResult<bool> {
    let conn = &mut *tx;
    match change {
        Change::PrincipalCreated {
            name,
            kind,
            password_hash,
            time,
        } => {
            sqlx::query(
                "INSERT INTO principals (name, kind, password_hash, disabled, created_at, updated_at) VALUES ($1, $2, $3, 0, $4, $4) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(kind)
            .bind(password_hash.as_deref())
            .bind(time)
            .execute(conn)
            .await?;
        }
        Change::PrincipalPasswordSet {
            name,
            password_hash,
            time,
        } => {
            sqlx::query("UPDATE principals SET password_hash = $1, updated_at = $2 WHERE name = $3")
                .bind(password_hash.as_deref())
                .bind(time)
                .bind(name)
                .execute(conn)
                .await?;
        }
        Change::PrincipalDisabled { name, disabled, time } => {
            sqlx::query("UPDATE principals SET disabled = $1, updated_at = $2 WHERE name = $3")
                .bind(*disabled as i64)
                .bind(time)
                .bind(name)
                .execute(conn)
                .await?;
        }
        Change::PrincipalDeleted { name, .. } => {
            for sql in [
                "DELETE FROM role_assignments WHERE principal = $1",
                "DELETE FROM tokens WHERE principal = $1",
                "DELETE FROM principals WHERE name = $1",
            ] {
                sqlx::query(sql).bind(name).execute(&mut *tx).await?;
            }
        }
        Change::TokenCreated {
            token_id,
            principal,
            token_hash,
            description,
            expires_at,
            time,
        } => {
            sqlx::query(
                "INSERT INTO tokens (token_id, principal, token_hash, description, created_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT (token_id) DO NOTHING",
            )
            .bind(token_id)
            .bind(principal)
            .bind(token_hash)
            .bind(description)
            .bind(time)
            .bind(expires_at)
            .execute(conn)
            .await?;
        }
        Change::TokenRevoked { token_id, time } => {
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE token_id = $2 AND revoked_at IS NULL")
                .bind(time)
                .bind(token_id)
                .execute(conn)
                .await?;
        }
        Change::RoleAssigned {
            principal,
            role,
            workspace_id,
            time,
        } => {
            sqlx::query(
                "INSERT INTO role_assignments (principal, role, scope, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (principal, role, scope) DO NOTHING",
            )
            .bind(principal)
            .bind(role.as_str())
            .bind(workspace_id.as_deref().unwrap_or(DEPLOYMENT_RECORD))
            .bind(time)
            .execute(conn)
            .await?;
        }
        Change::RoleRemoved {
            principal,
            role,
            workspace_id,
            ..
        } => {
            sqlx::query("DELETE FROM role_assignments WHERE principal = $1 AND role = $2 AND scope = $3")
                .bind(principal)
                .bind(role.as_str())
                .bind(workspace_id.as_deref().unwrap_or(DEPLOYMENT_RECORD))
                .execute(conn)
                .await?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Removes the role assignments scoped to `workspace_id`: a purged
/// workspace takes them with it, and a new workspace of the same name
/// starts with none.
pub(crate) async fn forget_workspace(tx: &mut AnyConnection, workspace_id: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM role_assignments WHERE scope = $1")
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

const PRINCIPAL_COLUMNS: &str = "name, kind, password_hash, disabled, created_at, updated_at";
const TOKEN_COLUMNS: &str =
    "t.token_id, t.principal, t.description, t.created_at, t.expires_at, t.revoked_at, u.last_used_at";

fn token_row(row: &sqlx::any::AnyRow) -> StoreResult<TokenInfo> {
    Ok(TokenInfo {
        token_id: row.try_get("token_id")?,
        principal: row.try_get("principal")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl SqlStore {
    /// Journals one access change as a deployment-wide record.
    async fn write_access(&self, change: impl FnOnce(Millis) -> Change) -> StoreResult<()> {
        let mut write = self.begin_write(DEPLOYMENT_RECORD).await?;
        let change = change(write.now);
        self.record(&mut write, change).await?;
        Self::commit(write).await
    }

    async fn principal_row(&self, name: &str) -> StoreResult<Option<sqlx::any::AnyRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn grants_of(&self, name: &str) -> StoreResult<Vec<Grant>> {
        Ok(self
            .assignments(Some(name), None)
            .await?
            .into_iter()
            .map(|assignment| Grant {
                role: assignment.role,
                workspace: assignment.workspace,
            })
            .collect())
    }

    async fn principal_of(&self, row: &sqlx::any::AnyRow) -> StoreResult<Principal> {
        let name: String = row.try_get("name")?;
        Ok(Principal {
            roles: self.grants_of(&name).await?,
            kind: row.try_get("kind")?,
            has_password: row.try_get::<Option<String>, _>("password_hash")?.is_some(),
            disabled: row.try_get::<i64, _>("disabled")? != 0,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            name,
        })
    }

    pub(crate) async fn create_principal_impl(
        &self,
        name: &str,
        kind: &str,
        password_hash: Option<String>,
    ) -> StoreResult<Principal> {
        tandem_core::access::validate_principal_name(name)?;
        if ![tandem_core::access::USER, tandem_core::access::SERVICE].contains(&kind) {
            return Err(domain(Error::invalid(format!(
                "Unknown principal kind '{kind}': use 'user' or 'service'"
            ))));
        }
        if self.principal_row(name).await?.is_some() {
            return Err(domain(Error::already_exists(format!(
                "Principal '{name}' already exists"
            ))));
        }
        self.write_access(|time| Change::PrincipalCreated {
            name: name.to_string(),
            kind: kind.to_string(),
            password_hash,
            time,
        })
        .await?;
        tracing::info!(principal = name, kind, "created principal");
        self.principal_impl(name).await?.ok_or_else(|| no_principal(name))
    }

    pub(crate) async fn principal_impl(&self, name: &str) -> StoreResult<Option<Principal>> {
        match self.principal_row(name).await? {
            Some(row) => Ok(Some(self.principal_of(&row).await?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn password_hash_impl(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(match self.principal_row(name).await? {
            Some(row) => row.try_get("password_hash")?,
            None => None,
        })
    }

    pub(crate) async fn list_principals_impl(&self) -> StoreResult<Vec<Principal>> {
        let rows = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut principals = Vec::with_capacity(rows.len());
        for row in &rows {
            principals.push(self.principal_of(row).await?);
        }
        Ok(principals)
    }

    pub(crate) async fn set_password_impl(
        &self,
        name: &str,
        password_hash: Option<String>,
    ) -> StoreResult<()> {
        if self.principal_row(name).await?.is_none() {
            return Err(no_principal(name));
        }
        self.write_access(|time| Change::PrincipalPasswordSet {
            name: name.to_string(),
            password_hash,
            time,
        })
        .await
    }

    pub(crate) async fn set_disabled_impl(&self, name: &str, disabled: bool) -> StoreResult<()> {
        if self.principal_row(name).await?.is_none() {
            return Err(no_principal(name));
        }
        self.write_access(|time| Change::PrincipalDisabled {
            name: name.to_string(),
            disabled,
            time,
        })
        .await?;
        tracing::info!(
            principal = name,
            disabled,
            "principal {}",
            if disabled { "disabled" } else { "enabled" }
        );
        Ok(())
    }

    pub(crate) async fn delete_principal_impl(&self, name: &str) -> StoreResult<()> {
        if self.principal_row(name).await?.is_none() {
            return Err(no_principal(name));
        }
        self.write_access(|time| Change::PrincipalDeleted {
            name: name.to_string(),
            time,
        })
        .await?;
        tracing::info!(
            principal = name,
            "deleted principal, its tokens and role assignments"
        );
        Ok(())
    }

    pub(crate) async fn create_token_impl(
        &self,
        token_id: &str,
        principal: &str,
        token_hash: &str,
        description: &str,
        expires_at: Option<Millis>,
    ) -> StoreResult<TokenInfo> {
        if self.principal_row(principal).await?.is_none() {
            return Err(no_principal(principal));
        }
        if description.len() > 256 {
            return Err(domain(Error::invalid(
                "Token description is too long: use at most 256 bytes.",
            )));
        }
        let now = self.now();
        if let Some(expires_at) = expires_at {
            if expires_at <= now {
                return Err(domain(Error::invalid("Token expiry must be in the future.")));
            }
        }
        self.write_access(|time| Change::TokenCreated {
            token_id: token_id.to_string(),
            principal: principal.to_string(),
            token_hash: token_hash.to_string(),
            description: description.to_string(),
            expires_at,
            time,
        })
        .await?;
        tracing::info!(principal, token_id, "created token");
        self.token_impl(token_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("token {token_id} vanished after its creation")))
    }

    pub(crate) async fn token_impl(&self, token_id: &str) -> StoreResult<Option<TokenInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t LEFT JOIN token_usage u ON u.token_id = t.token_id WHERE t.token_id = $1"
        ))
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    pub(crate) async fn token_by_hash_impl(&self, token_hash: &str) -> StoreResult<Option<TokenInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t LEFT JOIN token_usage u ON u.token_id = t.token_id WHERE t.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    pub(crate) async fn list_tokens_impl(&self, principal: Option<&str>) -> StoreResult<Vec<TokenInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t LEFT JOIN token_usage u ON u.token_id = t.token_id \
             WHERE CAST($1 AS TEXT) IS NULL OR t.principal = $1 ORDER BY t.created_at, t.token_id"
        ))
        .bind(principal)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    pub(crate) async fn revoke_token_impl(&self, token_id: &str) -> StoreResult<TokenInfo> {
        let token = self
            .token_impl(token_id)
            .await?
            .ok_or_else(|| domain(Error::not_found(format!("Token '{token_id}' does not exist"))))?;
        if token.revoked_at.is_none() {
            self.write_access(|time| Change::TokenRevoked {
                token_id: token_id.to_string(),
                time,
            })
            .await?;
            tracing::info!(token_id, principal = %token.principal, "revoked token");
        }
        self.token_impl(token_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("token {token_id} vanished after its revocation")))
    }

    /// Region-local bookkeeping: when a token was last used here. Not
    /// journaled (a write per request would flood the journal).
    pub(crate) async fn touch_token_impl(&self, token_id: &str, at: Millis) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO token_usage (token_id, last_used_at) VALUES ($1, $2) \
             ON CONFLICT (token_id) DO UPDATE SET last_used_at = CASE WHEN token_usage.last_used_at > excluded.last_used_at THEN token_usage.last_used_at ELSE excluded.last_used_at END",
        )
        .bind(token_id)
        .bind(at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The active workspace named `name`: its id.
    async fn active_workspace_id(&self, name: &str) -> StoreResult<String> {
        let row = sqlx::query("SELECT workspace_id, lifecycle_stage FROM workspaces WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Err(domain(Error::not_found(format!(
                "Workspace '{name}' does not exist"
            )))),
            Some(row) => {
                let stage: String = row.try_get("lifecycle_stage")?;
                if stage != "active" {
                    return Err(domain(Error::invalid_state(format!(
                        "Workspace '{name}' is deleted: recover it before assigning roles in it"
                    ))));
                }
                Ok(row.try_get("workspace_id")?)
            }
        }
    }

    pub(crate) async fn assign_role_impl(
        &self,
        principal: &str,
        role: Role,
        workspace: Option<&str>,
    ) -> StoreResult<RoleAssignment> {
        if self.principal_row(principal).await?.is_none() {
            return Err(no_principal(principal));
        }
        if workspace.is_some() && !role.assignable_to_workspace() {
            return Err(domain(Error::invalid(format!(
                "Role {role} applies to the whole deployment: assign it without a workspace"
            ))));
        }
        let workspace_id = match workspace {
            Some(name) => Some(self.active_workspace_id(name).await?),
            None => None,
        };
        let existing = self.assignments(Some(principal), workspace).await?;
        let assignment = RoleAssignment {
            principal: principal.to_string(),
            role,
            workspace: workspace.map(str::to_string),
        };
        if existing.contains(&assignment) {
            return Ok(assignment);
        }
        self.write_access(|time| Change::RoleAssigned {
            principal: principal.to_string(),
            role,
            workspace_id,
            time,
        })
        .await?;
        tracing::info!(principal, role = %role, workspace = workspace.unwrap_or("(deployment)"), "assigned role");
        Ok(assignment)
    }

    pub(crate) async fn remove_role_impl(
        &self,
        principal: &str,
        role: Role,
        workspace: Option<&str>,
    ) -> StoreResult<()> {
        let assignment = RoleAssignment {
            principal: principal.to_string(),
            role,
            workspace: workspace.map(str::to_string),
        };
        let held = self.assignments(Some(principal), workspace).await?;
        if !held.contains(&assignment) {
            return Err(domain(Error::not_found(format!(
                "Principal '{principal}' holds no {role} role {}",
                match workspace {
                    Some(name) => format!("in workspace '{name}'"),
                    None => "at deployment scope".to_string(),
                }
            ))));
        }
        let workspace_id = match workspace {
            Some(name) => Some(
                sqlx::query_scalar::<_, String>("SELECT workspace_id FROM workspaces WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?,
            ),
            None => None,
        };
        self.write_access(|time| Change::RoleRemoved {
            principal: principal.to_string(),
            role,
            workspace_id,
            time,
        })
        .await?;
        tracing::info!(principal, role = %role, workspace = workspace.unwrap_or("(deployment)"), "removed role");
        Ok(())
    }

    pub(crate) async fn access_snapshot_impl(&self) -> StoreResult<tandem_core::access::AccessSnapshot> {
        use tandem_core::access::{AccessSnapshot, PrincipalRecord, TokenRecord};
        let principals = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(PrincipalRecord {
                name: row.try_get("name")?,
                kind: row.try_get("kind")?,
                password_hash: row.try_get("password_hash")?,
                disabled: row.try_get::<i64, _>("disabled")? != 0,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let tokens = sqlx::query(
            "SELECT token_id, principal, token_hash, description, expires_at, revoked_at FROM tokens ORDER BY token_id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(TokenRecord {
                token_id: row.try_get("token_id")?,
                principal: row.try_get("principal")?,
                token_hash: row.try_get("token_hash")?,
                description: row.try_get("description")?,
                expires_at: row.try_get("expires_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(AccessSnapshot {
            principals,
            tokens,
            roles: self.assignments(None, None).await?,
        })
    }

    /// Role assignments, filtered by principal and by workspace name
    /// (`Some(name)`: that workspace's own assignments).
    pub(crate) async fn assignments(
        &self,
        principal: Option<&str>,
        workspace: Option<&str>,
    ) -> StoreResult<Vec<RoleAssignment>> {
        let rows = sqlx::query(
            "SELECT r.principal, r.role, r.scope, w.name AS workspace FROM role_assignments r \
             LEFT JOIN workspaces w ON w.workspace_id = r.scope \
             WHERE (CAST($1 AS TEXT) IS NULL OR r.principal = $1) AND (CAST($2 AS TEXT) IS NULL OR w.name = $2) \
             ORDER BY r.principal, r.scope, r.role",
        )
        .bind(principal)
        .bind(workspace)
        .fetch_all(&self.pool)
        .await?;
        let mut assignments = Vec::with_capacity(rows.len());
        for row in rows {
            let role: String = row.try_get("role")?;
            let scope: String = row.try_get("scope")?;
            let role =
                Role::parse(&role).map_err(|_| StoreError::Corrupt(format!("unknown role {role} stored")))?;
            let workspace: Option<String> = row.try_get("workspace")?;
            if !scope.is_empty() && workspace.is_none() {
                // The workspace is gone (purged): the assignment with it.
                continue;
            }
            assignments.push(RoleAssignment {
                principal: row.try_get("principal")?,
                role,
                workspace,
            });
        }
        Ok(assignments)
    }
}
