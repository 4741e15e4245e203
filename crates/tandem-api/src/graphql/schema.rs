//! MLflow 3.17's GraphQL schema, as far as Tandem serves it: held as SDL,
//! parsed once into the object types (fields, their types and arguments)
//! and input types the queries are checked and projected against.

use std::collections::HashMap;
use std::sync::LazyLock;

use graphql_parser::schema as s;

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
pub(super) struct FieldType {
    pub(super) name: String,
    pub(super) list: bool,
}

/// An object type's fields: name → (type, argument name → input type).
pub(super) type ObjectFields = HashMap<String, (FieldType, HashMap<String, String>)>;

#[derive(Debug, Default)]
pub(super) struct Schema {
    /// Object types by name.
    pub(super) objects: HashMap<String, ObjectFields>,
    /// Input types: their field names.
    pub(super) inputs: HashMap<String, std::collections::HashSet<String>>,
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

pub(super) static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
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
}
