//! The entities of a workspace, in the shapes of MLflow's protocol messages.
//!
//! Field names follow MLflow's proto field names so that the API layer can
//! encode them without a second set of structs. Empty lists and unset optional
//! fields are omitted when encoded, as MLflow's own server does (`{}` when
//! empty); the client treats an absent field as its default.

use serde::{Deserialize, Serialize};

/// The tag MLflow keeps a run's name in.
pub const RUN_NAME_TAG: &str = "mlflow.runName";

/// Milliseconds since the Unix epoch, MLflow's unit for every timestamp.
pub type Millis = i64;

/// Encodes non-finite floats the way MLflow does: `"NaN"`, `"Infinity"` and
/// `"-Infinity"` as strings, finite values as numbers. JSON has no literal for
/// them, and the journal must round-trip them exactly.
pub mod float_json {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if *value == f64::INFINITY {
            serializer.serialize_str("Infinity")
        } else if *value == f64::NEG_INFINITY {
            serializer.serialize_str("-Infinity")
        } else {
            serializer.serialize_f64(*value)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        struct FloatVisitor;
        impl de::Visitor<'_> for FloatVisitor {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, or \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "NaN" | "nan" => Ok(f64::NAN),
                    "Infinity" | "inf" => Ok(f64::INFINITY),
                    "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
                    other => other
                        .parse::<f64>()
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_any(FloatVisitor)
    }
}

/// MLflow's lifecycle stage of experiments and runs (a string in the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleStage {
    #[default]
    Active,
    Deleted,
}

impl LifecycleStage {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Active => "active",
            LifecycleStage::Deleted => "deleted",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// Which lifecycle stages a search returns (MLflow's `ViewType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    pub fn includes(self, stage: LifecycleStage) -> bool {
        match self {
            ViewType::ActiveOnly => stage == LifecycleStage::Active,
            ViewType::DeletedOnly => stage == LifecycleStage::Deleted,
            ViewType::All => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A workspace: the unit of isolation. `name` appears in URLs (`/w/<name>`);
/// `workspace_id` is stable and names its storage prefix, so storage outlives
/// renames and deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Workspace {
    pub workspace_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub creation_time: Millis,
    pub last_update_time: Millis,
    pub lifecycle_stage: LifecycleStage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_time: Option<Millis>,
    /// Days a deleted item (or the deleted workspace) is kept before it is
    /// purged automatically.
    #[serde(default = "default_retention_days")]
    pub retention_days: i64,
    /// Once on, never off: nothing of the workspace is purged before its
    /// retention ends.
    #[serde(default)]
    pub purge_protection: bool,
    /// deletion_time + retention: when a deleted workspace is purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<Millis>,
    /// Bytes of artifacts and files the workspace may hold (none: no quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_quota: Option<i64>,
}

pub const DEFAULT_RETENTION_DAYS: i64 = 14;
pub const MIN_RETENTION_DAYS: i64 = 1;
pub const MAX_RETENTION_DAYS: i64 = 90;
pub const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

fn default_retention_days() -> i64 {
    DEFAULT_RETENTION_DAYS
}

/// When an item deleted at `deletion_time` may be purged.
pub fn purge_after(deletion_time: Millis, retention_days: i64) -> Millis {
    deletion_time.saturating_add(retention_days.saturating_mul(DAY_MILLIS))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: LifecycleStage,
    pub last_update_time: Millis,
    pub creation_time: Millis,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    #[default]
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "RUNNING" => Some(Self::Running),
            "SCHEDULED" => Some(Self::Scheduled),
            "FINISHED" => Some(Self::Finished),
            "FAILED" => Some(Self::Failed),
            "KILLED" => Some(Self::Killed),
            _ => None,
        }
    }
    pub fn is_terminated(self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::Failed | RunStatus::Killed)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(with = "float_json")]
    pub value: f64,
    pub timestamp: Millis,
    #[serde(default)]
    pub step: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl Metric {
    /// MLflow's identity for "the same value": NaN equals NaN here, since the
    /// journal replays it and a comparison must not call two NaNs different.
    pub fn same_value(&self, other: &Metric) -> bool {
        self.value.to_bits() == other.value.to_bits() || (self.value.is_nan() && other.value.is_nan())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    /// Deprecated alias of `run_id` that older clients still read.
    pub run_uuid: String,
    pub run_name: String,
    pub experiment_id: String,
    #[serde(default)]
    pub user_id: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Millis>,
    pub artifact_uri: String,
    pub lifecycle_stage: LifecycleStage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunData {
    /// The latest value of each metric key (MLflow's "latest metrics": the
    /// highest step, then the highest timestamp, then the highest value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    #[serde(default)]
    pub source_type: String,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInput {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    pub dataset: Dataset,
}

/// A dataset some run of an experiment used, with the context it was used
/// in (the input's `mlflow.data.context` tag): MLflow's `SearchDatasets`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub experiment_id: String,
    pub name: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInput {
    pub model_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOutput {
    pub model_id: String,
    #[serde(default)]
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunInputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dataset_inputs: Vec<DatasetInput>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_inputs: Vec<ModelInput>,
}

impl RunInputs {
    pub fn is_empty(&self) -> bool {
        self.dataset_inputs.is_empty() && self.model_inputs.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunOutputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_outputs: Vec<ModelOutput>,
}

impl RunOutputs {
    pub fn is_empty(&self) -> bool {
        self.model_outputs.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
    #[serde(default, skip_serializing_if = "RunInputs::is_empty")]
    pub inputs: RunInputs,
    #[serde(default, skip_serializing_if = "RunOutputs::is_empty")]
    pub outputs: RunOutputs,
}

impl Run {
    pub fn latest_metric(&self, key: &str) -> Option<&Metric> {
        self.data.metrics.iter().find(|metric| metric.key == key)
    }
    pub fn param(&self, key: &str) -> Option<&str> {
        self.data
            .params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoggedModelStatus {
    LoggedModelStatusUnspecified,
    #[default]
    LoggedModelPending,
    LoggedModelReady,
    LoggedModelUploadFailed,
}

impl LoggedModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LoggedModelStatus::LoggedModelStatusUnspecified => "LOGGED_MODEL_STATUS_UNSPECIFIED",
            LoggedModelStatus::LoggedModelPending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::LoggedModelReady => "LOGGED_MODEL_READY",
            LoggedModelStatus::LoggedModelUploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "LOGGED_MODEL_STATUS_UNSPECIFIED" => Some(Self::LoggedModelStatusUnspecified),
            "LOGGED_MODEL_PENDING" | "PENDING" => Some(Self::LoggedModelPending),
            "LOGGED_MODEL_READY" | "READY" => Some(Self::LoggedModelReady),
            "LOGGED_MODEL_UPLOAD_FAILED" | "FAILED" => Some(Self::LoggedModelUploadFailed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedModelRegistration {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedModelInfo {
    pub model_id: String,
    pub experiment_id: String,
    pub name: String,
    pub creation_timestamp_ms: Millis,
    pub last_updated_timestamp_ms: Millis,
    pub artifact_uri: String,
    pub status: LoggedModelStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub creator_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<LoggedModelRegistration>,
    /// Not part of MLflow's message; kept so search and soft delete can see it.
    #[serde(skip)]
    pub lifecycle_stage: LifecycleStage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LoggedModelData {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedModel {
    pub info: LoggedModelInfo,
    #[serde(default)]
    pub data: LoggedModelData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredModelAlias {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: Millis,
    pub last_updated_timestamp: Millis,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<RegisteredModelAlias>,
}

/// The registry's stages, written as MLflow writes them.
pub const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

/// Returns the canonical spelling of a stage name, matched case-insensitively
/// as MLflow does.
pub fn canonical_stage(stage: &str) -> Option<&'static str> {
    STAGES
        .iter()
        .copied()
        .find(|known| known.eq_ignore_ascii_case(stage))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelVersionStatus {
    PendingRegistration,
    FailedRegistration,
    #[default]
    Ready,
}

impl ModelVersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelVersionStatus::PendingRegistration => "PENDING_REGISTRATION",
            ModelVersionStatus::FailedRegistration => "FAILED_REGISTRATION",
            ModelVersionStatus::Ready => "READY",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "PENDING_REGISTRATION" => Some(Self::PendingRegistration),
            "FAILED_REGISTRATION" => Some(Self::FailedRegistration),
            "READY" => Some(Self::Ready),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub creation_timestamp: Millis,
    pub last_updated_timestamp: Millis,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    pub current_stage: String,
    /// Always written, `""` when there is none: MLflow sets the field
    /// whenever the version was created (unlike a registered model's).
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    pub status: ModelVersionStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_link: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_id: String,
}

/// An artifact as the journal and the artifact index know it: where it lives
/// relative to the workspace's artifact root, how big it is, and its digest,
/// which is how replication and backup copy and verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    pub path: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: Millis,
}

/// A file of a workspace's file share: its path relative to the share's
/// root, size, digest and when it was last written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileEntry {
    pub path: String,
    pub size: i64,
    pub sha256: String,
    pub modified_at: Millis,
}

/// `millis` since the epoch as an RFC 3339 UTC timestamp (to the second),
/// for messages that name a date.
pub fn format_utc(millis: Millis) -> String {
    let seconds = millis.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Milliseconds since the epoch of an RFC 3339 time
/// (`2026-11-22T10:39:25Z`, `2026-11-22T10:39:25.250+01:00`) or of a plain
/// number of milliseconds; None if it is neither.
pub fn parse_utc(text: &str) -> Option<Millis> {
    if let Ok(millis) = text.parse::<i64>() {
        return Some(millis);
    }
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        part.parse::<i64>().ok()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3 = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = first3.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod format_tests {
    #[test]
    fn utc_dates_format_like_rfc3339() {
        assert_eq!(super::format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_utc(1_795_342_683_000), "2026-11-22T10:18:03Z");
        assert_eq!(super::format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
