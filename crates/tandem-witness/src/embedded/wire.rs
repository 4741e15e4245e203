//! The embedded witness's HTTP protocol: paths, JSON bodies and error codes, shared by the
//! server and [`super::HttpWitness`] so the two cannot drift apart.
//!
//! All under `/api/tandem/v1/witness/`: `POST campaign`, `POST renew`, `POST resign`,
//! `POST seize`, `GET leader`; and `GET /health`, `GET /ready` at the root. Times are milliseconds since the Unix epoch, TTLs seconds.
//! A refused request answers with an error status and [`ErrorBody`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::WitnessError;
use crate::leadership::{from_unix_ms, LeaderInfo, Leadership};

pub(super) const CAMPAIGN_PATH: &str = "/api/tandem/v1/witness/campaign";
pub(super) const RENEW_PATH: &str = "/api/tandem/v1/witness/renew";
pub(super) const RESIGN_PATH: &str = "/api/tandem/v1/witness/resign";
pub(super) const SEIZE_PATH: &str = "/api/tandem/v1/witness/seize";
pub(super) const LEADER_PATH: &str = "/api/tandem/v1/witness/leader";
/// Liveness and readiness, as every Tandem process serves them.
pub(super) const HEALTH_PATH: &str = "/health";
pub(super) const READY_PATH: &str = "/ready";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CampaignRequest {
    pub region: String,
    pub ttl_seconds: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CampaignResponse {
    pub leadership: Option<WireLeadership>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SeizeRequest {
    pub region: String,
    pub ttl_seconds: u64,
    pub expected_epoch: Option<u64>,
}

/// Names a leadership for renew and resign.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LeaseRequest {
    pub epoch: u64,
    pub lease_id: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LeaderResponse {
    pub leader: Option<WireLeaderInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WireLeadership {
    pub region: String,
    pub epoch: u64,
    pub lease_id: i64,
    pub ttl_seconds: u64,
    pub acquired_at_ms: u64,
}

impl From<WireLeadership> for Leadership {
    fn from(wire: WireLeadership) -> Self {
        Leadership {
            region: wire.region,
            epoch: wire.epoch,
            lease_id: wire.lease_id,
            ttl: Duration::from_secs(wire.ttl_seconds),
            acquired_at: from_unix_ms(wire.acquired_at_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WireLeaderInfo {
    pub region: String,
    pub epoch: u64,
    pub acquired_at_ms: u64,
    pub ttl_remaining_ms: Option<u64>,
}

impl From<WireLeaderInfo> for LeaderInfo {
    fn from(wire: WireLeaderInfo) -> Self {
        LeaderInfo {
            region: wire.region,
            epoch: wire.epoch,
            acquired_at: from_unix_ms(wire.acquired_at_ms),
            ttl_remaining: wire.ttl_remaining_ms.map(Duration::from_millis),
        }
    }
}

/// A refusal: `error_code` names the [`WitnessError`] variant.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ErrorBody {
    pub error_code: String,
    pub message: String,
}

const LEASE_LOST: &str = "LEASE_LOST";
const CONFLICT: &str = "CONFLICT";
const INVALID: &str = "INVALID";
const UNAVAILABLE: &str = "UNAVAILABLE";

impl From<&WitnessError> for ErrorBody {
    fn from(error: &WitnessError) -> Self {
        let (error_code, message) = match error {
            WitnessError::LeaseLost => (LEASE_LOST, String::new()),
            WitnessError::Conflict(message) => (CONFLICT, message.clone()),
            WitnessError::Invalid(message) => (INVALID, message.clone()),
            WitnessError::Unavailable(message) => (UNAVAILABLE, message.clone()),
        };
        ErrorBody {
            error_code: error_code.to_string(),
            message,
        }
    }
}

impl From<ErrorBody> for WitnessError {
    fn from(body: ErrorBody) -> Self {
        match body.error_code.as_str() {
            LEASE_LOST => WitnessError::LeaseLost,
            CONFLICT => WitnessError::Conflict(body.message),
            INVALID => WitnessError::Invalid(body.message),
            _ => WitnessError::Unavailable(format!("embedded witness: {}", body.message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_the_wire() {
        for error in [
            WitnessError::LeaseLost,
            WitnessError::Conflict("epoch 3".to_string()),
            WitnessError::Invalid("ttl".to_string()),
        ] {
            assert_eq!(WitnessError::from(ErrorBody::from(&error)), error);
        }
        assert!(
            WitnessError::from(ErrorBody::from(&WitnessError::Unavailable("disk".to_string())))
                .outcome_unknown()
        );
    }
}
