//! What a forced failover may lose, told truthfully.
//!
//! Before forcing, the target asks the primary whether it still serves
//! (`/ready` answering as primary): if so, forcing would drop the writes it
//! acknowledged and the target lacks, and is refused unless the caller
//! accepts that loss. After forcing, the old primary is asked — once it has
//! stepped down, so that it accepts nothing more — how many of its records
//! the new epoch fences (`records_beyond_fork`): exactly what its
//! quarantine takes when it rejoins. When it cannot be asked (gone,
//! unreachable, still leading after its lease must have lapsed), the report
//! says so, why, and gives the lower bound the target knows: what the old
//! primary last reported holding beyond what the target applied.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tandem_deployment::WitnessSpec;

use crate::{FollowState, Region};

/// How long one probe of the old primary may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Between looks at whether the old primary stepped down.
const POLL: Duration = Duration::from_millis(100);
/// How long the old primary may fail to answer before it counts as gone.
const UNREACHABLE_AFTER: Duration = Duration::from_secs(2);

/// The loss a forced failover caused, as far as it can be known.
pub(crate) struct Loss {
    pub counted: Option<i64>,
    pub lower_bound: Option<i64>,
    pub reason: Option<String>,
}

impl Loss {
    pub(crate) fn unknown(reason: impl Into<String>, lower_bound: Option<i64>) -> Loss {
        Loss {
            counted: None,
            lower_bound,
            reason: Some(reason.into()),
        }
    }
}

/// The request a new primary sends the old one.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BeyondForkRequest {
    pub epoch: i64,
    pub fork: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BeyondFork {
    pub region: String,
    pub records: i64,
}

fn url_of(region: &Region, name: &str) -> Option<String> {
    region
        .deployment
        .region(name)
        .map(|spec| spec.url.trim_end_matches('/').to_string())
}

/// The role `url`'s `/ready` gives: `primary`, `secondary`, or `not ready
/// (…)`; an error when it does not answer.
async fn ready_role(region: &Region, url: &str) -> Result<String, String> {
    let response = region
        .http
        .get(format!("{url}/ready"))
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|error| format!("{status}: {error}"))?;
    if status.is_success() && body["ready"] == true {
        Ok(body["role"].as_str().unwrap_or_default().to_string())
    } else {
        Ok(format!(
            "not ready ({})",
            body["role"].as_str().unwrap_or("unknown")
        ))
    }
}

/// Whether the primary `name` answers and serves as primary now.
pub(crate) async fn primary_serving(region: &Region, name: &str) -> bool {
    let Some(url) = url_of(region, name) else {
        return false;
    };
    matches!(ready_role(region, &url).await, Ok(role) if role == "primary")
}

/// Counts, in the old primary's journal, the records the new epoch fences.
pub(crate) async fn count_beyond_fork(
    region: &Region,
    old: &str,
    fork: &BTreeMap<String, i64>,
    spec: &WitnessSpec,
    follow: &FollowState,
    epoch: i64,
) -> Loss {
    // What the old primary last said it held beyond what was applied here:
    // lost at least, whatever else happened since.
    let reported = (follow.source_head - follow.applied).max(0);
    let Some(url) = url_of(region, old) else {
        return Loss::unknown(format!("region '{old}' is not in the deployment"), Some(reported));
    };
    // It stops writing before its lease can lapse, and steps down when it
    // sees the new leader; past that, something is wrong with it.
    let deadline = Instant::now() + spec.ttl + spec.renew_interval * 2 + Duration::from_secs(2);
    // Not answering at all for this long: gone or cut off from here; it
    // cannot be counted whether or not it still takes writes from others.
    let unreachable_for = Instant::now() + UNREACHABLE_AFTER;
    loop {
        let last_error = match ready_role(region, &url).await {
            Ok(role) if role == "primary" => None,
            Ok(_) => break,
            Err(error) => Some(error),
        };
        let now = Instant::now();
        if now >= deadline || (last_error.is_some() && now >= unreachable_for) {
            return match last_error {
                Some(error) => Loss::unknown(
                    format!("the old primary '{old}' is unreachable ({error}); what it accepted after it last reported cannot be counted until it returns"),
                    Some(reported),
                ),
                None => Loss::unknown(
                    format!("the old primary '{old}' still answers as primary {:.0} s after its lease was taken; it may still be accepting writes", spec.ttl.as_secs_f64()),
                    Some(reported),
                ),
            };
        }
        tokio::time::sleep(POLL).await;
    }
    let request = region
        .http
        .post(format!("{url}/api/tandem/v1/replication/beyond-fork"))
        .timeout(PROBE_TIMEOUT * 5)
        .json(&BeyondForkRequest {
            epoch,
            fork: fork.clone(),
        });
    let answer = async {
        let response = region
            .authorized(request)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{status}: {}", response.text().await.unwrap_or_default()));
        }
        response
            .json::<BeyondFork>()
            .await
            .map_err(|error| error.to_string())
    }
    .await;
    match answer {
        Ok(beyond) => Loss {
            counted: Some(beyond.records),
            lower_bound: None,
            reason: None,
        },
        Err(error) => Loss::unknown(
            format!(
                "the old primary '{old}' stepped down but could not count its records past the fork: {error}"
            ),
            Some(reported),
        ),
    }
}
