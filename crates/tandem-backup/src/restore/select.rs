//! Which archived records make up a workspace at the restore's target, and
//! how they are rewritten for the target workspace. Pure functions of the
//! records: unit-tested here, used by `restore::run`.

use std::collections::BTreeMap;

use tandem_core::journal::{Change, ContentArea, JournalRecord, DEPLOYMENT_RECORD};

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

/// New identities for a restore as a new workspace (`--as`). Run and
/// logged model ids are unique across a region's workspaces (they are the
/// keys of `runs` and `logged_models`), so a copy beside its original needs
/// its own: every run and logged model the records create gets a fresh id,
/// and every reference to it — in any string of any later change: artifact
/// URIs and paths, `runs:/<id>/…` sources, `mlflow.parentRunId` tags — is
/// rewritten, so the copy is the original's state with only its ids renamed.
/// Ids are 32 lowercase hex characters (`m-` and 32 for logged models);
/// references are found as whole 32-hex tokens, which is what makes them
/// recognisable anywhere without knowing each field.
#[derive(Debug, Default)]
pub(crate) struct IdMap {
    /// Old 32-hex token → new one.
    tokens: std::collections::HashMap<String, String>,
}

fn hex32(text: &str) -> Option<&str> {
    (text.len() == 32 && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))).then_some(text)
}

impl IdMap {
    /// `change` with the identities of this copy, learning new ones from
    /// the creations it sees (the same map gives the same ids on every pass).
    pub fn rename(&mut self, change: Change) -> Change {
        let created = match &change {
            Change::RunCreated { run_id, .. } => hex32(run_id),
            Change::LoggedModelCreated { model_id, .. } => model_id.strip_prefix("m-").and_then(hex32),
            _ => None,
        };
        if let Some(token) = created {
            self.tokens
                .entry(token.to_string())
                .or_insert_with(tandem_core::ids::new_run_id);
        }
        if self.tokens.is_empty() {
            return change;
        }
        // An origin names the copy here (renamed) and the object at its
        // source, whose id is the source's and must stay as it is.
        if let Change::OriginRecorded { mut origin } = change {
            if let Some(renamed) = self.rewrite_text(&origin.target_id) {
                origin.target_id = renamed;
            }
            return Change::OriginRecorded { origin };
        }
        let mut value = serde_json::to_value(&change).expect("changes encode");
        if !self.rewrite_value(&mut value) {
            return change;
        }
        serde_json::from_value(value).expect("a renamed change decodes as the change it was")
    }

    fn rewrite_value(&self, value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(text) => match self.rewrite_text(text) {
                Some(renamed) => {
                    *text = renamed;
                    true
                }
                None => false,
            },
            serde_json::Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.rewrite_value(item) | changed),
            serde_json::Value::Object(fields) => fields
                .values_mut()
                .fold(false, |changed, item| self.rewrite_value(item) | changed),
            _ => false,
        }
    }

    /// `text` with every known 32-hex token renamed, or `None` if it has none.
    fn rewrite_text(&self, text: &str) -> Option<String> {
        let bytes = text.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut index = 0;
        while index < bytes.len() {
            if !matches!(bytes[index], b'0'..=b'9' | b'a'..=b'f') {
                index += 1;
                continue;
            }
            let start = index;
            while index < bytes.len() && matches!(bytes[index], b'0'..=b'9' | b'a'..=b'f') {
                index += 1;
            }
            if index - start == 32 {
                if let Some(new) = self.tokens.get(&text[start..index]) {
                    let out = out.get_or_insert_with(String::new);
                    out.push_str(&text[copied..start]);
                    out.push_str(new);
                    copied = index;
                }
            }
        }
        out.map(|mut out| {
            out.push_str(&text[copied..]);
            out
        })
    }
}

/// The full rewrite of a restore: the target's workspace identity, and for
/// a copy (`--as`) new run and logged model ids.
#[derive(Debug)]
pub(crate) struct Rewriter {
    pub target_id: String,
    pub target_name: String,
    pub ids: Option<IdMap>,
}

impl Rewriter {
    pub fn apply(&mut self, change: Change) -> Change {
        let change = rewrite(change, &self.target_id, &self.target_name);
        match &mut self.ids {
            Some(ids) => ids.rename(change),
            None => change,
        }
    }
}

/// The artifacts and files of a workspace as its records leave them:
/// (area, path) → (size, sha256).
#[derive(Debug, Default)]
pub(crate) struct ArtifactSet(pub BTreeMap<(ContentArea, String), (i64, String)>);

impl ArtifactSet {
    pub fn observe(&mut self, change: &Change) {
        if let Some(content) = change.written_content() {
            self.0.insert(
                (content.area, content.path.to_string()),
                (content.size, content.sha256.to_string()),
            );
        } else if let Some((area, path)) = change.deleted_content() {
            // A deleted path takes everything under it (as storage does).
            let below = format!("{path}/");
            self.0
                .retain(|(a, key), _| *a != area || (key != path && !key.starts_with(&below)));
        }
    }

    /// How many entries of `area` there are.
    pub fn count(&self, area: ContentArea) -> u64 {
        self.0.keys().filter(|(a, _)| *a == area).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        seq: i64,
        workspace: &str,
        origin: &str,
        origin_seq: i64,
        epoch: i64,
        change: Change,
    ) -> ArchivedRecord {
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
                principal: None,
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
        assert!(
            !kept(&epoch, DEPLOYMENT_RECORD, &fencing),
            "deployment records are never restored"
        );
        assert!(!kept(&later, "other", &fencing));
        let mut voided = later.clone();
        voided.voided = true;
        assert!(!kept(&voided, "w", &fencing));
        let mut merged = lost_change.clone();
        merged.record.seen = Some(BTreeMap::new());
        assert!(
            kept(&merged, "w", &fencing),
            "multi-writer changes merge, never fenced"
        );
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
    fn a_copy_renames_its_runs_everywhere_they_are_named() {
        let run = "0123456789abcdef0123456789abcdef";
        let mut ids = IdMap::default();
        let created = ids.rename(Change::RunCreated {
            run_id: run.to_string(),
            experiment_id: "1".to_string(),
            run_name: "r".to_string(),
            user_id: "u".to_string(),
            start_time: Some(1),
            artifact_uri: format!("mlflow-artifacts:/1/{run}/artifacts"),
            tags: vec![],
        });
        let Change::RunCreated {
            run_id, artifact_uri, ..
        } = created
        else {
            panic!("still a run creation")
        };
        assert_ne!(run_id, run);
        assert_eq!(artifact_uri, format!("mlflow-artifacts:/1/{run_id}/artifacts"));
        let written = ids.rename(Change::ArtifactWritten {
            path: format!("1/{run}/artifacts/model.pkl"),
            size: 1,
            // A digest is 64 hex characters: not a 32-hex token, kept.
            sha256: format!("{run}{run}"),
            time: 1,
        });
        assert_eq!(
            written,
            Change::ArtifactWritten {
                path: format!("1/{run_id}/artifacts/model.pkl"),
                size: 1,
                sha256: format!("{run}{run}"),
                time: 1,
            }
        );
        assert_eq!(ids.rename(tag("x")), tag("x"));
    }

    #[test]
    fn artifacts_and_files_follow_writes_and_deletes() {
        let mut set = ArtifactSet::default();
        let write = |path: &str, sha: &str| Change::ArtifactWritten {
            path: path.to_string(),
            size: 3,
            sha256: sha.to_string(),
            time: 1,
        };
        let file = |path: &str, sha: &str| Change::FileWritten {
            path: path.to_string(),
            size: 4,
            sha256: sha.to_string(),
            time: 1,
        };
        set.observe(&write("a", "1"));
        set.observe(&write("b", "2"));
        set.observe(&write("a", "3"));
        set.observe(&write("d/x", "4"));
        set.observe(&write("dx", "5"));
        set.observe(&file("b", "6"));
        set.observe(&file("d/y", "7"));
        set.observe(&Change::ArtifactDeleted {
            path: "b".to_string(),
        });
        set.observe(&Change::ArtifactDeleted {
            path: "d".to_string(),
        });
        let artifact = |path: &str| (ContentArea::Artifacts, path.to_string());
        let shared = |path: &str| (ContentArea::Files, path.to_string());
        assert_eq!(
            set.0,
            BTreeMap::from([
                (artifact("a"), (3, "3".to_string())),
                (artifact("dx"), (3, "5".to_string())),
                (shared("b"), (4, "6".to_string())),
                (shared("d/y"), (4, "7".to_string())),
            ])
        );
        set.observe(&Change::FileDeleted {
            path: "d".to_string(),
        });
        assert_eq!(set.count(ContentArea::Files), 1);
        assert_eq!(set.count(ContentArea::Artifacts), 2);
    }
}
