//! The one error type of the crate.
//!
//! Failover logic branches on these variants, so each says what the caller may conclude:
//! whether leadership is certainly gone ([`WitnessError::LeaseLost`]), certainly not granted
//! ([`WitnessError::Conflict`], [`WitnessError::Invalid`]), or unknown because the witness
//! could not be asked ([`WitnessError::Unavailable`]).

/// The crate's result type.
pub type Result<T, E = WitnessError> = std::result::Result<T, E>;

/// Everything that can go wrong while talking to a witness.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The witness could not be reached, timed out, or failed internally. For a request that
    /// changes state (campaign, seize, resign) the outcome is *unknown*: it may have been
    /// applied. Ask [`crate::Witness::leader`] once the witness answers again. A leader
    /// that cannot renew must treat its leadership as ending when its lease would expire.
    #[error("witness unavailable: {0}")]
    Unavailable(String),
    /// The lease expired, was revoked, or the leader key now belongs to a later epoch: the
    /// caller is no longer the leader and must stop acting as one.
    #[error("leadership lease lost")]
    LeaseLost,
    /// A conditional request found another state than it expected (a forced takeover whose
    /// `expected_epoch` is no longer the current one). Certainly not applied.
    #[error("leadership conflict: {0}")]
    Conflict(String),
    /// The request is malformed (an empty region, a TTL the witness cannot express), or
    /// the witness holds data this version cannot read. Certainly not applied.
    #[error("invalid witness request: {0}")]
    Invalid(String),
}

impl WitnessError {
    /// True when the caller cannot know whether a state-changing request took effect.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, WitnessError::Unavailable(_))
    }
}
