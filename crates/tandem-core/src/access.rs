//! Who may do what: principals, built-in roles, role assignments and the
//! permissions they grant, Azure style (principal, role, scope).
//!
//! The model is deliberately small and closed: five built-in roles, two
//! kinds of scope (one workspace, or the whole deployment), and the
//! permissions routes declare. Everything here is pure; the store keeps the
//! assignments (journaled in the `access` class) and the HTTP layer asks
//! [`Grants::allows`] before running a handler.

use serde::{Deserialize, Serialize};

use crate::Error;

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Anyone, without credentials: liveness, readiness, version.
    Public,
    /// Any authenticated principal, whatever its roles: who am I, my own
    /// tokens and password, the list of workspaces.
    Authenticated,
    /// Read a workspace's data: tracking, registry, artifacts, files.
    Read,
    /// Change a workspace's tracking, registry and files.
    Write,
    /// Own a workspace: its role assignments, retention, quota, and
    /// deleting, recovering and purging what is in it.
    Manage,
    /// Run the deployment: status, failover, backups, restores, divergence,
    /// verification, diagnostics, the journal, workspace lifecycle.
    Operate,
    /// Everything, principals included.
    Administer,
    /// Region-to-region calls of the replication protocol: only the
    /// deployment's replication secret may make them (no role grants it).
    Replicate,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::Public,
        Permission::Authenticated,
        Permission::Read,
        Permission::Write,
        Permission::Manage,
        Permission::Operate,
        Permission::Administer,
        Permission::Replicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Public => "public",
            Permission::Authenticated => "authenticated",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Manage => "manage",
            Permission::Operate => "operate",
            Permission::Administer => "administer",
            Permission::Replicate => "replicate",
        }
    }

    /// Whether the permission is about one workspace's data (and so can be
    /// granted by a workspace-scoped assignment).
    pub fn workspace_scoped(self) -> bool {
        matches!(self, Permission::Read | Permission::Write | Permission::Manage)
    }
}

/// The built-in roles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub enum Role {
    /// Read everything in the scope.
    Reader,
    /// Reader, plus write tracking, registry and files.
    Contributor,
    /// Contributor, plus the workspace's role assignments, retention, and
    /// delete/recover/purge in the workspace.
    Owner,
    /// The deployment's operations (deployment scope only).
    Operator,
    /// Everything, principals included (deployment scope only).
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Reader,
        Role::Contributor,
        Role::Owner,
        Role::Operator,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "Reader",
            Role::Contributor => "Contributor",
            Role::Owner => "Owner",
            Role::Operator => "Operator",
            Role::Admin => "Admin",
        }
    }

    /// Parses a role name, case-insensitively; a precise error names the
    /// roles there are.
    pub fn parse(name: &str) -> Result<Role, Error> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "Unknown role '{name}'. Roles are {}.",
                    Role::ALL.map(Role::as_str).join(", ")
                ))
            })
    }

    /// Whether the role may be assigned at a workspace scope (the
    /// deployment's own roles may not).
    pub fn assignable_to_workspace(self) -> bool {
        matches!(self, Role::Reader | Role::Contributor | Role::Owner)
    }

    /// Whether holding the role grants `permission` (in the scope the role
    /// is assigned at).
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match permission {
            Public | Authenticated => true,
            Read => matches!(self, Role::Reader | Role::Contributor | Role::Owner | Role::Admin),
            Write => matches!(self, Role::Contributor | Role::Owner | Role::Admin),
            Manage => matches!(self, Role::Owner | Role::Admin),
            Operate => matches!(self, Role::Operator | Role::Admin),
            Administer => self == Role::Admin,
            // The regions' own credential only, not a role.
            Replicate => false,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One role assignment as a principal holds it: the role, and the workspace
/// (by name) it applies to, or None for the whole deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    pub role: Role,
    pub workspace: Option<String>,
}

/// Everything a principal holds: what a request is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    /// Whether `permission` is granted, for `workspace` (by name) when the
    /// route is about one workspace. A deployment-scoped assignment applies
    /// to every workspace; a workspace-scoped one only to its workspace and
    /// only for workspace permissions.
    pub fn allows(&self, permission: Permission, workspace: Option<&str>) -> bool {
        if matches!(permission, Permission::Public | Permission::Authenticated) {
            return true;
        }
        self.0.iter().any(|grant| {
            grant.role.grants(permission)
                && match (&grant.workspace, workspace) {
                    (None, _) => true,
                    (Some(scope), Some(workspace)) => permission.workspace_scoped() && scope == workspace,
                    (Some(_), None) => false,
                }
        })
    }

    pub fn is_admin(&self) -> bool {
        self.0
            .iter()
            .any(|grant| grant.role == Role::Admin && grant.workspace.is_none())
    }
}

/// A principal as the API shows it: never its password or token hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Principal {
    pub name: String,
    /// [`USER`] or [`SERVICE`].
    pub kind: String,
    pub has_password: bool,
    pub disabled: bool,
    pub created_at: crate::model::Millis,
    pub updated_at: crate::model::Millis,
    /// Its role assignments.
    pub roles: Vec<Grant>,
}

/// An API token as the API shows it: its id, never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub token_id: String,
    pub principal: String,
    pub description: String,
    pub created_at: crate::model::Millis,
    pub expires_at: Option<crate::model::Millis>,
    pub revoked_at: Option<crate::model::Millis>,
    /// When the region answering last saw it used.
    pub last_used_at: Option<crate::model::Millis>,
}

impl TokenInfo {
    /// Why the token cannot be used at `now`, if it cannot.
    pub fn unusable(&self, now: crate::model::Millis) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("revoked")
        } else if self.expires_at.is_some_and(|expires| expires <= now) {
            Some("expired")
        } else {
            None
        }
    }
}

/// One role assignment: (principal, role, scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleAssignment {
    pub principal: String,
    pub role: Role,
    /// The workspace's name, or None for the whole deployment.
    pub workspace: Option<String>,
}

/// What a backup keeps of principals, tokens and role assignments, hashes
/// included (never secrets), so that a restore into an empty deployment
/// brings back who may log in and what they may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessSnapshot {
    pub principals: Vec<PrincipalRecord>,
    pub tokens: Vec<TokenRecord>,
    pub roles: Vec<RoleAssignment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRecord {
    pub name: String,
    pub kind: String,
    /// The Argon2id PHC string.
    pub password_hash: Option<String>,
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_id: String,
    pub principal: String,
    /// The token's SHA-256.
    pub token_hash: String,
    pub description: String,
    pub expires_at: Option<crate::model::Millis>,
    pub revoked_at: Option<crate::model::Millis>,
}

/// The kinds of principal.
pub const USER: &str = "user";
pub const SERVICE: &str = "service";

/// Checks a principal's name: what people type and what appears in the
/// audit. Letters, digits and `._@-`, 1–128 characters, not starting with
/// `tandem:` (reserved for the server's own principals).
pub fn validate_principal_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if !valid {
        return Err(Error::invalid(format!(
            "Invalid principal name '{name}': use 1 to 128 letters, digits, '.', '_', '@' or '-'."
        )));
    }
    Ok(())
}

/// The shortest password accepted.
pub const MIN_PASSWORD_LENGTH: usize = 8;

pub fn validate_password(password: &str) -> Result<(), Error> {
    if password.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(Error::invalid(format!(
            "Password is too short: use at least {MIN_PASSWORD_LENGTH} characters."
        )));
    }
    if password.len() > 1024 {
        return Err(Error::invalid("Password is too long: use at most 1024 bytes."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[(Role, Option<&str>)]) -> Grants {
        Grants(
            list.iter()
                .map(|(role, ws)| Grant {
                    role: *role,
                    workspace: ws.map(str::to_string),
                })
                .collect(),
        )
    }

    #[test]
    fn workspace_roles_stay_in_their_workspace() {
        let owner_of_a = grants(&[(Role::Owner, Some("a"))]);
        assert!(owner_of_a.allows(Permission::Manage, Some("a")));
        assert!(owner_of_a.allows(Permission::Write, Some("a")));
        assert!(!owner_of_a.allows(Permission::Read, Some("b")));
        assert!(!owner_of_a.allows(Permission::Operate, None));
        assert!(!owner_of_a.allows(Permission::Read, None));
    }

    #[test]
    fn roles_nest_as_documented() {
        for (role, read, write, manage, operate, administer) in [
            (Role::Reader, true, false, false, false, false),
            (Role::Contributor, true, true, false, false, false),
            (Role::Owner, true, true, true, false, false),
            (Role::Operator, false, false, false, true, false),
            (Role::Admin, true, true, true, true, true),
        ] {
            let held = grants(&[(role, None)]);
            assert_eq!(held.allows(Permission::Read, Some("w")), read, "{role}");
            assert_eq!(held.allows(Permission::Write, Some("w")), write, "{role}");
            assert_eq!(held.allows(Permission::Manage, Some("w")), manage, "{role}");
            assert_eq!(held.allows(Permission::Operate, None), operate, "{role}");
            assert_eq!(held.allows(Permission::Administer, None), administer, "{role}");
            assert!(!held.allows(Permission::Replicate, None), "{role}");
        }
        assert!(Grants::default().allows(Permission::Authenticated, None));
        assert!(!Grants::default().allows(Permission::Read, Some("w")));
    }

    #[test]
    fn role_names_parse_case_insensitively_and_unknown_ones_are_named() {
        assert_eq!(Role::parse("contributor").unwrap(), Role::Contributor);
        let error = Role::parse("Superuser").unwrap_err();
        assert!(
            error.message.contains("Unknown role 'Superuser'"),
            "{}",
            error.message
        );
        assert!(error
            .message
            .contains("Reader, Contributor, Owner, Operator, Admin"));
    }

    #[test]
    fn principal_names_are_checked() {
        assert!(validate_principal_name("alice@example.com").is_ok());
        assert!(validate_principal_name("").is_err());
        assert!(validate_principal_name("tandem:replication").is_err());
        assert!(validate_principal_name("a b").is_err());
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
    }
}
