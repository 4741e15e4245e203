//! Artifacts stream through the gateway: 512 MiB uploaded and downloaded
//! through it (to a real region in the same process) raise the process's
//! peak RSS by far less than the artifact's size, and come back intact.
//! Its own test binary, so no other test's memory counts.

mod support;

use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use support::{http, LiveDeployment, RunningGateway};
use tandem_gateway::{GatewayConfig, REGION_HEADER};

const SIZE: u64 = 512 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The `index`-th chunk of a deterministic pseudo-random payload.
fn chunk(index: u64) -> bytes::Bytes {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = vec![0u8; CHUNK];
    for word in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
    }
    bytes::Bytes::from(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_gigabyte_streams_through_the_gateway_in_bounded_memory() {
    let mut deployment = LiveDeployment::start(&["eastus"], "").await;
    let mut config = GatewayConfig::new(deployment.deployment.clone());
    config.poll_interval = Duration::from_millis(200);
    let mut gateway = RunningGateway::start(config).await;
    gateway.wait_for_primary(Some("eastus")).await;
    let base = gateway.url.clone();
    let http = http();
    let run: serde_json::Value = http
        .post(format!("{base}/api/2.0/mlflow/runs/create"))
        .json(&serde_json::json!({"experiment_id": "0"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let url = format!("{base}/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/big.bin");

    let chunks = SIZE / CHUNK as u64;
    let mut expected = Sha256::new();
    for index in 0..chunks {
        expected.update(chunk(index));
    }
    let expected = hex::encode(expected.finalize());
    let baseline = peak_rss_bytes();

    // Upload with a declared length (as the mlflow client sends files), so
    // the gateway sees a body far above what it buffers.
    let body = futures::stream::iter(0..chunks).map(|index| Ok::<_, std::io::Error>(chunk(index)));
    let response = http
        .put(&url)
        .header("content-length", SIZE.to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "upload: {}",
        response.text().await.unwrap()
    );

    let response = http.get(&url).send().await.unwrap();
    assert!(response.status().is_success());
    assert_eq!(response.headers()[REGION_HEADER], "eastus");
    assert_eq!(response.content_length(), Some(SIZE));
    let mut stream = response.bytes_stream();
    let mut received = 0u64;
    let mut digest = Sha256::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        received += piece.len() as u64;
        digest.update(&piece);
    }
    assert_eq!(received, SIZE);
    assert_eq!(hex::encode(digest.finalize()), expected);

    let growth = peak_rss_bytes().saturating_sub(baseline);
    eprintln!("peak RSS growth: {} MiB", growth / (1024 * 1024));
    assert!(
        growth < 96 * 1024 * 1024,
        "peak RSS grew by {} MiB for a 512 MiB round trip through the gateway",
        growth / (1024 * 1024)
    );

    gateway.stop().await;
    deployment.stop_all().await;
}
