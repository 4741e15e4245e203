//! Turning a storage URL plus options into an `object_store` backend.
//!
//! `object_store::parse_url_opts` exists, but it roots `file://` stores at "/" (so the
//! directory is a path prefix, not a boundary), does not create the directory, and silently
//! ignores option keys it does not know. A misspelt credential key should fail at startup,
//! not as an authentication error on the first upload, so cloud options are checked here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use url::Url;

use crate::direct::Direct;
use crate::local::LocalRoot;
use crate::{ArtifactError, ArtifactKey};

/// What `ArtifactStore::open` needs to build itself.
pub(crate) struct Opened {
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket/container ("" for none); never starts or ends with '/'.
    pub prefix: String,
    /// Set for `file://` stores, which need symlink checks and their own listing.
    pub local: Option<LocalRoot>,
    /// Set for stores that take parts at presigned URLs (S3, Azure).
    pub direct: Option<Direct>,
}

pub(crate) fn open(url_str: &str, options: &HashMap<String, String>) -> Result<Opened, ArtifactError> {
    let url = Url::parse(url_str)
        .map_err(|e| ArtifactError::invalid(url_str, format!("not a valid storage URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ArtifactError::invalid(
            url_str,
            "storage URLs take no query or fragment; pass settings as options",
        ));
    }
    match url.scheme() {
        "file" => {
            warn_ignored_options("file", options);
            open_local(&url, url_str)
        }
        "memory" => {
            warn_ignored_options("memory", options);
            Ok(Opened {
                store: Arc::new(InMemory::new()),
                prefix: prefix_of(&url, url_str)?,
                local: None,
                direct: None,
            })
        }
        "s3" | "s3a" => {
            let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
            for (key, value) in options {
                let config_key: AmazonS3ConfigKey = parse_option(key, "s3")?;
                builder = builder.with_config(config_key, value);
            }
            // What the presigned part URLs are signed for (object_store's default).
            let region = builder
                .get_config_value(&AmazonS3ConfigKey::Region)
                .unwrap_or_else(|| "us-east-1".to_string());
            let store = Arc::new(builder.build().map_err(|e| build_error("s3", e))?);
            let mut opened = cloud(store.clone(), prefix_of(&url, url_str)?);
            opened.direct = Some(Direct::S3 { store, region });
            Ok(opened)
        }
        "az" | "azure" => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (key, value) in options {
                let config_key: AzureConfigKey = parse_option(key, "azure")?;
                builder = builder.with_config(config_key, value);
            }
            let store = Arc::new(builder.build().map_err(|e| build_error("azure", e))?);
            let mut opened = cloud(store.clone(), prefix_of(&url, url_str)?);
            opened.direct = Some(Direct::Azure { store });
            Ok(opened)
        }
        "gs" => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (key, value) in options {
                let config_key: GoogleConfigKey = parse_option(key, "gs")?;
                builder = builder.with_config(config_key, value);
            }
            let store = builder.build().map_err(|e| build_error("gs", e))?;
            Ok(cloud(Arc::new(store), prefix_of(&url, url_str)?))
        }
        other => Err(ArtifactError::Unsupported {
            message: format!("storage URL scheme {other:?} (expected file, memory, s3, az, azure or gs)"),
        }),
    }
}

fn cloud(store: Arc<dyn ObjectStore>, prefix: String) -> Opened {
    Opened {
        store,
        prefix,
        local: None,
        direct: None,
    }
}

fn open_local(url: &Url, url_str: &str) -> Result<Opened, ArtifactError> {
    let dir: PathBuf = url
        .to_file_path()
        .map_err(|_| ArtifactError::invalid(url_str, "file:// URLs must name an absolute local directory"))?;
    std::fs::create_dir_all(&dir).map_err(|e| {
        let mut err = ArtifactError::from_io(e, &dir.display().to_string());
        if let ArtifactError::Backend { message, .. } = &mut err {
            *message = format!("cannot create storage directory {message}");
        }
        err
    })?;
    // Canonical once, so that the symlink checks compare against the real directory.
    let root =
        std::fs::canonicalize(&dir).map_err(|e| ArtifactError::from_io(e, &dir.display().to_string()))?;
    if !root.is_dir() {
        return Err(ArtifactError::invalid(url_str, "not a directory"));
    }
    let store = LocalFileSystem::new_with_prefix(&root)
        .map_err(|e| build_error("file", e))?
        // Remove directories emptied by deletes, so listings don't show empty "dirs" that
        // an object store would not have.
        .with_automatic_cleanup(true);
    let store = Arc::new(store);
    Ok(Opened {
        store: store.clone(),
        prefix: String::new(),
        local: Some(LocalRoot::new(root, store)),
        direct: None,
    })
}

/// The URL's path, decoded and validated like a key: the prefix every key is stored under.
fn prefix_of(url: &Url, url_str: &str) -> Result<String, ArtifactError> {
    let decoded = percent_encoding::percent_decode_str(url.path())
        .decode_utf8()
        .map_err(|_| ArtifactError::invalid(url_str, "the URL path is not valid UTF-8"))?;
    let trimmed = decoded.trim_start_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    ArtifactKey::parse(trimmed)
        .map(|k| k.as_str().to_string())
        .map_err(|e| match e {
            ArtifactError::InvalidPath { reason, .. } => {
                ArtifactError::invalid(url_str, format!("bad prefix in storage URL: {reason}"))
            }
            other => other,
        })
}

fn parse_option<K: std::str::FromStr>(key: &str, scheme: &str) -> Result<K, ArtifactError> {
    key.parse().map_err(|_| ArtifactError::Unsupported {
        message: format!("unknown option {key:?} for {scheme}:// storage"),
    })
}

fn warn_ignored_options(scheme: &str, options: &HashMap<String, String>) {
    if !options.is_empty() {
        let mut keys: Vec<&String> = options.keys().collect();
        keys.sort();
        tracing::warn!(?keys, "{scheme}:// storage takes no options; ignoring them");
    }
}

fn build_error(scheme: &str, e: object_store::Error) -> ArtifactError {
    ArtifactError::Backend {
        message: format!("cannot open {scheme} storage: {e}"),
        source: Some(e),
    }
}
