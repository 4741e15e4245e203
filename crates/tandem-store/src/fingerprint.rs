//! Fingerprints of a workspace's content, for proving replicas equal
//! (`tandem verify`). A region reads, in one consistent snapshot, which
//! changes it holds of each workspace and class (`applied`: per origin
//! region, the highest change and how many) and a digest of every state
//! table's rows of that workspace. Two regions that hold the same changes
//! must hold the same rows; where digests differ, the rows' own digests
//! name the objects that differ.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Which changes of one workspace's class a region holds: for each origin
/// region, (highest `origin_seq`, number of records). Equal in two regions
/// exactly when they applied the same changes.
pub type Applied = BTreeMap<String, (i64, i64)>;

/// The class name of the workspace's own record (`workspaces` table), whose
/// changes have no asset class.
pub const WORKSPACE_CLASS: &str = "workspace";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDigest {
    pub rows: i64,
    /// sha256 over the sorted rows' keys and digests.
    pub digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassFingerprint {
    pub applied: Applied,
    pub tables: BTreeMap<String, TableDigest>,
}

/// An artifact or file the workspace's rows name, with the digest the
/// metadata records for its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRow {
    /// `artifacts` or `files`.
    pub area: String,
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceFingerprint {
    pub workspace_id: String,
    pub name: String,
    /// By class: `workspace`, `tracking`, `registry`, `files`.
    pub classes: BTreeMap<String, ClassFingerprint>,
    /// What the storage should hold, read in the same snapshot (for the
    /// caller that digests the stored bytes; not sent between regions).
    #[serde(default, skip_serializing)]
    pub content: Vec<ContentRow>,
}

/// One row of a table: its key (the primary key's values joined by `/`,
/// made unique with `#n` where a table allows equal keys) and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowDigest {
    pub key: String,
    pub digest: String,
}

/// The rows of one table of one workspace, with the class's `applied` read
/// in the same snapshot (rows are only comparable between regions whose
/// `applied` is equal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub applied: Applied,
    pub rows: Vec<RowDigest>,
}

/// The digest of a row's canonical JSON text.
pub fn digest_row(values: &serde_json::Value) -> String {
    hex::encode(&Sha256::digest(values.to_string().as_bytes())[..12])
}

/// Sorts rows, makes equal keys unique, and returns the table's digest.
pub fn seal(rows: &mut [RowDigest]) -> TableDigest {
    rows.sort_by(|a, b| (&a.key, &a.digest).cmp(&(&b.key, &b.digest)));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows.iter_mut() {
        let count = seen.entry(row.key.clone()).or_default();
        if *count > 0 {
            row.key = format!("{}#{count}", row.key);
        }
        *count += 1;
    }
    let mut hasher = Sha256::new();
    for row in rows.iter() {
        hasher.update(row.key.as_bytes());
        hasher.update(b"\x00");
        hasher.update(row.digest.as_bytes());
        hasher.update(b"\n");
    }
    TableDigest {
        rows: rows.len() as i64,
        digest: hex::encode(hasher.finalize()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, digest: &str) -> RowDigest {
        RowDigest {
            key: key.into(),
            digest: digest.into(),
        }
    }

    #[test]
    fn sealing_is_order_independent_and_names_duplicates() {
        let mut one = vec![row("b", "2"), row("a", "1"), row("a", "0")];
        let mut two = vec![row("a", "1"), row("a", "0"), row("b", "2")];
        assert_eq!(seal(&mut one), seal(&mut two));
        assert_eq!(
            one.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["a", "a#1", "b"]
        );
        let mut changed = vec![row("a", "1"), row("a", "0"), row("b", "3")];
        assert_ne!(seal(&mut changed).digest, seal(&mut one.clone()).digest);
    }
}
