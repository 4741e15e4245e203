//! The divergence quarantine's bytes and its re-application.
//!
//! The store voids and keeps the *records* of changes that never reached a
//! later epoch's primary. An artifact write among them also left bytes at
//! its path in this region's storage, where listings would show them: they
//! are moved to `quarantine/<id>` and the path is given back the content the
//! state says it has (removed, or fetched again from the primary).
//!
//! `tandem divergence apply ID` re-applies one on purpose: the primary
//! journals the change again as a new change of its own (its bytes fetched
//! from the region that keeps them), and the holder marks it applied.

use std::time::Duration;

use futures::StreamExt;
use tandem_artifacts::ArtifactKey;
use tandem_core::journal::{JournalRecord, WrittenContent};
use tandem_core::{Error, ErrorKind};
use tandem_store::DivergentRecord;

use crate::Region;

/// Where a quarantined artifact write's bytes are kept.
pub fn bytes_key(id: &str) -> Result<ArtifactKey, Error> {
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(Error::invalid(format!("'{id}' is not a quarantine id")));
    }
    ArtifactKey::parse(&format!("quarantine/{id}")).map_err(|error| Error::invalid(error.to_string()))
}

fn internal(error: impl std::fmt::Display) -> Error {
    Error::internal(error.to_string())
}

/// Moves the bytes of quarantined artifact writes out of their paths.
pub(crate) async fn keep_pending_bytes(region: &Region) {
    let pending = match region.store.list_divergence().await {
        Ok(records) => records,
        Err(error) => {
            tracing::warn!(%error, "cannot read the quarantine");
            return;
        }
    };
    for entry in pending
        .into_iter()
        .filter(|entry| entry.artifact_state.as_deref() == Some("pending"))
    {
        if let Err(error) = keep_bytes(region, &entry).await {
            tracing::warn!(id = %entry.id, %error, "cannot move a quarantined artifact's bytes aside yet");
        }
    }
}

async fn keep_bytes(region: &Region, entry: &DivergentRecord) -> Result<(), Error> {
    let Some(content) = entry.record.change.written_content() else {
        return Ok(());
    };
    let (area, path, size, sha256) = (content.area, content.path, content.size, content.sha256);
    let workspace_id = &entry.record.workspace_id;
    let key = crate::content::storage_key(workspace_id, area, path).map_err(internal)?;
    let kept = bytes_key(&entry.id)?;
    let state = match region.artifacts.head(&key).await.map_err(internal)? {
        Some(found) if found as i64 == size => {
            region.artifacts.copy(&key, &kept).await.map_err(internal)?;
            "kept"
        }
        _ => "missing",
    };
    // The path now holds what the state says it holds, or nothing.
    let recorded = crate::content::recorded(region, workspace_id, area, path)
        .await
        .map_err(internal)?;
    match recorded {
        None => region.artifacts.delete(&key).await.map_err(internal)?,
        Some((recorded_size, recorded_sha256)) if recorded_sha256 != sha256 => {
            // An earlier write's content is the right one: fetch it again.
            let source = region.primary_name();
            let url = region.primary_url();
            let earlier = WrittenContent {
                area,
                path,
                size: recorded_size,
                sha256: &recorded_sha256,
            };
            if let Err(error) =
                crate::follower::copy_content(region, &source, &url, workspace_id, earlier).await
            {
                region.artifacts.delete(&key).await.map_err(internal)?;
                tracing::warn!(%path, %error, "removed a quarantined write's bytes; the earlier content could not be fetched again");
            }
        }
        Some(_) => {}
    }
    region
        .store
        .set_divergence_artifact_state(&entry.id, state)
        .await
        .map_err(internal)?;
    tracing::info!(id = %entry.id, %path, state, "quarantined {} write's bytes moved aside", crate::content::noun(area));
    Ok(())
}

/// `tandem divergence apply ID` at the region holding the change.
pub(crate) async fn apply(region: &Region, id: &str) -> Result<DivergentRecord, Error> {
    let entry = region.store.get_divergence(id).await.map_err(store_error)?;
    if entry.status == "applied" {
        return Ok(entry);
    }
    let seq = if region.accepting_writes() {
        reapply_here(region, &region.name, &entry.record).await?
    } else {
        let request = region
            .http
            .post(format!(
                "{}/api/tandem/v1/replication/reapply",
                region.primary_url()
            ))
            .timeout(Duration::from_secs(60))
            .json(&crate::protocol::ReapplyRequest {
                holder: region.name.clone(),
                record: entry.record.clone(),
            });
        let response = region.authorized(request).send().await.map_err(|error| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot reach the primary '{}': {error}", region.primary_name()),
            )
        })?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "the primary '{}' did not re-apply '{id}' ({status}): {}",
                    region.primary_name(),
                    body["message"].as_str().unwrap_or_default()
                ),
            ));
        }
        body["applied_seq"]
            .as_i64()
            .ok_or_else(|| internal("the primary's answer has no applied_seq"))?
    };
    region
        .store
        .mark_divergence_applied(id, seq)
        .await
        .map_err(store_error)?;
    region.store.get_divergence(id).await.map_err(store_error)
}

fn store_error(error: tandem_store::StoreError) -> Error {
    match error {
        tandem_store::StoreError::Domain(error) => error,
        other => internal(other),
    }
}

/// At the primary: re-applies `record`, kept in quarantine by `holder`.
pub(crate) async fn reapply_here(
    region: &Region,
    holder: &str,
    record: &JournalRecord,
) -> Result<i64, Error> {
    if !region.accepting_writes() {
        return Err(Error::new(
            ErrorKind::NotPrimary,
            format!(
                "region '{}' is not the primary: changes are re-applied at the primary '{}'",
                region.name,
                region.primary_name()
            ),
        ));
    }
    let id = format!("{}-{}", record.origin_region, record.origin_seq);
    let Some(content) = record.change.written_content() else {
        return region.store.reapply_divergent(record).await.map_err(store_error);
    };
    let key = crate::content::storage_key(&record.workspace_id, content.area, content.path)
        .map_err(Error::invalid)?;
    restore_bytes(region, holder, &id, &key, content.size, content.sha256).await?;
    match region.store.reapply_divergent(record).await {
        Ok(seq) => Ok(seq),
        Err(error) => {
            // Leave no bytes the state does not describe.
            let _ = region.artifacts.delete(&key).await;
            Err(store_error(error))
        }
    }
}

/// Puts a quarantined write's bytes back at its storage key, verified.
async fn restore_bytes(
    region: &Region,
    holder: &str,
    id: &str,
    key: &ArtifactKey,
    size: i64,
    sha256: &str,
) -> Result<(), Error> {
    let kept = bytes_key(id)?;
    let outcome = if holder == region.name {
        let (_, stream) = region.artifacts.get_stream(&kept).await.map_err(|error| {
            Error::new(
                ErrorKind::InvalidState,
                format!("the bytes of '{id}' are not kept here: {error}"),
            )
        })?;
        let stream = stream.map(|chunk| chunk.map_err(std::io::Error::other));
        region
            .artifacts
            .put_stream(key, Box::pin(stream), None)
            .await
            .map_err(internal)?
    } else {
        let url = region
            .deployment
            .region(holder)
            .map(|spec| spec.url.clone())
            .ok_or_else(|| Error::invalid(format!("unknown region '{holder}'")))?;
        let request = region
            .http
            .get(format!("{url}/api/tandem/v1/replication/quarantine/{id}"));
        let response = region.authorized(request).send().await.map_err(|error| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot fetch the bytes of '{id}' from '{holder}': {error}"),
            )
        })?;
        if !response.status().is_success() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "region '{holder}' does not keep the bytes of '{id}' ({})",
                    response.status()
                ),
            ));
        }
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other));
        region
            .artifacts
            .put_stream(key, Box::pin(body), None)
            .await
            .map_err(internal)?
    };
    if outcome.size as i64 != size || outcome.sha256 != sha256 {
        let _ = region.artifacts.delete(key).await;
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "the kept bytes of '{id}' do not match the change (expected {size} bytes, sha256 {sha256})"
            ),
        ));
    }
    Ok(())
}
