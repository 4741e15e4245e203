//! Which region is primary, and which regions answer: the gateway's view of
//! the deployment.
//!
//! A [`LeaderSource`] makes one observation of the deployment; the
//! [`PrimaryTracker`] repeats it every poll interval, keeps the latest as a
//! [`DeploymentView`], and re-observes on demand when a request meets a
//! failure (one observation at a time, shared by every request that asked).
//!
//! [`PollingLeaderSource`] asks every region for its status (`GET
//! /api/tandem/v1/regions`) and takes as primary the region that says it is
//! primary with the highest epoch. A region that answers but says it is not
//! ready (the document's `ready`, what its `/ready` says) counts as not
//! healthy: no request goes to it until it is. With a witness in the deployment,
//! [`WitnessLeaderSource`] follows the witness: the primary is the region
//! the witness names, once that region reports it has begun the epoch and
//! accepts writes; the polling still says which regions answer. While the
//! witness cannot be asked, it falls back to the regions' own claims (each
//! of which is fenced by its lease).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tandem_deployment::RegionSpec;
use tokio::sync::watch;

/// The status endpoint every region of a deployment serves.
pub const REGION_STATUS_PATH: &str = "/api/tandem/v1/regions";

/// The primary as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leader {
    pub region: String,
    pub url: String,
    /// The leadership epoch the region reported; a higher epoch wins over a
    /// region that still believes it is primary from an older leadership.
    pub epoch: u64,
}

/// What one region said (or failed to say) in one observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionReport {
    pub name: String,
    pub url: String,
    /// Whether the region answered its status request and is ready (see
    /// `ready`): only healthy regions receive requests.
    pub healthy: bool,
    /// Whether the region said it is ready to serve its role (its status
    /// document's `ready`; None if it did not answer or does not say). A
    /// region that answers but is not ready (still catching up, no lease
    /// settled) receives no requests.
    pub ready: Option<bool>,
    /// `primary` or `secondary`, as the region reported itself.
    pub role: Option<String>,
    /// The epoch the region reported.
    pub epoch: Option<u64>,
    /// Which region this region believes is primary.
    pub reports_primary: Option<String>,
    /// Why the region is not healthy, for `/gateway/status` and the logs.
    pub error: Option<String>,
    /// Each of the region's replicas (the deployment's `replicas`, or its
    /// one URL) and what it said: requests go to its healthy ones in turn.
    pub replicas: Vec<ReplicaReport>,
}

/// What one replica of a region said in one observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaReport {
    pub url: String,
    /// It answered its status and is ready.
    pub healthy: bool,
    /// Whether it runs the region's duties (None: it did not say).
    pub holds_duties: Option<bool>,
    pub error: Option<String>,
}

impl RegionReport {
    /// A region that did not answer.
    pub fn unreachable(spec: &RegionSpec, error: impl Into<String>) -> Self {
        RegionReport {
            name: spec.name.clone(),
            url: spec.url.clone(),
            healthy: false,
            ready: None,
            role: None,
            epoch: None,
            reports_primary: None,
            error: Some(error.into()),
            replicas: Vec::new(),
        }
    }

    /// The addresses of the region's healthy replicas, in the deployment's
    /// order (its URL alone when no replica answered).
    pub fn healthy_urls(&self) -> Vec<&str> {
        let healthy: Vec<&str> = self
            .replicas
            .iter()
            .filter(|replica| replica.healthy)
            .map(|replica| replica.url.as_str())
            .collect();
        if healthy.is_empty() {
            vec![self.url.as_str()]
        } else {
            healthy
        }
    }

    fn not_ready(&self) -> bool {
        self.ready == Some(false)
    }

    fn claims_primary(&self) -> bool {
        self.healthy && self.role.as_deref() == Some("primary")
    }
}

/// One look at the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// Every region of the deployment, in deployment-file order.
    pub regions: Vec<RegionReport>,
    /// The region requests that need the primary go to, if one is known.
    pub primary: Option<Leader>,
}

/// Where the gateway learns who leads. Implementations must bound the time
/// an observation takes: requests waiting for a primary wait on it.
#[async_trait::async_trait]
pub trait LeaderSource: Send + Sync {
    /// Observes every region once.
    async fn observe(&self) -> Observation;

    /// A short name for `/gateway/status` (`polling`, later `witness`).
    fn name(&self) -> &'static str;
}

/// The primary among region reports: the healthy region that says it is
/// primary with the highest epoch; among equal epochs (which only a
/// misconfiguration produces), the first in deployment-file order.
pub fn choose_primary(reports: &[RegionReport]) -> Option<Leader> {
    let mut best: Option<&RegionReport> = None;
    for report in reports.iter().filter(|report| report.claims_primary()) {
        let better = match best {
            None => true,
            Some(current) => report.epoch.unwrap_or(0) > current.epoch.unwrap_or(0),
        };
        if better {
            best = Some(report);
        }
    }
    best.map(|report| Leader {
        region: report.name.clone(),
        url: report.url.clone(),
        epoch: report.epoch.unwrap_or(0),
    })
}

/// Finds the primary by asking every region for its status, concurrently,
/// each with a short timeout.
pub struct PollingLeaderSource {
    regions: Vec<RegionSpec>,
    http: reqwest::Client,
}

impl PollingLeaderSource {
    /// A source over `regions`, each probe bounded by `timeout`.
    pub fn new(regions: Vec<RegionSpec>, timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::with_secret(regions, timeout, None)
    }

    /// [`Self::new`], authenticating with the deployment's replication
    /// secret: regions that require authentication answer their status to
    /// it (and to operators), never to anonymous callers.
    pub fn with_secret(
        regions: Vec<RegionSpec>,
        timeout: Duration,
        secret: Option<&str>,
    ) -> Result<Self, reqwest::Error> {
        Self::with_trust(regions, timeout, secret, None)
    }

    /// [`Self::with_secret`], trusting the PEM CA `ca_pem` for `https://`
    /// regions.
    pub fn with_trust(
        regions: Vec<RegionSpec>,
        timeout: Duration,
        secret: Option<&str>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, reqwest::Error> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(secret) = secret {
            if let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}")) {
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .default_headers(headers)
            .no_proxy();
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build()?;
        Ok(PollingLeaderSource { regions, http })
    }

    /// Probes every replica of the region at once. The region's report is
    /// the one of its healthy replica holding the region's duties (they
    /// all serve by its view), else of its first healthy one; it is healthy
    /// while any replica is.
    async fn probe(&self, spec: &RegionSpec) -> RegionReport {
        let answers = futures::future::join_all(
            spec.endpoints()
                .into_iter()
                .map(|url| self.probe_replica(spec, url)),
        )
        .await;
        let replicas: Vec<ReplicaReport> = answers
            .iter()
            .map(|(report, holds_duties)| ReplicaReport {
                url: report.url.clone(),
                healthy: report.healthy,
                holds_duties: *holds_duties,
                error: report.error.clone(),
            })
            .collect();
        let chosen = answers
            .iter()
            .position(|(report, holds)| report.healthy && *holds == Some(true))
            .or_else(|| answers.iter().position(|(report, _)| report.healthy))
            .unwrap_or(0);
        let mut report = answers
            .into_iter()
            .nth(chosen)
            .map(|(report, _)| report)
            .unwrap_or_else(|| RegionReport::unreachable(spec, "the region lists no address"));
        if replicas.len() > 1 && !report.healthy {
            report.error = Some(
                replicas
                    .iter()
                    .map(|replica| format!("{}: {}", replica.url, replica.error.as_deref().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        report.replicas = replicas;
        report
    }

    /// One replica's status, and whether it says it holds the duties.
    async fn probe_replica(&self, spec: &RegionSpec, url: String) -> (RegionReport, Option<bool>) {
        let unreachable = |error: String| {
            let mut report = RegionReport::unreachable(spec, error);
            report.url = url.clone();
            (report, None)
        };
        let response = match self.http.get(format!("{url}{REGION_STATUS_PATH}")).send().await {
            Ok(response) => response,
            Err(error) => return unreachable(describe_transport_error(&error)),
        };
        let status = response.status();
        if !status.is_success() {
            return unreachable(format!("status request answered {status}"));
        }
        let document: serde_json::Value = match response.json().await {
            Ok(document) => document,
            Err(error) => return unreachable(format!("unreadable status document: {error}")),
        };
        let answering = document["region"].as_str().unwrap_or_default();
        if answering != spec.name {
            // A URL in the deployment file that reaches another region (or a
            // server of another deployment) must not be trusted as this one.
            return unreachable(format!("the server at {url} answers as region '{answering}'"));
        }
        let ready = document["ready"].as_bool();
        let report = RegionReport {
            name: spec.name.clone(),
            url: url.clone(),
            // Regions of older versions do not say: they count as ready.
            healthy: ready != Some(false),
            ready,
            role: document["role"].as_str().map(str::to_string),
            epoch: document["epoch"].as_u64(),
            reports_primary: document["primary"].as_str().map(str::to_string),
            error: (ready == Some(false)).then(|| format!("not ready: {}", missing(&document))),
            replicas: Vec::new(),
        };
        (report, document["replica"]["holds_duties"].as_bool())
    }
}

/// What a region's status document says it lacks to be ready.
fn missing(document: &serde_json::Value) -> String {
    let failed: Vec<String> = document["readiness"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|check| check["ok"] == false)
        .map(|check| {
            format!(
                "{}: {}",
                check["name"].as_str().unwrap_or("?"),
                check["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    if failed.is_empty() {
        "no reason given".to_string()
    } else {
        failed.join("; ")
    }
}

#[async_trait::async_trait]
impl LeaderSource for PollingLeaderSource {
    async fn observe(&self) -> Observation {
        let regions = futures::future::join_all(self.regions.iter().map(|spec| self.probe(spec))).await;
        let primary = choose_primary(&regions);
        Observation { regions, primary }
    }

    fn name(&self) -> &'static str {
        "polling"
    }
}

/// Follows the witness for the primary; probes regions for health.
pub struct WitnessLeaderSource {
    polling: PollingLeaderSource,
    witness: Arc<dyn tandem_witness::Witness>,
    timeout: Duration,
}

impl WitnessLeaderSource {
    pub fn new(
        polling: PollingLeaderSource,
        witness: Arc<dyn tandem_witness::Witness>,
        timeout: Duration,
    ) -> Self {
        WitnessLeaderSource {
            polling,
            witness,
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl LeaderSource for WitnessLeaderSource {
    async fn observe(&self) -> Observation {
        let (regions, leader) = tokio::join!(
            futures::future::join_all(self.polling.regions.iter().map(|spec| self.polling.probe(spec))),
            tokio::time::timeout(self.timeout, self.witness.leader()),
        );
        let primary = match leader {
            Ok(Ok(Some(leader))) => regions
                .iter()
                .find(|report| {
                    report.name == leader.region
                        && report.claims_primary()
                        && report.epoch.unwrap_or(0) >= leader.epoch
                })
                .map(|report| Leader {
                    region: report.name.clone(),
                    url: report.url.clone(),
                    epoch: leader.epoch,
                }),
            // Nobody leads: no primary, whatever a region still claims.
            Ok(Ok(None)) => None,
            // The witness cannot be asked: the regions' claims, each fenced by its lease.
            _ => choose_primary(&regions),
        };
        Observation { regions, primary }
    }

    fn name(&self) -> &'static str {
        "witness"
    }
}

/// A transport error in a few words: the kind of failure and its innermost
/// cause (reqwest's own message hides it).
pub fn describe_transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("{kind}: {cause}")
}

/// The latest observation, numbered so a request can tell whether the view
/// changed since it last looked.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    /// Increases with every observation and every region marked unreachable.
    pub version: u64,
    /// When the observation was made (ms since the Unix epoch); 0 before the
    /// first one.
    pub observed_at_ms: u64,
    #[serde(flatten)]
    pub observation: Observation,
}

impl DeploymentView {
    pub fn primary(&self) -> Option<&Leader> {
        self.observation.primary.as_ref()
    }

    pub fn region(&self, name: &str) -> Option<&RegionReport> {
        self.observation.regions.iter().find(|report| report.name == name)
    }

    pub fn healthy_regions(&self) -> impl Iterator<Item = &RegionReport> {
        self.observation.regions.iter().filter(|report| report.healthy)
    }

    /// One line for error messages and logs: each region and what the
    /// gateway knows of it.
    pub fn summary(&self) -> String {
        if self.observed_at_ms == 0 {
            return "the gateway has not observed the regions yet".to_string();
        }
        let parts: Vec<String> = self
            .observation
            .regions
            .iter()
            .map(|report| match (&report.error, &report.role) {
                (Some(error), Some(role)) if report.not_ready() => {
                    format!("{} {role} ({error})", report.name)
                }
                (Some(error), _) => format!("{} unreachable ({error})", report.name),
                (None, Some(role)) => match &report.reports_primary {
                    Some(primary) if primary != &report.name => {
                        format!("{} {role}, following {primary}", report.name)
                    }
                    _ => format!("{} {role}", report.name),
                },
                (None, None) => format!("{} answering", report.name),
            })
            .collect();
        parts.join("; ")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

/// Keeps the gateway's view of the deployment current.
pub struct PrimaryTracker {
    source: Box<dyn LeaderSource>,
    poll_interval: Duration,
    view: watch::Sender<Arc<DeploymentView>>,
    /// Held while an observation is in flight, so requests that fail at the
    /// same moment share one observation instead of each probing every
    /// region.
    observing: tokio::sync::Mutex<()>,
}

impl PrimaryTracker {
    pub fn new(source: Box<dyn LeaderSource>, poll_interval: Duration) -> Arc<Self> {
        let empty = DeploymentView {
            version: 0,
            observed_at_ms: 0,
            observation: Observation::default(),
        };
        Arc::new(PrimaryTracker {
            source,
            poll_interval,
            view: watch::channel(Arc::new(empty)).0,
            observing: tokio::sync::Mutex::new(()),
        })
    }

    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    /// The latest view.
    pub fn view(&self) -> Arc<DeploymentView> {
        self.view.borrow().clone()
    }

    /// Resolves once the view names a primary, and not `known`: a request
    /// waiting out a failover goes on at once instead of at its next retry.
    pub async fn new_primary(&self, known: Option<&str>) {
        let mut views = self.view.subscribe();
        let _ = views
            .wait_for(|view| {
                view.primary()
                    .is_some_and(|leader| Some(leader.region.as_str()) != known)
            })
            .await;
    }

    /// A view newer than version `seen`: the current one if it is already
    /// newer (another request or the poll loop refreshed meanwhile),
    /// otherwise a fresh observation.
    pub async fn refresh(&self, seen: u64) -> Arc<DeploymentView> {
        let _observing = self.observing.lock().await;
        let current = self.view();
        if current.version > seen {
            return current;
        }
        let observation = self.source.observe().await;
        self.publish(observation)
    }

    /// Records that a request could not reach `region`: it receives nothing
    /// more until an observation finds it answering again, and if it was the
    /// primary, no primary is known until then.
    pub fn mark_unreachable(&self, region: &str, error: &str) {
        let current = self.view();
        let mut observation = current.observation.clone();
        let Some(report) = observation
            .regions
            .iter_mut()
            .find(|report| report.name == region)
        else {
            return;
        };
        if !report.healthy {
            return;
        }
        report.healthy = false;
        report.error = Some(error.to_string());
        observation.primary = choose_primary(&observation.regions);
        tracing::warn!(region, %error, "region unreachable from the gateway");
        self.publish(observation);
    }

    fn publish(&self, observation: Observation) -> Arc<DeploymentView> {
        let previous = self.view();
        let claims = observation
            .regions
            .iter()
            .filter(|report| report.claims_primary())
            .count();
        if previous.primary() != observation.primary.as_ref() {
            match &observation.primary {
                Some(leader) => tracing::info!(
                    region = %leader.region,
                    epoch = leader.epoch,
                    url = %leader.url,
                    "primary region found"
                ),
                None => tracing::warn!(
                    regions = %observation.regions.iter().map(|r| format!("{}:{}", r.name, r.error.as_deref().unwrap_or("answering"))).collect::<Vec<_>>().join(", "),
                    "no primary region is known"
                ),
            }
            if claims > 1 {
                tracing::warn!(
                    claims,
                    "more than one region says it is primary; the highest epoch wins"
                );
            }
        }
        for report in &observation.regions {
            let was_healthy = previous.region(&report.name).map(|before| before.healthy);
            if was_healthy != Some(report.healthy) {
                if report.healthy {
                    tracing::info!(
                        region = %report.name,
                        role = report.role.as_deref().unwrap_or("unknown"),
                        "region answering"
                    );
                } else if report.not_ready() {
                    tracing::warn!(
                        region = %report.name,
                        reason = report.error.as_deref().unwrap_or("unknown"),
                        "region answering but not ready: no requests go to it"
                    );
                } else {
                    tracing::warn!(
                        region = %report.name,
                        error = report.error.as_deref().unwrap_or("unknown"),
                        "region not answering"
                    );
                }
            }
        }
        let mut published = None;
        self.view.send_modify(|view| {
            let next = Arc::new(DeploymentView {
                version: view.version + 1,
                observed_at_ms: now_ms(),
                observation,
            });
            *view = next.clone();
            published = Some(next);
        });
        published.expect("send_modify runs the closure")
    }

    /// Observes every poll interval until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let polling = async {
            let mut ticks = tokio::time::interval(self.poll_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let seen = self.view().version;
                self.refresh(seen).await;
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = polling => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, role: &str, epoch: u64) -> RegionReport {
        RegionReport {
            name: name.to_string(),
            url: format!("http://{name}"),
            healthy: true,
            ready: Some(true),
            role: Some(role.to_string()),
            epoch: Some(epoch),
            reports_primary: None,
            error: None,
            replicas: Vec::new(),
        }
    }

    #[test]
    fn the_primary_is_the_highest_epoch_claim() {
        let reports = vec![
            report("eastus", "primary", 1),
            report("westus", "primary", 3),
            report("centralus", "secondary", 5),
        ];
        let leader = choose_primary(&reports).unwrap();
        assert_eq!((leader.region.as_str(), leader.epoch), ("westus", 3));
    }

    #[test]
    fn unhealthy_regions_and_secondaries_are_never_primary() {
        let mut gone = report("eastus", "primary", 9);
        gone.healthy = false;
        let reports = vec![gone, report("westus", "secondary", 1)];
        assert_eq!(choose_primary(&reports), None);
    }

    #[test]
    fn equal_epochs_resolve_in_deployment_order() {
        let reports = vec![report("eastus", "primary", 2), report("westus", "primary", 2)];
        assert_eq!(choose_primary(&reports).unwrap().region, "eastus");
    }

    struct Fixed(Observation);

    #[async_trait::async_trait]
    impl LeaderSource for Fixed {
        async fn observe(&self) -> Observation {
            self.0.clone()
        }
        fn name(&self) -> &'static str {
            "fixed"
        }
    }

    #[tokio::test]
    async fn an_unreachable_primary_is_forgotten_until_observed_again() {
        let regions = vec![report("eastus", "primary", 1), report("westus", "secondary", 1)];
        let observation = Observation {
            primary: choose_primary(&regions),
            regions,
        };
        let tracker = PrimaryTracker::new(Box::new(Fixed(observation)), Duration::from_secs(60));
        let first = tracker.refresh(0).await;
        assert_eq!(first.primary().unwrap().region, "eastus");
        // A refresh asked with an old version returns the newer view as is.
        assert_eq!(tracker.refresh(0).await.version, first.version);

        tracker.mark_unreachable("eastus", "cannot connect: connection refused");
        let marked = tracker.view();
        assert_eq!(marked.primary(), None);
        assert!(!marked.region("eastus").unwrap().healthy);
        assert_eq!(marked.healthy_regions().count(), 1);
        assert!(
            marked.summary().contains("eastus unreachable"),
            "{}",
            marked.summary()
        );

        let observed = tracker.refresh(marked.version).await;
        assert_eq!(observed.primary().unwrap().region, "eastus");
    }
}
