//! Logged models: what `MetadataStore`'s logged-model methods do, kept
//! apart from `ops.rs`'s other operations.

use super::ops::{append_to_uri, invalid, not_found};
use super::{load, SqlStore};
use crate::error::StoreResult;
use crate::*;
use tandem_core::journal::Change;
use tandem_core::model::*;
use tandem_core::search::{self, Page};
use tandem_core::validation as rules;
use tandem_core::{ids, names};

impl SqlStore {
    pub(super) async fn create_logged_model_impl(
        &self,
        ws: &WorkspaceRef,
        request: CreateLoggedModel,
    ) -> StoreResult<LoggedModel> {
        if let Some(name) = &request.name {
            rules::validate_logged_model_name(name)?;
        }
        for param in &request.params {
            rules::validate_param(param, "params")?;
        }
        for tag in &request.tags {
            rules::validate_run_tag(tag, "tags")?;
        }
        // The source run is recorded as given, not looked up: MLflow accepts
        // a run it does not know (the model may come from another server).
        let experiment = self.ensure_experiment_active(ws, &request.experiment_id).await?;
        let model_id = ids::new_logged_model_id();
        let name = request.name.unwrap_or_else(names::random_run_name);
        let artifact_uri = append_to_uri(&experiment.artifact_location, &["models", &model_id, "artifacts"]);
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelCreated {
                model_id: model_id.clone(),
                experiment_id: request.experiment_id,
                name,
                artifact_uri,
                status: LoggedModelStatus::LoggedModelPending,
                creator_id: request.creator_id,
                model_type: request.model_type.filter(|t| !t.is_empty()),
                source_run_id: request.source_run_id.filter(|r| !r.is_empty()),
                tags: request.tags,
                params: request.params,
                time,
            },
        )
        .await?;
        self.get_logged_model(ws, &model_id).await
    }

    pub(super) async fn get_logged_model_impl(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
    ) -> StoreResult<LoggedModel> {
        self.logged_model_in(ws, model_id).await
    }

    pub(super) async fn finalize_logged_model_impl(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> StoreResult<LoggedModel> {
        self.logged_model_in(ws, model_id).await?;
        if status == LoggedModelStatus::LoggedModelStatusUnspecified {
            return Err(invalid(
                "Invalid logged model status: LOGGED_MODEL_STATUS_UNSPECIFIED".to_string(),
            ));
        }
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelUpdated {
                model_id: model_id.to_string(),
                status,
                status_message: None,
                time,
            },
        )
        .await?;
        self.get_logged_model(ws, model_id).await
    }

    pub(super) async fn delete_logged_model_impl(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
    ) -> StoreResult<()> {
        self.logged_model_in(ws, model_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelDeleted {
                model_id: model_id.to_string(),
                time,
            },
        )
        .await
    }

    pub(super) async fn set_logged_model_tags_impl(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        tags: Vec<Tag>,
    ) -> StoreResult<()> {
        for tag in &tags {
            rules::validate_run_tag(tag, "tags")?;
        }
        self.logged_model_in(ws, model_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelTagsSet {
                model_id: model_id.to_string(),
                tags,
                time,
            },
        )
        .await
    }

    pub(super) async fn delete_logged_model_tag_impl(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        key: &str,
    ) -> StoreResult<()> {
        let model = self.logged_model_in(ws, model_id).await?;
        if !model.info.tags.iter().any(|tag| tag.key == key) {
            return Err(not_found(format!(
                "No tag with key {key:?} found for model with ID {model_id:?}."
            )));
        }
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelTagDeleted {
                model_id: model_id.to_string(),
                key: key.to_string(),
                time,
            },
        )
        .await
    }

    pub(super) async fn log_logged_model_params_impl(
        &self,
        ws: &WorkspaceRef,
        model_id: &str,
        params: Vec<Param>,
    ) -> StoreResult<()> {
        for param in &params {
            rules::validate_param(param, "params")?;
        }
        self.logged_model_in(ws, model_id).await?;
        let time = self.now();
        self.write_one(
            ws,
            Change::LoggedModelParamsLogged {
                model_id: model_id.to_string(),
                params,
                time,
            },
        )
        .await
    }

    pub(super) async fn search_logged_models_impl(
        &self,
        ws: &WorkspaceRef,
        query: SearchLoggedModels,
    ) -> StoreResult<Page<LoggedModel>> {
        if query.experiment_ids.is_empty() {
            return Err(invalid("Please specify at least one experiment ID.".to_string()));
        }
        tandem_core::validation::validate_search_experiment_ids(&query.experiment_ids)?;
        let placeholders: Vec<String> = (0..query.experiment_ids.len())
            .map(|i| format!("${}", i + 2))
            .collect();
        let condition = format!(
            "AND m.lifecycle_stage = 'active' AND m.experiment_id IN ({})",
            placeholders.join(", ")
        );
        let models =
            load::logged_models_where(&self.pool, &ws.workspace_id, &condition, &query.experiment_ids)
                .await?;
        Ok(search::search_logged_models(
            models,
            &query.filter,
            &query.datasets,
            &query.order_by,
            query.max_results,
            query.page_token.as_deref(),
        )?)
    }
}
