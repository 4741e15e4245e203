//! Restores of a full backup and of points in time, into SQLite and
//! PostgreSQL, and which journal records a restore selects.

use super::*;

async fn restores_a_full_backup_and_points_in_time(backend: Backend) {
    let source = source().await;
    let repo_dir = tempfile::tempdir().unwrap();
    let repo_url = format!("file://{}", repo_dir.path().display());
    let repo = ArtifactStore::open(&repo_url, &Default::default()).unwrap();
    let backups = archive(
        source.region.store.as_ref(),
        &source.contents,
        &repo,
        "eastus",
        3,
        &[source.first.0],
    )
    .await;

    // The backup itself, in place, into another region.
    let target = Target::open(backend, "westus", false).await;
    let outcome = restore(
        target.store.as_ref(),
        &target.storage,
        &request(&repo_url, RestorePoint::Backup(backups[0].clone())),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.workspace_id, source.ws.workspace_id,
        "in place keeps the id"
    );
    assert_eq!((outcome.position, outcome.artifacts), (source.first.0, 1));
    let (id, dump) = restored(&target, "team").await;
    assert_eq!(dump, source.first.2);
    let stored = workspace_artifact_key(&id, Some(&key(&source.artifact))).unwrap();
    assert_eq!(read(&target.storage, &stored).await, b"first model");
    // Restored changes are local changes of the target: journaled there.
    let journal = target.store.journal_after(0, None, 1000).await.unwrap();
    assert!(journal.iter().all(|record| record.origin_region == "westus"));
    assert_eq!(journal.len() as i64, outcome.records);
    target.finish().await;

    // The latest moment by position and by time, as new workspaces beside each other.
    let target = Target::open(backend, "westus", false).await;
    let mut by_seq = request(&repo_url, RestorePoint::Seq(source.second.0));
    by_seq.as_name = Some("team-by-seq".to_string());
    restore(target.store.as_ref(), &target.storage, &by_seq, &quiet)
        .await
        .unwrap();
    assert_eq!(restored(&target, "team-by-seq").await.1, source.second.2);
    let mut at_first = request(&repo_url, RestorePoint::At(source.first.1 + 5));
    at_first.as_name = Some("team-at-first".to_string());
    let outcome = restore(target.store.as_ref(), &target.storage, &at_first, &quiet)
        .await
        .unwrap();
    assert_eq!(
        outcome.position, source.first.0,
        "the last record before the time"
    );
    let (id, dump) = restored(&target, "team-at-first").await;
    assert_eq!(dump, source.first.2);
    let runs: Vec<_> = target
        .store
        .dump_state()
        .await
        .unwrap()
        .into_iter()
        .find(|(table, _)| table == "runs")
        .unwrap()
        .1;
    assert_eq!(runs.len(), 2, "each copy has its own run: {runs:?}");
    let prefix = format!("workspaces/{id}/artifacts/");
    let copies: Vec<_> = target
        .objects()
        .await
        .into_iter()
        .filter(|path| path.starts_with(&prefix))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        !copies[0].contains(&source.artifact),
        "the copy's run has its own id: {copies:?}"
    );
    assert_eq!(read(&target.storage, &key(&copies[0])).await, b"first model");

    // No point given: the latest state the repository holds (the backup,
    // then every archived segment after it).
    let mut latest = request(&repo_url, RestorePoint::Latest);
    latest.as_name = Some("team-latest".to_string());
    let outcome = restore(target.store.as_ref(), &target.storage, &latest, &quiet)
        .await
        .unwrap();
    assert!(outcome.position >= source.second.0, "{outcome:?}");
    assert_eq!(restored(&target, "team-latest").await.1, source.second.2);
    target.finish().await;
    source.region.finish().await;
}

#[tokio::test]
async fn restores_into_sqlite() {
    restores_a_full_backup_and_points_in_time(Backend::Sqlite).await;
}

#[tokio::test]
async fn restores_into_postgres() {
    if std::env::var("TANDEM_SKIP_POSTGRES").is_ok_and(|value| value == "1") {
        return;
    }
    restores_a_full_backup_and_points_in_time(Backend::Postgres).await;
}

#[tokio::test]
async fn the_record_selection_streams_the_journal_up_to_a_point() {
    let (source, _dir, repo_url, _repo, _, target) = setup().await;
    let journal = source.region.store.journal_after(0, None, 1000).await.unwrap();
    let ws_id = source.ws.workspace_id.clone();

    // One workspace, up to the first moment: its records, in journal order.
    let selection = RecordSelection::open(
        &repo_url,
        &Default::default(),
        RestorePoint::Seq(source.first.0),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (selection.region.as_str(), selection.position),
        ("eastus", source.first.0)
    );
    assert_eq!(selection.workspaces.get("team"), Some(&ws_id));
    let mut seqs = Vec::new();
    selection
        .for_each(Some(&ws_id), |record| {
            seqs.push(record.seq);
            Ok(())
        })
        .await
        .unwrap();
    let expected: Vec<i64> = journal
        .iter()
        .filter(|record| record.workspace_id == ws_id && record.seq <= source.first.0)
        .map(|record| record.seq)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(seqs, expected);

    // Every workspace, latest: the other workspace's creation too, no
    // deployment records.
    let selection = RecordSelection::open(&repo_url, &Default::default(), RestorePoint::Latest, None)
        .await
        .unwrap();
    assert_eq!(selection.position, source.second.0);
    let mut records = Vec::new();
    selection
        .for_each(None, |record| {
            records.push(record);
            Ok(())
        })
        .await
        .unwrap();
    let expected: Vec<i64> = journal
        .iter()
        .filter(|record| record.workspace_id != tandem_core::journal::DEPLOYMENT_RECORD)
        .map(|record| record.seq)
        .collect();
    assert_eq!(
        records.iter().map(|record| record.seq).collect::<Vec<_>>(),
        expected
    );
    assert!(records
        .iter()
        .any(|record| matches!(&record.change, Change::WorkspaceCreated { name, .. } if name == "other")));
    // The cursor pulls the same records, for one workspace or all.
    for workspace in [None, Some(ws_id.as_str())] {
        let mut pulled = Vec::new();
        let mut cursor = selection.cursor(workspace);
        while let Some(record) = cursor.next().await.unwrap() {
            pulled.push(record.seq);
        }
        let mut pushed = Vec::new();
        selection
            .for_each(workspace, |record| {
                pushed.push(record.seq);
                Ok(())
            })
            .await
            .unwrap();
        assert!(!pulled.is_empty());
        assert_eq!(pulled, pushed, "{workspace:?}");
    }
    target.finish().await;
    source.region.finish().await;
}

#[tokio::test]
async fn voided_and_fenced_records_are_not_selected() {
    let (source, _dir, repo_url, repo, _, target) = setup().await;
    let journal = source.region.store.journal_after(0, None, 1000).await.unwrap();
    let ws_id = source.ws.workspace_id.clone();
    let head = journal.last().unwrap().seq;
    let model = journal
        .iter()
        .rev()
        .find(|record| record.workspace_id == ws_id)
        .unwrap()
        .clone();
    let origin = journal.iter().map(|record| record.origin_seq).max().unwrap();
    let change = |seq: i64, epoch: i64| tandem_core::journal::JournalRecord {
        seq,
        origin_seq: origin + (seq - head),
        epoch,
        seen: None,
        principal: None,
        ..model.clone()
    };
    // A change of epoch E beyond the fork of epoch E+1 (fenced: it was
    // voided after it was archived), then E+1 begins, then a change voided
    // when archived, then one that stays.
    let fenced = change(head + 1, model.epoch);
    let mut began = change(head + 2, model.epoch + 1);
    began.workspace_id = tandem_core::journal::DEPLOYMENT_RECORD.to_string();
    began.change = Change::EpochBegan {
        epoch: model.epoch + 1,
        primary: model.origin_region.clone(),
        fork: BTreeMap::from([(model.origin_region.clone(), origin)]),
        time: model.recorded_at,
    };
    let voided = change(head + 3, model.epoch + 1);
    let kept = change(head + 4, model.epoch + 1);
    let mut bytes = Vec::new();
    for (record, voided) in [(&fenced, false), (&began, false), (&voided, true), (&kept, false)] {
        let archived = ArchivedRecord {
            record: record.clone(),
            voided,
        };
        bytes.extend_from_slice(&serde_json::to_vec(&archived).unwrap());
        bytes.push(b'\n');
    }
    let (data, meta) = format::segment_keys("eastus", head + 1, head + 4);
    let object = put(&repo, &data, bytes).await;
    let info = SegmentInfo {
        format: format::REPOSITORY_FORMAT,
        region: "eastus".to_string(),
        first_seq: head + 1,
        last_seq: head + 4,
        records: 4,
        bytes: object.bytes,
        sha256: object.sha256,
        first_recorded_at: model.recorded_at,
        last_recorded_at: model.recorded_at,
    };
    put(&repo, &meta, serde_json::to_vec(&info).unwrap()).await;

    let selection = RecordSelection::open(&repo_url, &Default::default(), RestorePoint::Latest, None)
        .await
        .unwrap();
    assert_eq!(selection.position, head + 4);
    let mut seqs = Vec::new();
    selection
        .for_each(Some(&ws_id), |record| {
            seqs.push(record.seq);
            Ok(())
        })
        .await
        .unwrap();
    let mut expected: Vec<i64> = journal
        .iter()
        .filter(|record| record.workspace_id == ws_id)
        .map(|record| record.seq)
        .collect();
    expected.push(head + 4);
    assert_eq!(seqs, expected, "neither the fenced nor the voided change");
    target.finish().await;
    source.region.finish().await;
}
