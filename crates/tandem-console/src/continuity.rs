//! The continuity pages the console adds to a workspace's: its deleted
//! items with the time left before each is purged (recover, purge), and the
//! deployment's audit trail from the journal.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use tandem_api::access::Caller;
use tandem_api::extract::Ws;
use tandem_api::AppState;
use tandem_core::access::Permission;
use tandem_core::model::format_utc;
use tandem_store::retention::DeletedKind;

use crate::pages::{base, layout, message_page, store_error};
use crate::session::{csrf_for, guard_change};

/// "3 d 4 h", "25 min", "due now".
fn time_left(until: i64, now: i64) -> String {
    let seconds = (until - now) / 1000;
    if seconds <= 0 {
        "due now".to_string()
    } else if seconds < 3600 {
        format!("{} min", (seconds + 59) / 60)
    } else if seconds < 86_400 {
        format!("{} h {} min", seconds / 3600, seconds % 3600 / 60)
    } else {
        format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600)
    }
}

pub(crate) async fn deleted(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
) -> Response {
    let items = match state.store.list_deleted(&ws).await {
        Ok(items) => items,
        Err(error) => return store_error(error),
    };
    let prefix = base(&ws);
    let owner = caller.require(Permission::Manage, Some(&ws.name)).is_ok();
    let csrf = csrf_for(&headers);
    let now = tandem_store::now_millis();
    layout(
        "Deleted items",
        &prefix,
        html! {
            h1 { "Deleted items" span.workspace { " in " (ws.name) } }
            p.note { "Kept until their workspace's retention ends, then purged for good. Recovering brings an item back whole; purging removes it now." }
            table.deleted {
                thead { tr { th { "Kind" } th { "Name" } th { "Deleted" } th { "Purged in" } @if owner { th {} } } }
                tbody {
                    @for item in &items {
                        tr {
                            td { (item.kind.as_str().replace('_', " ")) }
                            td { (item.name) " " span.id { (item.id) } }
                            td { (format_utc(item.deletion_time)) }
                            td.left { (time_left(item.purge_after, now)) }
                            @if owner {
                                td {
                                    form.inline method="post" action={ (prefix) "/deleted/" (item.kind.as_str()) "/" (item.id) "/recover" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        @if item.kind == DeletedKind::RegisteredModel {
                                            // Its name may have been taken since: then it comes back under another.
                                            input type="text" name="as" placeholder="as (if the name is taken)" aria-label={ "Recover " (item.name) " as" };
                                        }
                                        button { "Recover" }
                                    }
                                    form.inline method="post" action={ (prefix) "/deleted/" (item.kind.as_str()) "/" (item.id) "/purge" } data-confirm={ "Purge " (item.name) " for good? This cannot be undone." } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.danger { "Purge" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if items.is_empty() { p.empty { "Nothing is deleted in this workspace." } }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The recover form: a registered model may come back under a new name.
#[derive(Deserialize)]
pub(crate) struct RecoverForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "as")]
    new_name: String,
}

async fn act_on_deleted(
    state: AppState,
    ws: tandem_store::WorkspaceRef,
    caller: Caller,
    headers: HeaderMap,
    params: std::collections::HashMap<String, String>,
    csrf: &str,
    action: Action<'_>,
) -> Response {
    if let Some(refused) = guard_change(&headers, &caller, csrf) {
        return refused;
    }
    let (Some(kind), Some(id)) = (
        params.get("kind").and_then(|kind| DeletedKind::parse(kind)),
        params.get("id"),
    ) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such kind of deleted item.",
        );
    };
    let outcome = match action {
        Action::Purge => state.store.purge_deleted(&ws, kind, id, false).await,
        Action::Recover { new_name } => {
            let new_name = Some(new_name.trim()).filter(|name| !name.is_empty());
            state.store.recover_deleted_as(&ws, kind, id, new_name).await
        }
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("{}/deleted", base(&ws))).into_response(),
        Err(error) => store_error(error),
    }
}

pub(crate) async fn recover(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    Form(form): Form<RecoverForm>,
) -> Response {
    let action = Action::Recover {
        new_name: &form.new_name,
    };
    act_on_deleted(state, ws, caller, headers, params, &form.csrf, action).await
}

pub(crate) async fn purge(
    State(state): State<AppState>,
    Ws(ws): Ws,
    caller: Caller,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act_on_deleted(state, ws, caller, headers, params, &form.csrf, Action::Purge).await
}

/// What is done to a deleted item.
enum Action<'a> {
    /// Brought back; a registered model under `new_name` when not empty.
    Recover {
        new_name: &'a str,
    },
    Purge,
}

/// The newest records of the journal: who did what, when, where.
pub(crate) async fn audit(State(state): State<AppState>) -> Response {
    const SHOWN: i64 = 200;
    let head = match state.store.journal_position().await {
        Ok(position) => position.head,
        Err(error) => return store_error(error),
    };
    let mut records = match state
        .store
        .journal_after((head - SHOWN).max(0), None, SHOWN)
        .await
    {
        Ok(records) => records,
        Err(error) => return store_error(error),
    };
    records.reverse();
    layout(
        "Audit",
        "",
        html! {
            h1 { "Audit trail" }
            p.note { "The journal's newest " (records.len()) " records, newest first: every change, who made it and in which region (`tandem audit` filters all of them)." }
            table.audit {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Region" } th { "Workspace" } } }
                tbody {
                    @for record in &records {
                        tr {
                            td { (format_utc(record.recorded_at)) }
                            td { (record.principal.as_deref().unwrap_or("(anonymous)")) }
                            td { (record.change.kind()) }
                            td { (record.origin_region) }
                            td { @if record.workspace_id.is_empty() { "(deployment)" } @else { span.id { (record.workspace_id) } } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_left_reads_like_a_person_would_say_it() {
        let now = 1_000_000;
        assert_eq!(super::time_left(now - 1, now), "due now");
        assert_eq!(super::time_left(now + 90_000, now), "2 min");
        assert_eq!(super::time_left(now + 3_600_000 * 5 + 60_000, now), "5 h 1 min");
        assert_eq!(
            super::time_left(now + 86_400_000 * 13 + 3_600_000 * 2, now),
            "13 d 2 h"
        );
    }
}
