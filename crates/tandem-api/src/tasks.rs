//! The region's background tasks of retention, placed here because they need
//! both the store and the storage: the automatic purge (items past their
//! workspace's retention, only where local writes are accepted — a
//! secondary receives the primary's purges by replication), and the garbage
//! collector that removes purged items' artifacts from this region's
//! storage, draining the store's `gc_queue`; and the abort of direct
//! multipart uploads left open past the storage's
//! `abandoned_uploads_after`.
//!
//! The collector is idempotent (a prefix already gone is fine; the entry is
//! removed only after its prefix is), retries failures with exponential
//! backoff, and resumes after a restart from the queue, which is in the
//! database.

use std::sync::Arc;
use std::time::Duration;

use tandem_artifacts::{ArtifactKey, ArtifactStore};
use tandem_store::MetadataStore;

/// Entries taken from the queue per pass.
const GC_BATCH: i64 = 100;
/// How often, at most, direct uploads open past the storage's
/// `abandoned_uploads_after` are looked for (a quarter of that age when it
/// is shorter).
const ABANDONED_UPLOADS_SWEEP: Duration = Duration::from_secs(10 * 60);
/// Longest wait before retrying a prefix that failed.
const MAX_BACKOFF_MS: i64 = 10 * 60 * 1000;

/// How often the tasks run.
#[derive(Debug, Clone, Copy)]
pub struct RetentionIntervals {
    pub purge: Duration,
    pub gc: Duration,
}

impl Default for RetentionIntervals {
    fn default() -> Self {
        RetentionIntervals {
            purge: Duration::from_secs(60),
            gc: Duration::from_secs(5),
        }
    }
}

/// Only prefixes of a workspace's artifacts are ever collected: never its
/// files (`workspaces/<id>/files/`, kept for salvage) nor anything else.
fn collectable(prefix: &str) -> Option<ArtifactKey> {
    let rest = prefix.strip_prefix("workspaces/")?;
    let (workspace_id, under) = rest.split_once('/')?;
    if workspace_id.is_empty() || !(under == "artifacts/" || under.starts_with("artifacts/")) {
        return None;
    }
    ArtifactKey::parse(prefix.trim_end_matches('/')).ok()
}

/// Removes what a purged owner left under `prefix`, sparing everything in
/// the artifact root of an owner the workspace still has (a run of an
/// experiment whose location lies inside the purged run's root): ownership
/// is checked now, not only when the purge queued the prefix.
async fn collect(
    store: &dyn MetadataStore,
    artifacts: &ArtifactStore,
    workspace_id: &str,
    prefix: &str,
    key: &ArtifactKey,
) -> Result<u64, String> {
    let base = format!("workspaces/{workspace_id}/artifacts/");
    let under = prefix.strip_prefix(&base).unwrap_or_default();
    let protected = if under.is_empty() {
        Vec::new()
    } else {
        store
            .protected_artifact_roots(workspace_id, under)
            .await
            .map_err(|error| error.to_string())?
    };
    if protected.is_empty() {
        return artifacts
            .delete_prefix(key)
            .await
            .map_err(|error| error.to_string());
    }
    let listing = artifacts
        .list_recursive(Some(key))
        .await
        .map_err(|error| error.to_string())?;
    let mut removed = 0;
    for entry in listing.iter().filter(|entry| !entry.is_dir) {
        let Some(path) = entry.path.strip_prefix(&base) else {
            continue;
        };
        if protected
            .iter()
            .any(|root| path == root || path.starts_with(&format!("{root}/")))
        {
            continue;
        }
        let object = ArtifactKey::parse(&entry.path).map_err(|error| error.to_string())?;
        artifacts
            .delete(&object)
            .await
            .map_err(|error| error.to_string())?;
        removed += 1;
    }
    tracing::warn!(
        prefix,
        protected = ?protected,
        "collected a purged root around artifacts other owners still hold"
    );
    metrics::counter!("tandem_gc_prefixes_total", "outcome" => "spared_live_owners").increment(1);
    Ok(removed)
}

/// One pass of the collector: removes every due prefix; returns how many
/// entries were completed.
pub async fn collect_garbage(store: &dyn MetadataStore, artifacts: &ArtifactStore) -> usize {
    let entries = match store.gc_due(GC_BATCH).await {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(%error, "cannot read the garbage-collection queue");
            return 0;
        }
    };
    if entries.is_empty() {
        return 0;
    }
    // Alone: a move copying into a prefix checked ownerless here would
    // lose what it copied (see `tandem_store::ArtifactFence`).
    let _fence = match store.artifact_fence(true).await {
        Ok(fence) => fence,
        Err(error) => {
            tracing::warn!(%error, "cannot fence garbage collection off from moves; will retry");
            return 0;
        }
    };
    let mut done = 0;
    for entry in entries {
        let Some(key) = collectable(&entry.prefix) else {
            // Never delete what is not a workspace's artifacts; drop the entry.
            tracing::error!(prefix = %entry.prefix, "refusing to collect a prefix outside a workspace's artifacts");
            let _ = store.gc_done(&entry.prefix).await;
            continue;
        };
        match collect(store, artifacts, &entry.workspace_id, &entry.prefix, &key).await {
            Ok(removed) => {
                tracing::info!(prefix = %entry.prefix, removed, "collected purged artifacts");
                metrics::counter!("tandem_gc_prefixes_total", "outcome" => "deleted").increment(1);
                match store.gc_done(&entry.prefix).await {
                    Ok(()) => done += 1,
                    Err(error) => {
                        tracing::warn!(prefix = %entry.prefix, %error, "cannot update the gc queue")
                    }
                }
            }
            Err(error) => {
                let backoff = (1000_i64 << entry.attempts.clamp(0, 20)).min(MAX_BACKOFF_MS);
                tracing::warn!(prefix = %entry.prefix, attempts = entry.attempts + 1, %error, "garbage collection failed; will retry");
                metrics::counter!("tandem_gc_prefixes_total", "outcome" => "failed").increment(1);
                let _ = store.gc_failed(&entry.prefix, &error.to_string(), backoff).await;
            }
        }
    }
    done
}

/// How often the query planner's statistics are checked for tables that
/// grew (SQLite; PostgreSQL's autovacuum keeps its own).
const STATISTICS_CHECK: Duration = Duration::from_secs(10);

/// Runs the automatic purge and the collector until `stop` resolves.
pub async fn run(
    store: Arc<dyn MetadataStore>,
    artifacts: ArtifactStore,
    intervals: RetentionIntervals,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut purge = tokio::time::interval(intervals.purge);
    let mut gc = tokio::time::interval(intervals.gc);
    // Direct uploads whose client went away (see `multipart`).
    let sweep =
        (artifacts.abandoned_uploads_after() / 4).clamp(Duration::from_millis(100), ABANDONED_UPLOADS_SWEEP);
    let mut abandoned = tokio::time::interval(sweep);
    // Tables grow between restarts and within minutes (an import, a sweep
    // of runs); their statistics must follow, or SQLite plans a query on a
    // table it measured nearly empty as a scan of it. Checking is cheap
    // when nothing grew much (`refresh_planner_statistics`).
    let mut statistics = tokio::time::interval(STATISTICS_CHECK);
    statistics.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    abandoned.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Of the processes sharing the region's database, one purges and
    // collects (each aborts its own abandoned uploads: they are kept in
    // its memory).
    let mut duties = store.duties();
    metrics::gauge!("tandem_region_duties_held").set(f64::from(u8::from(duties.held())));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            // Taken over (or taken at start-up, a moment after the first
            // ticks): the duties run at once, not an interval later.
            _ = duties.changed() => {
                metrics::gauge!("tandem_region_duties_held").set(f64::from(u8::from(duties.held())));
                if duties.held() {
                    purge.reset_immediately();
                    gc.reset_immediately();
                }
            }
            _ = purge.tick() => {
                if !duties.held() {
                    continue;
                }
                metrics::counter!("tandem_region_duty_runs_total", "duty" => "purge").increment(1);
                match store.purge_expired().await {
                    Ok(report) => {
                        metrics::counter!("tandem_purged_total", "kind" => "workspace").increment(report.workspaces as u64);
                        metrics::counter!("tandem_purged_total", "kind" => "item").increment(report.items as u64);
                    }
                    Err(error) => tracing::warn!(%error, "automatic purge failed; will retry"),
                }
                // Collect at once what the purge queued.
                collect_garbage(store.as_ref(), &artifacts).await;
            }
            _ = statistics.tick() => {
                if !duties.held() {
                    continue;
                }
                if let Err(error) = store.refresh_planner_statistics().await {
                    tracing::warn!(%error, "refreshing the query planner's statistics failed; will retry");
                }
            }
            _ = gc.tick() => {
                if !duties.held() {
                    continue;
                }
                metrics::counter!("tandem_region_duty_runs_total", "duty" => "gc").increment(1);
                collect_garbage(store.as_ref(), &artifacts).await;
            }
            _ = abandoned.tick() => {
                let aborted = artifacts.abort_expired_direct_uploads().await;
                if aborted > 0 {
                    tracing::info!(aborted, "aborted abandoned direct uploads");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::collectable;

    #[test]
    fn only_artifacts_of_a_workspace_are_collectable() {
        assert!(collectable("workspaces/w1/artifacts/").is_some());
        assert!(collectable("workspaces/w1/artifacts/0/abc/artifacts/").is_some());
        for refused in [
            "workspaces/w1/files/",
            "workspaces/w1/",
            "workspaces//artifacts/",
            "quarantine/x/",
            "workspaces/w1/artifactsX/",
            "workspaces/w1/artifacts/../files/",
        ] {
            assert!(collectable(refused).is_none(), "{refused}");
        }
    }
}
