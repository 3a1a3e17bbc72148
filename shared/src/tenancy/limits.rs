//! What one tenant may consume of the shared platform: its rates, and how
//! long its conversations are kept.
//!
//! A bundle may set platform defaults (top-level `limits:`) and each tenant
//! may override any of them (`tenants.{id}.limits:`); whatever neither sets
//! takes the built-in default below. Each configuration version stores the
//! resolved [`Limits`] of its tenant, so a request reads finished numbers.
//!
//! Every rate is per minute. Where each one is enforced:
//! - `messages_per_minute`: by the bridge, which holds a tenant's inbound
//!   messages beyond it (delayed, never dropped); ingress sends the rate with
//!   each message it publishes.
//! - `api_requests_per_minute` (whole tenant) and
//!   `api_requests_per_minute_per_subject` (one token subject): by the REST
//!   APIs, which answer 429 beyond them (`crate::service::limits`).
//! - `webchat_messages_per_minute_per_conversation` and
//!   `webchat_messages_per_minute_per_channel`: by the web chat's message
//!   route, since anyone holding a web chat token can post.
//!
//! And `session_retention_days`: a session idle longer is deleted with
//! everything of it by the retention sweep (`crate::store::lifecycle`).

use serde::{Deserialize, Serialize};

/// The largest rate accepted anywhere: above it a limit protects nothing
/// (ingress itself accepts well under this), so a larger figure is a typo.
pub const MAX_PER_MINUTE: u32 = 1_000_000;

/// A tenant's resolved limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub messages_per_minute: u32,
    pub api_requests_per_minute: u32,
    pub api_requests_per_minute_per_subject: u32,
    pub webchat_messages_per_minute_per_conversation: u32,
    pub webchat_messages_per_minute_per_channel: u32,
    /// Versions stored before retention existed read as the default.
    #[serde(default = "default_retention_days")]
    pub session_retention_days: u32,
}

/// The longest retention accepted: a hundred years is "keep", a typo beyond.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

fn default_retention_days() -> u32 {
    Limits::default().session_retention_days
}

impl Default for Limits {
    /// The built-in platform defaults: generous for an organisation's normal
    /// traffic, low enough that one tenant's runaway client cannot take the
    /// platform alone. The message rate is only a guard against floods
    /// (1,000 a second, more than one small node answers): a deployment sets
    /// each tenant's share of its own capacity in the bundle.
    fn default() -> Self {
        Limits {
            messages_per_minute: 60_000,
            api_requests_per_minute: 1_200,
            api_requests_per_minute_per_subject: 600,
            webchat_messages_per_minute_per_conversation: 30,
            webchat_messages_per_minute_per_channel: 600,
            // A year: long enough for any support follow-up; a tenant (or
            // its contract) sets its own.
            session_retention_days: 365,
        }
    }
}

/// Limits as a bundle writes them: any subset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_requests_per_minute_per_subject: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webchat_messages_per_minute_per_conversation: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webchat_messages_per_minute_per_channel: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_retention_days: Option<u32>,
}

impl LimitsSpec {
    fn fields(&self) -> [(&'static str, Option<u32>); 5] {
        [
            ("messages_per_minute", self.messages_per_minute),
            ("api_requests_per_minute", self.api_requests_per_minute),
            (
                "api_requests_per_minute_per_subject",
                self.api_requests_per_minute_per_subject,
            ),
            (
                "webchat_messages_per_minute_per_conversation",
                self.webchat_messages_per_minute_per_conversation,
            ),
            (
                "webchat_messages_per_minute_per_channel",
                self.webchat_messages_per_minute_per_channel,
            ),
        ]
    }

    /// What is wrong with the figures set: `(field, reason)` each.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let retention = match self.session_retention_days {
            Some(0) => Some((
                "session_retention_days",
                "0 days would delete every conversation at once; leave it out for the default"
                    .to_owned(),
            )),
            Some(d) if d > MAX_RETENTION_DAYS => Some((
                "session_retention_days",
                format!(
                    "{d} days is beyond any retention policy; the most accepted is {MAX_RETENTION_DAYS}"
                ),
            )),
            _ => None,
        };
        self.fields()
            .into_iter()
            .filter_map(|(field, value)| match value? {
                0 => Some((
                    field,
                    "a limit of 0 would refuse everything; leave it out for the default".to_owned(),
                )),
                v if v > MAX_PER_MINUTE => Some((
                    field,
                    format!("{v} per minute is beyond any real traffic; the most accepted is {MAX_PER_MINUTE}"),
                )),
                _ => None,
            })
            .chain(retention)
            .collect()
    }

    /// These figures, with `base`'s where these leave one out (a tenant's
    /// own over the platform's, both as written).
    pub fn or(&self, base: &LimitsSpec) -> LimitsSpec {
        LimitsSpec {
            messages_per_minute: self.messages_per_minute.or(base.messages_per_minute),
            api_requests_per_minute: self
                .api_requests_per_minute
                .or(base.api_requests_per_minute),
            api_requests_per_minute_per_subject: self
                .api_requests_per_minute_per_subject
                .or(base.api_requests_per_minute_per_subject),
            webchat_messages_per_minute_per_conversation: self
                .webchat_messages_per_minute_per_conversation
                .or(base.webchat_messages_per_minute_per_conversation),
            webchat_messages_per_minute_per_channel: self
                .webchat_messages_per_minute_per_channel
                .or(base.webchat_messages_per_minute_per_channel),
            session_retention_days: self.session_retention_days.or(base.session_retention_days),
        }
    }

    /// These figures over `base`: each one set replaces base's.
    pub fn over(&self, base: Limits) -> Limits {
        Limits {
            messages_per_minute: self.messages_per_minute.unwrap_or(base.messages_per_minute),
            api_requests_per_minute: self
                .api_requests_per_minute
                .unwrap_or(base.api_requests_per_minute),
            api_requests_per_minute_per_subject: self
                .api_requests_per_minute_per_subject
                .unwrap_or(base.api_requests_per_minute_per_subject),
            webchat_messages_per_minute_per_conversation: self
                .webchat_messages_per_minute_per_conversation
                .unwrap_or(base.webchat_messages_per_minute_per_conversation),
            webchat_messages_per_minute_per_channel: self
                .webchat_messages_per_minute_per_channel
                .unwrap_or(base.webchat_messages_per_minute_per_channel),
            session_retention_days: self
                .session_retention_days
                .unwrap_or(base.session_retention_days),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_overrides_the_platform_which_overrides_the_built_in_defaults() {
        let platform = LimitsSpec {
            messages_per_minute: Some(100),
            api_requests_per_minute: Some(50),
            ..LimitsSpec::default()
        };
        let tenant = LimitsSpec {
            api_requests_per_minute: Some(10),
            ..LimitsSpec::default()
        };
        let resolved = tenant.over(platform.over(Limits::default()));
        assert_eq!(resolved.messages_per_minute, 100);
        assert_eq!(resolved.api_requests_per_minute, 10);
        assert_eq!(
            resolved.webchat_messages_per_minute_per_channel,
            Limits::default().webchat_messages_per_minute_per_channel
        );
    }

    #[test]
    fn zero_and_absurd_figures_are_refused_by_name() {
        let spec = LimitsSpec {
            messages_per_minute: Some(0),
            api_requests_per_minute: Some(MAX_PER_MINUTE),
            webchat_messages_per_minute_per_channel: Some(MAX_PER_MINUTE + 1),
            ..LimitsSpec::default()
        };
        let problems = spec.problems();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            [
                "messages_per_minute",
                "webchat_messages_per_minute_per_channel"
            ]
        );
        assert!(problems[0].1.contains("0 would refuse everything"));
        assert!(problems[1].1.contains("1000000"));
    }
}
