//! What `tandem doctor` collected from the deployment, as plain data the
//! checks read: for every region, its status document (the subset the
//! checks need), its diagnostics and a clock sample — or why it could not
//! be had.

use serde::Deserialize;
use tandem_core::diagnostics::RegionDiagnostics;

/// Everything the checks read. Built by `collect`, or by hand in tests.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The doctor's wall clock when collection ended (ms since the Unix
    /// epoch), for the age of backups.
    pub now_ms: i64,
    /// In deployment order.
    pub regions: Vec<RegionInputs>,
}

#[derive(Debug, Clone)]
pub struct RegionInputs {
    pub name: String,
    pub url: String,
    /// `GET /api/tandem/v1/regions` as the region itself answered, or why
    /// it did not.
    pub status: Result<RegionStatus, String>,
    /// `GET /api/tandem/v1/diagnostics`, or why it could not be had.
    pub diagnostics: Result<RegionDiagnostics, String>,
    /// The region's clock against the doctor's, from the diagnostics
    /// exchange; none when it did not answer.
    pub clock: Option<ClockSample>,
}

/// One NTP-style sample: the region's clock minus the doctor's, and the
/// network delay that bounds how wrong that can be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    pub offset_ms: f64,
    pub delay_ms: f64,
}

impl ClockSample {
    /// From NTP's four timestamps (ms): the doctor sent at `sent`, the
    /// region received at `received` and answered at `answered`, the answer
    /// arrived at `arrived`. Time the region spent between `received` and
    /// `answered` (its probes) is not network delay, so it does not widen
    /// the error.
    pub fn from_exchange(sent: i64, received: i64, answered: i64, arrived: i64) -> ClockSample {
        let (sent, received, answered, arrived) =
            (sent as f64, received as f64, answered as f64, arrived as f64);
        ClockSample {
            offset_ms: ((received - sent) + (answered - arrived)) / 2.0,
            delay_ms: ((arrived - sent) - (answered - received)).max(0.0),
        }
    }
}

impl Inputs {
    /// Regions whose diagnostics arrived, with them.
    pub fn diagnosed(&self) -> impl Iterator<Item = (&RegionInputs, &RegionDiagnostics)> {
        self.regions.iter().filter_map(|region| {
            region
                .diagnostics
                .as_ref()
                .ok()
                .map(|diagnostics| (region, diagnostics))
        })
    }

    /// Regions whose diagnostics did not arrive.
    pub fn undiagnosed(&self) -> Vec<&str> {
        self.regions
            .iter()
            .filter(|region| region.diagnostics.is_err())
            .map(|region| region.name.as_str())
            .collect()
    }

    /// The region that says it is the primary and accepts writes, with its
    /// status: the one whose view of replication counts.
    pub fn primary(&self) -> Option<(&RegionInputs, &RegionStatus)> {
        self.regions.iter().find_map(|region| match &region.status {
            Ok(status) if status.role == "primary" && status.accepting_writes => Some((region, status)),
            _ => None,
        })
    }

    /// Any status document that arrived (for deployment-wide settings).
    pub fn any_status(&self) -> Option<&RegionStatus> {
        self.regions.iter().find_map(|region| region.status.as_ref().ok())
    }
}

/// The part of a region's status document (`tandem status --json`) the
/// checks read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegionStatus {
    #[serde(default)]
    pub deployment: String,
    /// `primary` or `secondary`.
    pub role: String,
    #[serde(default)]
    pub accepting_writes: bool,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub readiness: Vec<ReadinessCheck>,
    #[serde(default)]
    pub failover: FailoverSettings,
    #[serde(default)]
    pub regions: Vec<RegionEntry>,
    #[serde(default)]
    pub classes: Vec<ClassStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReadinessCheck {
    pub name: String,
    pub ok: bool,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FailoverSettings {
    /// `automatic` or `manual`.
    pub mode: String,
    pub maximum_lag_on_failover: i64,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            mode: "automatic".to_string(),
            maximum_lag_on_failover: tandem_deployment::DEFAULT_MAXIMUM_LAG_ON_FAILOVER,
        }
    }
}

/// One region as the answering region lists it; at the primary, each
/// secondary's replication figures.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegionEntry {
    pub name: String,
    #[serde(default)]
    pub this_region: bool,
    pub streaming: Option<bool>,
    pub lag_records: Option<i64>,
    pub lag_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClassStatus {
    pub class: String,
    /// `hot-hot`, `hot-warm` or `hot-cold`.
    pub level: String,
    pub max_rpo_seconds: Option<f64>,
    #[serde(default)]
    pub rpo_seconds: f64,
    #[serde(default)]
    pub refusing_writes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_discounts_the_regions_own_work() {
        // Sent at 1000 by the doctor; the region, 300 ms ahead, received at
        // 1310 (10 ms on the way), worked 500 ms, answered at 1810; back at
        // 1520 (10 ms on the way).
        let sample = ClockSample::from_exchange(1000, 1310, 1810, 1520);
        assert_eq!(sample.offset_ms, 300.0);
        assert_eq!(sample.delay_ms, 20.0);
    }

    #[test]
    fn the_status_document_of_a_region_parses() {
        let status: RegionStatus = serde_json::from_value(serde_json::json!({
            "deployment": "local", "region": "eastus", "role": "primary", "accepting_writes": true,
            "ready": true, "readiness": [{"name": "store", "ok": true, "detail": "answers"}],
            "primary": "eastus", "epoch": 3, "journal_head": 12,
            "failover": {"mode": "manual", "grace_period_seconds": 5.0, "maximum_lag_on_failover": 10},
            "regions": [
                {"name": "eastus", "url": "http://a", "role": "primary", "this_region": true},
                {"name": "westus", "url": "http://b", "role": "secondary", "applied": 12,
                 "streaming": true, "lag_records": 0, "lag_bytes": 0, "lag_seconds": 0.0}
            ],
            "classes": [{"class": "tracking", "level": "hot-warm", "sync": false,
                         "max_rpo_seconds": 5.0, "rpo_seconds": 0.2, "refusing_writes": false}]
        }))
        .unwrap();
        assert_eq!(status.failover.mode, "manual");
        assert_eq!(status.regions[1].lag_records, Some(0));
        assert_eq!(status.classes[0].max_rpo_seconds, Some(5.0));
    }
}
