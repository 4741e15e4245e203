//! Who is calling.
//!
//! - [`credential`]: the `Authorization` header, parsed strictly (HTTP
//!   Basic as `MLFLOW_TRACKING_USERNAME`/`PASSWORD` send it, Bearer as
//!   `MLFLOW_TRACKING_TOKEN` does);
//! - [`secret`]: passwords hashed with Argon2id, API tokens minted from 256
//!   random bits and stored as their SHA-256;
//! - [`Authenticator`]: verifies a credential against the store and caches
//!   the verdict briefly, so a request costs a hash lookup, not an Argon2
//!   computation; any change to principals, tokens or role assignments
//!   (local or replicated) empties the cache.
//!
//! Architecture invariant: no HTTP types here; the API maps [`AuthError`]
//! to its responses once.

pub mod credential;
pub mod secret;

mod authenticator;

pub use authenticator::{AuthError, Authenticator, Identity, REPLICATION_PRINCIPAL};
pub use credential::{parse_authorization, Credential, CredentialError};
