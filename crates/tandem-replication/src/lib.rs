//! Replication between the regions of a deployment.
//!
//! A [`Region`] knows its role. The primary accepts writes and serves its
//! journal to secondaries over the replication protocol ([`protocol`]); each
//! secondary runs a [`follower`] that streams the primary's journal, copies
//! every artifact by digest (verifying size and SHA-256), applies each record
//! exactly once and in order with the position kept in the same transaction,
//! and acknowledges what it applied. From the acknowledgements the primary
//! knows each class's current RPO: it refuses writes of a class whose RPO has
//! passed its `max_rpo`, and holds the acknowledgement of a `sync` class's
//! write until every secondary has applied it.
//!
//! Readiness ([`readiness`]): a region says whether it can serve its role
//! (`/ready`, and `ready` in its status document): store, bootstrap data,
//! settled leadership, caught up with its primary; it serves no workspace
//! data before the bootstrap arrives.
//!
//! Architecture invariant: this crate writes state only through
//! `MetadataStore::apply_replicated`, and only the records it read from the
//! primary's journal. Its HTTP surface is the region-to-region protocol only,
//! authenticated with the deployment's replication secret.
//!
//! Continuity levels: `hot-warm` (secondary applies and serves reads; local
//! writes refused with the primary's URL), `hot-cold` (records not applied;
//! the secondary refuses reads of the class as stale) and `hot-hot` (every
//! region accepts writes of the class). With any hot-hot class the regions
//! form a full mesh: each follows every other region's journal, applies each
//! change once whichever path brings it first, and the store merges
//! concurrent changes (`tandem_core::merge`). Identifiers that must not
//! collide are allocated from per-region stripes: region `i` of `n` (its
//! position in the deployment file) takes the numbers `k` with `k % n == i`.

mod content;
pub mod diagnostics;
mod doctor;
pub mod follower;
mod forced;
pub mod leadership;
pub mod protocol;
mod quarantine;
mod readiness;
pub mod replicas;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use tandem_artifacts::ArtifactStore;
use tandem_core::journal::AssetClass;
use tandem_core::{Error, ErrorKind};
use tandem_deployment::{ContinuityLevel, Deployment};
use tandem_store::{MetadataStore, RegionPolicy};
use tandem_witness::{Leadership, Witness};
use tokio::sync::watch;

/// How long a synchronous write waits for the secondaries' confirmation.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the primary re-measures each class's RPO.
pub const RPO_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    Primary,
    Secondary { primary: String },
}

/// What the primary knows of one secondary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerProgress {
    /// The last journal position the secondary durably applied.
    pub applied: i64,
    /// When it last acknowledged (ms since the epoch).
    pub acknowledged_at: Option<i64>,
    /// Whether a journal stream to it is open now.
    pub streaming: bool,
}

/// What a secondary knows of its own following.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct FollowState {
    pub source: String,
    pub connected: bool,
    pub applied: i64,
    /// The source's journal head as last reported by it.
    pub source_head: i64,
    pub records_applied: u64,
    pub artifacts_copied: u64,
    pub artifact_bytes_copied: u64,
    pub last_error: Option<String>,
    /// Origin time of the last record applied (ms since the epoch).
    pub last_applied_recorded_at: Option<i64>,
    /// Whether, on the current stream, this region has applied the source's
    /// journal up to the head the source reported when the stream opened.
    pub caught_up: bool,
    /// That head: what catching up means on the current stream.
    #[serde(skip)]
    pub catch_up_target: Option<i64>,
}

/// RPO of one class as last measured at the primary.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClassLag {
    pub records: i64,
    pub bytes: i64,
    /// Age of the oldest record some secondary lacks: what losing the
    /// primary now would lose.
    pub rpo_ms: i64,
    pub refusing_writes: bool,
}

/// Work that must follow a change of primary, run by the new primary once
/// it accepts writes: jobs that were running in the lost region are
/// resubmitted here (the jobs issue implements it; nothing registers one
/// yet).
#[async_trait]
pub trait PromotionHook: Send + Sync {
    /// This region became primary of `epoch`; `previous` led before it.
    async fn promoted(&self, epoch: i64, previous: Option<&str>);

    /// Classes this hook restores when another region led before (the
    /// `hot-cold` classes, from the backup archive): from the moment this
    /// region leads until the hook calls [`Region::finish_restoring`], it
    /// refuses their reads and writes with 503 rather than serve a state
    /// that is not there yet or accept writes the restore would collide with.
    fn restores(&self) -> Vec<AssetClass> {
        Vec::new()
    }

    /// At the primary of a planned failover, after its writes stopped and
    /// drained (its journal ends at `head`), before the target is asked to
    /// take over: what the new primary's hooks will need from this region
    /// (the hot-cold classes archive the journal up to `head`, so a planned
    /// failover loses none of them). An error abandons the failover and
    /// this region leads on.
    async fn before_handover(&self, _head: i64) -> Result<(), String> {
        Ok(())
    }
}

/// One region's replication runtime.
pub struct Region {
    pub name: String,
    pub deployment: Deployment,
    pub store: Arc<dyn MetadataStore>,
    pub artifacts: ArtifactStore,
    role: RwLock<Role>,
    peers: Mutex<BTreeMap<String, PeerProgress>>,
    acknowledged: watch::Sender<u64>,
    lag: RwLock<BTreeMap<AssetClass, ClassLag>>,
    /// Per source region this one follows.
    follow: Mutex<BTreeMap<String, FollowState>>,
    pub sync_timeout: Duration,
    http: reqwest::Client,
    /// Set when the region shuts down, so open replication streams end and
    /// the server's graceful shutdown does not wait on them forever.
    stopping: watch::Sender<bool>,
    /// Where leadership is held; None: the bootstrap primary leads for good.
    pub(crate) witness: Option<Arc<dyn Witness>>,
    /// The lease this region holds while it is primary.
    pub(crate) leadership: Mutex<Option<Leadership>>,
    /// When the primary must stop accepting writes unless it renews first.
    pub(crate) write_deadline: Mutex<Option<Instant>>,
    /// Set while a planned failover hands leadership to another region.
    pub(crate) handing_over: AtomicBool,
    /// Set while a promote or forced failover seizes the lease and becomes
    /// primary (see `leadership::seize_and_lead`).
    pub(crate) promoting: AtomicBool,
    /// Counts the promotes and forced failovers begun, so the run loop can
    /// tell one began and ended while it was asking the witness.
    pub(crate) promotions: AtomicU64,
    /// Bumped on every change of role or primary; followers restart on it.
    role_changed: watch::Sender<u64>,
    /// Followers apply under the read side; becoming primary takes the write
    /// side, so the new epoch's fork is exactly what was applied.
    pub(crate) apply_gate: tokio::sync::RwLock<()>,
    /// Run after every promotion of this region.
    promotion_hooks: RwLock<Vec<Arc<dyn PromotionHook>>>,
    /// Classes a promotion hook is still restoring (see
    /// [`PromotionHook::restores`]).
    restoring: RwLock<std::collections::BTreeSet<AssetClass>>,
    /// Readiness (see [`readiness`]): the bootstrap data is here.
    bootstrapped: AtomicBool,
    /// The witness answered at least once since this region started.
    witness_answered: AtomicBool,
    /// The last `tandem verify` this region ran.
    pub(crate) last_verify: Mutex<Option<verify::VerifyReport>>,
    /// The last failover this region ran (forced at the target, planned at
    /// the old primary), for `tandem status`.
    pub(crate) last_failover: Mutex<Option<leadership::FailoverReport>>,
    /// Why the witness did not answer the last time it was asked.
    witness_error: Mutex<Option<String>>,
    /// The primary this region last caught up with (itself while it leads).
    caught_up_with: Mutex<Option<String>>,
    /// This process among the region's replicas (see [`replicas`]).
    replica: String,
    url: RwLock<Option<String>>,
    /// Whether this process holds the region's duties now.
    duty: AtomicBool,
    /// The duty holder as its last runtime document said.
    holder: RwLock<Option<replicas::Holder>>,
    /// The write fence as this process last wrote it (while holding the
    /// duties); the lock orders a hand-over's closing after any other write.
    fence_written: tokio::sync::Mutex<Option<(Option<i64>, Option<String>)>>,
    /// The region's replicas as last heard of.
    replicas_seen: Mutex<Vec<tandem_store::ReplicaSeen>>,
    /// The shared acknowledgements as last read: (applied, when) by region.
    acks_shared: Mutex<BTreeMap<String, (i64, i64)>>,
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// A replica id unique among the region's processes: the process id and
/// when it started.
fn replica_id() -> String {
    format!("{}-{:x}", std::process::id(), now_millis() % 0x100_0000)
}

impl Region {
    /// Builds the runtime of region `name` of `deployment`; its role at
    /// bootstrap is the deployment's.
    pub fn new(
        name: &str,
        deployment: Deployment,
        store: Arc<dyn MetadataStore>,
        artifacts: ArtifactStore,
        sync_timeout: Duration,
        witness: Option<Arc<dyn Witness>>,
    ) -> Result<Arc<Region>, String> {
        if deployment.region(name).is_none() {
            return Err(format!(
                "region '{name}' is not in deployment '{}'",
                deployment.name
            ));
        }
        let primary = deployment.bootstrap_primary().name.clone();
        // With a witness nobody leads until the witness says so.
        let role = if primary == name && witness.is_none() {
            Role::Primary
        } else {
            Role::Secondary {
                primary: primary.clone(),
            }
        };
        let peers = deployment
            .regions()
            .iter()
            .filter(|region| region.name != name)
            .map(|region| (region.name.clone(), PeerProgress::default()))
            .collect();
        // Idle connections are let go well before a peer's own idle
        // timeout (30 s by default) closes them under a request.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(10));
        // Peers at `https://` URLs signed by the deployment's own CA.
        if let Some(pem) = &deployment.ca_pem {
            for certificate in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|error| error.to_string())?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|error| error.to_string())?;
        Ok(Arc::new(Region {
            name: name.to_string(),
            deployment,
            store,
            artifacts,
            role: RwLock::new(role),
            peers: Mutex::new(peers),
            acknowledged: watch::channel(0).0,
            lag: RwLock::new(BTreeMap::new()),
            follow: Mutex::new(BTreeMap::new()),
            sync_timeout,
            http,
            stopping: watch::channel(false).0,
            witness,
            leadership: Mutex::new(None),
            write_deadline: Mutex::new(None),
            handing_over: AtomicBool::new(false),
            promoting: AtomicBool::new(false),
            promotions: AtomicU64::new(0),
            role_changed: watch::channel(0).0,
            apply_gate: tokio::sync::RwLock::new(()),
            promotion_hooks: RwLock::new(Vec::new()),
            restoring: RwLock::new(std::collections::BTreeSet::new()),
            bootstrapped: AtomicBool::new(false),
            witness_answered: AtomicBool::new(false),
            last_verify: Mutex::new(None),
            last_failover: Mutex::new(None),
            witness_error: Mutex::new(None),
            caught_up_with: Mutex::new(None),
            replica: replica_id(),
            url: RwLock::new(None),
            duty: AtomicBool::new(false),
            holder: RwLock::new(None),
            fence_written: tokio::sync::Mutex::new(None),
            replicas_seen: Mutex::new(Vec::new()),
            acks_shared: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Registers work to run whenever this region becomes primary.
    pub fn on_promotion(&self, hook: Arc<dyn PromotionHook>) {
        self.promotion_hooks
            .write()
            .expect("hooks lock poisoned")
            .push(hook);
    }

    pub(crate) fn promotion_hooks(&self) -> Vec<Arc<dyn PromotionHook>> {
        self.promotion_hooks.read().expect("hooks lock poisoned").clone()
    }

    /// Marks the classes the promotion hooks restore as restoring; called
    /// before the region accepts writes as the new primary.
    pub(crate) fn start_restoring(&self) {
        let classes: Vec<AssetClass> = self
            .promotion_hooks()
            .iter()
            .flat_map(|hook| hook.restores())
            .collect();
        if !classes.is_empty() {
            tracing::warn!(region = %self.name, ?classes, "restoring classes after the failover; they are unavailable until done");
            self.restoring
                .write()
                .expect("restoring lock poisoned")
                .extend(classes);
        }
    }

    /// A promotion hook finished restoring `class` (successfully or not:
    /// either way the region serves what it has from now on).
    pub fn finish_restoring(&self, class: AssetClass) {
        self.restoring
            .write()
            .expect("restoring lock poisoned")
            .remove(&class);
    }

    /// Classes still being restored after a promotion.
    pub fn restoring(&self) -> Vec<AssetClass> {
        self.restoring
            .read()
            .expect("restoring lock poisoned")
            .iter()
            .copied()
            .collect()
    }

    fn restoring_error(&self, class: AssetClass) -> Option<Error> {
        self.restoring
            .read()
            .expect("restoring lock poisoned")
            .contains(&class)
            .then(|| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "region '{}' became primary and is restoring {} (hot-cold) from the backup archive; retry in a moment",
                        self.name,
                        class.as_str()
                    ),
                )
            })
    }

    /// Changes the role; followers restart to follow the new primary.
    pub(crate) fn set_role(&self, role: Role) {
        let mut current = self.role.write().expect("role lock poisoned");
        if *current != role {
            tracing::info!(region = %self.name, from = ?*current, to = ?role, "role changed");
            *current = role;
            drop(current);
            self.role_changed.send_modify(|generation| *generation += 1);
        }
    }

    /// Whether this region accepts writes now: it is primary and, with a
    /// witness, its lease is certainly still its own.
    pub fn accepting_writes(&self) -> bool {
        self.is_primary() && self.lease_error().is_none()
    }

    /// Why a primary must refuse writes now, if it must: a planned failover
    /// in progress, or a lease it could not renew in time.
    fn lease_error(&self) -> Option<String> {
        if self.handing_over.load(Ordering::Acquire) {
            return Some(format!(
                "region '{}' is handing the primary role over (planned failover); retry in a moment",
                self.name
            ));
        }
        self.witness.as_ref()?;
        let deadline = *self.write_deadline.lock().expect("deadline lock poisoned");
        match deadline {
            Some(deadline) if Instant::now() < deadline => None,
            _ => Some(format!(
                "region '{}' is not the primary now: it could not renew its leadership lease with the witness in time, so it stopped accepting writes before another region could take over",
                self.name
            )),
        }
    }

    pub fn role(&self) -> Role {
        self.role.read().expect("role lock poisoned").clone()
    }

    pub fn is_primary(&self) -> bool {
        self.role() == Role::Primary
    }

    pub(crate) fn primary_name(&self) -> String {
        match self.role() {
            Role::Primary => self.name.clone(),
            Role::Secondary { primary } => primary,
        }
    }

    pub(crate) fn primary_url(&self) -> String {
        self.deployment
            .region(&self.primary_name())
            .map(|region| region.url.clone())
            .unwrap_or_default()
    }

    pub fn secret(&self) -> Option<&str> {
        self.deployment.replication_secret.as_deref()
    }

    /// `request` with the deployment's replication secret, if it has one.
    pub(crate) fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.secret() {
            Some(secret) => request.bearer_auth(secret),
            None => request,
        }
    }

    /// The policy object the store and the API consult.
    pub fn policy(self: &Arc<Self>) -> Arc<dyn RegionPolicy> {
        Arc::new(Policy(self.clone()))
    }

    /// Records a secondary's acknowledgement.
    pub fn acknowledge(&self, region: &str, applied: i64) {
        let mut peers = self.peers.lock().expect("peers lock poisoned");
        if let Some(peer) = peers.get_mut(region) {
            if applied > peer.applied {
                peer.applied = applied;
            }
            peer.acknowledged_at = Some(now_millis());
        }
        drop(peers);
        self.acknowledged.send_modify(|count| *count += 1);
    }

    fn set_streaming(&self, region: &str, streaming: bool) {
        if let Some(peer) = self.peers.lock().expect("peers lock poisoned").get_mut(region) {
            peer.streaming = streaming;
        }
    }

    pub fn peers(&self) -> BTreeMap<String, PeerProgress> {
        self.peers.lock().expect("peers lock poisoned").clone()
    }

    /// How this region follows each of its sources.
    pub fn follow_states(&self) -> BTreeMap<String, FollowState> {
        self.follow.lock().expect("follow lock poisoned").clone()
    }

    pub(crate) fn update_follow(&self, source: &str, update: impl FnOnce(&mut FollowState)) {
        let mut follow = self.follow.lock().expect("follow lock poisoned");
        let state = follow.entry(source.to_string()).or_insert_with(|| FollowState {
            source: source.to_string(),
            ..FollowState::default()
        });
        update(state);
    }

    /// Whether some class is written in every region: then every region
    /// follows every other (a full mesh), not only the primary.
    pub fn multi_writer(&self) -> bool {
        self.deployment
            .classes()
            .any(|(_, policy)| policy.level == ContinuityLevel::HotHot)
    }

    /// The regions whose journals this region follows.
    pub fn sources(&self) -> Vec<String> {
        if self.multi_writer() {
            self.deployment
                .regions()
                .iter()
                .filter(|spec| spec.name != self.name)
                .map(|spec| spec.name.clone())
                .collect()
        } else if self.is_primary() || self.primary_name() == self.name {
            Vec::new()
        } else {
            vec![self.primary_name()]
        }
    }

    /// Whether this region measures its own RPO: the primary always; every
    /// region when some class is written everywhere.
    fn measures_rpo(&self) -> bool {
        self.is_primary() || self.multi_writer()
    }

    pub fn class_lag(&self) -> BTreeMap<AssetClass, ClassLag> {
        self.lag.read().expect("lag lock poisoned").clone()
    }

    /// The lowest position every secondary has applied.
    fn slowest_applied(&self) -> i64 {
        self.peers
            .lock()
            .expect("peers lock poisoned")
            .values()
            .map(|peer| peer.applied)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Re-measures each class's RPO from the journal and the slowest
    /// secondary's position, and decides which classes refuse writes.
    pub async fn measure_rpo(&self) {
        if !self.measures_rpo() {
            return;
        }
        let slowest = self.slowest_applied();
        if slowest == i64::MAX {
            return;
        }
        let pending = match self.store.unreplicated_since(slowest).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "cannot measure replication lag");
                return;
            }
        };
        let now = now_millis();
        let mut lag = BTreeMap::new();
        for class in AssetClass::ALL {
            let policy = self.deployment.policy(class);
            let mut class_lag = ClassLag::default();
            // A secondary's own writes are only of the classes it writes.
            let written_here = self.is_primary() || policy.level == ContinuityLevel::HotHot;
            if policy.level.replicates_continuously() && written_here {
                for entry in pending.iter().filter(|entry| entry.class == Some(class)) {
                    class_lag.records += entry.records;
                    class_lag.bytes += entry.bytes;
                    class_lag.rpo_ms = class_lag.rpo_ms.max(now - entry.oldest_recorded_at);
                }
            }
            if let Some(max_rpo) = policy.max_rpo {
                class_lag.refusing_writes = class_lag.rpo_ms > max_rpo.as_millis() as i64;
            }
            lag.insert(class, class_lag);
        }
        let mut current = self.lag.write().expect("lag lock poisoned");
        for (class, class_lag) in &lag {
            let was = current.get(class).map(|l| l.refusing_writes).unwrap_or(false);
            if class_lag.refusing_writes != was {
                if class_lag.refusing_writes {
                    tracing::warn!(
                        class = class.as_str(),
                        rpo_ms = class_lag.rpo_ms,
                        "secondary lags past max_rpo: refusing writes of the class"
                    );
                } else {
                    tracing::info!(
                        class = class.as_str(),
                        "secondary caught up: accepting writes of the class again"
                    );
                }
            }
        }
        *current = lag;
    }

    /// Runs the region's background work until `shutdown` resolves: RPO
    /// measurement and the bootstrap's watch in every replica, sharing with
    /// the region's other replicas (PostgreSQL), and, while this process
    /// holds the region's duties, following and leadership.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let sharing = {
            let region = self.clone();
            async move {
                if region.shared() {
                    region.keep_sharing().await
                } else {
                    std::future::pending::<()>().await
                }
            }
        };
        let duties = {
            let region = self.clone();
            async move {
                let mut duties = region.store.duties();
                loop {
                    duties.until_held().await;
                    region.duty.store(true, Ordering::Release);
                    if region.shared() {
                        tracing::info!(region = %region.name, replica = %region.replica, "this replica holds the region's duties: following and leadership run here");
                    }
                    let lost = async {
                        while duties.held() {
                            duties.changed().await;
                        }
                    };
                    tokio::select! {
                        _ = region.clone().run_duties() => {}
                        _ = lost => {}
                    }
                    region.duty.store(false, Ordering::Release);
                    // Another replica takes them over (and the lease, under
                    // a new epoch); this one's writes stop with the lease's
                    // deadline, which it no longer renews.
                    leadership::let_go(&region);
                    tracing::warn!(region = %region.name, replica = %region.replica, "this replica lost the region's duties");
                }
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = sharing => {}
            _ = duties => {}
            _ = self.clone().run_shared() => {}
        }
        self.stopping.send_replace(true);
        if self.holds_duties() {
            leadership::resign_on_shutdown(&self).await;
        }
    }

    /// What every replica runs: RPO measurement and the bootstrap's watch.
    async fn run_shared(self: Arc<Self>) {
        let measuring = {
            let region = self.clone();
            async move {
                loop {
                    region.measure_rpo().await;
                    tokio::time::sleep(RPO_INTERVAL).await;
                }
            }
        };
        let bootstrapping = {
            let region = self.clone();
            async move {
                region.watch_bootstrap().await;
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            _ = measuring => {}
            _ = bootstrapping => {}
        }
    }

    /// What the holder of the region's duties runs: the followers and
    /// leadership.
    async fn run_duties(self: Arc<Self>) {
        let following = {
            let region = self.clone();
            async move {
                // Follow the current sources; start again whenever the role
                // or the primary changes (a failover).
                let mut changes = region.role_changed.subscribe();
                loop {
                    changes.borrow_and_update();
                    let followers: Vec<_> = region
                        .sources()
                        .into_iter()
                        .map(|source| tokio::spawn(follower::follow(region.clone(), source)))
                        .map(AbortOnDrop)
                        .collect();
                    if changes.changed().await.is_err() {
                        return;
                    }
                    drop(followers);
                }
            }
        };
        let leading = {
            let region = self.clone();
            async move {
                if region.witness.is_some() {
                    leadership::run(region).await
                } else {
                    std::future::pending::<()>().await
                }
            }
        };
        tokio::select! {
            _ = following => {}
            _ = leading => {}
        }
    }

    /// Resolves once the region is shutting down.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// Aborts a spawned task when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether a class's own limits (max_rpo) allow a write now.
fn check_class(region: &Region, class: Option<AssetClass>) -> Result<(), Error> {
    let Some(class) = class else { return Ok(()) };
    if let Some(error) = region.restoring_error(class) {
        return Err(error);
    }
    let lag = region
        .lag
        .read()
        .expect("lag lock poisoned")
        .get(&class)
        .copied()
        .unwrap_or_default();
    if lag.refusing_writes {
        let max_rpo = region.deployment.policy(class).max_rpo.unwrap_or_default();
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "refusing {} writes: another region is {:.1}s behind, past max_rpo {:.1}s; writes resume when it catches up",
                class.as_str(),
                lag.rpo_ms as f64 / 1000.0,
                max_rpo.as_secs_f64()
            ),
        ));
    }
    Ok(())
}

/// The region's policy, as the store and the API see it.
struct Policy(Arc<Region>);

#[async_trait]
impl RegionPolicy for Policy {
    fn check_write(&self, class: Option<AssetClass>) -> Result<(), Error> {
        let region = &self.0;
        let hot_hot =
            class.is_some_and(|class| region.deployment.policy(class).level == ContinuityLevel::HotHot);
        match region.role() {
            Role::Secondary { primary } if !hot_hot => {
                let what = match class {
                    Some(class) => format!(
                        "{} is {} here",
                        class.as_str(),
                        region.deployment.policy(class).level.as_str()
                    ),
                    None => "workspaces are managed by the primary".to_string(),
                };
                Err(Error::new(
                    ErrorKind::NotPrimary,
                    format!(
                        "region '{}' is a read-only secondary ({what}): send writes to the primary region '{primary}' at {}",
                        region.name,
                        region.primary_url()
                    ),
                ))
            }
            Role::Secondary { .. } => {
                // A hot-hot write at a region that has not received the
                // bootstrap would be made against a state it lacks.
                if let Some(error) = region.serving_error() {
                    return Err(error);
                }
                check_class(region, class)
            }
            Role::Primary => {
                // Writes of a hot-hot class go on in every region whoever
                // leads; everything else needs a certain lease.
                if !hot_hot {
                    if let Some(reason) = region.lease_error() {
                        return Err(Error::new(ErrorKind::NotPrimary, reason));
                    }
                }
                check_class(region, class)
            }
        }
    }

    fn check_serving(&self) -> Result<(), Error> {
        match self.0.serving_error() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn check_read(&self, class: AssetClass) -> Result<(), Error> {
        let region = &self.0;
        if region.is_primary() {
            return match region.restoring_error(class) {
                Some(error) => Err(error),
                None => Ok(()),
            };
        }
        if region.deployment.policy(class).level == ContinuityLevel::HotCold {
            return Err(Error::new(
                ErrorKind::NotPrimary,
                format!(
                    "region '{}' does not serve {}: the class is hot-cold, not replicated continuously, so its copy here would be stale; read it from the primary at {}",
                    region.name,
                    class.as_str(),
                    region.primary_url()
                ),
            ));
        }
        Ok(())
    }

    async fn acknowledge(&self, appended: &[(i64, Option<AssetClass>)]) -> Result<(), Error> {
        let region = &self.0;
        let Some(wait_for) = appended
            .iter()
            .filter(|(_, class)| class.is_some_and(|class| region.deployment.policy(class).sync))
            .map(|(seq, _)| *seq)
            .max()
        else {
            return Ok(());
        };
        let mut acknowledgements = region.acknowledged.subscribe();
        let deadline = tokio::time::Instant::now() + region.sync_timeout;
        loop {
            let lagging: Vec<String> = region
                .peers()
                .into_iter()
                .filter(|(_, peer)| peer.applied < wait_for)
                .map(|(name, _)| name)
                .collect();
            if lagging.is_empty() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, acknowledgements.changed())
                .await
                .is_err()
            {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the write is committed at region '{}' (journal position {wait_for}) but region {} did not confirm it within {:.0}s; it is not acknowledged as synchronously replicated",
                        region.name,
                        lagging.join(", "),
                        region.sync_timeout.as_secs_f64()
                    ),
                ));
            }
        }
    }

    fn multi_writer(&self, class: AssetClass) -> bool {
        self.0.deployment.policy(class).level == ContinuityLevel::HotHot
    }

    fn id_stripe(&self) -> Option<tandem_core::merge::IdStripe> {
        let region = &self.0;
        if !region.multi_writer() {
            return None;
        }
        let regions = region.deployment.regions();
        let slot = regions.iter().position(|spec| spec.name == region.name)?;
        Some(tandem_core::merge::IdStripe {
            slot: slot as u64,
            stride: regions.len() as u64,
        })
    }
}
