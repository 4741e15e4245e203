//! Keeping a `tandem up` deployment running: one supervisor per part.
//!
//! When a part dies, its supervisor says what died and how (signal or exit
//! code), leaves the others running — the gateway and the other regions,
//! so a lost primary fails over as it would anywhere — and starts the part
//! again after a backoff. A region is started again only once another
//! region leads (or after a bound): started at once, a lost primary would
//! take its own lease back before the witness let anyone else have it, and
//! the deployment would never fail over. Started after the failover, it
//! rejoins as a secondary and catches up; its supervisor says so once its
//! `/ready` answers. A part that exits [`RestartPolicy::limit`] times within
//! [`RestartPolicy::window`] is crash-looping: it is left down, and said
//! so. `DIR/up.json` is rewritten (atomically) on every change: pids,
//! states, restarts, last exit.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::Instant;

use super::parts::{describe_exit, stop, Kind, PartSpec, Probe, Readiness};

/// How long a restarted part may take to become ready before its
/// supervisor says it is not (it keeps waiting).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How often a supervisor waiting for a failover asks the other regions.
const FAILOVER_POLL: Duration = Duration::from_millis(250);

/// When a part that died is started again.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Exits within `window` after which the part is left down.
    pub limit: u32,
    pub window: Duration,
    /// The delay before the first restart; it doubles with every exit
    /// within the window, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl RestartPolicy {
    /// Records an exit at `now` in `exits` (the part's recent exits) and
    /// says how long to wait before starting it again, or `None` when it
    /// is crash-looping and must be left down.
    pub fn after_exit(&self, exits: &mut VecDeque<Instant>, now: Instant) -> Option<Duration> {
        exits.push_back(now);
        while exits
            .front()
            .is_some_and(|first| now.duration_since(*first) > self.window)
        {
            exits.pop_front();
        }
        let count = exits.len() as u32;
        if count >= self.limit {
            return None;
        }
        let factor = 1u32 << (count.saturating_sub(1)).min(16);
        Some(self.first_delay.saturating_mul(factor).min(self.max_delay))
    }
}

/// A part's state as `up.json` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Started, not ready yet.
    Starting,
    /// Ready since it was last started.
    Running,
    /// Died; waiting to be started again.
    Restarting,
    /// Crash-looped: left down.
    Down,
    /// Stopped with the deployment.
    Stopped,
}

/// One part in `up.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PartStatus {
    pub name: String,
    pub kind: Kind,
    /// Its process while it runs; null while it is down.
    pub pid: Option<u32>,
    pub url: String,
    pub state: State,
    /// How many times it was started again.
    pub restarts: u32,
    /// How it last ended, if it did.
    pub last_exit: Option<String>,
    pub log: String,
}

/// `DIR/up.json`.
#[derive(Debug, Clone, Serialize)]
pub struct UpFile {
    pub tracking_uri: String,
    /// The admin's token (None: authentication is off).
    pub admin_token_file: Option<String>,
    pub deployment: String,
    /// The client config file pointing tandem commands at the gateway.
    pub client_config: String,
    pub parts: Vec<PartStatus>,
}

/// The deployment's `up.json`, shared by the supervisors.
pub struct Board {
    path: PathBuf,
    file: Mutex<UpFile>,
}

impl Board {
    pub fn new(path: PathBuf, file: UpFile) -> Arc<Self> {
        Arc::new(Board {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn snapshot(&self) -> UpFile {
        self.file.lock().expect("up.json lock poisoned").clone()
    }

    /// Changes part `index` and writes the file again.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut PartStatus)) {
        let mut file = self.file.lock().expect("up.json lock poisoned");
        change(&mut file.parts[index]);
        // Written under the lock: one writer at a time of the temporary file.
        if let Err(error) = write_atomically(&self.path, &*file) {
            eprintln!("cannot update {}: {error:#}", self.path.display());
        }
    }

    /// Writes the file as it is.
    pub fn write(&self) -> anyhow::Result<()> {
        let file = self.file.lock().expect("up.json lock poisoned");
        write_atomically(&self.path, &*file)
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes `value` as JSON to `path` so that a reader sees the old file or
/// the new one, never a part: a temporary file, flushed, renamed over it.
pub fn write_atomically(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("json.tmp");
    let mut file =
        std::fs::File::create(&temporary).with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(serde_json::to_string_pretty(value)?.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// What a supervisor needs besides its own part.
#[derive(Clone)]
pub struct Supervision {
    pub executable: PathBuf,
    pub probe: Probe,
    pub board: Arc<Board>,
    pub policy: RestartPolicy,
    /// The regions of the deployment (name, url), to see who leads.
    pub regions: Vec<(String, String)>,
    /// How long a lost region waits for another region to take over before
    /// it is started anyway; `None` when nothing fails over by itself (no
    /// witness, or `manual` failover), so it is started after the backoff.
    pub failover_wait: Option<Duration>,
}

/// Supervises part `index`, whose first process is `child`, until `stop`
/// turns true; then stops it (SIGTERM, then SIGKILL after 10 s).
pub async fn supervise(
    context: Supervision,
    index: usize,
    part: PartSpec,
    mut child: Child,
    ready: bool,
    mut stopping: watch::Receiver<bool>,
) {
    let mut exits = VecDeque::new();
    let mut restarts = 0u32;
    let mut announced = ready;
    loop {
        let pid = child.id();
        let status = {
            let ready_again = wait_ready_after_restart(&context, &part);
            tokio::pin!(ready_again);
            loop {
                tokio::select! {
                    status = child.wait() => break status,
                    _ = until_stopped(&mut stopping) => {
                        stop(&part, &mut child).await;
                        context.board.update(index, |status| {
                            status.pid = None;
                            status.state = State::Stopped;
                        });
                        return;
                    }
                    role = &mut ready_again, if !announced => {
                        announced = true;
                        if role.is_ok() {
                            context.board.update(index, |status| status.state = State::Running);
                        }
                        match role {
                            Ok(role) if restarts == 0 => eprintln!("{} (pid {}) is ready now{role}", part.label(), pid.unwrap_or(0)),
                            Ok(role) => eprintln!("{} is back (pid {}){role}", part.label(), pid.unwrap_or(0)),
                            // It stays `starting` in up.json.
                            Err(reason) => eprintln!(
                                "{} (pid {}) is running but not ready after {}s: {reason}",
                                part.label(),
                                pid.unwrap_or(0),
                                READY_WITHIN.as_secs()
                            ),
                        }
                    }
                }
            }
        };
        let how = match &status {
            Ok(status) => describe_exit(*status),
            Err(error) => format!("could not be waited for ({error})"),
        };
        let Some(delay) = context.policy.after_exit(&mut exits, Instant::now()) else {
            eprintln!(
                "{} (pid {}) {how}: it exited {} times within {}s, so it is left down (see {}); the rest of the deployment keeps running",
                part.label(),
                pid.unwrap_or(0),
                exits.len(),
                context.policy.window.as_secs(),
                part.log.display()
            );
            context.board.update(index, |status| {
                status.pid = None;
                status.state = State::Down;
                status.last_exit = Some(how.clone());
            });
            // Nothing to stop any more: wait for the deployment to stop.
            until_stopped(&mut stopping).await;
            return;
        };
        eprintln!(
            "{} (pid {}) {how}; starting it again in {:.1}s ({} exit(s) within {}s; at {} it is left down)",
            part.label(),
            pid.unwrap_or(0),
            delay.as_secs_f64(),
            exits.len(),
            context.policy.window.as_secs(),
            context.policy.limit
        );
        context.board.update(index, |status| {
            status.pid = None;
            status.state = State::Restarting;
            status.last_exit = Some(how.clone());
        });
        let waited = async {
            tokio::time::sleep(delay).await;
            if part.kind == Kind::Region {
                if let Some(limit) = context.failover_wait {
                    wait_for_another_leader(&context, &part, limit).await;
                }
            }
        };
        tokio::select! {
            _ = waited => {}
            _ = until_stopped(&mut stopping) => {
                context.board.update(index, |status| status.state = State::Stopped);
                return;
            }
        }
        child = match part.spawn(&context.executable) {
            Ok(child) => child,
            Err(error) => {
                eprintln!("{error:#}; it is left down");
                context.board.update(index, |status| status.state = State::Down);
                until_stopped(&mut stopping).await;
                return;
            }
        };
        restarts += 1;
        announced = false;
        let new_pid = child.id();
        context.board.update(index, |status| {
            status.pid = new_pid;
            status.state = State::Starting;
            status.restarts = restarts;
        });
        eprintln!("{} started again (pid {})", part.label(), new_pid.unwrap_or(0));
    }
}

/// Resolves once the deployment stops.
async fn until_stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Once a restarted part answers `/ready`: what to say of it (a region's
/// role), or why it is still not ready after [`READY_WITHIN`].
async fn wait_ready_after_restart(context: &Supervision, part: &PartSpec) -> Result<String, String> {
    let body = context
        .probe
        .wait_ready(&part.url, Instant::now() + READY_WITHIN)
        .await?;
    Ok(match (part.kind, body["role"].as_str()) {
        (Kind::Region, Some(role)) => {
            let caught_up = body["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|check| check["name"] == "caught_up")
                .and_then(|check| check["detail"].as_str())
                .map(|detail| format!(", {detail}"))
                .unwrap_or_default();
            format!(" and ready as {role}{caught_up}")
        }
        _ => " and ready".to_string(),
    })
}

/// Waits until a region other than `part` says it is a ready primary, or
/// `limit` passed.
async fn wait_for_another_leader(context: &Supervision, part: &PartSpec, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut said = false;
    loop {
        for (name, url) in context.regions.iter().filter(|(name, _)| *name != part.name) {
            if let Readiness::Ready(body) = context.probe.ready(url).await {
                if body["role"] == "primary" {
                    if said {
                        eprintln!("region {name} leads now; starting {} again", part.label());
                    }
                    return;
                }
            }
        }
        if Instant::now() >= deadline {
            eprintln!(
                "no other region took over within {}s; starting {} again anyway",
                limit.as_secs(),
                part.label()
            );
            return;
        }
        if !said {
            said = true;
            eprintln!(
                "no other region leads yet ({} was the primary): waiting up to {}s for another region to take over, so that it rejoins as a secondary",
                part.label(),
                limit.as_secs()
            );
        }
        tokio::time::sleep(FAILOVER_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            limit: 5,
            window: Duration::from_secs(60),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }

    #[test]
    fn restarts_back_off_and_a_crash_loop_is_left_down() {
        let policy = policy();
        let start = Instant::now();
        let mut exits = VecDeque::new();
        let delays: Vec<Option<Duration>> = (0..5)
            .map(|second| policy.after_exit(&mut exits, start + Duration::from_secs(second)))
            .collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8]
                .into_iter()
                .map(|s| Some(Duration::from_secs(s)))
                .chain([None])
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn exits_older_than_the_window_are_forgotten() {
        let policy = policy();
        let start = Instant::now();
        let mut exits = VecDeque::new();
        for second in 0..4 {
            assert!(policy
                .after_exit(&mut exits, start + Duration::from_secs(second))
                .is_some());
        }
        // A minute later the earlier exits no longer count: back to 1 s.
        assert_eq!(
            policy.after_exit(&mut exits, start + Duration::from_secs(100)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(exits.len(), 1);
    }

    #[test]
    fn the_delay_is_capped() {
        let policy = RestartPolicy {
            limit: 100,
            ..policy()
        };
        let start = Instant::now();
        let mut exits = VecDeque::new();
        let mut last = None;
        for _ in 0..40 {
            last = policy.after_exit(&mut exits, start);
        }
        assert_eq!(last, Some(Duration::from_secs(30)));
    }

    #[test]
    fn up_json_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.json");
        write_atomically(&path, &serde_json::json!({"parts": [1]})).unwrap();
        write_atomically(&path, &serde_json::json!({"parts": [1, 2]})).unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["parts"], serde_json::json!([1, 2]));
        assert!(!dir.path().join("up.json.tmp").exists());
    }
}
