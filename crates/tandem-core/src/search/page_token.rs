//! Offset pagination with MLflow's page tokens.
//!
//! A token is the standard base64 of the JSON `{"offset": N}`, byte for byte
//! what MLflow's `SearchUtils.create_page_token` writes, so tokens from either
//! server read the same. The client treats tokens as opaque; only we parse
//! them, so decoding is a little more lenient than MLflow's (missing padding
//! and the URL-safe alphabet are accepted).

use super::Page;
use crate::error::{Error, Result};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padded or not. `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    // Tokens are only ours to parse: padding optional, stray low bits of
    // the last character ignored (Python's decoder ignores them too).
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
    let text = text.trim();
    STANDARD.decode(text).or_else(|_| URL_SAFE.decode(text)).ok()
}

/// MLflow's page token for the given offset: base64 of `{"offset": N}`.
pub fn encode_page_token(offset: usize) -> String {
    base64_encode(format!("{{\"offset\": {offset}}}").as_bytes())
}

/// Reads the offset back from a page token, with MLflow's messages for each
/// way it can be malformed. The offset must be positive: MLflow never issues
/// a token for offset 0 and rejects one.
pub fn decode_page_token(token: &str) -> Result<usize> {
    let decoded =
        base64_decode(token).ok_or_else(|| Error::invalid("Invalid page token, could not base64-decode"))?;
    let parsed: serde_json::Value = serde_json::from_slice(&decoded).map_err(|_| {
        Error::invalid(format!(
            "Invalid page token, decoded value={}",
            String::from_utf8_lossy(&decoded)
        ))
    })?;
    let offset = parsed.get("offset");
    let falsy = match offset {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Bool(b)) => !b,
        Some(serde_json::Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(serde_json::Value::String(s)) => s.is_empty(),
        Some(serde_json::Value::Array(a)) => a.is_empty(),
        Some(serde_json::Value::Object(o)) => o.is_empty(),
    };
    if falsy {
        return Err(Error::invalid(format!(
            "Invalid page token, parsed value={parsed}"
        )));
    }
    let offset = offset.expect("checked above");
    let value = match offset {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 1.0).map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let shown = match offset {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let value = value.ok_or_else(|| Error::invalid(format!("Invalid page token, not stringable {shown}")))?;
    usize::try_from(value).map_err(|_| Error::invalid(format!("Invalid page token, not stringable {shown}")))
}

/// Where the next page of a metric's history starts: after this point, in
/// the order of the metrics table's key (step, timestamp, stored value, NaN
/// flag, model, dataset name, dataset digest). Reading from a position
/// costs the same on the last page as on the first, where an offset makes
/// the database walk past every point before it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryCursor {
    pub step: i64,
    pub timestamp: i64,
    /// The stored value's bits (JSON has no NaN or infinities).
    pub value_bits: u64,
    pub is_nan: i64,
    pub model_id: String,
    pub dataset_name: String,
    pub dataset_digest: String,
}

/// Where a history page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryPosition {
    /// An offset token (MLflow's, or one Tandem issued before cursors).
    Offset(usize),
    After(HistoryCursor),
}

/// A history page token: base64 of `{"after": {…}}`.
pub fn encode_history_token(cursor: &HistoryCursor) -> String {
    base64_encode(serde_json::json!({ "after": cursor }).to_string().as_bytes())
}

/// Reads a history page token: a cursor, or an offset as MLflow writes it.
pub fn decode_history_token(token: &str) -> Result<HistoryPosition> {
    let after = base64_decode(token)
        .and_then(|decoded| serde_json::from_slice::<serde_json::Value>(&decoded).ok())
        .and_then(|parsed| parsed.get("after").cloned());
    match after {
        Some(after) => serde_json::from_value(after)
            .map(HistoryPosition::After)
            .map_err(|error| Error::invalid(format!("Invalid page token: {error}"))),
        None => decode_page_token(token).map(HistoryPosition::Offset),
    }
}

/// Takes one page of already sorted items: `max_results` from the token's
/// offset, and a token for the next page only if items remain after it.
pub(crate) fn paginate<T>(items: Vec<T>, page_token: Option<&str>, max_results: usize) -> Result<Page<T>> {
    if max_results == 0 {
        return Err(Error::invalid(
            "Invalid value 0 for parameter 'max_results' supplied. It must be a positive integer",
        ));
    }
    let start = match page_token {
        Some(token) if !token.is_empty() => decode_page_token(token)?,
        _ => 0,
    };
    let end = start.saturating_add(max_results);
    let total = items.len();
    let next_page_token = (end < total).then(|| encode_page_token(end));
    let items = items.into_iter().skip(start).take(max_results).collect();
    Ok(Page {
        items,
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_byte_identical_to_mlflow() {
        // base64.b64encode(json.dumps({"offset": 10}).encode())
        assert_eq!(encode_page_token(10), "eyJvZmZzZXQiOiAxMH0=");
        assert_eq!(encode_page_token(1000), "eyJvZmZzZXQiOiAxMDAwfQ==");
        assert_eq!(encode_page_token(5), "eyJvZmZzZXQiOiA1fQ==");
    }

    #[test]
    fn tokens_round_trip() {
        for offset in [1, 2, 3, 10, 99, 100, 12345, 1 << 40] {
            assert_eq!(decode_page_token(&encode_page_token(offset)).unwrap(), offset);
        }
    }

    #[test]
    fn decoding_is_lenient_about_padding_and_alphabet() {
        assert_eq!(decode_page_token("eyJvZmZzZXQiOiAxMH0").unwrap(), 10);
        // {"offset": "7"}: MLflow accepts a string offset.
        assert_eq!(decode_page_token("eyJvZmZzZXQiOiAiNyJ9").unwrap(), 7);
        assert_eq!(base64_decode("-_8="), Some(vec![0xfb, 0xff]));
    }

    #[test]
    fn base64_matches_known_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_decode("Z"), None);
    }

    #[test]
    fn malformed_tokens_are_invalid_with_mlflow_messages() {
        let err = |token: &str| {
            let error = decode_page_token(token).unwrap_err();
            assert_eq!(error.kind, crate::ErrorKind::InvalidParameterValue);
            error.message
        };
        assert_eq!(err("notbase64!!"), "Invalid page token, could not base64-decode");
        assert_eq!(err("eHg="), "Invalid page token, decoded value=xx");
        assert_eq!(
            err("eyJvZmZzZXQiOiAwfQ=="),
            "Invalid page token, parsed value={\"offset\":0}"
        );
        assert_eq!(err("WzFd"), "Invalid page token, parsed value=[1]");
        assert_eq!(
            err("eyJvZmZzZXQiOiAieCJ9"),
            "Invalid page token, not stringable x"
        );
        // {"offset": -5}
        assert_eq!(
            err(&base64_encode(b"{\"offset\": -5}")),
            "Invalid page token, not stringable -5"
        );
    }

    #[test]
    fn history_tokens_round_trip_and_offsets_still_read() {
        let cursor = HistoryCursor {
            step: -3,
            timestamp: 1_700_000_000_000,
            value_bits: f64::INFINITY.to_bits(),
            is_nan: 0,
            model_id: "m-1".to_string(),
            dataset_name: String::new(),
            dataset_digest: "d\"x".to_string(),
        };
        let token = encode_history_token(&cursor);
        assert_eq!(
            decode_history_token(&token).unwrap(),
            HistoryPosition::After(cursor)
        );
        assert_eq!(
            decode_history_token(&encode_page_token(25_000)).unwrap(),
            HistoryPosition::Offset(25_000)
        );
        let broken = base64_encode(b"{\"after\": {\"step\": \"x\"}}");
        assert!(decode_history_token(&broken).is_err());
        assert!(decode_history_token("notbase64!!").is_err());
    }

    #[test]
    fn paginates_over_several_pages() {
        let items: Vec<u32> = (0..7).collect();
        let first = paginate(items.clone(), None, 3).unwrap();
        assert_eq!(first.items, vec![0, 1, 2]);
        let second = paginate(items.clone(), first.next_page_token.as_deref(), 3).unwrap();
        assert_eq!(second.items, vec![3, 4, 5]);
        let third = paginate(items.clone(), second.next_page_token.as_deref(), 3).unwrap();
        assert_eq!(third.items, vec![6]);
        assert_eq!(third.next_page_token, None);
        // An exact fit has no next page; an empty token is the first page.
        let exact = paginate(items.clone(), Some(""), 7).unwrap();
        assert_eq!((exact.items.len(), exact.next_page_token), (7, None));
        // A token past the end gives an empty page.
        let past = paginate(items.clone(), Some(&encode_page_token(50)), 3).unwrap();
        assert_eq!((past.items, past.next_page_token), (vec![], None));
        assert!(paginate(items, None, 0).is_err());
    }
}
