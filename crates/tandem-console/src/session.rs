//! Signing in and out, and the guards of every change a page makes.

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tandem_api::access::Caller;
use tandem_api::AppState;

use crate::pages::{layout, message_page};

/// The cookie holding the session's token (an API token minted at sign-in).
pub const SESSION_COOKIE: &str = "tandem_session";
/// How long a console session lasts.
const SESSION_SECONDS: i64 = 12 * 3600;

/// The session token a request carries in its cookie, if any.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    tandem_api::access::session_cookie(headers)
}

/// The CSRF token of a session: derived from the session's token, so it
/// needs no storage, and useless without the cookie.
pub(crate) fn csrf_token(session: &str) -> String {
    hex::encode(&Sha256::digest(format!("tandem-console-csrf:{session}").as_bytes())[..16])
}

/// The CSRF token to put in the forms of a page (empty without a session).
pub(crate) fn csrf_for(headers: &HeaderMap) -> String {
    session_token(headers)
        .map(|token| csrf_token(&token))
        .unwrap_or_default()
}

/// The refusal of a change that did not come from the console itself (None:
/// go ahead): with a session, the form's CSRF token must match it; without
/// authentication (no session), the request must come from this origin.
pub(crate) fn guard_change(headers: &HeaderMap, caller: &Caller, csrf: &str) -> Option<Response> {
    let refused = |why: &str| {
        Some(message_page(
            StatusCode::FORBIDDEN,
            "Refused",
            &format!("{why}: reload the page and try again."),
        ))
    };
    match (caller, session_token(headers)) {
        (Caller::Authenticated(_), Some(session)) => {
            if tandem_auth::secret::constant_time_eq(csrf_token(&session).as_bytes(), csrf.as_bytes()) {
                None
            } else {
                refused("This form's security token does not match your session")
            }
        }
        // A token in an Authorization header is not sent by a browser on
        // its own: no cross-site request can carry it.
        (Caller::Authenticated(_), None) => None,
        (Caller::Open, _) => {
            let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
            let origin = headers
                .get(header::ORIGIN)
                .and_then(|value| value.to_str().ok())
                .and_then(|origin| url::Url::parse(origin).ok())
                .map(|url| match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_string(),
                });
            match (origin, host) {
                (Some(origin), Some(host)) if origin == host => None,
                (None, _) => refused("A change needs the page's origin (Origin header)"),
                _ => refused("A change from another site"),
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
    error: Option<String>,
}

/// Only a path of this server: never send a signed-in user elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.to_string()
        }
        _ => "/".to_string(),
    }
}

pub(crate) async fn login_page(Query(query): Query<Next>) -> Response {
    let next = safe_next(query.next.as_deref());
    layout(
        "Sign in",
        "",
        html! {
            h1 { "Sign in to Tandem" }
            @if let Some(error) = &query.error {
                p.error role="alert" { (error) }
            }
            form.signin method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label { "Username" input name="username" autocomplete="username"; }
                label { "Password" input type="password" name="password" autocomplete="current-password"; }
                p.or { "or" }
                label { "API token" input type="password" name="token" autocomplete="off"; }
                button type="submit" { "Sign in" }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
    next: Option<String>,
}

fn back_to_login(next: &str, error: &str) -> Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .append_pair("error", error)
        .finish();
    Redirect::to(&format!("/login?{query}")).into_response()
}

/// Checks the password (or the token) and opens a session: a token of its
/// own, expiring with the session, in the cookie.
pub(crate) async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    let principal = if !form.token.trim().is_empty() {
        let hash = tandem_auth::secret::token_hash(form.token.trim());
        match state.store.token_by_hash(&hash).await {
            Ok(Some(token)) if token.unusable(tandem_store::now_millis()).is_none() => token.principal,
            Ok(_) => return back_to_login(&next, "That token is unknown, expired or revoked."),
            Err(error) => return back_to_login(&next, &format!("Cannot check the token now: {error}")),
        }
    } else {
        let stored = match state.store.password_hash(form.username.trim()).await {
            Ok(stored) => stored,
            Err(error) => return back_to_login(&next, &format!("Cannot check the password now: {error}")),
        };
        let password = form.password.clone();
        let matches = match stored {
            Some(hash) => {
                tokio::task::spawn_blocking(move || tandem_auth::secret::verify_password(&hash, &password))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        if !matches {
            return back_to_login(&next, "Wrong username or password.");
        }
        form.username.trim().to_string()
    };
    match state.store.principal(&principal).await {
        Ok(Some(found)) if !found.disabled => {}
        _ => return back_to_login(&next, "This principal cannot sign in."),
    }
    let issued = tandem_store::actor::scope(
        Some(principal.clone()),
        tandem_auth::issue_token(
            state.store.as_ref(),
            &principal,
            "console session",
            Some(tandem_store::now_millis() + SESSION_SECONDS * 1000),
            None,
        ),
    )
    .await;
    let session = match issued {
        Ok((secret, _)) => secret,
        Err(error) => return back_to_login(&next, &format!("Cannot open a session now: {error}")),
    };
    tracing::info!(principal, "signed in to the console");
    let cookie =
        format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}");
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session: its token is revoked, the cookie cleared.
pub(crate) async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = guard_change(&headers, &caller, &form.csrf) {
        return refused;
    }
    if let (Caller::Authenticated(identity), Some(_)) = (&caller, session_token(&headers)) {
        if let Some(token_id) = &identity.token_id {
            if let Err(error) = state.store.revoke_token(token_id).await {
                tracing::warn!(%error, "could not revoke a console session's token");
            }
        }
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/runs/abc")), "/runs/abc");
        for outside in ["https://evil.example/", "//evil.example/x", "/\\evil", "runs"] {
            assert_eq!(safe_next(Some(outside)), "/", "{outside}");
        }
    }

    #[test]
    fn csrf_tokens_follow_their_session() {
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a").len(), 32);
    }
}
