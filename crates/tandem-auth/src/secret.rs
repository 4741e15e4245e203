//! Passwords and API tokens. Passwords are stored as Argon2id PHC strings
//! (salt and parameters inside); tokens are 256 random bits, shown once,
//! stored as their SHA-256 (a token is already high-entropy: a fast hash
//! is enough, and lets a request find its token by one indexed lookup).

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of every token: recognisable in a leaked file or a log.
pub const TOKEN_PREFIX: &str = "tandem_";

/// Hashes a password with Argon2id (the crate's defaults: OWASP's
/// recommended memory and time cost) and a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches the stored `hash` (false for a malformed
/// hash: it proves nothing).
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A new token: its public id and its secret (shown once).
pub struct MintedToken {
    pub token_id: String,
    pub secret: String,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MintedToken({}, ***)", self.token_id)
    }
}

pub fn mint_token() -> MintedToken {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let mut id = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id);
    MintedToken {
        token_id: hex::encode(id),
        secret: format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        ),
    }
}

/// What the store keeps of a token.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Equality in time that does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsf"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert_ne!(hash, hash_password("correct horse"), "salted");
    }

    #[test]
    fn tokens_carry_256_bits_and_are_stored_hashed() {
        let token = mint_token();
        let encoded = token.secret.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(token_hash(&token.secret).len(), 64);
        assert_ne!(token_hash(&token.secret), token.secret);
        assert_ne!(mint_token().secret, token.secret);
        assert!(!format!("{token:?}").contains(&token.secret));
    }
}
