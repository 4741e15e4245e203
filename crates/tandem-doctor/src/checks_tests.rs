//! Unit tests of every check: pass, warn and fail (and skip) cases over
//! hand-built inputs.

use super::*;
use crate::inputs::*;
use tandem_core::diagnostics::*;

const NOW: i64 = 1_800_000_000_000;

fn status(role: &str) -> RegionStatus {
    let primary = role == "primary";
    RegionStatus {
        deployment: "local".to_string(),
        role: role.to_string(),
        accepting_writes: primary,
        ready: true,
        readiness: vec![ReadinessCheck {
            name: "store".to_string(),
            ok: true,
            detail: "answers".to_string(),
        }],
        failover: FailoverSettings::default(),
        regions: if primary {
            vec![
                RegionEntry {
                    name: "eastus".to_string(),
                    this_region: true,
                    ..RegionEntry::default()
                },
                RegionEntry {
                    name: "westus".to_string(),
                    streaming: Some(true),
                    lag_records: Some(0),
                    lag_seconds: Some(0.0),
                    ..RegionEntry::default()
                },
            ]
        } else {
            Vec::new()
        },
        classes: vec![
            ClassStatus {
                class: "tracking".to_string(),
                level: "hot-warm".to_string(),
                max_rpo_seconds: Some(5.0),
                rpo_seconds: 0.1,
                refusing_writes: false,
            },
            ClassStatus {
                class: "registry".to_string(),
                level: "hot-warm".to_string(),
                max_rpo_seconds: None,
                rpo_seconds: 0.0,
                refusing_writes: false,
            },
        ],
    }
}

fn diagnostics(name: &str, peer: &str) -> RegionDiagnostics {
    RegionDiagnostics {
        format: DIAGNOSTICS_FORMAT,
        region: name.to_string(),
        deployment: "local".to_string(),
        received_at_ms: NOW,
        answered_at_ms: NOW,
        deployment_digest: "ab".repeat(32),
        deployment_definition: serde_json::json!({"name": "local", "classes": {"tracking": {"max_rpo_ms": 5000}}}),
        witness: Some(WitnessProbe {
            kind: "etcd".to_string(),
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            retry_timeout_ms: 2000,
            round_trip_ms: 1.5,
            error: None,
            leader: Some("eastus".to_string()),
            epoch: Some(7),
        }),
        storage: StorageProbe {
            metadata: WriteProbe {
                target: format!("sqlite:///srv/{name}/metadata.db"),
                duration_ms: 2.0,
                error: None,
            },
            artifacts: WriteProbe {
                target: format!("file:///srv/{name}/artifacts"),
                duration_ms: 1.0,
                error: None,
            },
            volumes: vec![VolumeSpace {
                label: "data".to_string(),
                path: format!("/srv/{name}"),
                total_bytes: 100 << 30,
                available_bytes: 60 << 30,
                error: None,
            }],
        },
        peers: vec![PeerProbe {
            region: peer.to_string(),
            url: format!("http://{peer}"),
            outcome: PeerOutcome::Accepted,
            round_trip_ms: 1.0,
            detail: None,
        }],
        backups: Some(BackupReport {
            repository: "file:///srv/backups".to_string(),
            error: None,
            schedule_seconds: None,
            archive_interval_seconds: 10.0,
            latest: None,
            workspaces: vec![WorkspaceBackup {
                name: "default".to_string(),
                workspace_id: "w1".to_string(),
                last_backup_id: Some("b1".to_string()),
                last_backup_at: Some(NOW - 3_600_000),
            }],
            journal_head: 40,
            archived_to: Some(40),
        }),
        tls: TlsReport {
            configured: false,
            certificate_not_after_ms: None,
            detail: "plain HTTP".to_string(),
        },
        verification: (name == "eastus").then(|| VerificationSummary {
            verified_by: "eastus".to_string(),
            finished_at_ms: NOW - 60_000,
            ok: true,
            differences: 0,
            unreachable: Vec::new(),
            unverified_workspaces: 0,
        }),
        verify_interval_ms: Some(6 * 3600 * 1000),
    }
}

/// Two healthy regions: eastus primary, westus secondary.
fn healthy() -> Inputs {
    Inputs {
        now_ms: NOW,
        regions: vec![
            RegionInputs {
                name: "eastus".to_string(),
                url: "http://eastus".to_string(),
                status: Ok(status("primary")),
                diagnostics: Ok(diagnostics("eastus", "westus")),
                clock: Some(ClockSample {
                    offset_ms: 3.0,
                    delay_ms: 2.0,
                }),
            },
            RegionInputs {
                name: "westus".to_string(),
                url: "http://westus".to_string(),
                status: Ok(status("secondary")),
                diagnostics: Ok(diagnostics("westus", "eastus")),
                clock: Some(ClockSample {
                    offset_ms: -1.0,
                    delay_ms: 2.0,
                }),
            },
        ],
    }
}

fn west(inputs: &mut Inputs) -> &mut RegionInputs {
    &mut inputs.regions[1]
}

fn west_diagnostics(inputs: &mut Inputs) -> &mut RegionDiagnostics {
    west(inputs).diagnostics.as_mut().unwrap()
}

fn primary_status(inputs: &mut Inputs) -> &mut RegionStatus {
    inputs.regions[0].status.as_mut().unwrap()
}

fn assert_status(check: &Check, status: Status, mentions: &str) {
    assert_eq!(check.status, status, "{check:?}");
    assert!(check.reason.contains(mentions), "{mentions:?} not in {check:?}");
    assert_eq!(check.fix.is_some(), status >= Status::Warn, "{check:?}");
}

#[test]
fn a_healthy_deployment_passes_every_check_but_tls_which_does_not_apply() {
    let checks = run(&healthy());
    assert_eq!(checks.len(), CHECKS.len());
    for check in &checks {
        let expected = if check.name == "tls" {
            Status::Skip
        } else {
            Status::Pass
        };
        assert_eq!(check.status, expected, "{check:?}");
        assert!(check.fix.is_none(), "{check:?}");
    }
}

#[test]
fn regions_fail_when_one_is_unreachable_not_ready_or_alone() {
    assert_status(
        &check_regions(&healthy()),
        Status::Pass,
        "eastus (primary), westus (secondary)",
    );

    let mut inputs = healthy();
    west(&mut inputs).status = Err("connection refused".to_string());
    west(&mut inputs).diagnostics = Err("connection refused".to_string());
    assert_status(
        &check_regions(&inputs),
        Status::Fail,
        "westus (http://westus) is unreachable: connection refused",
    );

    let mut inputs = healthy();
    let westus = west(&mut inputs).status.as_mut().unwrap();
    westus.ready = false;
    westus.readiness.push(ReadinessCheck {
        name: "caught_up".to_string(),
        ok: false,
        detail: "applied 3 of 40".to_string(),
    });
    assert_status(
        &check_regions(&inputs),
        Status::Fail,
        "westus is not ready (caught_up: applied 3 of 40)",
    );

    let mut inputs = healthy();
    west(&mut inputs).diagnostics = Err("404 Not Found".to_string());
    assert_status(
        &check_regions(&inputs),
        Status::Fail,
        "cannot report its diagnostics",
    );

    let mut inputs = healthy();
    inputs.regions.truncate(1);
    assert_status(&check_regions(&inputs), Status::Fail, "nowhere to fail over to");

    let mut inputs = healthy();
    primary_status(&mut inputs).accepting_writes = false;
    assert_status(
        &check_regions(&inputs),
        Status::Fail,
        "no reachable region is a primary",
    );
}

#[test]
fn the_witness_must_be_reachable_from_every_region_and_quickly() {
    assert_status(
        &check_witness(&healthy()),
        Status::Pass,
        "leader eastus (epoch 7)",
    );

    let mut inputs = healthy();
    west_diagnostics(&mut inputs)
        .witness
        .as_mut()
        .unwrap()
        .round_trip_ms = 1500.0;
    assert_status(
        &check_witness(&inputs),
        Status::Warn,
        "westus reaches the witness in 1.5 s",
    );

    let mut inputs = healthy();
    west_diagnostics(&mut inputs).witness.as_mut().unwrap().error = Some("connection refused".to_string());
    assert_status(
        &check_witness(&inputs),
        Status::Fail,
        "westus cannot reach the witness (etcd at http://127.0.0.1:2379)",
    );

    let mut inputs = healthy();
    for region in &mut inputs.regions {
        region.diagnostics.as_mut().unwrap().witness = None;
    }
    assert_status(&check_witness(&inputs), Status::Fail, "no [witness]");

    let mut inputs = healthy();
    west(&mut inputs).diagnostics = Err("down".to_string());
    assert_status(
        &check_witness(&inputs),
        Status::Skip,
        "not known for westus: no report",
    );

    let mut inputs = healthy();
    for region in &mut inputs.regions {
        region.diagnostics = Err("down".to_string());
    }
    assert_eq!(check_witness(&inputs).status, Status::Skip);
}

#[test]
fn clock_skew_warns_past_half_a_second_and_fails_past_five_beyond_the_error() {
    assert_status(
        &check_clock_skew(&healthy()),
        Status::Pass,
        "eastus is 4 ms ahead of westus (± 2 ms)",
    );

    let mut inputs = healthy();
    west(&mut inputs).clock.as_mut().unwrap().offset_ms = -900.0;
    assert_status(
        &check_clock_skew(&inputs),
        Status::Warn,
        "eastus is 903 ms ahead of westus",
    );

    let mut inputs = healthy();
    west(&mut inputs).clock.as_mut().unwrap().offset_ms = 9000.0;
    assert_status(
        &check_clock_skew(&inputs),
        Status::Fail,
        "westus is 9.0 s ahead of eastus",
    );

    // A skew the measurement cannot tell from its own error only warns.
    let mut inputs = healthy();
    let clock = west(&mut inputs).clock.as_mut().unwrap();
    clock.offset_ms = 5500.0;
    clock.delay_ms = 2000.0;
    assert_eq!(check_clock_skew(&inputs).status, Status::Warn);

    let mut inputs = healthy();
    west(&mut inputs).clock = None;
    assert_eq!(check_clock_skew(&inputs).status, Status::Skip);
}

#[test]
fn lag_and_rpo_stay_within_max_rpo_and_the_failover_limit() {
    assert_status(
        &check_replication_lag(&healthy()),
        Status::Pass,
        "tracking RPO 100 ms (max 5.0 s); registry RPO 0 ms; westus 0 records behind (limit 1000), 0 ms old",
    );

    let mut inputs = healthy();
    primary_status(&mut inputs).classes[0].rpo_seconds = 3.0;
    assert_status(
        &check_replication_lag(&inputs),
        Status::Warn,
        "tracking RPO is 3.0 s, over half its max_rpo 5.0 s",
    );

    let mut inputs = healthy();
    let tracking = &mut primary_status(&mut inputs).classes[0];
    tracking.rpo_seconds = 6.0;
    tracking.refusing_writes = true;
    assert_status(
        &check_replication_lag(&inputs),
        Status::Fail,
        "past its max_rpo 5.0 s: writes of the class are refused",
    );

    let mut inputs = healthy();
    primary_status(&mut inputs).regions[1].lag_records = Some(5000);
    assert_status(
        &check_replication_lag(&inputs),
        Status::Fail,
        "would not take over automatically",
    );
    primary_status(&mut inputs).failover.mode = "manual".to_string();
    assert_status(&check_replication_lag(&inputs), Status::Warn, "westus lacks 5000");

    let mut inputs = healthy();
    primary_status(&mut inputs).regions[1].streaming = Some(false);
    assert_status(
        &check_replication_lag(&inputs),
        Status::Warn,
        "no journal stream open",
    );

    let mut inputs = healthy();
    inputs.regions[0].status = Err("down".to_string());
    assert_status(
        &check_replication_lag(&inputs),
        Status::Fail,
        "no primary answered",
    );
}

#[test]
fn storage_must_take_writes_and_have_room() {
    assert_status(
        &check_storage(&healthy()),
        Status::Pass,
        "least room: eastus data 60.0 GiB (60%)",
    );

    let mut inputs = healthy();
    west_diagnostics(&mut inputs).storage.metadata.error = Some("database or disk is full".to_string());
    assert_status(
        &check_storage(&inputs),
        Status::Fail,
        "westus's metadata database (sqlite:///srv/westus/metadata.db) refuses a write",
    );

    let mut inputs = healthy();
    west_diagnostics(&mut inputs).storage.artifacts.error = Some("write: permission denied".to_string());
    assert_status(&check_storage(&inputs), Status::Fail, "westus's artifact storage");

    let mut inputs = healthy();
    west_diagnostics(&mut inputs).storage.volumes[0].available_bytes = 5 << 30;
    assert_status(
        &check_storage(&inputs),
        Status::Warn,
        "westus data (/srv/westus) has 5.0 GiB free (5%)",
    );

    let mut inputs = healthy();
    west_diagnostics(&mut inputs).storage.volumes[0].available_bytes = 100 << 20;
    assert_status(&check_storage(&inputs), Status::Fail, "has 100 MiB free");

    let mut inputs = healthy();
    west_diagnostics(&mut inputs).storage.volumes[0].error = Some("No such file or directory".to_string());
    assert_status(&check_storage(&inputs), Status::Warn, "cannot be measured");
}

#[test]
fn backups_must_be_recent_and_exist_at_all_for_hot_cold_classes() {
    assert_status(
        &check_backups(&healthy()),
        Status::Pass,
        "repository file:///srv/backups (as eastus sees it)",
    );

    let mut inputs = healthy();
    for region in &mut inputs.regions {
        let report = region.diagnostics.as_mut().unwrap().backups.as_mut().unwrap();
        report.workspaces[0].last_backup_at = Some(NOW - 3 * 24 * 3_600_000);
    }
    assert_status(
        &check_backups(&inputs),
        Status::Warn,
        "workspace default's newest backup is 72.0 h old (limit 24.0 h)",
    );

    // With a schedule, the limit is two of its periods.
    let mut inputs = healthy();
    let report = inputs.regions[0]
        .diagnostics
        .as_mut()
        .unwrap()
        .backups
        .as_mut()
        .unwrap();
    report.schedule_seconds = Some(600.0);
    assert_status(&check_backups(&inputs), Status::Warn, "(limit 20 min)");

    let mut inputs = healthy();
    inputs.regions[0]
        .diagnostics
        .as_mut()
        .unwrap()
        .backups
        .as_mut()
        .unwrap()
        .workspaces[0]
        .last_backup_at = None;
    assert_status(
        &check_backups(&inputs),
        Status::Warn,
        "workspace default has never been backed up",
    );

    let mut inputs = healthy();
    for region in &mut inputs.regions {
        region.diagnostics.as_mut().unwrap().backups = None;
    }
    assert_status(
        &check_backups(&inputs),
        Status::Warn,
        "no region has a backup repository",
    );
    primary_status(&mut inputs).classes[1].level = "hot-cold".to_string();
    west(&mut inputs).status.as_mut().unwrap().classes[1].level = "hot-cold".to_string();
    assert_status(
        &check_backups(&inputs),
        Status::Fail,
        "registry (hot-cold) is restored from the journal archive",
    );

    let mut inputs = healthy();
    west_diagnostics(&mut inputs).backups.as_mut().unwrap().error = Some("access denied".to_string());
    assert_status(
        &check_backups(&inputs),
        Status::Warn,
        "westus cannot read its backup repository",
    );
}

#[test]
fn deployment_files_must_be_identical_and_the_difference_is_named() {
    assert_status(
        &check_deployment_files(&healthy()),
        Status::Pass,
        "identical in eastus, westus (digest abababababab)",
    );

    let mut inputs = healthy();
    let westus = west_diagnostics(&mut inputs);
    westus.deployment_digest = "cd".repeat(32);
    westus.deployment_definition =
        serde_json::json!({"name": "local", "classes": {"tracking": {"max_rpo_ms": 10000}}});
    assert_status(
        &check_deployment_files(&inputs),
        Status::Fail,
        "westus's deployment differs from eastus's: classes.tracking.max_rpo_ms 5000 vs 10000",
    );

    let mut inputs = healthy();
    west(&mut inputs).diagnostics = Err("down".to_string());
    assert_status(
        &check_deployment_files(&inputs),
        Status::Skip,
        "identical in eastus (digest abababababab); not known for westus: no report",
    );
}

#[test]
fn every_region_must_accept_every_others_secret() {
    assert_status(
        &check_replication_secret(&healthy()),
        Status::Pass,
        "accepted eastus → westus, westus → eastus",
    );

    let mut inputs = healthy();
    let peer = &mut inputs.regions[0].diagnostics.as_mut().unwrap().peers[0];
    peer.outcome = PeerOutcome::Refused;
    peer.detail =
        Some("401 Unauthorized: replication requires the deployment's replication secret".to_string());
    assert_status(
        &check_replication_secret(&inputs),
        Status::Fail,
        "westus refuses eastus's replication secret (401",
    );

    let mut inputs = healthy();
    let peer = &mut inputs.regions[0].diagnostics.as_mut().unwrap().peers[0];
    peer.outcome = PeerOutcome::Unreachable;
    peer.detail = Some("connection refused".to_string());
    assert_status(
        &check_replication_secret(&inputs),
        Status::Fail,
        "eastus cannot reach westus at http://westus",
    );

    let mut inputs = healthy();
    inputs.regions[0].diagnostics.as_mut().unwrap().peers[0].outcome = PeerOutcome::Failed;
    assert_status(
        &check_replication_secret(&inputs),
        Status::Warn,
        "eastus could not ask westus",
    );
}

#[test]
fn tls_does_not_apply_to_plain_http_and_expiry_is_checked_where_it_does() {
    let check = check_tls(&healthy());
    assert_eq!(check.status, Status::Skip);
    assert!(
        check
            .reason
            .starts_with("not applicable to eastus, westus: plain HTTP"),
        "{check:?}"
    );

    let mut inputs = healthy();
    let tls = &mut west_diagnostics(&mut inputs).tls;
    tls.configured = true;
    tls.certificate_not_after_ms = Some(NOW + 90 * 24 * 3_600_000);
    assert_status(
        &check_tls(&inputs),
        Status::Pass,
        "westus's certificate is valid for 2160.0 h",
    );
    west_diagnostics(&mut inputs).tls.certificate_not_after_ms = Some(NOW + 3 * 24 * 3_600_000);
    assert_status(
        &check_tls(&inputs),
        Status::Warn,
        "westus's certificate expires in 72.0 h",
    );
    west_diagnostics(&mut inputs).tls.certificate_not_after_ms = Some(NOW - 60_000);
    assert_status(
        &check_tls(&inputs),
        Status::Fail,
        "westus's certificate expired 60.0 s ago",
    );
}

#[test]
fn the_report_fails_when_any_check_fails_and_prints_the_fix() {
    let inputs = healthy();
    let report = crate::Report::new(&inputs, run(&inputs));
    assert!(report.failover_ready);
    assert!(report
        .table()
        .ends_with("A failover would succeed now (0 warnings).\n"));

    let mut inputs = healthy();
    west(&mut inputs).status = Err("connection refused".to_string());
    west(&mut inputs).diagnostics = Err("connection refused".to_string());
    west(&mut inputs).clock = None;
    let report = crate::Report::new(&inputs, run(&inputs));
    assert!(!report.failover_ready);
    assert!(report.failed.contains(&"regions"), "{:?}", report.failed);
    let table = report.table();
    assert!(table.contains("FAIL  regions"), "{table}");
    assert!(table.contains("fix: start the region"), "{table}");
    assert!(
        table.contains("A failover would NOT succeed now: regions"),
        "{table}"
    );
}

#[test]
fn verification_fails_on_differences_and_warns_when_missing_stale_or_incomplete() {
    let inputs = healthy();
    assert_status(
        &check_verification(&inputs),
        Status::Pass,
        "replicas proven equal 60.0 s ago, by eastus",
    );

    let mut different = healthy();
    for region in different.regions.iter_mut() {
        if let Ok(diagnostics) = region.diagnostics.as_mut() {
            if let Some(summary) = diagnostics.verification.as_mut() {
                summary.ok = false;
                summary.differences = 3;
            }
        }
    }
    assert_status(
        &check_verification(&different),
        Status::Fail,
        "found 3 object(s) that differ",
    );

    let mut never = healthy();
    for region in never.regions.iter_mut() {
        if let Ok(diagnostics) = region.diagnostics.as_mut() {
            diagnostics.verification = None;
        }
    }
    assert_status(
        &check_verification(&never),
        Status::Warn,
        "have not been verified",
    );

    let mut stale = healthy();
    stale.now_ms += 13 * 3600 * 1000; // past twice the 6 h interval
    assert_status(&check_verification(&stale), Status::Warn, "longer than");

    let mut incomplete = healthy();
    for region in incomplete.regions.iter_mut() {
        if let Ok(diagnostics) = region.diagnostics.as_mut() {
            if let Some(summary) = diagnostics.verification.as_mut() {
                summary.ok = false;
                summary.unreachable = vec!["westus".to_string()];
            }
        }
    }
    assert_status(
        &check_verification(&incomplete),
        Status::Warn,
        "westus unreachable",
    );
}
