//! Tenant identity: validated ids and the [`TenantCtx`] every operation carries.
//!
//! Ids end up inside storage keys (`sessions/{tenant}/...`, `state:{tenant}:...`)
//! and NATS subject tokens (`greentic.messaging.ingress.{env}.{tenant}...`). The
//! one syntax below keeps them from colliding or becoming wildcards: no `/`, `:`,
//! `.`, `*`, `>`, whitespace or upper case can ever reach a key or a subject.
//!
//! **Architecture Invariant:** a `TenantCtx` can only be built through
//! [`TenantCtx::new`], so every `TenantCtx` in the program is valid. Its fields are
//! private (the seed shows them `pub`) precisely so nobody can build one unchecked.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id accepted: 1 leading character + 62 more (`^[a-z0-9][a-z0-9_-]{0,62}$`).
pub const ID_MAX_LEN: usize = 63;

/// The token written wherever a key or subject needs a team and there is none.
pub const DEFAULT_TEAM: &str = "default";

/// Tenant ids that would collide with a platform-wide key space
/// (`secrets/global/...` sits beside `secrets/{tenant}/...`).
const RESERVED_TENANTS: &[&str] = &["global"];

/// What an id names; used in error messages so a caller knows which field was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Tenant,
    Env,
    Team,
    Channel,
    Session,
    Secret,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Tenant => "tenant",
            IdKind::Env => "env",
            IdKind::Team => "team",
            IdKind::Channel => "channel",
            IdKind::Session => "session",
            IdKind::Secret => "secret name",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an id was refused. The refused text itself is never echoed back: it can
/// be anything a client sent, including control characters or another tenant's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{0} id is missing")]
    Missing(IdKind),
    #[error("{0} id is not valid: ids match ^[a-z0-9][a-z0-9_-]{{0,62}}$")]
    Invalid(IdKind),
    #[error("{0} id is reserved by the platform")]
    Reserved(IdKind),
}

impl IdError {
    pub fn kind(&self) -> IdKind {
        match self {
            IdError::Missing(k) | IdError::Invalid(k) | IdError::Reserved(k) => *k,
        }
    }
}

/// Checks the id syntax shared by tenants, envs, teams, channels, sessions and
/// secret names.
pub fn validate_id(kind: IdKind, raw: &str) -> Result<(), IdError> {
    let bytes = raw.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(IdError::Missing(kind));
    };
    let first_ok = first.is_ascii_lowercase() || first.is_ascii_digit();
    let rest_ok = bytes[1..]
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if !first_ok || !rest_ok || bytes.len() > ID_MAX_LEN {
        return Err(IdError::Invalid(kind));
    }
    if kind == IdKind::Tenant && RESERVED_TENANTS.contains(&raw) {
        return Err(IdError::Reserved(kind));
    }
    Ok(())
}

/// The scope of every operation: tenant > environment > optional team.
///
/// A team id of `default` means "no team" and is stored as `None`, so the two
/// spellings can never name two different key spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawTenantCtx", into = "RawTenantCtx")]
pub struct TenantCtx {
    tenant_id: String,
    env_id: String,
    team_id: Option<String>,
}

impl TenantCtx {
    pub fn new(tenant_id: &str, env_id: &str, team_id: Option<&str>) -> Result<Self, IdError> {
        validate_id(IdKind::Tenant, tenant_id)?;
        validate_id(IdKind::Env, env_id)?;
        if let Some(team) = team_id {
            validate_id(IdKind::Team, team)?;
        }
        Ok(TenantCtx {
            tenant_id: tenant_id.to_owned(),
            env_id: env_id.to_owned(),
            team_id: team_id.filter(|t| *t != DEFAULT_TEAM).map(str::to_owned),
        })
    }

    /// From a webhook route `/webhooks/{env}/{tenant}/{team}/{channel}`: the
    /// segments come in route order, env first, and the team is always present.
    pub fn from_route(env: &str, tenant: &str, team: &str) -> Result<Self, IdError> {
        // Check in path order so the error names the first bad segment.
        validate_id(IdKind::Env, env)?;
        TenantCtx::new(tenant, env, Some(team))
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn env_id(&self) -> &str {
        &self.env_id
    }

    pub fn team_id(&self) -> Option<&str> {
        self.team_id.as_deref()
    }

    /// The team as written in keys and subjects: the team id, or `default`.
    pub fn team_token(&self) -> &str {
        self.team_id.as_deref().unwrap_or(DEFAULT_TEAM)
    }

    /// The same tenant and env with another team (or none).
    pub fn with_team(&self, team_id: Option<&str>) -> Result<Self, IdError> {
        TenantCtx::new(&self.tenant_id, &self.env_id, team_id)
    }
}

impl fmt::Display for TenantCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.tenant_id,
            self.env_id,
            self.team_token()
        )
    }
}

#[derive(Serialize, Deserialize)]
struct RawTenantCtx {
    tenant_id: String,
    env_id: String,
    team_id: Option<String>,
}

impl TryFrom<RawTenantCtx> for TenantCtx {
    type Error = IdError;
    fn try_from(raw: RawTenantCtx) -> Result<Self, IdError> {
        TenantCtx::new(&raw.tenant_id, &raw.env_id, raw.team_id.as_deref())
    }
}

impl From<TenantCtx> for RawTenantCtx {
    fn from(ctx: TenantCtx) -> Self {
        RawTenantCtx {
            tenant_id: ctx.tenant_id,
            env_id: ctx.env_id,
            team_id: ctx.team_id,
        }
    }
}

/// A validated id of a single kind (channel, session, secret name), for the
/// places that need one id rather than a whole [`TenantCtx`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(String);

impl ChannelId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        validate_id(IdKind::Channel, raw)?;
        Ok(ChannelId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated secret name (same syntax as ids: it becomes the last segment of
/// a `secrets/...` key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        validate_id(IdKind::Secret, raw)?;
        Ok(SecretName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::UNSAFE_IDS;

    #[test]
    fn accepts_the_documented_syntax() {
        for ok in ["acme", "a", "0", "big-corp", "team_1", &"a".repeat(63)] {
            validate_id(IdKind::Team, ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
    }

    #[test]
    fn refuses_every_unsafe_id_in_every_position() {
        let too_long = "a".repeat(64);
        for bad in UNSAFE_IDS.iter().copied().chain([too_long.as_str()]) {
            assert!(TenantCtx::new(bad, "prod", None).is_err(), "tenant {bad:?}");
            assert!(TenantCtx::new("acme", bad, None).is_err(), "env {bad:?}");
            assert!(
                TenantCtx::new("acme", "prod", Some(bad)).is_err(),
                "team {bad:?}"
            );
            assert!(ChannelId::parse(bad).is_err(), "channel {bad:?}");
            assert!(SecretName::parse(bad).is_err(), "secret {bad:?}");
        }
    }

    #[test]
    fn errors_name_the_field_and_never_echo_the_input() {
        let err = TenantCtx::new("acme", "Prod*", None).unwrap_err();
        assert_eq!(err, IdError::Invalid(IdKind::Env));
        assert!(!err.to_string().contains("Prod*"));
        assert_eq!(
            TenantCtx::new("", "prod", None).unwrap_err(),
            IdError::Missing(IdKind::Tenant)
        );
    }

    #[test]
    fn global_is_not_a_tenant() {
        assert_eq!(
            TenantCtx::new("global", "prod", None).unwrap_err(),
            IdError::Reserved(IdKind::Tenant)
        );
    }

    #[test]
    fn default_team_is_no_team() {
        let a = TenantCtx::new("acme", "prod", Some("default")).unwrap();
        let b = TenantCtx::new("acme", "prod", None).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.team_id(), None);
        assert_eq!(a.team_token(), "default");
    }

    #[test]
    fn route_order_is_env_tenant_team() {
        let ctx = TenantCtx::from_route("prod", "acme", "support").unwrap();
        assert_eq!(
            (ctx.tenant_id(), ctx.env_id(), ctx.team_id()),
            ("acme", "prod", Some("support"))
        );
        assert_eq!(
            TenantCtx::from_route("a.b", "acme", "x")
                .unwrap_err()
                .kind(),
            IdKind::Env
        );
    }

    #[test]
    fn deserialising_validates() {
        let bad = serde_json::json!({"tenant_id": "acme.x", "env_id": "prod", "team_id": null});
        assert!(serde_json::from_value::<TenantCtx>(bad).is_err());
        let good = serde_json::json!({"tenant_id": "acme", "env_id": "prod", "team_id": "support"});
        let ctx: TenantCtx = serde_json::from_value(good).unwrap();
        assert_eq!(ctx.team_token(), "support");
    }
}
