//! The embedded witness's state file, `<data dir>/witness-state.json`, replaced atomically.
//!
//! A write goes to a temporary file in the same directory, is fsynced, renamed over the
//! state file, and the directory is fsynced: after a crash at any point the file holds
//! either the old or the new state, never a mix, and once a grant is answered its revision
//! is on disk. Blocking; the server calls these from `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::state::PersistedState;
use crate::error::{Result, WitnessError};

/// Name of the state file inside the embedded witness's data directory.
pub const STATE_FILE_NAME: &str = "witness-state.json";

const TEMPORARY_FILE_NAME: &str = "witness-state.json.tmp";

fn io_error(action: &str, path: &Path, error: io::Error) -> WitnessError {
    WitnessError::Unavailable(format!("cannot {action} {}: {error}", path.display()))
}

/// Reads the state file; `None` if there is none yet (a new witness).
pub(super) fn load(data_dir: &Path) -> Result<Option<PersistedState>> {
    let path = data_dir.join(STATE_FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", &path, error)),
    };
    // A damaged file is refused, not reset: starting again from revision 0 would hand out
    // epochs that were already used.
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        WitnessError::Invalid(format!("unreadable witness state {}: {error}", path.display()))
    })
}

/// Replaces the state file with `state`, durably.
pub(super) fn store(data_dir: &Path, state: &PersistedState) -> Result<()> {
    let started = std::time::Instant::now();
    let stored = store_durably(data_dir, state);
    metrics::histogram!("tandem_witness_persist_seconds").record(started.elapsed().as_secs_f64());
    stored
}

fn store_durably(data_dir: &Path, state: &PersistedState) -> Result<()> {
    let temporary = data_dir.join(TEMPORARY_FILE_NAME);
    let path = data_dir.join(STATE_FILE_NAME);
    let bytes = serde_json::to_vec_pretty(state).expect("the state serializes");
    let mut file = File::create(&temporary).map_err(|error| io_error("create", &temporary, error))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| io_error("write", &temporary, error))?;
    drop(file);
    fs::rename(&temporary, &path).map_err(|error| io_error("rename into", &path, error))?;
    // The rename is durable only once the directory entry is.
    File::open(data_dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| io_error("sync", data_dir, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::state::{PersistedHolder, STATE_FORMAT_VERSION};

    #[test]
    fn store_then_load_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let state = PersistedState {
            format_version: STATE_FORMAT_VERSION,
            revision: 42,
            holder: Some(PersistedHolder {
                region: "eastus".to_string(),
                epoch: 42,
                lease_id: 9,
                ttl_seconds: 10,
                acquired_at_ms: 1_700_000_000_000,
            }),
        };
        store(dir.path(), &state).unwrap();
        store(dir.path(), &state).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(state));
        assert!(!dir.path().join(TEMPORARY_FILE_NAME).exists());
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE_NAME), b"{\"format_version\":1,\"revis").unwrap();
        assert!(matches!(load(dir.path()), Err(WitnessError::Invalid(_))));
    }
}
