//! `tandem-witness`: primary leadership of a Tandem deployment as a lease held in a witness,
//! with the witness's revision as the fencing epoch — the model of Patroni and of etcd's
//! election API.
//!
//! # The model
//!
//! A deployment has one *leader key* in its witness. A region becomes primary by creating
//! that key, attached to a *lease* with a TTL, only if the key is absent ([`Witness::campaign`]).
//! The primary keeps the lease alive by renewing it every `renew_interval`
//! ([`Witness::renew`]). If it stops — crash, partition, slow disk — the lease expires after
//! its TTL, the witness deletes the key, and another region's campaign succeeds. A planned
//! failover releases the key at once ([`Witness::resign`]); a forced one replaces the key
//! whoever holds it ([`Witness::seize`], for `tandem failover --force`).
//!
//! Every grant happens at a new revision of the witness, and that revision is the
//! leadership's **epoch**: epochs strictly increase from one leadership to the next, across
//! expiries, resignations, forced takeovers and restarts of the witness. Every write and
//! journal record carries the epoch of the primary that made it, so anything stamped with
//! an older epoch is recognisably from a deposed primary (fencing).
//!
//! Precisely, the epoch is the revision of the write that put the current holder's value
//! into the leader key (its `mod_revision` in etcd). That is the key's `create_revision` for
//! a campaign; a forced takeover overwrites the key in a single transaction (etcd refuses to
//! delete and re-create one key in one transaction), which yields a new `mod_revision`.
//! The holder never writes the key again — renewal touches only the lease — so the epoch
//! identifies the leadership for as long as it lasts.
//!
//! # Timings and Patroni's rule
//!
//! [`LeaseTimings`] holds `ttl`, `renew_interval` and `retry_timeout`, and
//! [`validate_lease_timings`] accepts them only if
//! `renew_interval + 2 * retry_timeout <= ttl`: in the worst case a renewal starts just
//! before the witness becomes unreachable and two attempts of `retry_timeout` each fail, so
//! the leader learns it cannot renew that long after its last success. Within the TTL, the
//! old leader has demoted itself before the witness lets anyone else in. The holder's own
//! rule: it leads until `ttl` after the *start* of its last successful renewal, never
//! longer, whatever the witness later says.
//!
//! The defaults are a 6 s TTL, renewal every second and a 2 s retry timeout
//! (`1 + 2 × 2 = 5 ≤ 6`), sized for a witness on the same LAN or host and for unplanned
//! failover under 10 s (see [`LeaseTimings`]). TTLs are whole seconds (etcd's leases are) and at least
//! 2 s in a configuration (etcd raises shorter leases to its minimum).
//!
//! # Observing changes
//!
//! There is no watch: regions poll [`Witness::leader`] every `renew_interval`. Failover
//! decisions are made on timescales of the TTL anyway, a poll costs one small request, and
//! polling needs no stream to re-establish after a partition. Fencing never relies on
//! observing quickly: a deposed leader's renewal fails with [`WitnessError::LeaseLost`].
//!
//! # Implementations
//!
//! * [`EtcdWitness`]: a real etcd v3 cluster through its HTTP/JSON gateway (no protobuf
//!   toolchain). The leader key is `/tandem/<deployment>/leader` by default; its value is
//!   versioned JSON with the region and the acquisition time.
//! * [`EmbeddedWitnessServer`] and [`HttpWitness`]: the one-host default. A small HTTP
//!   service keeps the same semantics with its revision persisted in a file (written to a
//!   temporary file, fsynced, renamed, directory fsynced), so epochs never go back after a
//!   restart; [`serve_embedded`] runs it on a listener until a shutdown future resolves.
//!
//! Both pass one conformance suite (`tests/conformance.rs`), run against a real `etcd`
//! process and the embedded server.
//!
//! # Architecture invariant
//!
//! This crate knows nothing of workspaces, the journal or the metadata store: it grants,
//! renews and reports leadership. Applying the epoch to writes is the caller's business.

mod embedded;
mod error;
mod etcd;
mod leadership;
mod timings;

use std::time::Duration;

pub use embedded::{serve_embedded, EmbeddedWitnessServer, HttpWitness, STATE_FILE_NAME};
pub use error::{Result, WitnessError};
pub use etcd::{leader_key, EtcdWitness, EtcdWitnessConfig};
pub use leadership::{LeaderInfo, Leadership, MAX_REGION_BYTES};
pub use timings::{validate_lease_timings, LeaseTimings, MAX_TTL, MIN_CONFIGURED_TTL};

/// Default timeout of one request to a witness: the default `retry_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A witness that grants primary leadership as a lease, with its revision as the epoch.
///
/// Every method is one short exchange with the witness, bounded by the implementation's
/// request timeout. A [`WitnessError::Unavailable`] from a state-changing method means its
/// outcome is unknown.
#[async_trait::async_trait]
pub trait Witness: Send + Sync {
    /// Takes leadership for `region` if nobody holds it: atomically creates the leader key,
    /// attached to a fresh lease of `ttl`, only if it is absent. `Ok(None)` if another
    /// region (or this one, under an earlier leadership) holds it.
    async fn campaign(&self, region: &str, ttl: Duration) -> Result<Option<Leadership>>;

    /// Keeps `lease` alive for another TTL. Fails with [`WitnessError::LeaseLost`] if the
    /// lease expired or the leader key now holds another leadership (seized, or expired and
    /// re-taken).
    async fn renew(&self, lease: &Leadership) -> Result<()>;

    /// Gives leadership up at once (planned failover), so the next campaign succeeds
    /// without waiting for the TTL. Idempotent: resigning a leadership that is already gone
    /// succeeds and never disturbs a later leader.
    async fn resign(&self, lease: &Leadership) -> Result<()>;

    /// The current leader, if any.
    async fn leader(&self) -> Result<Option<LeaderInfo>>;

    /// Forced takeover (`tandem failover --force`): makes `region` the leader in one
    /// transaction, whoever holds the key, with a new and higher epoch; the previous
    /// holder's renewals then fail with [`WitnessError::LeaseLost`]. With `expected_epoch`,
    /// only if the current leader still has that epoch, or if nobody leads any more;
    /// otherwise [`WitnessError::Conflict`] (somebody else took over meanwhile).
    async fn seize(&self, region: &str, ttl: Duration, expected_epoch: Option<u64>) -> Result<Leadership>;
}
