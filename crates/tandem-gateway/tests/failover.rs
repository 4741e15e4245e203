//! The gateway's retry rules at the moments that matter: the primary changes
//! under it, a region stops answering, a connection breaks after a write was
//! sent, a streamed body was already read. Regions are stubs here because
//! real ones cannot change leadership yet; the routing and retrying under
//! test are the gateway's own.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use support::{http, stub_deployment, Mode, RunningGateway, StubRegion};
use tandem_gateway::{GatewayConfig, REGION_HEADER};

const HOT_WARM: &str = "[classes.tracking]\nlevel = \"hot-warm\"\n";

/// A gateway that observes the regions once at start and then only when a
/// request fails, so a test controls exactly when its view is stale.
async fn gateway(regions: &[&StubRegion], failover_wait: Duration) -> RunningGateway {
    let mut config = GatewayConfig::new(stub_deployment(regions, HOT_WARM));
    config.poll_interval = Duration::from_secs(3600);
    config.failover_wait = failover_wait;
    let gateway = RunningGateway::start(config).await;
    gateway.wait_for_primary(Some(&regions[0].name)).await;
    gateway
}

fn streamed_body(bytes: usize) -> reqwest::Body {
    let chunks = bytes / (64 * 1024);
    reqwest::Body::wrap_stream(
        futures::stream::iter(0..chunks)
            .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 64 * 1024]))),
    )
}

#[tokio::test]
async fn a_write_refused_as_not_primary_goes_to_the_new_primary() {
    let east = StubRegion::start("eastus", "primary", 1, "eastus").await;
    let west = StubRegion::start("westus", "secondary", 1, "eastus").await;
    let gateway = gateway(&[&east, &west], Duration::from_secs(10)).await;

    // Leadership moves; the gateway's view still names eastus.
    east.set_role("secondary", 1, "westus");
    west.set_role("primary", 2, "westus");
    let request = serde_json::json!({"experiment_id": "0"});
    let response = http()
        .post(format!("{}/api/2.0/mlflow/runs/create", gateway.url))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[REGION_HEADER], "westus");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["served_by"], "westus");
    assert_eq!(answer["body_len"], request.to_string().len());
    // Refused once (certainly not applied), applied once.
    assert_eq!(east.received().len(), 1);
    assert_eq!(west.received().len(), 1);
    gateway.wait_for_primary(Some("westus")).await;
}

#[tokio::test]
async fn requests_to_a_primary_that_stopped_answering_wait_for_the_next_one() {
    let east = StubRegion::start("eastus", "primary", 1, "eastus").await;
    let west = StubRegion::start("westus", "secondary", 1, "eastus").await;
    let gateway = gateway(&[&east, &west], Duration::from_secs(10)).await;

    east.stop().await;
    // The new primary is elected a moment later.
    let west = Arc::new(west);
    let promoted = west.clone();
    tokio::spawn(async move {
        // The delay is the scenario, not a wait on the test's part: the
        // write must already be waiting when the new primary appears.
        tokio::time::sleep(Duration::from_millis(700)).await;
        promoted.set_role("primary", 2, "westus");
    });
    let started = Instant::now();
    // A write: the connection to eastus is refused, so nothing was sent and
    // it may go to the next primary once there is one.
    let response = http()
        .post(format!("{}/api/2.0/mlflow/runs/create", gateway.url))
        .json(&serde_json::json!({"experiment_id": "0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert!(started.elapsed() >= Duration::from_millis(600));
    // A streamed upload too: its body was never read by eastus.
    let response = http()
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/big.bin",
            gateway.url
        ))
        .body(streamed_body(3 * 1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["served_by"], "westus");
    assert_eq!(answer["body_len"], 3 * 1024 * 1024);
    assert_eq!(west.received().len(), 2);
    assert!(east.received().is_empty());
}

#[tokio::test]
async fn reads_are_retried_after_a_broken_connection_and_writes_are_not() {
    let east = StubRegion::start("eastus", "primary", 1, "eastus").await;
    let west = StubRegion::start("westus", "secondary", 1, "eastus").await;
    let gateway = gateway(&[&east, &west], Duration::from_secs(10)).await;
    east.set_mode(Mode::Break);

    // The write may have been applied before the connection broke: the
    // gateway says so and does not send it again.
    let response = http()
        .post(format!("{}/api/2.0/mlflow/runs/log-metric", gateway.url))
        .json(&serde_json::json!({"run_id": "r", "key": "k", "value": 1, "timestamp": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error_code"], "TEMPORARILY_UNAVAILABLE");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("may or may not have been applied"),
        "{error}"
    );
    assert_eq!(east.received().len(), 1);
    assert!(west.received().is_empty());

    // A read (here MLflow's POST search) is sent again; eastus recovers.
    let east = Arc::new(east);
    let recovering = east.clone();
    tokio::spawn(async move {
        // The scenario: the region recovers while the read is being retried.
        tokio::time::sleep(Duration::from_millis(300)).await;
        recovering.set_mode(Mode::Serve);
    });
    let response = http()
        .post(format!("{}/api/2.0/mlflow/runs/search", gateway.url))
        .json(&serde_json::json!({"experiment_ids": ["0"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    // Either the secondary served it meanwhile (hot-warm reads may) or the
    // recovered primary did; never an error.
    assert!(
        answer["served_by"] == "eastus" || answer["served_by"] == "westus",
        "{answer}"
    );
}

#[tokio::test]
async fn a_streamed_body_already_read_is_not_sent_again() {
    let east = StubRegion::start("eastus", "primary", 1, "eastus").await;
    let west = StubRegion::start("westus", "secondary", 1, "eastus").await;
    let gateway = gateway(&[&east, &west], Duration::from_secs(10)).await;

    // eastus was demoted but the gateway does not know yet; it reads the
    // whole upload, then refuses it.
    east.set_role("secondary", 1, "westus");
    west.set_role("primary", 2, "westus");
    let response = http()
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/big.bin",
            gateway.url
        ))
        .body(streamed_body(2 * 1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error_code"], "TEMPORARILY_UNAVAILABLE");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("cannot send it again"), "{message}");
    assert!(message.contains("not the primary"), "{message}");
    assert_eq!(east.received()[0].body_len, 2 * 1024 * 1024);
    assert!(west.received().is_empty());

    // A small upload with a declared length is buffered, so it follows the
    // primary.
    let response = http()
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/small.txt",
            gateway.url
        ))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[REGION_HEADER], "westus");
}

#[tokio::test]
async fn unavailable_answers_are_retried_for_reads_and_returned_for_writes() {
    let east = StubRegion::start("eastus", "primary", 1, "eastus").await;
    let west = StubRegion::start("westus", "secondary", 1, "eastus").await;
    let gateway = gateway(&[&east, &west], Duration::from_secs(10)).await;
    east.set_mode(Mode::Unavailable);

    let response = http()
        .post(format!("{}/api/2.0/mlflow/runs/create", gateway.url))
        .json(&serde_json::json!({"experiment_id": "0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let error: serde_json::Value = response.json().await.unwrap();
    assert!(error["message"].as_str().unwrap().contains("max_rpo"), "{error}");
    assert_eq!(east.received().len(), 1, "a write answered 503 is not sent again");

    let east = Arc::new(east);
    let recovering = east.clone();
    tokio::spawn(async move {
        // The scenario: the region recovers while the read is being retried.
        tokio::time::sleep(Duration::from_millis(400)).await;
        recovering.set_mode(Mode::Serve);
    });
    let response = http()
        .get(format!(
            "{}/api/2.0/mlflow/experiments/get?experiment_id=0",
            gateway.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[REGION_HEADER], "eastus");
    assert!(
        east.received().len() >= 3,
        "the read was retried until eastus served it"
    );
}

#[tokio::test]
async fn without_a_primary_writes_are_refused_after_the_failover_wait() {
    let east = StubRegion::start("eastus", "primary", 1, "eastus").await;
    let west = StubRegion::start("westus", "secondary", 1, "eastus").await;
    let gateway = gateway(&[&east, &west], Duration::from_millis(800)).await;
    east.stop().await;

    let started = Instant::now();
    let response = http()
        .post(format!("{}/api/2.0/mlflow/experiments/create", gateway.url))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error_code"], "TEMPORARILY_UNAVAILABLE");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("no primary region is known"), "{message}");
    assert!(message.contains("eastus unreachable"), "{message}");
    assert!(waited >= Duration::from_millis(500), "waited {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert!(
        west.received().is_empty(),
        "hot-warm writes never go to a secondary"
    );

    // Reads of a hot-warm class are served by the secondary meanwhile.
    let response = http()
        .get(format!(
            "{}/api/2.0/mlflow/experiments/get?experiment_id=0",
            gateway.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[REGION_HEADER], "westus");

    let status = gateway.status().await;
    assert_eq!(status["primary"], serde_json::Value::Null);
    assert_eq!(status["regions"][0]["healthy"], false);
    assert_eq!(status["regions"][1]["healthy"], true);
}

#[tokio::test]
async fn a_region_that_answers_but_is_not_ready_receives_no_requests() {
    let east = StubRegion::start("eastus", "primary", 1, "eastus").await;
    let west = StubRegion::start("westus", "secondary", 1, "eastus").await;
    west.set_ready(false);
    let mut config = GatewayConfig::new(stub_deployment(&[&east, &west], HOT_WARM));
    config.poll_interval = Duration::from_millis(50);
    config.failover_wait = Duration::from_secs(1);
    let gateway = RunningGateway::start(config).await;
    gateway.wait_for_primary(Some("eastus")).await;
    let ready = http().get(format!("{}/ready", gateway.url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let status = gateway.status().await;
    assert_eq!(status["regions"][1]["healthy"], false);
    assert_eq!(status["regions"][1]["ready"], false);
    let reason = status["regions"][1]["error"].as_str().unwrap();
    assert!(
        reason.contains("not ready: caught_up: catching up with 'eastus'"),
        "{reason}"
    );

    // The primary stops; the secondary answers but is not ready: a read
    // that could go to any healthy region finds none.
    east.stop().await;
    gateway.wait_for_primary(None).await;
    let response = http()
        .get(format!(
            "{}/api/2.0/mlflow/experiments/get?experiment_id=0",
            gateway.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        west.received().is_empty(),
        "nothing goes to a region that is not ready"
    );
    let ready = http().get(format!("{}/ready", gateway.url)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("no primary region is known"), "{message}");
    assert!(message.contains("westus secondary (not ready"), "{message}");

    // Once it is ready, it serves the read.
    west.set_ready(true);
    let response = http()
        .get(format!(
            "{}/api/2.0/mlflow/experiments/get?experiment_id=0",
            gateway.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[REGION_HEADER], "westus");
}

#[tokio::test]
async fn shutting_down_answers_requests_waiting_for_a_primary_at_once() {
    let east = StubRegion::start("eastus", "primary", 1, "eastus").await;
    let west = StubRegion::start("westus", "secondary", 1, "eastus").await;
    let mut gateway = gateway(&[&east, &west], Duration::from_secs(60)).await;
    east.stop().await;
    let url = gateway.url.clone();
    let waiting = tokio::spawn(async move {
        http()
            .post(format!("{url}/api/2.0/mlflow/runs/create"))
            .json(&serde_json::json!({"experiment_id": "0"}))
            .send()
            .await
            .unwrap()
    });
    // The write is waiting out the failover once the gateway has found
    // eastus gone (it marks the region unreachable on the refused connection).
    for _ in 0..200 {
        if gateway.status().await["regions"][0]["healthy"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!waiting.is_finished(), "the write waits for a primary");

    let stopping = Instant::now();
    gateway.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(2), "the gateway took {took:?} to stop");
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "TEMPORARILY_UNAVAILABLE");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("shutting down"), "{message}");
    assert!(west.received().is_empty(), "a write never goes to a secondary");
}
