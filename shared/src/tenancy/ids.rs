//! Tenant identity: validated ids and the [`TenantCtx`] every operation carries,
//! and the other ids storage keys and subjects are built from (sessions,
//! conversations, days and usage counters, secret scopes), so that
//! [`crate::tenancy::keys`] needs nothing from the modules that use it.
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
use sha2::{Digest, Sha256};

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

/// A validated tenant id, for what belongs to a tenant as a whole (its
/// configuration) rather than to one env or team.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        validate_id(IdKind::Tenant, raw)?;
        Ok(TenantId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

/// Session ids are derived (32 hex characters), so no longer id can name one.
pub const SESSION_ID_MAX_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// `Err` for an id that is not safe to handle at all (a 400 at the boundary);
    /// `Ok(None)` for a well-formed id that cannot name a session (a 404, without
    /// touching storage).
    pub fn parse(raw: &str) -> Result<Option<Self>, IdError> {
        validate_id(IdKind::Session, raw)?;
        Ok((raw.len() <= SESSION_ID_MAX_LEN).then(|| SessionId(raw.to_owned())))
    }

    /// The id of the session of `user` in `conversation` on the channel.
    ///
    /// Deterministic, so an incoming message finds its session without a scan,
    /// and scoped: every part of the scope is hashed, length-prefixed so that no
    /// two different inputs give the same byte string.
    pub fn derive(
        ctx: &TenantCtx,
        channel: &ChannelId,
        conversation: &Conversation,
        user: &str,
    ) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"greentic-session-v1");
        for part in [
            ctx.tenant_id(),
            ctx.env_id(),
            ctx.team_token(),
            channel.as_str(),
            &conversation.id,
            conversation.thread.as_deref().unwrap_or(""),
            user,
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        SessionId(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The provider's conversation (Slack channel, Telegram chat, Teams
/// conversation, web chat conversation) and thread, where the provider has threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub thread: Option<String>,
}

/// A web chat conversation id: 1-64 of `A-Z a-z 0-9 _ -` (what tokens carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationId(String);

impl ConversationId {
    pub fn parse(raw: &str) -> Result<Self, ConversationIdError> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(ConversationId(raw.to_owned()))
        } else {
            Err(ConversationIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a web chat conversation id was refused (a 400 at the boundary: see
/// `From<ConversationIdError> for ApiError` in [`crate::http::error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a conversation id is 1-64 of A-Z a-z 0-9 _ -")]
pub struct ConversationIdError;

/// The most days one read may cover.
pub const MAX_DAYS: usize = 31;

/// A usage counter's key (see `crate::store::usage`): the traffic of a team
/// and day (messages in and replies out, in one counter so a message costs one
/// increment), and its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Traffic,
    Errors,
    /// Inbound messages the bridge held for the tenant's rate.
    Delayed,
    /// REST calls refused with 429.
    ApiRefused,
    /// Web chat messages refused with 429.
    WebchatRefused,
}

impl Counter {
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Traffic => "traffic",
            Counter::Errors => "errors",
            Counter::Delayed => "delayed",
            Counter::ApiRefused => "api-refused",
            Counter::WebchatRefused => "webchat-refused",
        }
    }
}

/// A UTC calendar day, `YYYY-MM-DD`; only ever built from a clock or a
/// checked string, so it is safe in a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(String);

const DAY_MS: i64 = 86_400_000;

impl Day {
    pub fn of(ms: i64) -> Day {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        Day(humantime::format_rfc3339(at).to_string()[..10].to_owned())
    }

    /// A `YYYY-MM-DD` date, or `None`.
    pub fn parse(raw: &str) -> Option<Day> {
        let parsed = humantime::parse_rfc3339(&format!("{raw}T00:00:00Z")).ok()?;
        let day = Day::of(
            parsed
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_millis() as i64,
        );
        (day.0 == raw).then_some(day)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn start_ms(&self) -> i64 {
        humantime::parse_rfc3339(&format!("{}T00:00:00Z", self.0))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// Every day from `from` to `to`, inclusive; `None` if reversed or longer than [`MAX_DAYS`].
    pub fn range(from: &Day, to: &Day) -> Option<Vec<Day>> {
        let (start, end) = (from.start_ms(), to.start_ms());
        if end < start || (end - start) / DAY_MS >= MAX_DAYS as i64 {
            return None;
        }
        Some(
            (0..=(end - start) / DAY_MS)
                .map(|i| Day::of(start + i * DAY_MS))
                .collect(),
        )
    }
}

/// Where a secret lives. Built from a validated [`TenantCtx`], never from raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretScope {
    /// Platform-wide (`secrets/global/{name}`).
    Global,
    /// One tenant, every env and team (`secrets/{tenant}/{name}`).
    Tenant(String),
    /// One team of a tenant (`secrets/{tenant}/teams/{team}/{name}`).
    Team(String, String),
}

impl SecretScope {
    /// The tenant's scope; the context's env and team do not matter (the seed
    /// keeps secrets per tenant and team, not per environment).
    pub fn tenant_of(ctx: &TenantCtx) -> Self {
        SecretScope::Tenant(ctx.tenant_id().to_owned())
    }

    /// The team's scope, or `None` for a context without a team.
    pub fn team_of(ctx: &TenantCtx) -> Option<Self> {
        ctx.team_id()
            .map(|team| SecretScope::Team(ctx.tenant_id().to_owned(), team.to_owned()))
    }

    /// `global`, `tenant` or `team`, as reported in metadata and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SecretScope::Global => "global",
            SecretScope::Tenant(_) => "tenant",
            SecretScope::Team(..) => "team",
        }
    }
}

impl fmt::Display for SecretScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretScope::Global => f.write_str("global"),
            SecretScope::Tenant(t) => write!(f, "{t}"),
            SecretScope::Team(t, team) => write!(f, "{t}/teams/{team}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::UNSAFE_IDS;

    fn ctx() -> TenantCtx {
        TenantCtx::new("acme", "prod", Some("support")).unwrap()
    }

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

    #[test]
    fn session_ids_are_deterministic_and_scoped() {
        let slack = ChannelId::parse("slack").unwrap();
        let conv = Conversation {
            id: "C1".into(),
            thread: None,
        };
        let a = SessionId::derive(&ctx(), &slack, &conv, "U1");
        assert_eq!(a, SessionId::derive(&ctx(), &slack, &conv, "U1"));
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(SessionId::parse(a.as_str()).unwrap(), Some(a.clone()));
        let other_team = ctx().with_team(Some("sales")).unwrap();
        let other_tenant = TenantCtx::new("bigcorp", "prod", Some("support")).unwrap();
        let thread = Conversation {
            id: "C1".into(),
            thread: Some("t".into()),
        };
        for different in [
            SessionId::derive(&other_team, &slack, &conv, "U1"),
            SessionId::derive(&other_tenant, &slack, &conv, "U1"),
            SessionId::derive(&ctx(), &ChannelId::parse("telegram").unwrap(), &conv, "U1"),
            SessionId::derive(&ctx(), &slack, &thread, "U1"),
            SessionId::derive(&ctx(), &slack, &conv, "U2"),
        ] {
            assert_ne!(different, a);
        }
        // Length prefixes keep shifted boundaries apart: ("C1", "U1") vs ("C1U", "1").
        let shifted = Conversation {
            id: "C1U".into(),
            thread: None,
        };
        assert_ne!(
            SessionId::derive(&ctx(), &slack, &shifted, "1"),
            SessionId::derive(&ctx(), &slack, &conv, "U1")
        );
    }

    #[test]
    fn long_well_formed_ids_name_nothing() {
        assert_eq!(SessionId::parse(&"a".repeat(33)).unwrap(), None);
        assert!(SessionId::parse("a.b").is_err());
    }

    #[test]
    fn days_parse_strictly_and_ranges_are_bounded() {
        assert_eq!(Day::of(0).as_str(), "1970-01-01");
        assert_eq!(Day::parse("2026-11-29").unwrap().as_str(), "2026-11-29");
        for bad in [
            "2026-11-31",
            "2026-1-29",
            "29-11-2026",
            "2026-11-29x",
            "",
            "2026-11-29/../x",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        let (a, b) = (
            Day::parse("2026-11-28").unwrap(),
            Day::parse("2026-12-01").unwrap(),
        );
        let days: Vec<String> = Day::range(&a, &b)
            .unwrap()
            .iter()
            .map(|d| d.0.clone())
            .collect();
        assert_eq!(
            days,
            ["2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01"]
        );
        assert!(Day::range(&b, &a).is_none());
        assert!(
            Day::range(
                &Day::parse("2026-01-01").unwrap(),
                &Day::parse("2026-02-01").unwrap()
            )
            .is_none()
        );
    }
}
