//! Tandem's domain model, independent of storage and transport.
//!
//! This crate holds what every other layer agrees on: the entities of a
//! workspace (experiments, runs, models, ...), the journal record format that
//! replication, backup and restore read, the validation rules that decide
//! whether a request may change state, and the semantics of MLflow's search
//! filters.
//!
//! Architecture invariant: nothing here performs I/O, knows HTTP, or imports a
//! database driver. Every function is deterministic given its inputs, which is
//! what lets a journal replay rebuild exactly the state it describes.

pub mod access;
pub mod diagnostics;
pub mod error;
pub mod history;
pub mod hlc;
pub mod ids;
pub mod journal;
pub mod merge;
pub mod model;
pub mod names;
pub mod python_json;
pub mod search;
pub mod transfer;
pub mod validation;

pub use error::{Error, ErrorKind, Result};
