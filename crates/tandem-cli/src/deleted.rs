//! `tandem deleted …` (the deleted items of a workspace: list, recover,
//! purge) and the retention commands of `tandem workspace` (recover, purge,
//! update).

use clap::Subcommand;
use tandem_core::model::{format_utc, Workspace};

use crate::{print_workspace, ClientArgs};

/// The kinds `tandem deleted recover|purge` takes.
const KINDS: [&str; 5] = [
    "experiment",
    "run",
    "logged_model",
    "registered_model",
    "model_version",
];

#[derive(Subcommand)]
pub(crate) enum DeletedCommand {
    /// List the deleted items of a workspace (kind, id, name, deletion time,
    /// when it will be purged).
    List {
        #[arg(long, default_value = "default")]
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Recover a deleted item: experiment, run, logged_model,
    /// registered_model (with its versions and aliases; id `name:<hex>` as
    /// listed, or its name if only one deleted model has it) or
    /// model_version (id `name/version`).
    Recover {
        #[arg(value_parser = KINDS)]
        kind: String,
        id: String,
        #[arg(long, default_value = "default")]
        workspace: String,
        /// A registered model only: recover it under this name (needed when
        /// its own name was taken again after it was deleted).
        #[arg(long = "as", value_name = "NEW_NAME")]
        new_name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Purge a deleted item for good (an experiment with its runs, a
    /// registered model with its versions); its artifacts are removed from
    /// storage unless --keep-artifacts.
    Purge {
        #[arg(value_parser = KINDS)]
        kind: String,
        id: String,
        #[arg(long, default_value = "default")]
        workspace: String,
        /// Leave the purged items' artifacts in storage.
        #[arg(long)]
        keep_artifacts: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) async fn run(command: DeletedCommand) -> anyhow::Result<()> {
    match command {
        DeletedCommand::List { workspace, client } => {
            let target = client.resolve()?;
            let items = target.client.list_deleted(&workspace).await?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                println!("KIND\tID\tNAME\tDELETED\tPURGE_AFTER");
                for item in &items {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        item.kind,
                        item.id,
                        item.name,
                        format_utc(item.deletion_time),
                        format_utc(item.purge_after)
                    );
                }
            }
            Ok(())
        }
        DeletedCommand::Recover {
            kind,
            id,
            workspace,
            new_name,
            client,
        } => {
            if new_name.is_some() && kind != "registered_model" {
                return Err(crate::Refusal::Usage(
                    "--as is for a registered_model only: other items keep their names".to_string(),
                )
                .into());
            }
            let target = client.resolve()?;
            target
                .client
                .recover_deleted_as(&workspace, &kind, &id, new_name.as_deref())
                .await?;
            match new_name {
                Some(name) if !target.json => {
                    println!("recovered {kind} {id} as {name}");
                    Ok(())
                }
                Some(name) => {
                    let value = serde_json::json!({ "recovered": { "kind": kind, "id": id }, "name": name });
                    println!("{}", serde_json::to_string_pretty(&value)?);
                    Ok(())
                }
                None => report(target.json, "recovered", &kind, &id, None),
            }
        }
        DeletedCommand::Purge {
            kind,
            id,
            workspace,
            keep_artifacts,
            client,
        } => {
            let target = client.resolve()?;
            target
                .client
                .purge_deleted(&workspace, &kind, &id, keep_artifacts)
                .await?;
            report(target.json, "purged", &kind, &id, Some(keep_artifacts))
        }
    }
}

fn report(json: bool, what: &str, kind: &str, id: &str, keep_artifacts: Option<bool>) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::json!({ what: { "kind": kind, "id": id } });
        if let Some(keep) = keep_artifacts {
            value["keep_artifacts"] = keep.into();
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{what} {kind} {id}");
    }
    Ok(())
}

/// `tandem workspace recover|purge|update`.
pub(crate) async fn recover_workspace(name: &str, client: &ClientArgs) -> anyhow::Result<()> {
    let target = client.resolve()?;
    let workspace = target.client.recover_workspace(name).await?;
    print_workspace(&workspace, target.json)
}

pub(crate) async fn purge_workspace(
    name: &str,
    keep_artifacts: bool,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    let target = client.resolve()?;
    let workspace: Workspace = target.client.purge_workspace(name, keep_artifacts).await?;
    if target.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "workspace": workspace,
                "purged": true,
                "keep_artifacts": keep_artifacts,
            }))?
        );
    } else {
        println!("purged {}\t{}", workspace.name, workspace.workspace_id);
    }
    Ok(())
}

pub(crate) async fn update_workspace(
    name: &str,
    description: Option<&str>,
    retention_days: Option<i64>,
    purge_protection: bool,
    storage_quota: Option<&str>,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    if description.is_none() && retention_days.is_none() && !purge_protection && storage_quota.is_none() {
        return Err(crate::Refusal::Usage(
            "nothing to update: give --description, --retention-days, --purge-protection or --storage-quota"
                .to_string(),
        )
        .into());
    }
    let storage_quota = storage_quota.map(parse_quota).transpose()?;
    let target = client.resolve()?;
    let workspace = target
        .client
        .update_workspace(
            name,
            description,
            retention_days,
            purge_protection.then_some(true),
            storage_quota,
        )
        .await?;
    print_workspace(&workspace, target.json)
}

/// `10GiB`, `500 MB`, `1048576` (bytes), or `none` (no quota).
pub(crate) fn parse_quota(text: &str) -> anyhow::Result<Option<i64>> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let size: bytesize::ByteSize = text.parse().map_err(|error| {
        crate::Refusal::Usage(format!(
            "--storage-quota '{text}' is not a size (like 10GiB, 500MB, 1048576) or none: {error}"
        ))
    })?;
    i64::try_from(size.as_u64())
        .map(Some)
        .map_err(|_| crate::Refusal::Usage(format!("--storage-quota '{text}' is too large")).into())
}
