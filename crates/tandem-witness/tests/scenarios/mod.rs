//! The conformance scenarios: what every [`Witness`] must do, written once against the
//! trait. Each takes a fresh [`Harness`]; several clients of it stand for several regions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_witness::{LeaderInfo, Leadership, Witness, WitnessError, MIN_CONFIGURED_TTL};
use tokio::sync::Barrier;

use crate::support::Harness;

/// The TTL the scenarios ask for: the shortest a configuration may use, so expiry
/// scenarios stay short.
const TTL: Duration = MIN_CONFIGURED_TTL;

/// Upper bound on how late an expiry may be observed: etcd checks leases every 500 ms and
/// revokes through consensus, so allow well beyond that on a loaded two-core machine.
const EXPIRY_SLACK: Duration = Duration::from_secs(5);

async fn must_campaign(witness: &dyn Witness, region: &str) -> Leadership {
    let leadership = witness
        .campaign(region, TTL)
        .await
        .unwrap_or_else(|error| panic!("{region} campaign failed: {error}"))
        .unwrap_or_else(|| panic!("{region} should have won the campaign"));
    assert_eq!(leadership.region, region);
    assert!(
        leadership.ttl >= TTL,
        "granted ttl {:?} below the {TTL:?} asked",
        leadership.ttl
    );
    assert!(leadership.epoch > 0);
    leadership
}

async fn must_lead(witness: &dyn Witness, expected: &Leadership) -> LeaderInfo {
    let info = witness
        .leader()
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{} should lead at epoch {}", expected.region, expected.epoch));
    assert_eq!(
        (info.region.as_str(), info.epoch),
        (expected.region.as_str(), expected.epoch),
        "current leader"
    );
    info
}

fn assert_lease_lost(result: Result<(), WitnessError>, what: &str) {
    match result {
        Err(WitnessError::LeaseLost) => {}
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

/// Polls `leader()` until the witness answers (after a restart); bounded.
async fn wait_until_answers(witness: &dyn Witness) -> Option<LeaderInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match witness.leader().await {
            Ok(leader) => return leader,
            Err(error) => {
                assert!(error.outcome_unknown(), "leader() after restart: {error}");
                assert!(
                    Instant::now() < deadline,
                    "witness did not answer within 30 s: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Polls `leader()` until nobody leads; returns how long that took. Bounded.
async fn wait_until_no_leader(witness: &dyn Witness, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if witness.leader().await.unwrap().is_none() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the lease did not expire within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn single_leader_at_a_time(harness: &mut Harness) {
    let (east, west, central) = (harness.client(), harness.client(), harness.client());
    assert_eq!(east.leader().await.unwrap(), None, "a new witness has no leader");
    let leadership = must_campaign(east.as_ref(), "eastus").await;
    assert_eq!(west.campaign("westus", TTL).await.unwrap(), None);
    assert_eq!(central.campaign("centralus", TTL).await.unwrap(), None);
    // Not even the holder gets a second leadership while the first lives.
    assert_eq!(east.campaign("eastus", TTL).await.unwrap(), None);
    for observer in [&east, &west, &central] {
        let info = must_lead(observer.as_ref(), &leadership).await;
        let remaining = info.ttl_remaining.expect("the witness reports the remaining ttl");
        assert!(remaining <= leadership.ttl, "remaining {remaining:?} above ttl");
    }
}

pub async fn epochs_strictly_increase_across_leaders(harness: &mut Harness) {
    let clients: Vec<Arc<dyn Witness>> = (0..3).map(|_| harness.client()).collect();
    let regions = ["eastus", "westus", "centralus"];
    let mut epochs = Vec::new();
    for round in 0..6 {
        let index = round % regions.len();
        let witness = clients[index].as_ref();
        let leadership = if round == 3 {
            // A forced takeover in the middle of the sequence counts as a new leadership too.
            witness.seize(regions[index], TTL, None).await.unwrap()
        } else {
            must_campaign(witness, regions[index]).await
        };
        must_lead(clients[(index + 1) % regions.len()].as_ref(), &leadership).await;
        epochs.push(leadership.epoch);
        witness.resign(&leadership).await.unwrap();
    }
    assert!(
        epochs.windows(2).all(|pair| pair[0] < pair[1]),
        "epochs must strictly increase: {epochs:?}"
    );
}

pub async fn renew_keeps_leadership(harness: &mut Harness) {
    let (east, west) = (harness.client(), harness.client());
    let leadership = must_campaign(east.as_ref(), "eastus").await;
    let start = Instant::now();
    // Renew for well over two TTLs: without renewal the lease would have expired twice.
    while start.elapsed() < TTL * 2 + Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        east.renew(&leadership).await.unwrap();
        must_lead(west.as_ref(), &leadership).await;
        assert_eq!(west.campaign("westus", TTL).await.unwrap(), None);
    }
}

pub async fn unrenewed_lease_expires_and_renew_then_fails(harness: &mut Harness) {
    let (east, west) = (harness.client(), harness.client());
    let granted_at = Instant::now();
    let east_leadership = must_campaign(east.as_ref(), "eastus").await;
    // Half the lease elapses without a renewal (the behaviour under test):
    // the lease must still hold then, and lapse only after the TTL.
    tokio::time::sleep(TTL / 2).await;
    must_lead(west.as_ref(), &east_leadership).await;
    assert_eq!(west.campaign("westus", TTL).await.unwrap(), None);

    wait_until_no_leader(west.as_ref(), TTL + EXPIRY_SLACK).await;
    let expired_after = granted_at.elapsed();
    assert!(
        expired_after >= TTL - Duration::from_millis(200),
        "the lease expired after {expired_after:?}, before its ttl of {TTL:?}"
    );
    // Nobody else leads yet, and still the old holder cannot renew: its lease is gone.
    assert_lease_lost(east.renew(&east_leadership).await, "renew after expiry");

    let west_leadership = must_campaign(west.as_ref(), "westus").await;
    assert!(west_leadership.epoch > east_leadership.epoch);
    assert_lease_lost(
        east.renew(&east_leadership).await,
        "renew after another took over",
    );
    west.renew(&west_leadership).await.unwrap();
    must_lead(east.as_ref(), &west_leadership).await;
}

pub async fn resign_frees_leadership(harness: &mut Harness) {
    let (east, west) = (harness.client(), harness.client());
    let east_leadership = must_campaign(east.as_ref(), "eastus").await;
    east.resign(&east_leadership).await.unwrap();
    assert_eq!(west.leader().await.unwrap(), None, "resign frees the key at once");
    let west_leadership = must_campaign(west.as_ref(), "westus").await;
    assert!(west_leadership.epoch > east_leadership.epoch);
    assert_lease_lost(east.renew(&east_leadership).await, "renew after resigning");
    // Resigning again is harmless and does not disturb the new leader.
    east.resign(&east_leadership).await.unwrap();
    must_lead(east.as_ref(), &west_leadership).await;
    west.renew(&west_leadership).await.unwrap();
}

pub async fn seize_takes_over_with_a_higher_epoch(harness: &mut Harness) {
    let (east, west, central) = (harness.client(), harness.client(), harness.client());
    let east_leadership = must_campaign(east.as_ref(), "eastus").await;

    let west_leadership = west
        .seize("westus", TTL, Some(east_leadership.epoch))
        .await
        .unwrap();
    assert_eq!(west_leadership.region, "westus");
    assert!(west_leadership.epoch > east_leadership.epoch);
    must_lead(east.as_ref(), &west_leadership).await;
    assert_lease_lost(east.renew(&east_leadership).await, "the deposed leader's renew");
    west.renew(&west_leadership).await.unwrap();
    // The deposed leader's resignation must not remove the new leader.
    east.resign(&east_leadership).await.unwrap();
    must_lead(central.as_ref(), &west_leadership).await;

    // A takeover that expects an epoch that is no longer current is refused.
    match central.seize("centralus", TTL, Some(east_leadership.epoch)).await {
        Err(WitnessError::Conflict(_)) => {}
        other => panic!("seize with a stale expected epoch: expected Conflict, got {other:?}"),
    }
    must_lead(central.as_ref(), &west_leadership).await;

    // Without an expected epoch it always succeeds.
    let central_leadership = central.seize("centralus", TTL, None).await.unwrap();
    assert!(central_leadership.epoch > west_leadership.epoch);
    assert_lease_lost(west.renew(&west_leadership).await, "renew after the second seize");

    // Expecting an epoch whose leader is gone while nobody leads behaves like a campaign.
    central.resign(&central_leadership).await.unwrap();
    let east_again = east
        .seize("eastus", TTL, Some(central_leadership.epoch))
        .await
        .unwrap();
    assert!(east_again.epoch > central_leadership.epoch);
    must_lead(west.as_ref(), &east_again).await;
}

pub async fn concurrent_campaigns_have_one_winner(harness: &mut Harness) {
    const CONTENDERS: usize = 8;
    let mut previous_epoch = 0;
    for round in 0..3 {
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|index| {
                let witness = harness.client();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    witness.campaign(&format!("region-{index}"), TTL).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(leadership) = task.await.unwrap().unwrap() {
                winners.push(leadership);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner, got {winners:?}"
        );
        let winner = &winners[0];
        assert!(winner.epoch > previous_epoch);
        previous_epoch = winner.epoch;
        let observer = harness.client();
        must_lead(observer.as_ref(), winner).await;
        observer.resign(winner).await.unwrap();
    }
}

pub async fn epochs_stay_monotonic_across_a_restart(harness: &mut Harness) {
    let (east, west, central) = (harness.client(), harness.client(), harness.client());
    let east_leadership = must_campaign(east.as_ref(), "eastus").await;

    harness.restart().await;
    // The leadership survives the restart (with a fresh TTL), so no second leader appears.
    let after_restart = wait_until_answers(west.as_ref()).await;
    let info = after_restart.expect("the leader survives a restart of the witness");
    assert_eq!(
        (info.region.as_str(), info.epoch),
        ("eastus", east_leadership.epoch)
    );
    assert_eq!(west.campaign("westus", TTL).await.unwrap(), None);
    east.renew(&east_leadership).await.unwrap();
    east.resign(&east_leadership).await.unwrap();
    let west_leadership = must_campaign(west.as_ref(), "westus").await;
    assert!(west_leadership.epoch > east_leadership.epoch);
    west.resign(&west_leadership).await.unwrap();

    // With nobody leading at the restart, the next grant still continues the sequence.
    harness.restart().await;
    assert_eq!(wait_until_answers(central.as_ref()).await, None);
    let central_leadership = central.seize("centralus", TTL, None).await.unwrap();
    assert!(
        central_leadership.epoch > west_leadership.epoch,
        "epoch {} after restart is not above {}",
        central_leadership.epoch,
        west_leadership.epoch
    );
    assert_lease_lost(
        west.renew(&west_leadership).await,
        "renew of a resigned leadership after restart",
    );
}

pub async fn invalid_requests_are_refused(harness: &mut Harness) {
    let witness = harness.client();
    for (region, ttl) in [
        ("", TTL),
        ("east\nus", TTL),
        ("eastus", Duration::ZERO),
        ("eastus", Duration::from_millis(2500)),
        ("eastus", Duration::from_secs(24 * 3600)),
    ] {
        match witness.campaign(region, ttl).await {
            Err(WitnessError::Invalid(_)) => {}
            other => panic!("campaign({region:?}, {ttl:?}): expected Invalid, got {other:?}"),
        }
        match witness.seize(region, ttl, None).await {
            Err(WitnessError::Invalid(_)) => {}
            other => panic!("seize({region:?}, {ttl:?}): expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(witness.leader().await.unwrap(), None, "nothing was granted");
}

pub async fn an_unreachable_witness_is_unavailable(harness: &mut Harness) {
    let witness = harness.unreachable_client();
    let fake = Leadership {
        region: "eastus".to_string(),
        epoch: 1,
        lease_id: 1,
        ttl: TTL,
        acquired_at: std::time::SystemTime::now(),
    };
    let start = Instant::now();
    let outcomes = [
        witness.campaign("eastus", TTL).await.map(|_| ()),
        witness.renew(&fake).await,
        witness.resign(&fake).await,
        witness.leader().await.map(|_| ()),
        witness.seize("eastus", TTL, None).await.map(|_| ()),
    ];
    for outcome in outcomes {
        match outcome {
            Err(error @ WitnessError::Unavailable(_)) => assert!(error.outcome_unknown()),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "requests are bounded by their timeout"
    );
}
