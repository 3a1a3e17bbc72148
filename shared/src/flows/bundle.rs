//! Tenant bundles: the seed's "Bundle Configuration" (tenants > teams >
//! channels with their provider and non-secret config), plus each tenant's
//! environments and the flow each team or channel runs.
//!
//! ```yaml
//! tenants:
//!   acme:
//!     name: "ACME Corporation"
//!     environments: [{ id: prod, name: Production }]
//!     flow: acme_support_flow          # default for the tenant's teams
//!     teams:
//!       support:
//!         name: "Customer Support"
//!         channels:
//!           slack:
//!             provider: messaging-slack
//!             config: { workspace_id: "T123456" }
//!     limits:                          # this tenant's rates (any subset)
//!       api_requests_per_minute: 600
//! limits:                              # platform defaults (any subset)
//!   messages_per_minute: 60000
//! ```
//!
//! Flows named here live beside the bundle as `flows/{name}.yaml`. Secrets never
//! belong in a bundle (they go to the secrets broker), so config keys that look
//! like one are refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::flows::flow::Flow;
use crate::flows::yaml::{self, ConfigError};
use crate::tenancy::ids::{DEFAULT_TEAM, IdKind, validate_id};
use crate::tenancy::limits::{Limits, LimitsSpec};

/// The messaging providers a channel can be.
pub const PROVIDERS: &[&str] = &[
    "messaging-slack",
    "messaging-telegram",
    "messaging-teams",
    "messaging-webchat",
];

/// Config keys containing any of these are taken for secrets and refused.
const SECRET_LIKE: &[&str] = &[
    "secret",
    "token",
    "password",
    "private_key",
    "api_key",
    "apikey",
];

const SECRET_REFUSED: &str =
    "looks like a secret; store it with `greentic secret put`, not in the configuration";

fn looks_like_secret(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_LIKE.iter().any(|s| lower.contains(s))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Platform defaults of every tenant's limits (each tenant may override
    /// any of them); what neither sets takes the built-in default.
    #[serde(default)]
    pub limits: LimitsSpec,
    pub tenants: BTreeMap<String, Tenant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    pub environments: Vec<Environment>,
    /// The flow of every team and channel that names none.
    #[serde(default)]
    pub flow: Option<String>,
    #[serde(default)]
    pub teams: BTreeMap<String, Team>,
    /// This tenant's own limits, over the bundle's (see [`crate::tenancy::limits`]).
    #[serde(default)]
    pub limits: LimitsSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub flow: Option<String>,
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub provider: String,
    #[serde(default)]
    pub flow: Option<String>,
    /// Non-secret provider settings (workspace id, chat id, app id ...).
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// A bundle with every flow it names, loaded and checked together.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedBundle {
    pub bundle: Bundle,
    pub flows: BTreeMap<String, Flow>,
}

impl Bundle {
    /// Parses and validates a bundle's own structure; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Bundle, Vec<ConfigError>> {
        let bundle: Bundle = yaml::parse(file, text)?;
        let errors = bundle.problems(file);
        if errors.is_empty() {
            Ok(bundle)
        } else {
            Err(errors)
        }
    }

    /// The flow a channel runs: its own, else its team's, else its tenant's.
    pub fn flow_of(&self, tenant: &str, team: &str, channel: &str) -> Option<&str> {
        let t = self.tenants.get(tenant)?;
        let tm = t.teams.get(team)?;
        let c = tm.channels.get(channel)?;
        c.flow
            .as_deref()
            .or(tm.flow.as_deref())
            .or(t.flow.as_deref())
    }

    /// The limits of tenant `id`: its own over the bundle's over the built-in defaults.
    pub fn limits_of(&self, id: &str) -> Limits {
        match self.tenants.get(id) {
            Some(tenant) => tenant.limits.over(self.platform_limits()),
            None => self.platform_limits(),
        }
    }

    /// The limits of a tenant the bundle does not list: the bundle's over the built-in defaults.
    pub fn platform_limits(&self) -> Limits {
        self.limits.over(Limits::default())
    }

    pub(crate) fn problems(&self, file: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut error =
            |path: String, reason: String| errors.push(ConfigError::new(file, path, reason));
        for (field, reason) in self.limits.problems() {
            error(format!("limits.{field}"), reason);
        }
        if self.tenants.is_empty() {
            error(
                "tenants".into(),
                "a bundle needs at least one tenant".into(),
            );
        }
        for (tenant_id, tenant) in &self.tenants {
            let at = format!("tenants.{tenant_id}");
            if let Err(e) = validate_id(IdKind::Tenant, tenant_id) {
                error(at.clone(), e.to_string());
            }
            for (field, reason) in tenant.limits.problems() {
                error(format!("{at}.limits.{field}"), reason);
            }
            for key in tenant.settings.keys().filter(|k| looks_like_secret(k)) {
                error(format!("{at}.settings.{key}"), SECRET_REFUSED.into());
            }
            if tenant.environments.is_empty() {
                error(
                    format!("{at}.environments"),
                    "a tenant needs at least one environment".into(),
                );
            }
            for (i, env) in tenant.environments.iter().enumerate() {
                if let Err(e) = validate_id(IdKind::Env, &env.id) {
                    error(format!("{at}.environments[{i}].id"), e.to_string());
                } else if tenant.environments[..i]
                    .iter()
                    .any(|other| other.id == env.id)
                {
                    error(
                        format!("{at}.environments[{i}].id"),
                        format!("environment `{}` is listed twice", env.id),
                    );
                }
            }
            for (team_id, team) in &tenant.teams {
                let at = format!("{at}.teams.{team_id}");
                match validate_id(IdKind::Team, team_id) {
                    Err(e) => error(at.clone(), e.to_string()),
                    Ok(()) if team_id == DEFAULT_TEAM => error(
                        at.clone(),
                        "`default` stands for \"no team\" and cannot name a team".into(),
                    ),
                    Ok(()) => {}
                }
                for (channel_id, channel) in &team.channels {
                    let at = format!("{at}.channels.{channel_id}");
                    if let Err(e) = validate_id(IdKind::Channel, channel_id) {
                        error(at.clone(), e.to_string());
                    } else if channel_id.len() > crate::secrets::CHANNEL_ID_MAX_LEN {
                        error(
                            at.clone(),
                            format!(
                                "a channel id is at most {} characters, so that its secrets' names (`{{channel}}_signing_secret` ...) are valid",
                                crate::secrets::CHANNEL_ID_MAX_LEN
                            ),
                        );
                    }
                    if !PROVIDERS.contains(&channel.provider.as_str()) {
                        error(
                            format!("{at}.provider"),
                            format!("unknown provider; expected one of {}", PROVIDERS.join(", ")),
                        );
                    }
                    if self.flow_of(tenant_id, team_id, channel_id).is_none() {
                        error(
                            format!("{at}.flow"),
                            "no flow: set one on the channel, its team or its tenant".into(),
                        );
                    }
                    if channel.provider == "messaging-teams"
                        && !channel.config.get("app_id").is_some_and(|v| v.is_string())
                    {
                        error(
                            format!("{at}.config.app_id"),
                            "a Teams channel needs its bot's app id (the audience of Bot Framework tokens)".into(),
                        );
                    }
                    for key in channel.config.keys().filter(|k| looks_like_secret(k)) {
                        error(format!("{at}.config.{key}"), SECRET_REFUSED.into());
                    }
                }
            }
        }
        errors
    }

    /// Every flow name the bundle refers to, each with the path that names it first.
    pub(crate) fn flow_references(&self) -> BTreeMap<&str, String> {
        let mut refs = BTreeMap::new();
        for (tenant_id, tenant) in &self.tenants {
            if let Some(f) = &tenant.flow {
                refs.entry(f.as_str())
                    .or_insert(format!("tenants.{tenant_id}.flow"));
            }
            for (team_id, team) in &tenant.teams {
                if let Some(f) = &team.flow {
                    refs.entry(f.as_str())
                        .or_insert(format!("tenants.{tenant_id}.teams.{team_id}.flow"));
                }
                for (channel_id, channel) in &team.channels {
                    if let Some(f) = &channel.flow {
                        refs.entry(f.as_str()).or_insert(format!(
                            "tenants.{tenant_id}.teams.{team_id}.channels.{channel_id}.flow"
                        ));
                    }
                }
            }
        }
        refs
    }
}

/// Loads the bundle at `path` and the flows it names from `flows/` beside it,
/// reporting every problem found, not just the first.
pub fn load(path: &Path) -> Result<LoadedBundle, Vec<ConfigError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError::new(
            &file,
            "document",
            format!("cannot read: {e}"),
        )]
    })?;
    let bundle = Bundle::parse(&file, &text)?;
    let flows_dir = path.parent().unwrap_or(Path::new(".")).join("flows");
    let mut flows = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, named_at) in bundle.flow_references() {
        if validate_id(IdKind::Channel, name).is_err() {
            errors.push(ConfigError::new(
                &file,
                named_at,
                "flow names match ^[a-z0-9][a-z0-9_-]{0,62}$",
            ));
            continue;
        }
        let flow_path = flows_dir.join(format!("{name}.yaml"));
        let flow_file = flow_path.display().to_string();
        match std::fs::read_to_string(&flow_path) {
            Err(e) => errors.push(ConfigError::new(
                &file,
                named_at,
                format!("flow `{name}`: cannot read {flow_file}: {e}"),
            )),
            Ok(text) => match Flow::parse(&flow_file, &text) {
                Ok(flow) if flow.name != name => errors.push(ConfigError::new(
                    &flow_file,
                    "name",
                    format!(
                        "the file is named for flow `{name}` but declares `{}`",
                        flow.name
                    ),
                )),
                Ok(flow) => {
                    flows.insert(name.to_owned(), flow);
                }
                Err(flow_errors) => errors.extend(flow_errors),
            },
        }
    }
    if errors.is_empty() {
        Ok(LoadedBundle { bundle, flows })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(errors: Vec<ConfigError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_demo_bundle_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles/demo.yaml");
        let loaded = load(&path).unwrap_or_else(|e| panic!("{:#?}", shown(e)));
        let b = &loaded.bundle;
        assert_eq!(b.tenants.keys().collect::<Vec<_>>(), ["acme", "bigcorp"]);
        let acme = &b.tenants["acme"];
        assert_eq!(
            acme.environments
                .iter()
                .map(|e| e.id.as_str())
                .collect::<Vec<_>>(),
            ["prod", "staging"]
        );
        assert_eq!(
            acme.teams["support"].channels["slack"].provider,
            "messaging-slack"
        );
        assert_eq!(
            acme.teams["support"].channels["telegram"].provider,
            "messaging-telegram"
        );
        assert_eq!(
            acme.teams["sales"].channels["teams"].provider,
            "messaging-teams"
        );
        assert_eq!(
            b.tenants["bigcorp"].teams["helpdesk"].channels["webchat"].provider,
            "messaging-webchat"
        );
        assert_eq!(
            b.flow_of("acme", "support", "slack"),
            Some("acme_support_flow")
        );
        assert_eq!(
            b.flow_of("bigcorp", "helpdesk", "webchat"),
            Some("bigcorp_helpdesk_flow")
        );
        assert!(
            loaded.flows.contains_key("acme_support_flow")
                && loaded.flows.contains_key("bigcorp_helpdesk_flow")
        );
    }

    #[test]
    fn errors_name_the_path_and_reason() {
        let text = r#"
tenants:
  Acme:
    name: x
    environments: [{ id: prod }, { id: prod }]
    teams:
      default:
        flow: f
        channels:
          slack:
            provider: messaging-sms
            config: { signing_secret: "abc", workspace_id: "T1" }
          web:
            provider: messaging-webchat
"#;
        let errors = shown(Bundle::parse("b.yaml", text).unwrap_err());
        for expected in [
            "b.yaml: tenants.Acme: tenant id is not valid: ids match ^[a-z0-9][a-z0-9_-]{0,62}$",
            "b.yaml: tenants.Acme.environments[1].id: environment `prod` is listed twice",
            "b.yaml: tenants.Acme.teams.default: `default` stands for \"no team\" and cannot name a team",
            "b.yaml: tenants.Acme.teams.default.channels.slack.config.signing_secret: looks like a secret; store it with `greentic secret put`, not in the configuration",
        ] {
            assert!(
                errors.iter().any(|e| e == expected),
                "missing {expected:?} in {errors:#?}"
            );
        }
        assert!(errors.iter().any(|e| e.starts_with(
            "b.yaml: tenants.Acme.teams.default.channels.slack.provider: unknown provider"
        )));
        assert!(
            !errors.iter().any(|e| e.contains("channels.web.flow")),
            "the team's flow applies: {errors:#?}"
        );
    }

    #[test]
    fn a_channel_id_too_long_to_name_its_secrets_is_refused() {
        let long = "c".repeat(crate::secrets::CHANNEL_ID_MAX_LEN + 1);
        let ok = "c".repeat(crate::secrets::CHANNEL_ID_MAX_LEN);
        let text = |id: &str| {
            format!(
                "tenants:\n  acme:\n    name: A\n    environments: [{{ id: prod }}]\n    flow: f\n    teams:\n      support:\n        channels:\n          {id}: {{ provider: messaging-slack }}\n"
            )
        };
        let errors = |id: &str| match Bundle::parse("b.yaml", &text(id)) {
            Ok(_) => 0,
            Err(errors) => errors
                .iter()
                .filter(|e| e.to_string().contains("characters"))
                .count(),
        };
        assert_eq!(errors(&long), 1);
        assert_eq!(errors(&ok), 0);
        for purpose in crate::secrets::SECRET_PURPOSES {
            assert!(
                crate::tenancy::ids::SecretName::parse(&format!("{ok}_{purpose}")).is_ok(),
                "{purpose}"
            );
        }
    }

    #[test]
    fn limits_are_checked_where_they_are_written_and_resolved_per_tenant() {
        let text = |platform: &str, acme: &str| {
            format!(
                "limits: {{ {platform} }}\ntenants:\n  acme:\n    name: A\n    environments: [{{ id: prod }}]\n    flow: f\n    limits: {{ {acme} }}\n  bigcorp:\n    name: B\n    environments: [{{ id: prod }}]\n    flow: f\n"
            )
        };
        let errors = shown(
            Bundle::parse(
                "b.yaml",
                &text("messages_per_minute: 0", "api_requests_per_minute: 5000000"),
            )
            .unwrap_err(),
        );
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("b.yaml: limits.messages_per_minute: a limit of 0"));
        assert!(errors[1].starts_with(
            "b.yaml: tenants.acme.limits.api_requests_per_minute: 5000000 per minute"
        ));
        let typo = Bundle::parse("b.yaml", &text("", "api_request_per_minute: 5"));
        assert!(typo.is_err(), "an unknown limit is refused, not ignored");
        let bundle = Bundle::parse(
            "b.yaml",
            &text("messages_per_minute: 120", "api_requests_per_minute: 30"),
        )
        .unwrap();
        let acme = bundle.limits_of("acme");
        let bigcorp = bundle.limits_of("bigcorp");
        assert_eq!(
            (acme.messages_per_minute, acme.api_requests_per_minute),
            (120, 30)
        );
        assert_eq!(bigcorp.messages_per_minute, 120);
        assert_eq!(
            bigcorp.api_requests_per_minute,
            Limits::default().api_requests_per_minute
        );
        assert_eq!(bundle.limits_of("unknown"), bigcorp);
    }

    #[test]
    fn a_channel_without_any_flow_is_refused() {
        let text = "tenants:\n  acme:\n    name: A\n    environments: [{ id: prod }]\n    teams:\n      support:\n        channels:\n          slack: { provider: messaging-slack }\n";
        assert_eq!(
            shown(Bundle::parse("b.yaml", text).unwrap_err()),
            [
                "b.yaml: tenants.acme.teams.support.channels.slack.flow: no flow: set one on the channel, its team or its tenant"
            ]
        );
    }

    #[test]
    fn missing_and_mismatched_flow_files_are_reported() {
        let dir = std::env::temp_dir().join(format!("greentic-bundle-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("flows")).unwrap();
        let bundle = dir.join("b.yaml");
        std::fs::write(&bundle, "tenants:\n  acme:\n    name: A\n    environments: [{ id: prod }]\n    flow: missing\n    teams:\n      support:\n        flow: renamed\n        channels:\n          slack: { provider: messaging-slack }\n").unwrap();
        std::fs::write(
            dir.join("flows/renamed.yaml"),
            "name: other\nversion: \"1\"\nnodes: [{ id: a, type: end }]\n",
        )
        .unwrap();
        let errors = shown(load(&bundle).unwrap_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].contains(": tenants.acme.flow: flow `missing`: cannot read "),
            "{errors:#?}"
        );
        assert!(
            errors[1].ends_with(
                "renamed.yaml: name: the file is named for flow `renamed` but declares `other`"
            ),
            "{errors:#?}"
        );
    }
}
