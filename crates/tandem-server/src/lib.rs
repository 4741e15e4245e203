//! One Tandem region as a library: [`ServerConfig`] says where metadata and
//! artifacts live, [`serve`] runs the API on a listener until a shutdown
//! future resolves. Tests bind port 0 and drive it; the `tandem server`
//! command only parses arguments and calls this.
//!
//! Architecture invariant: no request handling here, only wiring.

mod config;

pub use config::{ConfigError, ServerConfig};

use std::future::Future;
use std::sync::Arc;

use tandem_api::{AppState, Limits};
use tandem_artifacts::ArtifactStore;
use tandem_store::{SqlStore, StoreOptions};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the metadata store: {0}")]
    Store(#[from] tandem_store::StoreError),
    #[error("cannot open artifact storage: {0}")]
    Artifacts(#[from] tandem_artifacts::ArtifactError),
    #[error("server i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store and storage a configuration names.
pub async fn open_state(config: &ServerConfig) -> Result<AppState, ServerError> {
    if let Some(data) = &config.data {
        std::fs::create_dir_all(data)?;
    }
    let mut options = StoreOptions::new(config.metadata_url()?, config.region.clone());
    options.sqlite_synchronous = config.sqlite_synchronous.clone();
    let store = SqlStore::open(options).await?;
    let artifacts = ArtifactStore::open(&config.artifacts_url()?, &config.artifacts_options)?;
    tracing::info!(
        region = %config.region,
        metadata = %redact(&config.metadata_url()?),
        artifacts = %artifacts.url(),
        "opened region state"
    );
    Ok(AppState::standalone(
        Arc::new(store),
        artifacts,
        Limits {
            max_json_body: config.max_json_body,
            max_artifact_size: config.max_artifact_size,
        },
    ))
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = open_state(&config).await?;
    let app = tandem_api::router(state);
    tracing::info!(address = %listener.local_addr()?, "tandem server listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("tandem server stopped");
    Ok(())
}

/// Hides a password in a database URL for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}
