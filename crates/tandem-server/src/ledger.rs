//! The open direct uploads of a region whose replicas share a PostgreSQL
//! database, kept there: an upload created through one replica is completed
//! (or aborted, or found abandoned) through any other, and exactly one of
//! two concurrent completions gets it (`tandem_artifacts::UploadLedger`).

use std::sync::Arc;
use std::time::Duration;

use tandem_artifacts::UploadLedger;
use tandem_store::MetadataStore;

pub(crate) struct StoreLedger(pub Arc<dyn MetadataStore>);

impl std::fmt::Debug for StoreLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLedger")
    }
}

#[async_trait::async_trait]
impl UploadLedger for StoreLedger {
    async fn open(&self, key: &str, upload_id: &str, num_parts: u32) -> Result<(), String> {
        self.0
            .open_direct_upload(key, upload_id, num_parts)
            .await
            .map_err(|error| error.to_string())
    }

    async fn take(&self, key: &str, upload_id: &str) -> Result<Option<u32>, String> {
        self.0
            .take_direct_upload(key, upload_id)
            .await
            .map_err(|error| error.to_string())
    }

    async fn opened_before(&self, max_age: Duration) -> Result<Vec<(String, String)>, String> {
        self.0
            .direct_uploads_opened_before(max_age.as_millis().min(i64::MAX as u128) as i64)
            .await
            .map_err(|error| error.to_string())
    }

    async fn count(&self) -> Result<usize, String> {
        self.0
            .direct_uploads_open()
            .await
            .map_err(|error| error.to_string())
    }
}
