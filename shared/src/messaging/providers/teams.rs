//! Microsoft Teams through the Bot Framework (`messaging-teams`).
//!
//! Verification (Bot Framework "authenticate requests from the connector"):
//! the `Authorization: Bearer` JWT must be RS256, signed by one of Bot
//! Framework's published keys ([`super::teams_keys`]: fetched from its OpenID
//! metadata and cached, or pinned with `teams_jwks`), issued by `teams_issuer`
//! (default `https://api.botframework.com`),
//! for the audience of the channel's `app_id`, unexpired (five minutes' leeway
//! for clock skew), its `serviceurl` claim equal to the activity's
//! `serviceUrl`, and its key endorsed for the activity's `channelId`, which
//! must be `msteams`.
//!
//! Claim names are case-sensitive: the service URL claim is `serviceurl`, all
//! lower case (`AuthenticationConstants.ServiceUrlClaim` in botbuilder-dotnet,
//! -js and -python), although Microsoft's article writes it `serviceUrl`. A
//! token without it is refused, as botbuilder-dotnet refuses it. A key without
//! endorsements is refused too (as botbuilder-dotnet does; -js and -python
//! skip the check then), and so is an empty `channelId`, which all three let
//! through.
//!
//! Only `message` activities from people are published; the bot's own
//! activities and other types (conversationUpdate, typing...) are dropped.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use serde::Deserialize;
use serde_json::Value;

use super::{Inbound, Message, Webhook, attachment_kind, bearer, envelope, json_body, teams_keys};
use crate::http::error::ApiError;
use crate::messaging::envelope::{Attachment, ReplyAddress, Sender};
use crate::tenancy::ids::Conversation;

pub const VAR_ISSUER: &str = "teams_issuer";
pub const DEFAULT_ISSUER: &str = "https://api.botframework.com";
const LEEWAY_SECS: u64 = 300;

#[derive(Deserialize)]
struct ConnectorClaims {
    #[serde(rename = "serviceurl")]
    service_url: Option<String>,
}

/// The Bot Framework channel id of Microsoft Teams.
const TEAMS_CHANNEL: &str = "msteams";

pub fn receive(hook: &Webhook<'_>) -> Result<Inbound, ApiError> {
    // The token first (401), then the body (400), then whether the token
    // vouches for this body's service URL and channel (401).
    let verified = verify_token(hook, bearer(hook.req)?)?;
    let activity = json_body(hook.req)?;
    verified.vouches_for(&activity)?;
    if activity["type"] != "message" {
        return Ok(Inbound::Ignore("activity is not a message"));
    }
    let field = |path: &[&str]| {
        path.iter()
            .fold(&activity, |v, key| &v[key])
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("activity without `{}`", path.join("."))))
    };
    let (id, from, conversation) = (
        field(&["id"])?,
        field(&["from", "id"])?,
        field(&["conversation", "id"])?,
    );
    if activity["recipient"]["id"].as_str() == Some(from) {
        return Ok(Inbound::Ignore("the bot's own activity"));
    }
    let attachments = activity["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let content_type = a["contentType"].as_str().map(str::to_owned);
            let card = content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/vnd.microsoft.card"));
            Attachment {
                kind: if card {
                    "card"
                } else {
                    attachment_kind(content_type.as_deref())
                }
                .into(),
                name: a["name"].as_str().map(str::to_owned),
                content_type,
                url: a["contentUrl"].as_str().map(str::to_owned),
                provider_ref: None,
            }
        })
        .collect();
    let sent_at_ms = activity["timestamp"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(hook.now_ms, |d| d.as_millis() as i64);
    Ok(Inbound::Message(Box::new(envelope(
        hook.channel,
        Message {
            id_kind: "activity",
            // Activity ids are unique within a conversation, not across them.
            provider_id: crate::tenancy::subjects::within_conversation(conversation, id),
            conversation: Conversation {
                id: conversation.to_owned(),
                thread: None,
            },
            sender: Sender {
                id: from.to_owned(),
                name: activity["from"]["name"].as_str().map(str::to_owned),
            },
            text: without_mentions(activity["text"].as_str().unwrap_or_default()),
            sent_at_ms,
            attachments,
            reply: ReplyAddress {
                message_id: Some(id.to_owned()),
                service_url: activity["serviceUrl"].as_str().map(str::to_owned),
            },
        },
    ))))
}

/// A connector token whose signature, issuer, audience and times are good.
struct Verified {
    claims: ConnectorClaims,
    /// The signing key, for its endorsements.
    key: Value,
}

fn verify_token(hook: &Webhook<'_>, token: &str) -> Result<Verified, ApiError> {
    let unauthorized = |why: String| ApiError::Unauthorized(why);
    let app_id = hook.channel.setting("app_id").ok_or_else(|| {
        ApiError::NotConfigured("the Teams channel has no app_id in the bundle".into())
    })?;
    let issuer = hook
        .host
        .variable(VAR_ISSUER)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ISSUER.to_owned());

    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| unauthorized(format!("malformed token: {e}")))?;
    if header.alg != Algorithm::RS256 {
        return Err(unauthorized("Bot Framework tokens are RS256".into()));
    }
    let kid = header
        .kid
        .ok_or_else(|| unauthorized("token has no key id".into()))?;
    let key = teams_keys::find(hook.host, &kid, hook.now_ms)?;
    let jwk: Jwk = serde_json::from_value(key.clone())
        .map_err(|e| unauthorized(format!("Bot Framework key {kid} is not a usable JWK: {e}")))?;
    let decoding = DecodingKey::from_jwk(&jwk)
        .map_err(|e| unauthorized(format!("Bot Framework key {kid} is not a usable JWK: {e}")))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[app_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = LEEWAY_SECS;
    // jsonwebtoken checks times against the system clock; the host's clock is
    // the one that counts here (and in tests), so both are checked below.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .map_err(|e| unauthorized(format!("token rejected: {e}")))?;
    let now = hook.now_ms / 1000;
    let claim = |name: &str| data.claims[name].as_i64();
    match claim("exp") {
        Some(exp) if exp + LEEWAY_SECS as i64 >= now => {}
        _ => return Err(unauthorized("token expired".into())),
    }
    if claim("nbf").is_some_and(|nbf| nbf - LEEWAY_SECS as i64 > now) {
        return Err(unauthorized("token not yet valid".into()));
    }
    let claims: ConnectorClaims = serde_json::from_value(data.claims)
        .map_err(|e| unauthorized(format!("token claims: {e}")))?;
    Ok(Verified { claims, key })
}

impl Verified {
    /// The activity is on Teams, the key is endorsed for Teams, and the
    /// token names the activity's service URL.
    fn vouches_for(&self, activity: &Value) -> Result<(), ApiError> {
        let channel = activity["channelId"].as_str().unwrap_or_default();
        if channel != TEAMS_CHANNEL {
            return Err(ApiError::Unauthorized(format!(
                "the activity's channel is `{channel}`, not `{TEAMS_CHANNEL}`"
            )));
        }
        let endorsed = self.key["endorsements"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e.as_str() == Some(channel)));
        if !endorsed {
            return Err(ApiError::Unauthorized(format!(
                "the signing key is not endorsed for channel `{channel}`"
            )));
        }
        match (&self.claims.service_url, activity["serviceUrl"].as_str()) {
            (Some(claimed), Some(actual)) if claimed == actual => Ok(()),
            _ => Err(ApiError::Unauthorized(
                "the token's serviceurl claim is missing or not the activity's serviceUrl".into(),
            )),
        }
    }
}

/// Teams puts `<at>Bot</at>` in the text when the bot is mentioned; a flow
/// wants what the person wrote.
fn without_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<at>") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</at>") {
            Some(end) => rest = &rest[start + end + "</at>".len()..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_removed_from_text() {
        assert_eq!(without_mentions("<at>Greentic</at> order 42"), "order 42");
        assert_eq!(
            without_mentions("hi <at>A</at> and <at>B</at>!"),
            "hi and !"
        );
        assert_eq!(without_mentions("no mention"), "no mention");
        assert_eq!(without_mentions("broken <at>tag"), "broken <at>tag");
    }
}
