//! The processes of a `tandem up` deployment: how each is started, probed
//! (`/health`: alive; `/ready`: can serve its role), described when it
//! exits, and stopped.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// How long a part may take to answer `/health` after it was started.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(20);
/// How long a stopping part may take before it is killed.
pub const STOP_WITHIN: Duration = Duration::from_secs(10);
/// How often `/health` and `/ready` are asked while waiting.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Bound on one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Witness,
    Region,
    Gateway,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Witness => "witness",
            Kind::Region => "region",
            Kind::Gateway => "gateway",
        }
    }
}

/// Everything needed to start a part, again after it died.
#[derive(Debug, Clone)]
pub struct PartSpec {
    pub name: String,
    pub kind: Kind,
    /// Where it answers (`/health`, `/ready`).
    pub url: String,
    /// The `tandem` arguments that run it.
    pub arguments: Vec<OsString>,
    /// Its output, appended to across restarts.
    pub log: PathBuf,
    /// Environment it gets besides `tandem up`'s own (a replica's
    /// database URL file: not on its command line, where `ps` shows it).
    pub env: Vec<(String, OsString)>,
}

impl PartSpec {
    /// "region eastus", "gateway": the part as messages name it.
    pub fn label(&self) -> String {
        if self.kind.as_str() == self.name {
            self.name.clone()
        } else {
            format!("{} {}", self.kind.as_str(), self.name)
        }
    }

    /// Starts the part: `tandem ARGS…` with its output appended to its log.
    ///
    /// It runs in its own process group, so a Ctrl-C at the terminal reaches
    /// `tandem up` alone, which then stops the parts in order (the witness
    /// last). On Linux it also gets SIGTERM if `tandem up` itself dies, so
    /// no part outlives it unsupervised.
    pub fn spawn(&self, executable: &Path) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut command = Command::new(executable);
        command
            .args(&self.arguments)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: between fork and exec only async-signal-safe calls
            // (prctl, getppid, _exit) are made.
            unsafe {
                command.pre_exec(move || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    // `tandem up` died before the prctl took effect.
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
        }
        command
            .spawn()
            .with_context(|| format!("cannot start {}", self.label()))
    }
}

/// Probes parts over HTTP.
#[derive(Clone)]
pub struct Probe {
    http: reqwest::Client,
}

/// What `/ready` answered.
#[derive(Debug, Clone)]
pub enum Readiness {
    Ready(serde_json::Value),
    /// The part answered, not ready: why.
    NotReady(String),
    /// The part did not answer.
    Unreachable(String),
}

impl Probe {
    pub fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            .connect_timeout(PROBE_TIMEOUT)
            .no_proxy()
            .build()?;
        Ok(Probe { http })
    }

    /// Whether `/health` answers 200.
    pub async fn alive(&self, url: &str) -> bool {
        matches!(
            self.http.get(format!("{url}/health")).send().await,
            Ok(response) if response.status().is_success()
        )
    }

    /// What `/ready` answers.
    pub async fn ready(&self, url: &str) -> Readiness {
        let response = match self.http.get(format!("{url}/ready")).send().await {
            Ok(response) => response,
            Err(error) => return Readiness::Unreachable(error.to_string()),
        };
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            Readiness::Ready(body)
        } else {
            Readiness::NotReady(
                body["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("/ready answered {status}")),
            )
        }
    }

    /// Until `url` accepts `token` (`/api/tandem/v1/whoami` answers 200), or
    /// `deadline`.
    pub async fn wait_authenticated(
        &self,
        url: &str,
        token: &str,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<()> {
        let mut last = String::from("no answer yet");
        while tokio::time::Instant::now() < deadline {
            match self
                .http
                .get(format!("{url}/api/tandem/v1/whoami"))
                .bearer_auth(token)
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last = format!("whoami answered {}", response.status()),
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        bail!("the admin's token was not accepted at {url} in time: {last}")
    }

    /// Until `/health` answers; fails if the process exits first or it
    /// takes longer than [`ALIVE_WITHIN`].
    pub async fn wait_alive(&self, part: &PartSpec, child: &mut Child) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + ALIVE_WITHIN;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} at {} {} during start-up",
                    part.label(),
                    part.url,
                    describe_exit(status)
                );
            }
            if self.alive(&part.url).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} at {} did not answer /health within {}s",
                    part.label(),
                    part.url,
                    ALIVE_WITHIN.as_secs()
                );
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// Until `/ready` answers 200 (its body), or `Err` with the last reason
    /// once `deadline` passed.
    pub async fn wait_ready(
        &self,
        url: &str,
        deadline: tokio::time::Instant,
    ) -> Result<serde_json::Value, String> {
        loop {
            let reason = match self.ready(url).await {
                Readiness::Ready(body) => return Ok(body),
                Readiness::NotReady(reason) | Readiness::Unreachable(reason) => reason,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(reason);
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
}

/// How a process ended, for messages: "was killed by signal 9 (SIGKILL)",
/// "exited with code 1".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = signal_name(signal);
        let core = if status.core_dumped() { ", core dumped" } else { "" };
        return match name {
            Some(name) => format!("was killed by signal {signal} ({name}{core})"),
            None => format!("was killed by signal {signal}{core}"),
        };
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => format!("ended ({status})"),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return None,
    })
}

/// Stops a part: SIGTERM, then SIGKILL after [`STOP_WITHIN`].
pub async fn stop(part: &PartSpec, child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: sending a signal to a child process this process started
        // and has not reaped (its pid cannot have been reused).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(STOP_WITHIN, child.wait()).await.is_err() {
        eprintln!(
            "{} did not stop within {}s; killing it",
            part.label(),
            STOP_WITHIN.as_secs()
        );
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_by_signal_or_code() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(libc::SIGKILL)),
            "was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exited with code 3");
        assert_eq!(describe_exit(ExitStatus::from_raw(0)), "exited with code 0");
    }
}
