//! Backups of a region's workspaces to any object-store URL (a *backup
//! repository*), continuous archiving of the journal to the same place, and
//! point-in-time restore from them.
//!
//! The repository format is described and versioned in [`format`]; every
//! other module reads and writes it only through the types there and
//! [`repo::Repository`].

pub mod archive;
pub mod create;
pub mod error;
pub mod format;
pub mod hot_cold;
pub mod http;
pub mod policy;
pub mod prune;
pub mod repo;
pub mod schedule;
pub mod status;
pub mod verify;

pub use error::{BackupError, BackupResult};

use serde::Serialize;

/// How far a long operation got, reported as it goes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub phase: String,
    pub done: i64,
    pub total: i64,
    /// `records` or `bytes`.
    pub unit: String,
}

impl Progress {
    pub fn new(phase: &str, done: i64, total: i64, unit: &str) -> Progress {
        Progress {
            phase: phase.to_string(),
            done,
            total,
            unit: unit.to_string(),
        }
    }
}

pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// Discards progress.
pub fn no_progress(_: Progress) {}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
pub mod restore;
