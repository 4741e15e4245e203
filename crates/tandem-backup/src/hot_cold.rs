//! `hot-cold` classes at failover: they are not replicated continuously, so
//! a region that becomes primary after another one restores them from that
//! region's journal archive (and the artifact bytes archived with it) before
//! it serves them. Meanwhile the region refuses their reads and writes with
//! 503 ([`PromotionHook::restores`]).
//!
//! Every change of those classes the archive holds and this region lacks is
//! applied, in archive order, with its origin kept. The new epoch's fork
//! counts only what this region had journaled, so when the old primary
//! returns it lists those changes in its divergence quarantine although the
//! new primary holds them (known limit: applying one from there again is
//! harmless, it is recognised by origin). At an unplanned failover what the
//! old primary wrote after its last archived segment is lost: the archive
//! interval is those classes' RPO. A planned failover archives the old
//! primary's journal to its end before handing over, and loses nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use futures::StreamExt;
use tandem_artifacts::{workspace_content_key, ArtifactStore};
use tandem_core::journal::{AssetClass, WrittenContent};
use tandem_replication::{PromotionHook, Region};
use tandem_store::MetadataStore;

use crate::archive::archive_until;
use crate::format::blob_key;
use crate::repo::Repository;
use crate::restore::{RecordSelection, RestorePoint};

pub struct HotColdRestore {
    pub store: Arc<dyn MetadataStore>,
    pub storage: ArtifactStore,
    /// The backup repository every region archives its journal to.
    pub url: String,
    pub classes: BTreeSet<AssetClass>,
    /// Weak: the region owns its hooks.
    pub region: Weak<Region>,
}

#[async_trait]
impl PromotionHook for HotColdRestore {
    fn restores(&self) -> Vec<AssetClass> {
        self.classes.iter().copied().collect()
    }

    /// A planned failover archives this region's journal up to its last
    /// record first: the new primary restores the hot-cold classes from the
    /// archive, so nothing of them is lost (an unplanned one loses what the
    /// archive interval had not archived yet).
    async fn before_handover(&self, head: i64) -> Result<(), String> {
        let region = self.region.upgrade().ok_or("the region is shutting down")?;
        let repo = Repository::open(&self.url).map_err(|error| error.to_string())?;
        let outcome = archive_until(
            self.store.as_ref(),
            &self.storage,
            &repo,
            &region.name,
            head,
            &crate::no_progress,
        )
        .await
        .map_err(|error| format!("archiving the journal before handing over: {error}"))?;
        if outcome.archived_to < head {
            return Err(format!(
                "the journal archive ends at {} after archiving, not at the head {head}",
                outcome.archived_to
            ));
        }
        tracing::info!(region = %region.name, head, segments = outcome.segments, "archived the journal before handing over");
        Ok(())
    }

    async fn promoted(&self, epoch: i64, previous: Option<&str>) {
        if let Some(previous) = previous {
            match self.restore_from(previous).await {
                Ok(restored) => tracing::warn!(
                    from = previous,
                    epoch,
                    restored,
                    classes = ?self.classes,
                    "restored the hot-cold classes from the journal archive"
                ),
                Err(error) => tracing::error!(
                    from = previous,
                    epoch,
                    %error,
                    "could not restore the hot-cold classes from the journal archive; serving what this region holds"
                ),
            }
        }
        if let Some(region) = self.region.upgrade() {
            for class in &self.classes {
                region.finish_restoring(*class);
            }
        }
    }
}

impl HotColdRestore {
    async fn restore_from(&self, previous: &str) -> Result<i64, String> {
        let selection = RecordSelection::open(
            &self.url,
            &HashMap::new(),
            RestorePoint::Latest,
            Some(previous.to_string()),
        )
        .await
        .map_err(|error| error.to_string())?;
        let repo = Repository::open(&self.url).map_err(|error| error.to_string())?;
        let mut restored = 0;
        // One record at a time: the archive may hold millions of them.
        let mut records = selection.cursor(None);
        while let Some(record) = records.next().await.map_err(|error| error.to_string())? {
            let class = record.change.asset_class();
            if !class.is_some_and(|class| self.classes.contains(&class)) {
                continue;
            }
            if self
                .store
                .knows_change(&record.origin_region, record.origin_seq)
                .await
                .map_err(|error| error.to_string())?
            {
                continue;
            }
            if let Some(content) = record.change.written_content() {
                self.copy_in(&repo, &record.workspace_id, content).await?;
            } else if let Some((area, path)) = record.change.deleted_content() {
                let target = workspace_content_key(&record.workspace_id, area.as_str(), path)
                    .map_err(|error| error.to_string())?;
                self.storage
                    .delete_path(&target)
                    .await
                    .map_err(|error| error.to_string())?;
            }
            if self
                .store
                .apply_archived(&record)
                .await
                .map_err(|error| error.to_string())?
            {
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// Puts an archived artifact's or file's bytes where the record says
    /// they are, verified against the record's digest.
    async fn copy_in(
        &self,
        repo: &Repository,
        workspace_id: &str,
        content: WrittenContent<'_>,
    ) -> Result<(), String> {
        let (path, sha256) = (content.path, content.sha256);
        let source = repo.key(&blob_key(sha256)).map_err(|error| error.to_string())?;
        let (_, stream) = repo
            .storage()
            .get_stream(&source)
            .await
            .map_err(|error| format!("{path} ({sha256}) is not in the archive: {error}"))?;
        let target = workspace_content_key(workspace_id, content.area.as_str(), path)
            .map_err(|error| error.to_string())?;
        let body = Box::pin(stream.map(|chunk| chunk.map_err(std::io::Error::other)));
        let written = self
            .storage
            .put_stream(&target, body, None)
            .await
            .map_err(|error| error.to_string())?;
        if written.sha256 != sha256 || written.size as i64 != content.size {
            let _ = self.storage.delete(&target).await;
            return Err(format!("archived {path} does not match its digest {sha256}"));
        }
        Ok(())
    }
}
