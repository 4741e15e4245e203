//! `search_experiments` and `search_registered_models` of the store against
//! the reference, on SQLite and PostgreSQL: whichever path the store takes
//! (filtered, ordered and paged by the database, or the grammar over what
//! the database's clauses let through), every page equals
//! `tandem_core::search` over whole entities — ties in creation time (the
//! id, ordered as a number, breaks them), names with what LIKE, GLOB and
//! collations treat specially, case, deleted entities, prompts, paging, and
//! an experiment id that is not a canonical number (which leaves ordering
//! by id to the grammar).

#[allow(dead_code)]
#[macro_use]
mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use support::Backend;
use tandem_core::model::*;
use tandem_store::*;

scenarios!(experiment_and_model_searches_give_the_reference_pages);

/// Names with what SQL treats specially, in mixed case and outside ASCII.
const STEMS: [&str; 10] = [
    "A*b",
    "a?c",
    "[x]",
    "100%",
    "a_b",
    "back\\slash",
    "Ünï\u{212A}",
    "abc",
    "ABC",
    "b b",
];
const TEAMS: [&str; 3] = ["red", "Red", "blue"];

/// A clock that moves one millisecond every third reading: entities
/// created together tie in their times.
#[derive(Debug)]
struct SlowClock(AtomicI64);

impl Clock for SlowClock {
    fn now_millis(&self) -> Millis {
        1_795_000_000_000 + self.0.fetch_add(1, Ordering::SeqCst) / 3
    }
}

fn query(filter: &str, order_by: &[&str], view_type: ViewType, token: Option<String>) -> SearchQuery {
    SearchQuery {
        filter: filter.to_string(),
        view_type,
        max_results: 7,
        order_by: order_by.iter().map(|o| o.to_string()).collect(),
        page_token: token,
    }
}

const SEARCHES: &[(&str, &[&str])] = &[
    ("", &[]),
    ("", &["name ASC"]),
    ("", &["name DESC"]),
    ("", &["creation_time ASC"]),
    ("", &["last_update_time DESC", "name ASC"]),
    ("", &["experiment_id DESC"]),
    ("name LIKE 'a%'", &[]),
    ("name LIKE '%\\%'", &["name"]),
    ("name LIKE '[x]%'", &[]),
    ("name LIKE '%*%'", &[]),
    ("name LIKE 'a_b%'", &[]),
    ("name ILIKE 'abc%'", &["name DESC"]),
    ("name ILIKE '%k%'", &[]),
    ("name ILIKE '%ÜNÏ%'", &["name"]),
    ("name ILIKE '%\u{212A}%' AND tags.team ILIKE 'RED'", &[]),
    ("name = 'abc-3'", &[]),
    ("name != 'abc-3'", &["creation_time DESC"]),
    ("tags.team = 'red'", &[]),
    ("tags.team != 'red'", &["name"]),
    ("tags.team LIKE 'r%'", &[]),
    ("tags.team ILIKE 'R%'", &[]),
    ("tags.note IS NULL", &["name"]),
    ("tags.note IS NOT NULL", &[]),
    ("tags.team = 'blue' AND name LIKE '%b%'", &["creation_time ASC"]),
    ("creation_time > 1795000000003", &[]),
    ("creation_time >= 1795000000003.5", &[]),
    ("last_update_time <= 1795000000010", &["name"]),
    ("experiment_id IN ('1', '3', '12', 'x-9')", &[]),
    ("experiment_id NOT IN ('1', '3')", &["creation_time ASC"]),
    ("experiment_id = '099'", &[]),
    ("name > 'b'", &[]),
];

const MODEL_SEARCHES: &[(&str, &[&str])] = &[
    ("", &[]),
    ("", &["name DESC"]),
    ("", &["creation_timestamp DESC"]),
    ("", &["last_updated_timestamp ASC"]),
    ("name LIKE 'a%'", &[]),
    ("name LIKE '%\\%'", &[]),
    ("name ILIKE 'ABC%'", &["name DESC"]),
    ("name = 'abc-3'", &[]),
    ("name != 'abc-3'", &["creation_timestamp ASC"]),
    ("name IN ('abc-3', 'ABC-8')", &[]),
    ("tags.team = 'red'", &[]),
    ("tags.team != 'red'", &[]),
    ("tags.team ILIKE 'r%'", &["creation_timestamp DESC"]),
    ("tags.`mlflow.prompt.is_prompt` = 'true'", &[]),
    ("tags.`mlflow.prompt.is_prompt` = 'false'", &[]),
    ("tags.`mlflow.prompt.is_prompt` != 'true'", &["name DESC"]),
];

async fn experiment_and_model_searches_give_the_reference_pages(backend: Backend) {
    let clock = Arc::new(SlowClock(AtomicI64::new(0)));
    let Some(harness) = support::Harness::with_clock(backend, clock).await else {
        return;
    };
    let store = harness.store.as_ref();
    let ws = store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap();

    let mut ids = vec![DEFAULT_EXPERIMENT_ID.to_string()];
    for i in 0..40 {
        let mut tags = vec![Tag::new("team", TEAMS[i % 3])];
        if i % 4 != 0 {
            tags.push(Tag::new("note", STEMS[i % 10]));
        }
        let name = format!("{}-{i}", STEMS[i % 10]);
        let id = store.create_experiment(&ws, &name, None, tags).await.unwrap();
        if i % 5 == 1 {
            store
                .set_experiment_tag(&ws, &id, Tag::new("later", "x"))
                .await
                .unwrap();
        }
        if i % 7 == 3 {
            store.delete_experiment(&ws, &id).await.unwrap();
        }
        ids.push(id);
    }
    for i in 0..30 {
        let mut tags = vec![Tag::new("team", TEAMS[i % 3])];
        match i % 5 {
            0 => tags.push(Tag::new("mlflow.prompt.is_prompt", "true")),
            1 => tags.push(Tag::new("mlflow.prompt.is_prompt", "false")),
            _ => {}
        }
        let name = format!("{}-{i}", STEMS[i % 10]);
        store
            .create_registered_model(&ws, &name, "", tags, "someone")
            .await
            .unwrap();
        if i % 6 == 2 {
            store.delete_registered_model(&ws, &name).await.unwrap();
        }
    }
    check_experiments(store, &ws, &ids, "canonical ids").await;
    check_models(store, &ws).await;

    // Ids this server does not issue (an older store's, say): the
    // database no longer orders ids, and every page is still the
    // reference's. (Not one equal as a number to another: their order
    // would be the one they were read in, on either path.)
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&harness.url)
        .await
        .unwrap();
    for (id, name) in [("x-9", "odd-id"), ("099", "zeros")] {
        sqlx::query(
            "INSERT INTO experiments (workspace_id, experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, $2, $3, 'file:///tmp/x', 'active', 1795000000004, 1795000000004)",
        )
        .bind(&ws.workspace_id)
        .bind(id)
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
        ids.push(id.to_string());
    }
    pool.close().await;
    check_experiments(store, &ws, &ids, "with other ids").await;
    harness.finish().await;
}

async fn check_experiments(store: &dyn MetadataStore, ws: &WorkspaceRef, ids: &[String], case: &str) {
    let mut whole = Vec::new();
    for id in ids {
        whole.push(store.get_experiment(ws, id).await.unwrap());
    }
    for view_type in [ViewType::ActiveOnly, ViewType::DeletedOnly, ViewType::All] {
        let candidates: Vec<Experiment> = whole
            .iter()
            .filter(|e| match view_type {
                ViewType::ActiveOnly => e.lifecycle_stage == LifecycleStage::Active,
                ViewType::DeletedOnly => e.lifecycle_stage == LifecycleStage::Deleted,
                ViewType::All => true,
            })
            .cloned()
            .collect();
        for (filter, order_by) in SEARCHES {
            let mut token = None;
            let mut pages = 0;
            loop {
                let wanted = query(filter, order_by, view_type, token.clone());
                let reference = tandem_core::search::search_experiments(
                    candidates.clone(),
                    filter,
                    &wanted.order_by,
                    wanted.max_results,
                    token.as_deref(),
                );
                let got = store.search_experiments(ws, wanted).await;
                let (reference, got) = match (reference, got) {
                    (Ok(reference), Ok(got)) => (reference, got),
                    (Err(a), Err(b)) => {
                        assert_eq!(a.to_string(), b.to_string(), "{case}: {filter} {order_by:?}");
                        break;
                    }
                    (a, b) => {
                        panic!("{case}: {filter} {order_by:?} {view_type:?}: reference {a:?}, store {b:?}")
                    }
                };
                assert_eq!(
                    got.items, reference.items,
                    "{case}: experiments {filter:?} by {order_by:?} ({view_type:?}), page {pages}"
                );
                assert_eq!(got.next_page_token, reference.next_page_token);
                pages += 1;
                assert!(pages < 20);
                match got.next_page_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
    }
}

async fn check_models(store: &dyn MetadataStore, ws: &WorkspaceRef) {
    let mut whole = Vec::new();
    for i in 0..30 {
        let name = format!("{}-{i}", STEMS[i % 10]);
        if let Ok(model) = store.get_registered_model(ws, &name).await {
            whole.push(model);
        }
    }
    assert_eq!(whole.len(), 25);
    for (filter, order_by) in MODEL_SEARCHES {
        let mut token = None;
        let mut pages = 0;
        loop {
            let wanted = query(filter, order_by, ViewType::ActiveOnly, token.clone());
            let reference = tandem_core::search::search_registered_models(
                whole.clone(),
                filter,
                &wanted.order_by,
                wanted.max_results,
                token.as_deref(),
            )
            .unwrap();
            let got = store.search_registered_models(ws, wanted).await.unwrap();
            assert_eq!(
                got.items, reference.items,
                "models {filter:?} by {order_by:?}, page {pages}"
            );
            assert_eq!(got.next_page_token, reference.next_page_token);
            pages += 1;
            assert!(pages < 20);
            match got.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
    }
}
