//! Several server processes ("replicas") of one region on one PostgreSQL
//! database and one object store (issue 17).
//!
//! Any replica serves reads and writes; the region's duties — following the
//! primary's journal, leadership and the witness lease — run on the one
//! holding the store's duty lock (`MetadataStore::duties`), which passes to
//! another within about a second when it dies. The holder shares what only
//! it knows through the database, every [`SHARE_EVERY`]:
//!
//! - the **write fence** (`MetadataStore::set_write_fence`), which every
//!   replica's writes read under the journal head's row lock: the lease's
//!   deadline while this region is primary, or why writes stopped (handing
//!   over, not the primary). That is the fence that matters: a replica whose
//!   view of the region is a moment old still cannot write past the lease,
//!   and a planned failover's hand-over closes it and waits for every
//!   replica's writes in flight before it reads the head it hands over;
//! - the **runtime document** (role, lease deadline, following, readiness,
//!   the last failover), which the others adopt, so each answers `/ready`,
//!   status and refusals (with the primary's URL) as the holder would.
//!
//! Every replica adds the secondaries' acknowledgements it received to the
//! shared ones and reads them all: a secondary's stream may be served by any
//! replica, and every replica measures the RPO and waits for synchronous
//! writes from the same positions.
//!
//! Requests only the holder can carry out (a planned failover at the
//! primary, a promotion at its target, a verification, whose report the
//! holder publishes) are forwarded to it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tandem_core::journal::AssetClass;
use tandem_store::Acknowledgement;

use crate::{leadership, now_millis, FollowState, Region, Role};

/// How often replicas share through the database.
pub const SHARE_EVERY: Duration = Duration::from_millis(200);
/// Sharing rounds between two heartbeats (one a second).
const HEARTBEAT_EVERY: u64 = 5;
/// The runtime document's format.
const DOCUMENT_FORMAT: u32 = 1;
/// The largest request body forwarded to the holder (failover requests are
/// a few hundred bytes).
const FORWARD_LIMIT: usize = 64 * 1024;

/// What the duty holder publishes for the region's other replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RuntimeDocument {
    pub format: u32,
    /// The publishing replica and where it is reached.
    pub replica: String,
    pub url: Option<String>,
    pub role: Role,
    /// The lease's deadline (ms since the epoch) while primary.
    pub writes_until: Option<i64>,
    pub handing_over: bool,
    pub restoring: Vec<AssetClass>,
    pub witness_answered: bool,
    pub witness_error: Option<String>,
    pub follow: BTreeMap<String, FollowState>,
    pub caught_up_with: Option<String>,
    pub last_failover: Option<leadership::FailoverReport>,
    #[serde(default)]
    pub last_verify: Option<crate::verify::VerifyReport>,
}

/// The holder as this replica last learnt of it.
#[derive(Debug, Clone, Serialize)]
pub struct Holder {
    pub replica: String,
    pub url: Option<String>,
    /// When it last published (ms since the epoch).
    pub published_at: i64,
}

/// Converts a deadline in this process's monotonic clock to wall-clock
/// milliseconds, and back: the region's replicas share a clock source.
fn wall(deadline: Instant) -> i64 {
    let now = Instant::now();
    if deadline >= now {
        now_millis() + (deadline - now).as_millis() as i64
    } else {
        now_millis() - (now - deadline).as_millis() as i64
    }
}

fn monotonic(wall_deadline: i64) -> Instant {
    let now = Instant::now();
    let ahead = wall_deadline - now_millis();
    if ahead >= 0 {
        now + Duration::from_millis(ahead as u64)
    } else {
        now.checked_sub(Duration::from_millis(ahead.unsigned_abs()))
            .unwrap_or(now)
    }
}

impl Region {
    /// Whether other server processes may share this region's database.
    pub fn shared(&self) -> bool {
        self.store.backend() == tandem_store::Backend::Postgres
    }

    /// Whether this process runs the region's duties now.
    pub fn holds_duties(&self) -> bool {
        self.duty.load(Ordering::Acquire)
    }

    /// This process's replica id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Where the region's other replicas reach this one (forwarded
    /// requests): the configured `advertise_url`, else the address it
    /// listens on.
    pub fn set_url(&self, url: String) {
        *self.url.write().expect("url lock poisoned") = Some(url);
    }

    pub(crate) fn url(&self) -> Option<String> {
        self.url.read().expect("url lock poisoned").clone()
    }

    /// The holder of the duties as last published (this replica when it
    /// holds them).
    pub fn holder(&self) -> Option<Holder> {
        if self.holds_duties() {
            return Some(Holder {
                replica: self.replica.clone(),
                url: self.url(),
                published_at: now_millis(),
            });
        }
        self.holder.read().expect("holder lock poisoned").clone()
    }

    /// What the fence should say now, from the holder's own view.
    fn fence(&self) -> (Option<i64>, Option<String>) {
        match self.role() {
            Role::Secondary { primary } => (
                None,
                Some(format!(
                    "region '{}' is not the primary: send writes to the primary region '{primary}' at {}",
                    self.name,
                    self.primary_url()
                )),
            ),
            Role::Primary => match self.lease_error() {
                Some(reason) => (None, Some(reason)),
                None if self.witness.is_none() => (None, None),
                None => {
                    let deadline = *self.write_deadline.lock().expect("deadline lock poisoned");
                    (deadline.map(wall), None)
                }
            },
        }
    }

    /// Whether nobody leads and this region led last (with a witness):
    /// leadership is being resumed here, or waits for the witness.
    fn settling(&self) -> bool {
        self.witness.is_some() && matches!(self.role(), Role::Secondary { primary } if primary == self.name)
    }

    /// Writes the fence as the holder sees it now, unless it is what was
    /// written last. Under the fence lock, so that a hand-over's closing of
    /// the fence is never overwritten by a view from before it.
    pub(crate) async fn write_fence(&self) -> Result<(), String> {
        let mut written = self.fence_written.lock().await;
        let fence = self.fence();
        if written.as_ref() == Some(&fence) {
            return Ok(());
        }
        self.store
            .set_write_fence(fence.0, fence.1.as_deref())
            .await
            .map_err(|error| error.to_string())?;
        *written = Some(fence);
        Ok(())
    }

    /// Closes the fence for every replica with `reason` and returns once no
    /// write begun before is still open in any of them.
    pub(crate) async fn close_writes(&self, reason: &str) -> Result<(), String> {
        let mut written = self.fence_written.lock().await;
        self.store
            .set_write_fence(None, Some(reason))
            .await
            .map_err(|error| error.to_string())?;
        *written = Some((None, Some(reason.to_string())));
        Ok(())
    }

    fn document(&self) -> RuntimeDocument {
        let deadline = *self.write_deadline.lock().expect("deadline lock poisoned");
        RuntimeDocument {
            format: DOCUMENT_FORMAT,
            replica: self.replica.clone(),
            url: self.url(),
            role: self.role(),
            writes_until: deadline.map(wall),
            handing_over: self.handing_over.load(Ordering::Acquire),
            restoring: self.restoring(),
            witness_answered: self.witness_answered.load(Ordering::Acquire),
            witness_error: self
                .witness_error
                .lock()
                .expect("witness error lock poisoned")
                .clone(),
            follow: self.follow_states(),
            caught_up_with: self
                .caught_up_with
                .lock()
                .expect("caught-up lock poisoned")
                .clone(),
            last_failover: self.last_failover.lock().expect("failover lock poisoned").clone(),
            last_verify: self.last_verify.lock().expect("verify lock poisoned").clone(),
        }
    }

    /// Takes the holder's view of the region as this replica's own.
    pub(crate) fn adopt(&self, document: RuntimeDocument, published_at: i64) {
        self.set_role(document.role);
        *self.write_deadline.lock().expect("deadline lock poisoned") = document.writes_until.map(monotonic);
        self.handing_over.store(document.handing_over, Ordering::Release);
        *self.restoring.write().expect("restoring lock poisoned") = document.restoring.into_iter().collect();
        self.witness_answered
            .store(document.witness_answered, Ordering::Release);
        *self.witness_error.lock().expect("witness error lock poisoned") = document.witness_error;
        *self.follow.lock().expect("follow lock poisoned") = document.follow;
        *self.caught_up_with.lock().expect("caught-up lock poisoned") = document.caught_up_with;
        *self.last_failover.lock().expect("failover lock poisoned") = document.last_failover;
        *self.last_verify.lock().expect("verify lock poisoned") = document.last_verify;
        *self.holder.write().expect("holder lock poisoned") = Some(Holder {
            replica: document.replica,
            url: document.url,
            published_at,
        });
    }

    /// One round of sharing: acknowledgements both ways, then the fence and
    /// the document out (holder) or in (the others).
    pub(crate) async fn share(&self) -> Result<(), String> {
        let peers = self.peers();
        // Only what the database does not hold yet: acknowledgements this
        // replica received since the last round.
        let known = self.acks_shared.lock().expect("acks lock poisoned").clone();
        let ours: Vec<Acknowledgement<'_>> = peers
            .iter()
            .filter_map(|(region, peer)| {
                let at = peer.acknowledged_at?;
                (known.get(region) != Some(&(peer.applied, at))).then_some(Acknowledgement {
                    region,
                    applied: peer.applied,
                    acknowledged_at: at,
                })
            })
            .collect();
        let shared = self
            .store
            .share_acknowledgements(&ours)
            .await
            .map_err(|error| error.to_string())?;
        *self.acks_shared.lock().expect("acks lock poisoned") = shared
            .iter()
            .map(|ack| (ack.region.clone(), (ack.applied, ack.acknowledged_at)))
            .collect();
        let mut advanced = false;
        {
            let mut peers = self.peers.lock().expect("peers lock poisoned");
            for ack in shared {
                if let Some(peer) = peers.get_mut(&ack.region) {
                    if ack.applied > peer.applied {
                        peer.applied = ack.applied;
                        advanced = true;
                    }
                    if peer.acknowledged_at.is_none_or(|at| ack.acknowledged_at > at) {
                        peer.acknowledged_at = Some(ack.acknowledged_at);
                    }
                }
            }
        }
        if advanced {
            self.acknowledged.send_modify(|count| *count += 1);
        }
        if self.holds_duties() && self.settling() {
            // Nobody leads, and this region led last: a holder that just
            // took the duties over is resuming the region's lease (or
            // cannot). The fence and the document stay as the last holder
            // left them, whose deadline fences writes either way: closing
            // them now would refuse writes for the moment the lease
            // changes hands within the region.
        } else if self.holds_duties() {
            self.write_fence().await?;
            let document = serde_json::to_string(&self.document()).map_err(|error| error.to_string())?;
            self.store
                .publish_runtime(&self.replica, &document)
                .await
                .map_err(|error| error.to_string())?;
        } else if let Some(record) = self.store.runtime().await.map_err(|error| error.to_string())? {
            match serde_json::from_str::<RuntimeDocument>(&record.document) {
                Ok(document) if document.format == DOCUMENT_FORMAT => {
                    // The holder may have changed hands since the read.
                    if !self.holds_duties() {
                        self.adopt(document, record.published_at)
                    }
                }
                Ok(document) => {
                    return Err(format!(
                        "the duty holder's runtime document has format {}, this build reads {DOCUMENT_FORMAT}: upgrade this replica",
                        document.format
                    ))
                }
                Err(error) => return Err(format!("unreadable runtime document: {error}")),
            }
        }
        Ok(())
    }

    /// Says this replica is alive, and learns which others are.
    async fn heartbeat(&self) -> Result<(), String> {
        let seen = self
            .store
            .heartbeat_replica(&self.replica, self.url().as_deref(), self.holds_duties())
            .await
            .map_err(|error| error.to_string())?;
        *self.replicas_seen.lock().expect("replicas lock poisoned") = seen;
        Ok(())
    }

    /// The region's replicas alive in the last seconds (several only on a
    /// shared database).
    pub fn replicas_seen(&self) -> Vec<tandem_store::ReplicaSeen> {
        self.replicas_seen.lock().expect("replicas lock poisoned").clone()
    }

    /// Shares every [`SHARE_EVERY`] until the task is dropped; says this
    /// replica is alive every [`HEARTBEAT_EVERY`] rounds.
    pub(crate) async fn keep_sharing(&self) {
        let mut said: Option<String> = None;
        for round in 0u64.. {
            let shared = match self.share().await {
                Ok(()) if round % HEARTBEAT_EVERY == 0 => self.heartbeat().await,
                other => other,
            };
            match shared {
                Ok(()) => said = None,
                Err(error) => {
                    if said.as_deref() != Some(error.as_str()) {
                        tracing::warn!(region = %self.name, %error, "cannot share the region's runtime with its other replicas");
                        said = Some(error);
                    }
                }
            }
            tokio::time::sleep(SHARE_EVERY).await;
        }
    }
}

/// The requests only the duty holder carries out.
fn for_the_holder(request: &Request) -> bool {
    request.method() == axum::http::Method::POST
        && matches!(
            request.uri().path(),
            "/api/tandem/v1/failover" | "/api/tandem/v1/replication/promote" | "/api/tandem/v1/verify"
        )
}

/// Middleware: sends what only the holder can do to the holder.
pub(crate) async fn forward_to_holder(
    State(region): State<Arc<Region>>,
    request: Request,
    next: Next,
) -> Response {
    if !for_the_holder(&request) || !region.shared() || region.holds_duties() {
        return next.run(request).await;
    }
    let Some(url) = region.holder().and_then(|holder| holder.url) else {
        return crate::protocol::unavailable(format!(
            "region '{}': this replica does not hold the region's duties and does not know which one does yet; retry in a moment",
            region.name
        ));
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, FORWARD_LIMIT).await {
        Ok(body) => body,
        Err(error) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {error}")).into_response()
        }
    };
    let target = format!(
        "{}{}",
        url.trim_end_matches('/'),
        parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    tracing::info!(region = %region.name, %target, "forwarding to the replica holding the region's duties");
    let mut forwarded = region.http.post(&target).body(body);
    for name in [
        axum::http::header::AUTHORIZATION,
        axum::http::header::CONTENT_TYPE,
    ] {
        if let Some(value) = parts.headers.get(&name) {
            forwarded = forwarded.header(name.as_str(), value.as_bytes());
        }
    }
    // A failover waits for the target to catch up (up to 30 s).
    match forwarded.timeout(Duration::from_secs(120)).send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            if let Some(content_type) = content_type {
                if let Ok(value) = axum::http::HeaderValue::from_bytes(content_type.as_bytes()) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::CONTENT_TYPE, value);
                }
            }
            response
        }
        Err(error) => crate::protocol::unavailable(format!(
            "region '{}': the replica holding the region's duties ({url}) did not answer: {error}",
            region.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_cross_processes_as_wall_clock_milliseconds() {
        let ahead = Instant::now() + Duration::from_secs(5);
        let back = monotonic(wall(ahead));
        let difference = if back > ahead { back - ahead } else { ahead - back };
        assert!(difference < Duration::from_millis(5), "{difference:?}");
        let past = monotonic(now_millis() - 1_000);
        assert!(past <= Instant::now());
    }

    #[test]
    fn the_runtime_document_reads_back_what_was_written() {
        let document = RuntimeDocument {
            format: DOCUMENT_FORMAT,
            replica: "123-ab".into(),
            url: Some("http://127.0.0.1:5001".into()),
            role: Role::Secondary {
                primary: "east".into(),
            },
            writes_until: Some(42),
            handing_over: true,
            restoring: vec![AssetClass::Tracking],
            witness_answered: true,
            witness_error: None,
            follow: BTreeMap::new(),
            caught_up_with: Some("east".into()),
            last_failover: None,
            last_verify: None,
        };
        let text = serde_json::to_string(&document).unwrap();
        let read: RuntimeDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(read.role, document.role);
        assert_eq!(read.writes_until, Some(42));
        assert!(read.handing_over);
        assert_eq!(read.restoring, vec![AssetClass::Tracking]);
        assert_eq!(read.caught_up_with.as_deref(), Some("east"));
    }
}
