//! The one shape every inbound message takes after ingress, whatever the
//! provider: what the bridge carries on `greentic.messaging.ingress...` and
//! what the flow executor receives.
//!
//! ```json
//! {
//!   "v": 1,
//!   "id": "acme:prod:support:slack:event-Ev08MFMKH6",
//!   "tenant": {"tenant_id": "acme", "env_id": "prod", "team_id": "support"},
//!   "channel": "slack",
//!   "provider": "messaging-slack",
//!   "session_id": "3f1c...",
//!   "conversation": {"id": "C789012", "thread": "1700000000.000100"},
//!   "sender": {"id": "U123", "name": null},
//!   "text": "hello",
//!   "timestamp": "2026-11-29T10:00:00.000Z",
//!   "attachments": [],
//!   "reply": {"message_id": "1700000000.000200", "service_url": null}
//! }
//! ```
//!
//! `id` is also the publish's `Nats-Msg-Id` (see [`crate::tenancy::subjects::dedupe_id`]).
//! The TenantCtx travels inside the envelope *and* in the subject; consumers
//! check that both agree before acting on either.

use serde::{Deserialize, Serialize};

use crate::tenancy::ids::{ChannelId, Conversation, SessionId, TenantCtx};

/// Bumped when a field changes meaning; consumers refuse versions they do not know.
pub const ENVELOPE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub v: u32,
    pub id: String,
    pub tenant: TenantCtx,
    pub channel: ChannelId,
    pub provider: String,
    pub session_id: SessionId,
    pub conversation: Conversation,
    pub sender: Sender,
    pub text: String,
    /// When the provider says the message was sent, RFC 3339 UTC.
    pub timestamp: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub reply: ReplyAddress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    /// The provider's user id (Slack `U...`, Telegram user id, Teams `29:...`).
    pub id: String,
    pub name: Option<String>,
}

/// A file or card that came with the message. Providers differ in what they
/// give: a URL (Slack, Teams), or only a file id to fetch with the bot token
/// (Telegram).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// `image`, `file`, `audio`, `video`, `card` ...
    pub kind: String,
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub url: Option<String>,
    /// The provider's own reference (Telegram `file_id`), when there is no URL.
    pub provider_ref: Option<String>,
}

/// What egress needs, beyond the conversation, to answer on the provider.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyAddress {
    /// The provider's id of the inbound message (Slack `ts`, Telegram
    /// `message_id`, Teams activity id), to reply to it.
    pub message_id: Option<String>,
    /// Teams only: the Bot Framework service URL to post replies to.
    pub service_url: Option<String>,
}

/// The replies to one inbound message on their way out: what the executor
/// publishes to `greentic.messaging.egress...` and egress sends, in order,
/// with the provider. One message for all of a turn's replies, so the person
/// reads them in the order the flow wrote them, however many deliveries the
/// bridge runs at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    pub v: u32,
    /// `{inbound id}:replies`, also its `Nats-Msg-Id`.
    pub id: String,
    pub tenant: TenantCtx,
    pub channel: ChannelId,
    pub provider: String,
    pub session_id: SessionId,
    pub conversation: Conversation,
    /// The person the replies are for (web chat and Teams address them).
    pub recipient: Sender,
    pub reply: ReplyAddress,
    /// The replies, in the order they are sent.
    pub texts: Vec<String>,
    /// The inbound message these answer.
    pub in_reply_to: String,
}

impl Outbound {
    /// The replies `texts` to `inbound`.
    pub fn reply_to(inbound: &Envelope, texts: Vec<String>) -> Outbound {
        Outbound {
            v: ENVELOPE_VERSION,
            id: format!("{}:replies", inbound.id),
            tenant: inbound.tenant.clone(),
            channel: inbound.channel.clone(),
            provider: inbound.provider.clone(),
            session_id: inbound.session_id.clone(),
            conversation: inbound.conversation.clone(),
            recipient: inbound.sender.clone(),
            reply: inbound.reply.clone(),
            texts,
            in_reply_to: inbound.id.clone(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("outbound messages always serialise")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Outbound, String> {
        versioned(bytes, |o: &Outbound| o.v)
    }
}

impl Envelope {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelopes always serialise")
    }

    /// Parses an envelope; a version this code does not know is an error, not a guess.
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, String> {
        versioned(bytes, |e: &Envelope| e.v)
    }
}

/// Parses a message and refuses a format version this code does not know.
fn versioned<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    version: impl Fn(&T) -> u32,
) -> Result<T, String> {
    let message: T = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match version(&message) {
        ENVELOPE_VERSION => Ok(message),
        other => Err(format!("message version {other} is not supported")),
    }
}

/// The longest prefix of `text` that JSON writes in at most `max_bytes`
/// bytes (quotes, backslashes and control characters take more than one).
pub fn json_prefix(text: &str, max_bytes: usize) -> &str {
    let mut written = 0;
    for (at, c) in text.char_indices() {
        written += match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if written > max_bytes {
            return &text[..at];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_prefix_fits_its_budget_once_written() {
        for text in ["plain text", "\"quoted\"\\", "\u{1}\u{2}ctl\n", "ééé😀"] {
            let long = text.repeat(1000);
            let prefix = json_prefix(&long, 500);
            let written = serde_json::to_string(prefix).unwrap().len() - 2;
            assert!(written <= 500, "{text:?}: {written}");
            assert!(written > 490, "{text:?}: {written}");
            assert!(long.starts_with(prefix));
        }
        assert_eq!(json_prefix("short", 500), "short");
    }

    #[test]
    fn round_trips_and_refuses_unknown_versions_and_bad_scopes() {
        let ctx = TenantCtx::new("acme", "prod", Some("support")).unwrap();
        let channel = ChannelId::parse("slack").unwrap();
        let conversation = Conversation {
            id: "C1".into(),
            thread: None,
        };
        let envelope = Envelope {
            v: ENVELOPE_VERSION,
            id: "acme:prod:support:slack:event-E1".into(),
            session_id: SessionId::derive(&ctx, &channel, &conversation, "U1"),
            tenant: ctx,
            channel,
            provider: "messaging-slack".into(),
            conversation,
            sender: Sender {
                id: "U1".into(),
                name: None,
            },
            text: "hi".into(),
            timestamp: "2026-11-29T10:00:00.000Z".into(),
            attachments: vec![],
            reply: ReplyAddress::default(),
        };
        let json = envelope.to_json();
        assert_eq!(Envelope::from_json(&json).unwrap(), envelope);

        let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        value["v"] = 2.into();
        assert!(Envelope::from_json(value.to_string().as_bytes()).is_err());
        value["v"] = 1.into();
        value["tenant"]["tenant_id"] = "acme.>".into();
        assert!(Envelope::from_json(value.to_string().as_bytes()).is_err());
    }
}
