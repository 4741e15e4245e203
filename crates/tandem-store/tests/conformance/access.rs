//! Principals, tokens and role assignments, and the write probe.

use super::*;

/// Principals, tokens and role assignments: validated, journaled as
/// deployment-wide records of the `access` class carrying who wrote them,
/// and every change advances the generation credential caches watch.
pub async fn principals_tokens_and_roles(harness: &support::Harness) {
    use tandem_core::access::Role;
    let store = harness.store.as_ref();
    let start = store.journal_position().await.unwrap();
    let generation = store.access_generation();
    let alice = tandem_store::actor::scope(
        Some("root".into()),
        store.create_principal("alice", "user", Some("$argon2id$h".into())),
    )
    .await
    .unwrap();
    assert!(alice.has_password && !alice.disabled && alice.roles.is_empty());
    assert!(store.access_generation() > generation);
    assert_eq!(
        store.password_hash("alice").await.unwrap().as_deref(),
        Some("$argon2id$h")
    );
    // Precise refusals, nothing written.
    let head = store.journal_position().await.unwrap().head;
    for error in [
        store.create_principal("alice", "user", None).await.unwrap_err(),
        store
            .create_principal("bad name", "user", None)
            .await
            .unwrap_err(),
        store.create_principal("svc", "robot", None).await.unwrap_err(),
        store.assign_role("nobody", Role::Reader, None).await.unwrap_err(),
        store
            .assign_role("alice", Role::Operator, Some("default"))
            .await
            .unwrap_err(),
        store
            .assign_role("alice", Role::Reader, Some("no-such-workspace"))
            .await
            .unwrap_err(),
        store.remove_role("alice", Role::Reader, None).await.unwrap_err(),
        store.revoke_token("no-such-token").await.unwrap_err(),
        store
            .create_token("tx", "alice", "h", "", Some(1))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(error, tandem_store::StoreError::Domain(_)), "{error:?}");
    }
    assert_eq!(store.journal_position().await.unwrap().head, head);

    // Roles at both scopes; assigning twice is a no-op.
    store.create_workspace("team", "").await.unwrap();
    store
        .assign_role("alice", Role::Owner, Some("team"))
        .await
        .unwrap();
    store
        .assign_role("alice", Role::Owner, Some("team"))
        .await
        .unwrap();
    store.assign_role("alice", Role::Reader, None).await.unwrap();
    let held = store.principal("alice").await.unwrap().unwrap().roles;
    assert_eq!(held.len(), 2, "{held:?}");
    let grants = tandem_core::access::Grants(held);
    assert!(grants.allows(tandem_core::access::Permission::Manage, Some("team")));
    assert!(!grants.allows(tandem_core::access::Permission::Write, Some("default")));
    assert_eq!(store.role_assignments(None, Some("team")).await.unwrap().len(), 1);
    // A deleted workspace takes no new assignment.
    store.delete_workspace("team").await.unwrap();
    let error = store
        .assign_role("alice", Role::Reader, Some("team"))
        .await
        .unwrap_err();
    assert!(format!("{error:?}").contains("deleted"), "{error:?}");

    // Tokens: found by hash, revoked, listed without secrets.
    let token = store
        .create_token("tok1", "alice", "hash-of-secret", "laptop", None)
        .await
        .unwrap();
    assert_eq!(token.principal, "alice");
    let found = store.token_by_hash("hash-of-secret").await.unwrap().unwrap();
    assert_eq!(found.token_id, "tok1");
    assert!(found.unusable(0).is_none());
    let before = store.access_generation();
    let revoked = store.revoke_token("tok1").await.unwrap();
    assert!(revoked.revoked_at.is_some() && revoked.unusable(0) == Some("revoked"));
    assert!(
        store.access_generation() > before,
        "revocation empties credential caches"
    );
    store.touch_token("tok1", 42).await.unwrap();
    assert_eq!(store.token("tok1").await.unwrap().unwrap().last_used_at, Some(42));

    // Disabling, then deleting takes tokens and assignments along.
    store.set_principal_disabled("alice", true).await.unwrap();
    assert!(store.principal("alice").await.unwrap().unwrap().disabled);
    store.delete_principal("alice").await.unwrap();
    assert!(store.principal("alice").await.unwrap().is_none());
    assert!(store.token_by_hash("hash-of-secret").await.unwrap().is_none());
    assert!(store
        .role_assignments(Some("alice"), None)
        .await
        .unwrap()
        .is_empty());

    // Journaled, deployment-wide, in the access class, with their author.
    let records = store.journal_after(start.head, None, 1000).await.unwrap();
    let first = records
        .iter()
        .find(|r| r.change.kind() == "principal_created")
        .unwrap();
    assert_eq!(first.workspace_id, tandem_core::journal::DEPLOYMENT_RECORD);
    assert_eq!(first.principal.as_deref(), Some("root"));
    assert_eq!(
        first.change.asset_class(),
        Some(tandem_core::journal::AssetClass::Access)
    );
    for kind in [
        "role_assigned",
        "token_created",
        "token_revoked",
        "principal_disabled",
        "principal_deleted",
    ] {
        assert!(
            records.iter().any(|r| r.change.kind() == kind),
            "{kind} journaled"
        );
    }
}

/// `tandem doctor`'s proof that the database takes writes: a committed
/// write each time, yet nothing a replica or a backup would see.
pub async fn the_write_probe_commits_without_journaling_or_changing_state(harness: &support::Harness) {
    let store = harness.store.as_ref();
    let before = store.journal_position().await.unwrap();
    let dump = store.dump_state().await.unwrap();
    store.probe_write().await.unwrap();
    store.probe_write().await.unwrap();
    assert_eq!(store.journal_position().await.unwrap().head, before.head);
    assert_eq!(store.dump_state().await.unwrap(), dump);
    // Writes go on as before around it.
    store.create_workspace("after-probe", "").await.unwrap();
    assert!(store.journal_position().await.unwrap().head > before.head);
}
