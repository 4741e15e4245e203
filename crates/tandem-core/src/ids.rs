//! Identifier generation. Generated ids go into the journal record, never
//! regenerated on replay.

/// A run id: 32 lowercase hex characters, as MLflow generates them.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A logged model id: `m-` and 32 hex characters, as MLflow 3 generates them.
pub fn new_logged_model_id() -> String {
    format!("m-{}", uuid::Uuid::new_v4().simple())
}

/// A workspace id: stable for the workspace's life and used as its storage
/// prefix, so it must be safe in paths and URLs.
pub fn new_workspace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
