//! Backups of a region's workspaces to any object-store URL (a *backup
//! repository*), continuous archiving of the journal to the same place, and
//! point-in-time restore from them.
//!
//! The repository format is described and versioned in [`format`]; every
//! other module reads and writes it only through the types there.

pub mod format;
pub mod restore;
