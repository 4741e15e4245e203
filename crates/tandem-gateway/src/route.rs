//! Which regions may serve a request, decided from its method and path alone
//! (the gateway never reads request bodies to route them).
//!
//! A request is a *read* if it is a GET or HEAD, or one of the POST
//! endpoints MLflow itself treats as reads (`…/search`, `…/get-…`). Reads
//! are *replay-safe*: sending one twice changes nothing, so the proxy may
//! retry it whenever it fails. Its asset class comes from the path (workspace
//! prefix `/w/<workspace>` removed): `registered-models` and `model-versions`
//! are the registry; every other MLflow path, the artifact proxy included,
//! is tracking.
//!
//! Where it may go follows the class's continuity level: requests go to the
//! primary; reads of `hot-hot` and `hot-warm` classes (which every region
//! holds, a secondary up to its replication lag) and writes of `hot-hot`
//! classes (which every region accepts) fall back to any healthy region when
//! no primary answers. `hot-cold` classes are served by the primary only.

use axum::http::Method;
use serde::Serialize;
use tandem_core::journal::AssetClass;
use tandem_deployment::{ContinuityLevel, Deployment};

use crate::tracker::{DeploymentView, RegionReport};

/// What the gateway needs to know about a request to route it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRoute {
    /// The asset class of an MLflow request; None for the Tandem API and
    /// informational endpoints.
    pub class: Option<AssetClass>,
    /// Whether the request only reads: safe to send again after any failure.
    pub read: bool,
    /// Whether any region holds what the request reads (a replicated
    /// Tandem API read such as the workspace list); false for endpoints
    /// whose answer is specific to one region (its journal, its metrics).
    pub replicated: bool,
}

/// Which regions may serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The primary, or nobody.
    PrimaryOnly,
    /// The primary when it answers, else any healthy region.
    PrimaryThenAnyHealthy,
}

impl Placement {
    pub fn describe(self) -> &'static str {
        match self {
            Placement::PrimaryOnly => "primary only",
            Placement::PrimaryThenAnyHealthy => "primary, else any healthy region",
        }
    }
}

/// The path with a `/w/<workspace>` prefix removed.
fn unscoped(path: &str) -> &str {
    match path.strip_prefix("/w/") {
        Some(rest) => match rest.find('/') {
            Some(slash) => &rest[slash..],
            None => "/",
        },
        None => path,
    }
}

/// MLflow's workspace API: workspaces themselves, routed like Tandem's own
/// workspace API (no asset class; its reads replicated), not as tracking.
fn is_mlflow_workspaces(path: &str) -> bool {
    ["/api/3.0/mlflow/workspaces", "/ajax-api/3.0/mlflow/workspaces"]
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
}

fn is_mlflow(path: &str) -> bool {
    !is_mlflow_workspaces(path)
        && [
            "/api/2.0/mlflow",
            "/ajax-api/2.0/mlflow",
            "/api/3.0/",
            "/ajax-api/3.0/",
        ]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// The POST endpoints MLflow serves as reads: `runs/search`,
/// `experiments/search`, `registered-models/search`, `model-versions/search`,
/// `logged-models/search`, and the `get-…` family
/// (`registered-models/get-latest-versions`, …).
fn is_read_by_name(path: &str) -> bool {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    last == "search" || last.starts_with("get-") || last.starts_with("get_")
}

/// Tandem API reads whose answer every region holds (replicated state, or
/// the region's own status): any region may answer them.
fn is_replicated_tandem_read(path: &str) -> bool {
    path == "/version"
        || path == "/api/tandem/v1/regions"
        || path == "/api/tandem/v1/region"
        || path == "/api/tandem/v1/conflicts"
        || path == "/api/tandem/v1/workspaces"
        || path.starts_with("/api/tandem/v1/workspaces/")
        || is_mlflow_workspaces(path)
}

/// Classifies a request by method and path.
pub fn classify(method: &Method, path: &str) -> RequestRoute {
    let path = unscoped(path);
    let class = if !is_mlflow(path) {
        None
    } else if path.contains("/registered-models") || path.contains("/model-versions") {
        Some(AssetClass::Registry)
    } else {
        Some(AssetClass::Tracking)
    };
    let safe_method = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
    let read = safe_method || (method == Method::POST && class.is_some() && is_read_by_name(path));
    let replicated = match class {
        Some(_) => true,
        None => read && is_replicated_tandem_read(path),
    };
    RequestRoute {
        class,
        read,
        replicated,
    }
}

/// Where a request may go under `deployment`'s continuity levels.
pub fn placement(route: RequestRoute, deployment: &Deployment) -> Placement {
    let Some(class) = route.class else {
        return if route.read && route.replicated {
            Placement::PrimaryThenAnyHealthy
        } else {
            Placement::PrimaryOnly
        };
    };
    match (deployment.policy(class).level, route.read) {
        (ContinuityLevel::HotHot, _) => Placement::PrimaryThenAnyHealthy,
        (ContinuityLevel::HotWarm, true) => Placement::PrimaryThenAnyHealthy,
        (ContinuityLevel::HotWarm, false) | (ContinuityLevel::HotCold, _) => Placement::PrimaryOnly,
    }
}

/// A region chosen to serve a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub region: String,
    pub url: String,
    /// Whether it is the primary (false: a fallback).
    pub primary: bool,
}

/// The region a request goes to now, if any may serve it: the primary if
/// one is known and healthy, else (when the placement allows) the first
/// healthy region in deployment-file order, so successive fallback requests
/// see the same region's state.
pub fn choose_target(view: &DeploymentView, placement: Placement) -> Option<Target> {
    if let Some(leader) = view.primary() {
        if let Some(report) = view.region(&leader.region).filter(|report| report.healthy) {
            return Some(Target {
                region: leader.region.clone(),
                url: next_replica(report),
                primary: true,
            });
        }
    }
    match placement {
        Placement::PrimaryOnly => None,
        Placement::PrimaryThenAnyHealthy => view.healthy_regions().next().map(|report| Target {
            region: report.name.clone(),
            url: next_replica(report),
            primary: false,
        }),
    }
}

/// The region's healthy replicas take requests in turn (each replica
/// serves the region whole: they share its database).
fn next_replica(report: &RegionReport) -> String {
    static TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let urls = report.healthy_urls();
    let turn = TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    urls[turn % urls.len()].to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::tracker::{choose_primary, Observation, RegionReport};

    fn deployment(tracking: &str, registry: &str) -> Deployment {
        let text = format!(
            "primary = \"eastus\"\n\
             [[regions]]\nname = \"eastus\"\nurl = \"http://127.0.0.1:1\"\n\
             [[regions]]\nname = \"westus\"\nurl = \"http://127.0.0.1:2\"\n\
             [classes.tracking]\nlevel = \"{tracking}\"\n[classes.registry]\nlevel = \"{registry}\"\n"
        );
        Deployment::from_toml(&text, Path::new(".")).unwrap()
    }

    #[test]
    fn classes_come_from_the_path_without_the_workspace_prefix() {
        let cases = [
            ("/api/2.0/mlflow/runs/create", Some(AssetClass::Tracking)),
            ("/w/team-a/api/2.0/mlflow/runs/create", Some(AssetClass::Tracking)),
            ("/ajax-api/2.0/mlflow/experiments/get", Some(AssetClass::Tracking)),
            (
                "/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/x",
                Some(AssetClass::Tracking),
            ),
            (
                "/api/2.0/mlflow/registered-models/create",
                Some(AssetClass::Registry),
            ),
            (
                "/w/models/api/2.0/mlflow/model-versions/search",
                Some(AssetClass::Registry),
            ),
            ("/api/3.0/mlflow/server-info", Some(AssetClass::Tracking)),
            ("/api/tandem/v1/workspaces", None),
            ("/api/3.0/mlflow/workspaces", None),
            ("/ajax-api/3.0/mlflow/workspaces/team-a", None),
            ("/w/registered-models/api/tandem/v1/journal", None),
            ("/metrics", None),
        ];
        for (path, class) in cases {
            assert_eq!(classify(&Method::GET, path).class, class, "{path}");
        }
    }

    #[test]
    fn reads_are_safe_methods_and_mlflow_search_and_get_posts() {
        let read = |method: Method, path: &str| classify(&method, path).read;
        assert!(read(Method::GET, "/api/2.0/mlflow/runs/get"));
        assert!(read(Method::HEAD, "/api/2.0/mlflow-artifacts/artifacts/x"));
        assert!(read(Method::POST, "/api/2.0/mlflow/runs/search"));
        assert!(read(Method::POST, "/api/2.0/mlflow/experiments/search"));
        assert!(read(Method::POST, "/api/2.0/mlflow/logged-models/search"));
        assert!(read(Method::POST, "/w/a/api/2.0/mlflow/model-versions/search"));
        assert!(read(
            Method::POST,
            "/api/2.0/mlflow/registered-models/get-latest-versions"
        ));
        assert!(!read(Method::POST, "/api/2.0/mlflow/runs/log-batch"));
        assert!(!read(Method::POST, "/api/2.0/mlflow/registered-models/create"));
        assert!(!read(Method::PUT, "/api/2.0/mlflow-artifacts/artifacts/x"));
        assert!(!read(Method::DELETE, "/api/2.0/mlflow/registered-models/delete"));
        assert!(!read(Method::POST, "/api/tandem/v1/workspaces"));
        // A POST to a Tandem path named like a search is still a write.
        assert!(!read(Method::POST, "/api/tandem/v1/search"));
    }

    #[test]
    fn placement_follows_the_continuity_level() {
        let hot_warm = deployment("hot-warm", "hot-hot");
        let place = |method: Method, path: &str, deployment: &Deployment| {
            placement(classify(&method, path), deployment)
        };
        use Placement::*;
        assert_eq!(
            place(Method::GET, "/api/2.0/mlflow/runs/get", &hot_warm),
            PrimaryThenAnyHealthy
        );
        assert_eq!(
            place(Method::POST, "/api/2.0/mlflow/runs/create", &hot_warm),
            PrimaryOnly
        );
        assert_eq!(
            place(
                Method::POST,
                "/api/2.0/mlflow/registered-models/create",
                &hot_warm
            ),
            PrimaryThenAnyHealthy
        );
        let hot_cold = deployment("hot-cold", "hot-warm");
        assert_eq!(
            place(Method::GET, "/api/2.0/mlflow/runs/get", &hot_cold),
            PrimaryOnly
        );
        assert_eq!(
            place(Method::POST, "/api/2.0/mlflow/model-versions/search", &hot_cold),
            PrimaryThenAnyHealthy
        );
        assert_eq!(
            place(Method::GET, "/api/tandem/v1/workspaces", &hot_cold),
            PrimaryThenAnyHealthy
        );
        assert_eq!(
            place(Method::GET, "/api/tandem/v1/journal", &hot_cold),
            PrimaryOnly
        );
        assert_eq!(
            place(Method::POST, "/api/tandem/v1/workspaces", &hot_cold),
            PrimaryOnly
        );
        // MLflow's workspace API goes where Tandem's does, whatever the
        // tracking class allows: creating a workspace is the primary's.
        let hot_hot = deployment("hot-hot", "hot-hot");
        assert_eq!(
            place(Method::POST, "/api/3.0/mlflow/workspaces", &hot_hot),
            PrimaryOnly
        );
        assert_eq!(
            place(Method::DELETE, "/api/3.0/mlflow/workspaces/team-a", &hot_hot),
            PrimaryOnly
        );
        assert_eq!(
            place(Method::GET, "/api/3.0/mlflow/workspaces", &hot_cold),
            PrimaryThenAnyHealthy
        );
    }

    fn view(regions: Vec<RegionReport>) -> DeploymentView {
        DeploymentView {
            version: 1,
            observed_at_ms: 1,
            observation: Observation {
                primary: choose_primary(&regions),
                regions,
            },
        }
    }

    fn region(name: &str, role: &str, healthy: bool) -> RegionReport {
        RegionReport {
            name: name.to_string(),
            url: format!("http://{name}"),
            healthy,
            ready: Some(healthy),
            role: Some(role.to_string()),
            epoch: Some(1),
            reports_primary: Some("eastus".to_string()),
            error: None,
            replicas: Vec::new(),
        }
    }

    #[test]
    fn requests_go_to_the_healthy_replicas_of_the_region_in_turn() {
        let mut east = region("eastus", "primary", true);
        east.replicas = ["http://a", "http://b", "http://c"]
            .iter()
            .map(|url| crate::tracker::ReplicaReport {
                url: url.to_string(),
                healthy: *url != "http://b",
                holds_duties: Some(*url == "http://a"),
                error: None,
            })
            .collect();
        let view = view(vec![east, region("westus", "secondary", true)]);
        let urls: Vec<String> = (0..6)
            .map(|_| choose_target(&view, Placement::PrimaryOnly).unwrap().url)
            .collect();
        assert!(
            urls.iter().all(|url| url == "http://a" || url == "http://c"),
            "{urls:?}"
        );
        assert_eq!(
            urls.iter().filter(|url| *url == "http://a").count(),
            3,
            "{urls:?}"
        );
    }

    #[test]
    fn targets_prefer_the_primary_and_fall_back_only_where_allowed() {
        let both = view(vec![
            region("eastus", "primary", true),
            region("westus", "secondary", true),
        ]);
        for placement in [Placement::PrimaryOnly, Placement::PrimaryThenAnyHealthy] {
            let target = choose_target(&both, placement).unwrap();
            assert_eq!((target.region.as_str(), target.primary), ("eastus", true));
        }
        let primary_down = view(vec![
            region("eastus", "primary", false),
            region("westus", "secondary", true),
        ]);
        assert_eq!(choose_target(&primary_down, Placement::PrimaryOnly), None);
        let fallback = choose_target(&primary_down, Placement::PrimaryThenAnyHealthy).unwrap();
        assert_eq!((fallback.region.as_str(), fallback.primary), ("westus", false));
        let nothing = view(vec![
            region("eastus", "primary", false),
            region("westus", "secondary", false),
        ]);
        assert_eq!(choose_target(&nothing, Placement::PrimaryThenAnyHealthy), None);
    }
}
