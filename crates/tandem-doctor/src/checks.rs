//! The checks of `tandem doctor`: the seeds' "troubleshoot failover" list
//! as small pure functions over what was collected ([`Inputs`]). Each says
//! pass, warn, fail or skip, why, and what to do about it. A failover would
//! succeed now when none fails.
//!
//! Adding a check is writing one `fn(&Inputs) -> Check` and listing it in
//! [`CHECKS`]. Still to come: the last successful `tandem verify` of every
//! workspace (once `verify` records its runs), role assignments, secrets.

use serde::Serialize;
use tandem_core::diagnostics::PeerOutcome;

use crate::inputs::Inputs;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Does not apply to this deployment (nothing to look at).
    Skip,
    /// A failover would succeed, but something is degraded or will fail later.
    Warn,
    /// A failover would not succeed (or would lose what it must not).
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub reason: String,
    /// What to do; none when there is nothing to do.
    pub fix: Option<String>,
}

pub type CheckFn = fn(&Inputs) -> Check;

/// Every check, in the order they are printed.
pub const CHECKS: &[CheckFn] = &[
    check_regions,
    check_witness,
    check_clock_skew,
    check_replication_lag,
    check_storage,
    check_backups,
    check_deployment_files,
    check_replication_secret,
    check_verification,
    check_tls,
];

/// A clock difference between regions worth a warning: CockroachDB's
/// default maximum offset, and far above what NTP keeps hosts within.
pub const CLOCK_SKEW_WARN_MS: f64 = 500.0;
/// A clock difference that fails. Tandem's hybrid logical clock has no
/// tolerance to exceed — it orders changes whatever the skew and never
/// refuses a timestamp — but every time-based reading crosses regions at a
/// failover: the new primary stamps `recorded_at` with its own clock, so
/// point-in-time restore (`--at`), lag in seconds and RPO jump by the skew,
/// and in hot-hot classes the region ahead wins every conflict within it.
/// Beyond the default lease TTL (6 s) those readings are wrong by more than
/// a whole unplanned failover takes.
pub const CLOCK_SKEW_FAIL_MS: f64 = 5_000.0;
/// A witness round trip above this share of `retry_timeout` warns: a
/// renewal that slow is close to missing its lease.
pub const WITNESS_SLOW_SHARE: f64 = 0.5;
/// Free space below either warns...
pub const FREE_WARN_BYTES: u64 = 2 << 30;
pub const FREE_WARN_SHARE: f64 = 0.10;
/// ...and below either fails: writes are about to be refused (507).
pub const FREE_FAIL_BYTES: u64 = 256 << 20;
pub const FREE_FAIL_SHARE: f64 = 0.02;
/// An RPO above this share of `max_rpo` warns: writes are refused past it.
pub const RPO_WARN_SHARE: f64 = 0.5;
/// Without a backup schedule, a workspace whose newest backup is older
/// than this warns.
pub const BACKUP_MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// Without a `[verify] interval`, a last verification older than this warns.
pub const VERIFY_MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// A TLS certificate expiring within this warns.
pub const CERTIFICATE_WARN_MS: i64 = 30 * 24 * 3600 * 1000;

/// Findings of one check, folded into a [`Check`]: the worst status wins,
/// the reason lists what earned it, the fixes what to do.
struct Findings {
    name: &'static str,
    found: Vec<(Status, String)>,
    fixes: Vec<String>,
}

impl Findings {
    fn new(name: &'static str) -> Findings {
        Findings {
            name,
            found: Vec::new(),
            fixes: Vec::new(),
        }
    }

    fn note(&mut self, status: Status, message: impl Into<String>, fix: Option<&str>) {
        self.found.push((status, message.into()));
        if let Some(fix) = fix {
            if !self.fixes.iter().any(|known| known == fix) {
                self.fixes.push(fix.to_string());
            }
        }
    }

    fn pass(&mut self, message: impl Into<String>) {
        self.note(Status::Pass, message, None);
    }

    fn warn(&mut self, message: impl Into<String>, fix: &str) {
        self.note(Status::Warn, message, Some(fix));
    }

    fn fail(&mut self, message: impl Into<String>, fix: &str) {
        self.note(Status::Fail, message, Some(fix));
    }

    /// Regions that did not report: what they would have said is not
    /// known, and the regions check already fails for them, so this check
    /// says no more than skip.
    fn unknown_for(&mut self, regions: &[&str]) {
        if !regions.is_empty() {
            self.note(
                Status::Skip,
                format!("not known for {}: no report", regions.join(", ")),
                None,
            );
        }
    }

    fn finish(self) -> Check {
        let status = self
            .found
            .iter()
            .map(|(status, _)| *status)
            .max()
            .unwrap_or(Status::Skip);
        // A pass says everything it saw; anything worse says only what is wrong.
        let shown: Vec<&str> = self
            .found
            .iter()
            .filter(|(found, _)| status <= Status::Skip || *found >= Status::Warn)
            .map(|(_, message)| message.as_str())
            .collect();
        Check {
            name: self.name,
            status,
            reason: shown.join("; "),
            fix: (status >= Status::Warn && !self.fixes.is_empty()).then(|| self.fixes.join("; ")),
        }
    }
}

fn skip(name: &'static str, reason: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Skip,
        reason: reason.into(),
        fix: None,
    }
}

fn bytes(count: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if count as f64 >= GIB {
        format!("{:.1} GiB", count as f64 / GIB)
    } else {
        format!("{:.0} MiB", count as f64 / MIB)
    }
}

fn duration(ms: f64) -> String {
    if ms.abs() < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms.abs() < 120_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms.abs() < 7_200_000.0 {
        format!("{:.0} min", ms / 60_000.0)
    } else {
        format!("{:.1} h", ms / 3_600_000.0)
    }
}

/// Every region answers, is ready to serve its role, and one is primary.
pub fn check_regions(inputs: &Inputs) -> Check {
    let mut findings = Findings::new("regions");
    if inputs.regions.len() < 2 {
        findings.fail(
            "the deployment has one region: there is nowhere to fail over to",
            "add a region to the deployment file ([[regions]]) and start it",
        );
    }
    let mut described = Vec::new();
    for region in &inputs.regions {
        match &region.status {
            Err(error) => findings.fail(
                format!("{} ({}) is unreachable: {error}", region.name, region.url),
                "start the region or restore the network path to it (`tandem up` restarts parts that die)",
            ),
            Ok(status) if !status.ready => {
                let missing: Vec<String> = status
                    .readiness
                    .iter()
                    .filter(|check| !check.ok)
                    .map(|check| format!("{}: {}", check.name, check.detail))
                    .collect();
                findings.fail(
                    format!("{} is not ready ({})", region.name, missing.join(", ")),
                    "see the region's log; its /ready says what it is waiting for",
                );
            }
            Ok(status) => described.push(format!("{} ({})", region.name, status.role)),
        }
        if let (Ok(_), Err(error)) = (&region.status, &region.diagnostics) {
            findings.fail(
                format!(
                    "{} answers but cannot report its diagnostics: {error}",
                    region.name
                ),
                "run the same tandem version in every region",
            );
        }
    }
    let answered = inputs.regions.iter().any(|region| region.status.is_ok());
    if answered && inputs.primary().is_none() {
        findings.fail(
            "no reachable region is a primary that accepts writes",
            "wait for the witness to settle leadership, or `tandem failover --to REGION --force` to a caught-up region",
        );
    }
    if !described.is_empty() {
        findings.pass(format!("reachable and ready: {}", described.join(", ")));
    }
    findings.finish()
}

/// Every region reaches the witness that holds the primary's lease: a
/// region that cannot reach it can neither keep leading nor take over.
pub fn check_witness(inputs: &Inputs) -> Check {
    const NAME: &str = "witness";
    let diagnosed: Vec<_> = inputs.diagnosed().collect();
    if diagnosed.is_empty() {
        return skip(NAME, "no region reported its diagnostics");
    }
    let mut findings = Findings::new(NAME);
    if diagnosed
        .iter()
        .all(|(_, diagnostics)| diagnostics.witness.is_none())
    {
        findings.fail(
            "the deployment has no [witness]: no region can take over, the bootstrap primary stays primary",
            "add a [witness] to the deployment file (kind = \"etcd\" with endpoints, or kind = \"embedded\" with `tandem witness`)",
        );
        return findings.finish();
    }
    let mut timings = Vec::new();
    let mut leaders = std::collections::BTreeSet::new();
    for (region, diagnostics) in &diagnosed {
        let Some(witness) = &diagnostics.witness else {
            findings.fail(
                format!("{} has no [witness] while other regions have one", region.name),
                "give every region the same deployment file",
            );
            continue;
        };
        let at = format!("{} at {}", witness.kind, witness.endpoints.join(","));
        if let Some(error) = &witness.error {
            findings.fail(
                format!("{} cannot reach the witness ({at}): {error}", region.name),
                "restore the network path from that region to the witness (or start the witness)",
            );
            continue;
        }
        let slow = witness.retry_timeout_ms as f64 * WITNESS_SLOW_SHARE;
        if witness.round_trip_ms > slow {
            findings.warn(
                format!(
                    "{} reaches the witness in {}, more than half its retry_timeout ({})",
                    region.name,
                    duration(witness.round_trip_ms),
                    duration(witness.retry_timeout_ms as f64)
                ),
                "bring the witness nearer to the regions, or raise [witness] retry_timeout and ttl",
            );
        }
        timings.push(format!("{} {}", region.name, duration(witness.round_trip_ms)));
        leaders.insert(match (&witness.leader, witness.epoch) {
            (Some(leader), Some(epoch)) => format!("{leader} (epoch {epoch})"),
            _ => "nobody".to_string(),
        });
    }
    if !timings.is_empty() {
        findings.pass(format!(
            "reached from every region that reported ({}); leader {}",
            timings.join(", "),
            leaders.into_iter().collect::<Vec<_>>().join(" / ")
        ));
    }
    findings.unknown_for(&inputs.undiagnosed());
    findings.finish()
}

/// The regions' clocks agree, measured NTP-style from the doctor.
pub fn check_clock_skew(inputs: &Inputs) -> Check {
    const NAME: &str = "clock-skew";
    let samples: Vec<_> = inputs
        .regions
        .iter()
        .filter_map(|region| region.clock.map(|clock| (region.name.as_str(), clock)))
        .collect();
    if samples.len() < 2 {
        return skip(NAME, "fewer than two regions answered: nothing to compare");
    }
    let ahead = samples
        .iter()
        .max_by(|a, b| a.1.offset_ms.total_cmp(&b.1.offset_ms))
        .expect("two samples");
    let behind = samples
        .iter()
        .min_by(|a, b| a.1.offset_ms.total_cmp(&b.1.offset_ms))
        .expect("two samples");
    let skew = ahead.1.offset_ms - behind.1.offset_ms;
    // Each offset is known to within half its exchange's delay.
    let error = (ahead.1.delay_ms + behind.1.delay_ms) / 2.0;
    let reason = format!(
        "{} is {} ahead of {} (± {})",
        ahead.0,
        duration(skew),
        behind.0,
        duration(error)
    );
    let fix = "keep every region's host on NTP (chrony or systemd-timesyncd) and check its sources";
    let mut findings = Findings::new(NAME);
    if skew - error > CLOCK_SKEW_FAIL_MS {
        findings.fail(format!("{reason}: beyond {}", duration(CLOCK_SKEW_FAIL_MS)), fix);
    } else if skew > CLOCK_SKEW_WARN_MS {
        findings.warn(format!("{reason}: beyond {}", duration(CLOCK_SKEW_WARN_MS)), fix);
    } else {
        findings.pass(reason);
    }
    findings.finish()
}

/// Replication keeps every class within its `max_rpo`, and every
/// secondary is close enough to the primary to take over.
pub fn check_replication_lag(inputs: &Inputs) -> Check {
    const NAME: &str = "replication-lag";
    let mut findings = Findings::new(NAME);
    let Some((primary, status)) = inputs.primary() else {
        findings.fail(
            "no primary answered: lag and RPO are not known",
            "see the regions check",
        );
        return findings.finish();
    };
    for class in &status.classes {
        if class.level == "hot-cold" {
            continue;
        }
        let rpo_ms = class.rpo_seconds * 1000.0;
        match class.max_rpo_seconds {
            Some(max_rpo) if class.refusing_writes || class.rpo_seconds > max_rpo => findings.fail(
                format!(
                    "{} RPO is {} at {}, past its max_rpo {}: writes of the class are refused",
                    class.class,
                    duration(rpo_ms),
                    primary.name,
                    duration(max_rpo * 1000.0)
                ),
                "bring the lagging secondary back (see regions and replication-secret), or raise max_rpo",
            ),
            Some(max_rpo) if class.rpo_seconds > max_rpo * RPO_WARN_SHARE => findings.warn(
                format!(
                    "{} RPO is {}, over half its max_rpo {}",
                    class.class,
                    duration(rpo_ms),
                    duration(max_rpo * 1000.0)
                ),
                "look at the secondaries' load and links: writes are refused past max_rpo",
            ),
            Some(max_rpo) => findings.pass(format!(
                "{} RPO {} (max {})",
                class.class,
                duration(rpo_ms),
                duration(max_rpo * 1000.0)
            )),
            None => findings.pass(format!("{} RPO {}", class.class, duration(rpo_ms))),
        }
    }
    let limit = status.failover.maximum_lag_on_failover;
    let automatic = status.failover.mode == "automatic";
    for secondary in status.regions.iter().filter(|entry| !entry.this_region) {
        let lag = secondary.lag_records.unwrap_or(0);
        if lag > limit {
            let message = format!(
                "{} lacks {lag} of {}'s journal records, more than maximum_lag_on_failover ({limit})",
                secondary.name, primary.name
            );
            let fix = "let it catch up (see its log), or raise [failover] maximum_lag_on_failover";
            if automatic {
                findings.fail(format!("{message}: it would not take over automatically"), fix);
            } else {
                findings.warn(message, fix);
            }
        } else if secondary.streaming == Some(false) {
            findings.warn(
                format!(
                    "{} has no journal stream open from {}",
                    secondary.name, primary.name
                ),
                "see the secondary's log (last_error in `tandem status --json`)",
            );
        } else {
            findings.pass(format!(
                "{} {lag} records behind (limit {limit}), {} old",
                secondary.name,
                duration(secondary.lag_seconds.unwrap_or(0.0) * 1000.0)
            ));
        }
    }
    findings.finish()
}

/// Every region's metadata database and artifact storage take a write, and
/// its local volumes have room.
pub fn check_storage(inputs: &Inputs) -> Check {
    const NAME: &str = "storage";
    let diagnosed: Vec<_> = inputs.diagnosed().collect();
    if diagnosed.is_empty() {
        return skip(NAME, "no region reported its diagnostics");
    }
    let mut findings = Findings::new(NAME);
    let mut least: Option<(String, u64, f64)> = None;
    for (region, diagnostics) in &diagnosed {
        let storage = &diagnostics.storage;
        for (what, probe) in [
            ("metadata database", &storage.metadata),
            ("artifact storage", &storage.artifacts),
        ] {
            if let Some(error) = &probe.error {
                findings.fail(
                    format!(
                        "{}'s {what} ({}) refuses a write: {error}",
                        region.name, probe.target
                    ),
                    "free space or fix permissions on that storage, or fix its connection settings",
                );
            }
        }
        for volume in &storage.volumes {
            if let Some(error) = &volume.error {
                findings.warn(
                    format!(
                        "{}'s {} volume ({}) cannot be measured: {error}",
                        region.name, volume.label, volume.path
                    ),
                    "check that the directory exists and is readable by the server",
                );
                continue;
            }
            let share = if volume.total_bytes == 0 {
                1.0
            } else {
                volume.available_bytes as f64 / volume.total_bytes as f64
            };
            let described = format!(
                "{} {} ({}) has {} free ({:.0}%)",
                region.name,
                volume.label,
                volume.path,
                bytes(volume.available_bytes),
                share * 100.0
            );
            let fix = "free space on that volume or grow it: writes are refused (507) when it fills";
            if volume.available_bytes < FREE_FAIL_BYTES || share < FREE_FAIL_SHARE {
                findings.fail(described, fix);
            } else if volume.available_bytes < FREE_WARN_BYTES || share < FREE_WARN_SHARE {
                findings.warn(described, fix);
            }
            if least
                .as_ref()
                .is_none_or(|(_, available, _)| volume.available_bytes < *available)
            {
                least = Some((
                    format!("{} {}", region.name, volume.label),
                    volume.available_bytes,
                    share,
                ));
            }
        }
    }
    let regions: Vec<&str> = diagnosed.iter().map(|(region, _)| region.name.as_str()).collect();
    let mut summary = format!("metadata and artifacts take writes in {}", regions.join(", "));
    if let Some((volume, available, share)) = least {
        summary.push_str(&format!(
            "; least room: {volume} {} ({:.0}%)",
            bytes(available),
            share * 100.0
        ));
    }
    findings.pass(summary);
    findings.unknown_for(&inputs.undiagnosed());
    findings.finish()
}

/// Every workspace has a recent backup; hot-cold classes, restored from
/// the journal archive at failover, need a repository at all.
pub fn check_backups(inputs: &Inputs) -> Check {
    const NAME: &str = "backups";
    let diagnosed: Vec<_> = inputs.diagnosed().collect();
    if diagnosed.is_empty() {
        return skip(NAME, "no region reported its diagnostics");
    }
    let hot_cold: Vec<String> = inputs
        .any_status()
        .map(|status| {
            status
                .classes
                .iter()
                .filter(|class| class.level == "hot-cold")
                .map(|class| class.class.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut findings = Findings::new(NAME);
    let configure = "add [backup] url = \"…\" (and schedule = \"1d\") to the deployment file";
    let note_missing = |findings: &mut Findings, message: String| {
        if hot_cold.is_empty() {
            findings.warn(message, configure);
        } else {
            findings.fail(
                format!(
                    "{message}; {} (hot-cold) is restored from the journal archive at failover, so it would be lost",
                    hot_cold.join(", ")
                ),
                configure,
            );
        }
    };
    let reports: Vec<_> = diagnosed
        .iter()
        .filter_map(|(region, diagnostics)| diagnostics.backups.as_ref().map(|report| (*region, report)))
        .collect();
    if reports.is_empty() {
        note_missing(&mut findings, "no region has a backup repository".to_string());
        return findings.finish();
    }
    for (region, _) in diagnosed
        .iter()
        .filter(|(_, diagnostics)| diagnostics.backups.is_none())
    {
        note_missing(&mut findings, format!("{} has no backup repository", region.name));
    }
    let mut readable = Vec::new();
    for (region, report) in &reports {
        match &report.error {
            Some(error) => note_missing(
                &mut findings,
                format!(
                    "{} cannot read its backup repository {}: {error}",
                    region.name, report.repository
                ),
            ),
            None => readable.push((*region, *report)),
        }
    }
    // The primary's view (its workspaces are the authoritative list), else any.
    let primary = inputs.primary().map(|(region, _)| region.name.clone());
    let Some((region, report)) = readable
        .iter()
        .find(|(region, _)| Some(&region.name) == primary.as_ref())
        .or(readable.first())
        .copied()
    else {
        return findings.finish();
    };
    let max_age_ms = report
        .schedule_seconds
        .map(|seconds| (seconds * 2000.0) as i64)
        .unwrap_or(BACKUP_MAX_AGE_MS);
    let take = "`tandem backup create --to URL`, or set [backup] schedule";
    let mut oldest: Option<(String, i64)> = None;
    for workspace in &report.workspaces {
        match workspace.last_backup_at {
            None => findings.warn(
                format!("workspace {} has never been backed up", workspace.name),
                take,
            ),
            Some(at) => {
                let age = inputs.now_ms - at;
                if age > max_age_ms {
                    findings.warn(
                        format!(
                            "workspace {}'s newest backup is {} old (limit {})",
                            workspace.name,
                            duration(age as f64),
                            duration(max_age_ms as f64)
                        ),
                        take,
                    );
                }
                if oldest.as_ref().is_none_or(|(_, known)| at < *known) {
                    oldest = Some((workspace.name.clone(), at));
                }
            }
        }
    }
    let mut summary = format!("repository {} (as {} sees it)", report.repository, region.name);
    if let Some((workspace, at)) = oldest {
        summary.push_str(&format!(
            ": every workspace has a backup, the stalest is {workspace}'s from {} ago",
            duration((inputs.now_ms - at) as f64)
        ));
    }
    if let Some(archived) = report.archived_to {
        summary.push_str(&format!(
            "; journal archived to {archived} of {}",
            report.journal_head
        ));
    }
    findings.pass(summary);
    findings.finish()
}

/// Every region loaded the same deployment definition.
pub fn check_deployment_files(inputs: &Inputs) -> Check {
    const NAME: &str = "deployment-files";
    let diagnosed: Vec<_> = inputs.diagnosed().collect();
    let Some((first, reference)) = diagnosed.first() else {
        return skip(NAME, "no region reported its diagnostics");
    };
    let mut findings = Findings::new(NAME);
    for (region, diagnostics) in diagnosed.iter().skip(1) {
        if diagnostics.deployment_digest == reference.deployment_digest {
            continue;
        }
        let mut differences = Vec::new();
        differ(
            "",
            &reference.deployment_definition,
            &diagnostics.deployment_definition,
            &mut differences,
        );
        findings.fail(
            format!(
                "{}'s deployment differs from {}'s: {}",
                region.name,
                first.name,
                if differences.is_empty() {
                    "(the digests differ)".to_string()
                } else {
                    differences.join(", ")
                }
            ),
            "give every region the same deployment file and restart the regions whose file changed",
        );
    }
    let names: Vec<&str> = diagnosed.iter().map(|(region, _)| region.name.as_str()).collect();
    findings.pass(format!(
        "identical in {} (digest {})",
        names.join(", "),
        &reference.deployment_digest[..reference.deployment_digest.len().min(12)]
    ));
    findings.unknown_for(&inputs.undiagnosed());
    findings.finish()
}

/// `path: here vs there` for every leaf where two definitions differ.
fn differ(path: &str, here: &serde_json::Value, there: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (here, there) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                differ(
                    &child(key),
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (a, b)) in a.iter().zip(b).enumerate() {
                differ(&child(&index.to_string()), a, b, out);
            }
        }
        (a, b) if a != b => out.push(format!("{path} {a} vs {b}")),
        _ => {}
    }
}

/// Every region accepts every other's replication secret (and reaches it).
pub fn check_replication_secret(inputs: &Inputs) -> Check {
    const NAME: &str = "replication-secret";
    let diagnosed: Vec<_> = inputs.diagnosed().collect();
    if diagnosed.is_empty() {
        return skip(NAME, "no region reported its diagnostics");
    }
    let mut findings = Findings::new(NAME);
    let mut accepted = Vec::new();
    for (region, diagnostics) in &diagnosed {
        for peer in &diagnostics.peers {
            let detail = peer.detail.clone().unwrap_or_default();
            match peer.outcome {
                PeerOutcome::Accepted => accepted.push(format!("{} → {}", region.name, peer.region)),
                PeerOutcome::Refused => findings.fail(
                    format!("{} refuses {}'s replication secret ({detail})", peer.region, region.name),
                    "give every region the same replication_secret (or replication_secret_file contents) and restart them",
                ),
                PeerOutcome::Unreachable => findings.fail(
                    format!("{} cannot reach {} at {}: {detail}", region.name, peer.region, peer.url),
                    "restore the network path between the regions (their URLs in the deployment file must work from each other)",
                ),
                PeerOutcome::Failed => findings.warn(
                    format!("{} could not ask {} ({detail})", region.name, peer.region),
                    "run the same tandem version in every region",
                ),
            }
        }
    }
    if !accepted.is_empty() {
        findings.pass(format!("accepted {}", accepted.join(", ")));
    }
    findings.unknown_for(&inputs.undiagnosed());
    findings.finish()
}

/// Certificates of regions that serve TLS themselves are not expired nor
/// about to be.
pub fn check_tls(inputs: &Inputs) -> Check {
    const NAME: &str = "tls";
    let diagnosed: Vec<_> = inputs.diagnosed().collect();
    if diagnosed.is_empty() {
        return skip(NAME, "no region reported its diagnostics");
    }
    let mut findings = Findings::new(NAME);
    let mut plain = Vec::new();
    for (region, diagnostics) in &diagnosed {
        let tls = &diagnostics.tls;
        if !tls.configured {
            plain.push(region.name.as_str());
            continue;
        }
        let renew = "renew the region's certificate and restart it";
        match tls.certificate_not_after_ms {
            None => findings.warn(format!("{}: expiry unknown ({})", region.name, tls.detail), renew),
            Some(not_after) if not_after <= inputs.now_ms => findings.fail(
                format!(
                    "{}'s certificate expired {} ago",
                    region.name,
                    duration((inputs.now_ms - not_after) as f64)
                ),
                renew,
            ),
            Some(not_after) if not_after - inputs.now_ms < CERTIFICATE_WARN_MS => findings.warn(
                format!(
                    "{}'s certificate expires in {}",
                    region.name,
                    duration((not_after - inputs.now_ms) as f64)
                ),
                renew,
            ),
            Some(not_after) => findings.pass(format!(
                "{}'s certificate is valid for {}",
                region.name,
                duration((not_after - inputs.now_ms) as f64)
            )),
        }
    }
    if findings.found.is_empty() {
        let detail = diagnosed
            .first()
            .map(|(_, diagnostics)| diagnostics.tls.detail.clone())
            .unwrap_or_default();
        return skip(NAME, format!("not applicable to {}: {detail}", plain.join(", ")));
    }
    findings.finish()
}

/// Runs every check.
pub fn run(inputs: &Inputs) -> Vec<Check> {
    CHECKS.iter().map(|check| check(inputs)).collect()
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;

/// The replicas were proven equal (`tandem verify`), recently: a failover
/// to a region whose copy differs would serve different data.
pub fn check_verification(inputs: &Inputs) -> Check {
    const NAME: &str = "verification";
    let run = "run `tandem verify` (the primary also verifies every [verify] interval)";
    let diagnosed: Vec<_> = inputs.diagnosed().collect();
    if diagnosed.is_empty() {
        return skip(NAME, "no region reported its diagnostics");
    }
    let newest = diagnosed
        .iter()
        .filter_map(|(_, diagnostics)| diagnostics.verification.as_ref())
        .max_by_key(|summary| summary.finished_at_ms);
    let max_age = diagnosed
        .iter()
        .find_map(|(_, diagnostics)| diagnostics.verify_interval_ms)
        .map(|interval| 2 * interval as i64)
        .unwrap_or(VERIFY_MAX_AGE_MS);
    let mut findings = Findings::new(NAME);
    match newest {
        None => findings.warn(
            "the replicas have not been verified since the regions started",
            run,
        ),
        Some(last) => {
            let age = (inputs.now_ms - last.finished_at_ms).max(0);
            let when = format!("{} ago, by {}", duration(age as f64), last.verified_by);
            if last.differences > 0 {
                findings.fail(
                    format!("the last verification ({when}) found {} object(s) that differ between regions", last.differences),
                    "run `tandem verify` to name them, and rebuild the region that differs from the primary before failing over to it",
                );
            } else if !last.ok {
                let mut why = Vec::new();
                if !last.unreachable.is_empty() {
                    why.push(format!("{} unreachable", last.unreachable.join(", ")));
                }
                if last.unverified_workspaces > 0 {
                    why.push(format!(
                        "{} workspace(s) kept changing",
                        last.unverified_workspaces
                    ));
                }
                findings.warn(
                    format!(
                        "the last verification ({when}) was incomplete: {}",
                        why.join("; ")
                    ),
                    run,
                );
            } else if age > max_age {
                findings.warn(
                    format!(
                        "the replicas were last proven equal {when}, longer than {}",
                        duration(max_age as f64)
                    ),
                    run,
                );
            } else {
                findings.pass(format!("replicas proven equal {when}"));
            }
        }
    }
    findings.finish()
}
