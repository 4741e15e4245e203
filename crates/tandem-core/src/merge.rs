//! Merging concurrent changes of multi-writer (`hot-hot`) classes.
//!
//! Every region accepts writes of a hot-hot class, so two regions can change
//! the same thing before either has seen the other's change. A change is
//! broken into the *registers* it writes ([`touches`]: a run's tag `k`, a
//! model version's stage, an experiment's name, ...). A region merging a
//! record compares, register by register, the record's [`Version`] with the
//! version it holds ([`decide`]):
//!
//! - the record saw the held version (its `seen` covers it): it is later,
//!   apply it;
//! - the held version saw the record: the record is superseded, skip it;
//! - neither saw the other: they are concurrent, a conflict. A delete wins
//!   over a write; otherwise the higher (hybrid logical clock, origin region)
//!   wins. This is Cosmos DB's last-writer-wins policy with its delete-wins
//!   rule.
//!
//! Every region applies the same rule to the same two versions, so all
//! regions converge whatever order the records reach them in, and each
//! records the same [`Conflict`], with both versions, for people to review.
//!
//! Metrics, dataset inputs and model outputs are append-only and never
//! conflict. Identifiers that would collide (experiment ids, model version
//! numbers) are allocated from per-region stripes ([`IdStripe`]) instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::journal::{Change, JournalRecord};
use crate::model::RUN_NAME_TAG;

/// What a change does to a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write,
    Delete,
}

/// One register a change writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    pub key: String,
    pub op: Op,
    /// Registers of the objects this one lives in that a hard delete removes
    /// with everything inside (a registered model, a model version): a write
    /// into an object deleted concurrently loses to the delete.
    pub parents: Vec<String>,
}

impl Touch {
    fn write(key: String) -> Touch {
        Touch {
            key,
            op: Op::Write,
            parents: Vec::new(),
        }
    }

    fn delete(key: String) -> Touch {
        Touch {
            key,
            op: Op::Delete,
            parents: Vec::new(),
        }
    }

    fn within(mut self, parents: &[String]) -> Touch {
        self.parents = parents.to_vec();
        self
    }
}

pub fn experiment_key(experiment_id: &str) -> String {
    format!("exp/{experiment_id}")
}

pub fn registered_model_key(name: &str) -> String {
    format!("rm/{name}")
}

pub fn model_version_key(name: &str, version: &str) -> String {
    format!("mv/{name}/{version}")
}

/// The register holding who owns an experiment name.
pub fn experiment_name_claim(name: &str) -> String {
    format!("expname/{name}")
}

/// The registers of the items `change` writes inside: a purge of one of
/// them (a tombstone on its register) that the change's writer had not
/// seen means nothing of the change applies, its append-only parts
/// (metrics, inputs) included — they would not have survived the purge in
/// the region that ordered it first. Absence is not enough: an owner
/// written in a third region may simply not have arrived yet.
pub fn owners(change: &Change) -> Vec<String> {
    use Change::*;
    let run = |run_id: &str| vec![format!("run/{run_id}")];
    let logged_model = |model_id: &str| vec![format!("lm/{model_id}")];
    match change {
        RunCreated { experiment_id, .. } | LoggedModelCreated { experiment_id, .. } => {
            vec![experiment_key(experiment_id)]
        }
        ExperimentRenamed { experiment_id, .. }
        | ExperimentDeleted { experiment_id, .. }
        | ExperimentRestored { experiment_id, .. }
        | ExperimentTagSet { experiment_id, .. }
        | ExperimentTagDeleted { experiment_id, .. } => vec![experiment_key(experiment_id)],
        RunUpdated { run_id, .. }
        | RunDeleted { run_id, .. }
        | RunRestored { run_id }
        | RunDataLogged { run_id, .. }
        | RunTagDeleted { run_id, .. }
        | RunInputsLogged { run_id, .. }
        | RunOutputsLogged { run_id, .. } => run(run_id),
        LoggedModelUpdated { model_id, .. }
        | LoggedModelTagsSet { model_id, .. }
        | LoggedModelTagDeleted { model_id, .. }
        | LoggedModelParamsLogged { model_id, .. }
        | LoggedModelDeleted { model_id, .. }
        | LoggedModelRestored { model_id, .. } => logged_model(model_id),
        _ => Vec::new(),
    }
}

/// The registers `change` writes. Empty for append-only changes.
pub fn touches(change: &Change) -> Vec<Touch> {
    use Change::*;
    match change {
        WorkspaceCreated { .. }
        | WorkspaceUpdated { .. }
        | WorkspaceDeleted { .. }
        | WorkspaceRestored { .. }
        | WorkspaceRetentionSet { .. }
        | WorkspaceQuotaSet { .. }
        | WorkspacePurged { .. }
        | EpochBegan { .. }
        | PrincipalCreated { .. }
        | PrincipalPasswordSet { .. }
        | PrincipalDisabled { .. }
        | PrincipalDeleted { .. }
        | TokenCreated { .. }
        | TokenRevoked { .. }
        | RoleAssigned { .. }
        | RoleRemoved { .. } => Vec::new(),
        // A purge removes the item for good, as the hard deletes of format 2
        // did: a tombstone on the item's own register, which beats any
        // concurrent write to it. Soft deletes and recoveries are a
        // lifecycle register (`…/life`) under it, like experiments and runs.
        ExperimentPurged { experiment_id, .. } | ExperimentMovedOut { experiment_id, .. } => {
            vec![Touch::delete(experiment_key(experiment_id))]
        }
        RunPurged { run_id, .. } => vec![Touch::delete(format!("run/{run_id}"))],
        LoggedModelRestored { model_id, .. } => vec![Touch::write(format!("lm/{model_id}/life"))],
        LoggedModelPurged { model_id, .. } => vec![Touch::delete(format!("lm/{model_id}"))],
        RegisteredModelRestored { name, .. } => {
            vec![Touch::write(format!("rm/{name}/life")).within(&[registered_model_key(name)])]
        }
        RegisteredModelPurged { name, .. } | RegisteredModelMovedOut { name, .. } => {
            vec![Touch::delete(registered_model_key(name))]
        }
        ModelVersionRestored { name, version, .. } => {
            vec![Touch::write(format!("mv/{name}/{version}/life"))
                .within(&[registered_model_key(name), model_version_key(name, version)])]
        }
        ModelVersionPurged { name, version, .. } => {
            vec![Touch::delete(model_version_key(name, version)).within(&[registered_model_key(name)])]
        }
        ExperimentCreated {
            experiment_id, tags, ..
        } => {
            let mut touches = vec![
                Touch::write(experiment_key(experiment_id)),
                Touch::write(format!("exp/{experiment_id}/name")),
            ];
            touches.extend(
                tags.iter()
                    .map(|tag| Touch::write(format!("exp/{experiment_id}/tag/{}", tag.key))),
            );
            touches
        }
        ExperimentRenamed { experiment_id, .. } => vec![Touch::write(format!("exp/{experiment_id}/name"))],
        ExperimentDeleted { experiment_id, .. } => vec![Touch::delete(format!("exp/{experiment_id}/life"))],
        ExperimentRestored { experiment_id, .. } => vec![Touch::write(format!("exp/{experiment_id}/life"))],
        ExperimentTagSet { experiment_id, tag } => {
            vec![Touch::write(format!("exp/{experiment_id}/tag/{}", tag.key))]
        }
        ExperimentTagDeleted { experiment_id, key } => {
            vec![Touch::delete(format!("exp/{experiment_id}/tag/{key}"))]
        }
        RunCreated { run_id, .. } => vec![Touch::write(format!("run/{run_id}"))],
        RunUpdated {
            run_id,
            status,
            end_time,
            run_name,
        } => {
            let mut touches = Vec::new();
            if status.is_some() {
                touches.push(Touch::write(format!("run/{run_id}/status")));
            }
            if end_time.is_some() {
                touches.push(Touch::write(format!("run/{run_id}/end_time")));
            }
            if run_name.is_some() {
                touches.push(Touch::write(format!("run/{run_id}/tag/{RUN_NAME_TAG}")));
            }
            touches
        }
        RunDeleted { run_id, .. } => vec![Touch::delete(format!("run/{run_id}/life"))],
        RunRestored { run_id } => vec![Touch::write(format!("run/{run_id}/life"))],
        RunDataLogged {
            run_id, params, tags, ..
        } => params
            .iter()
            .map(|param| Touch::write(format!("run/{run_id}/param/{}", param.key)))
            .chain(
                tags.iter()
                    .map(|tag| Touch::write(format!("run/{run_id}/tag/{}", tag.key))),
            )
            .collect(),
        RunTagDeleted { run_id, key } => vec![Touch::delete(format!("run/{run_id}/tag/{key}"))],
        RunInputsLogged { .. } | RunOutputsLogged { .. } => Vec::new(),
        LoggedModelCreated { model_id, .. } => vec![Touch::write(format!("lm/{model_id}"))],
        LoggedModelUpdated { model_id, .. } => vec![Touch::write(format!("lm/{model_id}/status"))],
        LoggedModelTagsSet { model_id, tags, .. } => tags
            .iter()
            .map(|tag| Touch::write(format!("lm/{model_id}/tag/{}", tag.key)))
            .collect(),
        LoggedModelTagDeleted { model_id, key, .. } => {
            vec![Touch::delete(format!("lm/{model_id}/tag/{key}"))]
        }
        LoggedModelParamsLogged { model_id, params, .. } => params
            .iter()
            .map(|param| Touch::write(format!("lm/{model_id}/param/{}", param.key)))
            .collect(),
        LoggedModelDeleted { model_id, .. } => vec![Touch::delete(format!("lm/{model_id}/life"))],
        RegisteredModelCreated { name, tags, .. } => {
            let parent = [registered_model_key(name)];
            let mut touches = vec![Touch::write(registered_model_key(name))];
            touches.extend(
                tags.iter()
                    .map(|tag| Touch::write(format!("rm/{name}/tag/{}", tag.key)).within(&parent)),
            );
            touches
        }
        // Refused while the registry is multi-writer (see the store); a
        // rename changes the identity every other register hangs on.
        RegisteredModelRenamed { name, new_name, .. } => vec![
            Touch::delete(registered_model_key(name)),
            Touch::write(registered_model_key(new_name)),
        ],
        RegisteredModelUpdated { name, .. } => {
            vec![Touch::write(format!("rm/{name}/description")).within(&[registered_model_key(name)])]
        }
        RegisteredModelDeleted { name, .. } => {
            vec![Touch::delete(format!("rm/{name}/life")).within(&[registered_model_key(name)])]
        }
        RegisteredModelTagSet { name, tag } => {
            vec![Touch::write(format!("rm/{name}/tag/{}", tag.key)).within(&[registered_model_key(name)])]
        }
        RegisteredModelTagDeleted { name, key } => {
            vec![Touch::delete(format!("rm/{name}/tag/{key}")).within(&[registered_model_key(name)])]
        }
        RegisteredModelAliasSet { name, alias, version } => {
            vec![Touch::write(format!("rm/{name}/alias/{alias}"))
                .within(&[registered_model_key(name), model_version_key(name, version)])]
        }
        RegisteredModelAliasDeleted { name, alias } => {
            vec![Touch::delete(format!("rm/{name}/alias/{alias}")).within(&[registered_model_key(name)])]
        }
        ModelVersionCreated {
            name, version, tags, ..
        } => {
            let parents = [registered_model_key(name)];
            let mut touches = vec![Touch::write(model_version_key(name, version)).within(&parents)];
            let parents = [registered_model_key(name), model_version_key(name, version)];
            touches
                .extend(tags.iter().map(|tag| {
                    Touch::write(format!("mv/{name}/{version}/tag/{}", tag.key)).within(&parents)
                }));
            touches
        }
        ModelVersionUpdated { name, version, .. } => {
            vec![Touch::write(format!("mv/{name}/{version}/description"))
                .within(&[registered_model_key(name), model_version_key(name, version)])]
        }
        ModelVersionStageSet {
            name,
            version,
            archived_versions,
            ..
        } => std::iter::once(version)
            .chain(archived_versions.iter())
            .map(|version| {
                Touch::write(format!("mv/{name}/{version}/stage"))
                    .within(&[registered_model_key(name), model_version_key(name, version)])
            })
            .collect(),
        ModelVersionDeleted { name, version, .. } => {
            vec![Touch::delete(format!("mv/{name}/{version}/life"))
                .within(&[registered_model_key(name), model_version_key(name, version)])]
        }
        ModelVersionTagSet { name, version, tag } => {
            vec![Touch::write(format!("mv/{name}/{version}/tag/{}", tag.key))
                .within(&[registered_model_key(name), model_version_key(name, version)])]
        }
        ModelVersionTagDeleted { name, version, key } => {
            vec![Touch::delete(format!("mv/{name}/{version}/tag/{key}"))
                .within(&[registered_model_key(name), model_version_key(name, version)])]
        }
        ArtifactWritten { path, .. } => vec![Touch::write(format!("art/{path}"))],
        ArtifactDeleted { path } => vec![Touch::delete(format!("art/{path}"))],
        FileWritten { path, .. } => vec![Touch::write(format!("file/{path}"))],
        FileDeleted { path } => vec![Touch::delete(format!("file/{path}"))],
        OriginRecorded { origin } => vec![Touch::write(format!(
            "origin/{}/{}/{}",
            origin.source,
            origin.kind.as_str(),
            origin.source_id
        ))],
    }
}

/// The version of a register: which write set it, and what that write's
/// origin had seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub hlc: u64,
    pub origin_region: String,
    pub origin_seq: i64,
    #[serde(default)]
    pub seen: BTreeMap<String, i64>,
    /// Whether the write was a delete (a tombstone).
    pub deleted: bool,
}

impl Version {
    pub fn of(record: &JournalRecord, op: Op) -> Version {
        Version {
            hlc: record.hlc,
            origin_region: record.origin_region.clone(),
            origin_seq: record.origin_seq,
            seen: record.seen.clone().unwrap_or_default(),
            deleted: op == Op::Delete,
        }
    }

    /// Whether the writer of `self` had applied `other` when it wrote.
    /// Changes of one origin are applied everywhere in their origin order, so
    /// a later change of the same origin saw every earlier one.
    pub fn saw(&self, other: &Version) -> bool {
        if self.origin_region == other.origin_region {
            return self.origin_seq >= other.origin_seq;
        }
        self.seen
            .get(&other.origin_region)
            .is_some_and(|seen| *seen >= other.origin_seq)
    }

    /// Between two concurrent versions, whether `self` wins: a delete over a
    /// write, else the higher (hlc, origin region).
    pub fn beats(&self, other: &Version) -> bool {
        match (self.deleted, other.deleted) {
            (true, false) => true,
            (false, true) => false,
            _ => (self.hlc, &self.origin_region) > (other.hlc, &other.origin_region),
        }
    }
}

/// What merging a record's write into one register decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No concurrent version: apply.
    Apply,
    /// The held version already saw this write: skip it, no conflict.
    Superseded,
    /// Concurrent with the held version, and wins: apply, record a conflict.
    Wins,
    /// Concurrent with the held version, and loses: skip, record a conflict.
    Loses,
}

impl Outcome {
    pub fn applies(self) -> bool {
        matches!(self, Outcome::Apply | Outcome::Wins)
    }
}

pub fn decide(incoming: &Version, held: Option<&Version>) -> Outcome {
    let Some(held) = held else {
        return Outcome::Apply;
    };
    if incoming.saw(held) {
        Outcome::Apply
    } else if held.saw(incoming) {
        Outcome::Superseded
    } else if incoming.beats(held) {
        Outcome::Wins
    } else {
        Outcome::Loses
    }
}

/// `change` with only the parts whose registers `keep` accepts; `None` when
/// nothing of it remains. Append-only parts (metrics, inputs) always remain.
pub fn retain(change: &Change, keep: &dyn Fn(&str) -> bool) -> Option<Change> {
    use Change::*;
    let mut change = change.clone();
    let keeps_all = |change: &Change| touches(change).iter().all(|touch| keep(&touch.key));
    match &mut change {
        RunUpdated {
            run_id,
            status,
            end_time,
            run_name,
        } => {
            if !keep(&format!("run/{run_id}/status")) {
                *status = None;
            }
            if !keep(&format!("run/{run_id}/end_time")) {
                *end_time = None;
            }
            if !keep(&format!("run/{run_id}/tag/{RUN_NAME_TAG}")) {
                *run_name = None;
            }
            if status.is_none() && end_time.is_none() && run_name.is_none() {
                return None;
            }
        }
        RunDataLogged {
            run_id,
            metrics,
            params,
            tags,
        } => {
            params.retain(|param| keep(&format!("run/{run_id}/param/{}", param.key)));
            tags.retain(|tag| keep(&format!("run/{run_id}/tag/{}", tag.key)));
            if metrics.is_empty() && params.is_empty() && tags.is_empty() {
                return None;
            }
        }
        LoggedModelTagsSet { model_id, tags, .. } => {
            tags.retain(|tag| keep(&format!("lm/{model_id}/tag/{}", tag.key)));
            if tags.is_empty() {
                return None;
            }
        }
        LoggedModelParamsLogged { model_id, params, .. } => {
            params.retain(|param| keep(&format!("lm/{model_id}/param/{}", param.key)));
            if params.is_empty() {
                return None;
            }
        }
        ModelVersionStageSet {
            name,
            version,
            archived_versions,
            ..
        } => {
            // Archiving the others is a consequence of the promotion: if the
            // promotion lost, none of it happens.
            if !keep(&format!("mv/{name}/{version}/stage")) {
                return None;
            }
            archived_versions.retain(|archived| keep(&format!("mv/{name}/{archived}/stage")));
        }
        ExperimentCreated {
            experiment_id, tags, ..
        } => {
            if !keep(&experiment_key(experiment_id)) {
                return None;
            }
            tags.retain(|tag| keep(&format!("exp/{experiment_id}/tag/{}", tag.key)));
        }
        ModelVersionCreated {
            name, version, tags, ..
        } => {
            if !keep(&model_version_key(name, version)) {
                return None;
            }
            tags.retain(|tag| keep(&format!("mv/{name}/{version}/tag/{}", tag.key)));
        }
        RegisteredModelCreated { name, tags, .. } => {
            if !keep(&registered_model_key(name)) {
                return None;
            }
            tags.retain(|tag| keep(&format!("rm/{name}/tag/{}", tag.key)));
        }
        other => {
            if !keeps_all(other) {
                return None;
            }
        }
    }
    Some(change)
}

/// One side of a conflict: the change and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConflictSide {
    pub origin_region: String,
    pub origin_seq: i64,
    pub hlc: u64,
    /// The whole change as journaled (absent if the journal no longer holds
    /// it, for example after a restore that started past it).
    #[schema(value_type = Option<Object>)]
    pub change: Option<Change>,
}

/// A conflict between concurrent writes of one register, as every region
/// that merged them records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conflict {
    /// Identical in every region: derived from the register and both sides.
    pub id: String,
    pub workspace_id: String,
    pub register: String,
    /// `last writer wins`, `delete wins`, or `name taken`.
    pub resolution: String,
    pub winner: ConflictSide,
    pub loser: ConflictSide,
    /// When this region merged the losing or winning record (ms).
    pub detected_at: i64,
}

impl Conflict {
    /// The id every region derives for the same conflict.
    pub fn derive_id(workspace_id: &str, register: &str, winner: &Version, loser: &Version) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!(
            "{workspace_id}\n{register}\n{}:{}\n{}:{}",
            winner.origin_region, winner.origin_seq, loser.origin_region, loser.origin_seq
        ));
        hex::encode(&digest[..8])
    }

    pub fn resolution(winner: &Version, loser: &Version) -> &'static str {
        if winner.deleted && !loser.deleted {
            "delete wins"
        } else {
            "last writer wins"
        }
    }
}

/// How a region allocates identifiers that must never collide with another
/// region's (experiment ids, model version numbers) while several regions
/// write: region `slot` of `stride` regions takes the numbers `n` with
/// `n % stride == slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdStripe {
    pub slot: u64,
    pub stride: u64,
}

impl IdStripe {
    /// The smallest number of this region's stripe that is at least `floor`.
    pub fn next_at_least(self, floor: i64) -> i64 {
        let floor = floor.max(0) as u64;
        let stride = self.stride.max(1);
        let base = floor - floor % stride + self.slot % stride;
        (if base < floor { base + stride } else { base }) as i64
    }
}

/// The name an experiment gets when it lost the race for its name to a
/// concurrent creation or rename in another region. Unique because the id is.
pub fn conflict_name(name: &str, experiment_id: &str) -> String {
    format!("{name} (conflict {experiment_id})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(region: &str, seq: i64, hlc: u64, seen: &[(&str, i64)], deleted: bool) -> Version {
        Version {
            hlc,
            origin_region: region.to_string(),
            origin_seq: seq,
            seen: seen.iter().map(|(r, s)| (r.to_string(), *s)).collect(),
            deleted,
        }
    }

    #[test]
    fn causality_decides_before_the_clock() {
        let a = version("a", 5, 100, &[], false);
        // b wrote after applying a's 5th change: later, whatever its clock says.
        let b_after = version("b", 3, 90, &[("a", 5)], false);
        assert_eq!(decide(&b_after, Some(&a)), Outcome::Apply);
        assert_eq!(decide(&a, Some(&b_after)), Outcome::Superseded);
    }

    #[test]
    fn concurrent_writes_resolve_the_same_way_from_both_sides() {
        let a = version("a", 5, 100, &[("b", 1)], false);
        let b = version("b", 3, 100, &[("a", 4)], false);
        // Same clock: the region name breaks the tie, from either side.
        assert_eq!(decide(&b, Some(&a)), Outcome::Wins);
        assert_eq!(decide(&a, Some(&b)), Outcome::Loses);
        let later = version("a", 6, 101, &[("b", 1)], false);
        assert_eq!(decide(&later, Some(&b)), Outcome::Wins);
        assert_eq!(decide(&b, Some(&later)), Outcome::Loses);
    }

    #[test]
    fn a_delete_wins_over_a_later_concurrent_write() {
        let delete = version("a", 5, 100, &[], true);
        let write = version("b", 3, 500, &[], false);
        assert_eq!(decide(&write, Some(&delete)), Outcome::Loses);
        assert_eq!(decide(&delete, Some(&write)), Outcome::Wins);
        // A write that saw the delete is simply later.
        let recreate = version("b", 4, 600, &[("a", 5)], false);
        assert_eq!(decide(&recreate, Some(&delete)), Outcome::Apply);
    }

    #[test]
    fn retain_keeps_metrics_and_drops_losing_parts() {
        use crate::model::{Metric, Param, Tag};
        let change = Change::RunDataLogged {
            run_id: "r".into(),
            metrics: vec![Metric {
                key: "m".into(),
                value: 1.0,
                timestamp: 1,
                step: 0,
                dataset_name: None,
                dataset_digest: None,
                model_id: None,
                run_id: None,
            }],
            params: vec![Param {
                key: "p".into(),
                value: "1".into(),
            }],
            tags: vec![Tag::new("t", "x"), Tag::new("u", "y")],
        };
        let kept = retain(&change, &|key| key != "run/r/tag/t" && key != "run/r/param/p").unwrap();
        let Change::RunDataLogged {
            metrics,
            params,
            tags,
            ..
        } = kept
        else {
            panic!("variant changed")
        };
        assert_eq!(metrics.len(), 1);
        assert!(params.is_empty());
        assert_eq!(tags, vec![Tag::new("u", "y")]);
        let tag_only = Change::RunTagDeleted {
            run_id: "r".into(),
            key: "t".into(),
        };
        assert_eq!(retain(&tag_only, &|_| false), None);
    }

    #[test]
    fn stripes_never_meet() {
        let a = IdStripe { slot: 0, stride: 2 };
        let b = IdStripe { slot: 1, stride: 2 };
        assert_eq!(a.next_at_least(1), 2);
        assert_eq!(b.next_at_least(1), 1);
        assert_eq!(a.next_at_least(4), 4);
        assert_eq!(b.next_at_least(4), 5);
        for floor in 0..50 {
            assert_ne!(a.next_at_least(floor), b.next_at_least(floor));
            assert!(a.next_at_least(floor) >= floor && b.next_at_least(floor) >= floor);
        }
    }

    #[test]
    fn conflict_ids_agree_across_regions() {
        let a = version("a", 5, 100, &[], false);
        let b = version("b", 3, 90, &[], false);
        assert_eq!(
            Conflict::derive_id("w", "run/r/tag/t", &a, &b),
            Conflict::derive_id("w", "run/r/tag/t", &a, &b)
        );
        assert_ne!(
            Conflict::derive_id("w", "run/r/tag/t", &a, &b),
            Conflict::derive_id("w", "run/r/tag/t", &b, &a)
        );
    }
}
