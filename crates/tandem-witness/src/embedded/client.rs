//! [`HttpWitness`]: the [`Witness`] that talks to an [`super::EmbeddedWitnessServer`].

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{
    CampaignRequest, CampaignResponse, ErrorBody, LeaderResponse, LeaseRequest, SeizeRequest, WireLeadership,
    CAMPAIGN_PATH, LEADER_PATH, RENEW_PATH, RESIGN_PATH, SEIZE_PATH,
};
use crate::error::{Result, WitnessError};
use crate::leadership::{check_region, LeaderInfo, Leadership};
use crate::timings::check_ttl;
use crate::Witness;

/// A client of the embedded witness at one base URL (`http://127.0.0.1:7000`).
pub struct HttpWitness {
    http: reqwest::Client,
    base_url: String,
}

impl HttpWitness {
    /// Prepares a client whose every request, connection included, ends after
    /// `request_timeout` (the lease timings' `retry_timeout`).
    pub fn new(base_url: &str, request_timeout: Duration) -> Result<Self> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(WitnessError::Invalid(format!(
                "witness url {base_url:?} is not an http(s) url"
            )));
        }
        if request_timeout.is_zero() {
            return Err(WitnessError::Invalid(
                "the witness request timeout is zero".to_string(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .build()
            .map_err(|error| WitnessError::Invalid(format!("cannot build http client: {error}")))?;
        Ok(HttpWitness {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// Presents `secret` (the deployment's replication secret) with every
    /// call, as a witness started with one requires, and trusts the PEM CA
    /// `ca_pem` for an `https://` witness.
    pub fn with_secret(
        mut self,
        secret: Option<&str>,
        ca_pem: Option<&[u8]>,
        request_timeout: Duration,
    ) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(secret) = secret.filter(|secret| !secret.is_empty()) {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| {
                    WitnessError::Invalid("the replication secret cannot be sent in a header".to_string())
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .default_headers(headers);
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| WitnessError::Invalid(format!("the CA file is not valid PEM: {error}")))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        self.http = builder
            .build()
            .map_err(|error| WitnessError::Invalid(format!("cannot build http client: {error}")))?;
        Ok(self)
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn call<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = request.send().await.map_err(|error| {
            WitnessError::Unavailable(format!("embedded witness at {}: {error}", self.base_url))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|error| {
            WitnessError::Unavailable(format!("embedded witness at {}: {error}", self.base_url))
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|error| {
                WitnessError::Unavailable(format!("unreadable answer from the embedded witness: {error}"))
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(body.into()),
            // A refusal without our error body: axum refused the request itself (our
            // request is malformed, a client bug) or something else answered.
            Err(_) if status.is_client_error() => Err(WitnessError::Invalid(format!(
                "embedded witness refused the request ({status}): {}",
                String::from_utf8_lossy(&bytes)
            ))),
            Err(_) => Err(WitnessError::Unavailable(format!(
                "embedded witness answered {status}"
            ))),
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(self.http.post(format!("{}{path}", self.base_url)).json(body))
            .await
    }
}

#[async_trait::async_trait]
impl Witness for HttpWitness {
    async fn campaign(&self, region: &str, ttl: Duration) -> Result<Option<Leadership>> {
        check_region(region)?;
        check_ttl(ttl)?;
        let request = CampaignRequest {
            region: region.to_string(),
            ttl_seconds: ttl.as_secs(),
        };
        let response: CampaignResponse = self.post(CAMPAIGN_PATH, &request).await?;
        Ok(response.leadership.map(Leadership::from))
    }

    async fn renew(&self, lease: &Leadership) -> Result<()> {
        let request = LeaseRequest {
            epoch: lease.epoch,
            lease_id: lease.lease_id,
        };
        let _: serde_json::Value = self.post(RENEW_PATH, &request).await?;
        Ok(())
    }

    async fn resign(&self, lease: &Leadership) -> Result<()> {
        let request = LeaseRequest {
            epoch: lease.epoch,
            lease_id: lease.lease_id,
        };
        let _: serde_json::Value = self.post(RESIGN_PATH, &request).await?;
        Ok(())
    }

    async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let response: LeaderResponse = self
            .call(self.http.get(format!("{}{LEADER_PATH}", self.base_url)))
            .await?;
        Ok(response.leader.map(LeaderInfo::from))
    }

    async fn seize(&self, region: &str, ttl: Duration, expected_epoch: Option<u64>) -> Result<Leadership> {
        check_region(region)?;
        check_ttl(ttl)?;
        let request = SeizeRequest {
            region: region.to_string(),
            ttl_seconds: ttl.as_secs(),
            expected_epoch,
        };
        let response: WireLeadership = self.post(SEIZE_PATH, &request).await?;
        Ok(response.into())
    }
}
