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

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use graphql_parser::query as q;
use graphql_parser::schema as s;
use serde_json::{json, Map, Value};
use tandem_store::WorkspaceRef;
use tower::ServiceExt;

use crate::access::Caller;
use crate::extract::Ws;
use crate::AppState;

const MAX_DEPTH: usize = 10;
const MAX_SELECTIONS: usize = 1_000;
const MAX_ROOT_FIELDS: usize = 10;
const MAX_ALIASES: usize = 10;
/// A query is text a person wrote; a megabyte is far past any of the UI's.
const MAX_BODY: usize = 1 << 20;

/// MLflow 3.17's schema, as far as Tandem serves it.
const SCHEMA_SDL: &str = r#"
scalar LongString
enum MlflowRunStatus { RUNNING SCHEDULED FINISHED FAILED KILLED }
enum MlflowViewType { ACTIVE_ONLY DELETED_ONLY ALL }
enum MlflowModelVersionStatus { PENDING_REGISTRATION FAILED_REGISTRATION READY }
enum MlflowDeploymentJobConnectionState { DEPLOYMENT_JOB_CONNECTION_STATE_UNSPECIFIED NOT_SET_UP CONNECTED NOT_FOUND REQUIRED_PARAMETERS_CHANGED }
enum MlflowModelVersionDeploymentJobStateDeploymentJobRunState { DEPLOYMENT_JOB_RUN_STATE_UNSPECIFIED NO_VALID_DEPLOYMENT_JOB_FOUND RUNNING SUCCEEDED FAILED PENDING APPROVAL }
type ErrorDetail { field: String message: String }
type ApiError { code: String message: String helpUrl: String traceId: String errorDetails: [ErrorDetail] }
type Test { output: String }
type TestMutation { output: String }
type MlflowExperimentTag { key: String value: String }
type MlflowExperiment {
  experimentId: String name: String artifactLocation: String lifecycleStage: String
  lastUpdateTime: LongString creationTime: LongString tags: [MlflowExperimentTag!]
  effectiveTraceArchivalRetention: String workspace: String
}
type MlflowGetExperimentResponse { experiment: MlflowExperiment apiError: ApiError }
type MlflowRunInfo {
  runId: String runUuid: String runName: String experimentId: String userId: String
  status: MlflowRunStatus startTime: LongString endTime: LongString artifactUri: String lifecycleStage: String
}
type MlflowMetricExtension {
  key: String value: Float timestamp: LongString step: LongString datasetName: String
  datasetDigest: String modelId: String runId: String
}
type MlflowParam { key: String value: String }
type MlflowRunTag { key: String value: String }
type MlflowRunData { metrics: [MlflowMetricExtension!] params: [MlflowParam!] tags: [MlflowRunTag!] }
type MlflowDataset { name: String digest: String sourceType: String source: String schema: String profile: String }
type MlflowInputTag { key: String value: String }
type MlflowDatasetInput { tags: [MlflowInputTag!] dataset: MlflowDataset }
type MlflowModelInput { modelId: String }
type MlflowRunInputs { datasetInputs: [MlflowDatasetInput!] modelInputs: [MlflowModelInput!] }
type MlflowModelOutput { modelId: String step: LongString }
type MlflowRunOutputs { modelOutputs: [MlflowModelOutput!] }
type MlflowModelVersionTag { key: String value: String }
type MlflowModelParam { name: String value: String }
type MlflowModelMetric {
  key: String value: Float timestamp: LongString step: LongString datasetName: String
  datasetDigest: String modelId: String runId: String
}
type MlflowModelVersionDeploymentJobState {
  jobId: String runId: String jobState: MlflowDeploymentJobConnectionState
  runState: MlflowModelVersionDeploymentJobStateDeploymentJobRunState currentTaskName: String
}
type MlflowModelVersion {
  name: String version: String creationTimestamp: LongString lastUpdatedTimestamp: LongString
  userId: String currentStage: String description: String source: String runId: String
  status: MlflowModelVersionStatus statusMessage: String tags: [MlflowModelVersionTag!] runLink: String
  aliases: [String] modelId: String modelParams: [MlflowModelParam!] modelMetrics: [MlflowModelMetric!]
  deploymentJobState: MlflowModelVersionDeploymentJobState
}
type MlflowRunExtension {
  info: MlflowRunInfo data: MlflowRunData inputs: MlflowRunInputs outputs: MlflowRunOutputs
  experiment: MlflowExperiment modelVersions: [MlflowModelVersion!]
}
type MlflowGetRunResponse { run: MlflowRunExtension apiError: ApiError }
type MlflowSearchRunsResponse { runs: [MlflowRunExtension!] nextPageToken: String apiError: ApiError }
type MlflowMetricWithRunId { key: String value: Float timestamp: LongString step: LongString runId: String }
type MlflowGetMetricHistoryBulkIntervalResponse { metrics: [MlflowMetricWithRunId!] apiError: ApiError }
type MlflowFileInfo { path: String isDir: Boolean fileSize: LongString }
type MlflowListArtifactsResponse { rootUri: String files: [MlflowFileInfo!] nextPageToken: String apiError: ApiError }
type MlflowSearchModelVersionsResponse { modelVersions: [MlflowModelVersion!] nextPageToken: String apiError: ApiError }
type MlflowDatasetSummary { experimentId: String name: String digest: String context: String }
type MlflowSearchDatasetsResponse { datasetSummaries: [MlflowDatasetSummary!] apiError: ApiError }
input MlflowGetExperimentInput { experimentId: String }
input MlflowGetRunInput { runId: String runUuid: String }
input MlflowSearchRunsInput {
  experimentIds: [String] filter: String runViewType: MlflowViewType maxResults: Int
  orderBy: [String] pageToken: String
}
input MlflowGetMetricHistoryBulkIntervalInput {
  runIds: [String] metricKey: String startStep: Int endStep: Int maxResults: Int
}
input MlflowListArtifactsInput { runId: String runUuid: String path: String pageToken: String }
input MlflowSearchModelVersionsInput { filter: String maxResults: LongString orderBy: [String] pageToken: String }
input MlflowSearchDatasetsInput { experimentIds: [String] }
type Query {
  mlflowGetExperiment(input: MlflowGetExperimentInput): MlflowGetExperimentResponse
  mlflowGetMetricHistoryBulkInterval(input: MlflowGetMetricHistoryBulkIntervalInput): MlflowGetMetricHistoryBulkIntervalResponse
  mlflowGetRun(input: MlflowGetRunInput): MlflowGetRunResponse
  mlflowListArtifacts(input: MlflowListArtifactsInput): MlflowListArtifactsResponse
  mlflowSearchModelVersions(input: MlflowSearchModelVersionsInput): MlflowSearchModelVersionsResponse
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse
  test(inputString: String): Test
}
type Mutation {
  mlflowSearchDatasets(input: MlflowSearchDatasetsInput): MlflowSearchDatasetsResponse
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse
  testMutation(inputString: String): TestMutation
}
"#;

/// A field's type: its named type and whether it is a list.
#[derive(Debug, Clone)]
struct FieldType {
    name: String,
    list: bool,
}

/// An object type's fields: name → (type, argument name → input type).
type ObjectFields = HashMap<String, (FieldType, HashMap<String, String>)>;

#[derive(Debug, Default)]
struct Schema {
    /// Object types by name.
    objects: HashMap<String, ObjectFields>,
    /// Input types: their field names.
    inputs: HashMap<String, HashSet<String>>,
}

fn field_type(ty: &s::Type<'_, String>) -> FieldType {
    match ty {
        s::Type::NamedType(name) => FieldType {
            name: name.clone(),
            list: false,
        },
        s::Type::ListType(inner) => FieldType {
            list: true,
            ..field_type(inner)
        },
        s::Type::NonNullType(inner) => field_type(inner),
    }
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let document = s::parse_schema::<String>(SCHEMA_SDL).expect("the built-in GraphQL schema parses");
    let mut schema = Schema::default();
    for definition in document.definitions {
        match definition {
            s::Definition::TypeDefinition(s::TypeDefinition::Object(object)) => {
                let fields = object
                    .fields
                    .iter()
                    .map(|field| {
                        let arguments = field
                            .arguments
                            .iter()
                            .map(|argument| (argument.name.clone(), field_type(&argument.value_type).name))
                            .collect();
                        (field.name.clone(), (field_type(&field.field_type), arguments))
                    })
                    .collect();
                schema.objects.insert(object.name, fields);
            }
            s::Definition::TypeDefinition(s::TypeDefinition::InputObject(input)) => {
                let fields = input.fields.iter().map(|field| field.name.clone()).collect();
                schema.inputs.insert(input.name, fields);
            }
            _ => {}
        }
    }
    schema
});

/// A request-level failure: no field was run.
struct Refusal(String);

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
        Err(Refusal(message)) => {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "data": null, "errors": [message] }),
            )
        }
    };
    let data = execution.root(root_type, operation).await;
    let errors = if execution.errors.is_empty() {
        Value::Null
    } else {
        json!(execution.errors)
    };
    (StatusCode::OK, json!({ "data": data, "errors": errors }))
}

/// Picks the operation, checks the whole document against the schema and
/// MLflow's bounds, and coerces the variables.
fn prepare<'d>(
    document: &'d q::Document<'static, String>,
    execution: &mut Execution,
    request: GraphqlRequest,
) -> Result<(&'static str, &'d Set), Refusal> {
    let mut operations = Vec::new();
    for definition in &document.definitions {
        match definition {
            q::Definition::Fragment(fragment) => {
                if execution
                    .fragments
                    .insert(fragment.name.clone(), fragment.clone())
                    .is_some()
                {
                    return Err(Refusal(format!(
                        "There can be only one fragment named '{}'.",
                        fragment.name
                    )));
                }
            }
            q::Definition::Operation(operation) => operations.push(operation),
        }
    }
    fn name_of<'a>(operation: &'a q::OperationDefinition<'static, String>) -> Option<&'a str> {
        match operation {
            q::OperationDefinition::SelectionSet(_) => None,
            q::OperationDefinition::Query(query) => query.name.as_deref(),
            q::OperationDefinition::Mutation(mutation) => mutation.name.as_deref(),
            q::OperationDefinition::Subscription(subscription) => subscription.name.as_deref(),
        }
    }
    let operation = match &request.operation_name {
        Some(wanted) => operations
            .iter()
            .find(|operation| name_of(operation) == Some(wanted.as_str()))
            .ok_or_else(|| Refusal(format!("Unknown operation named '{wanted}'.")))?,
        None if operations.len() == 1 => &operations[0],
        None if operations.is_empty() => return Err(Refusal("Must provide an operation.".to_string())),
        None => {
            return Err(Refusal(
                "Must provide operation name if query contains multiple operations.".to_string(),
            ))
        }
    };
    let (root_type, definitions, selection_set) = match operation {
        q::OperationDefinition::SelectionSet(set) => ("Query", &[][..], set),
        q::OperationDefinition::Query(query) => {
            ("Query", &query.variable_definitions[..], &query.selection_set)
        }
        q::OperationDefinition::Mutation(mutation) => (
            "Mutation",
            &mutation.variable_definitions[..],
            &mutation.selection_set,
        ),
        q::OperationDefinition::Subscription(_) => {
            return Err(Refusal("Schema is not configured for subscriptions.".to_string()))
        }
    };
    for definition in definitions {
        let value = match request.variables.get(&definition.name) {
            Some(value) => value.clone(),
            None => match &definition.default_value {
                Some(default) => literal(default, &Map::new())?,
                None if matches!(definition.var_type, q::Type::NonNullType(_)) => {
                    return Err(Refusal(format!(
                        "Variable '${}' of required type '{}' was not provided.",
                        definition.name, definition.var_type
                    )))
                }
                None => Value::Null,
            },
        };
        execution.variables.insert(definition.name.clone(), value);
    }
    let mut bounds = Bounds {
        selections_left: MAX_SELECTIONS,
        most_aliases: 0,
    };
    let roots = validate(
        execution,
        root_type,
        selection_set,
        1,
        &mut bounds,
        &mut HashSet::new(),
    )?;
    // In MLflow's order: root fields first, then aliases.
    if roots > MAX_ROOT_FIELDS {
        return Err(Refusal(format!(
            "GraphQL queries should have at most {MAX_ROOT_FIELDS} root fields, got {roots} root fields."
        )));
    }
    if bounds.most_aliases > MAX_ALIASES {
        return Err(Refusal(format!(
            "GraphQL queries should have at most {MAX_ALIASES} aliases, got {} aliases.",
            bounds.most_aliases
        )));
    }
    Ok((root_type, selection_set))
}

/// What a query has used of MLflow's bounds so far.
struct Bounds {
    selections_left: usize,
    /// The most aliases on one level.
    most_aliases: usize,
}

/// Checks a selection set against `type_name`'s fields (every fragment
/// followed), within MLflow's bounds; returns how many fields it selects.
fn validate(
    execution: &Execution,
    type_name: &str,
    set: &Set,
    depth: usize,
    bounds: &mut Bounds,
    visiting: &mut HashSet<String>,
) -> Result<usize, Refusal> {
    if depth > MAX_DEPTH {
        return Err(Refusal(format!("Query exceeds maximum depth of {MAX_DEPTH}")));
    }
    let Some(fields) = SCHEMA.objects.get(type_name) else {
        return Err(Refusal(format!("Unknown type '{type_name}'.")));
    };
    let mut count = 0;
    let mut aliases = 0;
    for item in &set.items {
        match item {
            q::Selection::Field(field) => {
                count += 1;
                bounds.selections_left = bounds.selections_left.checked_sub(1).ok_or_else(|| {
                    Refusal(format!(
                        "Query exceeds maximum total selections of {MAX_SELECTIONS}"
                    ))
                })?;
                if field.alias.is_some() {
                    aliases += 1;
                }
                if field.name == "__typename" {
                    continue;
                }
                let Some((ty, arguments)) = fields.get(&field.name) else {
                    return Err(Refusal(format!(
                        "Cannot query field '{}' on type '{type_name}'.",
                        field.name
                    )));
                };
                for (name, value) in &field.arguments {
                    let Some(input_type) = arguments.get(name) else {
                        return Err(Refusal(format!(
                            "Unknown argument '{name}' on field '{type_name}.{}'.",
                            field.name
                        )));
                    };
                    check_input(input_type, &literal(value, &execution.variables)?)?;
                }
                let is_object = SCHEMA.objects.contains_key(&ty.name);
                match (is_object, field.selection_set.items.is_empty()) {
                    (true, true) => {
                        return Err(Refusal(format!(
                            "Field '{}' of type '{}' must have a selection of subfields.",
                            field.name, ty.name
                        )))
                    }
                    (false, false) => {
                        return Err(Refusal(format!(
                            "Field '{}' must not have a selection since type '{}' has no subfields.",
                            field.name, ty.name
                        )))
                    }
                    (true, false) => {
                        validate(
                            execution,
                            &ty.name,
                            &field.selection_set,
                            depth + 1,
                            bounds,
                            visiting,
                        )?;
                    }
                    (false, true) => {}
                }
            }
            q::Selection::InlineFragment(fragment) => {
                if let Some(q::TypeCondition::On(on)) = &fragment.type_condition {
                    if on != type_name {
                        return Err(Refusal(format!(
                            "Fragment cannot be spread here as objects of type '{type_name}' can never be of type '{on}'."
                        )));
                    }
                }
                count += validate(
                    execution,
                    type_name,
                    &fragment.selection_set,
                    depth,
                    bounds,
                    visiting,
                )?;
            }
            q::Selection::FragmentSpread(spread) => {
                let Some(fragment) = execution.fragments.get(&spread.fragment_name) else {
                    return Err(Refusal(format!("Unknown fragment '{}'.", spread.fragment_name)));
                };
                let q::TypeCondition::On(on) = &fragment.type_condition;
                if on != type_name {
                    return Err(Refusal(format!(
                        "Fragment '{}' cannot be spread here as objects of type '{type_name}' can never be of type '{on}'.",
                        spread.fragment_name
                    )));
                }
                if !visiting.insert(spread.fragment_name.clone()) {
                    return Err(Refusal(format!(
                        "Cannot spread fragment '{}' within itself.",
                        spread.fragment_name
                    )));
                }
                count += validate(
                    execution,
                    type_name,
                    &fragment.selection_set,
                    depth,
                    bounds,
                    visiting,
                )?;
                visiting.remove(&spread.fragment_name);
            }
        }
    }
    bounds.most_aliases = bounds.most_aliases.max(aliases);
    Ok(count)
}

/// An input object's fields must be the input type's.
fn check_input(input_type: &str, value: &Value) -> Result<(), Refusal> {
    let (Some(fields), Value::Object(given)) = (SCHEMA.inputs.get(input_type), value) else {
        return Ok(());
    };
    for key in given.keys() {
        if !fields.contains(key) {
            return Err(Refusal(format!(
                "Field '{key}' is not defined by type '{input_type}'."
            )));
        }
    }
    Ok(())
}

/// A literal of the query as JSON, variables substituted.
fn literal(value: &q::Value<'static, String>, variables: &Variables) -> Result<Value, Refusal> {
    Ok(match value {
        q::Value::Variable(name) => match variables.get(name) {
            Some(value) => value.clone(),
            None => return Err(Refusal(format!("Variable '${name}' is not defined."))),
        },
        q::Value::Int(number) => number.as_i64().map(Value::from).unwrap_or(Value::Null),
        q::Value::Float(number) => json!(number),
        q::Value::String(text) => Value::String(text.clone()),
        q::Value::Boolean(flag) => Value::Bool(*flag),
        q::Value::Null => Value::Null,
        q::Value::Enum(name) => Value::String(name.clone()),
        q::Value::List(items) => Value::Array(
            items
                .iter()
                .map(|item| literal(item, variables))
                .collect::<Result<_, _>>()?,
        ),
        q::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, item)| Ok((key.to_string(), literal(item, variables)?)))
                .collect::<Result<_, Refusal>>()?,
        ),
    })
}

/// `@skip(if:)` and `@include(if:)`.
fn included(directives: &[q::Directive<'static, String>], variables: &Variables) -> bool {
    directives.iter().all(|directive| {
        let condition = directive
            .arguments
            .iter()
            .find(|(name, _)| name == "if")
            .and_then(|(_, value)| literal(value, variables).ok())
            .and_then(|value| value.as_bool());
        !matches!(
            (directive.name.as_str(), condition),
            ("skip", Some(true)) | ("include", Some(false))
        )
    })
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
            let converted = if ty.list {
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
fn schema_fields() -> std::collections::BTreeMap<String, Vec<String>> {
    SCHEMA
        .objects
        .iter()
        .map(|(name, fields)| {
            let mut names: Vec<String> = fields.keys().cloned().collect();
            names.sort();
            (name.clone(), names)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parses_and_references_only_known_types() {
        let fields = schema_fields();
        assert!(fields["Query"].contains(&"mlflowGetRun".to_string()));
        let scalars = ["String", "Float", "Int", "Boolean", "LongString"];
        let enums = [
            "MlflowRunStatus",
            "MlflowViewType",
            "MlflowModelVersionStatus",
            "MlflowDeploymentJobConnectionState",
            "MlflowModelVersionDeploymentJobStateDeploymentJobRunState",
        ];
        for (type_name, type_fields) in &SCHEMA.objects {
            for (field, (ty, arguments)) in type_fields {
                assert!(
                    SCHEMA.objects.contains_key(&ty.name)
                        || scalars.contains(&ty.name.as_str())
                        || enums.contains(&ty.name.as_str()),
                    "{type_name}.{field}: {}",
                    ty.name
                );
                for input in arguments.values() {
                    assert!(
                        SCHEMA.inputs.contains_key(input) || scalars.contains(&input.as_str()),
                        "{input}"
                    );
                }
            }
        }
    }

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
