//! The embedded witness for the one-host default: [`EmbeddedWitnessServer`], a small HTTP
//! service with the same lease and epoch semantics as etcd, its revision persisted in a
//! file; and [`HttpWitness`], the [`crate::Witness`] that talks to it.
//!
//! `state` holds the rules (pure), `persist` the state file, `server` and `client` the two
//! ends of the protocol that `wire` defines.

mod client;
mod persist;
mod server;
mod state;
mod wire;

pub use client::HttpWitness;
pub use persist::STATE_FILE_NAME;
pub use server::{serve_embedded, EmbeddedWitnessServer};
