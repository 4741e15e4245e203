//! Artifacts on their way: streamed from the source into a target's
//! artifact proxy, hashed as they go, then checked against what the target
//! holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tandem_core::model::ArtifactEntry;

use crate::endpoint::Endpoint;
use crate::source::{ByteStream, Source};
use crate::TransferError;

/// `base` (an artifact proxy's URL) with `path`'s segments appended, each
/// percent-encoded.
pub(crate) fn proxy_url(base: &str, path: &str) -> Result<String, TransferError> {
    let mut url = url::Url::parse(base).map_err(|error| TransferError::Usage(error.to_string()))?;
    url.path_segments_mut()
        .map_err(|_| TransferError::Usage("the target URL cannot take a path".to_string()))?
        .extend(path.split('/').filter(|segment| !segment.is_empty()));
    Ok(url.to_string())
}

/// Streams one artifact from the source into a PUT at `target_url`,
/// hashing it on the way; its (size, SHA-256), which must be the size the
/// source listed.
pub(crate) async fn send_artifact(
    source: &dyn Source,
    owner: Owner<'_>,
    path: &str,
    size: i64,
    target: &Endpoint,
    target_url: &str,
) -> Result<(i64, String), TransferError> {
    let stream: ByteStream = match owner {
        Owner::Run(run_id) => source.open_run_artifact(run_id, path).await?,
        Owner::Model(model_id) => source.open_model_artifact(model_id, path).await?,
    };
    let hasher = Arc::new(Mutex::new((Sha256::new(), 0i64)));
    // The source's own failure (a damaged bundle blob, a broken download),
    // kept to be named rather than the upload's.
    let broken: Arc<Mutex<Option<TransferError>>> = Arc::default();
    let tap = hasher.clone();
    let seen = broken.clone();
    let stream = stream
        .map_ok(move |chunk| {
            let mut state = tap.lock().expect("hasher lock");
            state.0.update(&chunk);
            state.1 += chunk.len() as i64;
            chunk
        })
        .map_err(move |error| {
            let message = error.to_string();
            *seen.lock().expect("error lock") = Some(error);
            std::io::Error::other(message)
        });
    let sent = target
        .send_once(
            target
                .http()
                .put(target_url)
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
    if let Some(error) = broken.lock().expect("error lock").take() {
        return Err(error);
    }
    sent?;
    let (digest, length) = {
        let mut state = hasher.lock().expect("hasher lock");
        let taken = std::mem::take(&mut state.0);
        (hex::encode(taken.finalize()), state.1)
    };
    if length != size {
        return Err(TransferError::Integrity(format!(
            "artifact {path}: the source listed {size} bytes but sent {length} (did it change during the copy?)"
        )));
    }
    Ok((length, digest))
}

/// Each uploaded file must be held by the target with the bytes read from
/// the source.
pub(super) fn verify(
    uploaded: &[(String, i64, String)],
    held: &[ArtifactEntry],
) -> Result<(), TransferError> {
    let held: HashMap<&str, (i64, Option<&str>)> = held
        .iter()
        .map(|entry| (entry.path.as_str(), (entry.size, Some(entry.sha256.as_str()))))
        .collect();
    check_held(
        uploaded
            .iter()
            .map(|(path, size, sha256)| (path.as_str(), (*size, Some(sha256.as_str())))),
        &held,
    )
}

/// Each file sent (path, size, SHA-256) must be held by the target as it
/// was sent: same size, and same SHA-256 where both sides know one (an
/// `mlflow server` records none).
pub(crate) fn check_held<'a>(
    sent: impl IntoIterator<Item = (&'a str, (i64, Option<&'a str>))>,
    held: &HashMap<&str, (i64, Option<&str>)>,
) -> Result<(), TransferError> {
    let with = |digest: Option<&str>| {
        digest
            .map(|digest| format!(" with SHA-256 {digest}"))
            .unwrap_or_default()
    };
    for (path, (size, digest)) in sent {
        match held.get(path) {
            Some((length, held_digest))
                if *length == size
                    && (digest.is_none() || held_digest.is_none() || *held_digest == digest) => {}
            Some((length, held_digest)) => {
                return Err(TransferError::Integrity(format!(
                    "artifact {path}: the target holds {length} bytes{}, the source sent {size} bytes{}",
                    with(*held_digest),
                    with(digest)
                )))
            }
            None => {
                return Err(TransferError::Integrity(format!(
                    "artifact {path} was uploaded but the target does not list it"
                )))
            }
        }
    }
    Ok(())
}

/// Whose artifact a copy reads.
#[derive(Clone, Copy)]
pub(crate) enum Owner<'a> {
    Run(&'a str),
    Model(&'a str),
}

/// `mlflow-artifacts:/a/b` → `a/b`; None for a root outside the proxy.
pub(crate) fn proxied_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map(|(_, path)| path).unwrap_or(""),
        None => rest,
    };
    let path = path.trim_matches('/');
    (!path.is_empty()).then(|| path.to_string())
}
