//! `tandem login`, `whoami`, `user`, `token`, `role` and `audit`: the
//! access API through [`tandem_client::TandemClient`], like every other
//! client command.

use std::io::Read;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{json, Value};
use tandem_core::model::{format_utc, Millis};

use crate::{config, ClientArgs, Refusal};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Log in with this user's password (read from stdin with
    /// --password-stdin, else prompted): a token is created for it.
    #[arg(long)]
    username: Option<String>,
    /// Read the password from stdin (with --username).
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Read the token to store from stdin (else --token or the environment's).
    #[arg(long, conflicts_with = "username")]
    token_stdin: bool,
    /// Store the token in ~/.tandem/config.toml instead of the nearest .tandem.toml.
    #[arg(long)]
    user_config: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (or, with --service, a service principal) and print a
    /// token for it (`--json`: {"name", "token"}).
    Create {
        name: String,
        /// Also set a password, read from stdin (for HTTP Basic logins).
        #[arg(long)]
        password_stdin: bool,
        /// A service principal: tokens only, no password.
        #[arg(long, conflicts_with = "password_stdin")]
        service: bool,
        /// Assign a role at once: ROLE or ROLE@WORKSPACE (repeatable).
        #[arg(long = "role", value_name = "ROLE[@WORKSPACE]")]
        roles: Vec<String>,
        /// Create no token.
        #[arg(long)]
        no_token: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List principals with their roles.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a principal, its tokens and its role assignments.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a principal: its password and tokens stop working.
    Disable {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enable a disabled principal again.
    Enable {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a user's password, read from stdin.
    Password {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token (for yourself, or --principal for admins); the secret
    /// is printed once.
    Create {
        #[arg(long)]
        principal: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Expire after this long: 30d, 12h, 90m, 3600s.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tokens (yours; --principal NAME or --all for admins).
    List {
        #[arg(long, conflicts_with = "all")]
        principal: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token by id: every region refuses it once the revocation
    /// reaches it.
    Revoke {
        token_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Assign ROLE to NAME, in --workspace W or for the whole deployment.
    Assign {
        name: String,
        role: String,
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List role assignments (all, a workspace's, or a principal's).
    List {
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove an assignment.
    Remove {
        name: String,
        role: String,
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only this workspace's records (name or id).
    #[arg(long)]
    workspace: Option<String>,
    /// Only records since: an RFC 3339 time, milliseconds since the epoch,
    /// or a duration ago (30m, 12h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only what this principal did.
    #[arg(long)]
    principal: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

fn read_stdin_secret(what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} from stdin"))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(Refusal::Usage(format!("no {what} on stdin")).into());
    }
    Ok(secret)
}

fn print(value: &Value, json: bool, text: impl FnOnce(&Value) -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text(value));
    }
    Ok(())
}

/// Parses `30d`, `12h`, `90m`, `3600s` (or a bare number of seconds).
pub(crate) fn parse_duration_seconds(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: i64 = number
        .parse()
        .map_err(|_| Refusal::Usage(format!("'{text}' is not a duration (30d, 12h, 90m, 3600s)")))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(Refusal::Usage(format!("'{text}' is not a duration (30d, 12h, 90m, 3600s)")).into()),
    };
    if value <= 0 {
        return Err(Refusal::Usage(format!("duration '{text}' must be positive")).into());
    }
    Ok(value.saturating_mul(scale))
}

fn roles_text(roles: &Value) -> String {
    let roles: Vec<String> = roles
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .map(|grant| match grant["workspace"].as_str() {
                    Some(workspace) => format!("{}@{workspace}", grant["role"].as_str().unwrap_or("?")),
                    None => grant["role"].as_str().unwrap_or("?").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if roles.is_empty() {
        "(no roles)".to_string()
    } else {
        roles.join(", ")
    }
}

pub async fn whoami(args: ClientArgs) -> anyhow::Result<()> {
    let target = args.resolve()?;
    let me = target.client.whoami().await?;
    print(&me, target.json, |me| {
        if me["authentication"] == json!(false) {
            format!(
                "{} runs without authentication: everyone may do everything",
                target.url
            )
        } else {
            format!(
                "{} ({}) — {}",
                me["name"].as_str().unwrap_or("?"),
                me["kind"].as_str().unwrap_or("?"),
                roles_text(&me["roles"])
            )
        }
    })
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let environment = config::Environment::current()?;
    let resolved = config::resolve(args.client.url.as_deref(), args.client.json, &environment)
        .map_err(|error| Refusal::Usage(format!("{error:#}")))?;
    let token = if let Some(username) = &args.username {
        let password = if args.password_stdin {
            read_stdin_secret("password")?
        } else {
            rpassword_prompt(&format!("Password for {username}: "))?
        };
        let client = tandem_client::TandemClient::with_credentials(
            &resolved.url,
            Some(&tandem_client::Credentials::Password {
                username: username.clone(),
                password,
            }),
        )?;
        let created = client
            .create_token(None, &format!("tandem login on {}", hostname()), None)
            .await?;
        created["token"]
            .as_str()
            .context("the server returned no token")?
            .to_string()
    } else if args.token_stdin {
        read_stdin_secret("token")?
    } else if let Some(token) = &args.client.token {
        token.clone()
    } else {
        match environment.credentials_variable {
            Some((tandem_client::Credentials::Token(token), _)) => token,
            _ => {
                return Err(Refusal::Usage(
                    "give --username (and a password), --token-stdin, --token, or TANDEM_TOKEN".to_string(),
                )
                .into())
            }
        }
    };
    // Prove the token before storing it.
    let client = tandem_client::TandemClient::with_credentials(
        &resolved.url,
        Some(&tandem_client::Credentials::Token(token.clone())),
    )?;
    let me = client.whoami().await?;
    let path = if args.user_config {
        let home = environment
            .home
            .clone()
            .ok_or_else(|| Refusal::Usage("no home directory ($HOME) for --user-config".to_string()))?;
        home.join(config::USER_FILE_PATH)
    } else {
        config::find_config_file(&environment.working_dir, None)
            .unwrap_or_else(|| environment.working_dir.join(config::PROJECT_FILE_NAME))
    };
    let mut file = if path.is_file() {
        config::load_config_file(&path)?
    } else {
        config::ClientConfig::default()
    };
    if file.url.is_none() {
        file.url = Some(resolved.url.clone());
    }
    file.token = Some(token);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    config::write_private(
        &path,
        &toml::to_string(&file).context("cannot encode the client config")?,
    )?;
    let report = json!({ "name": me["name"], "config": path.display().to_string(), "url": file.url });
    print(&report, resolved.json, |_| {
        format!(
            "Logged in to {} as {}; the token is in {} (readable by you only)",
            file.url.as_deref().unwrap_or("?"),
            me["name"].as_str().unwrap_or("?"),
            path.display()
        )
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "this host".to_string())
}

/// Reads a password from the terminal without echoing it.
fn rpassword_prompt(prompt: &str) -> anyhow::Result<String> {
    use std::io::Write;
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let echo_off = std::process::Command::new("stty")
        .arg("-echo")
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|status| status.success());
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if echo_off {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        eprintln!();
    }
    read.context("cannot read the password")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Refusal::Usage("no password given".to_string()).into());
    }
    Ok(password)
}

fn parse_role_spec(spec: &str) -> (String, Option<String>) {
    match spec.split_once('@') {
        Some((role, workspace)) => (role.to_string(), Some(workspace.to_string())),
        None => (spec.to_string(), None),
    }
}

pub async fn run_user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            name,
            password_stdin,
            service,
            roles,
            no_token,
            client,
        } => {
            let password = if password_stdin {
                Some(read_stdin_secret("password")?)
            } else {
                None
            };
            let target = client.resolve()?;
            let roles: Vec<_> = roles.iter().map(|spec| parse_role_spec(spec)).collect();
            let created = target
                .client
                .create_principal(
                    &name,
                    if service { "service" } else { "user" },
                    password.as_deref(),
                    !no_token,
                    &roles,
                )
                .await?;
            let report = json!({
                "name": name,
                "kind": created["principal"]["kind"],
                "token": created["token"],
                "token_id": created["token_id"],
                "roles": created["principal"]["roles"],
            });
            print(&report, target.json, |report| {
                let mut text = format!(
                    "Created {} {name} ({})",
                    report["kind"].as_str().unwrap_or("user"),
                    roles_text(&report["roles"])
                );
                if let Some(token) = report["token"].as_str() {
                    text.push_str(&format!(
                        "\nToken (shown once; store it now):\n  export MLFLOW_TRACKING_TOKEN={token}"
                    ));
                }
                text
            })
        }
        UserCommand::List { client } => {
            let target = client.resolve()?;
            let listed = target.client.list_principals().await?;
            print(&listed, target.json, |listed| {
                let mut lines = vec![format!("{:<24} {:<8} {:<9} ROLES", "NAME", "KIND", "STATE")];
                for principal in listed["principals"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "{:<24} {:<8} {:<9} {}",
                        principal["name"].as_str().unwrap_or("?"),
                        principal["kind"].as_str().unwrap_or("?"),
                        if principal["disabled"] == json!(true) {
                            "disabled"
                        } else {
                            "enabled"
                        },
                        roles_text(&principal["roles"])
                    ));
                }
                lines.join("\n")
            })
        }
        UserCommand::Delete { name, client } => {
            let target = client.resolve()?;
            let deleted = target.client.delete_principal(&name).await?;
            print(&deleted, target.json, |_| {
                format!("Deleted {name} with its tokens and role assignments")
            })
        }
        UserCommand::Disable { name, client } => set_disabled(name, client, true).await,
        UserCommand::Enable { name, client } => set_disabled(name, client, false).await,
        UserCommand::Password { name, client } => {
            let password = read_stdin_secret("password")?;
            let target = client.resolve()?;
            let updated = target
                .client
                .update_principal(&name, Some(Some(&password)), None)
                .await?;
            print(&updated, target.json, |_| format!("Set the password of {name}"))
        }
    }
}

async fn set_disabled(name: String, client: ClientArgs, disable: bool) -> anyhow::Result<()> {
    let target = client.resolve()?;
    let updated = target.client.update_principal(&name, None, Some(disable)).await?;
    print(&updated, target.json, |_| {
        format!("{} {name}", if disable { "Disabled" } else { "Enabled" })
    })
}

pub async fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            principal,
            description,
            expires_in,
            client,
        } => {
            let expires_in = expires_in.as_deref().map(parse_duration_seconds).transpose()?;
            let target = client.resolve()?;
            let created = target
                .client
                .create_token(principal.as_deref(), &description, expires_in)
                .await?;
            print(&created, target.json, |created| {
                format!(
                    "Token {} for {}{} (shown once; store it now):\n  export MLFLOW_TRACKING_TOKEN={}",
                    created["info"]["token_id"].as_str().unwrap_or("?"),
                    created["info"]["principal"].as_str().unwrap_or("?"),
                    created["info"]["expires_at"]
                        .as_i64()
                        .map(|at| format!(", expires {}", format_utc(at)))
                        .unwrap_or_default(),
                    created["token"].as_str().unwrap_or("?")
                )
            })
        }
        TokenCommand::List {
            principal,
            all,
            client,
        } => {
            let target = client.resolve()?;
            let filter = if all { Some("*") } else { principal.as_deref() };
            let listed = target.client.list_tokens(filter).await?;
            print(&listed, target.json, |listed| {
                let mut lines = vec![format!(
                    "{:<17} {:<20} {:<9} {:<21} {:<21} DESCRIPTION",
                    "ID", "PRINCIPAL", "STATE", "EXPIRES", "LAST USED"
                )];
                let when = |value: &Value| value.as_i64().map(format_utc).unwrap_or_else(|| "-".to_string());
                for token in listed["tokens"].as_array().into_iter().flatten() {
                    let state = if !token["revoked_at"].is_null() {
                        "revoked"
                    } else if token["expires_at"].as_i64().is_some_and(|at| at <= now_millis()) {
                        "expired"
                    } else {
                        "active"
                    };
                    lines.push(format!(
                        "{:<17} {:<20} {:<9} {:<21} {:<21} {}",
                        token["token_id"].as_str().unwrap_or("?"),
                        token["principal"].as_str().unwrap_or("?"),
                        state,
                        when(&token["expires_at"]),
                        when(&token["last_used_at"]),
                        token["description"].as_str().unwrap_or("")
                    ));
                }
                lines.join("\n")
            })
        }
        TokenCommand::Revoke { token_id, client } => {
            let target = client.resolve()?;
            let revoked = target.client.revoke_token(&token_id).await?;
            print(&revoked, target.json, |_| format!("Revoked token {token_id}"))
        }
    }
}

pub async fn run_role(command: RoleCommand) -> anyhow::Result<()> {
    match command {
        RoleCommand::Assign {
            name,
            role,
            workspace,
            client,
        } => {
            let target = client.resolve()?;
            let assigned = target
                .client
                .assign_role(&name, &role, workspace.as_deref())
                .await?;
            print(&assigned, target.json, |assigned| {
                format!(
                    "{name} holds {} {}",
                    assigned["role"].as_str().unwrap_or(&role),
                    scope_text(workspace.as_deref())
                )
            })
        }
        RoleCommand::Remove {
            name,
            role,
            workspace,
            client,
        } => {
            let target = client.resolve()?;
            let removed = target
                .client
                .remove_role(&name, &role, workspace.as_deref())
                .await?;
            print(&removed, target.json, |_| {
                format!(
                    "{name} no longer holds {role} {}",
                    scope_text(workspace.as_deref())
                )
            })
        }
        RoleCommand::List {
            workspace,
            principal,
            client,
        } => {
            let target = client.resolve()?;
            let listed = target
                .client
                .list_roles(principal.as_deref(), workspace.as_deref())
                .await?;
            print(&listed, target.json, |listed| {
                let mut lines = vec![format!("{:<24} {:<12} SCOPE", "PRINCIPAL", "ROLE")];
                for assignment in listed["assignments"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "{:<24} {:<12} {}",
                        assignment["principal"].as_str().unwrap_or("?"),
                        assignment["role"].as_str().unwrap_or("?"),
                        assignment["workspace"]
                            .as_str()
                            .map(|workspace| format!("workspace {workspace}"))
                            .unwrap_or_else(|| "deployment".to_string())
                    ));
                }
                lines.join("\n")
            })
        }
    }
}

fn scope_text(workspace: Option<&str>) -> String {
    match workspace {
        Some(workspace) => format!("in workspace {workspace}"),
        None => "for the whole deployment".to_string(),
    }
}

fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// `--since`: a time, or a duration ago.
fn parse_since(text: &str) -> anyhow::Result<Millis> {
    if let Some(at) = tandem_core::model::parse_utc(text) {
        return Ok(at);
    }
    let ago = parse_duration_seconds(text).map_err(|_| {
        Refusal::Usage(format!(
            "--since '{text}' is not a time (2026-11-22T10:39:25Z, milliseconds) or a duration ago (30m, 12h, 7d)"
        ))
    })?;
    Ok(now_millis() - ago * 1000)
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let target = args.client.resolve()?;
    let mut records = Box::pin(target.client.journal(0, args.workspace.as_deref(), None).await?);
    let mut printed = 0usize;
    while let Some(record) = records.next().await {
        let record = record?;
        if since.is_some_and(|since| record.recorded_at < since) {
            continue;
        }
        if let Some(principal) = &args.principal {
            if record.principal.as_deref() != Some(principal.as_str()) {
                continue;
            }
        }
        printed += 1;
        let entry = json!({
            "at": format_utc(record.recorded_at),
            "recorded_at": record.recorded_at,
            "principal": record.principal,
            "region": record.origin_region,
            "workspace_id": record.workspace_id,
            "action": record.change.kind(),
            "seq": record.seq,
            "change": record.change,
        });
        if target.json {
            println!("{}", serde_json::to_string(&entry)?);
        } else {
            println!(
                "{}  {:<20} {:<10} {:<26} {}",
                format_utc(record.recorded_at),
                record.principal.as_deref().unwrap_or("(anonymous)"),
                record.origin_region,
                record.change.kind(),
                if record.workspace_id.is_empty() {
                    "(deployment)".to_string()
                } else {
                    format!("workspace {}", record.workspace_id)
                }
            );
        }
    }
    if printed == 0 && !target.json {
        eprintln!("no journal record matches");
    }
    Ok(())
}
