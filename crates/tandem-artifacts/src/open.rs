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

use crate::direct::{Direct, GcsSigner};
use crate::local::LocalRoot;
use crate::{ArtifactError, ArtifactKey};

/// What `ArtifactStore::open` needs to build itself.
pub(crate) struct Opened {
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket/container ("" for none); never starts or ends with '/'.
    pub prefix: String,
    /// Set for `file://` stores, which need symlink checks and their own listing.
    pub local: Option<LocalRoot>,
    /// Set for stores that take parts at presigned URLs (S3, Azure, GCS with a service account key).
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
            // Unsigned requests (a public bucket) have no key to sign with.
            let skip_signature = builder
                .get_config_value(&GoogleConfigKey::SkipSignature)
                .is_some_and(|value| value == "true");
            let signer = if skip_signature {
                None
            } else {
                gcs_signer(&builder)?
            };
            let store = Arc::new(builder.build().map_err(|e| build_error("gs", e))?);
            let mut opened = cloud(store.clone(), prefix_of(&url, url_str)?);
            match (signer, url.host_str()) {
                (Some((signer, endpoint)), Some(bucket)) => {
                    opened.direct = Some(Direct::Gcs {
                        store,
                        signer: Arc::new(signer),
                        endpoint,
                        bucket: bucket.to_string(),
                    });
                }
                _ => tracing::info!(
                    "gs:// storage without a service account key: part URLs cannot be signed, \
                     so clients upload through the proxy"
                ),
            }
            Ok(opened)
        }
        other => Err(ArtifactError::Unsupported {
            message: format!("storage URL scheme {other:?} (expected file, memory, s3, az, azure or gs)"),
        }),
    }
}

/// Google's XML API endpoint, unless the service account file names another.
const GCS_ENDPOINT: &str = "https://storage.googleapis.com";

/// The signer of GCS part URLs and the endpoint they go to, from the
/// service account whose key object_store would use: the configured
/// service account file or key, else application default credentials of
/// type `service_account` (the configured file, else gcloud's well-known
/// one). None when no private key is at hand.
fn gcs_signer(builder: &GoogleCloudStorageBuilder) -> Result<Option<(GcsSigner, String)>, ArtifactError> {
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|e| ArtifactError::Unsupported {
            message: format!("cannot read the GCS credentials file {path}: {e}"),
        })
    };
    let account = if let Some(path) = builder.get_config_value(&GoogleConfigKey::ServiceAccount) {
        Some(read(&path)?)
    } else if let Some(key) = builder.get_config_value(&GoogleConfigKey::ServiceAccountKey) {
        Some(key)
    } else if let Some(path) = builder.get_config_value(&GoogleConfigKey::ApplicationCredentials) {
        Some(read(&path)?)
    } else {
        std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".config/gcloud/application_default_credentials.json"))
            .filter(|path| path.is_file())
            .map(|path| read(&path.display().to_string()))
            .transpose()?
    };
    let Some(account) = account else {
        return Ok(None);
    };
    let invalid = |message: String| ArtifactError::Unsupported {
        message: format!("GCS service account: {message}"),
    };
    let json: serde_json::Value =
        serde_json::from_str(&account).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let field = |name: &str| json.get(name).and_then(|value| value.as_str());
    // Application default credentials may be a user's login (no key).
    if field("type").is_some_and(|kind| kind != "service_account") {
        return Ok(None);
    }
    let (Some(email), Some(pem)) = (
        field("client_email"),
        field("private_key").filter(|pem| !pem.is_empty()),
    ) else {
        return Ok(None);
    };
    let signer = GcsSigner::from_pem(email, pem).map_err(invalid)?;
    let endpoint = field("gcs_base_url").unwrap_or(GCS_ENDPOINT).to_string();
    Ok(Some((signer, endpoint)))
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
