//! Fuzzing (property-based, bounded) of the search grammar: MLflow's filter
//! strings, `order_by` entries and page tokens come straight from clients.
//! Whatever they hold, parsing answers a value or an error — never a panic —
//! and the same input always gets the same answer. Inputs are drawn both
//! from arbitrary text and from the grammar's own tokens, so deep parses are
//! reached, not only early refusals. Raise `PROPTEST_CASES` to search longer.

use proptest::prelude::*;
use tandem_core::search::{
    decode_page_token, encode_page_token, search_experiments, search_registered_models, search_runs,
    validate_run_filter,
};

/// Pieces of the filter grammar, glued in random order.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("metrics.".to_string()),
        Just("params.".to_string()),
        Just("tags.".to_string()),
        Just("attributes.".to_string()),
        Just("attribute.".to_string()),
        Just("datasets.".to_string()),
        Just("run_name".to_string()),
        Just("status".to_string()),
        Just("start_time".to_string()),
        Just("name".to_string()),
        Just("`a b`".to_string()),
        Just("\"q\"".to_string()),
        Just("'v'".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("`".to_string()),
        Just(" AND ".to_string()),
        Just(" and ".to_string()),
        Just(" OR ".to_string()),
        Just(" = ".to_string()),
        Just(" != ".to_string()),
        Just(" >= ".to_string()),
        Just(" < ".to_string()),
        Just(" LIKE ".to_string()),
        Just(" ILIKE ".to_string()),
        Just(" IN ".to_string()),
        Just(" NOT IN ".to_string()),
        Just(" IS NULL".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just("1e309".to_string()),
        Just("-0.5".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("NaN".to_string()),
        Just("%".to_string()),
        Just("\\".to_string()),
        Just("é".to_string()),
        "[a-z_.]{1,8}",
        "[0-9]{1,4}",
    ]
}

fn grammar_like() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..12).prop_map(|tokens| tokens.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![grammar_like(), any::<String>(), "\\PC{0,64}"]
}

/// `PROPTEST_CASES` when set (a longer search), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4096), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn run_filters_parse_or_refuse_never_panic(filter in any_text()) {
        let first = validate_run_filter(&filter).map_err(|error| error.message);
        let again = validate_run_filter(&filter).map_err(|error| error.message);
        prop_assert_eq!(first, again);
        // And the same through a whole search, with order_by and a token.
        let _ = search_runs(Vec::new(), &filter, std::slice::from_ref(&filter), 10, Some(&filter));
    }

    #[test]
    fn experiment_and_model_filters_never_panic(filter in any_text(), order in any_text()) {
        let _ = search_experiments(Vec::new(), &filter, std::slice::from_ref(&order), 10, None);
        let _ = search_registered_models(Vec::new(), &filter, &[order], 10, None);
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused(offset in 0usize..10_000_000, garbage in any_text()) {
        let token = encode_page_token(offset);
        prop_assert_eq!(decode_page_token(&token).unwrap(), offset);
        let _ = decode_page_token(&garbage);
    }
}
