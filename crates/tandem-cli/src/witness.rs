//! `tandem witness`: the embedded witness, for a deployment on one host.
//! Parses arguments and calls `tandem_witness::serve_embedded`; the
//! deployment file names it with `[witness] kind = "embedded"`,
//! `url = "http://ADDR"`.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct WitnessArgs {
    /// Address to listen on; the deployment file's `[witness] url` points here.
    #[arg(long, env = "TANDEM_WITNESS_LISTEN", default_value = "127.0.0.1:5070")]
    pub listen: String,
    /// Directory of the witness's state (its revision, hence the epochs,
    /// survives restarts from here).
    #[arg(long, env = "TANDEM_WITNESS_DATA")]
    pub data: PathBuf,
    /// The deployment file: the witness then answers only callers
    /// presenting its replication secret (the regions).
    #[arg(long, env = "TANDEM_DEPLOYMENT")]
    pub deployment: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "TANDEM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, env = "TANDEM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], env = "TANDEM_LOG_FORMAT")]
    pub log_format: String,
}

pub async fn run(
    args: WitnessArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::init_logging(&args.log_format);
    crate::raise_fd_limit();
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create the witness data directory {}", args.data.display()))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let secret = match &args.deployment {
        Some(path) => tandem_deployment::Deployment::from_file(path)
            .with_context(|| format!("cannot read the deployment file {}", path.display()))?
            .replication_secret
            .clone(),
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tandem_http::tls::Tls::from_pem_files(cert, key).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    if secret.is_none() {
        tracing::warn!(
            "the witness answers anyone who reaches it (no --deployment with a replication secret): \
             whoever can call it can stop the deployment's writes"
        );
    }
    tandem_witness::EmbeddedWitnessServer::open(args.data)
        .await
        .context("embedded witness failed")?
        .with_secret(secret)
        .with_tls(tls)
        .serve(listener, shutdown)
        .await
        .context("embedded witness failed")?;
    Ok(())
}
