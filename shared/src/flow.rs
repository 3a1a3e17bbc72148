//! Flows: the seed's YAML (`name`, `version`, `nodes` with `id`, `type`,
//! `config`), loaded and validated with errors naming the file, the path inside
//! it and the reason. Running flows is the flow executor's concern; this module
//! guarantees that what it is given is well-formed.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::tenant::{IdKind, validate_id};
use crate::yaml::{self, ConfigError};

/// The node types a flow may use.
pub const NODE_TYPES: &[&str] = &["reply", "ask", "branch", "set", "end"];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The node that runs after this one; absent means the flow ends here.
    #[serde(default)]
    pub next: Option<String>,
}

impl Flow {
    /// Parses and validates the flow in `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Flow, Vec<ConfigError>> {
        let flow: Flow = yaml::parse(file, text)?;
        let errors = flow.problems(file);
        if errors.is_empty() {
            Ok(flow)
        } else {
            Err(errors)
        }
    }

    fn problems(&self, file: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut error =
            |path: String, reason: &str| errors.push(ConfigError::new(file, path, reason));
        if validate_id(IdKind::Channel, &self.name).is_err() {
            error("name".into(), "flow names match ^[a-z0-9][a-z0-9_-]{0,62}$");
        }
        if self.version.trim().is_empty() {
            error("version".into(), "version is empty");
        }
        if self.nodes.is_empty() {
            error("nodes".into(), "a flow needs at least one node");
        }
        let mut seen = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if validate_id(IdKind::Channel, &node.id).is_err() {
                error(
                    format!("nodes[{i}].id"),
                    "node ids match ^[a-z0-9][a-z0-9_-]{0,62}$",
                );
            } else if !seen.insert(node.id.as_str()) {
                error(
                    format!("nodes[{i}].id"),
                    &format!("node id `{}` is used twice", node.id),
                );
            }
            if !NODE_TYPES.contains(&node.kind.as_str()) {
                error(
                    format!("nodes[{i}].type"),
                    &format!(
                        "unknown node type; expected one of {}",
                        NODE_TYPES.join(", ")
                    ),
                );
            }
            if node.kind == "reply" && !node.config.get("message").is_some_and(|m| m.is_string()) {
                error(
                    format!("nodes[{i}].config.message"),
                    "a reply node needs a message text",
                );
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(next) = &node.next
                && !self.nodes.iter().any(|n| n.id == *next)
            {
                error(
                    format!("nodes[{i}].next"),
                    &format!("no node has id `{next}`"),
                );
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_flow_parses() {
        let flow = Flow::parse(
            "acme_support_flow.yaml",
            "name: acme_support_flow\nversion: \"1.0\"\nnodes:\n  - id: greet\n    type: reply\n    config:\n      message: \"Welcome to ACME Support! How can I help?\"\n",
        )
        .unwrap();
        assert_eq!(flow.nodes[0].kind, "reply");
        assert_eq!(
            flow.nodes[0].config["message"],
            "Welcome to ACME Support! How can I help?"
        );
    }

    #[test]
    fn errors_name_file_path_and_reason() {
        let text = "name: f\nversion: \"1\"\nnodes:\n  - id: a\n    type: reply\n    next: nowhere\n  - id: a\n    type: teleport\n";
        let errors = Flow::parse("f.yaml", text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            shown.contains(
                &"f.yaml: nodes[0].config.message: a reply node needs a message text".to_string()
            ),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"f.yaml: nodes[1].id: node id `a` is used twice".to_string()),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("f.yaml: nodes[1].type: unknown node type")),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"f.yaml: nodes[0].next: no node has id `nowhere`".to_string()),
            "{shown:?}"
        );
    }

    #[test]
    fn yaml_errors_carry_a_location() {
        let errors = Flow::parse(
            "f.yaml",
            "name: f\nversion: \"1\"\nnodes:\n  - id: a\n    typo: reply\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        let shown = errors[0].to_string();
        assert!(shown.starts_with("f.yaml: line 5"), "{shown}");
        assert!(shown.contains("typo"), "{shown}");
    }
}
