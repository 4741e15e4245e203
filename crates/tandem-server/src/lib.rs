//! One Tandem region as a library: [`ServerConfig`] says where metadata and
//! artifacts live, [`serve`] runs the API on a listener until a shutdown
//! future resolves. Tests bind port 0 and drive it; the `tandem server`
//! command only parses arguments and calls this.
//!
//! Architecture invariant: no request handling here, only wiring.

pub mod bootstrap;
mod config;
mod ledger;

pub use config::{ConfigError, ServerConfig};

use std::future::Future;
use std::sync::Arc;

use tandem_api::{AppState, Limits};
use tandem_artifacts::ArtifactStore;
use tandem_deployment::Deployment;
use tandem_replication::Region;
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
/// The Tandem API's OpenAPI document as this server serves it: the
/// workspace, file, journal and backup operations, and with a deployment
/// the replication and failover ones.
pub fn openapi(deployment: bool) -> utoipa::openapi::OpenApi {
    let mut parts = vec![tandem_api::openapi_part(), tandem_backup::http::openapi_part()];
    if deployment {
        parts.push(tandem_replication::protocol::openapi_part());
    }
    tandem_api::openapi::finish(parts)
}

pub async fn open_state(config: &ServerConfig) -> Result<AppState, ServerError> {
    if let Some(data) = &config.data {
        std::fs::create_dir_all(data)?;
    }
    let mut options = StoreOptions::new(config.metadata_url()?, config.region.clone());
    options.sqlite_synchronous = config.sqlite_synchronous.clone();
    // A secondary starts empty: its workspaces, the default one included,
    // arrive with the primary's journal.
    if let Some(path) = &config.deployment {
        let deployment = Deployment::from_file(path).map_err(|error| ConfigError::Invalid {
            name: "deployment".to_string(),
            message: error.to_string(),
        })?;
        options.bootstrap_default_workspace = deployment.bootstrap_primary().name == config.region;
    }
    let store: Arc<dyn tandem_store::MetadataStore> = Arc::new(SqlStore::open(options).await?);
    let mut artifacts = ArtifactStore::open(&config.artifacts_url()?, &config.artifacts_options)?
        .with_abandoned_uploads_after(std::time::Duration::from_millis(config.abandoned_upload_after_ms));
    if store.backend() == tandem_store::Backend::Postgres {
        // Other replicas of the region may complete what this one created.
        artifacts = artifacts.with_upload_ledger(Arc::new(ledger::StoreLedger(store.clone())));
    }
    let artifacts = if config.direct_uploads {
        artifacts
    } else {
        artifacts.without_direct_uploads()
    };
    tracing::info!(
        region = %config.region,
        metadata = %redact(&config.metadata_url()?),
        artifacts = %artifacts.url(),
        "opened region state"
    );
    Ok(AppState::standalone(
        store,
        artifacts,
        Limits {
            max_json_body: config.max_json_body,
            // 0 turns the limit off.
            max_artifact_size: config.max_artifact_size.filter(|size| *size > 0),
            model_version_source: config.model_version_source_pattern()?,
        },
    ))
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight. With a deployment file, the region also replicates:
/// it follows the primary's journal if it is a secondary, measures RPO and
/// serves the replication protocol if it is the primary.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let address = listener.local_addr()?;
    check_exposure(&config, address)?;
    let tls = config.tls()?;
    let token_file = config
        .admin_token_file
        .clone()
        .or_else(|| config.data.as_ref().map(|data| data.join("admin.token")));
    if config.auth && token_file.is_none() {
        return Err(ConfigError::Invalid {
            name: "admin_token_file".to_string(),
            message: "authentication needs a place for the bootstrap admin's token: give --data or --admin-token-file"
                .to_string(),
        }
        .into());
    }
    if !config.auth {
        tracing::warn!(
            %address,
            "serving WITHOUT authentication: anyone who can reach {address} may read and change everything (start with --auth to require credentials)"
        );
    }
    let mut state = open_state(&config).await?;
    let mut replication_secret = None;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let wait_for_stop = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let mut background = None;
    // The deployment's `[backup]`, unless this region's config names its own.
    let mut schedule = config
        .backup_url
        .clone()
        .map(|url| tandem_backup::schedule::Schedule {
            url,
            archive_interval: std::time::Duration::from_millis(config.archive_interval_ms),
            backups_every: None,
            full_every: tandem_deployment::DEFAULT_FULL_EVERY,
            retention: None,
            accepting_writes: Arc::new(|| true),
        });
    let (store, artifacts) = (state.store.clone(), state.artifacts.clone());
    // What the console serves with: the API's state, policy installed.
    let console_state;
    let app = match &config.deployment {
        // With a deployment, the replication routes serve /metrics (their
        // gauges are read at each scrape); without one, the process's own.
        None => {
            console_state = state.clone();
            tandem_api::router(state).route("/metrics", axum::routing::get(tandem_telemetry::metrics_handler))
        }
        Some(path) => {
            let mut deployment = Deployment::from_file(path).map_err(|error| ConfigError::Invalid {
                name: "deployment".to_string(),
                message: error.to_string(),
            })?;
            if let Some(ca_file) = &config.ca_file {
                deployment
                    .trust_ca_file(ca_file)
                    .map_err(|error| ConfigError::Invalid {
                        name: "ca_file".to_string(),
                        message: error.to_string(),
                    })?;
            }
            if let Some(endpoints) = &config.witness_endpoints {
                deployment
                    .reach_witness_at(endpoints.split(',').map(str::trim).map(str::to_string).collect())
                    .map_err(|error| ConfigError::Invalid {
                        name: "TANDEM_WITNESS_ENDPOINTS".to_string(),
                        message: error.to_string(),
                    })?;
            }
            let witness = deployment.open_witness().map_err(|error| ConfigError::Invalid {
                name: "deployment witness".to_string(),
                message: error.to_string(),
            })?;
            let region = Region::new(
                &config.region,
                deployment,
                state.store.clone(),
                state.artifacts.clone(),
                std::time::Duration::from_millis(config.sync_timeout_ms),
                witness,
            )
            .map_err(|message| ConfigError::Invalid {
                name: "deployment".to_string(),
                message,
            })?;
            region.set_url(config.advertise_url.clone().unwrap_or_else(|| {
                let scheme = if tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{address}")
            }));
            let policy = region.policy();
            state.store.set_policy(policy.clone());
            state.policy = policy;
            state.readiness = region.clone();
            tracing::info!(region = %region.name, role = ?region.role(), "joined deployment {}", region.deployment.name);
            let accepting = region.clone();
            let accepting_writes: Arc<dyn Fn() -> bool + Send + Sync> =
                Arc::new(move || accepting.accepting_writes());
            match (&mut schedule, &region.deployment.backup) {
                (Some(own), _) => own.accepting_writes = accepting_writes,
                (None, Some(policy)) => {
                    schedule = Some(tandem_backup::schedule::Schedule {
                        url: policy.url.clone(),
                        archive_interval: policy.archive_interval,
                        backups_every: policy.schedule,
                        full_every: policy.full_every,
                        retention: (policy.keep.is_some() || policy.ttl.is_some()).then_some(
                            tandem_backup::prune::Retention {
                                keep: policy.keep,
                                ttl: policy.ttl,
                            },
                        ),
                        accepting_writes,
                    })
                }
                (None, None) => {}
            }
            let diagnostics = tandem_replication::diagnostics::routes(
                region.clone(),
                diagnostic_sources(&config, &region, schedule.as_ref(), tls.as_ref())?,
            );
            // Hot-cold classes come back from the archive at failover.
            let hot_cold: std::collections::BTreeSet<_> = tandem_core::journal::AssetClass::ALL
                .into_iter()
                .filter(|class| {
                    region.deployment.policy(*class).level == tandem_deployment::ContinuityLevel::HotCold
                })
                .collect();
            if let (Some(schedule), false) = (&schedule, hot_cold.is_empty()) {
                region.on_promotion(Arc::new(tandem_backup::hot_cold::HotColdRestore {
                    store: region.store.clone(),
                    storage: region.artifacts.clone(),
                    url: schedule.url.clone(),
                    classes: hot_cold,
                    region: Arc::downgrade(&region),
                }));
            }
            replication_secret = region.secret().map(str::to_string);
            if config.auth {
                if replication_secret.is_none() {
                    return Err(ConfigError::Invalid {
                        name: "deployment".to_string(),
                        message: "authentication needs the deployment's replication secret \
                                  (`replication_secret` in the deployment file): regions authenticate to each other with it"
                            .to_string(),
                    }
                    .into());
                }
                // Whenever this region first accepts writes (it leads from
                // the start, or is promoted later) and the deployment still
                // has no principal, it creates the admin.
                let leader = region.clone();
                let token_file = token_file.clone().expect("checked above");
                let mut stopping = stopped.clone();
                tokio::spawn(async move {
                    loop {
                        // One replica of the region creates it: the one
                        // holding the region's duties.
                        if leader.accepting_writes() && leader.holds_duties() {
                            match bootstrap::bootstrap_admin(leader.store.as_ref(), &token_file).await {
                                Ok(_) => return,
                                Err(error) => {
                                    tracing::warn!(%error, "bootstrap of the admin failed; trying again")
                                }
                            }
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                            _ = stopping.wait_for(|stop| *stop) => return,
                        }
                    }
                });
            }
            // Hooks are registered before the region runs: none misses a promotion.
            background = Some(tokio::spawn(region.clone().run(wait_for_stop(stopped.clone()))));
            if let Some(interval) = region.deployment.verify_interval {
                // Ends with the runtime; verifying is read-only, so a
                // verification cut short by shutdown leaves nothing behind.
                tokio::spawn(tandem_replication::verify::run_periodically(
                    region.clone(),
                    interval,
                ));
            }
            console_state = state.clone();
            tandem_api::router(state)
                .merge(tandem_replication::protocol::routes(region))
                .merge(diagnostics)
        }
    };
    // Requests may name the configured repositories only: the region's
    // allow-list and the repository it archives to.
    let repositories = Arc::new(tandem_backup::policy::RepositoryPolicy::new(
        config
            .backup_repositories
            .iter()
            .cloned()
            .chain(schedule.as_ref().map(|schedule| schedule.url.clone())),
    ));
    let backups = tandem_backup::http::BackupService {
        store: store.clone(),
        storage: artifacts.clone(),
        region: config.region.clone(),
        policy: repositories.clone(),
    };
    // Restores write through the store, whose policy (installed above with
    // a deployment) accepts them only where local writes are accepted.
    let app = app.merge(tandem_backup::restore::http::routes(
        store.clone(),
        artifacts.clone(),
        repositories,
    ));
    let app = app.merge(tandem_backup::http::routes(backups.clone()));
    // The web console, over the same store and behind the same gate.
    let app = app.merge(tandem_console::routes(config.deployment.is_some()).with_state(console_state));
    // MLflow's own UI, when the operator gave a build of it.
    let mlflow_ui = match &config.mlflow_ui {
        Some(dir) => {
            Some(
                tandem_http::web_app::checked_build(dir).map_err(|message| ConfigError::Invalid {
                    name: "mlflow_ui".to_string(),
                    message,
                })?,
            )
        }
        None => None,
    };
    let app = match &mlflow_ui {
        Some(dir) => app.merge(tandem_http::web_app::routes(MLFLOW_UI_PREFIX, dir.clone())),
        None => app,
    };
    let app = app.route(
        tandem_api::openapi::OPENAPI_PATH,
        tandem_api::openapi::handler(openapi(config.deployment.is_some())),
    );
    let authenticator = config
        .auth
        .then(|| Arc::new(tandem_auth::Authenticator::new(store.clone(), replication_secret)));
    if config.auth && config.deployment.is_none() {
        bootstrap::bootstrap_admin(store.as_ref(), token_file.as_deref().expect("checked above"))
            .await
            .map_err(|message| ConfigError::Invalid {
                name: "auth".to_string(),
                message,
            })?;
    }
    // Every route, whoever added it, behind the gate.
    let app = tandem_api::access::gate(app, tandem_api::access::Gate { authenticator });
    let app = tandem_telemetry::instrument(app, "region");
    // The UI calls its API relative to its page: `/mlflow/graphql` is
    // `/graphql`, decided before routing (and so before the gate).
    let app = match mlflow_ui {
        Some(_) => tandem_http::web_app::under_prefix(MLFLOW_UI_PREFIX, app),
        None => app,
    };
    if let Some(schedule) = schedule {
        tokio::spawn(tandem_backup::schedule::run(
            backups,
            schedule,
            wait_for_stop(stopped.clone()),
        ));
    }
    // Started after the region's policy is installed in the store: the
    // automatic purge only runs where local writes are accepted.
    let retention = tokio::spawn(tandem_api::tasks::run(
        store,
        artifacts,
        tandem_api::tasks::RetentionIntervals {
            purge: std::time::Duration::from_millis(config.purge_interval_ms),
            gc: std::time::Duration::from_millis(config.gc_interval_ms),
        },
        wait_for_stop(stopped.clone()),
    ));
    let limits = config.serve_limits().fitted_to_fd_limit();
    tracing::info!(
        %address,
        auth = config.auth,
        max_connections = limits.max_connections,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        body_timeout_ms = limits.body_timeout.as_millis() as u64,
        "tandem server listening"
    );
    tandem_http::serve_with(listener, app, limits, tls, "region", wait_for_stop(stopped)).await?;
    if let Some(task) = background {
        let _ = task.await;
    }
    let _ = retention.await;
    tracing::info!("tandem server stopped");
    Ok(())
}

/// Where MLflow's own UI is served, when configured.
pub const MLFLOW_UI_PREFIX: &str = "/mlflow";

/// What a region's diagnostics need from its configuration: its local
/// volumes, its database's name, its backup repository, its TLS (its
/// certificate's expiry, or plain HTTP).
fn diagnostic_sources(
    config: &ServerConfig,
    region: &Region,
    schedule: Option<&tandem_backup::schedule::Schedule>,
    tls: Option<&tandem_http::tls::Tls>,
) -> Result<tandem_replication::diagnostics::DiagnosticSources, ServerError> {
    let backups = schedule.map(|schedule| {
        Arc::new(tandem_backup::status::RepositoryStatus {
            store: region.store.clone(),
            region: region.name.clone(),
            url: schedule.url.clone(),
            schedule: schedule.backups_every,
            archive_interval: schedule.archive_interval,
        }) as Arc<dyn tandem_replication::diagnostics::BackupReporter>
    });
    Ok(tandem_replication::diagnostics::DiagnosticSources {
        volumes: config.local_volumes(),
        metadata_target: redact(&config.metadata_url()?),
        backups,
        tls: match tls {
            None => tandem_core::diagnostics::TlsReport {
                configured: false,
                certificate_not_after_ms: None,
                detail: "serves plain HTTP (no --tls-cert/--tls-key)".to_string(),
            },
            Some(tls) => tandem_core::diagnostics::TlsReport {
                configured: true,
                certificate_not_after_ms: tls.not_after.as_deref().and_then(tandem_core::model::parse_utc),
                detail: format!(
                    "serves HTTPS with {} (valid until {})",
                    tls.cert_path,
                    tls.not_after.as_deref().unwrap_or("an unreadable date")
                ),
            },
        },
    })
}

/// Refuses to serve a non-loopback address without authentication, unless
/// told `--insecure-no-auth`: anyone who reaches it could read and change
/// everything.
pub fn check_exposure(config: &ServerConfig, address: std::net::SocketAddr) -> Result<(), ConfigError> {
    if config.auth || config.insecure_no_auth || address.ip().is_loopback() {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        name: "auth".to_string(),
        message: format!(
            "refusing to serve {address} without authentication: anyone who reaches it could read and change \
             everything. Start with --auth (TANDEM_AUTH=1), listen on a loopback address, or pass \
             --insecure-no-auth to accept the risk"
        ),
    })
}

/// Hides a password in a database URL for logs.
/// A database URL without its password, for logs and messages.
pub fn redact(url: &str) -> String {
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
    fn only_loopback_may_serve_without_authentication() {
        let open = super::ServerConfig::default();
        for loopback in ["127.0.0.1:5000", "127.8.9.10:1", "[::1]:5000"] {
            assert!(
                super::check_exposure(&open, loopback.parse().unwrap()).is_ok(),
                "{loopback}"
            );
        }
        for exposed in ["0.0.0.0:5000", "10.1.2.3:80", "[::]:5000"] {
            let error = super::check_exposure(&open, exposed.parse().unwrap()).unwrap_err();
            assert!(error.to_string().contains("--insecure-no-auth"), "{error}");
            let with_auth = super::ServerConfig {
                auth: true,
                ..super::ServerConfig::default()
            };
            assert!(super::check_exposure(&with_auth, exposed.parse().unwrap()).is_ok());
            let insecure = super::ServerConfig {
                insecure_no_auth: true,
                ..super::ServerConfig::default()
            };
            assert!(super::check_exposure(&insecure, exposed.parse().unwrap()).is_ok());
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}
