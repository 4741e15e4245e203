//! `tandem files …`: the workspace file share (upload, list, download,
//! delete) and salvage (the files storage still holds for a workspace id
//! after the workspace was deleted or purged, and purging that storage).

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Subcommand;
use futures::StreamExt;
use serde_json::json;
use tandem_client::{Download, TandemClient};
use tandem_core::model::format_utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::progress::ProgressLine;
use crate::{ClientArgs, Refusal};

const CHUNK: usize = 256 * 1024;

#[derive(Subcommand)]
pub(crate) enum FilesCommand {
    /// Upload a file, or a directory with everything in it, to the file
    /// share. REMOTE defaults to LOCAL's name at the share's root.
    Upload {
        local: PathBuf,
        remote: Option<String>,
        #[arg(long, default_value = "default")]
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the files at or under PATH (every file without it).
    List {
        path: Option<String>,
        #[arg(long, default_value = "default")]
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download a file, or every file under a directory, to --out
    /// [default: the file's name, or the directory's, here].
    Download {
        remote: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace local files that already exist.
        #[arg(long)]
        overwrite: bool,
        #[arg(long, default_value = "default")]
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a file, or a directory with every file under it.
    Delete {
        path: String,
        #[arg(long, default_value = "default")]
        workspace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Retrieve every file storage still holds for a workspace id into DIR,
    /// even after the workspace was deleted or purged. The id is in
    /// `tandem workspace list --all` (or the purge's output).
    Salvage {
        #[arg(long)]
        workspace_id: String,
        #[arg(long, required_unless_present = "list")]
        out: Option<PathBuf>,
        /// Only list what would be retrieved.
        #[arg(long)]
        list: bool,
        /// Replace local files that already exist.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove for good what storage still holds for a purged workspace (its
    /// files and any artifacts a purge kept). Refused while the workspace
    /// exists, even deleted.
    PurgeStorage {
        #[arg(long)]
        workspace_id: String,
        /// Confirm: nothing can be salvaged afterwards.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) async fn run(command: FilesCommand) -> anyhow::Result<()> {
    match command {
        FilesCommand::Upload {
            local,
            remote,
            workspace,
            client,
        } => {
            let target = client.resolve()?;
            let uploads = plan_upload(&local, remote.as_deref())?;
            let total: u64 = uploads.iter().map(|(_, _, size)| size).sum();
            let progress = Arc::new(Mutex::new(Bar::new("uploading", total)));
            let mut entries = Vec::new();
            for (path, remote, _) in &uploads {
                let entry = upload_one(&target.client, &workspace, path, remote, progress.clone()).await?;
                entries.push(entry);
            }
            progress.lock().expect("progress lock").finish();
            if target.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "uploaded": entries }))?
                );
            } else {
                for entry in &entries {
                    println!(
                        "uploaded {} ({} bytes, sha256 {})",
                        entry.path, entry.size, entry.sha256
                    );
                }
            }
            Ok(())
        }
        FilesCommand::List {
            path,
            workspace,
            client,
        } => {
            let target = client.resolve()?;
            let listing = target.client.list_files(&workspace, path.as_deref()).await?;
            if target.json {
                println!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                println!("PATH\tSIZE\tMODIFIED\tSHA256");
                for file in &listing.files {
                    println!(
                        "{}\t{}\t{}\t{}",
                        file.path,
                        file.size,
                        format_utc(file.modified_at),
                        file.sha256
                    );
                }
            }
            Ok(())
        }
        FilesCommand::Download {
            remote,
            out,
            overwrite,
            workspace,
            client,
        } => {
            let target = client.resolve()?;
            let remote = remote.trim_matches('/').to_string();
            let listing = target.client.list_files(&workspace, Some(&remote)).await?;
            if listing.files.is_empty() {
                return Err(Refusal::NotFound(format!(
                    "no file or directory '{remote}' in the file share of workspace '{workspace}'"
                ))
                .into());
            }
            let name = remote.rsplit('/').next().unwrap_or(&remote).to_string();
            let out = out.unwrap_or_else(|| PathBuf::from(&name));
            let single = listing.files.len() == 1 && listing.files[0].path == remote;
            let mut plan = Vec::new();
            for file in &listing.files {
                let local = if single {
                    out.clone()
                } else {
                    let below = file
                        .path
                        .strip_prefix(&format!("{remote}/"))
                        .unwrap_or(&file.path);
                    out.join(relative_local(below)?)
                };
                plan.push((file.path.clone(), local, file.size as u64));
            }
            fetch_all(
                &target.client,
                Source::Share(&workspace),
                &plan,
                overwrite,
                target.json,
            )
            .await
        }
        FilesCommand::Delete {
            path,
            workspace,
            client,
        } => {
            let target = client.resolve()?;
            let removed = target.client.delete_file(&workspace, &path).await?;
            if target.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "deleted": removed }))?
                );
            } else {
                for file in &removed {
                    println!("deleted {}", file.path);
                }
            }
            Ok(())
        }
        FilesCommand::Salvage {
            workspace_id,
            out,
            list,
            overwrite,
            client,
        } => {
            let target = client.resolve()?;
            let listing = target.client.salvage_list(&workspace_id).await?;
            if list {
                if target.json {
                    println!("{}", serde_json::to_string_pretty(&listing)?);
                } else {
                    println!(
                        "workspace {workspace_id} ({}): {} files, {} bytes",
                        listing.workspace_state,
                        listing.files.len(),
                        listing.bytes
                    );
                    for file in &listing.files {
                        println!("{}\t{}", file.path, file.size);
                    }
                }
                return Ok(());
            }
            if listing.files.is_empty() {
                return Err(Refusal::NotFound(format!(
                    "storage holds no files for workspace id '{workspace_id}' (never had any, or its storage was purged)"
                ))
                .into());
            }
            let out = out.expect("clap requires --out without --list");
            let mut plan = Vec::new();
            for file in &listing.files {
                plan.push((
                    file.path.clone(),
                    out.join(relative_local(&file.path)?),
                    file.size,
                ));
            }
            fetch_all(
                &target.client,
                Source::Salvage(&workspace_id),
                &plan,
                overwrite,
                target.json,
            )
            .await
        }
        FilesCommand::PurgeStorage {
            workspace_id,
            yes,
            client,
        } => {
            if !yes {
                return Err(Refusal::Usage(format!(
                    "purging the storage of workspace {workspace_id} cannot be undone and leaves nothing to salvage; pass --yes to confirm"
                ))
                .into());
            }
            let target = client.resolve()?;
            let removed = target.client.purge_storage(&workspace_id).await?;
            if target.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({ "workspace_id": workspace_id, "removed_objects": removed })
                    )?
                );
            } else {
                println!("purged the storage of workspace {workspace_id}: {removed} objects removed");
            }
            Ok(())
        }
    }
}

/// The files to upload: (local path, remote path, size). A directory's
/// files keep their place below REMOTE; symbolic links are not followed.
fn plan_upload(local: &Path, remote: Option<&str>) -> anyhow::Result<Vec<(PathBuf, String, u64)>> {
    let metadata = std::fs::metadata(local)
        .map_err(|error| anyhow::Error::new(Refusal::NotFound(format!("{}: {error}", local.display()))))?;
    let name = local
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default();
    let remote = remote
        .map(|remote| remote.trim_matches('/').to_string())
        .filter(|remote| !remote.is_empty())
        .unwrap_or(name);
    if remote.is_empty() {
        return Err(Refusal::Usage(format!("give a remote path for {}", local.display())).into());
    }
    if metadata.is_file() {
        return Ok(vec![(local.to_path_buf(), remote, metadata.len())]);
    }
    let mut files = Vec::new();
    let mut pending = vec![(local.to_path_buf(), remote)];
    while let Some((dir, prefix)) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read {}", dir.display()))?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let kind = entry.file_type()?;
            let child = format!("{prefix}/{}", entry.file_name().to_string_lossy());
            if kind.is_dir() {
                pending.push((entry.path(), child));
            } else if kind.is_file() {
                files.push((entry.path(), child, entry.metadata()?.len()));
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

async fn upload_one(
    client: &TandemClient,
    workspace: &str,
    local: &Path,
    remote: &str,
    progress: Arc<Mutex<Bar>>,
) -> anyhow::Result<tandem_core::model::FileEntry> {
    let file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("cannot open {}", local.display()))?;
    let body = futures::stream::unfold(Some(file), move |file| {
        let progress = progress.clone();
        async move {
            let mut file = file?;
            let mut buffer = vec![0u8; CHUNK];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(read) => {
                    buffer.truncate(read);
                    progress.lock().expect("progress lock").advance(read as u64);
                    Some((Ok::<_, std::io::Error>(buffer), Some(file)))
                }
                Err(error) => Some((Err(error), None)),
            }
        }
    });
    Ok(client.upload_file(workspace, remote, body).await?)
}

/// A remote path as a relative local one, refusing anything that would
/// leave the output directory.
fn relative_local(remote: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(remote);
    let plain = !remote.is_empty() && path.components().all(|part| matches!(part, Component::Normal(_)));
    if !plain {
        return Err(anyhow::anyhow!(
            "refusing the server's path '{remote}': it is not a plain relative path"
        ));
    }
    Ok(path)
}

/// Where downloaded files come from.
enum Source<'a> {
    /// A workspace's file share, by workspace name.
    Share(&'a str),
    /// What storage holds for a workspace id (salvage).
    Salvage(&'a str),
}

/// Downloads every `(remote, local, size)` of `plan`, refusing first if a
/// local file is in the way (unless `overwrite`), with one progress bar.
async fn fetch_all(
    client: &TandemClient,
    source: Source<'_>,
    plan: &[(String, PathBuf, u64)],
    overwrite: bool,
    json: bool,
) -> anyhow::Result<()> {
    refuse_existing(plan, overwrite)?;
    let total = plan.iter().map(|(_, _, size)| size).sum();
    let label = match source {
        Source::Share(_) => "downloading",
        Source::Salvage(_) => "salvaging",
    };
    let mut bar = Bar::new(label, total);
    for (remote, local, size) in plan {
        let download = match source {
            Source::Share(workspace) => client.download_file(workspace, remote).await?,
            Source::Salvage(workspace_id) => client.salvage_download(workspace_id, remote).await?,
        };
        save(download, local, *size, &mut bar).await?;
    }
    bar.finish();
    report_saved(json, plan)
}

fn refuse_existing<T>(plan: &[(String, PathBuf, T)], overwrite: bool) -> anyhow::Result<()> {
    if overwrite {
        return Ok(());
    }
    let existing: Vec<String> = plan
        .iter()
        .filter(|(_, local, _)| local.exists())
        .map(|(_, local, _)| local.display().to_string())
        .collect();
    if existing.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Conflict(format!(
            "{} local file(s) already exist (pass --overwrite to replace them): {}",
            existing.len(),
            existing.join(", ")
        ))
        .into())
    }
}

/// Streams a download into `local` through a temporary file beside it,
/// checking its size, so that an interrupted transfer leaves no partial file.
async fn save(mut download: Download, local: &Path, size: u64, bar: &mut Bar) -> anyhow::Result<()> {
    if let Some(parent) = local.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let partial = local.with_file_name(format!(
        ".{}.partial",
        local.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = async {
        let mut file = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut written = 0u64;
        while let Some(chunk) = download.stream.next().await {
            let chunk = chunk?;
            file.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", partial.display()))?;
            written += chunk.len() as u64;
            bar.advance(chunk.len() as u64);
        }
        file.sync_all().await?;
        if written != size {
            anyhow::bail!(
                "{}: received {written} bytes, expected {size}; nothing was saved",
                local.display()
            );
        }
        tokio::fs::rename(&partial, local)
            .await
            .with_context(|| format!("cannot move the download to {}", local.display()))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}

fn report_saved(json: bool, plan: &[(String, PathBuf, u64)]) -> anyhow::Result<()> {
    if json {
        let saved: Vec<_> = plan
            .iter()
            .map(|(remote, local, size)| json!({ "path": remote, "local": local, "size": size }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "saved": saved }))?);
    } else {
        for (remote, local, size) in plan {
            println!("saved {remote} to {} ({size} bytes)", local.display());
        }
    }
    Ok(())
}

/// Bytes done of a known total, drawn on stderr when it is a terminal.
struct Bar {
    line: ProgressLine,
    phase: &'static str,
    done: u64,
    total: u64,
}

impl Bar {
    fn new(phase: &'static str, total: u64) -> Bar {
        Bar {
            line: ProgressLine::new(),
            phase,
            done: 0,
            total,
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.line.update(&json!({
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "unit": "bytes",
        }));
    }

    fn finish(&mut self) {
        self.line.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_never_leave_the_output_directory() {
        assert_eq!(relative_local("nb/a.ipynb").unwrap(), PathBuf::from("nb/a.ipynb"));
        for bad in ["", "../x", "/etc/passwd", "a/../../x"] {
            assert!(relative_local(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_directory_uploads_with_its_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("nb/sub")).unwrap();
        std::fs::write(dir.path().join("nb/a.txt"), b"abc").unwrap();
        std::fs::write(dir.path().join("nb/sub/b.txt"), b"de").unwrap();
        let plan = plan_upload(&dir.path().join("nb"), None).unwrap();
        let remote: Vec<(&str, u64)> = plan
            .iter()
            .map(|(_, remote, size)| (remote.as_str(), *size))
            .collect();
        assert_eq!(remote, vec![("nb/a.txt", 3), ("nb/sub/b.txt", 2)]);
        let plan = plan_upload(&dir.path().join("nb/a.txt"), Some("/x/y.txt")).unwrap();
        assert_eq!(plan[0].1, "x/y.txt");
    }
}
