//! Which archived records make up a workspace at the restore's target, and
//! how they are rewritten for the target workspace. Pure functions of the
//! records: unit-tested here, used by `restore::run`.

use std::collections::BTreeMap;

use tandem_core::journal::{Change, JournalRecord, DEPLOYMENT_RECORD};

use crate::format::ArchivedRecord;

/// Epoch fencing as the store decides it (`tandem-store/src/sql/epochs.rs`):
/// a change of epoch `e` is fenced when the first epoch after `e` began
/// with a fork that lacks it. Changes with a causal context (`seen`: the
/// multi-writer classes) merge and are never fenced.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fencing {
    /// Every `epoch_began` read: epoch → fork.
    epochs: BTreeMap<i64, BTreeMap<String, i64>>,
}

impl Fencing {
    pub fn observe(&mut self, record: &JournalRecord) {
        if let Change::EpochBegan { epoch, fork, .. } = &record.change {
            self.epochs.insert(*epoch, fork.clone());
        }
    }

    pub fn fenced(&self, record: &JournalRecord) -> bool {
        if record.seen.is_some() {
            return false;
        }
        match self.epochs.range(record.epoch + 1..).next() {
            Some((_, fork)) => record.origin_seq > fork.get(&record.origin_region).copied().unwrap_or(0),
            None => false,
        }
    }
}

/// Whether `record` is part of workspace `workspace_id`'s state: its own,
/// not voided when archived, not fenced by an epoch the archive shows.
pub(crate) fn kept(record: &ArchivedRecord, workspace_id: &str, fencing: &Fencing) -> bool {
    record.record.workspace_id == workspace_id
        && record.record.workspace_id != DEPLOYMENT_RECORD
        && !record.voided
        && !fencing.fenced(&record.record)
}

/// The change as the target workspace writes it: the workspace's creation
/// takes the target's id and name; every other value (run ids, names,
/// timestamps, experiment ids, versions) is kept, so the restored state is
/// the source's at that moment.
pub(crate) fn rewrite(change: Change, target_id: &str, target_name: &str) -> Change {
    match change {
        Change::WorkspaceCreated {
            description, time, ..
        } => Change::WorkspaceCreated {
            workspace_id: target_id.to_string(),
            name: target_name.to_string(),
            description,
            time,
        },
        other => other,
    }
}

/// The artifacts of a workspace as its records leave them: path → (size, sha256).
#[derive(Debug, Default)]
pub(crate) struct ArtifactSet(pub BTreeMap<String, (i64, String)>);

impl ArtifactSet {
    pub fn observe(&mut self, change: &Change) {
        match change {
            Change::ArtifactWritten { path, size, sha256, .. } => {
                self.0.insert(path.clone(), (*size, sha256.clone()));
            }
            Change::ArtifactDeleted { path } => {
                self.0.remove(path);
            }
            // The workspace file share (Change::FileWritten, bytes at
            // `workspaces/<id>/files/<path>`) is being built in parallel:
            // once it lands, its files are tracked here like artifacts and
            // copied by `restore::copy_content` to the file share's key.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64, workspace: &str, origin: &str, origin_seq: i64, epoch: i64, change: Change) -> ArchivedRecord {
        ArchivedRecord {
            record: JournalRecord {
                seq,
                workspace_id: workspace.to_string(),
                hlc: seq as u64,
                origin_region: origin.to_string(),
                origin_seq,
                epoch,
                format: tandem_core::journal::FORMAT_VERSION,
                recorded_at: seq,
                change,
                seen: None,
            },
            voided: false,
        }
    }

    fn tag(key: &str) -> Change {
        Change::ExperimentTagSet {
            experiment_id: "0".to_string(),
            tag: tandem_core::model::Tag {
                key: key.to_string(),
                value: String::new(),
            },
        }
    }

    #[test]
    fn changes_beyond_the_next_epochs_fork_are_fenced() {
        let mut fencing = Fencing::default();
        let kept_change = record(1, "w", "eastus", 1, 1, tag("a"));
        let lost_change = record(2, "w", "eastus", 2, 1, tag("b"));
        let epoch = record(
            3,
            DEPLOYMENT_RECORD,
            "westus",
            7,
            2,
            Change::EpochBegan {
                epoch: 2,
                primary: "westus".to_string(),
                fork: BTreeMap::from([("eastus".to_string(), 1)]),
                time: 3,
            },
        );
        let later = record(4, "w", "westus", 8, 2, tag("c"));
        for record in [&kept_change, &lost_change, &epoch, &later] {
            fencing.observe(&record.record);
        }
        assert!(kept(&kept_change, "w", &fencing));
        assert!(!kept(&lost_change, "w", &fencing), "beyond the fork of epoch 2");
        assert!(kept(&later, "w", &fencing));
        assert!(!kept(&epoch, DEPLOYMENT_RECORD, &fencing), "deployment records are never restored");
        assert!(!kept(&later, "other", &fencing));
        let mut voided = later.clone();
        voided.voided = true;
        assert!(!kept(&voided, "w", &fencing));
        let mut merged = lost_change.clone();
        merged.record.seen = Some(BTreeMap::new());
        assert!(kept(&merged, "w", &fencing), "multi-writer changes merge, never fenced");
    }

    #[test]
    fn the_workspace_creation_takes_the_targets_id_and_name() {
        let created = Change::WorkspaceCreated {
            workspace_id: "old".to_string(),
            name: "team".to_string(),
            description: "d".to_string(),
            time: 5,
        };
        assert_eq!(
            rewrite(created, "new", "team-restored"),
            Change::WorkspaceCreated {
                workspace_id: "new".to_string(),
                name: "team-restored".to_string(),
                description: "d".to_string(),
                time: 5,
            }
        );
        assert_eq!(rewrite(tag("x"), "new", "n"), tag("x"));
    }

    #[test]
    fn artifacts_follow_writes_and_deletes() {
        let mut set = ArtifactSet::default();
        let write = |path: &str, sha: &str| Change::ArtifactWritten {
            path: path.to_string(),
            size: 3,
            sha256: sha.to_string(),
            time: 1,
        };
        set.observe(&write("a", "1"));
        set.observe(&write("b", "2"));
        set.observe(&write("a", "3"));
        set.observe(&Change::ArtifactDeleted { path: "b".to_string() });
        assert_eq!(set.0, BTreeMap::from([("a".to_string(), (3, "3".to_string()))]));
    }
}
