//! The journal: every write in order, a replay rebuilding the live state,
//! and concurrent writers keeping it gap-free.

use super::*;

pub async fn every_write_is_journaled_in_order(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let ws = default_ws(store).await;
    let start = store.journal_position().await.unwrap();
    assert_eq!(start.epoch, 1);
    let id = store
        .create_experiment(&ws, "journaled", None, vec![])
        .await
        .unwrap();
    let run_id = new_run(store, &ws, &id).await.info.run_id;
    store
        .log_batch(
            &ws,
            &run_id,
            vec![metric("m", 1.0, 1, 0)],
            vec![param("p", "v")],
            vec![],
        )
        .await
        .unwrap();
    store.create_workspace("side", "").await.unwrap();
    let records = store.journal_after(start.head, None, 100).await.unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r.change.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            "experiment_created",
            "run_created",
            "run_data_logged",
            "workspace_created",
            "experiment_created"
        ]
    );
    for (offset, record) in records.iter().enumerate() {
        assert_eq!(record.seq, start.head + 1 + offset as i64, "gap-free");
        assert_eq!(record.origin_seq, record.seq);
        assert_eq!(record.origin_region, "test-region");
        assert_eq!(record.epoch, 1);
        assert_eq!(record.format, tandem_core::journal::FORMAT_VERSION);
    }
    assert!(
        records.windows(2).all(|pair| pair[0].hlc < pair[1].hlc),
        "hlc increases"
    );
    assert_eq!(records[0].workspace_id, ws.workspace_id);
    assert_ne!(records[3].workspace_id, ws.workspace_id);
    let only_default = store
        .journal_after(start.head, Some(&ws.workspace_id), 100)
        .await
        .unwrap();
    assert_eq!(only_default.len(), 3);
    let limited = store.journal_after(start.head, None, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(store.journal_position().await.unwrap().head, start.head + 5);
    // Reads write nothing.
    store.get_run(&ws, &run_id).await.unwrap();
    store
        .search_runs(
            &ws,
            SearchRuns {
                experiment_ids: vec![id],
                max_results: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(store.journal_position().await.unwrap().head, start.head + 5);
}

/// Builds a workspace with a bit of everything through the public API.
async fn rich_workload(store: &dyn MetadataStore) {
    let ws = default_ws(store).await;
    // Access changes replay like every other (deployment-wide records).
    store
        .create_principal("replayed-user", "user", Some("$argon2id$fake".into()))
        .await
        .unwrap();
    store
        .assign_role("replayed-user", Role::Contributor, Some("default"))
        .await
        .unwrap();
    store
        .create_token("t1", "replayed-user", "hash-1", "replayed", None)
        .await
        .unwrap();
    store
        .create_token("t2", "replayed-user", "hash-2", "revoked", None)
        .await
        .unwrap();
    store.revoke_token("t2").await.unwrap();
    let id = store
        .create_experiment(&ws, "replayed", None, vec![Tag::new("a", "b")])
        .await
        .unwrap();
    let run = store
        .create_run(
            &ws,
            CreateRun {
                experiment_id: id.clone(),
                run_name: Some("r1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let run_id = run.info.run_id;
    let metrics = (0..50)
        .map(|step| metric("loss", 1.0 / (step + 1) as f64, 10 + step, step))
        .collect();
    store
        .log_batch(
            &ws,
            &run_id,
            metrics,
            vec![param("lr", "0.01")],
            vec![Tag::new("t", "v")],
        )
        .await
        .unwrap();
    store
        .log_batch(
            &ws,
            &run_id,
            vec![metric("nan", f64::NAN, 1, 0), metric("inf", f64::INFINITY, 1, 0)],
            vec![],
            vec![],
        )
        .await
        .unwrap();
    store
        .update_run(
            &ws,
            &run_id,
            UpdateRun {
                status: Some(RunStatus::Finished),
                end_time: Some(99),
                run_name: None,
            },
        )
        .await
        .unwrap();
    let doomed = new_run(store, &ws, &id).await.info.run_id;
    store.delete_run(&ws, &doomed).await.unwrap();
    store
        .rename_experiment(&ws, &id, "replayed-renamed")
        .await
        .unwrap();
    let logged = store
        .create_logged_model(
            &ws,
            CreateLoggedModel {
                experiment_id: id.clone(),
                source_run_id: Some(run_id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .finalize_logged_model(&ws, &logged.info.model_id, LoggedModelStatus::LoggedModelReady)
        .await
        .unwrap();
    store
        .create_registered_model(&ws, "m", "", vec![], "")
        .await
        .unwrap();
    store
        .create_model_version(
            &ws,
            CreateModelVersion {
                name: "m".into(),
                source: format!("models:/{}", logged.info.model_id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .set_registered_model_alias(&ws, "m", "prod", "1")
        .await
        .unwrap();
    store
        .transition_model_version_stage(&ws, "m", "1", "Staging", false)
        .await
        .unwrap();
    store
        .record_artifact(&ws, &format!("{id}/{run_id}/artifacts/f.txt"), 3, "abc")
        .await
        .unwrap();
    let other = store.create_workspace("replay-other", "second").await.unwrap();
    let other_ws = store.resolve_workspace(&other.name).await.unwrap();
    store
        .create_experiment(&other_ws, "there", None, vec![])
        .await
        .unwrap();
    store.delete_workspace("replay-other").await.unwrap();
}

pub async fn replaying_the_journal_rebuilds_the_live_state(harness: &support::Harness) {
    let store = harness.store.as_ref();
    rich_workload(store).await;
    let live = store.dump_state().await.unwrap();
    let records = store.journal_after(0, None, i64::MAX / 2).await.unwrap();
    assert!(records.len() > 15);

    // Replay into an empty store of the same backend and into SQLite: both
    // must hold exactly the live state.
    for target_backend in [harness.backend, Backend::Sqlite] {
        let Some(target) = support::Harness::empty(target_backend, "test-replica").await else {
            continue;
        };
        // A fresh store creates its own default workspace; replay the live
        // store's records into one that has nothing yet.
        for record in &records {
            target.store.apply_record(record).await.unwrap();
        }
        let replayed = target.store.dump_state().await.unwrap();
        assert_eq!(replayed.len(), live.len());
        for ((table, live_rows), (_, replayed_rows)) in live.iter().zip(replayed.iter()) {
            assert_eq!(
                live_rows, replayed_rows,
                "table {table} differs after replay into {target_backend:?}"
            );
        }
        // Re-delivery is harmless: nothing applies twice.
        for record in records.iter().take(5) {
            assert!(!target.store.apply_record(record).await.unwrap());
        }
        assert_eq!(target.store.dump_state().await.unwrap(), live);
        // The replica's journal holds the records with their origin kept.
        let copied = target.store.journal_after(0, None, i64::MAX / 2).await.unwrap();
        assert_eq!(copied.len(), records.len());
        // Compared encoded: a NaN metric is equal to itself only as text.
        assert!(copied.iter().zip(records.iter()).all(|(c, r)| {
            c.origin_seq == r.seq
                && c.origin_region == r.origin_region
                && JournalRecord::encode_change(&c.change) == JournalRecord::encode_change(&r.change)
        }));
        target.finish().await;
    }
}

pub async fn concurrent_writers_keep_the_journal_gap_free(harness: &support::Harness) {
    let store = harness.store.clone();
    let ws = default_ws(store.as_ref()).await;
    let start = store.journal_position().await.unwrap().head;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store: Arc<dyn MetadataStore> = store.clone();
        let ws = ws.clone();
        tasks.push(tokio::spawn(async move {
            let run_id = new_run(store.as_ref(), &ws, "0").await.info.run_id;
            for step in 0..20 {
                store
                    .log_batch(
                        &ws,
                        &run_id,
                        vec![metric("m", writer as f64, step, step)],
                        vec![],
                        vec![],
                    )
                    .await
                    .unwrap();
            }
            run_id
        }));
    }
    let mut run_ids = Vec::new();
    for task in tasks {
        run_ids.push(task.await.unwrap());
    }
    let records = store.journal_after(start, None, 10_000).await.unwrap();
    assert_eq!(records.len(), 8 * 21);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.seq == start + 1 + i as i64));
    for run_id in run_ids {
        let history = store
            .get_metric_history(&ws, &run_id, "m", None, None)
            .await
            .unwrap();
        assert_eq!(history.points.len(), 20);
    }
}

/// Concurrent writes share transactions (group commit): writes refused
/// inside one (a param that cannot change, a run that does not exist) leave
/// nothing behind and take nothing of the others with them.
pub async fn refused_writes_among_concurrent_ones_leave_the_others_whole(harness: &support::Harness) {
    let store = harness.store.clone();
    let ws = default_ws(store.as_ref()).await;
    let shared = new_run(store.as_ref(), &ws, "0").await.info.run_id;
    let start = store.journal_position().await.unwrap().head;
    let mut tasks = Vec::new();
    for writer in 0..48i64 {
        let store: Arc<dyn MetadataStore> = store.clone();
        let ws = ws.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for step in 0..6i64 {
                // Every writer tries to give the shared run's param its own
                // value: one wins, the rest are refused whole, their metric
                // with them.
                let claim = store
                    .log_batch(
                        &ws,
                        &shared,
                        vec![metric(&format!("claim-{writer}"), 1.0, step, step)],
                        vec![param("owner", &format!("w{writer}"))],
                        vec![],
                    )
                    .await;
                if claim.is_ok() {
                    accepted.push(format!("claim-{writer}"));
                }
                let missing = store
                    .log_batch(
                        &ws,
                        "no-such-run",
                        vec![metric("m", 1.0, step, step)],
                        vec![],
                        vec![],
                    )
                    .await;
                assert!(missing.is_err(), "a write to a missing run was accepted");
                store
                    .log_batch(
                        &ws,
                        &shared,
                        vec![metric(&format!("own-{writer}"), step as f64, step, step)],
                        vec![],
                        vec![],
                    )
                    .await
                    .unwrap();
            }
            accepted
        }));
    }
    let mut claims = Vec::new();
    for task in tasks {
        claims.extend(task.await.unwrap());
    }
    claims.sort();
    claims.dedup();
    assert_eq!(
        claims.len(),
        1,
        "exactly one writer's param was taken: {claims:?}"
    );
    let run = store.get_run(&ws, &shared).await.unwrap();
    let owner = run.data.params.iter().find(|p| p.key == "owner").unwrap();
    assert_eq!(format!("claim-{}", &owner.value[1..]), claims[0]);
    let claimed: Vec<_> = run
        .data
        .metrics
        .iter()
        .filter(|m| m.key.starts_with("claim-"))
        .map(|m| m.key.clone())
        .collect();
    assert_eq!(claimed, claims, "a refused batch left its metric behind");
    for writer in 0..48 {
        let history = store
            .get_metric_history(&ws, &shared, &format!("own-{writer}"), None, None)
            .await
            .unwrap();
        assert_eq!(history.points.len(), 6, "writer {writer} lost accepted writes");
    }
    // One record per accepted write, numbered without a gap.
    let records = store.journal_after(start, None, 10_000).await.unwrap();
    let claim_history = store
        .get_metric_history(&ws, &shared, &claims[0], None, None)
        .await
        .unwrap();
    assert_eq!(records.len(), 48 * 6 + claim_history.points.len());
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, r)| r.seq == start + 1 + i as i64));
}
