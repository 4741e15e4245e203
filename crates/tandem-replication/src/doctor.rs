//! `GET /api/tandem/v1/doctor`: the report `tandem doctor` prints — would a
//! failover succeed now? — for the console. The region asks every region
//! of the deployment (itself included) over the same API the CLI uses, with
//! the caller's own credentials (an operator's token, password or console
//! session), so the report shows exactly what that caller may see and the
//! region lends it no authority of its own.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tandem_api::openapi::{tags, ErrorBody};
use tandem_client::{Credentials, TandemClient};

use crate::protocol::Document;
use crate::Region;

/// The caller's credentials, to ask the other regions as the caller.
fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    use base64::Engine;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match presented {
        Some(value) if value.starts_with("Bearer ") => {
            Some(Credentials::Token(value["Bearer ".len()..].trim().to_string()))
        }
        Some(value) if value.starts_with("Basic ") => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value["Basic ".len()..].trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (username, password) = text.split_once(':')?;
            Some(Credentials::Password {
                username: username.to_string(),
                password: password.to_string(),
            })
        }
        _ => tandem_http::cookie(headers, "tandem_session").map(Credentials::Token),
    }
}

/// Would a failover succeed now: every check of `tandem doctor` over what
/// every region answers the caller.
#[utoipa::path(get, path = "/api/tandem/v1/doctor", tag = tags::REPLICATION,
    responses(
        (status = 200, description = "The doctor's report: each check's verdict, reason and fix", body = Document),
        (status = 500, description = "The report could not be made", body = ErrorBody),
    ))]
pub(crate) async fn doctor(State(region): State<Arc<Region>>, headers: HeaderMap) -> Response {
    let own = region
        .deployment
        .region(&region.name)
        .map(|spec| spec.url.clone())
        .unwrap_or_default();
    let client = match TandemClient::with_options(
        &own,
        credentials(&headers).as_ref(),
        region.deployment.ca_pem.as_deref(),
    ) {
        Ok(client) => client,
        Err(error) => {
            return tandem_api::error::ApiError::new(tandem_core::ErrorKind::Internal, error.to_string())
                .into_response()
        }
    };
    let regions = region
        .deployment
        .regions()
        .iter()
        .map(|spec| (spec.name.clone(), spec.url.clone()))
        .collect();
    let inputs = tandem_doctor::collect(&client, regions).await;
    let checks = tandem_doctor::checks::run(&inputs);
    Json(tandem_doctor::Report::new(&inputs, checks)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_credentials_are_passed_on() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer tandem_abc".parse().unwrap());
        assert_eq!(
            credentials(&headers),
            Some(Credentials::Token("tandem_abc".into()))
        );
        headers.insert(
            header::AUTHORIZATION,
            "Basic YWxpY2U6czNjcmV0Og==".parse().unwrap(),
        );
        assert_eq!(
            credentials(&headers),
            Some(Credentials::Password {
                username: "alice".into(),
                password: "s3cret:".into()
            })
        );
        let mut cookie = HeaderMap::new();
        cookie.insert(header::COOKIE, "a=b; tandem_session=tandem_xyz".parse().unwrap());
        assert_eq!(
            credentials(&cookie),
            Some(Credentials::Token("tandem_xyz".into()))
        );
        assert_eq!(credentials(&HeaderMap::new()), None);
    }
}
