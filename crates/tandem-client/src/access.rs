//! Principals, tokens, role assignments and who-am-I
//! (`/api/tandem/v1/{whoami,principals,tokens,roles}`).

use serde_json::{json, Value};

use crate::{ClientError, ClientResult, TandemClient};

impl TandemClient {
    async fn access_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        query: &[(&str, &str)],
    ) -> ClientResult<Value> {
        let url = self.url(path);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = self.send(request, &url).await?;
        response
            .json()
            .await
            .map_err(|error| ClientError::Decode(error.to_string()))
    }

    /// Who the client's credentials authenticate as.
    pub async fn whoami(&self) -> ClientResult<Value> {
        self.access_call(reqwest::Method::GET, "/api/tandem/v1/whoami", None, &[])
            .await
    }

    /// Creates a user (with a password, if given) or a service principal,
    /// with a token unless `token` is false: `{"principal", "token", "token_id"}`.
    pub async fn create_principal(
        &self,
        name: &str,
        kind: &str,
        password: Option<&str>,
        token: bool,
        roles: &[(String, Option<String>)],
    ) -> ClientResult<Value> {
        let roles: Vec<Value> = roles
            .iter()
            .map(|(role, workspace)| json!({ "role": role, "workspace": workspace }))
            .collect();
        let body =
            json!({ "name": name, "kind": kind, "password": password, "token": token, "roles": roles });
        self.access_call(
            reqwest::Method::POST,
            "/api/tandem/v1/principals",
            Some(body),
            &[],
        )
        .await
    }

    pub async fn list_principals(&self) -> ClientResult<Value> {
        self.access_call(reqwest::Method::GET, "/api/tandem/v1/principals", None, &[])
            .await
    }

    /// Sets a password (None removes it) and/or disables or enables a principal.
    pub async fn update_principal(
        &self,
        name: &str,
        password: Option<Option<&str>>,
        disabled: Option<bool>,
    ) -> ClientResult<Value> {
        let mut body = serde_json::Map::new();
        if let Some(password) = password {
            body.insert("password".into(), json!(password));
        }
        if let Some(disabled) = disabled {
            body.insert("disabled".into(), json!(disabled));
        }
        self.access_call(
            reqwest::Method::PATCH,
            &format!("/api/tandem/v1/principals/{name}"),
            Some(Value::Object(body)),
            &[],
        )
        .await
    }

    pub async fn delete_principal(&self, name: &str) -> ClientResult<Value> {
        self.access_call(
            reqwest::Method::DELETE,
            &format!("/api/tandem/v1/principals/{name}"),
            None,
            &[],
        )
        .await
    }

    /// A new token: `{"token": secret, "info": …}`.
    pub async fn create_token(
        &self,
        principal: Option<&str>,
        description: &str,
        expires_in_seconds: Option<i64>,
    ) -> ClientResult<Value> {
        let body =
            json!({ "principal": principal, "description": description, "expires_in": expires_in_seconds });
        self.access_call(reqwest::Method::POST, "/api/tandem/v1/tokens", Some(body), &[])
            .await
    }

    /// Tokens of `principal` (None: the caller's; `*`: everyone's).
    pub async fn list_tokens(&self, principal: Option<&str>) -> ClientResult<Value> {
        let query: Vec<(&str, &str)> = principal.map(|name| ("principal", name)).into_iter().collect();
        self.access_call(reqwest::Method::GET, "/api/tandem/v1/tokens", None, &query)
            .await
    }

    pub async fn revoke_token(&self, token_id: &str) -> ClientResult<Value> {
        self.access_call(
            reqwest::Method::DELETE,
            &format!("/api/tandem/v1/tokens/{token_id}"),
            None,
            &[],
        )
        .await
    }

    pub async fn assign_role(
        &self,
        principal: &str,
        role: &str,
        workspace: Option<&str>,
    ) -> ClientResult<Value> {
        let body = json!({ "principal": principal, "role": role, "workspace": workspace });
        self.access_call(reqwest::Method::POST, "/api/tandem/v1/roles", Some(body), &[])
            .await
    }

    pub async fn remove_role(
        &self,
        principal: &str,
        role: &str,
        workspace: Option<&str>,
    ) -> ClientResult<Value> {
        let body = json!({ "principal": principal, "role": role, "workspace": workspace });
        self.access_call(reqwest::Method::DELETE, "/api/tandem/v1/roles", Some(body), &[])
            .await
    }

    pub async fn list_roles(&self, principal: Option<&str>, workspace: Option<&str>) -> ClientResult<Value> {
        let mut query = Vec::new();
        if let Some(principal) = principal {
            query.push(("principal", principal));
        }
        if let Some(workspace) = workspace {
            query.push(("workspace", workspace));
        }
        self.access_call(reqwest::Method::GET, "/api/tandem/v1/roles", None, &query)
            .await
    }
}
