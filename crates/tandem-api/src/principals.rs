//! Principals, API tokens and role assignments over HTTP: Tandem's own API
//! (`/api/tandem/v1/{whoami,principals,tokens,roles}`) and MLflow 3's user
//! endpoints (`/api/2.0/mlflow/users/…`), so tools written for `mlflow
//! server --app-name basic-auth` keep working. MLflow's `is_admin` is the
//! Admin role at deployment scope.
//!
//! The gate ([`crate::access`]) has checked each route's declared
//! permission; handlers declared `Authenticated` narrow it here (your own
//! tokens and password; the role assignments of workspaces you own).

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use tandem_core::access::{Permission, Principal, Role, RoleAssignment, TokenInfo, SERVICE, USER};
use tandem_core::ErrorKind;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{decode_slice, Message};
use crate::openapi::{tags, ErrorBody};
use crate::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(list_principals, create_principal))
        .routes(routes!(get_principal, update_principal, delete_principal))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_roles, assign_role, remove_role))
}

/// MLflow's user endpoints, at the root only (users are deployment-wide).
pub(crate) fn mlflow_user_routes() -> axum::Router<AppState> {
    use axum::routing::{delete, get, patch, post};
    axum::Router::new()
        .route("/api/2.0/mlflow/users/create", post(mlflow_create_user))
        .route("/api/2.0/mlflow/users/get", get(mlflow_get_user))
        .route("/api/2.0/mlflow/users/current", get(mlflow_current_user))
        .route(
            "/api/2.0/mlflow/users/update-password",
            patch(mlflow_update_password),
        )
        .route("/api/2.0/mlflow/users/update-admin", patch(mlflow_update_admin))
        .route("/api/2.0/mlflow/users/delete", delete(mlflow_delete_user))
        .route("/api/2.0/mlflow/users/list", get(mlflow_list_users))
        // What MLflow's own web UI calls.
        .route("/ajax-api/2.0/mlflow/users/current", get(mlflow_current_user))
        .route("/ajax-api/2.0/mlflow/users/list", get(mlflow_list_users))
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.is_empty() {
        decode_slice(b"{}")
    } else {
        decode_slice(bytes)
    }
}

/// The authenticated caller's name; refused on a server without
/// authentication where the route is about "me".
fn me(caller: &Caller) -> ApiResult<&str> {
    caller.name().ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidState,
            "This server runs without authentication: there is no current principal. Start it with --auth.",
        )
    })
}

/// Whether the caller may act on `principal`'s own things (tokens,
/// password): itself, or an admin.
fn self_or_admin(caller: &Caller, principal: &str) -> ApiResult<()> {
    match caller {
        Caller::Open => Ok(()),
        Caller::Authenticated(identity) if identity.name == principal => Ok(()),
        Caller::Authenticated(_) => caller.require(Permission::Administer, None),
    }
}

#[derive(Serialize, ToSchema)]
struct WhoAmI {
    /// The authenticated principal (None: the server runs without authentication).
    name: Option<String>,
    kind: Option<String>,
    authentication: bool,
    roles: Vec<tandem_core::access::Grant>,
    token_id: Option<String>,
}

/// Who the request authenticated as, and its role assignments.
#[utoipa::path(get, path = "/api/tandem/v1/whoami", tag = tags::ACCESS,
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ))]
async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(match caller {
        Caller::Open => WhoAmI {
            name: None,
            kind: None,
            authentication: false,
            roles: Vec::new(),
            token_id: None,
        },
        Caller::Authenticated(identity) => WhoAmI {
            name: Some(identity.name),
            kind: Some(identity.kind),
            authentication: true,
            roles: identity.grants.0,
            token_id: identity.token_id,
        },
    })
}

#[derive(Serialize, ToSchema)]
struct PrincipalList {
    principals: Vec<Principal>,
}

/// Every principal (admins only).
#[utoipa::path(get, path = "/api/tandem/v1/principals", tag = tags::ACCESS,
    responses(
        (status = 200, description = "The principals", body = PrincipalList),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn list_principals(State(state): State<AppState>) -> ApiResult<Json<PrincipalList>> {
    Ok(Json(PrincipalList {
        principals: state.store.list_principals().await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreatePrincipal {
    name: String,
    /// `user` (default) or `service`.
    #[serde(default)]
    kind: Option<String>,
    /// A password, for HTTP Basic logins (users only).
    #[serde(default)]
    password: Option<String>,
    /// Also create an API token and return it (default true).
    #[serde(default)]
    token: Option<bool>,
    /// Roles to assign at once.
    #[serde(default)]
    roles: Vec<RoleRequest>,
}

#[derive(Serialize, ToSchema)]
struct CreatedPrincipal {
    principal: Principal,
    /// The new token's secret: shown once, never again.
    token: Option<String>,
    token_id: Option<String>,
}

/// Creates a user or a service principal, optionally with a password, a
/// token and role assignments (admins only).
#[utoipa::path(post, path = "/api/tandem/v1/principals", tag = tags::ACCESS,
    request_body = CreatePrincipal,
    responses(
        (status = 200, description = "Created", body = CreatedPrincipal),
        (status = 400, description = "Invalid name, kind, password or role, or the principal exists", body = ErrorBody),
    ))]
async fn create_principal(
    State(state): State<AppState>,
    request: axum::body::Bytes,
) -> ApiResult<Json<CreatedPrincipal>> {
    let request: CreatePrincipal = body(&request)?;
    let kind = request.kind.as_deref().unwrap_or(USER);
    if kind == SERVICE && request.password.is_some() {
        return Err(ApiError::invalid(
            "A service principal has no password: it authenticates with tokens",
        ));
    }
    tandem_core::access::validate_principal_name(&request.name)?;
    // Validate everything before writing anything.
    let roles = request
        .roles
        .iter()
        .map(|role| Ok((Role::parse(&role.role)?, role.workspace.clone())))
        .collect::<ApiResult<Vec<_>>>()?;
    for (role, workspace) in &roles {
        if workspace.is_some() && !role.assignable_to_workspace() {
            return Err(ApiError::invalid(format!(
                "Role {role} applies to the whole deployment: assign it without a workspace"
            )));
        }
        if let Some(workspace) = workspace {
            state.store.get_workspace(workspace).await?;
        }
    }
    let hash = match &request.password {
        Some(password) => {
            tandem_core::access::validate_password(password)?;
            Some(hash_password(password.clone()).await?)
        }
        None => None,
    };
    let mut principal = state.store.create_principal(&request.name, kind, hash).await?;
    for (role, workspace) in roles {
        state
            .store
            .assign_role(&request.name, role, workspace.as_deref())
            .await?;
    }
    let (token, token_id) = if request.token.unwrap_or(true) {
        let (secret, info) = mint(&state, &request.name, "created with the principal", None).await?;
        (Some(secret), Some(info.token_id))
    } else {
        (None, None)
    };
    if let Some(updated) = state.store.principal(&request.name).await? {
        principal = updated;
    }
    Ok(Json(CreatedPrincipal {
        principal,
        token,
        token_id,
    }))
}

async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || tandem_auth::secret::hash_password(&password))
        .await
        .map_err(|error| ApiError::new(ErrorKind::Internal, format!("password hashing failed: {error}")))
}

/// Mints a token for `principal`: its secret (shown once) and its record.
async fn mint(
    state: &AppState,
    principal: &str,
    description: &str,
    expires_at: Option<i64>,
) -> ApiResult<(String, TokenInfo)> {
    Ok(tandem_auth::issue_token(state.store.as_ref(), principal, description, expires_at, None).await?)
}

async fn principal_or_404(state: &AppState, name: &str) -> ApiResult<Principal> {
    state
        .store
        .principal(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Principal '{name}' does not exist")))
}

/// One principal (admins only).
#[utoipa::path(get, path = "/api/tandem/v1/principals/{name}", tag = tags::ACCESS,
    params(("name" = String, Path, description = "The principal's name")),
    responses(
        (status = 200, description = "The principal", body = Principal),
        (status = 404, description = "No such principal", body = ErrorBody),
    ))]
async fn get_principal(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Principal>> {
    Ok(Json(principal_or_404(&state, &name).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdatePrincipal {
    /// A new password (users only); null removes it.
    #[serde(default, deserialize_with = "present")]
    password: Option<Option<String>>,
    disabled: Option<bool>,
}

/// Distinguishes an absent field from an explicit null.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(deserializer)?))
}

/// Changes a principal's password or disables/enables it (admins only).
#[utoipa::path(patch, path = "/api/tandem/v1/principals/{name}", tag = tags::ACCESS,
    params(("name" = String, Path, description = "The principal's name")),
    request_body = UpdatePrincipal,
    responses(
        (status = 200, description = "The principal", body = Principal),
        (status = 404, description = "No such principal", body = ErrorBody),
    ))]
async fn update_principal(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: axum::body::Bytes,
) -> ApiResult<Json<Principal>> {
    let request: UpdatePrincipal = body(&request)?;
    let principal = principal_or_404(&state, &name).await?;
    if let Some(password) = request.password {
        let hash = match password {
            Some(password) => {
                if principal.kind == SERVICE {
                    return Err(ApiError::invalid(
                        "A service principal has no password: it authenticates with tokens",
                    ));
                }
                tandem_core::access::validate_password(&password)?;
                Some(hash_password(password).await?)
            }
            None => None,
        };
        state.store.set_password(&name, hash).await?;
    }
    if let Some(disabled) = request.disabled {
        if disabled != principal.disabled {
            state.store.set_principal_disabled(&name, disabled).await?;
        }
    }
    Ok(Json(principal_or_404(&state, &name).await?))
}

/// Deletes a principal with its tokens and role assignments (admins
/// only). An admin cannot delete itself: the deployment would be left
/// without the principal doing the deleting.
#[utoipa::path(delete, path = "/api/tandem/v1/principals/{name}", tag = tags::ACCESS,
    params(("name" = String, Path, description = "The principal's name")),
    responses(
        (status = 200, description = "Deleted"),
        (status = 404, description = "No such principal", body = ErrorBody),
    ))]
async fn delete_principal(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    if caller.name() == Some(name.as_str()) {
        return Err(ApiError::new(
            ErrorKind::InvalidState,
            "A principal cannot delete itself: ask another admin",
        ));
    }
    state.store.delete_principal(&name).await?;
    Ok(Json(json!({ "deleted": name })))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// Whose tokens (default: the caller's; another's needs Admin; `*`: everyone's).
    principal: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct TokenList {
    tokens: Vec<TokenInfo>,
}

/// API tokens: the caller's, or (admins) anyone's. Never their secrets.
#[utoipa::path(get, path = "/api/tandem/v1/tokens", tag = tags::ACCESS,
    params(TokenQuery),
    responses((status = 200, description = "The tokens", body = TokenList)))]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<TokenQuery>,
) -> ApiResult<Json<TokenList>> {
    let principal = match query.principal.as_deref() {
        Some("*") => {
            caller.require(Permission::Administer, None)?;
            None
        }
        Some(name) => {
            self_or_admin(&caller, name)?;
            Some(name.to_string())
        }
        None => Some(me(&caller)?.to_string()),
    };
    Ok(Json(TokenList {
        tokens: state.store.list_tokens(principal.as_deref()).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    /// For whom (default: the caller; another needs Admin).
    principal: Option<String>,
    #[serde(default)]
    description: String,
    /// Expiry as milliseconds since the epoch (default: none).
    expires_at: Option<i64>,
    /// Or expiry in seconds from now.
    expires_in: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct CreatedToken {
    /// The secret: shown once, never again.
    token: String,
    info: TokenInfo,
}

/// Creates an API token for the caller (or, for admins, another principal).
#[utoipa::path(post, path = "/api/tandem/v1/tokens", tag = tags::ACCESS,
    request_body = CreateToken,
    responses(
        (status = 200, description = "The token", body = CreatedToken),
        (status = 400, description = "Invalid expiry or description", body = ErrorBody),
    ))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    request: axum::body::Bytes,
) -> ApiResult<Json<CreatedToken>> {
    let request: CreateToken = body(&request)?;
    let principal = match request.principal {
        Some(name) => {
            self_or_admin(&caller, &name)?;
            name
        }
        None => me(&caller)?.to_string(),
    };
    let expires_at = match (request.expires_at, request.expires_in) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("Give expires_at or expires_in, not both"));
        }
        (Some(at), None) => Some(at),
        (None, Some(seconds)) if seconds <= 0 => {
            return Err(ApiError::invalid(
                "expires_in must be a positive number of seconds",
            ));
        }
        (None, Some(seconds)) => {
            Some(tandem_store::now_millis().saturating_add(seconds.saturating_mul(1000)))
        }
        (None, None) => None,
    };
    let (token, info) = mint(&state, &principal, &request.description, expires_at).await?;
    Ok(Json(CreatedToken { token, info }))
}

/// Revokes a token (its principal's own, or any for admins). Every region
/// refuses it as soon as the revocation reaches it.
#[utoipa::path(delete, path = "/api/tandem/v1/tokens/{token_id}", tag = tags::ACCESS,
    params(("token_id" = String, Path, description = "The token's id")),
    responses(
        (status = 200, description = "Revoked", body = TokenInfo),
        (status = 404, description = "No such token", body = ErrorBody),
    ))]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(token_id): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    let token = state
        .store
        .token(&token_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Token '{token_id}' does not exist")))?;
    self_or_admin(&caller, &token.principal)?;
    Ok(Json(state.store.revoke_token(&token_id).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RoleQuery {
    /// Only this workspace's assignments (needs Owner there, or Admin).
    workspace: Option<String>,
    /// Only this principal's assignments (yourself, or Admin).
    principal: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct RoleList {
    assignments: Vec<RoleAssignment>,
}

/// Role assignments: a workspace's (its owners), a principal's (itself),
/// or all (admins).
#[utoipa::path(get, path = "/api/tandem/v1/roles", tag = tags::ACCESS,
    params(RoleQuery),
    responses((status = 200, description = "The assignments", body = RoleList)))]
async fn list_roles(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<RoleQuery>,
) -> ApiResult<Json<RoleList>> {
    match (&query.workspace, &query.principal) {
        (Some(workspace), _) => {
            state.store.get_workspace(workspace).await?;
            caller.require(Permission::Manage, Some(workspace))?;
        }
        (None, Some(principal)) => self_or_admin(&caller, principal)?,
        (None, None) => caller.require(Permission::Administer, None)?,
    }
    Ok(Json(RoleList {
        assignments: state
            .store
            .role_assignments(query.principal.as_deref(), query.workspace.as_deref())
            .await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleRequest {
    /// Reader, Contributor, Owner (deployment or workspace scope),
    /// Operator or Admin (deployment scope).
    role: String,
    /// The workspace (by name); absent: the whole deployment.
    #[serde(default)]
    workspace: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AssignmentRequest {
    principal: String,
    role: String,
    #[serde(default)]
    workspace: Option<String>,
}

/// Who may change an assignment: a workspace's owners for its
/// workspace-scoped roles, admins for everything.
fn may_assign(caller: &Caller, workspace: Option<&str>) -> ApiResult<()> {
    match workspace {
        Some(workspace) => caller.require(Permission::Manage, Some(workspace)),
        None => caller.require(Permission::Administer, None),
    }
}

/// Assigns a role (idempotent).
#[utoipa::path(post, path = "/api/tandem/v1/roles", tag = tags::ACCESS,
    request_body = AssignmentRequest,
    responses(
        (status = 200, description = "The assignment", body = RoleAssignment),
        (status = 400, description = "Unknown role, or a deployment role in a workspace", body = ErrorBody),
        (status = 404, description = "No such principal or workspace", body = ErrorBody),
        (status = 409, description = "The workspace is deleted", body = ErrorBody),
    ))]
async fn assign_role(
    State(state): State<AppState>,
    caller: Caller,
    request: axum::body::Bytes,
) -> ApiResult<Json<RoleAssignment>> {
    let request: AssignmentRequest = body(&request)?;
    let role = Role::parse(&request.role)?;
    may_assign(&caller, request.workspace.as_deref())?;
    Ok(Json(
        state
            .store
            .assign_role(&request.principal, role, request.workspace.as_deref())
            .await?,
    ))
}

/// Removes a role assignment.
#[utoipa::path(delete, path = "/api/tandem/v1/roles", tag = tags::ACCESS,
    request_body = AssignmentRequest,
    responses(
        (status = 200, description = "Removed"),
        (status = 404, description = "No such assignment", body = ErrorBody),
    ))]
async fn remove_role(
    State(state): State<AppState>,
    caller: Caller,
    request: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let request: AssignmentRequest = body(&request)?;
    let role = Role::parse(&request.role)?;
    may_assign(&caller, request.workspace.as_deref())?;
    state
        .store
        .remove_role(&request.principal, role, request.workspace.as_deref())
        .await?;
    Ok(Json(json!({})))
}

// MLflow's user endpoints.

/// MLflow's `User.to_json()`; the id is stable across regions (derived
/// from the name: principals are keyed by name).
fn mlflow_user(principal: &Principal) -> Value {
    let digest = sha2::Sha256::digest(principal.name.as_bytes());
    let id = i64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) & 0x001f_ffff_ffff_ffff;
    let is_admin = tandem_core::access::Grants(principal.roles.clone()).is_admin();
    json!({ "id": id, "username": principal.name, "is_admin": is_admin })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlflowCredentials {
    username: String,
    password: String,
}

async fn mlflow_create_user(
    State(state): State<AppState>,
    Message(request): Message<MlflowCredentials>,
) -> ApiResult<Json<Value>> {
    tandem_core::access::validate_principal_name(&request.username)?;
    tandem_core::access::validate_password(&request.password)?;
    let hash = hash_password(request.password).await?;
    let principal = state
        .store
        .create_principal(&request.username, USER, Some(hash))
        .await?;
    Ok(Json(json!({ "user": mlflow_user(&principal) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlflowUsername {
    username: String,
}

async fn mlflow_get_user(
    State(state): State<AppState>,
    caller: Caller,
    Message(request): Message<MlflowUsername>,
) -> ApiResult<Json<Value>> {
    self_or_admin(&caller, &request.username)?;
    let principal = principal_or_404(&state, &request.username).await?;
    Ok(Json(json!({ "user": mlflow_user(&principal) })))
}

async fn mlflow_current_user(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let principal = principal_or_404(&state, me(&caller)?).await?;
    Ok(Json(json!({ "user": mlflow_user(&principal) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlflowPasswordUpdate {
    username: String,
    password: String,
    current_password: Option<String>,
}

/// As MLflow 3.17: an admin changes anyone's password; a user changing its
/// own must give the current one.
async fn mlflow_update_password(
    State(state): State<AppState>,
    caller: Caller,
    Message(request): Message<MlflowPasswordUpdate>,
) -> ApiResult<Json<Value>> {
    self_or_admin(&caller, &request.username)?;
    let is_admin = match &caller {
        Caller::Open => true,
        Caller::Authenticated(identity) => identity.is_admin(),
    };
    principal_or_404(&state, &request.username).await?;
    if !is_admin {
        let current = request
            .current_password
            .ok_or_else(|| ApiError::missing("current_password"))?;
        let stored = state.store.password_hash(&request.username).await?;
        let matches = match stored {
            Some(hash) => {
                tokio::task::spawn_blocking(move || tandem_auth::secret::verify_password(&hash, &current))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        if !matches {
            return Err(ApiError::new(
                ErrorKind::PermissionDenied,
                "Current password is incorrect",
            ));
        }
    }
    tandem_core::access::validate_password(&request.password)?;
    let hash = hash_password(request.password).await?;
    state.store.set_password(&request.username, Some(hash)).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlflowAdminUpdate {
    username: String,
    is_admin: bool,
}

async fn mlflow_update_admin(
    State(state): State<AppState>,
    Message(request): Message<MlflowAdminUpdate>,
) -> ApiResult<Json<Value>> {
    let principal = principal_or_404(&state, &request.username).await?;
    let is_admin = tandem_core::access::Grants(principal.roles).is_admin();
    match (request.is_admin, is_admin) {
        (true, false) => {
            state
                .store
                .assign_role(&request.username, Role::Admin, None)
                .await?;
        }
        (false, true) => {
            state
                .store
                .remove_role(&request.username, Role::Admin, None)
                .await?
        }
        _ => {}
    }
    Ok(Json(json!({})))
}

async fn mlflow_delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Message(request): Message<MlflowUsername>,
) -> ApiResult<Json<Value>> {
    if caller.name() == Some(request.username.as_str()) {
        return Err(ApiError::new(
            ErrorKind::InvalidState,
            "A principal cannot delete itself: ask another admin",
        ));
    }
    state.store.delete_principal(&request.username).await?;
    Ok(Json(json!({})))
}

async fn mlflow_list_users(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let users: Vec<Value> = state
        .store
        .list_principals()
        .await?
        .iter()
        .filter(|principal| principal.kind == USER)
        .map(mlflow_user)
        .collect();
    Ok(Json(json!({ "users": users })))
}
