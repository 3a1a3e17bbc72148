//! Secrets: tenant-scoped, encrypted at rest, held by one component.
//!
//! The seed's namespacing (`secrets/global/..`, `secrets/{tenant}/..`,
//! `secrets/{tenant}/teams/{team}/..`) is
//! [`SecretScope`](crate::tenancy::ids::SecretScope), an id beside the others
//! since storage keys are built from it. Only the secrets broker
//! opens the store that holds them ([`STORE_LABEL`]); every other component asks
//! the broker through [`client::SecretsClient`], preferably for an operation
//! ("verify this HMAC with the channel's signing secret") so the value never
//! leaves the broker. The names a channel's secrets take
//! ([`SECRET_PURPOSES`]) are here too, so bundle validation (`flows`) and the
//! providers (`messaging`) agree on them.
//!
//! Uses everything below `flows`.

pub mod client;
pub mod crypto;
pub mod store;

use crate::tenancy::ids::SecretName;

/// The key-value store (spin.toml label) of the secrets broker, and only of it.
pub const STORE_LABEL: &str = "secrets";

/// Suffixes of the secrets that verify what others send (a provider's
/// signing secret, Telegram's webhook secret token, web chat's token signing
/// key): guessing one forges traffic, so each must be long.
pub const VERIFICATION_SUFFIXES: &[&str] = &["_signing_secret", "_webhook_secret", "_token_secret"];

/// What a channel keeps in the secrets broker, as `{channel}_{purpose}`.
pub const SECRET_PURPOSES: &[&str] = &[
    "signing_secret",
    "webhook_secret",
    "token_secret",
    "bot_token",
    "app_password",
];

/// The longest channel id whose every secret name is a valid secret name
/// (`{channel}_{purpose}` within the id limit): bundle validation holds
/// channels to it.
pub const CHANNEL_ID_MAX_LEN: usize = crate::tenancy::ids::ID_MAX_LEN - 1 - 14;

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
