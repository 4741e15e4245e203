//! Leadership: which region is primary, decided by the witness.
//!
//! The primary holds a lease in the witness and renews it every
//! `renew_interval`. Its writes stop `ttl - margin` after the *start* of its
//! last successful renewal, so they have stopped before the witness can let
//! anyone else in (Patroni's rule `renew_interval + 2 × retry_timeout ≤ ttl`
//! makes sure a healthy primary notices in time). A region that does not
//! lead polls the witness and follows whoever leads.
//!
//! When nobody leads, the region that led last takes the lease back at once
//! (a restart). Anyone else, in automatic mode, takes over only when the
//! last primary stays unreachable for `grace_period` (counted from when its
//! replication stream broke, so it overlaps the lease's lapse) — or answers but has
//! stepped down and every record of its journal is here, when taking over
//! loses nothing — and only if it lags at most `maximum_lag_on_failover`
//! records and no reachable region holds more of the last primary's journal
//! (ties go to the region listed first in the deployment).
//!
//! A region that takes the lease gets a new epoch from the witness, stops
//! following the old primary, and begins the epoch in its journal (the
//! `epoch_began` record with the fork). Only then does it accept writes.
//! Records of the old epoch that arrive afterwards are fenced by the store.
//!
//! A planned failover (`tandem failover --to R`) stops writes at the
//! primary, waits until every write in flight committed and R acknowledged
//! the whole journal, asks R to seize the lease from the primary's epoch,
//! and steps down: nothing acknowledged is lost, which the new epoch's fork
//! proves. A forced one (`--force`) lets R seize the lease whoever holds it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tandem_core::{Error, ErrorKind};
use tandem_deployment::{FailoverMode, WitnessSpec};
use tandem_witness::{Leadership, WitnessError};

use crate::{Region, Role};

/// How often a region that does not lead looks at the witness.
const POLL: Duration = Duration::from_millis(250);
/// How long a planned failover waits for the target to hold everything.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a status probe of another region may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a region tracks while nobody leads.
#[derive(Default)]
struct Vacancy {
    /// Since when the last primary has not answered.
    unreachable_since: Option<Instant>,
    /// What was last logged, so the log says each thing once.
    said: Option<String>,
}

impl Vacancy {
    fn say(&mut self, message: String) {
        if self.said.as_deref() != Some(message.as_str()) {
            tracing::warn!("{message}");
            self.said = Some(message);
        }
    }
}

fn spec(region: &Region) -> WitnessSpec {
    region
        .deployment
        .witness
        .clone()
        .expect("leadership runs only with a witness")
}

/// How long before the lease can lapse the primary stops writing: room for
/// a write that passed its check to commit, and for clock-rate differences.
fn margin(spec: &WitnessSpec) -> Duration {
    (spec.ttl / 4).min(Duration::from_secs(1))
}

/// Runs the region's side of leadership until the task is dropped.
pub(crate) async fn run(region: Arc<Region>) {
    // Until the witness says otherwise, the primary is whoever the journal
    // says began the latest epoch (the bootstrap primary if none did).
    if let Ok(epochs) = region.store.epochs().await {
        if let Some(last) = epochs.last() {
            region.set_role(Role::Secondary {
                primary: last.primary.clone(),
            });
        }
    }
    let spec = spec(&region);
    let mut vacancy = Vacancy::default();
    loop {
        let lease = region
            .leadership
            .lock()
            .expect("leadership lock poisoned")
            .clone();
        match lease {
            Some(lease) => {
                renew(&region, &spec, &lease).await;
                tokio::time::sleep(spec.renew_interval).await;
            }
            None => {
                observe(&region, &spec, &mut vacancy).await;
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn renew(region: &Arc<Region>, spec: &WitnessSpec, lease: &Leadership) {
    let witness = region.witness.clone().expect("witness");
    let started = Instant::now();
    match tokio::time::timeout(spec.retry_timeout, witness.renew(lease)).await {
        Ok(Ok(())) => {
            region.note_witness(Ok(()));
            *region.write_deadline.lock().expect("deadline lock poisoned") =
                Some(started + spec.ttl - margin(spec));
        }
        Ok(Err(WitnessError::LeaseLost)) => {
            region.note_witness(Ok(()));
            tracing::warn!(region = %region.name, epoch = lease.epoch, "the leadership lease is lost: stepping down");
            step_down(region, None);
        }
        Ok(Err(error)) => {
            region.note_witness(Err(error.to_string()));
            tracing::warn!(region = %region.name, %error, "cannot renew the leadership lease; writes stop if it is not renewed in time");
        }
        Err(_) => {
            region.note_witness(Err("renewing the lease timed out".to_string()));
            tracing::warn!(region = %region.name, "renewing the leadership lease timed out; writes stop if it is not renewed in time");
        }
    }
}

/// This replica lost the region's duties: it stops renewing the lease and
/// accepting writes. The lease stays in the witness for the replica that
/// takes the duties over, which resumes it under a new epoch.
pub(crate) fn let_go(region: &Region) {
    *region.leadership.lock().expect("leadership lock poisoned") = None;
    *region.write_deadline.lock().expect("deadline lock poisoned") = None;
}

/// Stops leading: no lease, no writes; follows `primary` if known.
fn step_down(region: &Region, primary: Option<String>) {
    *region.leadership.lock().expect("leadership lock poisoned") = None;
    *region.write_deadline.lock().expect("deadline lock poisoned") = None;
    region.set_role(Role::Secondary {
        primary: primary.unwrap_or_else(|| region.name.clone()),
    });
}

async fn observe(region: &Arc<Region>, spec: &WitnessSpec, vacancy: &mut Vacancy) {
    let witness = region.witness.clone().expect("witness");
    let promotions = region.promotions.load(Ordering::Acquire);
    let leader = match tokio::time::timeout(spec.retry_timeout, witness.leader()).await {
        Ok(Ok(leader)) => {
            region.note_witness(Ok(()));
            leader
        }
        Ok(Err(error)) => {
            region.note_witness(Err(error.to_string()));
            vacancy.say(format!(
                "region '{}' cannot reach the witness: {error}",
                region.name
            ));
            return;
        }
        Err(_) => {
            region.note_witness(Err("timed out".to_string()));
            vacancy.say(format!(
                "region '{}' cannot reach the witness: timed out",
                region.name
            ));
            return;
        }
    };
    // A promote of this region that began (or began and ended) while the
    // witness was asked makes its answer stale: acting on it, the loop
    // took the lease it had just been given over again under another
    // epoch ("resuming leadership after a restart"), or stepped the new
    // primary down on the old leader's name. The next turn looks again.
    if region.promoting.load(Ordering::Acquire)
        || region.promotions.load(Ordering::Acquire) != promotions
        || region
            .leadership
            .lock()
            .expect("leadership lock poisoned")
            .is_some()
    {
        return;
    }
    match leader {
        Some(leader) if leader.region == region.name => {
            // An earlier run of this region holds it (a restart within the
            // TTL): take it over under a new epoch instead of waiting.
            take_over(
                region,
                spec,
                Some(leader.epoch),
                "resuming leadership after a restart",
            )
            .await;
        }
        Some(leader) => {
            // The grace period runs from when the primary stopped answering
            // (its replication stream broke), even while its lease is still
            // held: lease lapse and grace period overlap, so a lost primary
            // is replaced max(ttl, grace) after it went, not their sum.
            let connected = region
                .follow_states()
                .get(&leader.region)
                .map(|state| state.connected)
                .unwrap_or(true);
            if connected {
                vacancy.unreachable_since = None;
            } else {
                vacancy.unreachable_since.get_or_insert_with(Instant::now);
            }
            vacancy.said = None;
            if region.primary_name() != leader.region || region.is_primary() {
                step_down(region, Some(leader.region.clone()));
            }
        }
        None => consider_takeover(region, spec, vacancy).await,
    }
}

async fn consider_takeover(region: &Arc<Region>, spec: &WitnessSpec, vacancy: &mut Vacancy) {
    let last = region.primary_name();
    if last == region.name {
        // This region led last (or is the bootstrap primary): nobody else
        // can hold more of its history.
        take_over(region, spec, None, "no region leads and this one led last").await;
        return;
    }
    let policy = region.deployment.failover;
    if policy.mode == FailoverMode::Manual {
        vacancy.say(format!(
            "no region leads (last primary: '{last}') and failover is manual: run `tandem failover --to REGION`"
        ));
        return;
    }
    let applied = region.follow_states().get(&last).cloned().unwrap_or_default();
    match probe(region, &last).await {
        Some(status) => {
            vacancy.unreachable_since = None;
            let accepting = status["accepting_writes"].as_bool().unwrap_or(false);
            let head = status["journal_head"].as_i64().unwrap_or(i64::MAX);
            if accepting || applied.applied < head {
                // It is alive and will lead again, or it holds records we
                // lack: waiting loses nothing.
                return;
            }
            tracing::info!(region = %region.name, %last, "the last primary answers, has stepped down, and every record of its journal is here");
        }
        None => {
            let since = *vacancy.unreachable_since.get_or_insert_with(Instant::now);
            let waited = since.elapsed();
            if waited < policy.grace_period {
                vacancy.say(format!(
                    "no region leads and the last primary '{last}' does not answer: region '{}' takes over if it stays unreachable for {:?} (grace period)",
                    region.name, policy.grace_period
                ));
                return;
            }
        }
    }
    let lag = (applied.source_head - applied.applied).max(0);
    if lag > policy.maximum_lag_on_failover {
        vacancy.say(format!(
            "region '{}' will not take over: it lacks {lag} records of '{last}', more than maximum_lag_on_failover ({})",
            region.name, policy.maximum_lag_on_failover
        ));
        return;
    }
    // The most caught-up healthy region takes over.
    let order = |name: &str| {
        region
            .deployment
            .regions()
            .iter()
            .position(|spec| spec.name == name)
            .unwrap_or(usize::MAX)
    };
    for other in region.deployment.regions() {
        if other.name == region.name || other.name == last {
            continue;
        }
        let Some(status) = probe(region, &other.name).await else {
            continue;
        };
        let theirs = applied_from(&status, &other.name, &last);
        if theirs > applied.applied || (theirs == applied.applied && order(&other.name) < order(&region.name))
        {
            vacancy.say(format!(
                "region '{}' leaves the takeover to '{}', which holds as much or more of '{last}' ({theirs} against {})",
                region.name, other.name, applied.applied
            ));
            return;
        }
    }
    let reason = format!("the last primary '{last}' is lost ({lag} records of its journal possibly missing)");
    take_over(region, spec, None, &reason).await;
}

/// How far `region` (as its status document says) has applied `source`'s journal.
fn applied_from(status: &serde_json::Value, region: &str, source: &str) -> i64 {
    status["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["name"] == region)
        .flat_map(|entry| entry["following"].as_array().cloned().unwrap_or_default())
        .filter(|state| state["source"] == source)
        .filter_map(|state| state["applied"].as_i64())
        .max()
        .unwrap_or(-1)
}

/// Another region's status document, if it answers in time.
async fn probe(region: &Region, name: &str) -> Option<serde_json::Value> {
    // Any of its replicas answers for the region.
    for url in region.deployment.region(name)?.endpoints() {
        let answer = region
            .http
            .get(format!("{url}/api/tandem/v1/regions"))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await;
        if let Ok(response) = answer {
            if response.status().is_success() {
                if let Ok(document) = response.json().await {
                    return Some(document);
                }
            }
        }
    }
    None
}

/// Campaigns (or, with `seize_from`, seizes the lease from that epoch) and
/// becomes primary if granted.
async fn take_over(region: &Arc<Region>, spec: &WitnessSpec, seize_from: Option<u64>, reason: &str) {
    let witness = region.witness.clone().expect("witness");
    let started = Instant::now();
    let granted = match seize_from {
        Some(epoch) => witness.seize(&region.name, spec.ttl, Some(epoch)).await.map(Some),
        None => witness.campaign(&region.name, spec.ttl).await,
    };
    match granted {
        Ok(Some(lease)) => {
            tracing::warn!(region = %region.name, epoch = lease.epoch, reason, "taking over as primary");
            if let Err(error) = become_primary(region, spec, lease, started).await {
                tracing::error!(region = %region.name, %error, "could not become primary");
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(region = %region.name, %error, "could not take the leadership lease"),
    }
}

/// With the lease granted at `started`: stops following, begins the epoch
/// in the journal, then accepts writes. Returns the epoch's fork.
pub(crate) async fn become_primary(
    region: &Arc<Region>,
    spec: &WitnessSpec,
    lease: Leadership,
    started: Instant,
) -> Result<BTreeMap<String, i64>, String> {
    let epoch = lease.epoch as i64;
    let previous = region.primary_name();
    let fork = {
        // No follower applies anything between the end of following and
        // the fork: the fork is exactly what this region holds.
        let _gate = region.apply_gate.write().await;
        *region.write_deadline.lock().expect("deadline lock poisoned") = None;
        if previous != region.name {
            // What this region never received (hot-cold classes) is not
            // served until the hooks have restored it.
            region.start_restoring();
        }
        region.set_role(Role::Primary);
        region.store.begin_epoch(epoch).await
    };
    let fork = match fork {
        Ok(fork) => fork,
        Err(error) => {
            // Give the lease back rather than lead without an epoch.
            if let Some(witness) = &region.witness {
                let _ = witness.resign(&lease).await;
            }
            step_down(region, None);
            return Err(format!("cannot begin epoch {epoch}: {error}"));
        }
    };
    region.handing_over.store(false, Ordering::Release);
    *region.write_deadline.lock().expect("deadline lock poisoned") = Some(started + spec.ttl - margin(spec));
    *region.leadership.lock().expect("leadership lock poisoned") = Some(lease);
    region.note_witness(Ok(()));
    region.note_leading();
    tracing::warn!(region = %region.name, epoch, ?fork, "primary of epoch {epoch}: accepting writes");
    ensure_bootstrap(region).await;
    let previous = (previous != region.name).then_some(previous);
    for hook in region.promotion_hooks() {
        // Jobs of the lost region are resubmitted here, in the background:
        // the new primary serves at once.
        let previous = previous.clone();
        tokio::spawn(async move { hook.promoted(epoch, previous.as_deref()).await });
    }
    Ok(fork)
}

/// A new primary that never received the bootstrap primary's first records
/// (it took over before they reached it, so they are fenced now) creates
/// the `default` workspace itself: nobody else can any more.
async fn ensure_bootstrap(region: &Arc<Region>) {
    if region.bootstrap().await.ok {
        return;
    }
    match region
        .store
        .create_workspace(
            tandem_store::DEFAULT_WORKSPACE,
            "The default workspace, also served at the API root",
        )
        .await
    {
        Ok(_) => {
            tracing::warn!(region = %region.name, "this primary lacked the deployment's bootstrap: created the default workspace");
            region.bootstrap().await;
        }
        Err(error) => {
            tracing::error!(region = %region.name, %error, "cannot create the default workspace this primary lacks")
        }
    }
}

/// Gives the lease back on a graceful stop, so that another region need not
/// wait for it to lapse.
pub(crate) async fn resign_on_shutdown(region: &Region) {
    let lease = region.leadership.lock().expect("leadership lock poisoned").take();
    *region.write_deadline.lock().expect("deadline lock poisoned") = None;
    if let (Some(lease), Some(witness)) = (lease, &region.witness) {
        match witness.resign(&lease).await {
            Ok(()) => {
                tracing::info!(region = %region.name, epoch = lease.epoch, "resigned the leadership on shutdown")
            }
            Err(error) => {
                tracing::warn!(region = %region.name, %error, "could not resign the leadership on shutdown")
            }
        }
    }
}

/// What a failover did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverReport {
    pub from: Option<String>,
    pub to: String,
    pub epoch: i64,
    pub planned: bool,
    /// Planned: the old primary's journal head, every record of which the
    /// new primary held before it took over.
    pub records_confirmed: Option<i64>,
    /// Whether the new epoch's fork holds every record the old primary had.
    pub zero_loss: bool,
    /// Forced: records the old primary holds past the new epoch's fork,
    /// counted in its own journal once it stepped down: exactly what goes
    /// to its quarantine when it rejoins. None when that could not be
    /// counted (`loss_known` false, `loss_reason` says why).
    pub records_possibly_lost: Option<i64>,
    /// Forced: whether `records_possibly_lost` is a count, not a guess.
    #[serde(default)]
    pub loss_known: bool,
    /// Forced, loss unknown: at least this many records are lost (what the
    /// old primary last reported holding beyond what this region applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_lower_bound: Option<i64>,
    /// Forced, loss unknown: why it could not be counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_reason: Option<String>,
    /// Forced over a primary that was reachable and healthy, as the caller
    /// explicitly accepted.
    #[serde(default)]
    pub accepted_data_loss: bool,
    pub duration_ms: u64,
    pub fork: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PromoteRequest {
    pub from: String,
    pub expected_epoch: u64,
    /// The old primary's journal head; the target must have applied it.
    pub head: i64,
    /// Who asked for the failover: the new epoch's first record names them
    /// (the audit), not the regions' own credential that carries the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by: Option<String>,
}

fn not_configured() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        "this deployment has no witness: the primary is the deployment file's; add a [witness] section to fail over",
    )
}

/// `tandem failover --to TARGET` at the current primary.
pub async fn planned_failover(region: &Arc<Region>, target: &str) -> Result<FailoverReport, Error> {
    if region.witness.is_none() {
        return Err(not_configured());
    }
    let Some(spec) = region.deployment.region(target).cloned() else {
        return Err(Error::invalid(format!("unknown region '{target}'")));
    };
    if target == region.name {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!("region '{target}' is already the primary"),
        ));
    }
    let lease = region
        .leadership
        .lock()
        .expect("leadership lock poisoned")
        .clone();
    let Some(lease) = lease.filter(|_| region.accepting_writes()) else {
        return Err(Error::new(
            ErrorKind::NotPrimary,
            format!(
                "region '{}' is not the primary; send the failover to the primary ({}) or through the gateway, or use --force if the primary is gone",
                region.name,
                region.primary_name()
            ),
        ));
    };
    let began = Instant::now();
    region.handing_over.store(true, Ordering::Release);
    let outcome = hand_over(region, spec.endpoints(), target, &lease).await;
    region.handing_over.store(false, Ordering::Release);
    let (head, promoted) = match outcome {
        Ok(done) => done,
        Err(error) => {
            // The target did not take over: lead on, unless the witness says
            // it did after all (the answer was lost).
            if let Some(witness) = &region.witness {
                if let Ok(Some(leader)) = witness.leader().await {
                    if leader.region != region.name {
                        step_down(region, Some(leader.region));
                    }
                }
            }
            return Err(error);
        }
    };
    step_down(region, Some(target.to_string()));
    let history = region
        .store
        .history()
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    let zero_loss = history
        .iter()
        .all(|(origin, seq)| promoted.fork.get(origin).copied().unwrap_or(0) >= *seq);
    let report = FailoverReport {
        from: Some(region.name.clone()),
        to: target.to_string(),
        epoch: promoted.epoch,
        planned: true,
        records_confirmed: Some(head),
        zero_loss,
        records_possibly_lost: zero_loss.then_some(0),
        loss_known: zero_loss,
        loss_lower_bound: None,
        loss_reason: None,
        accepted_data_loss: false,
        duration_ms: began.elapsed().as_millis() as u64,
        fork: promoted.fork,
    };
    *region.last_failover.lock().unwrap() = Some(report.clone());
    if zero_loss {
        tracing::warn!(from = %region.name, to = target, epoch = report.epoch, head, "planned failover done: zero loss verified");
    } else {
        tracing::error!(from = %region.name, to = target, ?history, "planned failover: the new primary's fork lacks records of this region");
    }
    Ok(report)
}

/// The new primary's answer to a promotion.
#[derive(Debug, Serialize, Deserialize)]
pub struct Promoted {
    pub epoch: i64,
    pub fork: BTreeMap<String, i64>,
}

async fn hand_over(
    region: &Arc<Region>,
    target_urls: Vec<String>,
    target: &str,
    lease: &Leadership,
) -> Result<(i64, Promoted), Error> {
    // Every write that passed its check before writes stopped commits now,
    // in this replica and (the fence, closed in the database) in every
    // other replica of the region.
    region.store.drain_writes().await;
    region
        .close_writes(&format!(
            "region '{}' is handing the primary role over to '{target}' (planned failover); retry in a moment",
            region.name
        ))
        .await
        .map_err(|message| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot stop the region's writes for the hand-over: {message}"),
            )
        })?;
    let head = region
        .store
        .journal_position()
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .head;
    for hook in region.promotion_hooks() {
        hook.before_handover(head).await.map_err(|message| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "preparing the hand-over failed, the failover is abandoned and '{}' leads on: {message}",
                    region.name
                ),
            )
        })?;
    }
    let deadline = tokio::time::Instant::now() + HANDOVER_TIMEOUT;
    let mut acknowledgements = region.acknowledged.subscribe();
    loop {
        let applied = region.peers().get(target).map(|peer| peer.applied).unwrap_or(0);
        if applied >= head {
            break;
        }
        if tokio::time::timeout_at(deadline, acknowledgements.changed())
            .await
            .is_err()
        {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "region '{target}' did not apply the journal up to {head} within {}s (it is at {applied}); the failover is abandoned and '{}' leads on",
                    HANDOVER_TIMEOUT.as_secs(),
                    region.name
                ),
            ));
        }
    }
    let promote = PromoteRequest {
        from: region.name.clone(),
        expected_epoch: lease.epoch,
        head,
        initiated_by: tandem_store::actor::current(),
    };
    // Any replica of the target takes it (and forwards it to the one
    // holding its duties); the next is tried only when one cannot be
    // reached at all, so the request is never delivered twice.
    let mut response = None;
    let mut unreachable = Vec::new();
    for url in target_urls {
        let request = region
            .http
            .post(format!("{url}/api/tandem/v1/replication/promote"))
            .timeout(Duration::from_secs(15))
            .json(&promote);
        match region.authorized(request).send().await {
            Ok(answer) => {
                response = Some(answer);
                break;
            }
            Err(error) => {
                unreachable.push(format!("{url}: {error}"));
                if !error.is_connect() {
                    break;
                }
            }
        }
    }
    let Some(response) = response else {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "cannot reach region '{target}' to hand over: {}",
                unreachable.join("; ")
            ),
        ));
    };
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!("region '{target}' refused to take over ({status}): {body}"),
        ));
    }
    let promoted: Promoted = response
        .json()
        .await
        .map_err(|error| Error::internal(format!("undecodable answer from '{target}': {error}")))?;
    Ok((head, promoted))
}

/// At the target of a planned failover: once every record of `from`'s
/// journal up to `head` is applied here, seizes the lease from `from`'s
/// epoch and becomes primary.
pub async fn promote(region: &Arc<Region>, request: PromoteRequest) -> Result<Promoted, Error> {
    if region.witness.is_none() {
        return Err(not_configured());
    }
    let spec = spec(region);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let applied = region
            .store
            .replication_position(&request.from)
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        if applied >= request.head {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "region '{}' has applied '{}' up to {applied}, not {}",
                    region.name, request.from, request.head
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (epoch, fork) = seize_and_lead(region, &spec, Some(request.expected_epoch)).await?;
    Ok(Promoted { epoch, fork })
}

/// Seizes the lease (from `expected_epoch` only, if given) and becomes primary.
async fn seize_and_lead(
    region: &Arc<Region>,
    spec: &WitnessSpec,
    expected_epoch: Option<u64>,
) -> Result<(i64, BTreeMap<String, i64>), Error> {
    let witness = region.witness.clone().expect("witness");
    // From the seizure until the lease is ours in `region.leadership`, the
    // run loop would see itself named leader without holding the lease and
    // take it over again under another epoch: it waits.
    region.promoting.store(true, Ordering::Release);
    region.promotions.fetch_add(1, Ordering::AcqRel);
    struct Promoting<'a>(&'a Region);
    impl Drop for Promoting<'_> {
        fn drop(&mut self) {
            self.0.promoting.store(false, Ordering::Release);
        }
    }
    let _promoting = Promoting(region);
    let started = Instant::now();
    let lease = witness
        .seize(&region.name, spec.ttl, expected_epoch)
        .await
        .map_err(|error| {
            Error::new(
                ErrorKind::Unavailable,
                format!("the witness refused the takeover: {error}"),
            )
        })?;
    let epoch = lease.epoch as i64;
    let fork = become_primary(region, spec, lease, started)
        .await
        .map_err(Error::internal)?;
    Ok((epoch, fork))
}

/// `tandem failover --to THIS --force`: takes the lease whoever holds it.
/// Refused while the primary is reachable and serving as primary, unless
/// the caller accepts losing what it acknowledged and this region lacks
/// (a planned failover loses nothing). The report counts that loss in the
/// old primary's own journal once it has stepped down, or says why it
/// cannot and gives a lower bound.
pub async fn forced_failover(region: &Arc<Region>, accept_data_loss: bool) -> Result<FailoverReport, Error> {
    if region.witness.is_none() {
        return Err(not_configured());
    }
    if region.accepting_writes() {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!("region '{}' is already the primary", region.name),
        ));
    }
    let spec = spec(region);
    let last = region.primary_name();
    let old = (last != region.name).then(|| last.clone());
    let healthy = match &old {
        Some(name) => crate::forced::primary_serving(region, name).await,
        None => false,
    };
    if healthy && !accept_data_loss {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "the primary '{last}' is reachable and serving: forcing a failover would lose every write it \
                 acknowledged that '{}' has not applied yet. Run a planned failover instead (`tandem failover \
                 --to {}`, without --force), which loses nothing; or add --accept-data-loss to force it anyway",
                region.name, region.name
            ),
        ));
    }
    let follow = region.follow_states().get(&last).cloned().unwrap_or_default();
    let began = Instant::now();
    let (epoch, fork) = seize_and_lead(region, &spec, None).await?;
    let loss = match &old {
        Some(name) => crate::forced::count_beyond_fork(region, name, &fork, &spec, &follow, epoch).await,
        None => crate::forced::Loss::unknown("no previous primary is known", None),
    };
    let report = FailoverReport {
        from: old,
        to: region.name.clone(),
        epoch,
        planned: false,
        records_confirmed: None,
        zero_loss: loss.counted == Some(0),
        records_possibly_lost: loss.counted,
        loss_known: loss.counted.is_some(),
        loss_lower_bound: loss.lower_bound,
        loss_reason: loss.reason,
        accepted_data_loss: healthy,
        duration_ms: began.elapsed().as_millis() as u64,
        fork,
    };
    *region.last_failover.lock().unwrap() = Some(report.clone());
    Ok(report)
}
