//! Where client commands find the server, so that no command hard-codes a
//! region: `--url` beats `TANDEM_URL`, which beats the client config file,
//! which beats [`DEFAULT_URL`].
//!
//! The config file is the nearest `.tandem.toml` in the working directory or
//! one of its parents (a project's, or the one `tandem up --dir DIR` writes
//! in `DIR`), else `~/.tandem/config.toml`. Its keys: `url` (the server or,
//! normally, the gateway) and `json` (whether commands print JSON unless
//! told otherwise). Unknown keys and malformed files are errors naming the
//! file: a typo must not silently send commands to another deployment.
//!
//! Everything reads the environment through [`Environment`], so tests give
//! their own working directory, home and variables.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The server a client command talks to when nothing says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:5000";
/// A project's (or a `tandem up` directory's) client config file.
pub const PROJECT_FILE_NAME: &str = ".tandem.toml";
/// The user's client config file, relative to the home directory.
pub const USER_FILE_PATH: &str = ".tandem/config.toml";
/// The environment variable naming the server.
pub const URL_VARIABLE: &str = "TANDEM_URL";

/// The contents of a client config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The server or gateway URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Print JSON unless a command says `--json=false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<bool>,
    /// The API token commands send (written by `tandem login` and `tandem
    /// up`; keep the file private).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// What the resolution reads from the process's surroundings.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Where the search for `.tandem.toml` starts.
    pub working_dir: PathBuf,
    /// Where `~/.tandem/config.toml` is looked for; none when unknown.
    pub home: Option<PathBuf>,
    /// The value of `TANDEM_URL`, if set and not empty.
    pub url_variable: Option<String>,
    /// Credentials from the environment: `TANDEM_TOKEN`, else
    /// `MLFLOW_TRACKING_TOKEN`, else `MLFLOW_TRACKING_USERNAME` and
    /// `MLFLOW_TRACKING_PASSWORD` (what the mlflow client reads).
    pub credentials_variable: Option<(tandem_client::Credentials, &'static str)>,
}

/// The credentials the environment gives, and the variable they came from.
fn credentials_from_environment() -> Option<(tandem_client::Credentials, &'static str)> {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    for name in ["TANDEM_TOKEN", "MLFLOW_TRACKING_TOKEN"] {
        if let Some(token) = variable(name) {
            return Some((tandem_client::Credentials::Token(token.trim().to_string()), name));
        }
    }
    match (
        variable("MLFLOW_TRACKING_USERNAME"),
        variable("MLFLOW_TRACKING_PASSWORD"),
    ) {
        (Some(username), Some(password)) => Some((
            tandem_client::Credentials::Password { username, password },
            "MLFLOW_TRACKING_USERNAME",
        )),
        _ => None,
    }
}

impl Environment {
    /// The running process's working directory, `$HOME` and `TANDEM_URL`.
    pub fn current() -> anyhow::Result<Self> {
        let working_dir = std::env::current_dir().context("cannot read the working directory")?;
        let home = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from);
        Ok(Environment {
            working_dir,
            home,
            url_variable: std::env::var(URL_VARIABLE).ok(),
            credentials_variable: credentials_from_environment(),
        })
    }
}

/// Where the URL in use came from, for messages that must say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    Flag,
    Variable,
    File(PathBuf),
    Default,
}

impl std::fmt::Display for UrlSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSource::Flag => write!(formatter, "--url"),
            UrlSource::Variable => write!(formatter, "{URL_VARIABLE}"),
            UrlSource::File(path) => write!(formatter, "{}", path.display()),
            UrlSource::Default => write!(formatter, "the default"),
        }
    }
}

/// The outcome of the resolution: what a client command uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub url: String,
    pub url_source: UrlSource,
    pub json: bool,
    /// What requests authenticate with: a `--token`, the environment's,
    /// else the config file's token.
    pub credentials: Option<tandem_client::Credentials>,
}

/// The client config file in force: the nearest `.tandem.toml` in
/// `working_dir` or a parent, else `home/.tandem/config.toml`, if either exists.
pub fn find_config_file(working_dir: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let project = working_dir
        .ancestors()
        .map(|directory| directory.join(PROJECT_FILE_NAME))
        .find(|candidate| candidate.is_file());
    project.or_else(|| {
        home.map(|home| home.join(USER_FILE_PATH))
            .filter(|candidate| candidate.is_file())
    })
}

/// Reads and checks one client config file; every error names it.
pub fn load_config_file(path: &Path) -> anyhow::Result<ClientConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the client config file {}", path.display()))?;
    let config: ClientConfig = toml::from_str(&text).map_err(|error| {
        anyhow::anyhow!(
            "client config file {} is not valid (keys: url, json, token): {}",
            path.display(),
            error.to_string().trim_end()
        )
    })?;
    if let Some(url) = &config.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "client config file {}: url '{url}' must start with http:// or https://",
                path.display()
            );
        }
    }
    Ok(config)
}

/// Resolves the URL and the JSON default of a client command from its flags
/// and `environment`. The config file is read whenever one exists, even if
/// flags decide everything, so a broken file is noticed at once.
pub fn resolve(
    flag_url: Option<&str>,
    flag_json: Option<bool>,
    environment: &Environment,
) -> anyhow::Result<Resolved> {
    let file = match find_config_file(&environment.working_dir, environment.home.as_deref()) {
        Some(path) => {
            let config = load_config_file(&path)?;
            Some((path, config))
        }
        None => None,
    };
    let variable = environment
        .url_variable
        .as_deref()
        .filter(|value| !value.trim().is_empty());
    let file_url = file
        .as_ref()
        .and_then(|(path, config)| config.url.clone().map(|url| (url, path.clone())));
    let (url, url_source) = if let Some(url) = flag_url {
        (url.to_string(), UrlSource::Flag)
    } else if let Some(url) = variable {
        (url.to_string(), UrlSource::Variable)
    } else if let Some((url, path)) = file_url {
        (url, UrlSource::File(path))
    } else {
        (DEFAULT_URL.to_string(), UrlSource::Default)
    };
    let file_json = file.as_ref().and_then(|(_, config)| config.json);
    let credentials = environment
        .credentials_variable
        .as_ref()
        .map(|(credentials, _)| credentials.clone())
        .or_else(|| {
            file.as_ref()
                .and_then(|(_, config)| config.token.clone())
                .map(tandem_client::Credentials::Token)
        });
    Ok(Resolved {
        url,
        url_source,
        json: flag_json.or(file_json).unwrap_or(false),
        credentials,
    })
}

/// Writes `dir/.tandem.toml` pointing client commands run in `dir` (or
/// below) at `url`, keeping a `json` setting already there.
/// With a `token`, commands send it; the file is always readable by its
/// owner only.
pub fn write_project_config(dir: &Path, url: &str, token: Option<&str>) -> anyhow::Result<PathBuf> {
    let path = dir.join(PROJECT_FILE_NAME);
    let previous = if path.is_file() {
        load_config_file(&path).ok()
    } else {
        None
    };
    let config = ClientConfig {
        url: Some(url.to_string()),
        json: previous.and_then(|previous| previous.json),
        token: token.map(str::to_string),
    };
    let text = format!(
        "# Written by `tandem up`: tandem commands run in this directory or below talk to this deployment.\n{}",
        toml::to_string(&config).context("cannot encode the client config")?
    );
    write_private(&path, &text)?;
    Ok(path)
}

/// Writes `text` to `path` readable by its owner only (it may hold a token).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: narrow it.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Layout {
        _root: tempfile::TempDir,
        home: PathBuf,
        project: PathBuf,
        nested: PathBuf,
    }

    /// `root/home` (the home directory) and `root/work/project/src/deep`.
    fn layout() -> Layout {
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("home");
        let project = root.path().join("work/project");
        let nested = project.join("src/deep");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&nested).unwrap();
        Layout {
            _root: root,
            home,
            project,
            nested,
        }
    }

    fn environment(layout: &Layout, working_dir: &Path, variable: Option<&str>) -> Environment {
        Environment {
            working_dir: working_dir.to_path_buf(),
            home: Some(layout.home.clone()),
            url_variable: variable.map(str::to_string),
            credentials_variable: None,
        }
    }

    fn write_user_config(layout: &Layout, text: &str) -> PathBuf {
        let path = layout.home.join(USER_FILE_PATH);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn without_any_setting_the_default_url_is_used() {
        let layout = layout();
        let resolved = resolve(None, None, &environment(&layout, &layout.nested, None)).unwrap();
        assert_eq!(resolved.url, DEFAULT_URL);
        assert_eq!(resolved.url_source, UrlSource::Default);
        assert!(!resolved.json);
    }

    #[test]
    fn the_nearest_project_file_wins_over_farther_ones_and_the_user_file() {
        let layout = layout();
        write_user_config(&layout, "url = \"http://user:1\"\n");
        let outer = layout.project.parent().unwrap().join(PROJECT_FILE_NAME);
        std::fs::write(&outer, "url = \"http://outer:1\"\n").unwrap();
        let inner = layout.project.join(PROJECT_FILE_NAME);
        std::fs::write(&inner, "url = \"http://project:1\"\njson = true\n").unwrap();

        let resolved = resolve(None, None, &environment(&layout, &layout.nested, None)).unwrap();
        assert_eq!(resolved.url, "http://project:1");
        assert_eq!(resolved.url_source, UrlSource::File(inner.clone()));
        assert!(resolved.json);

        // Above the project, the outer file is the nearest.
        let above = layout.project.parent().unwrap();
        let resolved = resolve(None, None, &environment(&layout, above, None)).unwrap();
        assert_eq!(resolved.url, "http://outer:1");
    }

    #[test]
    fn the_user_file_applies_when_no_project_file_exists() {
        let layout = layout();
        let user = write_user_config(&layout, "url = \"http://user:1\"\n");
        assert_eq!(
            find_config_file(&layout.nested, Some(&layout.home)),
            Some(user.clone())
        );
        let resolved = resolve(None, None, &environment(&layout, &layout.nested, None)).unwrap();
        assert_eq!(resolved.url, "http://user:1");
        assert_eq!(resolved.url_source, UrlSource::File(user));
        // Without a home, there is no user file.
        assert_eq!(find_config_file(&layout.nested, None), None);
    }

    #[test]
    fn flag_beats_variable_beats_file_beats_default() {
        let layout = layout();
        std::fs::write(
            layout.project.join(PROJECT_FILE_NAME),
            "url = \"http://file:1\"\n",
        )
        .unwrap();
        let with_variable = environment(&layout, &layout.nested, Some("http://variable:1"));

        let resolved = resolve(Some("http://flag:1"), None, &with_variable).unwrap();
        assert_eq!(
            (resolved.url.as_str(), resolved.url_source),
            ("http://flag:1", UrlSource::Flag)
        );

        let resolved = resolve(None, None, &with_variable).unwrap();
        assert_eq!(
            (resolved.url.as_str(), resolved.url_source),
            ("http://variable:1", UrlSource::Variable)
        );

        // An empty variable counts as unset.
        let empty_variable = environment(&layout, &layout.nested, Some(""));
        let resolved = resolve(None, None, &empty_variable).unwrap();
        assert_eq!(resolved.url, "http://file:1");
    }

    #[test]
    fn a_file_without_url_still_sets_the_json_default_and_the_flag_overrides_it() {
        let layout = layout();
        std::fs::write(layout.project.join(PROJECT_FILE_NAME), "json = true\n").unwrap();
        let env = environment(&layout, &layout.project, None);
        let resolved = resolve(None, None, &env).unwrap();
        assert_eq!(resolved.url, DEFAULT_URL);
        assert!(resolved.json);
        assert!(!resolve(None, Some(false), &env).unwrap().json);
        assert!(
            resolve(None, Some(true), &environment(&layout, &layout.home, None))
                .unwrap()
                .json
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_file() {
        let layout = layout();
        let path = layout.project.join(PROJECT_FILE_NAME);
        std::fs::write(&path, "url = \"http://file:1\"\nurI = \"typo\"\n").unwrap();
        let error = resolve(None, None, &environment(&layout, &layout.nested, None)).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("urI"), "{message}");
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file_even_when_a_flag_decides() {
        let layout = layout();
        let path = write_user_config(&layout, "url = http://unquoted\n");
        let error = resolve(
            Some("http://flag:1"),
            None,
            &environment(&layout, &layout.nested, None),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains(&path.display().to_string()));

        let path = write_user_config(&layout, "json = \"yes\"\n");
        let error = resolve(None, None, &environment(&layout, &layout.nested, None)).unwrap_err();
        assert!(format!("{error:#}").contains(&path.display().to_string()));

        let path = write_user_config(&layout, "url = \"127.0.0.1:5000\"\n");
        let error = resolve(None, None, &environment(&layout, &layout.nested, None)).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains(&path.display().to_string()) && message.contains("http://"));
    }

    #[test]
    fn a_directory_named_like_the_file_is_not_a_config_file() {
        let layout = layout();
        std::fs::create_dir_all(layout.project.join(PROJECT_FILE_NAME)).unwrap();
        assert_eq!(find_config_file(&layout.nested, Some(&layout.home)), None);
    }

    #[test]
    fn the_file_tandem_up_writes_resolves_to_its_url_and_keeps_json() {
        let layout = layout();
        let path = write_project_config(&layout.project, "http://127.0.0.1:5080", None).unwrap();
        let resolved = resolve(None, None, &environment(&layout, &layout.nested, None)).unwrap();
        assert_eq!(resolved.url, "http://127.0.0.1:5080");
        assert_eq!(resolved.url_source, UrlSource::File(path.clone()));

        std::fs::write(&path, "url = \"http://old:1\"\njson = true\n").unwrap();
        write_project_config(&layout.project, "http://127.0.0.1:5081", None).unwrap();
        assert_eq!(
            load_config_file(&path).unwrap(),
            ClientConfig {
                url: Some("http://127.0.0.1:5081".to_string()),
                json: Some(true),
                token: None,
            }
        );
    }
}
