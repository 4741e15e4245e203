//! Validated relative keys.
//!
//! Every path that reaches storage is an [`ArtifactKey`], and [`ArtifactKey::parse`] is the
//! only way to make one, so the checks below are the single place where traversal and other
//! hostile paths are stopped. The rules are deliberately stricter than any one backend needs:
//! a key accepted here must mean the same object on a local disk, S3, Azure and GCS, so that
//! data can move between regions and backends without renaming.

use std::fmt;

use crate::ArtifactError;

/// Longest key accepted, in bytes (S3 and Azure allow 1024).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest path segment accepted, in bytes (NAME_MAX on common local filesystems).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// A validated relative key. Construction is the ONLY way to get one, so every storage call is guaranteed safe.
///
/// ```
/// use tandem_artifacts::ArtifactKey;
///
/// let run = ArtifactKey::parse("1/abc123/artifacts/").unwrap();
/// assert_eq!(run.as_str(), "1/abc123/artifacts");
/// let model = run.join("model/MLmodel").unwrap();
/// assert!(model.starts_with(&run));
/// assert!(ArtifactKey::parse("../../etc/passwd").is_err());
/// assert!(run.join("../other-run").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactKey(String);

impl ArtifactKey {
    /// Rejects: empty, absolute paths (leading '/'), Windows drive/UNC forms, backslashes, any `..` or `.` segment,
    /// empty segments ("a//b"), NUL and other control characters, percent-encoded traversal that decodes to the above
    /// (callers pass already-decoded paths, but reject a literal "%2e%2e" segment anyway), segments > 255 bytes,
    /// keys > 1024 bytes. A single trailing '/' is tolerated and stripped (directory-style listing).
    pub fn parse(path: &str) -> Result<ArtifactKey, ArtifactError> {
        let reject = |reason: &str| Err(ArtifactError::invalid(path, reason));

        if path.is_empty() {
            return reject("empty path");
        }
        if path.starts_with('/') {
            return reject("absolute paths are not allowed");
        }
        if path.contains('\\') {
            return reject("backslashes are not allowed");
        }
        if let Some(c) = path.chars().find(|c| c.is_control()) {
            return reject(&format!("control character {c:?} is not allowed"));
        }
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        if trimmed.is_empty() {
            return reject("empty path");
        }
        if trimmed.len() > MAX_KEY_BYTES {
            return reject(&format!("longer than {MAX_KEY_BYTES} bytes"));
        }
        if looks_like_drive(trimmed) {
            return reject("Windows drive paths are not allowed");
        }
        for segment in trimmed.split('/') {
            if let Err(reason) = check_segment(segment) {
                return reject(&reason);
            }
        }
        Ok(ArtifactKey(trimmed.to_string()))
    }

    /// Joins a validated key with a further relative path (validated the same way).
    pub fn join(&self, rest: &str) -> Result<ArtifactKey, ArtifactError> {
        // Validate `rest` on its own first so that its error names the caller's input and
        // e.g. a leading '/' cannot be hidden by the concatenation.
        let rest = ArtifactKey::parse(rest)?;
        ArtifactKey::parse(&format!("{}/{}", self.0, rest.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when self equals or lies under `prefix` (segment-wise, so "a/bc" is not under "a/b").
    pub fn starts_with(&self, prefix: &ArtifactKey) -> bool {
        match self.0.strip_prefix(prefix.0.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ArtifactKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// "C:", "C:foo", "c:/x": a drive-relative or drive-absolute Windows path in the first segment.
fn looks_like_drive(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("empty path segment".into());
    }
    if segment == "." || segment == ".." {
        return Err(format!("{segment:?} segments are not allowed"));
    }
    if segment.len() > MAX_SEGMENT_BYTES {
        return Err(format!("path segment longer than {MAX_SEGMENT_BYTES} bytes"));
    }
    // Paths arrive already percent-decoded. A segment that *still* decodes to something
    // dangerous was either double-encoded or crafted; some layer (a proxy, a client
    // library, a later URL round-trip) may decode it again, so refuse it here.
    if segment.contains('%') {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        if decoded == "." || decoded == ".." {
            return Err("percent-encoded \".\" or \"..\" segments are not allowed".into());
        }
        if decoded.contains('/') || decoded.contains('\\') {
            return Err("percent-encoded path separators are not allowed".into());
        }
        if decoded.chars().any(|c| c.is_control()) {
            return Err("percent-encoded control characters are not allowed".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_paths() {
        let cases: &[(&str, &str)] = &[
            ("a", "a"),
            ("a/b/c.txt", "a/b/c.txt"),
            ("dir/", "dir"),
            ("model/MLmodel", "model/MLmodel"),
            ("a/b c (1).txt", "a/b c (1).txt"),
            ("naïve/résumé.pdf", "naïve/résumé.pdf"),
            ("..a/b..", "..a/b.."),
            (".hidden/.x", ".hidden/.x"),
            ("a/...", "a/..."),
            ("100%.txt", "100%.txt"),
            ("a%20b", "a%20b"),
            ("%2e%2ex", "%2e%2ex"),
            ("ab:c", "ab:c"),
            ("x/a:b", "x/a:b"),
            ("1:x", "1:x"),
            ("weird#name", "weird#name"),
            ("x?y=z&w", "x?y=z&w"),
        ];
        for (input, expected) in cases {
            let key =
                ArtifactKey::parse(input).unwrap_or_else(|e| panic!("{input:?} should be accepted: {e}"));
            assert_eq!(key.as_str(), *expected, "input {input:?}");
            assert_eq!(key.to_string(), *expected);
        }
    }

    #[test]
    fn rejected_paths() {
        let long_segment = "s".repeat(256);
        let long_key = format!("{}/x", ["seg"; 256].join("/"));
        let cases: &[&str] = &[
            "",
            "/",
            "../x",
            "..",
            ".",
            "./x",
            "a/..",
            "a/../../b",
            "a/./b",
            "a/.",
            "/etc/passwd",
            "//server/share",
            "a\\b",
            "\\\\server\\share",
            "..\\x",
            "C:/x",
            "C:",
            "c:x",
            "a:b",
            "Z:\\x",
            "a//b",
            "a//",
            "a///",
            "//",
            "%2e%2e/x",
            "%2E%2E/x",
            "a/%2e%2e",
            "a/%2e/b",
            ".%2e/x",
            "a%2fb",
            "a%2F..",
            "a%5cb",
            "a%00b",
            "a\0b",
            "a\nb",
            "a\tb",
            "a\rb",
            "a\u{7f}b",
            "a\u{85}b",
            &long_segment,
            &long_key,
        ];
        for input in cases {
            match ArtifactKey::parse(input) {
                Err(ArtifactError::InvalidPath { path, reason }) => {
                    assert_eq!(&path, input);
                    assert!(!reason.is_empty());
                }
                other => panic!("{input:?} should be rejected, got {other:?}"),
            }
        }
    }

    #[test]
    fn length_limits_are_inclusive() {
        let seg = "s".repeat(MAX_SEGMENT_BYTES);
        assert!(ArtifactKey::parse(&seg).is_ok());
        // 5 segments of 200 bytes, 5 slashes and a 19-byte name: exactly the limit.
        let key = format!("{}/{}", vec!["s".repeat(200); 5].join("/"), "t".repeat(19));
        assert_eq!(key.len(), MAX_KEY_BYTES);
        assert!(ArtifactKey::parse(&key).is_ok());
        assert!(ArtifactKey::parse(&format!("{key}x")).is_err());
        // The tolerated trailing slash does not count.
        assert!(ArtifactKey::parse(&format!("{key}/")).is_ok());
    }

    #[test]
    fn join_validates_rest() {
        let base = ArtifactKey::parse("exp/run/artifacts").unwrap();
        assert_eq!(
            base.join("model/x.pkl").unwrap().as_str(),
            "exp/run/artifacts/model/x.pkl"
        );
        assert_eq!(base.join("dir/").unwrap().as_str(), "exp/run/artifacts/dir");
        for bad in ["", "/x", "../x", "a/../..", "a//b", "%2e%2e", "a\\b", "C:/x"] {
            assert!(base.join(bad).is_err(), "join({bad:?}) should fail");
        }
        let long = "s".repeat(200);
        let mut key = base.clone();
        let mut failed = false;
        for _ in 0..10 {
            match key.join(&long) {
                Ok(k) => key = k,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "joining must enforce the total length limit");
        assert!(key.as_str().len() <= MAX_KEY_BYTES);
    }

    #[test]
    fn starts_with_is_segment_wise() {
        let k = |s| ArtifactKey::parse(s).unwrap();
        assert!(k("a/b").starts_with(&k("a/b")));
        assert!(k("a/b/c").starts_with(&k("a/b")));
        assert!(k("a/b/c").starts_with(&k("a")));
        assert!(!k("a/bc").starts_with(&k("a/b")));
        assert!(!k("a").starts_with(&k("a/b")));
        assert!(!k("ab/c").starts_with(&k("a")));
    }

    #[test]
    fn keys_are_comparable_and_hashable() {
        use std::collections::HashSet;
        let set: HashSet<ArtifactKey> = ["a", "a/", "b"]
            .iter()
            .map(|s| ArtifactKey::parse(s).unwrap())
            .collect();
        assert_eq!(set.len(), 2, "\"a\" and \"a/\" are the same key");
    }
}
