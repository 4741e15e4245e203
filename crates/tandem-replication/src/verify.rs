//! `tandem verify`: proves every region's replica equal to the others.
//!
//! Each region fingerprints each workspace in one consistent read (see
//! `tandem_store::fingerprint`): per class, which changes it holds
//! (`applied`) and a digest of every state table's rows, plus the digests of
//! the bytes its storage actually holds for every artifact and file
//! (`artifact_bytes`, `file_bytes`: read back and hashed, so bytes changed
//! behind the metadata's back show). The verifying region collects every
//! region's fingerprints. Where two regions hold the same changes of a
//! class, its tables must be equal; where a table's digests differ, the
//! rows' digests name the objects. Where regions hold different changes
//! (writes still replicating), the class is fetched again, a bounded number
//! of times, and reported unverified with the positions if it never
//! settles. Classes a region does not replicate continuously (`hot-cold`)
//! are compared nowhere: only the primary holds them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tandem_core::journal::{AssetClass, ContentArea};
use tandem_core::model::Millis;
use tandem_deployment::ContinuityLevel;
use tandem_store::fingerprint::{
    seal, Applied, ContentRow, RowDigest, TableRows, WorkspaceFingerprint, WORKSPACE_CLASS,
};

use crate::{now_millis, Region};

/// Fetches of unsettled classes before they are reported unverified.
const ATTEMPTS: u32 = 20;
/// Pause between fetches of unsettled classes (replication catching up).
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Differences named per table; the rest are counted.
const MAX_NAMED: usize = 50;
/// The digest a region reports for bytes its storage does not have.
pub const MISSING: &str = "missing";

/// What `tandem verify` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The region that verified (collected and compared).
    pub verified_by: String,
    pub started_at: Millis,
    pub finished_at: Millis,
    /// The regions whose fingerprints were compared.
    pub regions: Vec<String>,
    /// Regions that could not be asked, with why.
    pub unreachable: BTreeMap<String, String>,
    pub workspaces: Vec<WorkspaceVerdict>,
    /// Every workspace equal in every region, and every region reached.
    pub ok: bool,
    /// Differences named in all workspaces.
    pub differences: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkspaceVerdict {
    pub workspace_id: String,
    pub name: String,
    /// `equal`, `different` or `unverified`.
    pub status: String,
    /// Classes compared and found equal or different.
    pub classes: Vec<String>,
    pub differences: Vec<Difference>,
    /// Why some class could not be compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<String>,
}

/// One object that differs: its table and key, and each region's digest of
/// it (`missing` where a region does not have it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub class: String,
    pub table: String,
    /// The object's key (`run_id/key` …); None for a summary line.
    pub key: Option<String>,
    pub regions: BTreeMap<String, String>,
}

/// Whether `class` is held by every region, so replicas can be compared.
fn compared(region: &Region, class: &str) -> bool {
    match AssetClass::parse(class) {
        None => class == WORKSPACE_CLASS,
        Some(class) => region.deployment.policy(class).level != ContinuityLevel::HotCold,
    }
}

fn content_table(area: &str) -> &'static str {
    if area == "files" {
        "file_bytes"
    } else {
        "artifact_bytes"
    }
}

fn content_class(area: &str) -> &'static str {
    if area == "files" {
        "files"
    } else {
        "tracking"
    }
}

/// The digest of the bytes storage holds for one artifact or file.
async fn stored_digest(region: &Region, workspace_id: &str, row: &ContentRow) -> String {
    let area = if row.area == "files" {
        ContentArea::Files
    } else {
        ContentArea::Artifacts
    };
    let key = match crate::content::storage_key(workspace_id, area, &row.path) {
        Ok(key) => key,
        Err(error) => return format!("unreadable: {error}"),
    };
    let mut stream = match region.artifacts.get_stream(&key).await {
        Ok((_, stream)) => stream,
        Err(error) if error.is_not_found() => return MISSING.to_string(),
        Err(error) => return format!("unreadable: {error}"),
    };
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => hasher.update(&bytes),
            Err(error) => return format!("unreadable: {error}"),
        }
    }
    hex::encode(hasher.finalize())
}

/// The rows of a content table: each artifact's or file's path and the
/// digest of the bytes actually stored.
async fn content_rows(
    region: &Region,
    workspace_id: &str,
    content: &[ContentRow],
    area: &str,
) -> Vec<RowDigest> {
    let mut rows = Vec::new();
    for row in content.iter().filter(|row| row.area == area) {
        rows.push(RowDigest {
            key: row.path.clone(),
            digest: stored_digest(region, workspace_id, row).await,
        });
    }
    rows
}

/// This region's fingerprints, with the content tables filled in.
pub async fn local_fingerprints(
    region: &Region,
    workspace_id: Option<&str>,
) -> Result<Vec<WorkspaceFingerprint>, tandem_store::StoreError> {
    let mut fingerprints = region.store.fingerprints(workspace_id).await?;
    for fingerprint in &mut fingerprints {
        let content = std::mem::take(&mut fingerprint.content);
        for area in ["artifacts", "files"] {
            let mut rows = content_rows(region, &fingerprint.workspace_id, &content, area).await;
            let digest = seal(&mut rows);
            fingerprint
                .classes
                .entry(content_class(area).to_string())
                .or_default()
                .tables
                .insert(content_table(area).to_string(), digest);
        }
    }
    Ok(fingerprints)
}

/// This region's rows of one table (content tables included).
pub async fn local_rows(
    region: &Region,
    workspace_id: &str,
    table: &str,
) -> Result<TableRows, tandem_store::StoreError> {
    let area = match table {
        "artifact_bytes" => "artifacts",
        "file_bytes" => "files",
        _ => return region.store.fingerprint_rows(workspace_id, table).await,
    };
    let mut fingerprints = region.store.fingerprints(Some(workspace_id)).await?;
    let Some(fingerprint) = fingerprints.pop() else {
        return Ok(TableRows {
            applied: Applied::new(),
            rows: Vec::new(),
        });
    };
    let applied = fingerprint
        .classes
        .get(content_class(area))
        .map(|class| class.applied.clone())
        .unwrap_or_default();
    let mut rows = content_rows(region, workspace_id, &fingerprint.content, area).await;
    seal(&mut rows);
    Ok(TableRows { applied, rows })
}

/// Asks one region (this one directly, a peer over HTTP with the
/// replication secret) for its fingerprints.
async fn fingerprints_of(
    region: &Region,
    peer: &str,
    workspace_id: Option<&str>,
) -> Result<Vec<WorkspaceFingerprint>, String> {
    if peer == region.name {
        return local_fingerprints(region, workspace_id)
            .await
            .map_err(|error| error.to_string());
    }
    let url = peer_url(region, peer)?;
    let mut request = region
        .http
        .get(format!("{url}/api/tandem/v1/replication/fingerprint"))
        .timeout(Duration::from_secs(600));
    if let Some(workspace_id) = workspace_id {
        request = request.query(&[("workspace_id", workspace_id)]);
    }
    fetch(region.authorized(request)).await
}

async fn rows_of(region: &Region, peer: &str, workspace_id: &str, table: &str) -> Result<TableRows, String> {
    if peer == region.name {
        return local_rows(region, workspace_id, table)
            .await
            .map_err(|error| error.to_string());
    }
    let url = peer_url(region, peer)?;
    let request = region
        .http
        .get(format!(
            "{url}/api/tandem/v1/replication/fingerprint/{workspace_id}/{table}"
        ))
        .timeout(Duration::from_secs(600));
    fetch(region.authorized(request)).await
}

fn peer_url(region: &Region, peer: &str) -> Result<String, String> {
    region
        .deployment
        .region(peer)
        .map(|spec| spec.url.trim_end_matches('/').to_string())
        .ok_or_else(|| format!("no region '{peer}' in the deployment"))
}

async fn fetch<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, String> {
    let response = request.send().await.map_err(|error| error.to_string())?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{status}: {body}"));
    }
    response.json().await.map_err(|error| error.to_string())
}

/// Compares the rows of one table in every region; None when the regions
/// no longer hold the same changes of its class (compare again later).
fn diff_rows(class: &str, table: &str, rows: &BTreeMap<String, TableRows>) -> Option<Vec<Difference>> {
    let mut applied = rows.values().map(|rows| &rows.applied);
    let first = applied.next()?;
    if applied.any(|other| other != first) {
        return None;
    }
    let mut keys = BTreeSet::new();
    let by_region: BTreeMap<&String, BTreeMap<&str, &str>> = rows
        .iter()
        .map(|(region, rows)| {
            let map: BTreeMap<&str, &str> = rows
                .rows
                .iter()
                .map(|row| (row.key.as_str(), row.digest.as_str()))
                .collect();
            keys.extend(map.keys().copied());
            (region, map)
        })
        .collect();
    let mut differences = Vec::new();
    let mut unnamed = 0usize;
    for key in keys {
        let digests: BTreeMap<String, String> = by_region
            .iter()
            .map(|(region, map)| {
                (
                    (*region).clone(),
                    map.get(key).copied().unwrap_or(MISSING).to_string(),
                )
            })
            .collect();
        let distinct: BTreeSet<&String> = digests.values().collect();
        if distinct.len() > 1 {
            if differences.len() < MAX_NAMED {
                differences.push(Difference {
                    class: class.to_string(),
                    table: table.to_string(),
                    key: Some(key.to_string()),
                    regions: digests,
                });
            } else {
                unnamed += 1;
            }
        }
    }
    if unnamed > 0 {
        differences.push(Difference {
            class: class.to_string(),
            table: table.to_string(),
            key: None,
            regions: rows
                .keys()
                .map(|region| (region.clone(), format!("{unnamed} more rows differ")))
                .collect(),
        });
    }
    Some(differences)
}

/// One workspace's state of comparison across attempts.
struct Pending {
    name: String,
    /// Classes still to settle, with the last `applied` seen per region.
    unsettled: BTreeMap<String, BTreeMap<String, Option<Applied>>>,
    compared: BTreeSet<String>,
    differences: Vec<Difference>,
}

/// Verifies every workspace (or one, by name or id) in every region.
pub async fn verify(region: &Region, workspace: Option<&str>) -> Result<VerifyReport, tandem_core::Error> {
    let started = Instant::now();
    let started_at = now_millis();
    let only = match workspace {
        Some(name) => Some(
            region
                .store
                .find_workspace(name)
                .await
                .map_err(|error| match error {
                    tandem_store::StoreError::Domain(error) => error,
                    other => tandem_core::Error::internal(other.to_string()),
                })?
                .workspace_id,
        ),
        None => None,
    };
    let names: Vec<String> = region
        .deployment
        .regions()
        .iter()
        .map(|spec| spec.name.clone())
        .collect();
    let mut unreachable = BTreeMap::new();
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    let mut reached: Vec<String> = Vec::new();
    for attempt in 0..ATTEMPTS {
        // The first round asks for everything; later ones for the
        // workspaces still unsettled.
        let targets: Vec<Option<String>> = if attempt == 0 {
            vec![only.clone()]
        } else {
            pending
                .iter()
                .filter(|(_, state)| !state.unsettled.is_empty())
                .map(|(id, _)| Some(id.clone()))
                .collect()
        };
        if targets.is_empty() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        for target in targets {
            let mut gathered: BTreeMap<String, BTreeMap<String, WorkspaceFingerprint>> = BTreeMap::new();
            for peer in &names {
                if unreachable.contains_key(peer) {
                    continue;
                }
                match fingerprints_of(region, peer, target.as_deref()).await {
                    Ok(fingerprints) => {
                        if !reached.contains(peer) {
                            reached.push(peer.clone());
                        }
                        gathered.insert(
                            peer.clone(),
                            fingerprints
                                .into_iter()
                                .map(|fingerprint| (fingerprint.workspace_id.clone(), fingerprint))
                                .collect(),
                        );
                    }
                    Err(error) => {
                        tracing::warn!(region = %peer, %error, "verify: could not fingerprint a region");
                        unreachable.insert(peer.clone(), error);
                    }
                }
            }
            compare_round(region, &gathered, target.as_deref(), &mut pending).await;
        }
    }
    let mut workspaces = Vec::new();
    for (workspace_id, state) in pending {
        let unverified: Vec<String> = state
            .unsettled
            .iter()
            .map(|(class, applied)| {
                let positions = applied
                    .iter()
                    .map(|(region, applied)| match applied {
                        Some(applied) => format!("{region} {}", describe(applied)),
                        None => format!("{region} has no such workspace"),
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                format!("{class}: the regions kept holding different changes ({positions})")
            })
            .collect();
        let status = if !state.differences.is_empty() {
            "different"
        } else if !unverified.is_empty() {
            "unverified"
        } else {
            "equal"
        };
        workspaces.push(WorkspaceVerdict {
            workspace_id,
            name: state.name,
            status: status.to_string(),
            classes: state.compared.into_iter().collect(),
            differences: state.differences,
            unverified,
        });
    }
    let differences = workspaces.iter().map(|w| w.differences.len()).sum();
    let ok = unreachable.is_empty() && workspaces.iter().all(|w| w.status == "equal");
    let report = VerifyReport {
        verified_by: region.name.clone(),
        started_at,
        finished_at: now_millis(),
        regions: reached,
        unreachable,
        workspaces,
        ok,
        differences,
    };
    record(&report, started.elapsed());
    *region.last_verify.lock().unwrap() = Some(report.clone());
    Ok(report)
}

fn describe(applied: &Applied) -> String {
    applied
        .iter()
        .map(|(origin, (high, count))| format!("{origin}@{high}({count})"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Compares one round of fingerprints, updating each workspace's state.
async fn compare_round(
    region: &Region,
    gathered: &BTreeMap<String, BTreeMap<String, WorkspaceFingerprint>>,
    target: Option<&str>,
    pending: &mut BTreeMap<String, Pending>,
) {
    let mut ids: BTreeSet<String> = gathered
        .values()
        .flat_map(|by_id| by_id.keys().cloned())
        .collect();
    if let Some(target) = target {
        ids.insert(target.to_string());
    }
    for workspace_id in ids {
        let present: BTreeMap<&String, Option<&WorkspaceFingerprint>> = gathered
            .iter()
            .map(|(peer, by_id)| (peer, by_id.get(&workspace_id)))
            .collect();
        let name = present
            .values()
            .flatten()
            .map(|fingerprint| fingerprint.name.clone())
            .next()
            .unwrap_or_else(|| workspace_id.clone());
        let state = pending.entry(workspace_id.clone()).or_insert_with(|| Pending {
            name,
            unsettled: BTreeMap::new(),
            compared: BTreeSet::new(),
            differences: Vec::new(),
        });
        let classes: BTreeSet<String> = present
            .values()
            .flatten()
            .flat_map(|fingerprint| fingerprint.classes.keys().cloned())
            .filter(|class| compared(region, class))
            .collect();
        // A class settled in an earlier round stays settled.
        let to_compare: Vec<String> = if state.compared.is_empty() && state.unsettled.is_empty() {
            classes.into_iter().collect()
        } else {
            state.unsettled.keys().cloned().collect()
        };
        for class in to_compare {
            let applied: BTreeMap<String, Option<Applied>> = present
                .iter()
                .map(|(peer, fingerprint)| {
                    (
                        (*peer).clone(),
                        fingerprint
                            .and_then(|f| f.classes.get(&class))
                            .map(|c| c.applied.clone()),
                    )
                })
                .collect();
            let mut values = applied.values();
            let first = values.next().cloned().flatten();
            if values.any(|other| *other != first) {
                state.unsettled.insert(class, applied);
                continue;
            }
            // Same changes everywhere: the tables must be equal.
            let tables: BTreeSet<String> = present
                .values()
                .flatten()
                .filter_map(|f| f.classes.get(&class))
                .flat_map(|c| c.tables.keys().cloned())
                .collect();
            let mut settled = true;
            let mut found = Vec::new();
            for table in tables {
                let digests: BTreeSet<Option<String>> = present
                    .values()
                    .map(|f| {
                        f.and_then(|f| f.classes.get(&class))
                            .and_then(|c| c.tables.get(&table))
                            .map(|t| t.digest.clone())
                    })
                    .collect();
                if digests.len() <= 1 {
                    continue;
                }
                let mut rows = BTreeMap::new();
                for peer in present.keys() {
                    match rows_of(region, peer, &workspace_id, &table).await {
                        Ok(table_rows) => {
                            rows.insert((*peer).clone(), table_rows);
                        }
                        Err(error) => {
                            tracing::warn!(region = %peer, %error, "verify: could not read a region's rows");
                        }
                    }
                }
                match diff_rows(&class, &table, &rows) {
                    Some(differences) => found.extend(differences),
                    None => settled = false,
                }
            }
            if settled {
                state.unsettled.remove(&class);
                state.compared.insert(class);
                state.differences.extend(found);
            } else {
                state.unsettled.insert(class, applied);
            }
        }
    }
}

/// Exports a verification's outcome on `/metrics`.
fn record(report: &VerifyReport, took: Duration) {
    let outcome = if report.ok {
        "equal"
    } else if report.differences > 0 {
        "different"
    } else {
        "incomplete"
    };
    metrics::counter!("tandem_verify_runs_total", "outcome" => outcome).increment(1);
    metrics::histogram!("tandem_verify_seconds").record(took.as_secs_f64());
    metrics::gauge!("tandem_verify_differences").set(report.differences as f64);
    let now = report.finished_at as f64 / 1000.0;
    metrics::gauge!("tandem_verify_last_run_timestamp_seconds").set(now);
    if report.ok {
        metrics::gauge!("tandem_verify_last_success_timestamp_seconds").set(now);
    }
    tracing::info!(
        ok = report.ok,
        differences = report.differences,
        workspaces = report.workspaces.len(),
        unreachable = report.unreachable.len(),
        seconds = took.as_secs_f64(),
        "verified the replicas"
    );
}

/// Verifies every `interval` while this region is the primary.
pub async fn run_periodically(region: std::sync::Arc<Region>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate: start after one interval.
    loop {
        ticker.tick().await;
        // One replica of the region verifies: the one holding its duties.
        if !region.is_primary() || !region.holds_duties() {
            continue;
        }
        if let Err(error) = verify(&region, None).await {
            tracing::warn!(%error, "periodic verify failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(applied: i64, rows: &[(&str, &str)]) -> TableRows {
        TableRows {
            applied: [("eastus".to_string(), (applied, applied))].into_iter().collect(),
            rows: rows
                .iter()
                .map(|(key, digest)| RowDigest {
                    key: key.to_string(),
                    digest: digest.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn differing_rows_are_named_with_each_regions_digest() {
        let mut by_region = BTreeMap::new();
        by_region.insert("eastus".to_string(), rows(5, &[("r1/lr", "a"), ("r1/x", "b")]));
        by_region.insert("westus".to_string(), rows(5, &[("r1/lr", "z"), ("r1/y", "c")]));
        let differences = diff_rows("tracking", "run_params", &by_region).unwrap();
        let keys: Vec<_> = differences.iter().map(|d| d.key.clone().unwrap()).collect();
        assert_eq!(keys, ["r1/lr", "r1/x", "r1/y"]);
        assert_eq!(differences[0].regions["westus"], "z");
        assert_eq!(differences[1].regions["westus"], MISSING);
        assert_eq!(differences[2].regions["eastus"], MISSING);
    }

    #[test]
    fn rows_read_at_different_changes_are_not_compared() {
        let mut by_region = BTreeMap::new();
        by_region.insert("eastus".to_string(), rows(6, &[("r1/lr", "a")]));
        by_region.insert("westus".to_string(), rows(5, &[("r1/lr", "z")]));
        assert_eq!(diff_rows("tracking", "run_params", &by_region), None);
    }

    #[test]
    fn many_differences_are_counted_past_the_named_ones() {
        let many: Vec<(String, String)> = (0..MAX_NAMED + 7)
            .map(|i| (format!("k{i:03}"), "a".to_string()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, d)| (k.as_str(), d.as_str())).collect();
        let mut by_region = BTreeMap::new();
        by_region.insert("eastus".to_string(), rows(1, &many));
        by_region.insert("westus".to_string(), rows(1, &[]));
        let differences = diff_rows("tracking", "metrics", &by_region).unwrap();
        assert_eq!(differences.len(), MAX_NAMED + 1);
        assert_eq!(
            differences.last().unwrap().regions["eastus"],
            "7 more rows differ"
        );
    }
}
