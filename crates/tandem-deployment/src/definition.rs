//! The canonical form of a deployment definition and its digest, which
//! every region reports so that `tandem doctor` can tell whether all of
//! them loaded the same deployment (and name what differs when not).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{Deployment, FailoverMode, WitnessKind};

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Every setting of `deployment`, defaults included, with the replication
/// secret reduced to whether there is one.
pub(crate) fn canonical(deployment: &Deployment) -> Value {
    let regions: Vec<Value> = deployment
        .regions
        .iter()
        .map(|region| json!({ "name": region.name, "url": region.url, "replicas": region.replicas, "pair": region.pair }))
        .collect();
    let classes: serde_json::Map<String, Value> = deployment
        .classes
        .iter()
        .map(|(class, policy)| {
            (
                class.as_str().to_string(),
                json!({
                    "level": policy.level.as_str(),
                    "sync": policy.sync,
                    "max_rpo_ms": policy.max_rpo.map(millis),
                }),
            )
        })
        .collect();
    let witness = deployment.witness.as_ref().map(|spec| {
        let (kind, addresses) = match &spec.kind {
            WitnessKind::Etcd { endpoints } => ("etcd", endpoints.clone()),
            WitnessKind::Embedded { url } => ("embedded", vec![url.clone()]),
        };
        json!({
            "kind": kind,
            "endpoints": addresses,
            "ttl_ms": millis(spec.ttl),
            "renew_interval_ms": millis(spec.renew_interval),
            "retry_timeout_ms": millis(spec.retry_timeout),
        })
    });
    let backup = deployment.backup.as_ref().map(|policy| {
        json!({
            "url": policy.url,
            "archive_interval_ms": millis(policy.archive_interval),
            "schedule_ms": policy.schedule.map(millis),
            "full_every": policy.full_every,
            "keep": policy.keep,
            "ttl_ms": policy.ttl.map(millis),
        })
    });
    json!({
        "name": deployment.name,
        "primary": deployment.primary,
        "regions": regions,
        "classes": classes,
        "replication_secret": deployment.replication_secret.is_some(),
        "witness": witness,
        "failover": {
            "mode": match deployment.failover.mode {
                FailoverMode::Automatic => "automatic",
                FailoverMode::Manual => "manual",
            },
            "grace_period_ms": millis(deployment.failover.grace_period),
            "maximum_lag_on_failover": deployment.failover.maximum_lag_on_failover,
        },
        "backup": backup,
    })
}

/// Hex SHA-256 of the definition's compact JSON text.
pub(crate) fn digest(definition: &Value) -> String {
    let text = serde_json::to_string(definition).expect("a JSON value encodes");
    hex::encode(Sha256::digest(text.as_bytes()))
}
