//! A region's readiness: whether it can serve its role now, for `/ready`,
//! the status document (which the gateway routes on) and `tandem up`.
//!
//! A region is ready when every check passes:
//!
//! - `store`: the metadata store answers;
//! - `bootstrap`: it holds the deployment's bootstrap data (the `default`
//!   workspace, created by the bootstrap primary and replicated to the
//!   others). A region that joined a deployment starts empty, and until the
//!   bootstrap arrives it serves no workspace data at all
//!   ([`Region::serving_error`], checked before every workspace request):
//!   a hot-hot region used to accept a write before it had the `default`
//!   workspace and answer 404;
//! - `leadership`: with a witness, the region has heard from the witness
//!   since it started, and either holds the lease and accepts writes, or
//!   follows the leader; without one, its role is the deployment file's;
//! - `caught_up` (secondaries): since it began following its current
//!   primary, it has applied that primary's journal up to the head the
//!   primary reported when the stream opened. A restarted old primary is
//!   therefore ready only once it has rejoined and caught up. It stays ready
//!   while its primary is unreachable (it keeps serving reads).

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use tandem_api::ready::{bootstrap_check, store_check, Check, Readiness, ReadinessProbe};
use tandem_core::journal::AssetClass;
use tandem_core::{Error, ErrorKind};
use tandem_store::DEFAULT_WORKSPACE;

use crate::{Region, Role};

/// How often a region without its bootstrap looks again, at the latest
/// (it also looks whenever its journal grows).
/// How long the duty holder may go without publishing before the other
/// replicas stop calling themselves ready (it publishes every 200 ms).
const HOLDER_SILENT_MS: i64 = 3_000;

const BOOTSTRAP_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

impl Region {
    /// Whether the region holds the deployment's bootstrap data.
    pub fn bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    /// Whether the default experiment is part of the bootstrap here: only
    /// where tracking is replicated continuously (a hot-cold secondary never
    /// applies it).
    fn bootstrap_includes_default_experiment(&self) -> bool {
        self.deployment
            .policy(AssetClass::Tracking)
            .level
            .replicates_continuously()
    }

    /// Looks for the bootstrap data unless it was already found (it never
    /// goes away: the default workspace cannot be deleted).
    pub(crate) async fn bootstrap(&self) -> Check {
        if self.bootstrapped() {
            return Check::pass(
                "bootstrap",
                format!("the '{DEFAULT_WORKSPACE}' workspace is here"),
            );
        }
        let check = bootstrap_check(self.store.as_ref(), self.bootstrap_includes_default_experiment()).await;
        if check.ok {
            self.bootstrapped.store(true, Ordering::Release);
            tracing::info!(region = %self.name, "the deployment's bootstrap data is here: serving workspace data");
            return check;
        }
        Check::fail(
            "bootstrap",
            format!(
                "{} (it arrives with the journal of the primary '{}')",
                check.detail,
                self.primary_name()
            ),
        )
    }

    /// Until the bootstrap data is here: looks again whenever the journal
    /// grows, and at least every half second.
    pub(crate) async fn watch_bootstrap(&self) {
        let mut head = self.store.subscribe_head();
        while !self.bootstrap().await.ok {
            let _ = tokio::time::timeout(BOOTSTRAP_RECHECK, head.changed()).await;
        }
    }

    /// Why workspace data may not be served here yet, if it may not.
    pub fn serving_error(&self) -> Option<Error> {
        (!self.bootstrapped()).then(|| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "region '{}' is not ready: it joined the deployment empty and the '{DEFAULT_WORKSPACE}' workspace has not arrived from the primary '{}' yet; retry in a moment",
                    self.name,
                    self.primary_name()
                ),
            )
        })
    }

    /// Records an answer of the witness (`Ok`) or the failure to get one.
    pub(crate) fn note_witness(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.witness_answered.store(true, Ordering::Release);
                *self.witness_error.lock().expect("witness error lock poisoned") = None;
            }
            Err(error) => *self.witness_error.lock().expect("witness error lock poisoned") = Some(error),
        }
    }

    /// Records that this region applied `source`'s journal up to the head
    /// `source` reported when the stream opened; counts if `source` is the
    /// primary.
    pub(crate) fn note_caught_up(&self, source: &str) {
        if source != self.primary_name() {
            return;
        }
        let mut caught_up = self.caught_up_with.lock().expect("caught-up lock poisoned");
        if caught_up.as_deref() != Some(source) {
            tracing::info!(region = %self.name, primary = source, "caught up with the primary");
            *caught_up = Some(source.to_string());
        }
    }

    /// Records that this region leads: it has everything it serves.
    pub(crate) fn note_leading(&self) {
        *self.caught_up_with.lock().expect("caught-up lock poisoned") = Some(self.name.clone());
    }

    fn leadership_check(&self) -> Check {
        let role = self.role();
        if self.witness.is_none() {
            return match role {
                Role::Primary => Check::pass("leadership", "primary (the deployment file's; no witness)"),
                Role::Secondary { primary } => Check::pass(
                    "leadership",
                    format!("follows '{primary}' (the deployment file's primary; no witness)"),
                ),
            };
        }
        if !self.witness_answered.load(Ordering::Acquire) {
            let error = self
                .witness_error
                .lock()
                .expect("witness error lock poisoned")
                .clone()
                .unwrap_or_else(|| "not asked yet".to_string());
            return Check::fail(
                "leadership",
                format!("the witness has not answered since this region started ({error})"),
            );
        }
        match role {
            Role::Primary => match self.lease_error() {
                None => {
                    let epoch = self
                        .leadership
                        .lock()
                        .expect("leadership lock poisoned")
                        .as_ref()
                        .map(|lease| lease.epoch);
                    Check::pass(
                        "leadership",
                        match epoch {
                            Some(epoch) => format!("primary: holds the witness's lease (epoch {epoch})"),
                            None => "primary".to_string(),
                        },
                    )
                }
                Some(reason) => Check::fail("leadership", reason),
            },
            Role::Secondary { primary } if primary == self.name => Check::fail(
                "leadership",
                "no region leads now: waiting for the witness's lease (this region led last)",
            ),
            Role::Secondary { primary } => Check::pass("leadership", format!("follows '{primary}'")),
        }
    }

    /// With several replicas on the region's database: whether the one
    /// holding the duties (whose view this one serves by) is alive.
    fn duties_check(&self) -> Check {
        if self.holds_duties() {
            return Check::pass(
                "duties",
                format!("this replica ({}) holds the region's duties", self.replica()),
            );
        }
        match self.holder() {
            None => Check::fail("duties", "no replica has published the region's runtime yet"),
            Some(holder) => {
                let age = crate::now_millis() - holder.published_at;
                if age <= HOLDER_SILENT_MS {
                    Check::pass(
                        "duties",
                        format!("replica {} holds the region's duties", holder.replica),
                    )
                } else {
                    Check::fail(
                        "duties",
                        format!(
                            "replica {}, which held the region's duties, has not published for {:.1} s: another takes them over within seconds",
                            holder.replica,
                            age as f64 / 1000.0
                        ),
                    )
                }
            }
        }
    }

    fn caught_up_check(&self, primary: &str) -> Check {
        let state = self.follow_states().get(primary).cloned().unwrap_or_default();
        let caught_up = self
            .caught_up_with
            .lock()
            .expect("caught-up lock poisoned")
            .clone();
        if caught_up.as_deref() == Some(primary) {
            return Check::pass(
                "caught_up",
                format!(
                    "caught up with '{primary}' (applied {} of {})",
                    state.applied, state.source_head
                ),
            );
        }
        if state.connected {
            Check::fail(
                "caught_up",
                format!(
                    "catching up with '{primary}': applied {} of {}",
                    state.applied,
                    state.catch_up_target.unwrap_or(state.source_head)
                ),
            )
        } else {
            Check::fail(
                "caught_up",
                format!(
                    "not following '{primary}' yet: {}",
                    state.last_error.as_deref().unwrap_or("connecting")
                ),
            )
        }
    }
}

#[async_trait]
impl ReadinessProbe for Region {
    async fn readiness(&self) -> Readiness {
        let store = store_check(self.store.as_ref()).await;
        let bootstrap = if store.ok {
            self.bootstrap().await
        } else {
            Check::fail("bootstrap", "the store does not answer")
        };
        let mut checks = vec![store, bootstrap, self.leadership_check()];
        if self.shared() {
            checks.push(self.duties_check());
        }
        let role = match self.role() {
            Role::Primary => "primary",
            Role::Secondary { primary } => {
                if primary != self.name {
                    checks.push(self.caught_up_check(&primary));
                }
                "secondary"
            }
        };
        Readiness::new(role, checks)
    }
}
