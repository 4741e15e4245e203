//! Bounded property-based fuzzing of the `Authorization` header parser
//! (run by `cargo test`): whatever bytes a client sends, parsing returns a
//! credential or a precise refusal — it never panics, never accepts what
//! it cannot represent, and never echoes a secret in its error.

use base64::Engine;
use proptest::prelude::*;
use tandem_auth::credential::{parse_authorization, Credential, MAX_HEADER_LENGTH};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        match parse_authorization(&bytes) {
            Ok(Credential::Basic { username, .. }) => prop_assert!(!username.is_empty()),
            Ok(Credential::Bearer(token)) => {
                prop_assert!(!token.is_empty() && token.is_ascii() && !token.contains(char::is_whitespace));
            }
            Err(error) => prop_assert!(!error.0.is_empty()),
        }
    }

    #[test]
    fn basic_credentials_round_trip(
        username in "[^:\\x00]{1,40}",
        password in "\\PC{0,60}",
        scheme in prop_oneof![Just("Basic"), Just("basic"), Just("BASIC")],
    ) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let header = format!("{scheme} {encoded}");
        prop_assume!(header.len() <= MAX_HEADER_LENGTH);
        prop_assert_eq!(
            parse_authorization(header.as_bytes()).unwrap(),
            Credential::Basic { username, password }
        );
    }

    #[test]
    fn refusals_never_echo_the_secret(secret in "[A-Za-z0-9]{12,40}") {
        for header in [format!("Digest {secret}"), format!("Bearer {secret} {secret}"), format!("Basic {secret}!")] {
            if let Err(error) = parse_authorization(header.as_bytes()) {
                prop_assert!(!error.0.contains(&secret), "{}", error.0);
            }
        }
    }
}
