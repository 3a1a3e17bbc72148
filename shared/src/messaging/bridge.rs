//! How components publish to NATS: an HTTP call to the bridge, which answers
//! only after JetStream has stored the message.
//!
//! The bridge's address and publish token are Spin variables (`bridge_url`,
//! `bridge_publish_token`), and the component's `allowed_outbound_hosts` must
//! name the same URL. Unset means "not configured" (503): a message is never
//! acknowledged to a provider unless it is durably published.

use serde::Deserialize;

use crate::host::Host;
use crate::http::Request;
use crate::http::error::ApiError;
use crate::tenancy::ids::{SessionId, TenantId};
use crate::tenancy::subjects::Subject;

/// Publish header naming the message's session (`X-Greentic-Session` on delivery).
pub const SESSION_HEADER: &str = "greentic-session";
/// Publish header with the tenant's inbound rate, messages per minute: the
/// bridge holds the tenant's messages beyond it (delayed, never dropped).
pub const RATE_HEADER: &str = "greentic-rate";

pub const VAR_BRIDGE_URL: &str = "bridge_url";
pub const VAR_PUBLISH_TOKEN: &str = "bridge_publish_token";
/// The token the bridge presents on deliveries (`Authorization: Bearer`).
pub const VAR_DELIVERY_TOKEN: &str = "bridge_delivery_token";

/// JetStream's acknowledgement, as the bridge relays it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublishAck {
    pub stream: String,
    pub seq: u64,
    /// The same `Nats-Msg-Id` was already stored within the duplicate window.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error("{0} is not set")]
    NotConfigured(&'static str),
    /// Nothing was stored; the caller may try again later.
    #[error("bridge unavailable: {0}")]
    Unavailable(String),
    /// The bridge refused the message as larger than its payload limit: no
    /// retry will change that.
    #[error("bridge refused the message as too large: {0}")]
    TooLarge(String),
    /// The bridge refused the message itself: a bug or a misconfiguration here.
    #[error("bridge refused the publish: {0}")]
    Refused(String),
}

/// The most a component publishes in one message. The bridge must take at
/// least this much (its config refuses a lower `max_payload_bytes`); an
/// envelope's text is capped well below it and a turn whose replies exceed
/// it is refused before it is committed.
pub const MAX_PUBLISH_BYTES: usize = 64 * 1024;

impl From<BridgeError> for ApiError {
    fn from(e: BridgeError) -> Self {
        match e {
            BridgeError::NotConfigured(_) => ApiError::NotConfigured(e.to_string()),
            BridgeError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            BridgeError::TooLarge(_) => ApiError::Unprocessable(e.to_string()),
            BridgeError::Refused(_) => ApiError::Internal(e.to_string()),
        }
    }
}

pub struct BridgeClient<'h> {
    host: &'h dyn Host,
}

impl<'h> BridgeClient<'h> {
    pub fn new(host: &'h dyn Host) -> Self {
        BridgeClient { host }
    }

    /// Publishes `payload` to `subject` with `msg_id` as `Nats-Msg-Id`, as a
    /// message of `session`: the bridge delivers one session's messages in
    /// the order JetStream stored them. With `rate_per_minute`, the bridge
    /// delivers the tenant's messages no faster than that.
    pub fn publish(
        &self,
        subject: &Subject,
        msg_id: &str,
        session: &SessionId,
        rate_per_minute: Option<u32>,
        payload: Vec<u8>,
    ) -> Result<PublishAck, BridgeError> {
        let url = configured(self.host, VAR_BRIDGE_URL)?;
        let token = configured(self.host, VAR_PUBLISH_TOKEN)?;
        let mut req = Request::new("POST", &format!("/v1/publish/{subject}"))
            .with_header("authorization", format!("Bearer {token}"))
            .with_header("content-type", "application/json")
            .with_header("nats-msg-id", msg_id)
            .with_header(SESSION_HEADER, session.as_str());
        if let Some(rate) = rate_per_minute {
            req = req.with_header(RATE_HEADER, rate.to_string());
        }
        let req = req.with_body(payload);
        let response = self
            .host
            .send(url.trim_end_matches('/'), req)
            .map_err(|e| BridgeError::Unavailable(e.to_string()))?;
        let detail = || {
            let body = response.json_body();
            let detail = body["detail"].as_str().unwrap_or("no detail");
            format!("{} {detail}", response.status)
        };
        match response.status {
            200 => serde_json::from_slice(&response.body)
                .map_err(|e| BridgeError::Refused(format!("unreadable acknowledgement: {e}"))),
            // A rejected token is the deployment's mistake, and fixing it makes
            // the provider's retry succeed: worth a 503, not a 500.
            401 | 403 | 429 | 500..=599 => Err(BridgeError::Unavailable(detail())),
            413 => Err(BridgeError::TooLarge(detail())),
            _ => Err(BridgeError::Refused(detail())),
        }
    }
}

impl BridgeClient<'_> {
    /// Removes every message of `tenant` from every stream, dead letters
    /// included (bridge/README.md, "Purging a tenant"). Returns how many.
    pub fn purge_tenant(&self, tenant: &TenantId) -> Result<u64, BridgeError> {
        let url = configured(self.host, VAR_BRIDGE_URL)?;
        let token = configured(self.host, VAR_PUBLISH_TOKEN)?;
        let req = Request::new("POST", &format!("/v1/purge/tenants/{tenant}"))
            .with_header("authorization", format!("Bearer {token}"));
        let response = self
            .host
            .send(url.trim_end_matches('/'), req)
            .map_err(|e| BridgeError::Unavailable(e.to_string()))?;
        match response.status {
            200 => response.json_body()["purged"]
                .as_u64()
                .ok_or_else(|| BridgeError::Refused("the purge's answer has no count".into())),
            401 | 403 | 500..=599 => Err(BridgeError::Unavailable(format!(
                "the bridge answered {} to a purge",
                response.status
            ))),
            status => Err(BridgeError::Refused(format!(
                "the bridge answered {status} to a purge"
            ))),
        }
    }
}

fn configured(host: &dyn Host, name: &'static str) -> Result<String, BridgeError> {
    host.variable(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or(BridgeError::NotConfigured(name))
}
