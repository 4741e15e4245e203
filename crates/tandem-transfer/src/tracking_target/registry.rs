//! Registered models into an MLflow tracking server: versions under their
//! own numbers (gaps made with placeholder versions), stages, aliases,
//! tags and descriptions.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};
use tandem_core::model::{ModelVersion, RegisteredModel, Tag};
use tandem_core::transfer::{ImportAction, OnConflict};

use super::{changed_tags, origin_of, tag_list, Writer, ORIGIN_TAG, PLACEHOLDER_TAG};
use crate::copy::rewrite_version;
use crate::TransferError;

impl Writer<'_> {
    pub(super) async fn copy_registered_model(
        &mut self,
        model: RegisteredModel,
        versions: Vec<ModelVersion>,
        held: &[(RegisteredModel, Vec<ModelVersion>)],
    ) -> Result<(), TransferError> {
        let key = self.options.source_key.clone();
        let mut target = held
            .iter()
            .find(|(target, _)| origin_of(&target.tags, &key).is_some_and(|origin| origin.id == model.name));
        let mut name = model.name.clone();
        if target.is_none() {
            if let Some(clash) = held.iter().find(|(target, _)| target.name == name) {
                match self.options.on_conflict {
                    OnConflict::Merge => target = Some(clash),
                    OnConflict::Skip => {
                        self.report.registered_models.skipped += 1;
                        return Ok(());
                    }
                    OnConflict::Refuse => return Err(self.clash("registered model", &name)),
                    OnConflict::Rename => {
                        name = self.free_name(&name, |candidate| {
                            held.iter().any(|(target, _)| target.name == candidate)
                        });
                    }
                }
            }
        }
        let mut changed = false;
        let (name, held_versions) = match target {
            Some((target, held_versions)) => {
                let name = target.name.clone();
                if target.description != model.description {
                    self.call(
                        Method::PATCH,
                        "registered-models/update",
                        json!({"name": name, "description": model.description}),
                    )
                    .await?;
                    changed = true;
                }
                let mut tags = changed_tags(&model.tags, &target.tags);
                if origin_of(&target.tags, &key).is_none() {
                    tags.push(self.origin(&model.name, "").tag());
                }
                for tag in tags {
                    changed = true;
                    self.post(
                        "registered-models/set-tag",
                        json!({"name": name, "key": tag.key, "value": tag.value}),
                    )
                    .await?;
                }
                (name, held_versions.clone())
            }
            None => {
                let mut tags: Vec<Tag> = model
                    .tags
                    .iter()
                    .filter(|tag| tag.key != ORIGIN_TAG)
                    .cloned()
                    .collect();
                tags.push(self.origin(&model.name, "").tag());
                self.post(
                    "registered-models/create",
                    json!({"name": name, "description": model.description, "tags": tag_list(&tags)}),
                )
                .await?;
                (name, Vec::new())
            }
        };
        let created = target.is_none();

        // Placeholders an interrupted export left are deleted first; the
        // numbering counts them.
        let mut by_number: HashMap<i64, ModelVersion> = HashMap::new();
        let mut next = 1;
        for version in held_versions {
            let number: i64 = version.version.parse().unwrap_or(0);
            next = next.max(number + 1);
            if version.tags.iter().any(|tag| tag.key == PLACEHOLDER_TAG) {
                self.delete_version(&name, number).await?;
            } else {
                by_number.insert(number, version);
            }
        }
        for mut version in versions {
            let number: i64 = version
                .version
                .parse()
                .map_err(|_| TransferError::Decode(format!("version number {:?}", version.version)))?;
            rewrite_version(&mut version, &self.runs, &self.models)?;
            version.tags.sort_by(|a, b| a.key.cmp(&b.key));
            if let Some(held) = by_number.get(&number) {
                if held.description != version.description {
                    self.call(
                        Method::PATCH,
                        "model-versions/update",
                        json!({"name": name, "version": number.to_string(), "description": version.description}),
                    )
                    .await?;
                    changed = true;
                }
                for tag in changed_tags(&version.tags, &held.tags) {
                    self.post(
                        "model-versions/set-tag",
                        json!({"name": name, "version": number.to_string(), "key": tag.key, "value": tag.value}),
                    )
                    .await?;
                    changed = true;
                }
                if held.current_stage != version.current_stage {
                    self.transition(&name, number, &version.current_stage).await?;
                    changed = true;
                }
                continue;
            }
            if number < next {
                return Err(TransferError::Integrity(format!(
                    "version {number} of {name}: the target's numbering is already past it (a version {number} was deleted there); delete the registered model there and export again"
                )));
            }
            while next < number {
                let made = self
                    .create_version(
                        &name,
                        &version,
                        &[Tag {
                            key: PLACEHOLDER_TAG.to_string(),
                            value: "gap".to_string(),
                        }],
                        "",
                    )
                    .await?;
                self.delete_version(&name, made).await?;
                if made != next {
                    return Err(self.numbering(&name, next, made));
                }
                next += 1;
            }
            let made = self
                .create_version(&name, &version, &version.tags, &version.description)
                .await?;
            if made != number {
                return Err(self.numbering(&name, number, made));
            }
            next = number + 1;
            if version.current_stage != "None" && !version.current_stage.is_empty() {
                self.transition(&name, number, &version.current_stage).await?;
            }
            self.report.model_versions += 1;
            changed = true;
        }
        let held_aliases: HashMap<String, String> = target
            .map(|(target, _)| {
                target
                    .aliases
                    .iter()
                    .map(|alias| (alias.alias.clone(), alias.version.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for alias in &model.aliases {
            if held_aliases.get(&alias.alias) != Some(&alias.version) {
                self.post(
                    "registered-models/alias",
                    json!({"name": name, "alias": alias.alias, "version": alias.version}),
                )
                .await?;
                changed = true;
            }
        }
        self.report.registered_models.count(match (created, changed) {
            (true, _) => ImportAction::Created,
            (false, true) => ImportAction::Updated,
            (false, false) => ImportAction::Unchanged,
        });
        Ok(())
    }

    fn numbering(&self, name: &str, wanted: i64, made: i64) -> TransferError {
        TransferError::Integrity(format!(
            "{name}: the target numbered a new version {made} where {wanted} was due (versions were added or deleted there during the export)"
        ))
    }

    async fn create_version(
        &self,
        name: &str,
        version: &ModelVersion,
        tags: &[Tag],
        description: &str,
    ) -> Result<i64, TransferError> {
        let mut body = json!({
            "name": name,
            "source": version.source,
            "tags": tag_list(tags),
            "description": description,
        });
        if !version.run_id.is_empty() {
            body["run_id"] = json!(version.run_id);
        }
        if !version.model_id.is_empty() {
            body["model_id"] = json!(version.model_id);
        }
        let answer = self.post("model-versions/create", body).await?;
        answer["model_version"]["version"]
            .as_str()
            .and_then(|number| number.parse().ok())
            .or_else(|| answer["model_version"]["version"].as_i64())
            .ok_or_else(|| TransferError::Decode("model-versions/create without a version".to_string()))
    }

    async fn delete_version(&self, name: &str, number: i64) -> Result<(), TransferError> {
        self.call(
            Method::DELETE,
            "model-versions/delete",
            json!({"name": name, "version": number.to_string()}),
        )
        .await
        .map(|_: Value| ())
    }

    async fn transition(&self, name: &str, number: i64, stage: &str) -> Result<(), TransferError> {
        self.post(
            "model-versions/transition-stage",
            json!({"name": name, "version": number.to_string(), "stage": stage, "archive_existing_versions": false}),
        )
        .await
        .map(|_| ())
    }
}
