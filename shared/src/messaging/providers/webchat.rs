//! The platform's own web chat (`messaging-webchat`).
//!
//! A site holding the channel's secret (`{channel}_token_secret`) exchanges it
//! for a short-lived token bound to one tenant/env/team/channel, one
//! conversation and one user ([`issue_token`], `POST .../{channel}/tokens`);
//! the browser then posts activities with that token to the channel's webhook.
//! Tokens are HS256 JWTs under a key derived from the channel secret, so a
//! token of one channel (or tenant) never verifies on another, and rotating the
//! secret revokes every token issued with it.

use hmac::{KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Inbound, Message, Webhook, bearer, envelope, json_body, matches_secret, secret_error,
    secret_name,
};
use crate::flows::tenant_config::ChannelConfig;
use crate::host::Host;
use crate::http::error::ApiError;
use crate::http::{Request, Response};
use crate::messaging::envelope::{ReplyAddress, Sender};
use crate::secrets::client::SecretsClient;
use crate::tenancy::ids::Conversation;

/// How long a web chat token is valid.
pub const TOKEN_TTL_SECS: i64 = 30 * 60;
const ISSUER: &str = "greentic-webchat";
const SECRET_PURPOSE: &str = "token_secret";

/// What a web chat token grants.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenClaims {
    iss: String,
    aud: String,
    /// The user this token speaks for.
    pub sub: String,
    pub name: Option<String>,
    /// The conversation it may post to and read.
    pub conv: String,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    user_id: Option<String>,
    user_name: Option<String>,
    conversation_id: Option<String>,
}

/// `POST /webhooks/{env}/{tenant}/{team}/{channel}/tokens`, authenticated
/// with the channel's web chat secret.
pub fn issue_token(
    channel: &ChannelConfig,
    req: &Request,
    host: &dyn Host,
    secrets: &dyn SecretsClient,
) -> Result<Response, ApiError> {
    let presented = bearer(req)?;
    let now_ms = host.now_ms();
    let hook = Webhook {
        channel,
        req,
        now_ms,
        secrets,
        host,
    };
    if !matches_secret(&hook, SECRET_PURPOSE, presented.as_bytes())? {
        return Err(ApiError::Unauthorized(
            "the web chat secret does not match".into(),
        ));
    }
    let asked: TokenRequest = if req.body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::BadRequest(format!("token request: {e}")))?
    };
    let fresh = |prefix: &str| {
        let mut bytes = [0u8; 16];
        host.random(&mut bytes);
        format!("{prefix}{}", hex::encode(bytes))
    };
    let user_id = checked_id("user_id", asked.user_id)?.unwrap_or_else(|| fresh("u-"));
    let conversation =
        checked_id("conversation_id", asked.conversation_id)?.unwrap_or_else(|| fresh("wc-"));
    let user_name = asked.user_name.filter(|n| !n.trim().is_empty());
    if user_name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        return Err(ApiError::BadRequest(
            "user_name is at most 100 characters".into(),
        ));
    }
    let now = now_ms / 1000;
    let claims = TokenClaims {
        iss: ISSUER.into(),
        aud: audience(channel),
        sub: user_id.clone(),
        name: user_name,
        conv: conversation.clone(),
        iat: now,
        exp: now + TOKEN_TTL_SECS,
    };
    let key = signing_key(channel, secrets)?;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&key).map_err(|e| ApiError::Internal(e.to_string()))?,
    )
    .map_err(|e| ApiError::Internal(format!("cannot sign a web chat token: {e}")))?;
    Ok(Response::json(
        200,
        &json!({
            "token": token,
            "conversation_id": conversation,
            "user_id": user_id,
            "expires_in": TOKEN_TTL_SECS,
        }),
    ))
}

/// An activity the browser posted with its token.
pub fn receive(hook: &Webhook<'_>) -> Result<Inbound, ApiError> {
    let claims = verify_token(hook.channel, bearer(hook.req)?, hook.now_ms, hook.secrets)?;
    let activity = json_body(hook.req)?;
    if activity["type"] != "message" {
        return Ok(Inbound::Ignore("activity is not a message"));
    }
    let id = activity["id"]
        .as_str()
        .filter(|id| plain_id(id))
        .ok_or_else(|| {
            ApiError::BadRequest("activity `id` must be 1-64 of A-Z a-z 0-9 _ -".into())
        })?;
    let text = activity["text"]
        .as_str()
        .ok_or_else(|| ApiError::BadRequest("message activity without `text`".into()))?;
    Ok(Inbound::Message(Box::new(envelope(
        hook.channel,
        Message {
            id_kind: "activity",
            // The browser picks activity ids: they are unique within its
            // conversation only, so the dedupe id names the conversation too.
            provider_id: crate::tenancy::subjects::within_conversation(&claims.conv, id),
            conversation: Conversation {
                id: claims.conv,
                thread: None,
            },
            sender: Sender {
                id: claims.sub,
                name: claims.name,
            },
            text: text.to_owned(),
            sent_at_ms: hook.now_ms,
            attachments: Vec::new(),
            reply: ReplyAddress {
                message_id: Some(id.to_owned()),
                service_url: None,
            },
        },
    ))))
}

/// The conversation and user a token speaks for, if it is this channel's and current.
pub fn verify_token(
    channel: &ChannelConfig,
    token: &str,
    now_ms: i64,
    secrets: &dyn SecretsClient,
) -> Result<TokenClaims, ApiError> {
    let key = signing_key(channel, secrets)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[audience(channel)]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Expiry against the host's clock, below.
    validation.validate_exp = false;
    let decoding = DecodingKey::from_secret(&key).map_err(|e| ApiError::Internal(e.to_string()))?;
    let claims = jsonwebtoken::decode::<TokenClaims>(token, &decoding, &validation)
        .map_err(|e| ApiError::Unauthorized(format!("web chat token rejected: {e}")))?
        .claims;
    if claims.exp < now_ms / 1000 {
        return Err(ApiError::Unauthorized("web chat token expired".into()));
    }
    Ok(claims)
}

/// What a token is for: exactly one channel of one team of one tenant and env.
fn audience(channel: &ChannelConfig) -> String {
    let ctx = &channel.ctx;
    format!(
        "webchat:{}:{}:{}:{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        channel.channel
    )
}

/// The token key: derived from the channel secret, so the secret itself never
/// signs anything a browser sees.
fn signing_key(channel: &ChannelConfig, secrets: &dyn SecretsClient) -> Result<Vec<u8>, ApiError> {
    let name = secret_name(channel, SECRET_PURPOSE)?;
    let secret = secrets
        .resolve(&channel.ctx, &name)
        .map_err(|e| secret_error(&name, e))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    mac.update(b"greentic-webchat-token-v1");
    Ok(mac.finalize().into_bytes().to_vec())
}

fn plain_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn checked_id(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if !plain_id(&v) => Err(ApiError::BadRequest(format!(
            "{field} must be 1-64 of A-Z a-z 0-9 _ -"
        ))),
        other => Ok(other),
    }
}
