//! Flows: the seed's YAML (`name`, `version`, `nodes` with `id`, `type`,
//! `config`), loaded and validated with errors naming the file, the path inside
//! it and the reason. Running flows is the flow executor's concern; this module
//! guarantees that what it is given is well-formed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::flows::template::check_template;
use crate::flows::yaml::{self, ConfigError};
use crate::tenancy::ids::{IdKind, validate_id};

/// The node types a flow may use.
pub const NODE_TYPES: &[&str] = &["reply", "ask", "branch", "set", "end"];

/// The most steps one delivery may take, so a bad flow cannot spin forever
/// (validation already refuses loops without an `ask`; this is the backstop).
pub const MAX_STEPS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

    pub(crate) fn problems(&self, file: &str) -> Vec<ConfigError> {
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
                continue;
            }
            match node.step() {
                Err((field, reason)) => error(format!("nodes[{i}].config.{field}"), &reason),
                Ok(step) => {
                    for (field, template) in step.templates() {
                        if let Err(e) = check_template(template) {
                            error(format!("nodes[{i}].config.{field}"), &e);
                        }
                    }
                }
            }
            for (field, target) in node.targets() {
                if !self.nodes.iter().any(|n| n.id == target) {
                    error(
                        format!("nodes[{i}].{field}"),
                        &format!("no node has id `{target}`"),
                    );
                }
            }
        }
        // The graph checks need a well-formed graph to say anything useful.
        if errors.is_empty() {
            let reachable = self.reachable();
            for (i, node) in self.nodes.iter().enumerate() {
                if !reachable.contains(node.id.as_str()) {
                    errors.push(ConfigError::new(
                        file,
                        format!("nodes[{i}]"),
                        format!("node `{}` cannot be reached from the first node", node.id),
                    ));
                }
            }
            if let Some(cycle) = self.cycle_without_wait() {
                errors.push(ConfigError::new(
                    file,
                    "nodes",
                    format!(
                        "nodes {} form a loop with no `ask` to wait for input",
                        cycle.join(" -> ")
                    ),
                ));
            }
        }
        errors
    }

    /// The node with `id`.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Ids of every node the first one leads to.
    fn reachable(&self) -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = self
            .nodes
            .first()
            .map(|n| n.id.as_str())
            .into_iter()
            .collect();
        while let Some(id) = todo.pop() {
            if seen.insert(id)
                && let Some(node) = self.node(id)
            {
                todo.extend(node.targets().into_iter().map(|(_, t)| t));
            }
        }
        seen
    }

    /// A loop the engine could run around without waiting for a message: a
    /// cycle through nodes none of which is an `ask` (an `ask` ends a turn).
    fn cycle_without_wait(&self) -> Option<Vec<String>> {
        fn visit<'f>(
            flow: &'f Flow,
            id: &'f str,
            path: &mut Vec<&'f str>,
            done: &mut BTreeSet<&'f str>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| *p == id) {
                let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                cycle.push(id.to_owned());
                return Some(cycle);
            }
            if !done.insert(id) {
                return None;
            }
            let node = flow.node(id)?;
            if node.kind == "ask" {
                return None;
            }
            path.push(id);
            for (_, next) in node.targets() {
                if let Some(cycle) = visit(flow, next, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for node in &self.nodes {
            if let Some(cycle) = visit(self, &node.id, &mut Vec::new(), &mut done) {
                return Some(cycle);
            }
        }
        None
    }
}

/// What a node does, read from its `config` (checked by [`Flow::parse`], so
/// the engine only meets valid steps).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send a templated message.
    Reply { message: String },
    /// Send a prompt and wait; the next message goes into `state[key]` if it
    /// matches `pattern` (else `retry`, or the prompt again, is sent).
    Ask {
        prompt: String,
        key: String,
        pattern: Option<Pattern>,
        retry: Option<String>,
    },
    /// The first case that matches picks the next node; `default` otherwise.
    Branch { cases: Vec<Case>, default: String },
    /// Store a templated value in `state[key]`.
    Set { key: String, value: String },
    /// The flow is over; `close` also marks the session ended.
    End { close: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `message` (the text received) or `state.<key>`.
    pub on: String,
    pub test: Test,
    pub next: String,
}

/// How a case compares. `equals` and `contains` ignore case and surrounding
/// space, as people type; `regex` is exactly what it says.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(String),
    Contains(String),
    Regex(Pattern),
}

/// A regex compiled once, when its node's step is read, and compared by its
/// source (so steps can be compared in tests).
#[derive(Debug, Clone)]
pub struct Pattern(regex_lite::Regex);

impl Pattern {
    pub fn new(source: &str) -> Result<Self, String> {
        regex_lite::Regex::new(source)
            .map(Pattern)
            .map_err(|e| format!("not a valid regex: {e}"))
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

type FieldError = (String, String);

impl Node {
    /// The node's step, or the config field that is wrong and why.
    pub fn step(&self) -> Result<Step, FieldError> {
        let text = |field: &str| -> Result<String, FieldError> {
            self.config
                .get(field)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    (
                        field.to_owned(),
                        format!(
                            "`{field}` must be a text (quote it if YAML read a number or yes/no)"
                        ),
                    )
                })
        };
        let optional = |field: &str| -> Result<Option<String>, FieldError> {
            match self.config.get(field) {
                None => Ok(None),
                Some(_) => text(field).map(Some),
            }
        };
        let state_key = |field: &str| -> Result<String, FieldError> {
            let key = text(field)?;
            if state_key_ok(&key) {
                Ok(key)
            } else {
                Err((
                    field.to_owned(),
                    "state keys match ^[a-z][a-z0-9_]{0,62}$".into(),
                ))
            }
        };
        let allowed = |fields: &[&str]| -> Result<(), FieldError> {
            match self.config.keys().find(|k| !fields.contains(&k.as_str())) {
                Some(k) => Err((
                    k.clone(),
                    format!("unknown field; expected {}", fields.join(", ")),
                )),
                None => Ok(()),
            }
        };
        match self.kind.as_str() {
            "reply" => {
                allowed(&["message"])?;
                Ok(Step::Reply {
                    message: text("message")?,
                })
            }
            "ask" => {
                allowed(&["prompt", "key", "pattern", "retry"])?;
                let pattern = optional("pattern")?
                    .map(|p| Pattern::new(&p))
                    .transpose()
                    .map_err(|e| ("pattern".to_owned(), e))?;
                Ok(Step::Ask {
                    prompt: text("prompt")?,
                    key: state_key("key")?,
                    pattern,
                    retry: optional("retry")?,
                })
            }
            "branch" => {
                allowed(&["cases", "default"])?;
                let cases = self
                    .config
                    .get("cases")
                    .and_then(|c| c.as_array())
                    .ok_or_else(|| ("cases".to_owned(), "`cases` must be a list".to_owned()))?
                    .iter()
                    .enumerate()
                    .map(|(i, c)| case(i, c))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Step::Branch {
                    cases,
                    default: text("default")?,
                })
            }
            "set" => {
                allowed(&["key", "value"])?;
                Ok(Step::Set {
                    key: state_key("key")?,
                    value: text("value")?,
                })
            }
            "end" => {
                allowed(&["close"])?;
                let close = match self.config.get("close") {
                    None => false,
                    Some(v) => v.as_bool().ok_or_else(|| {
                        (
                            "close".to_owned(),
                            "`close` must be true or false".to_owned(),
                        )
                    })?,
                };
                Ok(Step::End { close })
            }
            other => Err(("type".into(), format!("unknown node type {other}"))),
        }
    }

    /// Every node this one can lead to, with the field naming it.
    pub fn targets(&self) -> Vec<(String, &str)> {
        let mut targets: Vec<(String, &str)> = self
            .next
            .iter()
            .map(|n| ("next".to_owned(), n.as_str()))
            .collect();
        if self.kind == "branch" {
            if let Some(default) = self.config.get("default").and_then(|d| d.as_str()) {
                targets.push(("config.default".into(), default));
            }
            for (i, c) in self
                .config
                .get("cases")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(next) = c.get("next").and_then(|n| n.as_str()) {
                    targets.push((format!("config.cases[{i}].next"), next));
                }
            }
        }
        targets
    }
}

impl Step {
    /// The templates of this step, by config field.
    pub fn templates(&self) -> Vec<(&'static str, &str)> {
        match self {
            Step::Reply { message } => vec![("message", message)],
            Step::Ask { prompt, retry, .. } => {
                let mut t = vec![("prompt", prompt.as_str())];
                t.extend(retry.as_deref().map(|r| ("retry", r)));
                t
            }
            Step::Set { value, .. } => vec![("value", value)],
            Step::Branch { .. } | Step::End { .. } => Vec::new(),
        }
    }
}

pub fn state_key_ok(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn case(i: usize, c: &serde_json::Value) -> Result<Case, FieldError> {
    let at = |field: &str| format!("cases[{i}].{field}");
    let obj = c
        .as_object()
        .ok_or_else(|| (format!("cases[{i}]"), "a case is a map".to_owned()))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["on", "equals", "contains", "regex", "next"].contains(&k.as_str()))
    {
        return Err((
            at(k),
            "unknown field; expected on, equals, contains, regex, next".into(),
        ));
    }
    let on = match obj.get("on") {
        None => "message".to_owned(),
        Some(v) => {
            let on = v.as_str().unwrap_or_default();
            let valid = on == "message" || on.strip_prefix("state.").is_some_and(state_key_ok);
            if !valid {
                return Err((at("on"), "`on` is `message` or `state.<key>`".into()));
            }
            on.to_owned()
        }
    };
    let tests: Vec<Test> = ["equals", "contains", "regex"]
        .into_iter()
        .filter_map(|name| obj.get(name).map(|v| (name, v)))
        .map(|(name, v)| {
            let text = v.as_str().ok_or_else(|| {
                let hint = "quote it: YAML reads yes, no, on, off, y, n as booleans";
                (at(name), format!("`{name}` must be a text ({hint})"))
            })?;
            Ok(match name {
                "equals" => Test::Equals(text.to_owned()),
                "contains" => Test::Contains(text.to_owned()),
                _ => Test::Regex(Pattern::new(text).map_err(|e| (at(name), e))?),
            })
        })
        .collect::<Result<_, FieldError>>()?;
    let test = match <[Test; 1]>::try_from(tests) {
        Ok([test]) => test,
        Err(_) => {
            return Err((
                format!("cases[{i}]"),
                "a case has exactly one of equals, contains, regex".into(),
            ));
        }
    };
    let next = obj
        .get("next")
        .and_then(|n| n.as_str())
        .ok_or_else(|| (at("next"), "a case needs `next`".to_owned()))?
        .to_owned();
    Ok(Case { on, test, next })
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
            shown
                .contains(&"f.yaml: nodes[0].config.message: `message` must be a text (quote it if YAML read a number or yes/no)".to_string()),
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
