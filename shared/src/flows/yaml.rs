//! YAML loading for bundles and flows (serde-saphyr: maintained, pure Rust)
//! and the one error type that names file, path and reason.

use std::fmt;

/// A problem in a configuration file: which file, where in it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// A dotted path (`tenants.acme.teams.support`) or `line L column C` for
    /// syntax errors, where the document has no structure yet.
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: &str, path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_owned(),
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Deserialises `text`, turning a failure into a [`ConfigError`] at the
/// reported line and column.
pub fn parse<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, Vec<ConfigError>> {
    serde_saphyr::from_str(text).map_err(|e| {
        // The error's first line reads `error: line L column C: reason`; the
        // lines after it are a source snippet, not wanted in a one-line report.
        let shown = e.to_string();
        let first = shown.lines().next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let (path, reason) = match (e.location(), first.split_once(": ")) {
            (Some(loc), Some((_, reason))) => (
                format!("line {} column {}", loc.line(), loc.column()),
                reason,
            ),
            _ => ("document".to_owned(), first),
        };
        vec![ConfigError::new(file, path, reason)]
    })
}
