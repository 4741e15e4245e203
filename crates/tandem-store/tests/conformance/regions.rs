//! Several regions: hot-hot convergence with recorded conflicts, and
//! epochs fencing and quarantining divergent changes.

use super::*;

/// The policy of a region in a deployment where every class is hot-hot.
struct HotHot {
    slot: u64,
    stride: u64,
}

impl tandem_store::RegionPolicy for HotHot {
    fn check_write(&self, _class: Option<AssetClass>) -> Result<(), tandem_core::Error> {
        Ok(())
    }
    fn multi_writer(&self, _class: AssetClass) -> bool {
        true
    }
    fn id_stripe(&self) -> Option<tandem_core::merge::IdStripe> {
        Some(tandem_core::merge::IdStripe {
            slot: self.slot,
            stride: self.stride,
        })
    }
}

/// Delivers every record of `from` that `to` has not seen, as a follower
/// would. Returns how many records were read.
async fn deliver(from: &dyn MetadataStore, to: &dyn MetadataStore) -> usize {
    let source = from.journal_position().await.unwrap().region;
    let position = to.replication_position(&source).await.unwrap();
    let records = from.journal_after(position, None, i64::MAX / 2).await.unwrap();
    for record in &records {
        to.apply_replicated(&source, record, true).await.unwrap();
    }
    records.len()
}

fn conflict_keys(
    conflicts: &[tandem_core::merge::Conflict],
) -> Vec<(String, String, String, i64, String, i64)> {
    let mut keys: Vec<_> = conflicts
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                c.register.clone(),
                c.winner.origin_region.clone(),
                c.winner.origin_seq,
                c.loser.origin_region.clone(),
                c.loser.origin_seq,
            )
        })
        .collect();
    keys.sort();
    keys
}

pub async fn hot_hot_regions_converge_and_record_conflicts(harness: &support::Harness) {
    let a = harness.store.clone();
    let Some(b_harness) = support::Harness::empty(harness.backend, "region-b").await else {
        return;
    };
    let b = b_harness.store.clone();
    a.set_policy(std::sync::Arc::new(HotHot { slot: 0, stride: 2 }));
    b.set_policy(std::sync::Arc::new(HotHot { slot: 1, stride: 2 }));
    let ws = default_ws(a.as_ref()).await;

    // Shared starting point, replicated both ways.
    let run = new_run(a.as_ref(), &ws, "0").await.info.run_id;
    a.log_batch(&ws, &run, vec![], vec![], vec![Tag::new("doomed", "x")])
        .await
        .unwrap();
    a.create_registered_model(&ws, "m", "", vec![], "").await.unwrap();
    a.create_registered_model(&ws, "gone", "", vec![], "")
        .await
        .unwrap();
    let model_version = |name: &str| CreateModelVersion {
        name: name.to_string(),
        source: "s3://bucket/model".into(),
        ..Default::default()
    };
    assert_eq!(
        a.create_model_version(&ws, model_version("m"))
            .await
            .unwrap()
            .version,
        "1",
        "the first region of two numbers versions 1, 3, …"
    );
    deliver(a.as_ref(), b.as_ref()).await;
    assert_eq!(b.dump_state().await.unwrap(), a.dump_state().await.unwrap());

    // Partitioned: both regions write the same things.
    a.log_batch(
        &ws,
        &run,
        vec![metric("loss", 1.0, 10, 1)],
        vec![param("p", "from-a")],
        vec![Tag::new("k", "a")],
    )
    .await
    .unwrap();
    b.log_batch(
        &ws,
        &run,
        vec![metric("loss", 2.0, 11, 2)],
        vec![param("p", "from-b")],
        vec![Tag::new("k", "b")],
    )
    .await
    .unwrap();
    a.delete_run_tag(&ws, &run, "doomed").await.unwrap();
    b.log_batch(&ws, &run, vec![], vec![], vec![Tag::new("doomed", "revived")])
        .await
        .unwrap();
    let exp_a = a.create_experiment(&ws, "dup", None, vec![]).await.unwrap();
    let exp_b = b.create_experiment(&ws, "dup", None, vec![]).await.unwrap();
    assert_ne!(exp_a, exp_b, "experiment ids come from disjoint stripes");
    let v_a = a
        .create_model_version(&ws, model_version("m"))
        .await
        .unwrap()
        .version;
    let v_b = b
        .create_model_version(&ws, model_version("m"))
        .await
        .unwrap()
        .version;
    assert_ne!(v_a, v_b, "model version numbers come from disjoint stripes");
    a.update_registered_model(&ws, "m", "described in a")
        .await
        .unwrap();
    b.update_registered_model(&ws, "m", "described in b")
        .await
        .unwrap();
    // Deletion is soft since journal format 3; the purge is what removes
    // the model for good, and what a concurrent write conflicts with.
    a.delete_registered_model(&ws, "gone").await.unwrap();
    a.purge_deleted(
        &ws,
        tandem_store::retention::DeletedKind::RegisteredModel,
        "gone",
        false,
    )
    .await
    .unwrap();
    b.set_registered_model_tag(&ws, "gone", Tag::new("t", "late"))
        .await
        .unwrap();
    a.create_registered_model(&ws, "twin", "from a", vec![Tag::new("ta", "1")], "ana")
        .await
        .unwrap();
    b.create_registered_model(&ws, "twin", "from b", vec![Tag::new("tb", "1")], "bo")
        .await
        .unwrap();
    assert_eq!(
        kind(b.rename_registered_model(&ws, "m", "m2").await.unwrap_err()),
        ErrorKind::InvalidParameterValue,
        "renames cannot be merged and are refused while the registry is hot-hot"
    );

    // Healed: exchange until quiet, in both orders.
    deliver(a.as_ref(), b.as_ref()).await;
    deliver(b.as_ref(), a.as_ref()).await;
    deliver(a.as_ref(), b.as_ref()).await;
    let state_a = a.dump_state().await.unwrap();
    let state_b = b.dump_state().await.unwrap();
    for ((table, rows_a), (_, rows_b)) in state_a.iter().zip(state_b.iter()) {
        assert_eq!(rows_a, rows_b, "table {table} differs between the regions");
    }

    // What the merge decided.
    let run_now = a.get_run(&ws, &run).await.unwrap();
    let tag = |key: &str| {
        run_now
            .data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.clone())
    };
    assert_eq!(tag("doomed"), None, "a delete wins over a concurrent write");
    let k = tag("k").unwrap();
    assert!(k == "a" || k == "b");
    let loss: Vec<f64> = a
        .get_metric_history(&ws, &run, "loss", None, None)
        .await
        .unwrap()
        .points
        .iter()
        .map(|point| point.value)
        .collect();
    assert_eq!(
        loss.len(),
        2,
        "metrics are append-only and never conflict: {loss:?}"
    );
    let dup_a = a.get_experiment(&ws, &exp_a).await.unwrap().name;
    let dup_b = a.get_experiment(&ws, &exp_b).await.unwrap().name;
    let mut names = vec![dup_a, dup_b];
    names.sort();
    let loser = if names[0] == "dup" { &names[1] } else { &names[0] };
    assert_eq!(names.iter().filter(|n| *n == "dup").count(), 1, "{names:?}");
    assert!(loser.starts_with("dup (conflict "), "{names:?}");
    assert!(
        a.get_registered_model(&ws, "gone").await.is_err(),
        "the deleted model stays deleted"
    );
    let twin = a.get_registered_model(&ws, "twin").await.unwrap();
    assert!(
        twin.tags.iter().any(|t| t.key == "ta") && twin.tags.iter().any(|t| t.key == "tb"),
        "concurrent creations merge into one model: {twin:?}"
    );
    let m = a.get_registered_model(&ws, "m").await.unwrap();
    assert!(m.description == "described in a" || m.description == "described in b");

    // Both regions list the same conflicts, with both versions.
    let conflicts_a = a.list_conflicts(None, 1000).await.unwrap();
    let conflicts_b = b.list_conflicts(None, 1000).await.unwrap();
    assert_eq!(conflict_keys(&conflicts_a), conflict_keys(&conflicts_b));
    let registers: Vec<&str> = conflicts_a.iter().map(|c| c.register.as_str()).collect();
    for expected in [
        format!("run/{run}/tag/k"),
        format!("run/{run}/param/p"),
        format!("run/{run}/tag/doomed"),
        "expname/dup".to_string(),
        "rm/m/description".to_string(),
        "rm/gone/tag/t".to_string(),
        "rm/twin".to_string(),
    ] {
        assert!(
            registers.contains(&expected.as_str()),
            "no conflict on {expected}: {registers:?}"
        );
    }
    let doomed = conflicts_a
        .iter()
        .find(|c| c.register == format!("run/{run}/tag/doomed"))
        .unwrap();
    assert_eq!(doomed.resolution, "delete wins");
    assert!(doomed.winner.change.is_some() && doomed.loser.change.is_some());
    assert!(conflicts_a
        .iter()
        .all(|c| c.winner.origin_region != c.loser.origin_region));

    // The merged journal replays into the same state and the same conflicts.
    let Some(replica) = support::Harness::empty(Backend::Sqlite, "replica").await else {
        return;
    };
    for record in a.journal_after(0, None, i64::MAX / 2).await.unwrap() {
        replica.store.apply_record(&record).await.unwrap();
    }
    assert_eq!(replica.store.dump_state().await.unwrap(), state_a);
    assert_eq!(
        conflict_keys(&replica.store.list_conflicts(None, 1000).await.unwrap()),
        conflict_keys(&conflicts_a)
    );
    replica.finish().await;
    b_harness.finish().await;
}

fn divergence_ids(records: &[tandem_store::DivergentRecord]) -> Vec<(String, String, i64)> {
    let mut ids: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.id.clone(),
                r.record.change.kind().to_string(),
                r.voided_by_epoch,
            )
        })
        .collect();
    ids.sort();
    ids
}

/// A primary (A) goes on writing after its last records reached B; B takes
/// over in a new epoch. A's later changes are fenced wherever they arrive,
/// voided where they were applied, kept in quarantine with their content,
/// and only re-applied on purpose.
pub async fn epochs_fence_and_quarantine_divergent_changes(harness: &support::Harness) {
    let a = harness.store.clone();
    let a_name = a.journal_position().await.unwrap().region;
    let (Some(b_harness), Some(c_harness), Some(d_harness)) = (
        support::Harness::empty(harness.backend, "region-b").await,
        support::Harness::empty(harness.backend, "region-c").await,
        support::Harness::empty(harness.backend, "region-d").await,
    ) else {
        return;
    };
    let (b, c, d) = (
        b_harness.store.clone(),
        c_harness.store.clone(),
        d_harness.store.clone(),
    );
    // A fresh store may begin the epoch it stands at (a witness's first
    // grant), once.
    a.begin_epoch(1).await.unwrap();
    assert!(a.begin_epoch(1).await.is_err(), "an epoch begins once");
    a.begin_epoch(2).await.unwrap();
    assert_eq!(a.journal_position().await.unwrap().epoch, 2);
    let ws = default_ws(a.as_ref()).await;
    let run = new_run(a.as_ref(), &ws, "0").await.info.run_id;
    a.log_batch(&ws, &run, vec![metric("loss", 1.0, 1, 0)], vec![], vec![])
        .await
        .unwrap();
    let delivered_head = a.journal_position().await.unwrap().head;
    deliver(a.as_ref(), b.as_ref()).await;

    // A goes on writing; none of it reaches B.
    a.log_batch(
        &ws,
        &run,
        vec![],
        vec![param("lost", "1")],
        vec![Tag::new("t", "from-a")],
    )
    .await
    .unwrap();
    let lost_experiment = a.create_experiment(&ws, "only-in-a", None, vec![]).await.unwrap();

    // B takes over in epoch 5: its fork is what it held of A.
    let fork = b.begin_epoch(5).await.unwrap();
    assert_eq!(fork.get(&a_name), Some(&delivered_head));
    let error = b.begin_epoch(5).await.unwrap_err();
    assert!(error.to_string().contains("already knows epoch 5"), "{error}");
    b.log_batch(&ws, &run, vec![], vec![], vec![Tag::new("t", "from-b")])
        .await
        .unwrap();
    let b_state = b.dump_state().await.unwrap();

    // C follows B, then A's late changes reach it too: fenced on arrival.
    deliver(b.as_ref(), c.as_ref()).await;
    deliver(a.as_ref(), c.as_ref()).await;
    assert_eq!(
        c.dump_state().await.unwrap(),
        b_state,
        "fenced changes are not applied"
    );

    // A rejoins as B's follower: its own divergent changes are voided and
    // the state rebuilt without them.
    deliver(b.as_ref(), a.as_ref()).await;
    assert_eq!(
        a.dump_state().await.unwrap(),
        b_state,
        "the old primary converges on the new epoch"
    );
    let quarantined = a.list_divergence().await.unwrap();
    let expected = vec![
        (
            format!("{a_name}-{}", delivered_head + 1),
            "run_data_logged".to_string(),
            5,
        ),
        (
            format!("{a_name}-{}", delivered_head + 2),
            "experiment_created".to_string(),
            5,
        ),
    ];
    assert_eq!(divergence_ids(&quarantined), expected);
    assert_eq!(divergence_ids(&c.list_divergence().await.unwrap()), expected);
    assert!(quarantined
        .iter()
        .all(|r| r.status == "quarantined" && r.reason.contains("epoch 5")));
    assert_eq!(
        kind(a.get_experiment(&ws, &lost_experiment).await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    assert!(b.list_divergence().await.unwrap().is_empty());
    let epochs: Vec<i64> = a.epochs().await.unwrap().iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, vec![1, 2, 5]);
    assert_eq!(b.epochs().await.unwrap(), a.epochs().await.unwrap());

    // Replaying A's journal rebuilds the same state and the same quarantine.
    for record in a.journal_after(0, None, i64::MAX / 2).await.unwrap() {
        d.apply_record(&record).await.unwrap();
    }
    assert_eq!(d.dump_state().await.unwrap(), b_state);
    assert_eq!(divergence_ids(&d.list_divergence().await.unwrap()), expected);

    // Re-applied on purpose at the primary, once; it then replicates.
    let created = quarantined
        .iter()
        .find(|r| r.record.change.kind() == "experiment_created")
        .unwrap();
    let seq = b.reapply_divergent(&created.record).await.unwrap();
    assert_eq!(
        b.reapply_divergent(&created.record).await.unwrap(),
        seq,
        "idempotent"
    );
    assert_eq!(
        b.get_experiment(&ws, &lost_experiment).await.unwrap().name,
        "only-in-a"
    );
    deliver(b.as_ref(), a.as_ref()).await;
    a.mark_divergence_applied(&created.id, seq).await.unwrap();
    assert_eq!(
        a.get_experiment(&ws, &lost_experiment).await.unwrap().name,
        "only-in-a"
    );
    let entry = a.get_divergence(&created.id).await.unwrap();
    assert_eq!((entry.status.as_str(), entry.applied_seq), ("applied", Some(seq)));
    assert_eq!(a.dump_state().await.unwrap(), b.dump_state().await.unwrap());
    assert_eq!(
        kind(a.get_divergence("nope-1").await.unwrap_err()),
        ErrorKind::ResourceDoesNotExist
    );
    for extra in [b_harness, c_harness, d_harness] {
        extra.finish().await;
    }
}
