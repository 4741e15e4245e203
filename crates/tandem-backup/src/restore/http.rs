//! `POST /api/tandem/v1/restores` on the TARGET region: runs a restore and
//! answers a stream of NDJSON lines, one JSON object each:
//! `{"progress": {phase, done, total, unit}}` while it runs, then one
//! `{"result": RestoreOutcome}` or `{"error": {error_code, message}}`.
//! The restore goes on if the client disconnects: it is all or nothing
//! either way, and its outcome is visible in the workspace list.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::{Json, Router};
use serde::Deserialize;
use tandem_artifacts::ArtifactStore;
use tandem_core::model::Millis;
use tandem_store::MetadataStore;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{restore, BackupError, RestoreOutcome, RestorePoint, RestoreRequest};
use crate::http::{ndjson, refuse, ErrorBody, StreamLine, TAG};

pub const RESTORES_PATH: &str = "/api/tandem/v1/restores";

#[derive(Clone)]
struct Target {
    store: Arc<dyn MetadataStore>,
    storage: ArtifactStore,
    policy: Arc<crate::policy::RepositoryPolicy>,
}

/// The restore routes of a region whose metadata is `store` and whose
/// default storage is `storage`, restoring from the repositories `policy`
/// allows; merged into the server's router.
pub fn routes(
    store: Arc<dyn MetadataStore>,
    storage: ArtifactStore,
    policy: Arc<crate::policy::RepositoryPolicy>,
) -> Router {
    api().split_for_parts().0.with_state(Target {
        store,
        storage,
        policy,
    })
}

fn api() -> OpenApiRouter<Target> {
    OpenApiRouter::new().routes(routes!(start))
}

/// The OpenAPI document of the restore operation.
pub(crate) fn openapi_part() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The request body (also what `tandem-client` sends).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// The repository's URL.
    pub from: String,
    /// The workspace to restore (name or id, as the backup knows it).
    #[serde(default)]
    pub workspace: Option<String>,
    /// Restore this backup's position.
    #[serde(default)]
    pub backup: Option<String>,
    /// Restore the state at this journal position.
    #[serde(default)]
    pub seq: Option<i64>,
    /// Restore the state at this time: RFC 3339 text or milliseconds since the epoch.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub at: Option<serde_json::Value>,
    /// Whose journal `seq` or `at` count in (default: the repository's only region).
    #[serde(default)]
    pub region: Option<String>,
    /// Restore under this new name (a copy) instead of the original.
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
    /// Replace an existing workspace of that name.
    #[serde(default)]
    pub overwrite: bool,
    /// Refused when not empty: object-store credentials and endpoints come
    /// from the server's configuration, never from a request.
    #[serde(default)]
    pub options: std::collections::HashMap<String, String>,
}

impl RestoreBody {
    pub fn into_request(self) -> Result<RestoreRequest, BackupError> {
        if !self.options.is_empty() {
            return Err(BackupError::permission(
                "a request cannot bring object-store options (credentials, endpoints): the server uses its own \
                 configuration and environment for the repository",
            ));
        }
        let at = match &self.at {
            None => None,
            Some(serde_json::Value::Number(number)) => Some(number.as_i64().ok_or_else(|| {
                BackupError::invalid(format!(
                    "at must be whole milliseconds since the epoch, not {number}"
                ))
            })?),
            Some(serde_json::Value::String(text)) => Some(parse_time(text)?),
            Some(other) => {
                return Err(BackupError::invalid(format!(
                    "at must be an RFC 3339 time or milliseconds since the epoch, not {other}"
                )))
            }
        };
        let point = match (self.backup, self.seq, at) {
            (Some(backup), None, None) => RestorePoint::Backup(backup),
            (None, Some(seq), None) => RestorePoint::Seq(seq),
            (None, None, Some(at)) => RestorePoint::At(at),
            (None, None, None) => RestorePoint::Latest,
            _ => {
                return Err(BackupError::invalid(
                    "give at most one of backup, seq and at".to_string(),
                ))
            }
        };
        if self.region.is_some() && matches!(point, RestorePoint::Backup(_)) {
            return Err(BackupError::invalid(
                "region chooses the journal of seq or at; a backup names its own".to_string(),
            ));
        }
        Ok(RestoreRequest {
            from: self.from,
            repository_options: self.options,
            workspace: self.workspace,
            point,
            region: self.region,
            as_name: self.as_name,
            overwrite: self.overwrite,
        })
    }
}

/// Restores a workspace from a backup repository, to a backup, a journal
/// position or a time, in this region; all or nothing.
#[utoipa::path(post, path = "/api/tandem/v1/restores", tag = TAG, operation_id = "restore",
    request_body = RestoreBody,
    responses(
        (status = 200, description = "NDJSON: progress lines, then the outcome or the error", content_type = "application/x-ndjson", body = StreamLine<RestoreOutcome>),
        (status = 400, description = "Malformed request", body = ErrorBody),
    ))]
async fn start(
    State(target): State<Target>,
    body: Result<Json<RestoreBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    // A malformed request is answered at once, with its status code.
    let request = match body {
        Ok(Json(body)) => body.into_request(),
        Err(rejection) => Err(BackupError::invalid(rejection.body_text())),
    };
    let request = match request.and_then(|request| {
        target.policy.check(&request.from)?;
        Ok(request)
    }) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    ndjson(move |progress| async move {
        let outcome = restore(
            target.store.as_ref(),
            &target.storage,
            &request,
            progress.as_ref(),
        )
        .await?;
        Ok(serde_json::to_value(outcome).expect("outcomes encode"))
    })
}

/// Milliseconds since the epoch of an RFC 3339 time
/// (`2026-11-22T10:39:25Z`, `2026-11-22T10:39:25.250+01:00`) or of a plain
/// number of milliseconds.
pub fn parse_time(text: &str) -> Result<Millis, BackupError> {
    tandem_core::model::parse_utc(text).ok_or_else(|| {
        BackupError::invalid(format!(
            "'{text}' is not an RFC 3339 time (2026-11-22T10:39:25Z) or milliseconds since the epoch"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_rfc3339_or_milliseconds() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("2026-11-22T10:39:25Z").unwrap(), 1_795_343_965_000);
        assert_eq!(
            parse_time("2026-11-22T11:39:25.25+01:00").unwrap(),
            1_795_343_965_250
        );
        assert_eq!(parse_time("1795343965000").unwrap(), 1_795_343_965_000);
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-22T10:39:25",
            "2026-11-22T10:39:25.Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn at_most_one_point_is_given() {
        let body = |value: serde_json::Value| {
            serde_json::from_value::<RestoreBody>(value)
                .unwrap()
                .into_request()
        };
        assert_eq!(
            body(json!({"from": "file:///r"})).unwrap().point,
            RestorePoint::Latest
        );
        assert!(body(json!({"from": "file:///r", "seq": 3, "backup": "b"})).is_err());
        assert_eq!(
            body(json!({"from": "file:///r", "seq": 3})).unwrap().point,
            RestorePoint::Seq(3)
        );
        assert_eq!(
            body(json!({"from": "file:///r", "at": "1970-01-01T00:00:01Z", "as": "copy"}))
                .unwrap()
                .point,
            RestorePoint::At(1000)
        );
    }
}
