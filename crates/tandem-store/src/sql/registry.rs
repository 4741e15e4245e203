//! The registry's operations (registered models, versions, tags, aliases,
//! stages): what `MetadataStore`'s registry methods do, kept apart from
//! `ops.rs`'s other operations.

use super::ops::{invalid, not_found};
use super::{load, SqlStore};
use crate::error::{StoreError, StoreResult};
use crate::*;
use tandem_core::journal::{AssetClass, Change};
use tandem_core::model::*;
use tandem_core::python_json::{self, Separators};
use tandem_core::search::{self, Page};
use tandem_core::validation as rules;
use tandem_core::Error;

/// The tag on a logged model listing the registered versions made from it.
const MODEL_VERSIONS_TAG: &str = "mlflow.modelVersions";

impl SqlStore {
    pub(super) async fn create_registered_model_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        description: &str,
        tags: Vec<Tag>,
        user_id: &str,
    ) -> StoreResult<RegisteredModel> {
        rules::validate_model_name(name)?;
        for tag in &tags {
            rules::validate_registry_tag(tag)?;
        }
        if self.registered_model_exists(ws, name).await.is_ok() {
            return Err(StoreError::Domain(Error::already_exists(format!(
                "Registered Model (name={name}) already exists."
            ))));
        }
        // As in MLflow, a deleted model's name is free at once: one deleted
        // in place before journal format 7 is set aside first.
        let set_aside = self.set_aside_deleted_model(ws, name).await?;
        let mut write = self.begin_write(&ws.workspace_id).await?;
        let time = write.now;
        if let Some(change) = set_aside {
            self.record(&mut write, change).await?;
        }
        self.record(
            &mut write,
            Change::RegisteredModelCreated {
                name: name.to_string(),
                description: description.to_string(),
                user_id: user_id.to_string(),
                tags,
                time,
            },
        )
        .await?;
        Self::commit(write).await?;
        self.get_registered_model(ws, name).await
    }

    pub(super) async fn get_registered_model_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
    ) -> StoreResult<RegisteredModel> {
        rules::validate_model_name(name)?;
        load::registered_models_where(
            &self.pool,
            &ws.workspace_id,
            "AND m.name = $2",
            &[name.to_string()],
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(format!("Registered Model with name={name} not found")))
    }

    pub(super) async fn rename_registered_model_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        new_name: &str,
    ) -> StoreResult<RegisteredModel> {
        if new_name.trim().is_empty() {
            return Err(StoreError::Domain(rules::missing_value("new_name")));
        }
        rules::validate_model_name(new_name)?;
        if self.multi_writer(AssetClass::Registry) {
            // Everything else in the registry hangs on the model's name; a
            // rename racing a write in another region could not be merged
            // without losing one of them.
            return Err(StoreError::Domain(Error::invalid(format!(
                "cannot rename registered model '{name}': the registry is hot-hot in this deployment, and renames cannot be merged with concurrent writes in other regions; create '{new_name}' and register its versions there instead"
            ))));
        }
        self.registered_model_exists(ws, name).await?;
        if name != new_name && self.registered_model_exists(ws, new_name).await.is_ok() {
            return Err(StoreError::Domain(Error::already_exists(format!(
                "Registered Model (name={new_name}) already exists."
            ))));
        }
        let set_aside = if name != new_name {
            self.set_aside_deleted_model(ws, new_name).await?
        } else {
            None
        };
        let mut write = self.begin_write(&ws.workspace_id).await?;
        let time = write.now;
        if let Some(change) = set_aside {
            self.record(&mut write, change).await?;
        }
        self.record(
            &mut write,
            Change::RegisteredModelRenamed {
                name: name.to_string(),
                new_name: new_name.to_string(),
                time,
            },
        )
        .await?;
        Self::commit(write).await?;
        self.get_registered_model(ws, new_name).await
    }

    pub(super) async fn update_registered_model_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        description: &str,
    ) -> StoreResult<RegisteredModel> {
        self.registered_model_exists(ws, name).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::RegisteredModelUpdated {
                name: name.to_string(),
                description: description.to_string(),
                time,
            },
        )
        .await?;
        self.get_registered_model(ws, name).await
    }

    pub(super) async fn delete_registered_model_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
    ) -> StoreResult<()> {
        self.registered_model_exists(ws, name).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::RegisteredModelDeleted {
                name: name.to_string(),
                time,
                kept_as: self.kept_as_for_delete(name),
            },
        )
        .await
    }

    pub(super) async fn get_latest_versions_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        stages: &[String],
    ) -> StoreResult<Vec<ModelVersion>> {
        self.registered_model_exists(ws, name).await?;
        let wanted: Vec<&'static str> = if stages.is_empty() {
            STAGES.to_vec()
        } else {
            stages
                .iter()
                .map(|stage| {
                    canonical_stage(stage).ok_or_else(|| {
                        invalid(format!(
                            "Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived."
                        ))
                    })
                })
                .collect::<StoreResult<_>>()?
        };
        let versions = load::model_versions_where(
            &self.pool,
            &ws.workspace_id,
            "AND v.name = $2",
            &[name.to_string()],
        )
        .await?;
        let mut latest: Vec<ModelVersion> = Vec::new();
        for version in versions
            .into_iter()
            .filter(|v| wanted.contains(&v.current_stage.as_str()))
        {
            match latest
                .iter_mut()
                .find(|existing| existing.current_stage == version.current_stage)
            {
                Some(existing) => {
                    if version.version.parse::<i64>().unwrap_or(0)
                        > existing.version.parse::<i64>().unwrap_or(0)
                    {
                        *existing = version;
                    }
                }
                None => latest.push(version),
            }
        }
        latest.sort_by_key(|version| version.version.parse::<i64>().unwrap_or(0));
        Ok(latest)
    }

    pub(super) async fn set_registered_model_tag_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        tag: Tag,
    ) -> StoreResult<()> {
        rules::validate_registry_tag(&tag)?;
        self.registered_model_exists(ws, name).await?;
        self.write_one(
            ws,
            Change::RegisteredModelTagSet {
                name: name.to_string(),
                tag,
            },
        )
        .await
    }

    pub(super) async fn delete_registered_model_tag_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        key: &str,
    ) -> StoreResult<()> {
        self.registered_model_exists(ws, name).await?;
        self.write_one(
            ws,
            Change::RegisteredModelTagDeleted {
                name: name.to_string(),
                key: key.to_string(),
            },
        )
        .await
    }

    pub(super) async fn set_registered_model_alias_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
        version: &str,
    ) -> StoreResult<()> {
        rules::validate_alias_name(alias)?;
        let version = self.model_version_in(ws, name, version).await?;
        self.write_one(
            ws,
            Change::RegisteredModelAliasSet {
                name: name.to_string(),
                alias: alias.to_string(),
                version: version.version,
            },
        )
        .await
    }

    pub(super) async fn delete_registered_model_alias_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
    ) -> StoreResult<()> {
        rules::validate_alias_name(alias)?;
        self.registered_model_exists(ws, name).await?;
        self.write_one(
            ws,
            Change::RegisteredModelAliasDeleted {
                name: name.to_string(),
                alias: alias.to_string(),
            },
        )
        .await
    }

    pub(super) async fn get_model_version_by_alias_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        alias: &str,
    ) -> StoreResult<ModelVersion> {
        self.registered_model_exists(ws, name).await?;
        // MLflow reserves `latest` (any case) for the newest version, whatever
        // its stage; `models:/name@latest` depends on it.
        if alias.eq_ignore_ascii_case("latest") {
            let versions = self.get_latest_versions(ws, name, &[]).await?;
            return versions
                .into_iter()
                .max_by_key(|version| version.version.parse::<i64>().unwrap_or(0))
                .ok_or_else(|| not_found(format!("Latest version not found for model {name}.")));
        }
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM registered_model_aliases WHERE workspace_id = $1 AND name = $2 AND alias = $3",
        )
        .bind(&ws.workspace_id)
        .bind(name)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await?;
        match version {
            Some(version) => self.model_version_in(ws, name, &version.to_string()).await,
            None => Err(not_found(format!("Registered model alias {alias} not found."))),
        }
    }

    pub(super) async fn create_model_version_impl(
        &self,
        ws: &WorkspaceRef,
        request: CreateModelVersion,
    ) -> StoreResult<ModelVersion> {
        rules::validate_model_name(&request.name)?;
        if request.source.is_empty() {
            return Err(StoreError::Domain(rules::missing_value("source")));
        }
        for tag in &request.tags {
            rules::validate_registry_tag(tag)?;
        }
        self.registered_model_exists(ws, &request.name).await?;
        let mut run_id = request.run_id;
        let mut model_id = request.model_id;
        let mut storage_location = request.source.clone();
        // A `models:/` source names a logged model or another version; the
        // files are where that one's are.
        if let Some(reference) = request.source.strip_prefix("models:/") {
            if let Some(logged_id) = reference
                .strip_prefix("m-")
                .map(|_| reference.trim_end_matches('/'))
            {
                let logged = self.logged_model_in(ws, logged_id).await.map_err(|_| {
                    invalid(format!(
                        "Unable to fetch model from model URI source artifact location '{}'.",
                        request.source
                    ))
                })?;
                storage_location = logged.info.artifact_uri.clone();
                if run_id.is_empty() {
                    run_id = logged.info.source_run_id.clone().unwrap_or_default();
                }
                if model_id.is_empty() {
                    model_id = logged_id.to_string();
                }
            } else if let Some((source_name, source_version)) =
                reference.trim_end_matches('/').rsplit_once('/')
            {
                let source = self.model_version_in(ws, source_name, source_version).await?;
                storage_location = self
                    .get_model_version_download_uri(ws, &source.name, &source.version)
                    .await?;
            }
        }
        if run_id.is_empty() && !model_id.is_empty() {
            if let Ok(logged) = self.logged_model_in(ws, &model_id).await {
                run_id = logged.info.source_run_id.clone().unwrap_or_default();
            }
        }
        let mut write = self.begin_write(&ws.workspace_id).await?;
        let next: i64 = sqlx::query_scalar(
            "SELECT next_version FROM registered_models WHERE workspace_id = $1 AND name = $2",
        )
        .bind(&ws.workspace_id)
        .bind(&request.name)
        .fetch_one(&mut *write.tx)
        .await?;
        let version_number = self.allocate_id(AssetClass::Registry, next.max(1));
        let version = version_number.to_string();
        let time = write.now;
        // Read on the write's connection: a version created just before in
        // the same shared transaction has added itself to the tag already.
        let registered_tag: Option<Option<String>> = if model_id.is_empty() {
            None
        } else {
            sqlx::query(
                "SELECT t.value FROM logged_models m LEFT JOIN logged_model_tags t ON t.model_id = m.model_id AND t.key = $3 \
                 WHERE m.model_id = $1 AND m.workspace_id = $2 AND m.lifecycle_stage = 'active'",
            )
            .bind(&model_id)
            .bind(&ws.workspace_id)
            .bind(MODEL_VERSIONS_TAG)
            .fetch_optional(&mut *write.tx)
            .await?
            .map(|row| sqlx::Row::try_get::<Option<String>, _>(&row, 0))
            .transpose()?
        };
        let logged_model_tag = registered_tag.map(|value| {
            let mut registered: Vec<serde_json::Value> = value
                .and_then(|value: String| serde_json::from_str(&value).ok())
                .unwrap_or_default();
            // As MLflow's server writes it: the version a JSON number
            // (its store's integer), the text `json.dumps`'s.
            let entry = serde_json::json!({"name": request.name, "version": version_number});
            if !registered.contains(&entry) {
                registered.push(entry);
            }
            Tag::new(
                MODEL_VERSIONS_TAG,
                python_json::dumps(&serde_json::Value::Array(registered), Separators::Default, false),
            )
        });
        self.record(
            &mut write,
            Change::ModelVersionCreated {
                name: request.name.clone(),
                version: version.clone(),
                source: request.source,
                storage_location,
                run_id,
                run_link: request.run_link,
                description: request.description,
                user_id: request.user_id,
                model_id: model_id.clone(),
                status: ModelVersionStatus::Ready,
                tags: request.tags,
                time,
            },
        )
        .await?;
        if let Some(tag) = logged_model_tag {
            self.record(
                &mut write,
                Change::LoggedModelTagsSet {
                    model_id,
                    tags: vec![tag],
                    time,
                },
            )
            .await?;
        }
        Self::commit(write).await?;
        self.model_version_in(ws, &request.name, &version).await
    }

    pub(super) async fn get_model_version_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<ModelVersion> {
        self.model_version_in(ws, name, version).await
    }

    pub(super) async fn get_model_version_download_uri_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<String> {
        let existing = self.model_version_in(ws, name, version).await?;
        let location: String = sqlx::query_scalar(
            "SELECT storage_location FROM model_versions v WHERE v.workspace_id = $1 AND v.name = $2 AND v.version = CAST($3 AS BIGINT) AND v.deletion_time IS NULL",
        )
        .bind(&ws.workspace_id)
        .bind(name)
        .bind(&existing.version)
        .fetch_one(&self.pool)
        .await?;
        Ok(if location.is_empty() {
            existing.source
        } else {
            location
        })
    }

    pub(super) async fn update_model_version_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        description: &str,
    ) -> StoreResult<ModelVersion> {
        let existing = self.model_version_in(ws, name, version).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::ModelVersionUpdated {
                name: name.to_string(),
                version: existing.version.clone(),
                description: description.to_string(),
                time,
            },
        )
        .await?;
        self.model_version_in(ws, name, &existing.version).await
    }

    pub(super) async fn transition_model_version_stage_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing_versions: bool,
    ) -> StoreResult<ModelVersion> {
        let stage = canonical_stage(stage).ok_or_else(|| {
            invalid(format!(
                "Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived."
            ))
        })?;
        if archive_existing_versions && !matches!(stage, "Staging" | "Production") {
            return Err(invalid(format!(
                "Model version transition cannot archive existing model versions because '{stage}' is not an Active stage. Valid stages are Staging, Production"
            )));
        }
        let existing = self.model_version_in(ws, name, version).await?;
        let archived_versions = if archive_existing_versions {
            load::model_versions_where(
                &self.pool,
                &ws.workspace_id,
                "AND v.name = $2",
                &[name.to_string()],
            )
            .await?
            .into_iter()
            .filter(|other| other.version != existing.version && other.current_stage == stage)
            .map(|other| other.version)
            .collect()
        } else {
            Vec::new()
        };
        let time = self.now();
        self.write_one(
            ws,
            Change::ModelVersionStageSet {
                name: name.to_string(),
                version: existing.version.clone(),
                stage: stage.to_string(),
                archived_versions,
                time,
            },
        )
        .await?;
        self.model_version_in(ws, name, &existing.version).await
    }

    pub(super) async fn delete_model_version_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
    ) -> StoreResult<()> {
        let existing = self.model_version_in(ws, name, version).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::ModelVersionDeleted {
                name: name.to_string(),
                version: existing.version,
                time,
            },
        )
        .await
    }

    pub(super) async fn search_model_versions_impl(
        &self,
        ws: &WorkspaceRef,
        query: SearchQuery,
    ) -> StoreResult<Page<ModelVersion>> {
        let versions = load::model_versions_where(&self.read_pool, &ws.workspace_id, "", &[]).await?;
        Ok(search::search_model_versions(
            versions,
            &query.filter,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?)
    }

    pub(super) async fn set_model_version_tag_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        tag: Tag,
    ) -> StoreResult<()> {
        rules::validate_registry_tag(&tag)?;
        let existing = self.model_version_in(ws, name, version).await?;
        self.write_one(
            ws,
            Change::ModelVersionTagSet {
                name: name.to_string(),
                version: existing.version,
                tag,
            },
        )
        .await
    }

    pub(super) async fn delete_model_version_tag_impl(
        &self,
        ws: &WorkspaceRef,
        name: &str,
        version: &str,
        key: &str,
    ) -> StoreResult<()> {
        let existing = self.model_version_in(ws, name, version).await?;
        self.write_one(
            ws,
            Change::ModelVersionTagDeleted {
                name: name.to_string(),
                version: existing.version,
                key: key.to_string(),
            },
        )
        .await
    }
}
