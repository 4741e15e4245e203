//! Restore: rebuilds a workspace exactly as it was at a moment — a backup,
//! a position of a region's journal, or a time — from a backup repository,
//! in place or as a new workspace, into any region.
//!
//! The order of work is what makes a restore all or nothing:
//!
//! 1. plan: which backup and which archived segments reach the target, with
//!    the archive checked to be contiguous up to it;
//! 2. read every record object through once, checking its size and SHA-256
//!    (and learning the epochs, for fencing, and the workspace's id);
//! 3. the artifacts at the target, derived from the workspace's records;
//!    their blobs are checked to exist before anything is written;
//! 4. copy the blobs into the target's storage, verifying each digest as it
//!    is copied (an object already there with the same digest is kept, one
//!    with another digest is refused unless `overwrite`);
//! 5. stream the records into ONE metadata transaction
//!    ([`tandem_store::MetadataStore::begin_restore`]), each change a new
//!    local change of the target region, so it replicates and is archived
//!    like any other.
//!
//! Any failure after step 4 began deletes what this restore created in
//! storage; the metadata transaction commits last or not at all.

pub mod http;
mod select;

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde::Serialize;
use tandem_artifacts::{workspace_content_key, ArtifactKey, ArtifactStore};
use tandem_core::journal::{Change, ContentArea, JournalRecord, DEPLOYMENT_RECORD};
use tandem_core::model::{Millis, ViewType};
use tandem_store::{MetadataStore, StoreError, WriteOutcome};

pub use crate::error::BackupError;
use crate::repo::{segment_object, RecordReader, Repository};
pub use crate::Progress;
use select::{ArtifactSet, Fencing};

use crate::format::{self, BackupKind, BackupManifest, ObjectRef};

/// Changes handed to the store per call: bounds the memory a restore holds.
const CHUNK: usize = 1000;

/// The moment to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestorePoint {
    /// The state a backup holds.
    Backup(String),
    /// Every record up to this position of the region's journal.
    Seq(i64),
    /// The journal up to (not including) its first record recorded after
    /// this time: a prefix of the journal, so always a consistent state.
    At(Millis),
    /// The latest state the repository holds: the newest full backup of the
    /// region, then every archived segment after it (contiguous).
    Latest,
}

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The backup repository's URL.
    pub from: String,
    /// Credentials and endpoints of the repository's object store.
    pub repository_options: HashMap<String, String>,
    /// The workspace to restore (by name); may be omitted when the backup
    /// holds one workspace.
    pub workspace: Option<String>,
    pub point: RestorePoint,
    /// Whose journal `Seq`/`At` count in; default: the newest backup's region.
    pub region: Option<String>,
    /// Restore as a new workspace of this name (a new id) instead of in place.
    pub as_name: Option<String>,
    /// Replace objects at the target's storage keys that hold other bytes.
    pub overwrite: bool,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RestoreOutcome {
    /// The restored workspace's name and id in the target region.
    pub workspace: String,
    pub workspace_id: String,
    /// The region whose journal the restored position counts in.
    pub source_region: String,
    pub position: i64,
    pub position_recorded_at: Millis,
    /// Changes written (each a journal record of the target region).
    pub records: i64,
    /// Artifacts and files (of its file share) the workspace holds at the
    /// position, and their bytes together.
    pub artifacts: u64,
    pub files: u64,
    pub bytes: u64,
    /// Principals the backup held that the target lacked, created again
    /// (with their tokens and role assignments).
    #[serde(default)]
    pub principals: u64,
}

/// Which record objects, read in order, hold the state at the target.
struct Plan {
    region: String,
    /// The full backup the state starts from, if any (else: the journal's beginning).
    base: Option<BackupManifest>,
    base_position: i64,
    /// The base's snapshot first (if any), then segments in journal order.
    objects: Vec<ObjectRef>,
    has_snapshot: bool,
    /// The last position included (for `At`: found while reading).
    bound: i64,
}

impl Plan {
    /// Whether a record at `seq` of object `index` is inside the plan's
    /// window; `last` is the last segment position admitted (segments may
    /// overlap: each position is admitted once).
    fn admit(&self, index: usize, seq: i64, last: &mut i64) -> bool {
        if index == 0 && self.has_snapshot {
            return seq <= self.base_position;
        }
        if seq <= *last || seq > self.bound {
            return false;
        }
        *last = seq;
        true
    }

    /// Streams the records inside the plan's window, in journal order.
    async fn scan(
        &self,
        repository: &Repository,
        mut each: impl FnMut(format::ArchivedRecord) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        let mut last = self.base_position;
        for (index, object) in self.objects.iter().enumerate() {
            repository
                .for_each_record(object, |record| {
                    if self.admit(index, record.record.seq, &mut last) {
                        each(record)
                    } else {
                        Ok(())
                    }
                })
                .await?;
        }
        Ok(())
    }
}

fn time_text(millis: Millis) -> String {
    format!("{millis} ms since the epoch")
}

/// Whether a full backup holds every record of `workspace` up to its
/// position: one of the whole region, or of that workspace (by name or id).
/// A full backup of another workspace cannot be the base of its restore.
fn covers(manifest: &BackupManifest, workspace: Option<&str>) -> bool {
    match (&manifest.workspace, workspace) {
        (None, _) | (_, None) => true,
        (Some(_), Some(wanted)) => manifest
            .workspaces
            .iter()
            .any(|entry| entry.name == wanted || entry.workspace_id == wanted),
    }
}

async fn plan(repository: &Repository, request: &RestoreRequest) -> Result<Plan, BackupError> {
    if let RestorePoint::Backup(id) = &request.point {
        let manifest = repository.manifest(id).await?;
        let (base, segments) = match manifest.kind {
            BackupKind::Full => (manifest.clone(), Vec::new()),
            BackupKind::Incremental => {
                let base_id = manifest.base.clone().ok_or_else(|| {
                    BackupError::corrupt(format!("incremental backup '{id}' names no base backup"))
                })?;
                let base = repository.manifest(&base_id).await?;
                if base.kind != BackupKind::Full || base.region != manifest.region {
                    return Err(BackupError::corrupt(format!(
                        "incremental backup '{id}' builds on '{base_id}', which is not a full backup of region {}",
                        manifest.region
                    )));
                }
                (base, manifest.segments.clone())
            }
        };
        let snapshot = base
            .snapshot
            .clone()
            .ok_or_else(|| BackupError::corrupt(format!("full backup '{}' has no snapshot", base.id)))?;
        let mut objects = vec![snapshot];
        objects.extend(segments);
        return Ok(Plan {
            region: manifest.region.clone(),
            base_position: base.position,
            base: Some(base),
            objects,
            has_snapshot: true,
            bound: manifest.position,
        });
    }

    let manifests = repository.manifests().await?;
    let region = match &request.region {
        Some(region) => region.clone(),
        None => manifests
            .last()
            .map(|manifest| manifest.region.clone())
            .ok_or_else(|| {
                BackupError::invalid(format!(
                    "{} holds no backup: name the region whose archived journal to restore from (region)",
                    request.from
                ))
            })?,
    };
    // The oldest backup a restore of this workspace can start from: before
    // it, retention may have pruned the archive.
    let oldest = manifests
        .iter()
        .filter(|m| {
            m.region == region && m.kind == BackupKind::Full && covers(m, request.workspace.as_deref())
        })
        .min_by_key(|m| m.position)
        .map(|m| (m.id.clone(), m.position, m.position_recorded_at));
    let base = manifests.into_iter().rfind(|manifest| {
        manifest.region == region
            && manifest.kind == BackupKind::Full
            && covers(manifest, request.workspace.as_deref())
            && match request.point {
                RestorePoint::Seq(seq) => manifest.position <= seq,
                RestorePoint::At(at) => manifest.position_recorded_at <= at,
                RestorePoint::Latest => true,
                RestorePoint::Backup(_) => unreachable!("handled above"),
            }
    });
    let base_position = base.as_ref().map_or(0, |base| base.position);
    let mut objects = Vec::new();
    if let Some(base) = &base {
        objects.push(
            base.snapshot
                .clone()
                .ok_or_else(|| BackupError::corrupt(format!("full backup '{}' has no snapshot", base.id)))?,
        );
    }
    let has_snapshot = !objects.is_empty();

    // The archived segments after the base, contiguous up to the target.
    let segments = repository.segments(&region).await?;
    let mut expected = base_position + 1;
    let mut end: (i64, Millis) = (
        base_position,
        base.as_ref().map_or(0, |base| base.position_recorded_at),
    );
    let mut reached = false;
    for segment in &segments {
        if match request.point {
            RestorePoint::Seq(seq) => expected > seq,
            RestorePoint::Latest => false,
            _ => reached,
        } {
            reached = true;
            break;
        }
        if segment.last_seq < expected {
            continue;
        }
        if segment.first_seq > expected {
            if let (None, Some((id, position, recorded_at))) = (&base, &oldest) {
                return Err(BackupError::incomplete(format!(
                    "the repository no longer holds {region}'s journal before seq {} (pruned by its retention): the earliest point it restores is backup '{id}' at seq {position} (recorded at {})",
                    segment.first_seq,
                    time_text(*recorded_at)
                )));
            }
            return Err(BackupError::incomplete(format!(
                "the archive of {region} has a gap: seq {expected} to {} are missing (the next segment begins at seq {})",
                segment.first_seq - 1,
                segment.first_seq
            )));
        }
        objects.push(segment_object(segment));
        expected = segment.last_seq + 1;
        end = (segment.last_seq, segment.last_recorded_at);
        if let RestorePoint::At(at) = request.point {
            reached = segment.last_recorded_at > at;
        }
    }
    let bound = match request.point {
        RestorePoint::Seq(seq) => {
            if seq < 1 {
                return Err(BackupError::invalid(format!("seq must be at least 1, not {seq}")));
            }
            if expected <= seq {
                return Err(BackupError::incomplete(format!(
                    "the archive of {region} ends at seq {} (recorded at {}), before seq {seq}",
                    end.0,
                    time_text(end.1)
                )));
            }
            seq
        }
        RestorePoint::At(at) => {
            if !reached {
                return Err(BackupError::incomplete(format!(
                    "the archive of {region} ends at seq {} (recorded at {}), before {}: what happened up to then is not archived yet",
                    end.0,
                    time_text(end.1),
                    time_text(at)
                )));
            }
            i64::MAX
        }
        RestorePoint::Latest => {
            if end.0 < 1 {
                return Err(BackupError::not_found(format!(
                    "{} holds nothing of {region}: no backup and no archived journal",
                    request.from
                )));
            }
            end.0
        }
        RestorePoint::Backup(_) => unreachable!("handled above"),
    };
    Ok(Plan {
        region,
        base,
        base_position,
        objects,
        has_snapshot,
        bound,
    })
}

/// What the first pass over a plan's record objects learnt.
struct Survey {
    fencing: Fencing,
    /// Workspace name → id, from every `workspace_created` read.
    names: BTreeMap<String, String>,
    position: i64,
    position_recorded_at: Millis,
}

/// Reads every record object of `plan` through once, checking each one's
/// size and SHA-256 before anything is written; learns the epochs (for
/// fencing), the workspaces, and the exact position reached (for `At`: the
/// last record recorded at or before the time), which bounds the plan.
async fn survey(
    repository: &Repository,
    plan: &mut Plan,
    point: &RestorePoint,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Survey, BackupError> {
    // Read everything once: digests first, and what the target needs to know.
    let mut fencing = Fencing::default();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut stopped = false;
    let mut last: Option<(i64, Millis)> = None;
    let mut read: u64 = 0;
    let at = match *point {
        RestorePoint::At(at) => Some(at),
        _ => None,
    };
    {
        let base_position = plan.base_position;
        plan.scan(repository, |record| {
            let record = &record.record;
            if stopped {
                return Ok(());
            }
            if let Some(at) = at {
                if record.seq > base_position && record.recorded_at > at {
                    stopped = true;
                    return Ok(());
                }
            }
            if record.seq > base_position {
                last = Some((record.seq, record.recorded_at));
            }
            fencing.observe(record);
            if let Change::WorkspaceCreated {
                workspace_id, name, ..
            } = &record.change
            {
                names.insert(name.clone(), workspace_id.clone());
            }
            read += 1;
            Ok(())
        })
        .await?;
    }
    // Every record object read through and its digest checked.
    progress(Progress::new("verify", read as i64, read as i64, "records"));
    let (position, position_recorded_at) = match (point, last, &plan.base) {
        (RestorePoint::At(_), Some(last), _) => last,
        (RestorePoint::At(_), None, Some(base)) => (base.position, base.position_recorded_at),
        (RestorePoint::At(at), None, None) => {
            return Err(BackupError::not_found(format!(
                "nothing of {} was recorded at or before {}",
                plan.region,
                time_text(*at)
            )))
        }
        (_, Some(last), _) if last.0 == plan.bound => last,
        (_, _, Some(base)) if base.position == plan.bound => (base.position, base.position_recorded_at),
        (_, last, _) => {
            return Err(BackupError::incomplete(format!(
                "the archive of {} does not reach seq {}: it ends at seq {}",
                plan.region,
                plan.bound,
                last.map_or(plan.base_position, |last| last.0)
            )))
        }
    };
    plan.bound = position;
    Ok(Survey {
        fencing,
        names,
        position,
        position_recorded_at,
    })
}

/// The records of a repository up to a moment, selected the way a restore
/// selects them: a public reader for other parts (e.g. failover restoring
/// hot-cold classes from another region's archive). [`RecordSelection::open`]
/// plans the objects and reads every one through once, checking its size and
/// SHA-256 (a mismatch, a gap or a short archive is an error before any
/// record is handed out); [`RecordSelection::for_each`] then streams the
/// selected records in journal order, holding one record at a time.
pub struct RecordSelection {
    repository: Repository,
    plan: Plan,
    fencing: Fencing,
    /// The region whose journal the position counts in.
    pub region: String,
    /// The last position selected, and when it was recorded.
    pub position: i64,
    pub position_recorded_at: Millis,
    /// Workspace name → id, of every workspace created up to the position.
    pub workspaces: BTreeMap<String, String>,
}

impl RecordSelection {
    /// `point` as in a restore; `region` chooses the journal for `Seq`,
    /// `At` and `Latest` (default: the newest backup's region).
    pub async fn open(
        from: &str,
        options: &HashMap<String, String>,
        point: RestorePoint,
        region: Option<String>,
    ) -> Result<RecordSelection, BackupError> {
        let repository = Repository::open_with(from, options)?;
        repository.info().await?;
        let request = RestoreRequest {
            from: from.to_string(),
            repository_options: options.clone(),
            workspace: None,
            point,
            region,
            as_name: None,
            overwrite: false,
        };
        let mut plan = plan(&repository, &request).await?;
        let survey = survey(&repository, &mut plan, &request.point, &|_| {}).await?;
        Ok(RecordSelection {
            region: plan.region.clone(),
            repository,
            plan,
            fencing: survey.fencing,
            position: survey.position,
            position_recorded_at: survey.position_recorded_at,
            workspaces: survey.names,
        })
    }

    /// Streams the selected records in journal order: each position once,
    /// none voided when archived, none fenced by a later epoch's fork, no
    /// deployment records (`epoch_began`; read only for fencing), and, when
    /// `workspace_id` is given, only that workspace's. Every object is
    /// checked against its digest again as it is read (an object changed
    /// since `open` is an error, after the records read before it).
    pub async fn for_each(
        &self,
        workspace_id: Option<&str>,
        mut each: impl FnMut(JournalRecord) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        self.plan
            .scan(&self.repository, |record| {
                if self.wanted(&record, workspace_id) {
                    each(record.record)
                } else {
                    Ok(())
                }
            })
            .await
    }

    /// The same records as [`RecordSelection::for_each`], pulled one at a
    /// time: for a consumer that awaits between records (and so cannot be a
    /// callback), still holding one record at a time.
    pub fn cursor(&self, workspace_id: Option<&str>) -> RecordCursor<'_> {
        RecordCursor {
            selection: self,
            workspace_id: workspace_id.map(str::to_string),
            index: 0,
            reader: None,
            last: self.plan.base_position,
        }
    }

    fn wanted(&self, record: &format::ArchivedRecord, workspace_id: Option<&str>) -> bool {
        match workspace_id {
            Some(id) => select::kept(record, id, &self.fencing),
            None => {
                record.record.workspace_id != DEPLOYMENT_RECORD
                    && !record.voided
                    && !self.fencing.fenced(&record.record)
            }
        }
    }
}

/// See [`RecordSelection::cursor`].
pub struct RecordCursor<'a> {
    selection: &'a RecordSelection,
    workspace_id: Option<String>,
    /// The plan's object being read, and its reader once opened.
    index: usize,
    reader: Option<RecordReader>,
    last: i64,
}

impl RecordCursor<'_> {
    pub async fn next(&mut self) -> Result<Option<JournalRecord>, BackupError> {
        let selection = self.selection;
        loop {
            let reader = match &mut self.reader {
                Some(reader) => reader,
                None => {
                    let Some(object) = selection.plan.objects.get(self.index) else {
                        return Ok(None);
                    };
                    self.reader.insert(selection.repository.records(object).await?)
                }
            };
            match reader.next().await? {
                Some(record) => {
                    if selection
                        .plan
                        .admit(self.index, record.record.seq, &mut self.last)
                        && selection.wanted(&record, self.workspace_id.as_deref())
                    {
                        return Ok(Some(record.record));
                    }
                }
                None => {
                    self.reader = None;
                    self.index += 1;
                }
            }
        }
    }
}

/// Restores a workspace into `store` (metadata) and `storage` (the target
/// region's default storage). `progress` is told how far it is.
pub async fn restore(
    store: &dyn MetadataStore,
    storage: &ArtifactStore,
    request: &RestoreRequest,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RestoreOutcome, BackupError> {
    if let Some(name) = &request.as_name {
        tandem_core::validation::validate_workspace_name(name)
            .map_err(|error| BackupError::invalid(error.message))?;
    }
    let repository = Repository::open_with(&request.from, &request.repository_options)?;
    repository.info().await?;
    let mut plan = plan(&repository, request).await?;

    let Survey {
        fencing,
        names,
        position,
        position_recorded_at,
    } = survey(&repository, &mut plan, &request.point, progress).await?;

    // The workspace: named, or the only one the backup holds.
    let name = match &request.workspace {
        Some(name) => name.clone(),
        None => {
            let single = plan
                .base
                .as_ref()
                .and_then(|base| (base.workspaces.len() == 1).then(|| base.workspaces[0].name.clone()));
            match single {
                Some(name) => name,
                None => {
                    return Err(BackupError::invalid(format!(
                        "name the workspace to restore (workspace): {} held {} at seq {position}",
                        plan.region,
                        names.keys().cloned().collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
    };
    let source_id = names.get(&name).cloned().ok_or_else(|| {
        BackupError::not_found(format!(
            "workspace '{name}' did not exist in {} at seq {position}",
            plan.region
        ))
    })?;
    let (target_id, target_name) = match &request.as_name {
        Some(new_name) => (tandem_core::ids::new_workspace_id(), new_name.clone()),
        None => (source_id.clone(), name.clone()),
    };
    check_target_free(store, &target_id, &target_name).await?;

    // The workspace's records at the position: how many, and its artifacts.
    let mut rewriter = select::Rewriter {
        target_id: target_id.clone(),
        target_name: target_name.clone(),
        ids: request.as_name.is_some().then(select::IdMap::default),
    };
    let mut artifacts = ArtifactSet::default();
    let mut records: u64 = 0;
    plan.scan(&repository, |record| {
        if select::kept(&record, &source_id, &fencing) {
            artifacts.observe(&rewriter.apply(record.record.change));
            records += 1;
        }
        Ok(())
    })
    .await?;

    let mut created: Vec<ArtifactKey> = Vec::new();
    let outcome = async {
        let bytes = copy_content(
            &repository,
            storage,
            &target_id,
            &artifacts,
            request.overwrite,
            progress,
            &mut created,
        )
        .await?;
        let written = write_metadata(
            store,
            &repository,
            &plan,
            &fencing,
            &source_id,
            &mut rewriter,
            records,
            progress,
        )
        .await?;
        // Who may use the workspace: the backup's principals the target
        // lacks, and the workspace's role assignments.
        let access = latest_access(&repository, &plan.region, position).await?;
        let principals = match &access {
            Some(snapshot) => restore_access(store, snapshot, &name, &target_name).await?,
            None => 0,
        };
        Ok::<_, BackupError>(RestoreOutcome {
            principals,
            workspace: target_name.clone(),
            workspace_id: target_id.clone(),
            source_region: plan.region.clone(),
            position,
            position_recorded_at,
            records: written,
            artifacts: artifacts.count(ContentArea::Artifacts),
            files: artifacts.count(ContentArea::Files),
            bytes,
        })
    }
    .await;
    if let Err(error) = &outcome {
        let unknown = matches!(
            error,
            BackupError::Store(StoreError::Database {
                outcome: WriteOutcome::Unknown,
                ..
            })
        );
        // A commit whose outcome is unknown may have succeeded: its
        // workspace would need the objects. Otherwise nothing refers to them.
        if !unknown {
            for key in &created {
                if let Err(cleanup) = storage.delete(key).await {
                    tracing::warn!(key = %key, error = %cleanup, "restore: could not delete an object it created");
                }
            }
        }
    }
    outcome
}

/// The access snapshot of the newest backup of `region` at or before
/// `position`, if any backup there has one.
async fn latest_access(
    repository: &Repository,
    region: &str,
    position: i64,
) -> Result<Option<tandem_core::access::AccessSnapshot>, BackupError> {
    let newest = repository
        .manifests()
        .await?
        .into_iter()
        .filter(|manifest| {
            manifest.region == region && manifest.position <= position && manifest.access.is_some()
        })
        .max_by_key(|manifest| (manifest.position, manifest.created_at));
    match newest.and_then(|manifest| manifest.access) {
        Some(object) => match repository
            .read_json::<crate::format::AccessDocument>(&object.key)
            .await?
        {
            Some(document) => Ok(Some(document.access)),
            None => Err(BackupError::corrupt(format!(
                "{} is missing from the repository",
                object.key
            ))),
        },
        None => Ok(None),
    }
}

/// Creates the snapshot's principals the target lacks (with their usable
/// tokens and deployment-wide roles), and gives every principal its role
/// assignments in the restored workspace (`source` in the backup, `target`
/// here). Returns how many principals were created.
async fn restore_access(
    store: &dyn MetadataStore,
    snapshot: &tandem_core::access::AccessSnapshot,
    source: &str,
    target: &str,
) -> Result<u64, BackupError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0);
    let mut created = std::collections::BTreeSet::new();
    for principal in &snapshot.principals {
        if store.principal(&principal.name).await?.is_some() {
            continue;
        }
        store
            .create_principal(&principal.name, &principal.kind, principal.password_hash.clone())
            .await?;
        if principal.disabled {
            store.set_principal_disabled(&principal.name, true).await?;
        }
        created.insert(principal.name.clone());
    }
    for token in &snapshot.tokens {
        let usable = token.revoked_at.is_none() && token.expires_at.is_none_or(|expires| expires > now);
        if usable && created.contains(&token.principal) && store.token(&token.token_id).await?.is_none() {
            store
                .create_token(
                    &token.token_id,
                    &token.principal,
                    &token.token_hash,
                    &token.description,
                    token.expires_at,
                )
                .await?;
        }
    }
    for assignment in &snapshot.roles {
        if store.principal(&assignment.principal).await?.is_none() {
            continue;
        }
        match assignment.workspace.as_deref() {
            None if created.contains(&assignment.principal) => {
                store
                    .assign_role(&assignment.principal, assignment.role, None)
                    .await?;
            }
            Some(workspace) if workspace == source => {
                store
                    .assign_role(&assignment.principal, assignment.role, Some(target))
                    .await?;
            }
            _ => {}
        }
    }
    if !created.is_empty() {
        tracing::info!(
            principals = created.len(),
            "restore: created the backup's principals the deployment lacked"
        );
    }
    Ok(created.len() as u64)
}

async fn check_target_free(
    store: &dyn MetadataStore,
    target_id: &str,
    target_name: &str,
) -> Result<(), BackupError> {
    for workspace in store.list_workspaces(ViewType::All).await? {
        if workspace.workspace_id == target_id || workspace.name == target_name {
            let deleted = if workspace.deletion_time.is_some() {
                " (a deleted workspace: recover it, purge it, or restore as a new workspace with --as)"
            } else {
                " (restore as a new workspace with --as)"
            };
            return Err(BackupError::conflict(format!(
                "cannot restore workspace '{target_name}' ({target_id}): workspace '{}' ({}) holds its id or name{deleted}",
                workspace.name, workspace.workspace_id
            )));
        }
    }
    Ok(())
}

/// Copies the blobs of the artifacts and files to the target workspace's
/// keys. Refuses
/// before copying anything if a blob is missing or if an object at a target
/// key holds other bytes (unless `overwrite`). Keys it creates are pushed to
/// `created` as they are written, for the caller to delete on failure.
async fn copy_content(
    repository: &Repository,
    storage: &ArtifactStore,
    target_id: &str,
    artifacts: &ArtifactSet,
    overwrite: bool,
    progress: &(dyn Fn(Progress) + Send + Sync),
    created: &mut Vec<ArtifactKey>,
) -> Result<u64, BackupError> {
    struct Copy {
        what: String,
        size: i64,
        sha256: String,
        blob: ArtifactKey,
        target: ArtifactKey,
        exists: bool,
    }
    let mut copies = Vec::new();
    let mut conflicts = Vec::new();
    for ((area, path), (size, sha256)) in &artifacts.0 {
        let noun = match area {
            ContentArea::Artifacts => "artifact",
            ContentArea::Files => "file",
        };
        let what = format!("{noun} '{path}'");
        if sha256.len() < 4 || !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(BackupError::corrupt(format!(
                "{what} has no valid SHA-256 in the journal ('{sha256}')"
            )));
        }
        let blob = repository.key(&format::blob_key(sha256))?;
        match repository.storage().head(&blob).await? {
            None => {
                return Err(BackupError::incomplete(format!(
                    "the blob of {what} ({}) is missing from the repository",
                    blob
                )))
            }
            Some(found) if found as i64 != *size => {
                return Err(BackupError::corrupt(format!(
                    "{blob} ({what}) is corrupt: {found} bytes, the journal recorded {size}"
                )))
            }
            Some(_) => {}
        }
        let target = workspace_content_key(target_id, area.as_str(), path)
            .map_err(|error| BackupError::corrupt(format!("{noun} path '{path}': {error}")))?;
        let exists = match storage.head(&target).await? {
            None => false,
            Some(_) if digest_of(storage, &target).await? == *sha256 => continue,
            Some(_) => {
                conflicts.push(format!("{}/{path}", area.as_str()));
                true
            }
        };
        copies.push(Copy {
            what,
            size: *size,
            sha256: sha256.clone(),
            blob,
            target,
            exists,
        });
    }
    if !conflicts.is_empty() && !overwrite {
        return Err(BackupError::conflict(format!(
            "{} object(s) already exist at the target with other content (restore with overwrite to replace them): {}",
            conflicts.len(),
            conflicts.join(", ")
        )));
    }
    let total: u64 = copies.iter().map(|copy| copy.size as u64).sum();
    let mut done: u64 = 0;
    progress(Progress::new("artifacts", done as i64, total as i64, "bytes"));
    for copy in copies {
        let (_, stream) = repository.storage().get_stream(&copy.blob).await?;
        let body = stream.map(|chunk| chunk.map_err(|error| std::io::Error::other(error.to_string())));
        if !copy.exists {
            created.push(copy.target.clone());
        }
        let written = storage.put_stream(&copy.target, body, None).await?;
        if written.sha256 != copy.sha256 || written.size as i64 != copy.size {
            return Err(BackupError::corrupt(format!(
                "{} ({}) is corrupt: {} bytes with SHA-256 {}, the journal recorded {} bytes with SHA-256 {}",
                copy.blob, copy.what, written.size, written.sha256, copy.size, copy.sha256
            )));
        }
        done += written.size;
        progress(Progress::new("artifacts", done as i64, total as i64, "bytes"));
    }
    Ok(total)
}

async fn digest_of(storage: &ArtifactStore, key: &ArtifactKey) -> Result<String, BackupError> {
    use sha2::{Digest, Sha256};
    let (_, mut stream) = storage.get_stream(key).await?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Streams the workspace's records into one metadata transaction.
#[allow(clippy::too_many_arguments)]
async fn write_metadata(
    store: &dyn MetadataStore,
    repository: &Repository,
    plan: &Plan,
    fencing: &Fencing,
    source_id: &str,
    rewriter: &mut select::Rewriter,
    total: u64,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<i64, BackupError> {
    let mut session = store
        .begin_restore(&rewriter.target_id, &rewriter.target_name)
        .await?;
    let mut chunk: Vec<Change> = Vec::with_capacity(CHUNK);
    let mut done: u64 = 0;
    let mut last = plan.base_position;
    for (index, object) in plan.objects.iter().enumerate() {
        let mut reader = repository.records(object).await?;
        while let Some(record) = reader.next().await? {
            if !plan.admit(index, record.record.seq, &mut last) || !select::kept(&record, source_id, fencing)
            {
                continue;
            }
            chunk.push(rewriter.apply(record.record.change));
            if chunk.len() == CHUNK {
                done += chunk.len() as u64;
                session.apply(std::mem::take(&mut chunk)).await?;
                progress(Progress::new("metadata", done as i64, total as i64, "records"));
            }
        }
    }
    done += chunk.len() as u64;
    session.apply(chunk).await?;
    progress(Progress::new("metadata", done as i64, total as i64, "records"));
    Ok(session.commit().await?)
}
