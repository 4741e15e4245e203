//! Which backup repositories a request may name: the ones the deployment
//! configures (`[backup] url` of the deployment file, the region's
//! `backup_url`) and an explicit allow-list (`backup_repositories`,
//! `TANDEM_BACKUP_REPOSITORIES`). A request never chooses where the server
//! writes, reads or connects beyond that, and never brings object-store
//! credentials or endpoints: those come from the server's configuration
//! and environment.

use crate::error::BackupError;

/// The repositories requests may use.
#[derive(Debug, Clone, Default)]
pub struct RepositoryPolicy {
    allowed: Vec<String>,
}

fn normalized(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

impl RepositoryPolicy {
    /// Requests may use each of `allowed` and anything under it.
    pub fn new(allowed: impl IntoIterator<Item = String>) -> Self {
        let mut allowed: Vec<String> = allowed
            .into_iter()
            .map(|url| normalized(&url))
            .filter(|url| !url.is_empty())
            .collect();
        allowed.sort();
        allowed.dedup();
        RepositoryPolicy { allowed }
    }

    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Refuses `url` unless it is an allowed repository or lies under one
    /// (by whole path segments, without `.` or `..` segments).
    pub fn check(&self, url: &str) -> Result<(), BackupError> {
        let url = normalized(url);
        let traverses = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(&url)
            .split('/')
            .any(|segment| segment == ".." || segment == ".");
        let inside = !traverses
            && self
                .allowed
                .iter()
                .any(|allowed| url == *allowed || url.starts_with(&format!("{allowed}/")));
        if inside {
            return Ok(());
        }
        Err(BackupError::permission(if self.allowed.is_empty() {
            format!(
                "backup repository '{url}' is not allowed: no backup repository is configured on this server \
                 (set `[backup] url` in the deployment file, or `backup_repositories` / TANDEM_BACKUP_REPOSITORIES \
                 in the server's configuration)"
            )
        } else {
            format!(
                "backup repository '{url}' is not allowed: use one of {} (or a path under one); the server's \
                 configuration (`backup_repositories`, TANDEM_BACKUP_REPOSITORIES) lists them",
                self.allowed.join(", ")
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_repositories_and_what_lies_under_them() {
        let policy = RepositoryPolicy::new([
            "s3://backups/prod/".to_string(),
            "file:///srv/backups".to_string(),
        ]);
        for url in [
            "s3://backups/prod",
            "s3://backups/prod/eu",
            "file:///srv/backups/",
            "file:///srv/backups/a/b",
        ] {
            assert!(policy.check(url).is_ok(), "{url}");
        }
        for url in [
            "s3://backups/production",
            "s3://backups",
            "file:///srv/backups/../etc",
            "file:///srv/backupsx",
            "file:///etc",
            "s3://evil/prod",
            "http://169.254.169.254/latest",
        ] {
            let error = policy.check(url).unwrap_err();
            assert!(error.to_string().contains("is not allowed"), "{url}: {error}");
        }
        let none = RepositoryPolicy::default();
        assert!(none
            .check("file:///tmp/x")
            .unwrap_err()
            .to_string()
            .contains("no backup repository is configured"));
    }
}
