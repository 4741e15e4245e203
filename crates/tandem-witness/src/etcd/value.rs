//! The leader key's value in etcd: versioned JSON naming the region and when it took over.
//!
//! The epoch and the lease are not in the value; etcd keeps them as the key's revision and
//! lease, which is what makes them trustworthy.

use serde::{Deserialize, Serialize};

use crate::error::{Result, WitnessError};

/// The format this version writes and the newest it reads.
pub(super) const LEADER_VALUE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LeaderValue {
    /// Format version; a reader refuses newer ones rather than misreading them.
    pub version: u32,
    pub region: String,
    /// Wall-clock time of the takeover, milliseconds since the Unix epoch.
    pub acquired_at_ms: u64,
}

impl LeaderValue {
    pub(super) fn new(region: &str, acquired_at_ms: u64) -> Self {
        LeaderValue {
            version: LEADER_VALUE_VERSION,
            region: region.to_string(),
            acquired_at_ms,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and integers serializes")
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let value: LeaderValue = serde_json::from_slice(bytes)
            .map_err(|error| WitnessError::Invalid(format!("unreadable leader value in etcd: {error}")))?;
        if value.version > LEADER_VALUE_VERSION {
            return Err(WitnessError::Invalid(format!(
                "leader value format {} is newer than this version reads ({LEADER_VALUE_VERSION})",
                value.version
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let value = LeaderValue::new("eastus", 1_700_000_000_000);
        assert_eq!(LeaderValue::decode(&value.encode()).unwrap(), value);
    }

    #[test]
    fn newer_versions_and_garbage_are_refused() {
        let newer = br#"{"version":2,"region":"eastus","acquired_at_ms":1}"#;
        assert!(matches!(
            LeaderValue::decode(newer),
            Err(WitnessError::Invalid(_))
        ));
        assert!(matches!(
            LeaderValue::decode(b"eastus"),
            Err(WitnessError::Invalid(_))
        ));
    }
}
