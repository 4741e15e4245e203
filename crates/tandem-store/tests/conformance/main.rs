//! The conformance suite of [`MetadataStore`]: every test runs against every
//! backend (SQLite in a temporary directory, and PostgreSQL in a database the
//! test creates and drops). PostgreSQL comes from `TANDEM_TEST_POSTGRES_URL`
//! (an admin connection, default `postgres://postgres@127.0.0.1:5432/postgres`);
//! if it cannot be reached the PostgreSQL tests fail, unless
//! `TANDEM_SKIP_POSTGRES=1` says to skip them.

#[path = "../support/mod.rs"]
mod support;

mod access;
mod journal;
mod moving;
mod regions;
mod registry;
mod tracking;

use std::sync::Arc;
use tandem_core::access::Role;

use support::{metric, Backend};
use tandem_core::journal::{AssetClass, JournalRecord};
use tandem_core::model::*;
use tandem_core::ErrorKind;
use tandem_store::*;

use access::*;
use journal::*;
use moving::*;
use regions::*;
use registry::*;
use tracking::*;

fn kind(error: StoreError) -> ErrorKind {
    error.kind()
}

fn param(key: &str, value: &str) -> Param {
    Param {
        key: key.to_string(),
        value: value.to_string(),
    }
}

async fn default_ws(store: &dyn MetadataStore) -> WorkspaceRef {
    store.resolve_workspace(DEFAULT_WORKSPACE).await.unwrap()
}

async fn new_run(store: &dyn MetadataStore, ws: &WorkspaceRef, experiment_id: &str) -> Run {
    store
        .create_run(
            ws,
            CreateRun {
                experiment_id: experiment_id.to_string(),
                ..CreateRun::default()
            },
        )
        .await
        .unwrap()
}

/// Declares one test per backend for each suite function.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = super::support::Harness::new(super::Backend::Sqlite).await else { return };
                    super::$name(&harness).await;
                    harness.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = super::support::Harness::new(super::Backend::Postgres).await else { return };
                    super::$name(&harness).await;
                    harness.finish().await;
                }
            )*
        }
    };
}

conformance!(
    workspaces_lifecycle,
    experiments_lifecycle,
    runs_and_run_data,
    params_cannot_change_and_nothing_is_half_written,
    run_data_batches_check_and_apply_as_one,
    metric_history_and_non_finite_values,
    search_runs_filters_orders_and_pages,
    logged_models,
    registry,
    artifacts_index_and_owners,
    every_write_is_journaled_in_order,
    replaying_the_journal_rebuilds_the_live_state,
    concurrent_writers_keep_the_journal_gap_free,
    refused_writes_among_concurrent_ones_leave_the_others_whole,
    hot_hot_regions_converge_and_record_conflicts,
    epochs_fence_and_quarantine_divergent_changes,
    the_write_probe_commits_without_journaling_or_changing_state,
    principals_tokens_and_roles,
    moving_between_workspaces,
    moves_and_the_collector_are_fenced_apart,
);
