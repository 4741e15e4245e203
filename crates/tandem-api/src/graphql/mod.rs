//! MLflow's `/graphql` endpoint, which its web UI reads runs, experiments
//! and metric histories through (`MlflowGetExperimentQuery`, `GetRun`,
//! `SearchRuns`, `GetMetricHistoryBulkInterval`, …).
//!
//! MLflow generates its GraphQL schema from its REST messages and resolves
//! each root field by calling the REST handler of the same name. Tandem
//! does the same: the schema below is MLflow's (the part its UI and users
//! query, in SDL), each root field is answered by the REST route it mirrors,
//! called inside this process with the caller's identity and workspace, and
//! the REST answer is projected onto the query's selection (camelCase
//! names, 64-bit integers as strings — MLflow's `LongString` — and NaN
//! values as null, as MLflow's `MlflowMetricExtension` does). Queries are
//! parsed by `graphql-parser`, validated against the schema, and bounded
//! as MLflow bounds them (depth 10, 1,000 selections, 10 root fields, 10
//! aliases per level). The answer is MLflow's shape:
//! `{"data": …, "errors": [message, …] | null}`.

mod schema;
mod validate;

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use graphql_parser::query as q;
use serde_json::{json, Map, Value};
use tandem_store::WorkspaceRef;
use tower::ServiceExt;

use crate::access::Caller;
use crate::extract::Ws;
use crate::AppState;
use schema::SCHEMA;
use validate::{included, literal, prepare, Refusal};

/// A query is text a person wrote; a megabyte is far past any of the UI's.
const MAX_BODY: usize = 1 << 20;

type Set = q::SelectionSet<'static, String>;
type Field = q::Field<'static, String>;
type Fragments = HashMap<String, q::FragmentDefinition<'static, String>>;
type Variables = Map<String, Value>;

/// One query's execution: the document's fragments and variables, the
/// caller, and the API it resolves fields against.
struct Execution {
    fragments: Fragments,
    variables: Variables,
    api: Router,
    ws: WorkspaceRef,
    caller: Caller,
    errors: Vec<String>,
}

/// `GET|POST /graphql` (and under `/w/{workspace}/`).
pub(crate) async fn graphql(
    Ws(ws): Ws,
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let request = match read_request(&method, raw.as_deref(), body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let (status, body) = run(&state, ws, caller, request).await;
    (status, Json(body)).into_response()
}

struct GraphqlRequest {
    query: String,
    variables: Variables,
    operation_name: Option<String>,
}

fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "data": null, "errors": [message.into()] }))).into_response()
}

async fn read_request(method: &Method, raw: Option<&str>, body: Body) -> Result<GraphqlRequest, Response> {
    let fields: Map<String, Value> = if method == Method::GET {
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect()
    } else {
        let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the GraphQL request is larger than {MAX_BODY} bytes"),
            )
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => {
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    "the GraphQL request must be a JSON object",
                ))
            }
            Err(error) => {
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    format!("the GraphQL request is not valid JSON: {error}"),
                ))
            }
        }
    };
    let query = match fields.get("query") {
        Some(Value::String(query)) if !query.trim().is_empty() => query.clone(),
        _ => return Err(refused(StatusCode::BAD_REQUEST, "Must provide query string.")),
    };
    // GET carries the variables as JSON text.
    let variables = match fields.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(variables)) => variables.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => Map::new(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(variables)) => variables,
            _ => return Err(refused(StatusCode::BAD_REQUEST, "Variables are invalid JSON.")),
        },
        Some(_) => return Err(refused(StatusCode::BAD_REQUEST, "Variables must be an object.")),
    };
    let operation_name = match fields.get("operationName") {
        Some(Value::String(name)) if !name.is_empty() => Some(name.clone()),
        _ => None,
    };
    Ok(GraphqlRequest {
        query,
        variables,
        operation_name,
    })
}

/// The API the root fields resolve against: MLflow's routes of this
/// region, in-process.
fn api(state: &AppState) -> Router {
    Router::new()
        .merge(crate::tracking::routes())
        .merge(crate::models::routes())
        .merge(crate::artifacts::routes())
        .merge(crate::mlflow_ui::routes())
        .with_state(state.clone())
}

async fn run(
    state: &AppState,
    ws: WorkspaceRef,
    caller: Caller,
    request: GraphqlRequest,
) -> (StatusCode, Value) {
    let document = match q::parse_query::<String>(&request.query) {
        Ok(document) => document.into_static(),
        Err(error) => {
            let message = error.to_string();
            return (
                StatusCode::BAD_REQUEST,
                json!({ "data": null, "errors": [format!("Syntax Error: {}", message.trim())] }),
            );
        }
    };
    let mut execution = Execution {
        fragments: HashMap::new(),
        variables: Map::new(),
        api: api(state),
        ws,
        caller,
        errors: Vec::new(),
    };
    let (root_type, operation) = match prepare(&document, &mut execution, request) {
        Ok(prepared) => prepared,
        // A query the schema or the bounds refuse is answered 200 with
        // the error listed, as `mlflow server` answers it (its UI's client
        // reads GraphQL errors from a 200). Only text that is not GraphQL
        // at all is a 400 (MLflow fails with a 500 there).
        Err(Refusal(message)) => return (StatusCode::OK, json!({ "data": null, "errors": [message] })),
    };
    let data = execution.root(root_type, operation).await;
    let errors = if execution.errors.is_empty() {
        Value::Null
    } else {
        json!(execution.errors)
    };
    (StatusCode::OK, json!({ "data": data, "errors": errors }))
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for character in name.chars() {
        if character.is_ascii_uppercase() {
            out.push('_');
            out.push(character.to_ascii_lowercase());
        } else {
            out.push(character);
        }
    }
    out
}

/// An input object with MLflow's REST (snake_case) names.
fn rest_input(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(fields) => fields
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (snake_case(&key), value))
            .collect(),
        _ => Map::new(),
    }
}

/// How a root field is answered: the REST route it mirrors.
fn route_of(field: &str) -> Option<(Method, &'static str)> {
    Some(match field {
        "mlflowGetExperiment" => (Method::GET, "experiments/get"),
        "mlflowGetRun" => (Method::GET, "runs/get"),
        "mlflowSearchRuns" => (Method::POST, "runs/search"),
        "mlflowGetMetricHistoryBulkInterval" => (Method::GET, "metrics/get-history-bulk-interval"),
        "mlflowListArtifacts" => (Method::GET, "artifacts/list"),
        "mlflowSearchModelVersions" => (Method::GET, "model-versions/search"),
        "mlflowSearchDatasets" => (Method::POST, "experiments/search-datasets"),
        _ => return None,
    })
}

impl Execution {
    /// The fields a selection set selects on `type_name`, fragments
    /// flattened and directives applied, in order.
    fn collect(&self, set: &Set, out: &mut Vec<Field>) {
        for item in &set.items {
            match item {
                q::Selection::Field(field) => {
                    if included(&field.directives, &self.variables) {
                        out.push(field.clone());
                    }
                }
                q::Selection::InlineFragment(fragment) => {
                    if included(&fragment.directives, &self.variables) {
                        self.collect(&fragment.selection_set, out);
                    }
                }
                q::Selection::FragmentSpread(spread) => {
                    if included(&spread.directives, &self.variables) {
                        if let Some(fragment) = self.fragments.get(&spread.fragment_name) {
                            self.collect(&fragment.selection_set, out);
                        }
                    }
                }
            }
        }
    }

    fn fields(&self, set: &Set) -> Vec<Field> {
        let mut out = Vec::new();
        self.collect(set, &mut out);
        out
    }

    /// Whether `set` selects `name` anywhere at its own level.
    fn selects(&self, set: &Set, name: &str) -> Vec<Set> {
        self.fields(set)
            .into_iter()
            .filter(|field| field.name == name)
            .map(|field| field.selection_set)
            .collect()
    }

    async fn root(&mut self, root_type: &'static str, set: &Set) -> Value {
        let mut data = Map::new();
        for field in self.fields(set) {
            let key = field.alias.clone().unwrap_or_else(|| field.name.clone());
            let value = if field.name == "__typename" {
                Value::String(root_type.to_string())
            } else {
                match self.resolve(&field).await {
                    Ok(value) => value,
                    Err(message) => {
                        self.errors.push(message);
                        Value::Null
                    }
                }
            };
            merge_into(&mut data, key, value);
        }
        Value::Object(data)
    }

    /// One root field: its REST answer, extended and projected.
    async fn resolve(&mut self, field: &Field) -> Result<Value, String> {
        let (ty, _) = SCHEMA
            .objects
            .get("Query")
            .and_then(|fields| fields.get(&field.name))
            .or_else(|| {
                SCHEMA
                    .objects
                    .get("Mutation")
                    .and_then(|fields| fields.get(&field.name))
            })
            .ok_or_else(|| format!("Cannot query field '{}'.", field.name))?;
        let mut arguments = Map::new();
        for (name, value) in &field.arguments {
            arguments.insert(
                name.to_string(),
                literal(value, &self.variables).map_err(|Refusal(m)| m)?,
            );
        }
        let mut answer = match route_of(&field.name) {
            Some((method, path)) => {
                let input = rest_input(arguments.remove("input").unwrap_or(Value::Null));
                self.call(method, path, input).await?
            }
            // MLflow's echo fields, for checking the endpoint works.
            None => json!({ "output": arguments.get("inputString").cloned().unwrap_or(Value::Null) }),
        };
        match field.name.as_str() {
            "mlflowGetRun" => {
                for run_set in self.selects(&field.selection_set, "run") {
                    if let Some(run) = answer.get_mut("run") {
                        self.extend_run(run, &run_set).await?;
                    }
                }
            }
            "mlflowSearchRuns" => {
                for runs_set in self.selects(&field.selection_set, "runs") {
                    let mut experiments = HashMap::new();
                    if let Some(Value::Array(runs)) = answer.get_mut("runs") {
                        for run in runs {
                            self.extend_run_cached(run, &runs_set, &mut experiments).await?;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(self.project(&answer, &ty.name, &field.selection_set))
    }

    async fn extend_run(&self, run: &mut Value, set: &Set) -> Result<(), String> {
        self.extend_run_cached(run, set, &mut HashMap::new()).await
    }

    /// MLflow's run extension: the run's experiment and the model versions
    /// made from it, fetched only when selected.
    async fn extend_run_cached(
        &self,
        run: &mut Value,
        set: &Set,
        experiments: &mut HashMap<String, Value>,
    ) -> Result<(), String> {
        let wants_experiment = !self.selects(set, "experiment").is_empty();
        let wants_versions = !self.selects(set, "modelVersions").is_empty();
        let info = run.get("info").cloned().unwrap_or(Value::Null);
        if wants_experiment {
            if let Some(experiment_id) = info.get("experiment_id").and_then(Value::as_str) {
                if !experiments.contains_key(experiment_id) {
                    let mut input = Map::new();
                    input.insert("experiment_id".to_string(), json!(experiment_id));
                    let answer = self.call(Method::GET, "experiments/get", input).await?;
                    experiments.insert(
                        experiment_id.to_string(),
                        answer.get("experiment").cloned().unwrap_or(Value::Null),
                    );
                }
                run["experiment"] = experiments[experiment_id].clone();
            }
        }
        if wants_versions {
            if let Some(run_id) = info.get("run_id").and_then(Value::as_str) {
                let mut input = Map::new();
                input.insert("filter".to_string(), json!(format!("run_id='{run_id}'")));
                let answer = self.call(Method::GET, "model-versions/search", input).await?;
                run["model_versions"] = answer.get("model_versions").cloned().unwrap_or(json!([]));
            }
        }
        Ok(())
    }

    /// Calls MLflow route `path` of this region with the caller's identity
    /// in the query's workspace; an error answer becomes its message.
    async fn call(&self, method: Method, path: &str, input: Map<String, Value>) -> Result<Value, String> {
        let mut uri = format!("/api/2.0/mlflow/{path}");
        let body = if method == Method::GET {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (key, value) in &input {
                match value {
                    Value::Array(items) => {
                        for item in items {
                            query.append_pair(key, &scalar_text(item));
                        }
                    }
                    other => {
                        query.append_pair(key, &scalar_text(other));
                    }
                }
            }
            let query = query.finish();
            if !query.is_empty() {
                uri = format!("{uri}?{query}");
            }
            Body::empty()
        } else {
            Body::from(Value::Object(input).to_string())
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|error| error.to_string())?;
        if let Ok(name) = HeaderValue::from_str(&self.ws.name) {
            request
                .headers_mut()
                .insert(crate::extract::WORKSPACE_HEADER, name);
        }
        request.extensions_mut().insert(self.caller.clone());
        let response = self
            .api
            .clone()
            .oneshot(request)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|error| error.to_string())?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(answer)
        } else {
            Err(answer
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("the request failed with HTTP {status}")))
        }
    }

    /// Projects a REST answer onto a selection set of `type_name`.
    fn project(&self, value: &Value, type_name: &str, set: &Set) -> Value {
        let mut out = Map::new();
        let schema_fields = SCHEMA.objects.get(type_name);
        for field in self.fields(set) {
            let key = field.alias.clone().unwrap_or_else(|| field.name.clone());
            if field.name == "__typename" {
                merge_into(&mut out, key, Value::String(type_name.to_string()));
                continue;
            }
            let Some((ty, _)) = schema_fields.and_then(|fields| fields.get(&field.name)) else {
                merge_into(&mut out, key, Value::Null);
                continue;
            };
            let raw = value.get(snake_case(&field.name)).unwrap_or(&Value::Null);
            let converted =
                if raw.is_null() && !ty.list && PROTO_DEFAULTS_EXEMPT.iter().all(|t| *t != type_name) {
                    // MLflow resolves fields on its protobuf messages, where
                    // an unset scalar reads as its default (a directory's
                    // `fileSize` is "0"), never null.
                    proto_default(&ty.name)
                } else if ty.list {
                    match raw {
                        Value::Array(items) => Value::Array(
                            items
                                .iter()
                                .map(|item| self.convert(item, &ty.name, &field.selection_set))
                                .collect(),
                        ),
                        // MLflow's messages have empty repeated fields, never none.
                        _ => Value::Array(Vec::new()),
                    }
                } else {
                    self.convert(raw, &ty.name, &field.selection_set)
                };
            merge_into(&mut out, key, converted);
        }
        Value::Object(out)
    }

    fn convert(&self, raw: &Value, type_name: &str, set: &Set) -> Value {
        if raw.is_null() {
            return Value::Null;
        }
        if SCHEMA.objects.contains_key(type_name) {
            return self.project(raw, type_name, set);
        }
        match (type_name, raw) {
            // MLflow's LongString: 64-bit integers as text, beyond what a
            // JavaScript number holds.
            ("LongString", Value::Number(number)) => Value::String(number.to_string()),
            // Non-finite values (`"NaN"`, `"Infinity"` in REST) are null.
            ("Float", Value::Number(_)) => raw.clone(),
            ("Float", _) => Value::Null,
            ("Int", Value::Number(_)) | ("Boolean", Value::Bool(_)) => raw.clone(),
            ("String", Value::Number(_) | Value::Bool(_)) => Value::String(scalar_text(raw)),
            _ => raw.clone(),
        }
    }
}

/// The types MLflow builds itself rather than from its messages: their
/// unset fields stay null.
const PROTO_DEFAULTS_EXEMPT: &[&str] = &["Test", "TestMutation"];

/// What an unset scalar field of a protobuf message reads as.
fn proto_default(type_name: &str) -> Value {
    match type_name {
        "LongString" => json!("0"),
        "Int" => json!(0),
        "Float" => json!(0.0),
        "Boolean" => json!(false),
        "String" => json!(""),
        _ => Value::Null,
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Two selections of one response key merge (GraphQL's field merging).
fn merge_into(out: &mut Map<String, Value>, key: String, value: Value) {
    match (out.get_mut(&key), value) {
        (Some(Value::Object(existing)), Value::Object(more)) => {
            for (inner_key, inner) in more {
                merge_into(existing, inner_key, inner);
            }
        }
        (_, value) => {
            out.insert(key, value);
        }
    }
}

/// For tests: the SDL's object types and their fields, sorted.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_rest() {
        assert_eq!(snake_case("runUuid"), "run_uuid");
        assert_eq!(
            snake_case("effectiveTraceArchivalRetention"),
            "effective_trace_archival_retention"
        );
        let input = rest_input(json!({"runIds": ["a"], "metricKey": "loss", "startStep": null}));
        assert_eq!(
            Value::Object(input),
            json!({"run_ids": ["a"], "metric_key": "loss"})
        );
    }
}
