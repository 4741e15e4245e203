//! What a local-directory store needs beyond `object_store`'s `LocalFileSystem`.
//!
//! `LocalFileSystem` follows symbolic links, both when it opens a path and when it walks a
//! directory. An [`ArtifactKey`](crate::ArtifactKey) cannot express "..", but a symlink planted
//! inside the root (by an operator, a restore, another program) would still let a valid key
//! reach outside it — and `delete_prefix` would then delete files elsewhere on the machine.
//! So for local roots we refuse every key whose path crosses a symlink, and list directories
//! ourselves without following links. The checks run before each operation; a symlink created
//! in the instant between check and use is out of scope (whoever can do that already has
//! write access to the server's disk).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;

use crate::error::{classify, Op};
use crate::{ArtifactError, ArtifactKey, Listing};

/// A local root directory, canonicalised once at open time (the root itself may be reached
/// through a symlink such as /data -> /mnt/disk1; only links *inside* it are refused).
#[derive(Debug, Clone)]
pub(crate) struct LocalRoot {
    root: PathBuf,
    /// The store rooted at `root`, for the one mapping of keys to file names
    /// (`path_to_filesystem`) that every operation shares.
    store: Arc<LocalFileSystem>,
}

impl LocalRoot {
    pub(crate) fn new(root: PathBuf, store: Arc<LocalFileSystem>) -> Self {
        LocalRoot { root, store }
    }

    /// Refuses `key` if any existing component of its path (the last one included) is a
    /// symbolic link. Runs on the blocking pool: lstat can stall on network filesystems.
    ///
    /// Also refuses names `LocalFileSystem` reserves for its staging files ("name#123"), which
    /// it would otherwise reject with an opaque error.
    pub(crate) async fn check(&self, key: &ArtifactKey) -> Result<(), ArtifactError> {
        check_name(key)?;
        self.check_prefix(key).await
    }

    /// Writes a complete body to `key` in one trip to the blocking pool: the symlink check
    /// of [`check`](Self::check), then the staged write `LocalFileSystem::put` performs (a
    /// fresh "name#N" staging file, the bytes, a rename over the target), so nothing is
    /// visible at `key` before all of `chunks` is in the file. Two trips (check, then put)
    /// cost a small upload as much as the write itself.
    pub(crate) async fn put_complete(
        &self,
        key: &ArtifactKey,
        location: &object_store::path::Path,
        chunks: Vec<Bytes>,
    ) -> Result<(), ArtifactError> {
        check_name(key)?;
        let target = self
            .store
            .path_to_filesystem(location)
            .map_err(|e| classify(e, key.as_str(), Op::Write))?;
        let root = self.root.clone();
        let key = key.as_str().to_string();
        blocking(move || {
            check_no_symlink(&root, &key)?;
            write_staged(&target, &chunks).map_err(|source| {
                let error = object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(source),
                };
                classify(error, &key, Op::Write)
            })
        })
        .await
    }

    /// The symlink half of [`check`](Self::check), for keys used as listing prefixes (a
    /// *directory* may well be called "x#1").
    pub(crate) async fn check_prefix(&self, key: &ArtifactKey) -> Result<(), ArtifactError> {
        let root = self.root.clone();
        let key = key.as_str().to_string();
        blocking(move || check_no_symlink(&root, &key)).await
    }

    /// One level of the directory at `prefix` (None = root): files with sizes and
    /// sub-directories, paths relative to the root. Symlinks, staging files of unfinished
    /// uploads and names that are not valid keys are skipped.
    pub(crate) async fn list(&self, prefix: Option<&ArtifactKey>) -> Result<Vec<Listing>, ArtifactError> {
        if let Some(prefix) = prefix {
            self.check_prefix(prefix).await?;
        }
        let root = self.root.clone();
        let prefix = prefix.map(|p| p.as_str().to_string());
        blocking(move || {
            let mut out = Vec::new();
            read_level(&root, prefix.as_deref(), &mut out, None)?;
            Ok(out)
        })
        .await
    }

    /// Every file under `prefix` (None = root), recursively, without following symlinks.
    pub(crate) async fn list_recursive(
        &self,
        prefix: Option<&ArtifactKey>,
    ) -> Result<Vec<Listing>, ArtifactError> {
        if let Some(prefix) = prefix {
            self.check_prefix(prefix).await?;
        }
        let root = self.root.clone();
        let prefix = prefix.map(|p| p.as_str().to_string());
        blocking(move || walk(&root, prefix)).await
    }

    /// `list_recursive` of each of `prefixes`, in one blocking task: a
    /// caller listing thousands of small trees (a run's files each) pays
    /// one hand-off to the blocking pool, not two per tree.
    pub(crate) async fn list_recursive_each(
        &self,
        prefixes: &[ArtifactKey],
    ) -> Result<Vec<Result<Vec<Listing>, ArtifactError>>, ArtifactError> {
        let root = self.root.clone();
        let prefixes: Vec<String> = prefixes.iter().map(|p| p.as_str().to_string()).collect();
        blocking(move || {
            Ok(prefixes
                .into_iter()
                .map(|prefix| {
                    check_no_symlink(&root, &prefix)?;
                    walk(&root, Some(prefix))
                })
                .collect())
        })
        .await
    }

    /// After a failed upload, removes the directories that were created for it and are now
    /// empty, walking up towards (never including) the root. `remove_dir` refuses non-empty
    /// directories, so a concurrent upload into the same directory is not disturbed (and
    /// `LocalFileSystem` recreates missing parents if it loses that race).
    pub(crate) async fn prune_empty_parents(&self, key: &ArtifactKey) {
        let root = self.root.clone();
        let key = key.as_str().to_string();
        let _ = tokio::task::spawn_blocking(move || {
            let mut path = root.join(&key);
            while path.pop() && path != root && path.starts_with(&root) {
                if std::fs::remove_dir(&path).is_err() {
                    break;
                }
            }
        })
        .await;
    }
}

async fn blocking<T, F>(f: F) -> Result<T, ArtifactError>
where
    F: FnOnce() -> Result<T, ArtifactError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArtifactError::backend_msg(format!("local storage task failed: {e}")))?
}

/// Every file under `prefix` (None = the root), recursively, without
/// following symlinks.
fn walk(root: &Path, prefix: Option<String>) -> Result<Vec<Listing>, ArtifactError> {
    let mut files = Vec::new();
    let mut pending = vec![prefix];
    while let Some(dir) = pending.pop() {
        let mut subdirs = Vec::new();
        read_level(root, dir.as_deref(), &mut files, Some(&mut subdirs))?;
        pending.extend(subdirs.into_iter().map(Some));
    }
    Ok(files)
}

/// Refuses the names `LocalFileSystem` reserves for its staging files.
fn check_name(key: &ArtifactKey) -> Result<(), ArtifactError> {
    let file_name = key.as_str().rsplit('/').next().unwrap_or_default();
    if is_staging_file(file_name) {
        return Err(ArtifactError::invalid(
            key.as_str(),
            "local storage reserves names ending in '#' followed by digits",
        ));
    }
    Ok(())
}

/// Writes `chunks` to a new staging file beside `target` and renames it over `target`,
/// as `LocalFileSystem::put` does (same staging names, which listings skip); on failure
/// the staging file is removed and `target` is untouched.
fn write_staged(target: &Path, chunks: &[Bytes]) -> io::Result<()> {
    let (mut file, staging) = create_staging_file(target)?;
    let written = chunks.iter().try_for_each(|chunk| file.write_all(chunk));
    // Closed before the rename, as LocalFileSystem does for FUSE filesystems that
    // upload on close.
    drop(file);
    let result = written.and_then(|()| std::fs::rename(&staging, target));
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result
}

/// Creates `target#N` for the smallest free N, creating missing parent directories.
fn create_staging_file(target: &Path) -> io::Result<(File, PathBuf)> {
    let mut suffix: u64 = 1;
    let mut created_parents = false;
    loop {
        let mut name = target.as_os_str().to_owned();
        name.push(format!("#{suffix}"));
        let staging = PathBuf::from(name);
        match OpenOptions::new().write(true).create_new(true).open(&staging) {
            Ok(file) => return Ok((file, staging)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => suffix += 1,
            // Once only: if the directory vanishes again (a concurrent failed upload
            // pruning it), report the error rather than loop.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !created_parents => {
                let parent = staging.parent().ok_or(e)?;
                std::fs::create_dir_all(parent)?;
                created_parents = true;
            }
            Err(e) => return Err(e),
        }
    }
}

fn check_no_symlink(root: &Path, key: &str) -> Result<(), ArtifactError> {
    let mut path = root.to_path_buf();
    for segment in key.split('/') {
        path.push(segment);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ArtifactError::invalid(
                    key,
                    "the path crosses a symbolic link inside the local storage root",
                ));
            }
            Ok(_) => {}
            // Nothing further down can exist, so nothing further down can be a link.
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                return Ok(())
            }
            Err(e) => return Err(ArtifactError::from_io(e, key)),
        }
    }
    Ok(())
}

/// Reads the directory `root/dir`, appending files (and, when `subdirs` is None, directories)
/// to `out`; with `subdirs` given, directory keys go there instead, for recursion.
fn read_level(
    root: &Path,
    dir: Option<&str>,
    out: &mut Vec<Listing>,
    mut subdirs: Option<&mut Vec<String>>,
) -> Result<(), ArtifactError> {
    let fs_dir = match dir {
        Some(d) => root.join(d),
        None => root.to_path_buf(),
    };
    let entries = match std::fs::read_dir(&fs_dir) {
        Ok(entries) => entries,
        // A missing prefix, or a prefix that names a file, lists as empty (as on S3).
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(()),
        Err(e) => return Err(ArtifactError::from_io(e, dir.unwrap_or(""))),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Err(ArtifactError::from_io(e, dir.unwrap_or(""))),
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::debug!(dir = ?fs_dir, "skipping a non-UTF-8 file name in local artifact storage");
            continue;
        };
        let key = match dir {
            Some(d) => format!("{d}/{name}"),
            None => name.clone(),
        };
        if ArtifactKey::parse(&key).is_err() {
            tracing::debug!(%key, "skipping a file whose name is not a valid artifact key");
            continue;
        }
        // DirEntry::file_type does not follow symlinks, which is exactly the point.
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // deleted meanwhile
            Err(e) => return Err(ArtifactError::from_io(e, &key)),
        };
        if file_type.is_dir() {
            match subdirs.as_deref_mut() {
                Some(subdirs) => subdirs.push(key),
                None => out.push(Listing {
                    path: key,
                    is_dir: true,
                    size: None,
                }),
            }
        } else if file_type.is_file() {
            if is_staging_file(&name) {
                continue;
            }
            let size = match entry.metadata() {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ArtifactError::from_io(e, &key)),
            };
            out.push(Listing {
                path: key,
                is_dir: false,
                size: Some(size),
            });
        }
        // Symlinks, sockets, FIFOs: not artifacts.
    }
    Ok(())
}

/// `LocalFileSystem` writes uploads in progress to "<name>#<digits>" next to the target and
/// renames them into place when complete; such files are not (yet) objects.
pub(crate) fn is_staging_file(name: &str) -> bool {
    match name.split_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        assert!(is_staging_file("model.pkl#1"));
        assert!(is_staging_file("x#12"));
        assert!(!is_staging_file("x#"));
        assert!(!is_staging_file("x#1a"));
        assert!(!is_staging_file("a#b#1"));
        assert!(!is_staging_file("plain"));
    }
}
