//! Fingerprints (what `tandem verify` compares), on SQLite and PostgreSQL:
//! a replica rebuilt from the journal has the same fingerprint and rows; a
//! row changed behind the store's back changes exactly its table's digest,
//! and its row names it; an unknown table is refused.

#[allow(dead_code)]
#[macro_use]
mod support;

use support::Backend;
use tandem_core::model::*;
use tandem_core::ErrorKind;
use tandem_store::*;

scenarios!(a_replica_fingerprints_like_its_source_and_a_changed_row_is_named,);

async fn a_replica_fingerprints_like_its_source_and_a_changed_row_is_named(backend: Backend) {
    let Some(source) = support::Harness::new(backend).await else {
        return;
    };
    let store = source.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: DEFAULT_EXPERIMENT_ID.to_string(),
                ..CreateRun::default()
            },
        )
        .await
        .unwrap();
    let run_id = run.info.run_id.clone();
    let param = Param {
        key: "lr".to_string(),
        value: "0.1".to_string(),
    };
    store
        .log_batch(&ws, &run_id, vec![], vec![param], vec![])
        .await
        .unwrap();
    store
        .record_file(&ws, "notes/a.txt", 3, &"0a".repeat(32))
        .await
        .unwrap();

    let Some(replica) = support::Harness::empty(backend, "replica").await else {
        return;
    };
    for record in store.journal_after(0, None, 10_000).await.unwrap() {
        replica.store.apply_record(&record).await.unwrap();
    }
    let expected = store.fingerprints(Some(&ws.workspace_id)).await.unwrap();
    let rebuilt = replica.store.fingerprints(Some(&ws.workspace_id)).await.unwrap();
    assert_eq!(expected.len(), 1);
    // `applied` names origins: the replica holds the source's changes.
    assert_eq!(rebuilt, expected);
    let tracking = &expected[0].classes["tracking"];
    assert_eq!(tracking.tables["run_params"].rows, 1);
    assert_eq!(expected[0].classes["files"].tables["files"].rows, 1);
    assert!(expected[0]
        .content
        .iter()
        .any(|row| row.area == "files" && row.path == "notes/a.txt"));

    replica
        .execute(&[&format!(
            "UPDATE run_params SET value = '0.9' WHERE run_id = '{run_id}' AND key = 'lr'"
        )])
        .await;
    let changed = replica.store.fingerprints(Some(&ws.workspace_id)).await.unwrap();
    let mut differing = Vec::new();
    for (class, fingerprint) in &changed[0].classes {
        for (table, digest) in &fingerprint.tables {
            if expected[0].classes[class].tables[table] != *digest {
                differing.push((class.as_str(), table.as_str()));
            }
        }
    }
    assert_eq!(differing, vec![("tracking", "run_params")]);
    let before = store
        .fingerprint_rows(&ws.workspace_id, "run_params")
        .await
        .unwrap();
    let after = replica
        .store
        .fingerprint_rows(&ws.workspace_id, "run_params")
        .await
        .unwrap();
    assert_eq!(before.applied, after.applied);
    assert_eq!(before.rows.len(), 1);
    assert_eq!(after.rows[0].key, format!("{run_id}/lr"));
    assert_ne!(before.rows[0].digest, after.rows[0].digest);

    let refused = store
        .fingerprint_rows(&ws.workspace_id, "journal")
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidParameterValue);
    replica.finish().await;
    source.finish().await;
}
