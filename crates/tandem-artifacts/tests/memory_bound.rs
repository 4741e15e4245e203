//! Uploads and downloads stream: a 256 MiB body, generated lazily and never held whole, goes
//! into a local store and back out while the process's peak RSS grows by far less than the
//! body. Its own test binary (so its own process), because the peak is process-wide.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tandem_artifacts::{ArtifactKey, ArtifactStore};

const MIB: usize = 1024 * 1024;
const TOTAL: usize = 256 * MIB;
const CHUNK: usize = MIB;
const ALLOWED_GROWTH: u64 = 64 * MIB as u64;

/// Peak resident set size of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Chunk `i` of the body: a shared random block with the chunk number stamped in, so every
/// chunk differs but making one costs a memcpy (the test runs unoptimised).
fn chunk(block: &[u8], i: usize) -> Bytes {
    let mut data = block.to_vec();
    data[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Bytes::from(data)
}

fn random_block() -> Vec<u8> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_256_mib_stays_within_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(tmp.path()).unwrap();
    let store = ArtifactStore::open(url.as_str(), &HashMap::new()).unwrap();
    let key = ArtifactKey::parse("big/model.bin").unwrap();
    let block = random_block();

    // Expected digest from a separate pass over the same generator, before measuring.
    let mut expected = Sha256::new();
    for i in 0..TOTAL / CHUNK {
        expected.update(chunk(&block, i));
    }
    let expected = hex::encode(expected.finalize());

    // Reset the peak to the current RSS (Linux >= 4.0); if that is not allowed, the peak so
    // far is only the small setup above, which still leaves the check meaningful.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss();
    let started = Instant::now();

    let body = futures::stream::iter(0..TOTAL / CHUNK).map(|i| Ok(chunk(&block, i)));
    let outcome = store.put_stream(&key, body, None).await.unwrap();
    let put_time = started.elapsed();
    assert_eq!(outcome.size, TOTAL as u64);
    assert_eq!(outcome.sha256, expected);

    let (size, mut stream) = store.get_stream(&key).await.unwrap();
    assert_eq!(size, TOTAL as u64);
    let mut read_back = Sha256::new();
    let mut read_len = 0usize;
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        read_len += piece.len();
        read_back.update(&piece);
    }
    let after = peak_rss();
    let growth = after.saturating_sub(before);
    eprintln!(
        "256 MiB: put in {put_time:?}, put+get in {:?}; peak RSS {} MiB -> {} MiB (+{} MiB)",
        started.elapsed(),
        before / MIB as u64,
        after / MIB as u64,
        growth / MIB as u64
    );

    assert_eq!(read_len, TOTAL);
    assert_eq!(hex::encode(read_back.finalize()), expected);
    assert_eq!(
        std::fs::metadata(tmp.path().join("big/model.bin")).unwrap().len(),
        TOTAL as u64
    );
    assert!(
        growth < ALLOWED_GROWTH,
        "peak RSS grew by {} MiB while streaming 256 MiB (limit {} MiB)",
        growth / MIB as u64,
        ALLOWED_GROWTH / MIB as u64
    );
}
