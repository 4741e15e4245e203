//! Applying records of multi-writer (`hot-hot`) classes: each register the
//! change writes is merged with the version held here by the rules of
//! [`tandem_core::merge`], the parts that win are applied, and every
//! conflict is recorded with both sides.
//!
//! It runs for local writes (which always apply: they saw everything here,
//! and only their versions are recorded), for records from other regions,
//! and for replays, with the same inputs in the same order, so a replayed
//! journal rebuilds the same state and the same conflicts. Records without a
//! causal context (`seen`) are not multi-writer and apply as they are.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};
use tandem_core::journal::{Change, JournalRecord};
use tandem_core::merge::{self, Conflict, ConflictSide, Op, Outcome, Version};

use super::apply;
use crate::error::{StoreError, StoreResult};

/// Applies `record`, merging it if it belongs to a multi-writer class.
pub(crate) async fn apply_record(tx: &mut AnyConnection, record: &JournalRecord) -> StoreResult<()> {
    if record.seen.is_none() {
        return apply::apply(tx, &record.workspace_id, &record.change).await;
    }
    let workspace_id = record.workspace_id.as_str();
    let touches = merge::touches(&record.change);
    // Written to an item another region purged concurrently: none of it
    // applies (see `merge::owners`), and each register it writes is a
    // conflict the purge won, as the region that purged after applying it
    // records too.
    let owners = merge::owners(&record.change);
    if let Some(purge) = deleted_parent(tx, workspace_id, &owners, &Version::of(record, Op::Write)).await? {
        for touch in &touches {
            let incoming = Version::of(record, touch.op);
            if !purge.saw(&incoming) {
                record_conflict(tx, record, &touch.key, &purge, &incoming).await?;
            }
        }
        return Ok(());
    }
    let mut applies: BTreeMap<String, bool> = BTreeMap::new();
    let mut conflicts: Vec<(String, Version, Version)> = Vec::new();
    for touch in &touches {
        let incoming = Version::of(record, touch.op);
        if let Some(delete) = deleted_parent(tx, workspace_id, &touch.parents, &incoming).await? {
            // The object this write goes into was deleted: concurrently (the
            // delete wins) or, seen from the deleter, after it (superseded).
            if !delete.saw(&incoming) {
                conflicts.push((touch.key.clone(), delete, incoming));
            }
            applies.insert(touch.key.clone(), false);
            continue;
        }
        let held = register(tx, workspace_id, &touch.key).await?;
        let outcome = merge::decide(&incoming, held.as_ref());
        match (outcome, held) {
            (Outcome::Wins, Some(held)) => conflicts.push((touch.key.clone(), incoming.clone(), held)),
            (Outcome::Loses, Some(held)) => conflicts.push((touch.key.clone(), held, incoming.clone())),
            _ => {}
        }
        if outcome.applies() {
            set_register(tx, workspace_id, &touch.key, &incoming).await?;
            if touch.op == Op::Delete {
                for (inner, version) in registers_inside(tx, workspace_id, &touch.key).await? {
                    if !incoming.saw(&version) && !version.saw(&incoming) {
                        conflicts.push((inner, incoming.clone(), version));
                    }
                }
            }
        }
        applies.insert(touch.key.clone(), outcome.applies());
    }

    let keep = |key: &str| applies.get(key).copied().unwrap_or(true);
    match &record.change {
        Change::RegisteredModelCreated {
            name,
            description,
            user_id,
            tags,
            time,
        } if model_exists(tx, workspace_id, name).await? => {
            // Created concurrently in two regions: one model, whose fields
            // come from the winning creation, whose tags merge one by one, and
            // whose last update is the later of the two, whichever came first.
            sqlx::query(
                "UPDATE registered_models SET last_updated_time = CASE WHEN last_updated_time > $1 THEN last_updated_time ELSE $1 END WHERE workspace_id = $2 AND name = $3",
            )
            .bind(time)
            .bind(workspace_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if keep(&merge::registered_model_key(name)) {
                sqlx::query(
                    "UPDATE registered_models SET description = $1, user_id = $2, creation_time = $3 WHERE workspace_id = $4 AND name = $5",
                )
                .bind(description)
                .bind(user_id)
                .bind(time)
                .bind(workspace_id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            for tag in tags
                .iter()
                .filter(|tag| keep(&format!("rm/{name}/tag/{}", tag.key)))
            {
                let change = Change::RegisteredModelTagSet {
                    name: name.clone(),
                    tag: tag.clone(),
                };
                apply::apply(tx, workspace_id, &change).await?;
            }
        }
        Change::ExperimentCreated { .. } | Change::ExperimentRenamed { .. } => {
            if let Some(change) = merge::retain(&record.change, &keep) {
                let change = claim_experiment_name(tx, record, change, &mut conflicts).await?;
                apply::apply(tx, workspace_id, &change).await?;
            }
        }
        change => {
            if let Some(change) = merge::retain(change, &keep) {
                apply::apply(tx, workspace_id, &change).await?;
            }
        }
    }
    for (register, winner, loser) in conflicts {
        record_conflict(tx, record, &register, &winner, &loser).await?;
    }
    Ok(())
}

/// Experiment names are unique. When a merged creation or rename takes a
/// name another experiment holds, the two claims were concurrent (the writer
/// would have been refused otherwise): the later claim keeps the name and the
/// other experiment is renamed to [`merge::conflict_name`], in every region.
async fn claim_experiment_name(
    tx: &mut AnyConnection,
    record: &JournalRecord,
    change: Change,
    conflicts: &mut Vec<(String, Version, Version)>,
) -> StoreResult<Change> {
    let workspace_id = record.workspace_id.as_str();
    let (experiment_id, name) = match &change {
        Change::ExperimentCreated {
            experiment_id, name, ..
        }
        | Change::ExperimentRenamed {
            experiment_id, name, ..
        } => (experiment_id.clone(), name.clone()),
        _ => return Ok(change),
    };
    let claim = merge::experiment_name_claim(&name);
    let incoming = Version::of(record, Op::Write);
    let holder: Option<String> = sqlx::query_scalar(
        "SELECT experiment_id FROM experiments WHERE workspace_id = $1 AND name = $2 AND experiment_id <> $3",
    )
    .bind(workspace_id)
    .bind(&name)
    .bind(&experiment_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(holder) = holder else {
        set_register(tx, workspace_id, &claim, &incoming).await?;
        return Ok(change);
    };
    let held = register(tx, workspace_id, &claim).await?;
    let incoming_wins = match &held {
        Some(held) => merge::decide(&incoming, Some(held)).applies(),
        None => false,
    };
    if incoming_wins {
        let renamed = Change::ExperimentRenamed {
            experiment_id: holder.clone(),
            name: merge::conflict_name(&name, &holder),
            // Time 0 leaves its last update time as it is: the rename is a
            // consequence of merging, identical in every region.
            time: 0,
        };
        apply::apply(tx, workspace_id, &renamed).await?;
        if let Some(held) = held {
            conflicts.push((claim.clone(), incoming.clone(), held));
        }
        set_register(tx, workspace_id, &claim, &incoming).await?;
        Ok(change)
    } else {
        if let Some(held) = held {
            conflicts.push((claim, held, incoming));
        }
        let renamed = merge::conflict_name(&name, &experiment_id);
        Ok(match change {
            Change::ExperimentCreated {
                experiment_id,
                artifact_location,
                tags,
                time,
                ..
            } => Change::ExperimentCreated {
                experiment_id,
                name: renamed,
                artifact_location,
                tags,
                time,
            },
            Change::ExperimentRenamed {
                experiment_id, time, ..
            } => Change::ExperimentRenamed {
                experiment_id,
                name: renamed,
                time,
            },
            other => other,
        })
    }
}

async fn model_exists(tx: &mut AnyConnection, workspace_id: &str, name: &str) -> StoreResult<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM registered_models WHERE workspace_id = $1 AND name = $2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(found.is_some())
}

/// The tombstone of a parent object the incoming write did not see, if any.
async fn deleted_parent(
    tx: &mut AnyConnection,
    workspace_id: &str,
    parents: &[String],
    incoming: &Version,
) -> StoreResult<Option<Version>> {
    for parent in parents {
        if let Some(held) = register(tx, workspace_id, parent).await? {
            if held.deleted && !incoming.saw(&held) {
                return Ok(Some(held));
            }
        }
    }
    Ok(None)
}

async fn register(
    tx: &mut AnyConnection,
    workspace_id: &str,
    register: &str,
) -> StoreResult<Option<Version>> {
    let version: Option<String> =
        sqlx::query_scalar("SELECT version FROM merge_registers WHERE workspace_id = $1 AND register = $2")
            .bind(workspace_id)
            .bind(register)
            .fetch_optional(&mut *tx)
            .await?;
    version
        .map(|version| decode_version(register, &version))
        .transpose()
}

fn decode_version(register: &str, text: &str) -> StoreResult<Version> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("merge register {register}: {error}")))
}

async fn set_register(
    tx: &mut AnyConnection,
    workspace_id: &str,
    register: &str,
    version: &Version,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO merge_registers (workspace_id, register, version) VALUES ($1, $2, $3) \
         ON CONFLICT (workspace_id, register) DO UPDATE SET version = excluded.version",
    )
    .bind(workspace_id)
    .bind(register)
    .bind(serde_json::to_string(version).expect("versions encode"))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The registers a hard delete of `object` removes with it: everything
/// inside a registered model (its tags, aliases and versions) or a version.
async fn registers_inside(
    tx: &mut AnyConnection,
    workspace_id: &str,
    object: &str,
) -> StoreResult<Vec<(String, Version)>> {
    let prefixes: Vec<String> = if let Some(name) = object.strip_prefix("rm/") {
        vec![format!("rm/{name}/"), format!("mv/{name}/")]
    } else if ["mv/", "run/", "lm/", "exp/"]
        .iter()
        .any(|kind| object.starts_with(kind))
    {
        // Purged runs, logged models and experiments (format 3) hold
        // registers inside them too.
        vec![format!("{object}/")]
    } else {
        return Ok(Vec::new());
    };
    let mut inside = Vec::new();
    for prefix in prefixes {
        let rows = sqlx::query(
            "SELECT register, version FROM merge_registers WHERE workspace_id = $1 AND substr(register, 1, CAST($2 AS INTEGER)) = $3",
        )
        .bind(workspace_id)
        .bind(prefix.chars().count() as i64)
        .bind(&prefix)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let register: String = row.try_get("register")?;
            let version = decode_version(&register, &row.try_get::<String, _>("version")?)?;
            if !version.deleted {
                inside.push((register, version));
            }
        }
    }
    Ok(inside)
}

async fn journaled_change(
    tx: &mut AnyConnection,
    version: &Version,
    incoming: &JournalRecord,
) -> StoreResult<Option<Change>> {
    if version.origin_region == incoming.origin_region && version.origin_seq == incoming.origin_seq {
        return Ok(Some(incoming.change.clone()));
    }
    let row = sqlx::query("SELECT format, payload FROM journal WHERE origin_region = $1 AND origin_seq = $2")
        .bind(&version.origin_region)
        .bind(version.origin_seq)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let format: i32 = row.try_get("format")?;
    let payload: String = row.try_get("payload")?;
    Ok(JournalRecord::decode_change(format, &payload).ok())
}

async fn record_conflict(
    tx: &mut AnyConnection,
    record: &JournalRecord,
    register: &str,
    winner: &Version,
    loser: &Version,
) -> StoreResult<()> {
    let resolution = if register.starts_with("expname/") {
        "name taken: the losing experiment was renamed"
    } else {
        Conflict::resolution(winner, loser)
    };
    let side = |version: &Version, change: Option<Change>| ConflictSide {
        origin_region: version.origin_region.clone(),
        origin_seq: version.origin_seq,
        hlc: version.hlc,
        change,
    };
    let winner_change = journaled_change(tx, winner, record).await?;
    let loser_change = journaled_change(tx, loser, record).await?;
    let id = Conflict::derive_id(&record.workspace_id, register, winner, loser);
    sqlx::query(
        "INSERT INTO conflicts (conflict_id, workspace_id, register, resolution, winner, loser, detected_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (conflict_id) DO NOTHING",
    )
    .bind(&id)
    .bind(&record.workspace_id)
    .bind(register)
    .bind(resolution)
    .bind(serde_json::to_string(&side(winner, winner_change)).expect("conflict sides encode"))
    .bind(serde_json::to_string(&side(loser, loser_change)).expect("conflict sides encode"))
    .bind(record.recorded_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The conflicts recorded here, newest first.
pub(crate) async fn list_conflicts(
    pool: &sqlx::AnyPool,
    workspace_id: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<Conflict>> {
    let rows = sqlx::query(
        "SELECT conflict_id, workspace_id, register, resolution, winner, loser, detected_at FROM conflicts \
         WHERE ($1 = '' OR workspace_id = $1) ORDER BY detected_at DESC, conflict_id LIMIT $2",
    )
    .bind(workspace_id.unwrap_or(""))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let side = |column: &str| -> StoreResult<ConflictSide> {
                let text: String = row.try_get(column)?;
                serde_json::from_str(&text)
                    .map_err(|error| StoreError::Corrupt(format!("conflict {column}: {error}")))
            };
            Ok(Conflict {
                id: row.try_get("conflict_id")?,
                workspace_id: row.try_get("workspace_id")?,
                register: row.try_get("register")?,
                resolution: row.try_get("resolution")?,
                winner: side("winner")?,
                loser: side("loser")?,
                detected_at: row.try_get("detected_at")?,
            })
        })
        .collect()
}
