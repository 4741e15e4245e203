//! The gateway in front of real regions (`tandem server`, in-process, with
//! replication): requests reach the primary, workspaces and the Tandem API
//! pass through, reads move to the secondary when the primary stops, and
//! writes are refused with MLflow's error while no primary is known.

mod support;

use std::time::Duration;

use support::{http, LiveDeployment, RunningGateway};
use tandem_gateway::{GatewayConfig, REGION_HEADER};

async fn gateway(deployment: &LiveDeployment, failover_wait: Duration) -> RunningGateway {
    let mut config = GatewayConfig::new(deployment.deployment.clone());
    config.poll_interval = Duration::from_millis(100);
    config.failover_wait = failover_wait;
    let gateway = RunningGateway::start(config).await;
    gateway.wait_for_primary(Some("eastus")).await;
    gateway
}

async fn json(response: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = response.status().as_u16();
    let region = response
        .headers()
        .get(REGION_HEADER)
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let document = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "text": text }));
    (status, region, document)
}

/// Waits until `url` answers `path` with 200.
async fn wait_for(url: &str, path: &str) {
    for _ in 0..200 {
        if http()
            .get(format!("{url}{path}"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url}{path} never answered 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_and_tandem_requests_reach_the_primary_and_reads_survive_its_loss() {
    let mut deployment = LiveDeployment::start(
        &["eastus", "westus"],
        "[classes.tracking]\nlevel = \"hot-warm\"\n[classes.registry]\nlevel = \"hot-warm\"\n",
    )
    .await;
    let mut gateway = gateway(&deployment, Duration::from_millis(1500)).await;
    let base = gateway.url.clone();

    let health = http().get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "OK");

    // A workspace through the Tandem API, an experiment in it through the
    // workspace-prefixed MLflow API, a run with a metric and an artifact.
    let (status, region, _) = json(
        http()
            .post(format!("{base}/api/tandem/v1/workspaces"))
            .json(&serde_json::json!({"name": "team-a"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, region.as_str()), (201, "eastus"));
    let scoped = format!("{base}/w/team-a/api/2.0/mlflow");
    let (status, region, created) = json(
        http()
            .post(format!("{scoped}/experiments/create"))
            .json(&serde_json::json!({"name": "through-the-gateway"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, region.as_str()), (200, "eastus"), "{created}");
    let experiment_id = created["experiment_id"].as_str().unwrap().to_string();
    let (status, _, run) = json(
        http()
            .post(format!("{scoped}/runs/create"))
            .json(&serde_json::json!({"experiment_id": experiment_id}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let (status, _, logged) = json(
        http()
            .post(format!("{scoped}/runs/log-metric"))
            .json(&serde_json::json!({"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{logged}");
    let artifact = format!(
        "{base}/w/team-a/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/notes.txt"
    );
    let uploaded = http()
        .put(&artifact)
        .body("hello through the gateway")
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 200, "{}", uploaded.text().await.unwrap());
    let head = http().head(&artifact).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "25");
    let (status, _, found) = json(
        http()
            .post(format!("{scoped}/runs/search"))
            .json(&serde_json::json!({"experiment_ids": [experiment_id]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["runs"][0]["data"]["metrics"][0]["key"], "loss");

    // MLflow's errors pass through unchanged.
    let (status, _, missing) = json(
        http()
            .get(format!("{scoped}/experiments/get?experiment_id=424242"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(missing["error_code"], "RESOURCE_DOES_NOT_EXIST");

    let status = gateway.status().await;
    assert_eq!(status["primary"]["region"], "eastus");
    assert_eq!(status["regions"][1]["role"], "secondary");
    assert_eq!(status["regions"][1]["reports_primary"], "eastus");

    // The secondary has everything once replication caught up; then the
    // primary stops.
    let west = deployment.regions[1].url.clone();
    wait_for(
        &west,
        &format!("/w/team-a/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/notes.txt"),
    )
    .await;
    deployment.region("eastus").stop().await;
    gateway.wait_for_primary(None).await;

    let (status, region, experiment) = json(
        http()
            .get(format!("{scoped}/experiments/get?experiment_id={experiment_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, region.as_str()), (200, "westus"), "{experiment}");
    assert_eq!(experiment["experiment"]["name"], "through-the-gateway");
    let downloaded = http().get(&artifact).send().await.unwrap();
    assert_eq!(downloaded.headers()[REGION_HEADER], "westus");
    assert_eq!(downloaded.text().await.unwrap(), "hello through the gateway");
    let (status, region, _) = json(
        http()
            .post(format!("{scoped}/runs/search"))
            .json(&serde_json::json!({"experiment_ids": [experiment_id]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, region.as_str()), (200, "westus"));

    // Writes need the primary: refused, with MLflow's error, after the wait.
    let (status, _, refused) = json(
        http()
            .post(format!("{scoped}/runs/create"))
            .json(&serde_json::json!({"experiment_id": experiment_id}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error_code"], "TEMPORARILY_UNAVAILABLE");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("no primary region is known"),
        "{refused}"
    );

    gateway.stop().await;
    deployment.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_cold_reads_need_the_primary() {
    let mut deployment = LiveDeployment::start(
        &["eastus", "westus"],
        "[classes.tracking]\nlevel = \"hot-cold\"\n[classes.registry]\nlevel = \"hot-warm\"\n",
    )
    .await;
    let mut gateway = gateway(&deployment, Duration::from_millis(600)).await;
    let base = gateway.url.clone();
    let (status, region, _) = json(
        http()
            .get(format!("{base}/api/2.0/mlflow/experiments/get?experiment_id=0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, region.as_str()), (200, "eastus"));
    let placements = gateway.status().await["classes"].clone();
    assert_eq!(placements[0]["class"], "tracking");
    assert_eq!(placements[0]["reads"], "primary only");
    assert_eq!(placements[1]["reads"], "primary, else any healthy region");

    deployment.region("eastus").stop().await;
    gateway.wait_for_primary(None).await;
    let (status, _, refused) = json(
        http()
            .get(format!("{base}/api/2.0/mlflow/experiments/get?experiment_id=0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("this read needs the primary region"),
        "{refused}"
    );
    // The registry is hot-warm: its reads go to the secondary.
    let (status, region, _) = json(
        http()
            .get(format!("{base}/api/2.0/mlflow/registered-models/search"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, region.as_str()), (200, "westus"));

    gateway.stop().await;
    deployment.stop_all().await;
}
