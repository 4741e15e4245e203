//! One conformance suite, run against both witnesses: a real etcd process and the embedded
//! witness server, each started fresh by the test. The scenarios live in `scenarios` and
//! know only the `Witness` trait; the `conformance!` macro instantiates each of them once
//! per implementation. A few implementation-specific checks follow.

mod scenarios;
mod support;

use std::time::Duration;

use support::{Harness, DEPLOYMENT};
use tandem_witness::{
    serve_embedded, EtcdWitness, EtcdWitnessConfig, Witness, WitnessError, MIN_CONFIGURED_TTL,
    STATE_FILE_NAME,
};

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(mut harness) = Harness::etcd().await {
                        scenarios::$scenario(&mut harness).await;
                    }
                }
            )*
        }
        mod embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let mut harness = Harness::embedded().await;
                    scenarios::$scenario(&mut harness).await;
                }
            )*
        }
    };
}

conformance!(
    single_leader_at_a_time,
    epochs_strictly_increase_across_leaders,
    renew_keeps_leadership,
    unrenewed_lease_expires_and_renew_then_fails,
    resign_frees_leadership,
    seize_takes_over_with_a_higher_epoch,
    concurrent_campaigns_have_one_winner,
    epochs_stay_monotonic_across_a_restart,
    invalid_requests_are_refused,
    an_unreachable_witness_is_unavailable,
);

/// An etcd client tries the next endpoint when one refuses connections, and deployments
/// sharing a cluster have independent leader keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_endpoint_fallback_and_separate_deployments() {
    let Some(harness) = Harness::etcd().await else {
        return;
    };
    let live = harness.client();
    let leadership = live
        .campaign("eastus", MIN_CONFIGURED_TTL)
        .await
        .unwrap()
        .unwrap();

    // The harness's client URL is the only live one; put a dead endpoint before it.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let live_url = harness.etcd_url().expect("an etcd harness has a client url");
    let with_fallback =
        EtcdWitness::new(EtcdWitnessConfig::new(vec![dead, live_url.clone()], DEPLOYMENT)).unwrap();
    assert_eq!(with_fallback.key(), "/tandem/conformance/leader");
    let info = with_fallback
        .leader()
        .await
        .unwrap()
        .expect("read through the second endpoint");
    assert_eq!((info.region.as_str(), info.epoch), ("eastus", leadership.epoch));

    let other_deployment = EtcdWitness::new(EtcdWitnessConfig::new(vec![live_url], "other")).unwrap();
    assert_eq!(other_deployment.leader().await.unwrap(), None);
    let other = other_deployment
        .campaign("westus", MIN_CONFIGURED_TTL)
        .await
        .unwrap()
        .expect("another deployment's key is free");
    assert!(
        other.epoch > leadership.epoch,
        "one cluster, one revision sequence"
    );
    live.renew(&leadership).await.unwrap();
}

/// The embedded witness writes its revision to its state file before answering, and
/// refuses to start on a damaged one rather than start over from revision 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_state_file_is_written_and_a_damaged_one_refused() {
    let harness = Harness::embedded().await;
    let witness = harness.client();
    let leadership = witness
        .campaign("eastus", MIN_CONFIGURED_TTL)
        .await
        .unwrap()
        .unwrap();
    let data_dir = harness.embedded_data_dir().unwrap().to_path_buf();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join(STATE_FILE_NAME)).unwrap()).unwrap();
    assert_eq!(state["revision"].as_u64(), Some(leadership.epoch));
    assert_eq!(state["holder"]["region"].as_str(), Some("eastus"));

    let damaged = tempfile::tempdir().unwrap();
    std::fs::write(
        damaged.path().join(STATE_FILE_NAME),
        b"{\"format_version\": 1, \"rev",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        serve_embedded(listener, damaged.path().to_path_buf(), std::future::pending()),
    )
    .await
    .expect("refuses at once");
    assert!(matches!(outcome, Err(WitnessError::Invalid(_))), "{outcome:?}");
}
