//! The follower's side: follow a source region's journal (the primary's, or
//! with hot-hot classes every other region's), copy artifacts by digest,
//! apply each record exactly once, acknowledge.
//!
//! Exactly once and in order: the position of the source's journal is stored
//! in the same transaction as each applied record, and every (re)connection
//! asks for the records after the stored position. Re-delivered records are
//! skipped by the store. A record's artifact is copied and verified before the
//! record is applied, so a secondary never lists an artifact it cannot serve.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use tandem_core::journal::{Change, JournalRecord, WrittenContent};

use crate::{AbortOnDrop, FollowState, Region};

/// With no record or heartbeat for this long, the stream is presumed dead
/// (the source sends a heartbeat every second).
const SILENCE_LIMIT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One line of the replication stream.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamLine {
    Record(Box<JournalRecord>),
    Heartbeat { head: i64 },
}

fn records_applied(region: &Region, source: &str) -> u64 {
    region
        .follow_states()
        .get(source)
        .map(|state| state.records_applied)
        .unwrap_or(0)
}

/// Follows `source` until the task is dropped, reconnecting with backoff.
pub async fn follow(region: Arc<Region>, source: String) {
    let mut backoff = Duration::from_millis(100);
    // Which of the source's replicas to stream from: the next one after a
    // failure (any of them serves its journal).
    let mut turn = 0;
    loop {
        let before = records_applied(&region, &source);
        if let Err(error) = follow_once(&region, &source, turn).await {
            turn += 1;
            tracing::warn!(region = %region.name, %source, %error, "replication stream interrupted; reconnecting");
            metrics::counter!("tandem_replication_stream_restarts_total", "source" => source.clone())
                .increment(1);
            region.update_follow(&source, |state| {
                state.connected = false;
                state.last_error = Some(error);
            });
        }
        if records_applied(&region, &source) > before {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn source_url(region: &Region, source: &str, turn: usize) -> Result<String, String> {
    let endpoints = region
        .deployment
        .region(source)
        .map(|spec| spec.endpoints())
        .ok_or_else(|| format!("source region '{source}' is not in the deployment"))?;
    Ok(endpoints[turn % endpoints.len()].clone())
}

async fn follow_once(region: &Arc<Region>, source: &str, turn: usize) -> Result<(), String> {
    let url = source_url(region, source, turn)?;
    let position = region
        .store
        .replication_position(source)
        .await
        .map_err(|e| e.to_string())?;
    let request = region
        .http
        .get(format!("{url}/api/tandem/v1/replication/journal"))
        .query(&[("after", position.to_string()), ("region", region.name.clone())]);
    // The source answers at once (the records stream after the headers):
    // a request that gets no answer — a pooled connection something in
    // between dropped — is given up and made again, never waited on forever.
    let response = tokio::time::timeout(SILENCE_LIMIT, region.authorized(request).send())
        .await
        .map_err(|_| {
            format!(
                "{url} did not answer the journal request within {}s",
                SILENCE_LIMIT.as_secs()
            )
        })?
        .map_err(|error| format!("cannot reach {url}: {error}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{url} refused the replication stream ({status}): {body}"));
    }
    tracing::info!(region = %region.name, source = %source, after = position, "following the journal");
    region.update_follow(source, |state| {
        state.connected = true;
        state.last_error = None;
        state.applied = position;
        // Caught up is measured again on every stream, against the head
        // the source reports first.
        state.caught_up = false;
        state.catch_up_target = None;
    });
    let mut stream = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut applied_position = position;
    // Acknowledgements go out from their own task, carrying the latest
    // position: waiting for each one before reading on would cap the apply
    // rate at one batch per round trip to the source.
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(position);
    let acker = tokio::spawn(acknowledge_continuously(region.clone(), url.clone(), applied_rx));
    let _acker = AbortOnDrop(acker);
    loop {
        let chunk = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
            Err(_) => return Err(format!("no data from {url} for {}s", SILENCE_LIMIT.as_secs())),
            Ok(None) => return Err(format!("{url} closed the replication stream")),
            Ok(Some(Err(error))) => return Err(format!("replication stream from {url} broke: {error}")),
            Ok(Some(Ok(chunk))) => chunk,
        };
        pending.extend_from_slice(&chunk);
        let mut advanced = false;
        while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.iter().all(|byte| byte.is_ascii_whitespace()) {
                continue;
            }
            let line: StreamLine = serde_json::from_slice(&line)
                .map_err(|error| format!("undecodable replication line: {error}"))?;
            match line {
                StreamLine::Heartbeat { head } => progress(region, source, |state| {
                    state.source_head = head;
                    state.catch_up_target.get_or_insert(head);
                }),
                StreamLine::Record(record) => {
                    apply(region, source, &url, &record).await?;
                    applied_position = record.seq;
                    advanced = true;
                    progress(region, source, |state| {
                        state.applied = record.seq;
                        state.source_head = state.source_head.max(record.seq);
                        state.records_applied += 1;
                        state.last_applied_recorded_at = Some(record.recorded_at);
                    });
                }
            }
        }
        if advanced {
            applied_tx.send_replace(applied_position);
        }
    }
}

/// Updates what this region knows of following `source`, and notes when it
/// has caught up with the head `source` reported first on this stream.
fn progress(region: &Region, source: &str, update: impl FnOnce(&mut FollowState)) {
    let mut caught_up = false;
    region.update_follow(source, |state| {
        update(state);
        if state
            .catch_up_target
            .is_some_and(|target| state.applied >= target)
        {
            state.caught_up = true;
            caught_up = true;
        }
    });
    if caught_up {
        region.note_caught_up(source);
    }
}

/// Sends the latest applied position whenever it moves, one request at a
/// time; positions that move while a request is in flight are coalesced.
async fn acknowledge_continuously(
    region: Arc<Region>,
    url: String,
    mut applied: tokio::sync::watch::Receiver<i64>,
) {
    while applied.changed().await.is_ok() {
        let position = *applied.borrow_and_update();
        acknowledge(&region, &url, position).await;
    }
}

/// Tells the source how far this region has durably applied. Failures are
/// harmless: the next acknowledgement, or the next stream request, carries
/// the position again.
async fn acknowledge(region: &Region, url: &str, applied: i64) {
    let request = region
        .http
        .post(format!("{url}/api/tandem/v1/replication/ack"))
        .json(&serde_json::json!({ "region": region.name, "applied": applied }));
    // Bounded: the next position waits for this one.
    if let Err(error) = region.authorized(request.timeout(SILENCE_LIMIT)).send().await {
        tracing::debug!(%error, "acknowledgement not delivered");
    }
}

async fn apply(region: &Region, source: &str, url: &str, record: &JournalRecord) -> Result<(), String> {
    let started = std::time::Instant::now();
    let replicate = record
        .change
        .asset_class()
        .map(|class| region.deployment.policy(class).level.replicates_continuously())
        .unwrap_or(true);
    // Bytes are copied only for changes this region has not applied yet: a
    // change of our own coming back, or one that arrived first by another
    // path, must not put older bytes over what a later change wrote.
    let known = record.origin_region == region.name
        || region
            .store
            .knows_change(&record.origin_region, record.origin_seq)
            .await
            .map_err(|error| format!("cannot check record {} from {source}: {error}", record.seq))?;
    if replicate && !known {
        if let Some(content) = record.change.written_content() {
            copy_content(region, source, url, &record.workspace_id, content).await?;
        } else if let Some((area, path)) = record.change.deleted_content() {
            let key = crate::content::storage_key(&record.workspace_id, area, path)?;
            region
                .artifacts
                .delete_path(&key)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let _gate = region.apply_gate.read().await;
    if !region.sources().iter().any(|followed| followed == source) {
        // A failover made this region stop following the source.
        return Err(format!("no longer following {source}"));
    }
    region
        .store
        .apply_replicated(source, record, replicate)
        .await
        .map_err(|error| format!("cannot apply record {} from {source}: {error}", record.seq))?;
    drop(_gate);
    let source_label = source.to_string();
    metrics::counter!("tandem_replication_records_applied_total", "source" => source_label.clone())
        .increment(1);
    metrics::histogram!("tandem_replication_apply_seconds", "source" => source_label)
        .record(started.elapsed().as_secs_f64());
    if matches!(record.change, Change::EpochBegan { .. }) || record.change.written_content().is_some() {
        // A new epoch may have voided artifact writes, and an artifact write
        // may have arrived fenced: their bytes leave the visible paths.
        crate::quarantine::keep_pending_bytes(region).await;
    }
    Ok(())
}

/// Copies one artifact or file from the source's storage into ours,
/// verifying its size and digest. If the source has since overwritten or
/// deleted it, the content this record describes no longer exists anywhere;
/// the later record that replaced it carries the bytes, so nothing is copied
/// now.
pub(crate) async fn copy_content(
    region: &Region,
    source: &str,
    url: &str,
    workspace_id: &str,
    content: WrittenContent<'_>,
) -> Result<(), String> {
    let (area, path, size, sha256) = (content.area, content.path, content.size, content.sha256);
    let key = crate::content::storage_key(workspace_id, area, path)?;
    let noun = crate::content::noun(area);
    let relative = key
        .as_str()
        .strip_prefix(&format!("workspaces/{workspace_id}/{}/", area.as_str()))
        .unwrap_or(path)
        .to_string();
    let request = region
        .http
        .get(format!(
            "{url}/api/tandem/v1/replication/{}/{workspace_id}/{relative}",
            area.as_str()
        ))
        .query(&[("sha256", sha256)]);
    let response = tokio::time::timeout(SILENCE_LIMIT, region.authorized(request).send())
        .await
        .map_err(|_| {
            format!(
                "{noun} {path}: {url} did not answer within {}s",
                SILENCE_LIMIT.as_secs()
            )
        })?
        .map_err(|e| format!("{noun} {path}: {e}"))?;
    match response.status().as_u16() {
        200 => {}
        409 | 410 => {
            tracing::info!(
                path,
                "{noun} superseded at the source; a later record carries its content"
            );
            return Ok(());
        }
        status => {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{noun} {path}: source answered {status}: {body}"));
        }
    }
    let body = response
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    let outcome = region
        .artifacts
        .put_stream(&key, Box::pin(body), None)
        .await
        .map_err(|error| format!("{noun} {path}: {error}"))?;
    if outcome.size as i64 != size || outcome.sha256 != sha256 {
        // Leave nothing unverified behind: the record will be retried.
        let _ = region.artifacts.delete(&key).await;
        return Err(format!(
            "{noun} {path} failed verification: expected {size} bytes with sha256 {sha256}, got {} bytes with sha256 {}",
            outcome.size, outcome.sha256
        ));
    }
    metrics::counter!("tandem_replication_content_bytes_total", "source" => source.to_string())
        .increment(outcome.size);
    region.update_follow(source, |state| {
        state.artifacts_copied += 1;
        state.artifact_bytes_copied += outcome.size;
    });
    Ok(())
}
