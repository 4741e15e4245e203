//! Verifying credentials against the store, with a short-lived cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tandem_core::access::{Grant, Grants, Role};
use tandem_core::model::Millis;
use tandem_store::{MetadataStore, StoreError};

use crate::credential::{parse_authorization, Credential};
use crate::secret;

/// The principal a request presenting the deployment's replication secret
/// acts as: the regions' own calls to each other. It may do everything
/// (the secret is the deployment's root credential).
pub const REPLICATION_PRINCIPAL: &str = "tandem:replication";

/// How long a verified credential is trusted without asking the store
/// again. Any access change committed in this process empties the cache at
/// once, and one committed by another process on the same PostgreSQL
/// database about a quarter of a second later (the store watches the
/// journal for them); the TTL bounds what a missed watch would leave.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Past this many cached credentials, the cache starts over.
const CACHE_CAPACITY: usize = 10_000;
/// A token's last use is recorded at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub kind: String,
    pub grants: Grants,
    /// The token it presented, if it presented one.
    pub token_id: Option<String>,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.grants.is_admin()
    }
}

/// Why a request is not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// No credentials at all.
    Missing,
    /// Credentials that prove nobody; the message says why without
    /// revealing whether a user exists.
    Invalid(String),
    Store(StoreError),
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        AuthError::Store(error)
    }
}

struct Entry {
    identity: Identity,
    generation: u64,
    verified: Instant,
    expires_at: Option<Millis>,
    touched: Instant,
}

/// Verifies credentials; see the crate's documentation.
pub struct Authenticator {
    store: Arc<dyn MetadataStore>,
    replication_secret: Option<String>,
    cache: Mutex<HashMap<[u8; 32], Entry>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

use tandem_store::now_millis;

impl Authenticator {
    pub fn new(store: Arc<dyn MetadataStore>, replication_secret: Option<String>) -> Self {
        Authenticator {
            store,
            replication_secret: replication_secret.filter(|secret| !secret.is_empty()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller behind an `Authorization` header (None: anonymous).
    pub async fn authenticate(&self, header: Option<&[u8]>) -> Result<Option<Identity>, AuthError> {
        let Some(header) = header else {
            return Ok(None);
        };
        let key: [u8; 32] = Sha256::digest(header).into();
        let generation = self.store.access_generation();
        if let Some(identity) = self.cached(&key, generation) {
            metrics::counter!("tandem_auth_verifications_total", "outcome" => "ok", "cached" => "true")
                .increment(1);
            return Ok(Some(identity));
        }
        let verified = match parse_authorization(header) {
            Ok(credential) => self.verify(&credential).await,
            Err(error) => Err(AuthError::Invalid(error.0)),
        };
        let outcome = match &verified {
            Ok(_) => "ok",
            Err(AuthError::Store(_)) => "error",
            Err(_) => "refused",
        };
        metrics::counter!("tandem_auth_verifications_total", "outcome" => outcome, "cached" => "false")
            .increment(1);
        let (identity, expires_at) = verified?;
        let mut cache = self.cache.lock().expect("credential cache poisoned");
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(
            key,
            Entry {
                identity: identity.clone(),
                generation,
                verified: Instant::now(),
                expires_at,
                touched: Instant::now(),
            },
        );
        drop(cache);
        self.touch(&identity);
        Ok(Some(identity))
    }

    fn cached(&self, key: &[u8; 32], generation: u64) -> Option<Identity> {
        let mut cache = self.cache.lock().expect("credential cache poisoned");
        let entry = cache.get_mut(key)?;
        let fresh = entry.generation == generation
            && entry.verified.elapsed() < CACHE_TTL
            && entry.expires_at.is_none_or(|expires| expires > now_millis());
        if !fresh {
            cache.remove(key);
            return None;
        }
        let identity = entry.identity.clone();
        if entry.touched.elapsed() >= TOUCH_EVERY {
            entry.touched = Instant::now();
            drop(cache);
            self.touch(&identity);
        }
        Some(identity)
    }

    /// Records a token's use, off the request's path.
    fn touch(&self, identity: &Identity) {
        if let Some(token_id) = identity.token_id.clone() {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(error) = store.touch_token(&token_id, now_millis()).await {
                    tracing::debug!(%error, token_id, "could not record a token's use");
                }
            });
        }
    }

    /// Verifies `credential` against the store: the identity and, for a
    /// token, when it expires.
    pub async fn verify(&self, credential: &Credential) -> Result<(Identity, Option<Millis>), AuthError> {
        match credential {
            Credential::Bearer(token) => {
                if let Some(secret) = &self.replication_secret {
                    if secret::constant_time_eq(token.as_bytes(), secret.as_bytes()) {
                        return Ok((replication_identity(), None));
                    }
                }
                self.verify_token(token, None).await
            }
            Credential::Basic { username, password } => {
                let refused = || AuthError::Invalid("wrong username or password".to_string());
                let hash = self.store.password_hash(username).await?;
                let matches = match hash {
                    Some(hash) => {
                        let password = password.clone();
                        // Argon2 is deliberately slow: off the async workers.
                        tokio::task::spawn_blocking(move || secret::verify_password(&hash, &password))
                            .await
                            .unwrap_or(false)
                    }
                    None => false,
                };
                if matches {
                    return Ok((self.identity_of(username, None).await?.ok_or_else(refused)?, None));
                }
                // Tools that only speak Basic may send a token as the
                // password of its own principal.
                if password.starts_with(secret::TOKEN_PREFIX) {
                    return self.verify_token(password, Some(username)).await;
                }
                Err(refused())
            }
        }
    }

    async fn verify_token(
        &self,
        token: &str,
        principal: Option<&str>,
    ) -> Result<(Identity, Option<Millis>), AuthError> {
        let info = self
            .store
            .token_by_hash(&secret::token_hash(token))
            .await?
            .filter(|info| principal.is_none_or(|name| name == info.principal))
            .ok_or_else(|| AuthError::Invalid("unknown token".to_string()))?;
        if let Some(reason) = info.unusable(now_millis()) {
            return Err(AuthError::Invalid(format!("token {} is {reason}", info.token_id)));
        }
        let identity = self
            .identity_of(&info.principal, Some(info.token_id.clone()))
            .await?
            .ok_or_else(|| AuthError::Invalid("unknown token".to_string()))?;
        Ok((identity, info.expires_at))
    }

    /// The identity of an enabled principal.
    async fn identity_of(&self, name: &str, token_id: Option<String>) -> Result<Option<Identity>, AuthError> {
        let Some(principal) = self.store.principal(name).await? else {
            return Ok(None);
        };
        if principal.disabled {
            return Err(AuthError::Invalid(format!("principal '{name}' is disabled")));
        }
        Ok(Some(Identity {
            name: principal.name,
            kind: principal.kind,
            grants: Grants(principal.roles),
            token_id,
        }))
    }
}

fn replication_identity() -> Identity {
    Identity {
        name: REPLICATION_PRINCIPAL.to_string(),
        kind: "service".to_string(),
        grants: Grants(vec![Grant {
            role: Role::Admin,
            workspace: None,
        }]),
        token_id: None,
    }
}
