//! `tandem gateway`: the deployment's global endpoint. Parses arguments and
//! calls `tandem_gateway::serve`.

use std::path::PathBuf;

use anyhow::Context;
use tandem_deployment::{parse_duration, Deployment};
use tandem_gateway::GatewayConfig;

#[derive(clap::Args)]
pub struct GatewayArgs {
    /// Deployment file: the regions to front and their continuity levels.
    #[arg(long, env = "TANDEM_DEPLOYMENT")]
    pub deployment: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "TANDEM_GATEWAY_LISTEN", default_value = "127.0.0.1:5080")]
    pub listen: String,
    /// How often to ask every region for its status (e.g. 500ms, 1s).
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub poll_interval: std::time::Duration,
    /// How long a request may wait, retrying, for a region to serve it.
    #[arg(long, env = "TANDEM_GATEWAY_FAILOVER_WAIT", default_value = "15s", value_parser = duration)]
    pub failover_wait: std::time::Duration,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "TANDEM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, env = "TANDEM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A PEM CA to trust for the regions' https:// URLs [default: the
    /// deployment file's ca_file].
    #[arg(long, env = "TANDEM_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Serve MLflow's own web UI from this build directory at /mlflow/ (the
    /// mlflow/server/js/build directory of an installed mlflow package),
    /// its calls sent on to the regions like every other request.
    #[arg(long, env = "TANDEM_MLFLOW_UI", value_name = "DIR")]
    pub mlflow_ui: Option<PathBuf>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], env = "TANDEM_LOG_FORMAT")]
    pub log_format: String,
}

fn duration(value: &str) -> Result<std::time::Duration, String> {
    parse_duration(value).map_err(|error| error.to_string())
}

pub async fn run(
    args: GatewayArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::init_logging(&args.log_format);
    crate::raise_fd_limit();
    let mut deployment = Deployment::from_file(&args.deployment)?;
    if let Some(path) = &args.ca_file {
        deployment.trust_ca_file(path)?;
    }
    let mut config = GatewayConfig::new(deployment);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(tandem_http::tls::Tls::from_pem_files(cert, key).map_err(anyhow::Error::msg)?);
    }
    config.poll_interval = args.poll_interval;
    config.failover_wait = args.failover_wait;
    if let Some(dir) = args.mlflow_ui {
        config.mlflow_ui = Some(tandem_http::web_app::checked_build(&dir).map_err(anyhow::Error::msg)?);
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tandem_gateway::serve(config, listener, shutdown).await?;
    Ok(())
}
