//! The `Authorization` header: `Basic base64(user:password)` or `Bearer
//! token`. Parsing is strict and every refusal says what was wrong, without
//! echoing the secret.

use base64::Engine;

/// The longest header accepted: a password up to 1 KiB and a name, encoded.
pub const MAX_HEADER_LENGTH: usize = 4096;

/// A credential as presented.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credential {
    // Never print a secret, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// Why an `Authorization` header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialError(pub String);

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse(message: impl Into<String>) -> CredentialError {
    CredentialError(message.into())
}

/// Parses an `Authorization` header's value (bytes: a header may hold
/// anything). The scheme is case-insensitive, as RFC 9110 says.
pub fn parse_authorization(value: &[u8]) -> Result<Credential, CredentialError> {
    if value.len() > MAX_HEADER_LENGTH {
        return Err(refuse(format!(
            "Authorization header is too long ({} bytes, at most {MAX_HEADER_LENGTH})",
            value.len()
        )));
    }
    let value = std::str::from_utf8(value).map_err(|_| refuse("Authorization header is not valid UTF-8"))?;
    let value = value.trim();
    let (scheme, rest) = match value.split_once(' ') {
        Some((scheme, rest)) => (scheme, rest.trim()),
        None => (value, ""),
    };
    if scheme.eq_ignore_ascii_case("basic") {
        if rest.is_empty() {
            return Err(refuse(
                "Basic credentials are empty: send base64(username:password)",
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| refuse("Basic credentials are not valid base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| refuse("Basic credentials are not valid UTF-8"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| refuse("Basic credentials have no ':' between username and password"))?;
        if username.is_empty() {
            return Err(refuse("Basic credentials have an empty username"));
        }
        Ok(Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(refuse("Bearer token is empty"));
        }
        if rest.contains(char::is_whitespace) || !rest.is_ascii() {
            return Err(refuse("Bearer token has characters a token cannot have"));
        }
        Ok(Credential::Bearer(rest.to_string()))
    } else if scheme.is_empty() {
        Err(refuse("Authorization header is empty"))
    } else {
        Err(refuse(format!(
            "unsupported authorization scheme '{}': use Basic or Bearer",
            scheme.chars().take(32).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text)).into_bytes()
    }

    #[test]
    fn basic_and_bearer_parse() {
        assert_eq!(
            parse_authorization(&basic("alice:s3cret:with:colons")).unwrap(),
            Credential::Basic {
                username: "alice".into(),
                password: "s3cret:with:colons".into()
            }
        );
        assert_eq!(
            parse_authorization(b"bearer  tandem_abc ").unwrap(),
            Credential::Bearer("tandem_abc".into())
        );
    }

    #[test]
    fn malformed_headers_are_refused_precisely() {
        for (header, expected) in [
            (b"".to_vec(), "empty"),
            (b"Basic".to_vec(), "empty"),
            (b"Basic !!!".to_vec(), "base64"),
            (basic("no-colon"), "no ':'"),
            (basic(":password"), "empty username"),
            (b"Bearer".to_vec(), "empty"),
            (b"Bearer a b".to_vec(), "cannot have"),
            (b"Digest x".to_vec(), "unsupported authorization scheme 'Digest'"),
            (vec![0xff, 0xfe], "UTF-8"),
            (vec![b'a'; MAX_HEADER_LENGTH + 1], "too long"),
        ] {
            let error = parse_authorization(&header).unwrap_err();
            assert!(error.0.contains(expected), "{header:?}: {error}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let credential = parse_authorization(&basic("alice:hunter22")).unwrap();
        assert!(!format!("{credential:?}").contains("hunter22"));
        assert!(!format!("{:?}", Credential::Bearer("tok".into())).contains("tok"));
    }
}
