//! The first principal of a deployment with authentication: an `admin`
//! user holding the Admin role, whose token is written to a file only the
//! server's user can read (or read from it, when the file was prepared:
//! `tandem up` gives every region the same file, so whichever region leads
//! first creates the admin with that token).
//!
//! Runs where local writes are accepted — a region on its own at start, a
//! region of a deployment when it becomes primary — and only while the
//! deployment has no principal at all; replicas receive the admin through
//! the journal like every other change.

use std::path::{Path, PathBuf};
use tandem_core::access::{Role, USER};
use tandem_store::MetadataStore;

/// The bootstrap admin's name.
pub const ADMIN: &str = "admin";
/// Who the bootstrap's journal records name.
const BOOTSTRAP_PRINCIPAL: &str = "tandem:bootstrap";

/// Creates the admin if the deployment has no principal yet. Returns
/// whether it did.
pub async fn bootstrap_admin(store: &dyn MetadataStore, token_file: &Path) -> Result<bool, String> {
    if !store
        .list_principals()
        .await
        .map_err(|error| format!("cannot list principals: {error}"))?
        .is_empty()
    {
        return Ok(false);
    }
    let secret = match read_token(token_file)? {
        Some(secret) => secret,
        None => {
            let secret = tandem_auth::secret::mint_token().secret;
            write_token(token_file, &secret)?;
            secret
        }
    };
    tandem_store::actor::scope(Some(BOOTSTRAP_PRINCIPAL.to_string()), async {
        store.create_principal(ADMIN, USER, None).await?;
        store.assign_role(ADMIN, Role::Admin, None).await?;
        tandem_auth::issue_token(store, ADMIN, "bootstrap admin token", None, Some(secret)).await
    })
    .await
    .map_err(|error| format!("cannot create the bootstrap admin: {error}"))?;
    tracing::info!(
        principal = ADMIN,
        token_file = %token_file.display(),
        "created the bootstrap admin; its token is in the token file (export MLFLOW_TRACKING_TOKEN=$(cat {}))",
        token_file.display()
    );
    Ok(true)
}

/// A token already in the file, if any.
fn read_token(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                Ok(None)
            } else if token.len() < 32 {
                Err(format!(
                    "{} holds a token of {} characters: a token needs at least 32 (256 bits)",
                    path.display(),
                    token.len()
                ))
            } else {
                Ok(Some(token.to_string()))
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Writes `secret` to `path`, readable by its owner only, atomically.
pub fn write_token(path: &Path, secret: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
    }
    let temporary = PathBuf::from(format!("{}.tmp", path.display()));
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|error| format!("cannot write {}: {error}", temporary.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|error| format!("cannot write {}: {error}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|error| format!("cannot write {}: {error}", path.display()))
}
