//! Provider requests as the providers send them. Shapes, header names and
//! claim names come from the providers' documentation and official SDKs
//! (cited per item), never from what our parsers happen to read; the ids
//! are the demo bundle's (bundles/demo.yaml), so the platform accepts them.

use hmac::{KeyInit, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Slack's Events API.
pub mod slack {
    use super::*;

    /// The demo bundle's Slack workspace and channel (acme/support/slack).
    pub const WORKSPACE: &str = "T123456";
    pub const CHANNEL: &str = "C789012";

    /// `X-Slack-Signature` as "Verifying requests from Slack"
    /// (https://api.slack.com/authentication/verifying-requests-from-slack)
    /// defines it: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`.
    pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("v0:{timestamp}:").as_bytes());
        mac.update(body);
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// The headers Slack sends with a signed request.
    pub fn signed_headers(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        vec![
            ("x-slack-request-timestamp".into(), timestamp.to_string()),
            (
                "x-slack-signature".into(),
                signature(secret, timestamp, body),
            ),
            ("content-type".into(), "application/json".into()),
        ]
    }

    /// An `event_callback` carrying a channel `message` event, as in the Events
    /// API's callback envelope (https://api.slack.com/apis/events-api#callback-field)
    /// and the `message` event (https://api.slack.com/events/message). In a
    /// thread when `thread_ts` is given (https://api.slack.com/messaging/retrieving#threading).
    pub fn message_event(event_id: &str, user: &str, text: &str, thread_ts: Option<&str>) -> Value {
        let mut event = json!({
            "type": "message",
            "channel": CHANNEL,
            "user": user,
            "text": text,
            "ts": "1355517523.000005",
            "event_ts": "1355517523.000005",
            "channel_type": "channel"
        });
        if let Some(thread) = thread_ts {
            event["thread_ts"] = json!(thread);
        }
        json!({
            "token": "XXYYZZ",
            "team_id": WORKSPACE,
            "api_app_id": "A0KRD7HC3",
            "event": event,
            "type": "event_callback",
            "authorizations": [{"enterprise_id": null, "team_id": WORKSPACE, "user_id": "U0BOT", "is_bot": true}],
            "event_id": event_id,
            "event_time": 1355517523
        })
    }
}

/// The Telegram Bot API.
pub mod telegram {
    use super::*;

    /// The demo bundle's chat (acme/support/telegram).
    pub const CHAT_ID: i64 = -1001234567890;

    /// An `Update` with a text `message` (https://core.telegram.org/bots/api#update,
    /// https://core.telegram.org/bots/api#message), in a forum topic when
    /// `topic` is given (`message_thread_id`, `is_topic_message`).
    pub fn update(update_id: i64, from_id: i64, text: &str, topic: Option<i64>) -> Value {
        let mut message = json!({
            "message_id": 1365,
            "from": {"id": from_id, "is_bot": false, "first_name": "Test", "last_name": "User", "username": "testuser", "language_code": "en"},
            "chat": {"id": CHAT_ID, "title": "ACME Support", "type": "supergroup", "is_forum": true},
            "date": 1441645532,
            "text": text
        });
        if let Some(topic) = topic {
            message["message_thread_id"] = json!(topic);
            message["is_topic_message"] = json!(true);
        }
        json!({ "update_id": update_id, "message": message })
    }

    /// The header `setWebhook`'s `secret_token` comes back in
    /// (https://core.telegram.org/bots/api#setwebhook).
    pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
}

/// Microsoft Teams through the Bot Framework.
pub mod teams {
    use super::*;
    use greentic::testing::keys;

    /// The demo bundle's Teams app (acme/sales/teams).
    pub const APP_ID: &str = "5f0b3a4e-2d1c-4b8a-9e7f-0a1b2c3d4e5f";
    pub const SERVICE_URL: &str = "https://smba.trafficmanager.net/amer/";
    pub const KEY_ID: &str = "bf-test-key";

    /// A JWKS document as Bot Framework publishes its OpenID keys
    /// (https://login.botframework.com/v1/.well-known/keys): RSA keys with a
    /// `kid` and the channels each key is `endorsements` for.
    pub fn jwks() -> Value {
        jwks_of(&[(KEY_ID, keys::RSA_PRIVATE)])
    }

    /// A JWKS document of the public halves of `(kid, private PEM)` pairs.
    pub fn jwks_of(pairs: &[(&str, &str)]) -> Value {
        let keys: Vec<Value> = pairs
            .iter()
            .map(|(kid, pem)| {
                let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
                let mut jwk =
                    jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
                jwk.common.key_id = Some(kid.to_string());
                let mut jwk = serde_json::to_value(jwk).unwrap();
                jwk["endorsements"] = json!(["msteams", "webchat"]);
                jwk
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Bot Framework's OpenID metadata document
    /// (https://login.botframework.com/v1/.well-known/openidconfiguration),
    /// its `jwks_uri` on `base`.
    pub fn openid_metadata(base: &str) -> Value {
        json!({
            "issuer": "https://api.botframework.com",
            "authorization_endpoint": "https://invalid.botframework.com",
            "jwks_uri": format!("{base}/v1/.well-known/keys"),
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"]
        })
    }

    /// The claims of a connector token (Bot Connector -> bot), as "Authenticate
    /// requests from the Bot Connector service to your bot" lists them
    /// (https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-authentication)
    /// and as the SDKs read them: the service URL is the claim `serviceurl`,
    /// all lower case (`AuthenticationConstants.ServiceUrlClaim` in
    /// botbuilder-dotnet, -js, -python and -java).
    pub fn connector_claims(now_secs: i64) -> Value {
        connector_claims_for(SERVICE_URL, now_secs)
    }

    /// [`connector_claims`] for activities from `service_url`.
    pub fn connector_claims_for(service_url: &str, now_secs: i64) -> Value {
        json!({
            "iss": "https://api.botframework.com",
            "aud": APP_ID,
            "serviceurl": service_url,
            "nbf": now_secs - 60,
            "exp": now_secs + 3600,
        })
    }

    /// The claims signed RS256 with the key of [`jwks`] (or another PEM).
    pub fn sign(claims: &Value, key_pem: &str) -> String {
        sign_as(claims, key_pem, KEY_ID)
    }

    /// The claims signed RS256 with `key_pem`, naming it `kid`.
    pub fn sign_as(claims: &Value, key_pem: &str, kid: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// A valid connector token at `now_secs` for activities from `service_url`.
    pub fn connector_token(service_url: &str, now_secs: i64) -> String {
        sign(
            &connector_claims_for(service_url, now_secs),
            keys::RSA_PRIVATE,
        )
    }

    /// A `message` activity from a person in a Teams channel, as the Bot
    /// Framework Activity schema and Teams' conversation docs show it
    /// (https://learn.microsoft.com/microsoftteams/platform/bots/how-to/conversations/conversation-basics).
    pub fn message_activity(id: &str, from_id: &str, conversation: &str, text: &str) -> Value {
        message_activity_from(SERVICE_URL, id, from_id, conversation, text)
    }

    /// [`message_activity`] from another service URL.
    pub fn message_activity_from(
        service_url: &str,
        id: &str,
        from_id: &str,
        conversation: &str,
        text: &str,
    ) -> Value {
        json!({
            "type": "message",
            "id": id,
            "timestamp": "2026-11-29T10:00:00.123Z",
            "serviceUrl": service_url,
            "channelId": "msteams",
            "from": {"id": from_id, "name": "Megan Bowen", "aadObjectId": "c7b8a9d0-0000-4000-8000-000000000001"},
            "conversation": {"isGroup": true, "conversationType": "channel", "tenantId": "72f988bf-0000-4000-8000-000000000000", "id": conversation},
            "recipient": {"id": format!("28:{APP_ID}"), "name": "Greentic"},
            "textFormat": "plain",
            "text": format!("<at>Greentic</at> {text}"),
            "attachments": [],
            "entities": [],
            "channelData": {"tenant": {"id": "72f988bf-0000-4000-8000-000000000000"}}
        })
    }
}
