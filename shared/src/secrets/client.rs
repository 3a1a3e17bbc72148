//! How components reach secrets: through the broker, over Spin service
//! chaining, on routes only the app itself can call.
//!
//! [`BrokerClient`] is the one client; [`SecretsClient`] lets a component's
//! tests swap in [`crate::testing::FakeSecrets`]. A missing secret is
//! [`SecretsClientError::NotFound`], which callers must turn into a refusal:
//! there is no way to "skip" a check from here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::host::Host;
use crate::http::Request;
use crate::tenant::{SecretName, TenantCtx};

/// The broker as other components address it (service chaining).
pub const BROKER_URL: &str = "http://secrets-broker.spin.internal";
pub const RESOLVE_PATH: &str = "/internal/v1/secrets/resolve";
pub const VERIFY_HMAC_SHA256_PATH: &str = "/internal/v1/secrets/verify-hmac-sha256";
/// Which component is asking, for the broker's audit line.
pub const CALLER_HEADER: &str = "x-greentic-component";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsClientError {
    #[error("secret is not configured")]
    NotFound,
    #[error("secrets broker unavailable: {0}")]
    Unavailable(String),
}

pub trait SecretsClient {
    /// The secret's value: the context's team scope first, then its tenant's.
    fn resolve(&self, ctx: &TenantCtx, name: &SecretName) -> Result<Vec<u8>, SecretsClientError>;

    /// Whether `mac` is HMAC-SHA256 of `message` under the named secret,
    /// compared in constant time by the broker. The secret never leaves it.
    fn verify_hmac_sha256(
        &self,
        ctx: &TenantCtx,
        name: &SecretName,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretsClientError>;
}

pub struct BrokerClient<'h> {
    host: &'h dyn Host,
    component: &'static str,
}

impl<'h> BrokerClient<'h> {
    pub fn new(host: &'h dyn Host, component: &'static str) -> Self {
        BrokerClient { host, component }
    }

    fn call(
        &self,
        path: &str,
        ctx: &TenantCtx,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, SecretsClientError> {
        let mut req = Request::new("POST", path)
            .with_header("content-type", "application/json")
            .with_header(CALLER_HEADER, self.component)
            .with_header("x-tenant-id", ctx.tenant_id())
            .with_header("x-env-id", ctx.env_id())
            .with_body(body.to_string());
        if let Some(team) = ctx.team_id() {
            req = req.with_header("x-team-id", team);
        }
        let response = self
            .host
            .send(BROKER_URL, req)
            .map_err(|e| SecretsClientError::Unavailable(e.to_string()))?;
        match response.status {
            200 => Ok(response.json_body()),
            404 => Err(SecretsClientError::NotFound),
            status => Err(SecretsClientError::Unavailable(format!(
                "broker answered {status}"
            ))),
        }
    }
}

impl SecretsClient for BrokerClient<'_> {
    fn resolve(&self, ctx: &TenantCtx, name: &SecretName) -> Result<Vec<u8>, SecretsClientError> {
        let body = self.call(RESOLVE_PATH, ctx, json!({ "name": name }))?;
        body["value"]
            .as_str()
            .map(|v| v.as_bytes().to_vec())
            .ok_or_else(|| SecretsClientError::Unavailable("broker answer has no value".into()))
    }

    fn verify_hmac_sha256(
        &self,
        ctx: &TenantCtx,
        name: &SecretName,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretsClientError> {
        let body = json!({ "name": name, "message_b64": STANDARD.encode(message), "mac_hex": hex::encode(mac) });
        let answer = self.call(VERIFY_HMAC_SHA256_PATH, ctx, body)?;
        answer["valid"]
            .as_bool()
            .ok_or_else(|| SecretsClientError::Unavailable("broker answer has no verdict".into()))
    }
}

/// HMAC-SHA256 of `message` under `key`, checked against `mac` in constant time.
pub fn hmac_sha256_matches(key: &[u8], message: &[u8], mac: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    let mut hmac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    hmac.update(message);
    hmac.verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231, test case 2.
        let mac = hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
            .unwrap();
        assert!(hmac_sha256_matches(
            b"Jefe",
            b"what do ya want for nothing?",
            &mac
        ));
        assert!(!hmac_sha256_matches(
            b"Jefe",
            b"what do ya want for nothing!",
            &mac
        ));
        assert!(!hmac_sha256_matches(
            b"Jefe",
            b"what do ya want for nothing?",
            &mac[..31]
        ));
    }
}
