//! [`EtcdWitness`]: the witness as one key in a real etcd v3 cluster, spoken to through
//! etcd's HTTP/JSON gateway so that no protobuf toolchain is needed.
//!
//! * campaign: grant a lease, then one transaction "if the key is absent, put it with the
//!   lease"; the transaction's revision is the epoch.
//! * renew: keep the lease alive, then check that the key is still the one we wrote
//!   (same `mod_revision`, same lease).
//! * resign: delete the key if it is still ours, then revoke the lease.
//! * seize: one transaction "(if the key was written at `expected_epoch`) put it with our
//!   lease", then revoke the previous holder's lease.

mod gateway;
mod value;

use std::time::{Duration, SystemTime};

use gateway::{Compare, Gateway, GatewayError, KeyValue, LeaseGrant};
use value::LeaderValue;

use crate::error::{Result, WitnessError};
use crate::leadership::{check_region, from_unix_ms, to_unix_ms, LeaderInfo, Leadership};
use crate::timings::check_ttl;
use crate::{Witness, DEFAULT_REQUEST_TIMEOUT};

/// The leader key of a deployment: `/tandem/<deployment>/leader`.
pub fn leader_key(deployment: &str) -> String {
    format!("/tandem/{deployment}/leader")
}

/// Where the etcd witness is and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdWitnessConfig {
    /// Client URLs of the cluster's members (`http://10.0.0.5:2379`). Each request goes to
    /// the member that answered last; the next is tried only if no connection could be made.
    pub endpoints: Vec<String>,
    /// The leader key. One per deployment, so deployments can share a cluster.
    pub key: String,
    /// Timeout of every request, connection included; the lease timings' `retry_timeout`.
    pub request_timeout: Duration,
}

impl EtcdWitnessConfig {
    /// The configuration for `deployment`'s leader key ([`leader_key`]) with the default
    /// request timeout.
    pub fn new(endpoints: Vec<String>, deployment: &str) -> Self {
        EtcdWitnessConfig {
            endpoints,
            key: leader_key(deployment),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A [`Witness`] on a real etcd cluster.
pub struct EtcdWitness {
    gateway: Gateway,
    key: String,
}

impl EtcdWitness {
    /// Prepares a client; nothing is sent until the first call.
    pub fn new(config: EtcdWitnessConfig) -> Result<Self> {
        if config.key.is_empty() {
            return Err(WitnessError::Invalid("the etcd leader key is empty".to_string()));
        }
        if config.request_timeout.is_zero() {
            return Err(WitnessError::Invalid(
                "the etcd request timeout is zero".to_string(),
            ));
        }
        Ok(EtcdWitness {
            gateway: Gateway::new(config.endpoints, config.request_timeout)?,
            key: config.key,
        })
    }

    /// The leader key this witness manages.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Revokes a lease nobody will use, without failing the caller: an orphaned lease only
    /// costs etcd memory until its TTL runs out.
    async fn revoke_quietly(&self, lease: i64) {
        if let Err(error) = self.gateway.revoke(lease).await {
            tracing::debug!(
                lease,
                ?error,
                "could not revoke an unused etcd lease; it will expire"
            );
        }
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseGrant> {
        let grant = self.gateway.grant(ttl).await.map_err(|error| match error {
            // Granting a fresh lease cannot lose one; "not found" here is a failing cluster.
            error if error.is_lease_not_found() => WitnessError::Unavailable(format!("{error:?}")),
            error => WitnessError::from(error),
        })?;
        if grant.id == 0 || grant.ttl_seconds <= 0 {
            return Err(WitnessError::Unavailable(format!(
                "etcd granted an unusable lease {grant:?}"
            )));
        }
        Ok(grant)
    }

    /// After a put whose answer was lost: reads the key, and if it carries our lease, the
    /// put happened and the leadership is ours.
    async fn recover_lost_answer(&self, lease: i64) -> Option<KeyValue> {
        match self.gateway.get(&self.key).await {
            Ok(Some(kv)) if kv.lease == lease => Some(kv),
            _ => None,
        }
    }

    /// Writes the leader key for `region` with `grant`'s lease, if `compare` holds.
    async fn put_leader(
        &self,
        region: &str,
        grant: &LeaseGrant,
        compare: Option<Compare>,
    ) -> Result<PutOutcome> {
        let acquired_at = SystemTime::now();
        let value = LeaderValue::new(region, to_unix_ms(acquired_at)).encode();
        let leadership = |epoch: i64| Leadership {
            region: region.to_string(),
            epoch: epoch as u64,
            lease_id: grant.id,
            ttl: Duration::from_secs(grant.ttl_seconds as u64),
            acquired_at,
        };
        match self.gateway.put_if(&self.key, compare, &value, grant.id).await {
            Ok(response) if response.succeeded => Ok(PutOutcome::Written {
                leadership: leadership(response.header.revision),
                previous: response.previous_key().cloned(),
            }),
            Ok(response) => Ok(PutOutcome::Refused {
                current: response.ranged_key().cloned(),
            }),
            Err(GatewayError::Transport(message)) => match self.recover_lost_answer(grant.id).await {
                Some(kv) => Ok(PutOutcome::Written {
                    leadership: leadership(kv.mod_revision),
                    previous: None,
                }),
                None => Err(WitnessError::Unavailable(message)),
            },
            // Our fresh lease expired before the put (a stalled client): nothing was
            // written, and the caller may simply try again.
            Err(error) if error.is_lease_not_found() => Err(WitnessError::Unavailable(format!(
                "the lease granted for the takeover expired before it was used: {error:?}"
            ))),
            Err(error) => Err(error.into()),
        }
    }
}

/// What became of a conditional write of the leader key.
enum PutOutcome {
    /// Written: we lead. `previous` is the value it replaced, if known.
    Written {
        leadership: Leadership,
        previous: Option<KeyValue>,
    },
    /// The comparison failed; `current` is the key as it is (`None`: absent).
    Refused { current: Option<KeyValue> },
}

fn leader_info(kv: &KeyValue, ttl_remaining: Option<Duration>) -> Result<LeaderInfo> {
    let value = LeaderValue::decode(&kv.value_bytes()?)?;
    Ok(LeaderInfo {
        region: value.region,
        epoch: kv.mod_revision as u64,
        acquired_at: from_unix_ms(value.acquired_at_ms),
        ttl_remaining,
    })
}

#[async_trait::async_trait]
impl Witness for EtcdWitness {
    async fn campaign(&self, region: &str, ttl: Duration) -> Result<Option<Leadership>> {
        check_region(region)?;
        check_ttl(ttl)?;
        // Most campaigns are by regions polling while a leader exists: one read saves them
        // granting and revoking a lease every time.
        if self.gateway.get(&self.key).await?.is_some() {
            return Ok(None);
        }
        let grant = self.grant(ttl).await?;
        // On an error the outcome is unknown: the lease is left to expire rather than
        // revoked, since revoking it would end a leadership the put may have created.
        match self.put_leader(region, &grant, Some(Compare::Absent)).await? {
            PutOutcome::Written { leadership, .. } => {
                tracing::info!(region, epoch = leadership.epoch, "took leadership in etcd");
                Ok(Some(leadership))
            }
            PutOutcome::Refused { .. } => {
                self.revoke_quietly(grant.id).await;
                Ok(None)
            }
        }
    }

    async fn renew(&self, lease: &Leadership) -> Result<()> {
        let ttl_seconds = self.gateway.keep_alive(lease.lease_id).await?;
        if ttl_seconds <= 0 {
            return Err(WitnessError::LeaseLost);
        }
        // A live lease is not enough: after a forced takeover the key has another lease
        // and our lease lives on, attached to nothing.
        match self.gateway.get(&self.key).await? {
            Some(kv) if kv.mod_revision as u64 == lease.epoch && kv.lease == lease.lease_id => Ok(()),
            _ => {
                self.revoke_quietly(lease.lease_id).await;
                Err(WitnessError::LeaseLost)
            }
        }
    }

    async fn resign(&self, lease: &Leadership) -> Result<()> {
        let deleted = self.gateway.delete_if(&self.key, lease.epoch as i64).await?;
        // The lease is useless either way; revoking it also ends the keep-alive promise.
        self.gateway.revoke(lease.lease_id).await?;
        tracing::info!(region = %lease.region, epoch = lease.epoch, deleted, "resigned leadership in etcd");
        Ok(())
    }

    async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let Some(kv) = self.gateway.get(&self.key).await? else {
            return Ok(None);
        };
        // The remaining TTL is a detail for display: a failure to read it is not a failure
        // to say who leads.
        let ttl_remaining = if kv.lease == 0 {
            None
        } else {
            match self.gateway.time_to_live(kv.lease).await {
                Ok(seconds) if seconds > 0 => Some(Duration::from_secs(seconds as u64)),
                Ok(_) => Some(Duration::ZERO),
                Err(_) => None,
            }
        };
        leader_info(&kv, ttl_remaining).map(Some)
    }

    async fn seize(&self, region: &str, ttl: Duration, expected_epoch: Option<u64>) -> Result<Leadership> {
        check_region(region)?;
        check_ttl(ttl)?;
        let grant = self.grant(ttl).await?;
        let compare = expected_epoch.map(|epoch| Compare::ModRevision(epoch as i64));
        let outcome = match self.put_leader(region, &grant, compare).await? {
            // The expected leader is gone and nobody replaced it: take the key as a
            // campaign would, still in one transaction.
            PutOutcome::Refused { current: None } => {
                self.put_leader(region, &grant, Some(Compare::Absent)).await?
            }
            written_or_held => written_or_held,
        };
        match outcome {
            PutOutcome::Written { leadership, previous } => {
                if let Some(previous) = previous.filter(|kv| kv.lease != 0 && kv.lease != grant.id) {
                    // The previous holder's lease now guards nothing; revoking it makes its
                    // next renewal fail at the keep-alive already.
                    self.revoke_quietly(previous.lease).await;
                }
                tracing::warn!(
                    region,
                    epoch = leadership.epoch,
                    ?expected_epoch,
                    "seized leadership in etcd"
                );
                Ok(leadership)
            }
            PutOutcome::Refused { current } => {
                self.revoke_quietly(grant.id).await;
                let current = match current {
                    Some(kv) => match leader_info(&kv, None) {
                        Ok(info) => format!("{} leads at epoch {}", info.region, info.epoch),
                        Err(_) => format!("the key was written at revision {}", kv.mod_revision),
                    },
                    None => "another region took over meanwhile".to_string(),
                };
                Err(WitnessError::Conflict(format!(
                    "expected epoch {}, but {current}",
                    expected_epoch.unwrap_or_default()
                )))
            }
        }
    }
}
