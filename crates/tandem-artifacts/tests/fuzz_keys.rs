//! Fuzzing (property-based, bounded) of artifact keys: every path a client
//! sends becomes an `ArtifactKey` or is refused, never a panic; an accepted
//! key never escapes its root (no `..`, no absolute path, no backslash, no
//! NUL, no empty segment) and parses back to itself.

use proptest::prelude::*;
use tandem_artifacts::ArtifactKey;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("".to_string()),
        Just("%2e%2e".to_string()),
        Just("a\\b".to_string()),
        Just("nul\0".to_string()),
        Just("~".to_string()),
        Just("model.pkl".to_string()),
        "[a-zA-Z0-9_.-]{1,12}",
        "\\PC{1,6}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(segment(), 0..8).prop_map(|segments| segments.join("/")),
        prop::collection::vec(segment(), 0..8).prop_map(|segments| format!("/{}", segments.join("/"))),
        any::<String>(),
    ]
}

/// `PROPTEST_CASES` when set (a longer search), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2048), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn accepted_keys_stay_inside_their_root(candidate in path()) {
        if let Ok(key) = ArtifactKey::parse(&candidate) {
            let text = key.as_str();
            prop_assert!(!text.starts_with('/'), "absolute: {text:?}");
            prop_assert!(!text.contains('\\'), "backslash: {text:?}");
            prop_assert!(!text.contains('\0'), "NUL: {text:?}");
            for part in text.split('/') {
                prop_assert!(part != ".." && part != "." && !part.is_empty(), "segment {part:?} in {text:?}");
            }
            let again = ArtifactKey::parse(text).expect("an accepted key parses again");
            prop_assert_eq!(again.as_str(), text);
        }
    }
}
