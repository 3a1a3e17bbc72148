//! The keys Bot Framework signs connector tokens with.
//!
//! Microsoft rotates them, so they are not configuration: they are fetched
//! from Bot Framework's OpenID metadata (`{teams_openid_host}/v1/.well-known/
//! openidconfiguration`, whose `jwks_uri` names the keys document) and kept in
//! the `cache` key-value store for [`KEYS_TTL_MS`], as the Bot Framework SDKs
//! keep them (botbuilder-js and -python refresh daily). A token signed with a
//! key the cache does not know triggers a refresh, at most once per
//! [`REFRESH_INTERVAL_MS`] (the SDKs: once an hour), so a stream of forged
//! `kid`s cannot make every request fetch.
//!
//! `teams_jwks`, when set, pins the keys instead (the JSON of the keys
//! document): nothing is fetched, and a key not in it is refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::host::Host;
use crate::http::Request;
use crate::http::error::ApiError;
use crate::tenancy::keys;

/// Pinned keys (the JSON of a JWKS document); empty = fetch them.
pub const VAR_JWKS: &str = "teams_jwks";
/// Where Bot Framework publishes its OpenID metadata (scheme and host).
pub const VAR_OPENID_HOST: &str = "teams_openid_host";
pub const DEFAULT_OPENID_HOST: &str = "https://login.botframework.com";
pub const OPENID_PATH: &str = "/v1/.well-known/openidconfiguration";

/// The key-value store (spin.toml label) of what ingress fetches from providers.
pub const CACHE_STORE: &str = "cache";

/// How long fetched keys are used before they are fetched again.
pub const KEYS_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// The least time between two fetches (after an unknown `kid` or a failure).
pub const REFRESH_INTERVAL_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CachedKeys {
    /// When the keys were fetched (0 = never).
    fetched_at_ms: i64,
    /// When a fetch was last tried, successful or not.
    tried_at_ms: i64,
    /// The `keys` array of the JWKS document.
    keys: Vec<Value>,
}

/// The key with id `kid`, as a JWK (with its `endorsements`), or 401 when
/// there is none; 503 when the keys cannot be had right now.
pub fn find(host: &dyn Host, kid: &str, now_ms: i64) -> Result<Value, ApiError> {
    let unknown =
        || ApiError::Unauthorized("token signed by a key Bot Framework does not publish".into());
    if let Some(pinned) = host.variable(VAR_JWKS).filter(|v| !v.trim().is_empty()) {
        let jwks: Value = serde_json::from_str(&pinned)
            .map_err(|e| ApiError::NotConfigured(format!("{VAR_JWKS} is not JSON: {e}")))?;
        return key_in(jwks["keys"].as_array().map_or(&[][..], Vec::as_slice), kid)
            .ok_or_else(unknown);
    }
    let kv = host.open_store(CACHE_STORE)?;
    let key = keys::teams_signing_keys();
    let mut cached: CachedKeys = kv
        .get(&key)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let fresh = now_ms - cached.fetched_at_ms < KEYS_TTL_MS;
    if fresh && let Some(found) = key_in(&cached.keys, kid) {
        return Ok(found);
    }
    if now_ms - cached.tried_at_ms < REFRESH_INTERVAL_MS {
        // Fetched (or tried) a moment ago: the keys are as good as they get.
        return key_in(&cached.keys, kid).ok_or_else(unknown);
    }
    cached.tried_at_ms = now_ms;
    let fetched = fetch(host);
    if let Ok(keys) = &fetched {
        cached.keys = keys.clone();
        cached.fetched_at_ms = now_ms;
    }
    let bytes = serde_json::to_vec(&cached).expect("cached keys serialise");
    kv.set(&key, &bytes)?;
    match fetched {
        Ok(keys) => key_in(&keys, kid).ok_or_else(unknown),
        // Keys fetched earlier still verify while Bot Framework is unreachable.
        Err(e) => key_in(&cached.keys, kid).ok_or(e),
    }
}

fn key_in(keys: &[Value], kid: &str) -> Option<Value> {
    keys.iter()
        .find(|k| k["kid"].as_str() == Some(kid))
        .cloned()
}

/// The metadata, then the keys document its `jwks_uri` names, which must be
/// on the metadata's own host (nothing else is an allowed outbound host).
fn fetch(host: &dyn Host) -> Result<Vec<Value>, ApiError> {
    let base = host
        .variable(VAR_OPENID_HOST)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_OPENID_HOST.to_owned());
    let base = base.trim_end_matches('/');
    let get = |path: &str| -> Result<Value, ApiError> {
        let response = host
            .send(base, Request::new("GET", path))
            .map_err(|e| ApiError::Unavailable(format!("Bot Framework keys: {e}")))?;
        if response.status != 200 {
            return Err(ApiError::Unavailable(format!(
                "Bot Framework keys: {path} answered {}",
                response.status
            )));
        }
        serde_json::from_slice(&response.body)
            .map_err(|_| ApiError::Unavailable(format!("Bot Framework keys: {path} is not JSON")))
    };
    let metadata = get(OPENID_PATH)?;
    let jwks_uri = metadata["jwks_uri"].as_str().unwrap_or_default();
    let path = jwks_uri
        .strip_prefix(base)
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| {
            ApiError::Unavailable(
                "Bot Framework keys: the metadata's jwks_uri is not on its own host".into(),
            )
        })?;
    let jwks = get(path)?;
    jwks["keys"]
        .as_array()
        .cloned()
        .ok_or_else(|| ApiError::Unavailable("Bot Framework keys: no `keys` array".into()))
}
