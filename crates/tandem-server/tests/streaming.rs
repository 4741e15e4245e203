//! Artifacts stream through a real server in bounded memory: a 1 GiB upload
//! and download through `tandem server` raise the process's peak RSS by far
//! less than the artifact's size, and the bytes and digest come back intact.

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tandem_server::ServerConfig;

const SIZE: u64 = 1024 * 1024 * 1024;
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
async fn a_gigabyte_streams_through_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data: Some(dir.path().to_path_buf()),
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tandem_server::serve(config, listener, async {
        let _ = stopped.await;
    }));
    let base = format!("http://{address}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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

    let baseline = peak_rss_bytes();
    let chunks = SIZE / CHUNK as u64;
    let mut expected = Sha256::new();
    for index in 0..chunks {
        expected.update(chunk(index));
    }
    let expected = hex::encode(expected.finalize());
    let body = futures::stream::iter(0..chunks).map(|index| Ok::<_, std::io::Error>(chunk(index)));
    let response = http
        .put(&url)
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
    assert!(
        growth < 128 * 1024 * 1024,
        "peak RSS grew by {} MiB for a 1 GiB round trip",
        growth / (1024 * 1024)
    );

    let journal = http
        .get(format!("{base}/api/tandem/v1/journal?after=0"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let written = journal
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|record| record["change"]["type"] == "artifact_written")
        .expect("the upload was journaled");
    assert_eq!(written["change"]["size"], serde_json::json!(SIZE));
    assert_eq!(written["change"]["sha256"], serde_json::json!(expected));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
