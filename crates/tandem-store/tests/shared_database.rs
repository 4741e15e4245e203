//! Two stores on one PostgreSQL database, as two server processes of one
//! region would be: their writes interleave into one journal, numbered
//! without a gap, and the hybrid clock readings follow the sequence numbers
//! even when one process's clock runs an hour ahead of the other's.
//! A store learns of what the others commit (its followers woken, its
//! credential caches emptied by an access change). (SQLite is one
//! process's database: nothing to share.)

#[allow(dead_code)] // the harness serves every test file; this one uses PostgreSQL only
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{Backend, Harness};
use tandem_core::model::Tag;
use tandem_store::{Clock, MetadataStore, SqlStore, StoreOptions, DEFAULT_WORKSPACE};

#[derive(Debug)]
struct Shifted(i64);

impl Clock for Shifted {
    fn now_millis(&self) -> i64 {
        tandem_store::now_millis() + self.0
    }
}

/// A second store on the harness's database, as another server process of
/// the region would open it.
async fn another_process(harness: &Harness) -> Arc<dyn MetadataStore> {
    Arc::new(
        SqlStore::open(StoreOptions::new(harness.url.clone(), "test-region"))
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_database_keep_one_journal_in_clock_order() {
    let ahead: Arc<dyn Clock> = Arc::new(Shifted(3_600_000));
    let Some(harness) = Harness::with_clock(Backend::Postgres, ahead).await else {
        return;
    };
    let first = harness.store.clone();
    // Opened before the first writes: its clock starts an hour behind them.
    let second: Arc<dyn MetadataStore> = Arc::new(
        SqlStore::open_with_clock(
            StoreOptions::new(harness.url.clone(), "test-region"),
            Arc::new(Shifted(0)),
        )
        .await
        .unwrap(),
    );
    let start = first.journal_position().await.unwrap().head;
    let ws = first.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let experiment = first
        .create_experiment(&ws, "shared", None, Vec::new())
        .await
        .unwrap();
    for round in 0..20 {
        let store = if round % 2 == 0 { &second } else { &first };
        let tag = Tag {
            key: format!("k{round}"),
            value: round.to_string(),
        };
        store.set_experiment_tag(&ws, &experiment, tag).await.unwrap();
    }
    // Both at once too: the head's lock orders them.
    let writes = (0..40).map(|i| {
        let store = if i % 2 == 0 { second.clone() } else { first.clone() };
        let ws = ws.clone();
        let experiment = experiment.clone();
        tokio::spawn(async move {
            let tag = Tag {
                key: format!("c{i}"),
                value: i.to_string(),
            };
            store.set_experiment_tag(&ws, &experiment, tag).await.unwrap();
        })
    });
    for write in writes.collect::<Vec<_>>() {
        write.await.unwrap();
    }

    let records = first.journal_after(start, None, 1_000).await.unwrap();
    assert_eq!(records.len(), 61, "one record a write");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, start + 1 + i as i64, "numbered without a gap");
    }
    for pair in records.windows(2) {
        assert!(
            pair[1].hlc > pair[0].hlc,
            "record {} (clock {}) orders before record {} (clock {})",
            pair[1].seq,
            pair[1].hlc,
            pair[0].seq,
            pair[0].hlc
        );
    }
    // Each store sees the other's writes.
    let tags = second.get_experiment(&ws, &experiment).await.unwrap().tags;
    assert_eq!(tags.len(), 60);
    drop(second);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_the_stores_sharing_a_database_holds_the_duties_and_hands_them_over() {
    let Some(mut harness) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let mut first = harness.store.duties();
    tokio::time::timeout(Duration::from_secs(10), first.until_held())
        .await
        .expect("the only process takes the duties at once");
    let second_store: Arc<dyn MetadataStore> = Arc::new(
        SqlStore::open(StoreOptions::new(harness.url.clone(), "test-region"))
            .await
            .unwrap(),
    );
    let mut second = second_store.duties();
    // Contending for several rounds, the second does not take them.
    for _ in 0..3 {
        tokio::time::sleep(tandem_store::CONTEND_EVERY).await;
        assert!(first.held() && !second.held());
    }
    // The holder goes away, its session with it: the other takes over.
    let holder = std::mem::replace(&mut harness.store, second_store);
    drop(first);
    drop(holder);
    tokio::time::timeout(Duration::from_secs(15), second.until_held())
        .await
        .expect("the duties handed over within seconds");
    drop(second);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_learns_of_what_another_process_on_its_database_commits() {
    let Some(harness) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let first = harness.store.clone();
    let second = another_process(&harness).await;
    let mut head = second.subscribe_head();
    let generation = second.access_generation();
    let ws = first.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();

    // A write through the other process wakes this one's head watchers
    // (a follower streaming from it), and leaves credential caches alone.
    first
        .create_experiment(&ws, "written elsewhere", None, Vec::new())
        .await
        .unwrap();
    let written = first.journal_position().await.unwrap().head;
    tokio::time::timeout(Duration::from_secs(10), head.wait_for(|seen| *seen >= written))
        .await
        .expect("the other process's commit announced within seconds")
        .unwrap();
    assert_eq!(second.access_generation(), generation);

    // An access change through the other process empties this one's
    // credential caches (their generation moves) within about a second:
    // a principal created, a token created, the token revoked.
    let noticed = |before: u64, what: &'static str| {
        let second = second.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while second.access_generation() == before {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what} elsewhere was not noticed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            second.access_generation()
        }
    };
    first.create_principal("elsewhere", "user", None).await.unwrap();
    let generation = noticed(generation, "a principal created").await;
    let token = first
        .create_token("t-elsewhere", "elsewhere", "hash-elsewhere", "", None)
        .await
        .unwrap();
    let generation = noticed(generation, "a token created").await;
    first.revoke_token(&token.token_id).await.unwrap();
    noticed(generation, "a token revoked").await;
    drop(second);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_fence_the_epoch_acknowledgements_and_uploads_reach_every_process_of_the_region() {
    let Some(harness) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let first = harness.store.clone();
    let second = another_process(&harness).await;
    let ws = first.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();
    let experiment = first
        .create_experiment(&ws, "fenced", None, Vec::new())
        .await
        .unwrap();
    let tag = |key: &str| Tag {
        key: key.to_string(),
        value: "v".to_string(),
    };

    // Closed by one process: refused by both, with the reason.
    first
        .set_write_fence(None, Some("handing the primary role over to 'west'"))
        .await
        .unwrap();
    for store in [&first, &second] {
        let refused = store
            .set_experiment_tag(&ws, &experiment, tag("closed"))
            .await
            .expect_err("a write past a closed fence");
        assert!(
            refused
                .to_string()
                .contains("handing the primary role over to 'west'"),
            "{refused}"
        );
    }
    // A lease deadline that passed: refused; one ahead: accepted.
    let now = tandem_store::now_millis();
    first.set_write_fence(Some(now - 1_000), None).await.unwrap();
    let refused = second
        .set_experiment_tag(&ws, &experiment, tag("lapsed"))
        .await
        .expect_err("a write past the lease's deadline");
    assert!(refused.to_string().contains("not renewed in time"), "{refused}");
    first.set_write_fence(Some(now + 60_000), None).await.unwrap();
    second
        .set_experiment_tag(&ws, &experiment, tag("leased"))
        .await
        .unwrap();
    first.set_write_fence(None, None).await.unwrap();
    second
        .set_experiment_tag(&ws, &experiment, tag("open"))
        .await
        .unwrap();
    let tags = first.get_experiment(&ws, &experiment).await.unwrap().tags;
    let keys: Vec<&str> = tags.iter().map(|tag| tag.key.as_str()).collect();
    assert!(keys.contains(&"leased") && keys.contains(&"open"), "{keys:?}");
    assert!(!keys.contains(&"closed") && !keys.contains(&"lapsed"), "{keys:?}");

    // An epoch begun by one process stamps the other's next records.
    let epoch = first.journal_position().await.unwrap().epoch + 3;
    first.begin_epoch(epoch).await.unwrap();
    let head = first.journal_position().await.unwrap().head;
    second
        .set_experiment_tag(&ws, &experiment, tag("next-epoch"))
        .await
        .unwrap();
    let records = first.journal_after(head, None, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].epoch, epoch,
        "the other process's record carries the new epoch"
    );

    // Acknowledgements only move forward, whichever process saw them.
    let at = tandem_store::now_millis();
    let ack = |applied| tandem_store::Acknowledgement {
        region: "west",
        applied,
        acknowledged_at: at,
    };
    first.share_acknowledgements(&[ack(10)]).await.unwrap();
    let shared = second.share_acknowledgements(&[ack(5)]).await.unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!((shared[0].region.as_str(), shared[0].applied), ("west", 10));

    // A direct upload opened through one is taken through the other, once.
    first.open_direct_upload("w/a.bin", "u-1", 3).await.unwrap();
    assert_eq!(second.direct_uploads_open().await.unwrap(), 1);
    assert_eq!(second.take_direct_upload("w/a.bin", "u-2").await.unwrap(), None);
    assert_eq!(second.take_direct_upload("w/b.bin", "u-1").await.unwrap(), None);
    assert_eq!(
        second.take_direct_upload("w/a.bin", "u-1").await.unwrap(),
        Some(3)
    );
    assert_eq!(first.take_direct_upload("w/a.bin", "u-1").await.unwrap(), None);
    first.open_direct_upload("w/c.bin", "u-3", 1).await.unwrap();
    assert!(second
        .direct_uploads_opened_before(60_000)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        second.direct_uploads_opened_before(10).await.unwrap(),
        vec![("w/c.bin".to_string(), "u-3".to_string())]
    );

    // The runtime document one publishes, the other reads.
    assert_eq!(second.runtime().await.unwrap(), None);
    first
        .publish_runtime("replica-1", "{\"format\":1}")
        .await
        .unwrap();
    let runtime = second.runtime().await.unwrap().expect("published");
    assert_eq!(
        (runtime.holder.as_str(), runtime.document.as_str()),
        ("replica-1", "{\"format\":1}")
    );
    drop(second);
    harness.finish().await;
}
