//! How components reach secrets: through the broker, over Spin service
//! chaining, on routes only the app itself can call.
//!
//! [`BrokerClient`] is the one client; [`SecretsClient`] lets a component's
//! tests swap in [`crate::testing::FakeSecrets`]. A missing secret is
//! [`SecretsClientError::NotFound`], which callers must turn into a refusal:
//! there is no way to "skip" a check from here.

use serde_json::json;

use crate::host::Host;
use crate::http::Request;
use std::collections::BTreeSet;

use crate::tenancy::ids::{SecretName, TenantCtx, TenantId};

/// The broker as other components address it (service chaining).
pub const BROKER_URL: &str = "http://secrets-broker.spin.internal";
pub const RESOLVE_PATH: &str = "/internal/v1/secrets/resolve";
pub const VERIFY_HMAC_SHA256_PATH: &str = "/internal/v1/secrets/verify-hmac-sha256";
pub const FORGET_TENANT_PATH: &str = "/internal/v1/secrets/forget-tenant";
/// Which component is asking, for the broker's audit line.
pub const CALLER_HEADER: &str = "x-greentic-component";
/// The secret an HMAC check is about (the message is the request's body).
pub const SECRET_NAME_HEADER: &str = "x-greentic-secret-name";
/// The MAC to check, hex.
pub const MAC_HEADER: &str = "x-greentic-hmac-sha256";

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
        mut req: Request,
        ctx: &TenantCtx,
    ) -> Result<serde_json::Value, SecretsClientError> {
        req = req
            .with_header(CALLER_HEADER, self.component)
            .with_header("x-tenant-id", ctx.tenant_id())
            .with_header("x-env-id", ctx.env_id());
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

impl BrokerClient<'_> {
    /// One step of deleting every secret of `tenant` (and of its `teams`,
    /// besides those the broker knows have secrets): how many went, and
    /// whether more are left (call again).
    pub fn forget_tenant(
        &self,
        tenant: &TenantId,
        teams: &BTreeSet<String>,
    ) -> Result<(u64, bool), SecretsClientError> {
        let req = Request::new("POST", FORGET_TENANT_PATH)
            .with_header("content-type", "application/json")
            .with_header(CALLER_HEADER, self.component)
            .with_header("x-tenant-id", tenant.as_str())
            .with_body(json!({ "teams": teams }).to_string());
        let response = self
            .host
            .send(BROKER_URL, req)
            .map_err(|e| SecretsClientError::Unavailable(e.to_string()))?;
        if response.status != 200 {
            return Err(SecretsClientError::Unavailable(format!(
                "broker answered {}",
                response.status
            )));
        }
        let body = response.json_body();
        match (body["removed"].as_u64(), body["more"].as_bool()) {
            (Some(removed), Some(more)) => Ok((removed, more)),
            _ => Err(SecretsClientError::Unavailable(
                "broker answer has no count".into(),
            )),
        }
    }
}

impl SecretsClient for BrokerClient<'_> {
    /// An empty value is as good as none (the broker refuses to store one;
    /// an older record may hold it): nothing verifies with it.
    fn resolve(&self, ctx: &TenantCtx, name: &SecretName) -> Result<Vec<u8>, SecretsClientError> {
        let req = Request::new("POST", RESOLVE_PATH)
            .with_header("content-type", "application/json")
            .with_body(json!({ "name": name }).to_string());
        let body = self.call(req, ctx)?;
        let value = body["value"]
            .as_str()
            .ok_or_else(|| SecretsClientError::Unavailable("broker answer has no value".into()))?;
        if value.is_empty() {
            return Err(SecretsClientError::NotFound);
        }
        Ok(value.as_bytes().to_vec())
    }

    fn verify_hmac_sha256(
        &self,
        ctx: &TenantCtx,
        name: &SecretName,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretsClientError> {
        // The message goes as the raw body: base64 in JSON would inflate a
        // webhook of ingress's largest size past what the broker takes.
        let req = Request::new("POST", VERIFY_HMAC_SHA256_PATH)
            .with_header("content-type", "application/octet-stream")
            .with_header(SECRET_NAME_HEADER, name.as_str())
            .with_header(MAC_HEADER, hex::encode(mac))
            .with_body(message.to_vec());
        let answer = self.call(req, ctx)?;
        answer["valid"]
            .as_bool()
            .ok_or_else(|| SecretsClientError::Unavailable("broker answer has no verdict".into()))
    }
}

/// HMAC-SHA256 of `message` under `key`, checked against `mac` in constant
/// time. Never true under an empty key: anyone can compute that HMAC.
pub fn hmac_sha256_matches(key: &[u8], message: &[u8], mac: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    if key.is_empty() {
        return false;
    }
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
