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

use crate::tenant::TenantCtx;

/// The key-value store (spin.toml label) of the secrets broker, and only of it.
pub const STORE_LABEL: &str = "secrets";

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
