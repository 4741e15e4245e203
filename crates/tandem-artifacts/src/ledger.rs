//! Where a store keeps the direct uploads it created and that are still
//! open. Only these may be completed or aborted: an upload id the store did
//! not create for that key is refused, and taking an entry is what lets
//! exactly one of two concurrent completions proceed.
//!
//! By default the ledger is this process's memory ([`MemoryLedger`]): an
//! entry lives for minutes to hours, and neither the journal nor the other
//! regions have any use for it; after a restart the open uploads are
//! forgotten (their parts stay in the bucket until a lifecycle rule removes
//! them on S3; Azure discards uncommitted blocks after 7 days). The replicas
//! of a region that share a database share a ledger there instead (the
//! server wires the metadata store's), so an upload created through one
//! replica is completed through any other.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// The open direct uploads, by storage key and upload id. Errors are the
/// ledger's own failures (its database), as text.
#[async_trait]
pub trait UploadLedger: Send + Sync + std::fmt::Debug {
    /// Records an upload as open, with the number of parts it was created with.
    async fn open(&self, key: &str, upload_id: &str, num_parts: u32) -> Result<(), String>;
    /// Removes an open upload and returns its number of parts; None when it
    /// is not open (never created here, or completed, aborted or expired).
    async fn take(&self, key: &str, upload_id: &str) -> Result<Option<u32>, String>;
    /// The uploads opened more than `max_age` ago: (key, upload id).
    async fn opened_before(&self, max_age: Duration) -> Result<Vec<(String, String)>, String>;
    /// How many uploads are open.
    async fn count(&self) -> Result<usize, String>;
}

/// The ledger of one process, in memory.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    open: std::sync::Mutex<HashMap<(String, String), (u32, Instant)>>,
}

impl MemoryLedger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (u32, Instant)>> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl UploadLedger for MemoryLedger {
    async fn open(&self, key: &str, upload_id: &str, num_parts: u32) -> Result<(), String> {
        self.lock().insert(
            (key.to_string(), upload_id.to_string()),
            (num_parts, Instant::now()),
        );
        Ok(())
    }

    async fn take(&self, key: &str, upload_id: &str) -> Result<Option<u32>, String> {
        Ok(self
            .lock()
            .remove(&(key.to_string(), upload_id.to_string()))
            .map(|(parts, _)| parts))
    }

    async fn opened_before(&self, max_age: Duration) -> Result<Vec<(String, String)>, String> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, (_, created))| created.elapsed() > max_age)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn count(&self) -> Result<usize, String> {
        Ok(self.lock().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn an_open_upload_is_taken_once() {
        let ledger = MemoryLedger::default();
        ledger.open("a/b", "u1", 3).await.unwrap();
        assert_eq!(ledger.count().await.unwrap(), 1);
        assert_eq!(ledger.take("a/b", "u2").await.unwrap(), None);
        assert_eq!(ledger.take("a/c", "u1").await.unwrap(), None);
        assert_eq!(ledger.take("a/b", "u1").await.unwrap(), Some(3));
        assert_eq!(ledger.take("a/b", "u1").await.unwrap(), None);
        ledger.open("a/b", "u3", 1).await.unwrap();
        assert!(ledger
            .opened_before(Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            ledger.opened_before(Duration::ZERO).await.unwrap(),
            vec![("a/b".to_string(), "u3".to_string())]
        );
    }
}
