//! `backup verify`: every object a backup needs is there with the size and
//! SHA-256 its manifest recorded (re-hashed, not trusted), and every chain of
//! incremental backups is unbroken. Reports every problem, not the first.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::BackupResult;
use crate::format::{blob_key, manifest_key, BackupKind, BackupManifest, ObjectRef};
use crate::repo::Repository;
use crate::{Progress, ProgressFn};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The backup concerned, if the problem is one backup's.
    pub backup: Option<String>,
    /// The repository object at fault.
    pub object: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub repository: String,
    pub backups: Vec<String>,
    pub objects_checked: i64,
    pub bytes_checked: i64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies every backup of the repository, or one (with its base).
pub async fn verify(
    repo: &Repository,
    backup: Option<&str>,
    progress: ProgressFn<'_>,
) -> BackupResult<VerifyReport> {
    repo.info().await?;
    let mut report = VerifyReport {
        repository: repo.url().to_string(),
        backups: Vec::new(),
        objects_checked: 0,
        bytes_checked: 0,
        problems: Vec::new(),
    };
    let ids = match backup {
        Some(id) => vec![repo.manifest(id).await?.id],
        None => {
            let mut ids = repo.children("backups").await?;
            ids.sort();
            ids
        }
    };
    let mut manifests = BTreeMap::new();
    for id in &ids {
        match repo.read_json::<BackupManifest>(&manifest_key(id)).await {
            Ok(Some(manifest)) => {
                manifests.insert(id.clone(), manifest);
            }
            // A backup directory without a manifest is an interrupted
            // backup: it never existed, nothing refers to it.
            Ok(None) => {}
            Err(error) => report.problems.push(Problem {
                backup: Some(id.clone()),
                object: manifest_key(id),
                problem: error.to_string(),
            }),
        }
    }
    // Every object once, however many backups share it.
    let mut checked: BTreeMap<String, Option<String>> = BTreeMap::new();
    let total = manifests.len() as i64;
    for (done, (id, manifest)) in manifests.iter().enumerate() {
        report.backups.push(id.clone());
        let mut objects: Vec<ObjectRef> = manifest.snapshot.iter().cloned().collect();
        objects.extend(manifest.segments.iter().cloned());
        for entry in manifest
            .workspaces
            .iter()
            .flat_map(|w| w.artifacts.iter().chain(w.files.iter()))
        {
            objects.push(ObjectRef {
                key: blob_key(&entry.sha256),
                bytes: entry.size,
                sha256: entry.sha256.clone(),
            });
        }
        for object in objects {
            let outcome = match checked.get(&object.key) {
                Some(outcome) => outcome.clone(),
                None => {
                    let outcome = check(repo, &object, &mut report).await?;
                    checked.insert(object.key.clone(), outcome.clone());
                    outcome
                }
            };
            if let Some(problem) = outcome {
                report.problems.push(Problem {
                    backup: Some(id.clone()),
                    object: object.key.clone(),
                    problem,
                });
            }
        }
        report.problems.extend(chain_problems(repo, manifest).await?);
        progress(Progress::new(
            "verifying backups",
            done as i64 + 1,
            total,
            "backups",
        ));
    }
    Ok(report)
}

/// None when the object is there with the recorded size and digest.
async fn check(
    repo: &Repository,
    object: &ObjectRef,
    report: &mut VerifyReport,
) -> BackupResult<Option<String>> {
    report.objects_checked += 1;
    Ok(match repo.hash(&object.key).await? {
        None => Some("missing".to_string()),
        Some((size, digest)) => {
            report.bytes_checked += size;
            if size != object.bytes {
                Some(format!("{size} bytes, expected {}", object.bytes))
            } else if digest != object.sha256 {
                Some(format!("SHA-256 {digest}, expected {}", object.sha256))
            } else {
                None
            }
        }
    })
}

/// An incremental backup needs its full base and segments that cover the
/// journal from the base's position to its own without a gap.
async fn chain_problems(repo: &Repository, manifest: &BackupManifest) -> BackupResult<Vec<Problem>> {
    let mut problems = Vec::new();
    let problem = |object: String, text: String| Problem {
        backup: Some(manifest.id.clone()),
        object,
        problem: text,
    };
    match manifest.kind {
        BackupKind::Full => {
            if manifest.snapshot.is_none() {
                problems.push(problem(
                    manifest_key(&manifest.id),
                    "a full backup without a snapshot".into(),
                ));
            }
        }
        BackupKind::Incremental => {
            let Some(base_id) = &manifest.base else {
                problems.push(problem(
                    manifest_key(&manifest.id),
                    "an incremental backup without a base".into(),
                ));
                return Ok(problems);
            };
            let base = match repo.read_json::<BackupManifest>(&manifest_key(base_id)).await {
                Ok(Some(base)) => base,
                Ok(None) => {
                    problems.push(problem(
                        manifest_key(base_id),
                        format!("its base backup {base_id} is missing"),
                    ));
                    return Ok(problems);
                }
                Err(error) => {
                    problems.push(problem(manifest_key(base_id), error.to_string()));
                    return Ok(problems);
                }
            };
            let mut ranges: Vec<(i64, i64, String)> = manifest
                .segments
                .iter()
                .filter_map(|s| segment_range(&s.key).map(|(first, last)| (first, last, s.key.clone())))
                .collect();
            ranges.sort();
            let mut next = base.position + 1;
            for (first, last, key) in &ranges {
                if *first > next {
                    problems.push(problem(
                        key.clone(),
                        format!("gap in the journal: records {next} to {} are missing", first - 1),
                    ));
                }
                next = next.max(last + 1);
            }
            if next <= manifest.position {
                problems.push(problem(
                    manifest_key(&manifest.id),
                    format!(
                        "the segments end at {}, before the backup's position {}",
                        next - 1,
                        manifest.position
                    ),
                ));
            }
        }
    }
    Ok(problems)
}

/// `(first, last)` of a segment key `journal/<region>/<first>-<last>.ndjson`.
pub fn segment_range(key: &str) -> Option<(i64, i64)> {
    let stem = key.rsplit('/').next()?.strip_suffix(".ndjson")?;
    let (first, last) = stem.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}
