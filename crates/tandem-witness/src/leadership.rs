//! What a witness hands out and reports: a [`Leadership`] (held by the leader, needed to
//! renew or resign) and a [`LeaderInfo`] (what anybody may learn about the current leader),
//! plus the argument checks both witnesses share.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Result, WitnessError};

/// Longest region name a witness accepts; region names are short identifiers like `eastus`.
pub const MAX_REGION_BYTES: usize = 128;

/// Proof of leadership, returned by a successful campaign or seize. Only its holder has it,
/// and renewing or resigning needs it, so a region cannot renew somebody else's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// The region that leads.
    pub region: String,
    /// The fencing epoch: the witness's revision at which this leadership was granted.
    /// Strictly greater than the epoch of every earlier leadership of the same leader key,
    /// so a record or request carrying a smaller epoch is from a deposed leader.
    pub epoch: u64,
    /// The witness's lease that keeps the leadership alive (an etcd lease id, or the
    /// embedded witness's equivalent); renewing extends it.
    pub lease_id: i64,
    /// The TTL the witness granted, which may exceed the one asked for (etcd raises leases
    /// below its minimum). The holder must stop acting as leader `ttl` after the start of
    /// its last successful [`crate::Witness::renew`] (or of the campaign).
    pub ttl: Duration,
    /// When the leadership was granted, by the wall clock of whoever wrote it; for display.
    pub acquired_at: SystemTime,
}

/// The current leader as anybody may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The region that leads.
    pub region: String,
    /// Its fencing epoch (see [`Leadership::epoch`]).
    pub epoch: u64,
    /// When the leadership was granted.
    pub acquired_at: SystemTime,
    /// How long the lease lives without another renewal, if the witness could say.
    /// etcd reports whole seconds.
    pub ttl_remaining: Option<Duration>,
}

/// Refuses region names no deployment file could contain.
pub(crate) fn check_region(region: &str) -> Result<()> {
    if region.is_empty() || region.len() > MAX_REGION_BYTES || region.chars().any(char::is_control) {
        return Err(WitnessError::Invalid(format!(
            "region name {region:?} must be 1 to {MAX_REGION_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, the persisted form of wall-clock times.
pub(crate) fn to_unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names() {
        check_region("eastus").unwrap();
        assert!(check_region("").is_err());
        assert!(check_region("east\nus").is_err());
        assert!(check_region(&"x".repeat(MAX_REGION_BYTES + 1)).is_err());
    }

    #[test]
    fn unix_ms_round_trip_keeps_milliseconds() {
        let time = from_unix_ms(1_700_000_000_123);
        assert_eq!(to_unix_ms(time), 1_700_000_000_123);
    }
}
