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

/// Creates an API token for `principal` (its secret given, or minted) and
/// stores only its hash: the secret, shown once, and the token's record.
pub async fn issue_token(
    store: &dyn tandem_store::MetadataStore,
    principal: &str,
    description: &str,
    expires_at: Option<tandem_core::model::Millis>,
    secret: Option<String>,
) -> tandem_store::StoreResult<(String, tandem_core::access::TokenInfo)> {
    let minted = secret::mint_token();
    let secret = secret.unwrap_or(minted.secret);
    let info = store
        .create_token(
            &minted.token_id,
            principal,
            &secret::token_hash(&secret),
            description,
            expires_at,
        )
        .await?;
    Ok((secret, info))
}
