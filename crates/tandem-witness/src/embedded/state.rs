//! The embedded witness's state machine: a revision counter and at most one holder.
//!
//! Pure: every operation takes the current instant (and, for grants, the wall-clock time and
//! a fresh lease id), so the rules are tested without sleeping, and the server decides
//! when to persist. Leases expire lazily: every operation first drops a holder whose
//! deadline passed, which is indistinguishable from a timer for anyone asking.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Result, WitnessError};

/// The state file's format this version writes and the newest it reads.
pub(super) const STATE_FORMAT_VERSION: u32 = 1;

/// The current leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holder {
    pub region: String,
    pub epoch: u64,
    pub lease_id: i64,
    pub ttl: Duration,
    pub acquired_at_ms: u64,
    /// When the lease ends unless renewed. Not persisted: after a restart the witness
    /// cannot know how long it was down, so it grants the holder a full TTL again (as etcd
    /// does), which can only delay a takeover, never allow two leaders.
    pub expires_at: Instant,
}

/// Everything the witness knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WitnessState {
    /// The last revision granted; the next grant's epoch is `revision + 1`. Persisted
    /// before any grant is answered, so epochs never repeat or go back.
    pub revision: u64,
    pub holder: Option<Holder>,
}

/// What a grant needs besides the request: supplied by the caller so the state stays pure.
pub(super) struct GrantContext {
    pub now: Instant,
    pub wall_clock_ms: u64,
    pub lease_id: i64,
}

/// The persisted form of [`WitnessState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PersistedState {
    pub format_version: u32,
    pub revision: u64,
    pub holder: Option<PersistedHolder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PersistedHolder {
    pub region: String,
    pub epoch: u64,
    pub lease_id: i64,
    pub ttl_seconds: u64,
    pub acquired_at_ms: u64,
}

impl WitnessState {
    pub(super) fn empty() -> Self {
        WitnessState {
            revision: 0,
            holder: None,
        }
    }

    /// Restores persisted state, giving a holder a full TTL from `now`.
    pub(super) fn restore(persisted: PersistedState, now: Instant) -> Result<Self> {
        if persisted.format_version > STATE_FORMAT_VERSION {
            return Err(WitnessError::Invalid(format!(
                "witness state format {} is newer than this version reads ({STATE_FORMAT_VERSION})",
                persisted.format_version
            )));
        }
        if let Some(holder) = &persisted.holder {
            if holder.epoch > persisted.revision {
                return Err(WitnessError::Invalid(format!(
                    "witness state is inconsistent: holder epoch {} above revision {}",
                    holder.epoch, persisted.revision
                )));
            }
        }
        Ok(WitnessState {
            revision: persisted.revision,
            holder: persisted.holder.map(|holder| {
                let ttl = Duration::from_secs(holder.ttl_seconds);
                Holder {
                    region: holder.region,
                    epoch: holder.epoch,
                    lease_id: holder.lease_id,
                    ttl,
                    acquired_at_ms: holder.acquired_at_ms,
                    expires_at: now + ttl,
                }
            }),
        })
    }

    pub(super) fn persisted(&self) -> PersistedState {
        PersistedState {
            format_version: STATE_FORMAT_VERSION,
            revision: self.revision,
            holder: self.holder.as_ref().map(|holder| PersistedHolder {
                region: holder.region.clone(),
                epoch: holder.epoch,
                lease_id: holder.lease_id,
                ttl_seconds: holder.ttl.as_secs(),
                acquired_at_ms: holder.acquired_at_ms,
            }),
        }
    }

    /// Drops the holder if its lease ended at or before `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        if self
            .holder
            .as_ref()
            .is_some_and(|holder| holder.expires_at <= now)
        {
            self.holder = None;
        }
    }

    /// The live holder at `now`.
    pub(super) fn leader(&mut self, now: Instant) -> Option<&Holder> {
        self.expire(now);
        self.holder.as_ref()
    }

    fn grant(&mut self, region: &str, ttl: Duration, context: GrantContext) -> Holder {
        self.revision += 1;
        let holder = Holder {
            region: region.to_string(),
            epoch: self.revision,
            lease_id: context.lease_id,
            ttl,
            acquired_at_ms: context.wall_clock_ms,
            expires_at: context.now + ttl,
        };
        self.holder = Some(holder.clone());
        holder
    }

    /// Grants leadership if nobody holds it.
    pub(super) fn campaign(&mut self, region: &str, ttl: Duration, context: GrantContext) -> Option<Holder> {
        self.expire(context.now);
        if self.holder.is_some() {
            return None;
        }
        Some(self.grant(region, ttl, context))
    }

    /// Grants leadership whoever holds it, if the current epoch is `expected_epoch` (when
    /// given) or nobody holds it.
    pub(super) fn seize(
        &mut self,
        region: &str,
        ttl: Duration,
        expected_epoch: Option<u64>,
        context: GrantContext,
    ) -> Result<Holder> {
        self.expire(context.now);
        if let (Some(expected), Some(current)) = (expected_epoch, &self.holder) {
            if current.epoch != expected {
                return Err(WitnessError::Conflict(format!(
                    "expected epoch {expected}, but {} leads at epoch {}",
                    current.region, current.epoch
                )));
            }
        }
        Ok(self.grant(region, ttl, context))
    }

    /// Extends the holder's lease if it is still the leadership `(epoch, lease_id)`.
    pub(super) fn renew(&mut self, epoch: u64, lease_id: i64, now: Instant) -> Result<()> {
        self.expire(now);
        match &mut self.holder {
            Some(holder) if holder.epoch == epoch && holder.lease_id == lease_id => {
                holder.expires_at = now + holder.ttl;
                Ok(())
            }
            _ => Err(WitnessError::LeaseLost),
        }
    }

    /// Ends the leadership `(epoch, lease_id)` if it is still the current one.
    pub(super) fn resign(&mut self, epoch: u64, lease_id: i64, now: Instant) {
        self.expire(now);
        if self
            .holder
            .as_ref()
            .is_some_and(|holder| holder.epoch == epoch && holder.lease_id == lease_id)
        {
            self.holder = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn context(now: Instant, lease_id: i64) -> GrantContext {
        GrantContext {
            now,
            wall_clock_ms: 1_000,
            lease_id,
        }
    }

    #[test]
    fn one_holder_and_increasing_epochs() {
        let start = Instant::now();
        let mut state = WitnessState::empty();
        let first = state.campaign("eastus", TTL, context(start, 1)).unwrap();
        assert_eq!(first.epoch, 1);
        assert!(state.campaign("westus", TTL, context(start, 2)).is_none());
        state.resign(first.epoch, first.lease_id, start);
        let second = state.campaign("westus", TTL, context(start, 2)).unwrap();
        assert_eq!(second.epoch, 2);
    }

    #[test]
    fn leases_expire_exactly_at_their_deadline_unless_renewed() {
        let start = Instant::now();
        let mut state = WitnessState::empty();
        let holder = state.campaign("eastus", TTL, context(start, 7)).unwrap();
        state
            .renew(holder.epoch, 7, start + Duration::from_secs(9))
            .unwrap();
        assert!(state.leader(start + Duration::from_secs(18)).is_some());
        assert!(state.leader(start + Duration::from_secs(19)).is_none());
        assert_eq!(
            state.renew(holder.epoch, 7, start + Duration::from_secs(19)),
            Err(WitnessError::LeaseLost)
        );
    }

    #[test]
    fn renew_and_resign_need_the_exact_leadership() {
        let start = Instant::now();
        let mut state = WitnessState::empty();
        let holder = state.campaign("eastus", TTL, context(start, 7)).unwrap();
        assert_eq!(state.renew(holder.epoch, 8, start), Err(WitnessError::LeaseLost));
        assert_eq!(
            state.renew(holder.epoch + 1, 7, start),
            Err(WitnessError::LeaseLost)
        );
        state.resign(holder.epoch, 8, start);
        assert!(state.leader(start).is_some());
    }

    #[test]
    fn seize_checks_the_expected_epoch_unless_nobody_leads() {
        let start = Instant::now();
        let mut state = WitnessState::empty();
        let first = state.campaign("eastus", TTL, context(start, 1)).unwrap();
        let second = state
            .seize("westus", TTL, Some(first.epoch), context(start, 2))
            .unwrap();
        assert!(second.epoch > first.epoch);
        assert!(matches!(
            state.seize("centralus", TTL, Some(first.epoch), context(start, 3)),
            Err(WitnessError::Conflict(_))
        ));
        assert_eq!(state.renew(first.epoch, 1, start), Err(WitnessError::LeaseLost));
        let later = start + TTL;
        let third = state
            .seize("centralus", TTL, Some(first.epoch), context(later, 3))
            .unwrap();
        assert!(third.epoch > second.epoch);
    }

    #[test]
    fn restore_keeps_the_revision_and_gives_the_holder_a_full_ttl() {
        let start = Instant::now();
        let mut state = WitnessState::empty();
        state.campaign("eastus", TTL, context(start, 1)).unwrap();
        let persisted = state.persisted();
        let restarted_at = start + Duration::from_secs(60);
        let mut restored = WitnessState::restore(persisted, restarted_at).unwrap();
        assert_eq!(restored.revision, 1);
        let holder = restored.leader(restarted_at + Duration::from_secs(9)).unwrap();
        assert_eq!(holder.region, "eastus");
    }

    #[test]
    fn restore_refuses_newer_formats_and_inconsistent_state() {
        let now = Instant::now();
        let newer = PersistedState {
            format_version: STATE_FORMAT_VERSION + 1,
            revision: 1,
            holder: None,
        };
        assert!(WitnessState::restore(newer, now).is_err());
        let inconsistent = PersistedState {
            format_version: STATE_FORMAT_VERSION,
            revision: 1,
            holder: Some(PersistedHolder {
                region: "eastus".to_string(),
                epoch: 2,
                lease_id: 1,
                ttl_seconds: 10,
                acquired_at_ms: 0,
            }),
        };
        assert!(WitnessState::restore(inconsistent, now).is_err());
    }
}
