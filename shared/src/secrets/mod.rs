//! Secrets: tenant-scoped, encrypted at rest, held by one component.
//!
//! The seed's namespacing (`secrets/global/..`, `secrets/{tenant}/..`,
//! `secrets/{tenant}/teams/{team}/..`) is [`SecretScope`]. Only the secrets broker
//! opens the store that holds them ([`STORE_LABEL`]); every other component asks
//! the broker through [`client::SecretsClient`], preferably for an operation
//! ("verify this HMAC with the channel's signing secret") so the value never
//! leaves the broker.

pub mod client;
pub mod crypto;
pub mod store;

use std::fmt;

use crate::tenant::{SecretName, TenantCtx};

/// The key-value store (spin.toml label) of the secrets broker, and only of it.
pub const STORE_LABEL: &str = "secrets";

/// Suffixes of the secrets that verify what others send (a provider's
/// signing secret, Telegram's webhook secret token, web chat's token signing
/// key): guessing one forges traffic, so each must be long.
pub const VERIFICATION_SUFFIXES: &[&str] = &["_signing_secret", "_webhook_secret", "_token_secret"];

/// Shortest value of a verification secret, in bytes.
pub const MIN_VERIFICATION_SECRET_LEN: usize = 16;

/// Why a value cannot be stored under its name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("a secret's value cannot be empty")]
    Empty,
    #[error(
        "`{0}` verifies requests: its value must be at least {MIN_VERIFICATION_SECRET_LEN} bytes"
    )]
    TooShort(String),
}

/// Refuses values that would make a secret worthless: an empty one (an HMAC
/// under an empty key is computable by anyone), or a short verification secret.
pub fn check_value(name: &SecretName, value: &[u8]) -> Result<(), ValueError> {
    if value.is_empty() {
        return Err(ValueError::Empty);
    }
    let verifies = VERIFICATION_SUFFIXES
        .iter()
        .any(|suffix| name.as_str().ends_with(suffix));
    if verifies && value.len() < MIN_VERIFICATION_SECRET_LEN {
        return Err(ValueError::TooShort(name.as_str().to_owned()));
    }
    Ok(())
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
