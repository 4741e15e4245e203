//! Lease timings and the rule that makes them safe (Patroni's
//! `loop_wait + 2 * retry_timeout <= ttl`).
//!
//! The leader renews every `renew_interval`; one renewal attempt is abandoned after
//! `retry_timeout`. In the worst case a renewal starts just before the witness becomes slow,
//! times out after `retry_timeout`, is retried, and times out again: the leader learns that
//! it cannot renew `renew_interval + 2 * retry_timeout` after its last successful renewal.
//! Keeping that within `ttl` means the old leader has stopped acting as leader by the time
//! the witness lets anybody else take the lease, so two regions never both believe they are
//! the primary.

use std::time::Duration;

use crate::error::{Result, WitnessError};

/// The shortest TTL a configuration may ask for. etcd raises shorter leases to its own
/// minimum (1.5 × its election timeout, 2 s with default settings), so anything below would
/// be granted differently by the two witnesses.
pub const MIN_CONFIGURED_TTL: Duration = Duration::from_secs(2);

/// The longest TTL accepted by either witness: an hour. A longer lease means a failover
/// that waits more than an hour, which is never what a continuity configuration wants.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// How long the leadership lease lives and how the leader keeps it alive.
///
/// The defaults (6 s, 1 s, 2 s) satisfy `1 + 2 × 2 = 5 ≤ 6` with a second of slack for
/// clock-rate differences and scheduling. Patroni's defaults (30 s, 10 s, 10 s) are sized
/// for a DCS across a WAN; a witness on the same LAN or host answers in milliseconds, so
/// two seconds is already a generous timeout, and a 6 s lease is what keeps unplanned
/// failover (lease lapse, then takeover) under the 10 s RTO Tandem aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// Lifetime of the lease without renewal; also how long a lost primary may go
    /// undetected. A whole number of seconds, because etcd's leases are.
    pub ttl: Duration,
    /// How often the leader renews (Patroni's `loop_wait`); also a sensible polling
    /// interval for regions watching [`crate::Witness::leader`].
    pub renew_interval: Duration,
    /// How long one request to the witness may take before it is abandoned and retried.
    pub retry_timeout: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            ttl: Duration::from_secs(6),
            renew_interval: Duration::from_secs(1),
            retry_timeout: Duration::from_secs(2),
        }
    }
}

impl LeaseTimings {
    /// Checks these timings with [`validate_lease_timings`].
    pub fn validate(&self) -> Result<()> {
        validate_lease_timings(self.ttl, self.renew_interval, self.retry_timeout)
    }
}

/// Accepts timings only if `renew_interval + 2 * retry_timeout <= ttl` (Patroni's rule),
/// the intervals are not zero, and the TTL is a whole number of seconds between
/// [`MIN_CONFIGURED_TTL`] and [`MAX_TTL`].
pub fn validate_lease_timings(
    ttl: Duration,
    renew_interval: Duration,
    retry_timeout: Duration,
) -> Result<()> {
    check_ttl(ttl)?;
    if ttl < MIN_CONFIGURED_TTL {
        return Err(WitnessError::Invalid(format!(
            "lease ttl {ttl:?} is below the minimum of {MIN_CONFIGURED_TTL:?}"
        )));
    }
    if renew_interval.is_zero() || retry_timeout.is_zero() {
        return Err(WitnessError::Invalid(
            "renew interval and retry timeout must be greater than zero".to_string(),
        ));
    }
    let worst_case_detection = renew_interval.saturating_add(retry_timeout.saturating_mul(2));
    if worst_case_detection > ttl {
        return Err(WitnessError::Invalid(format!(
            "renew interval {renew_interval:?} + 2 × retry timeout {retry_timeout:?} = \
             {worst_case_detection:?} exceeds the lease ttl {ttl:?}: the old leader could \
             still believe it leads after another region took over"
        )));
    }
    Ok(())
}

/// The TTL checks every witness applies to a single request: whole seconds, at least one,
/// at most [`MAX_TTL`]. Sub-second TTLs are refused rather than rounded so that the lease
/// granted is never silently shorter or longer than the caller's arithmetic assumed.
pub(crate) fn check_ttl(ttl: Duration) -> Result<()> {
    if ttl.subsec_nanos() != 0 || ttl.is_zero() {
        return Err(WitnessError::Invalid(format!(
            "lease ttl {ttl:?} must be a whole, non-zero number of seconds"
        )));
    }
    if ttl > MAX_TTL {
        return Err(WitnessError::Invalid(format!(
            "lease ttl {ttl:?} exceeds the maximum of {MAX_TTL:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_satisfy_the_rule() {
        LeaseTimings::default().validate().unwrap();
    }

    #[test]
    fn the_rule_is_inclusive() {
        validate_lease_timings(secs(10), secs(4), secs(3)).unwrap();
        let err = validate_lease_timings(secs(10), Duration::from_millis(4001), secs(3)).unwrap_err();
        assert!(
            matches!(err, WitnessError::Invalid(ref m) if m.contains("exceeds the lease ttl")),
            "{err}"
        );
    }

    #[test]
    fn patroni_defaults_pass_and_a_too_long_retry_fails() {
        validate_lease_timings(secs(30), secs(10), secs(10)).unwrap();
        assert!(validate_lease_timings(secs(30), secs(10), secs(11)).is_err());
    }

    #[test]
    fn zero_intervals_are_refused() {
        assert!(validate_lease_timings(secs(10), Duration::ZERO, secs(3)).is_err());
        assert!(validate_lease_timings(secs(10), secs(3), Duration::ZERO).is_err());
    }

    #[test]
    fn ttl_must_be_whole_seconds_within_bounds() {
        assert!(validate_lease_timings(Duration::from_millis(10_500), secs(1), secs(1)).is_err());
        assert!(
            validate_lease_timings(secs(1), Duration::from_millis(100), Duration::from_millis(100)).is_err()
        );
        assert!(validate_lease_timings(secs(3601), secs(1), secs(1)).is_err());
        validate_lease_timings(secs(2), Duration::from_millis(500), Duration::from_millis(500)).unwrap();
    }

    #[test]
    fn single_request_ttl_check() {
        check_ttl(secs(1)).unwrap();
        check_ttl(MAX_TTL).unwrap();
        assert!(check_ttl(Duration::ZERO).is_err());
        assert!(check_ttl(Duration::from_millis(1500)).is_err());
        assert!(check_ttl(MAX_TTL + secs(1)).is_err());
    }
}
