//! Provider webhooks: verify a request against the channel's secrets, then
//! normalise it into an [`Envelope`]. One module per provider; each takes the
//! same inputs and gives an [`Inbound`], so ingress treats them alike.
//!
//! Verification always comes first and never has a way around it: a channel
//! whose secret is missing is refused ([`ApiError::NotConfigured`], 503, so the
//! provider retries once the operator has stored it), never accepted unchecked.

pub mod slack;
pub mod teams;
pub mod teams_keys;
pub mod telegram;
pub mod webchat;

use crate::flows::tenant_config::ChannelConfig;
use crate::host::Host;
use crate::http::error::ApiError;
use crate::http::{Request, Response};
use crate::messaging::envelope::{Attachment, ENVELOPE_VERSION, Envelope, ReplyAddress, Sender};
use crate::secrets::CHANNEL_ID_MAX_LEN;
use crate::secrets::client::{SecretsClient, SecretsClientError};
use crate::tenancy::ids::{Conversation, SecretName, SessionId};
use crate::tenancy::subjects;

/// What a verified webhook asks of ingress.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A person's message: publish it.
    Message(Box<Envelope>),
    /// Answer the provider directly (Slack's `url_verification`).
    Answer(Response),
    /// Acknowledge and drop, for the reason given (the bot's own messages,
    /// events that are not messages, another workspace's traffic).
    Ignore(&'static str),
}

/// Everything a provider module needs for one webhook request.
pub struct Webhook<'a> {
    pub channel: &'a ChannelConfig,
    pub req: &'a Request,
    pub now_ms: i64,
    pub secrets: &'a dyn SecretsClient,
    /// Variables, outbound calls and stores (Teams' issuer and signing keys).
    pub host: &'a dyn Host,
}

/// Verifies and normalises `hook` with its channel's provider.
pub fn receive(hook: &Webhook<'_>) -> Result<Inbound, ApiError> {
    match hook.channel.config.provider.as_str() {
        "messaging-slack" => slack::receive(hook),
        "messaging-telegram" => telegram::receive(hook),
        "messaging-teams" => teams::receive(hook),
        "messaging-webchat" => webchat::receive(hook),
        other => Err(ApiError::Internal(format!(
            "no ingress for provider {other}"
        ))),
    }
}

/// The name of a channel's secret: `{channel}_{purpose}`, e.g. `slack_signing_secret`.
/// A channel id too long for it (bundle validation refuses those) makes the
/// channel unusable, never a panic.
pub fn secret_name(channel: &ChannelConfig, purpose: &str) -> Result<SecretName, ApiError> {
    SecretName::parse(&format!("{}_{purpose}", channel.channel)).map_err(|_| {
        ApiError::NotConfigured(format!(
            "channel ids of more than {CHANNEL_ID_MAX_LEN} characters cannot name their secrets"
        ))
    })
}

/// A broker answer turned into the refusal it must be: a missing secret is
/// "not configured" (never a pass), an unreachable broker "unavailable".
pub fn secret_error(name: &SecretName, e: SecretsClientError) -> ApiError {
    match e {
        SecretsClientError::NotFound => ApiError::NotConfigured(format!(
            "the channel's secret `{}` is not configured",
            name.as_str()
        )),
        SecretsClientError::Unavailable(why) => ApiError::Unavailable(why),
    }
}

/// Whether `presented` equals the channel's secret `purpose`, compared in
/// constant time.
pub fn matches_secret(
    hook: &Webhook<'_>,
    purpose: &str,
    presented: &[u8],
) -> Result<bool, ApiError> {
    use subtle::ConstantTimeEq;
    let name = secret_name(hook.channel, purpose)?;
    let secret = hook
        .secrets
        .resolve(&hook.channel.ctx, &name)
        .map_err(|e| secret_error(&name, e))?;
    Ok(!secret.is_empty() && bool::from(secret.ct_eq(presented)))
}

/// The parts of a message every provider has.
pub struct Message {
    /// Kind of the provider's id in the dedupe id (`event`, `update`, `activity`).
    pub id_kind: &'static str,
    pub provider_id: String,
    pub conversation: Conversation,
    pub sender: Sender,
    pub text: String,
    pub sent_at_ms: i64,
    pub attachments: Vec<Attachment>,
    pub reply: ReplyAddress,
}

/// Longest message text an envelope carries, in bytes as JSON writes it (cut
/// at a char boundary). Above every provider's own limit for a person's
/// message (Slack 40,000 characters, Telegram 4,096, Teams about 28 KB), so
/// only a webhook padded on purpose is cut, and well within
/// [`crate::messaging::bridge::MAX_PUBLISH_BYTES`], so a verified message fits one NATS
/// message whatever the size of the webhook's body.
pub const MAX_TEXT_BYTES: usize = 32 * 1024;

/// Most attachments an envelope lists (the rest are dropped), for the same reason.
pub const MAX_ATTACHMENTS: usize = 32;

/// The envelope of `message` on `channel`: its dedupe id, session and time.
pub fn envelope(channel: &ChannelConfig, mut message: Message) -> Envelope {
    let ctx = &channel.ctx;
    message.attachments.truncate(MAX_ATTACHMENTS);
    Envelope {
        v: ENVELOPE_VERSION,
        id: subjects::dedupe_id(ctx, &channel.channel, message.id_kind, &message.provider_id),
        tenant: ctx.clone(),
        channel: channel.channel.clone(),
        provider: channel.config.provider.clone(),
        session_id: SessionId::derive(
            ctx,
            &channel.channel,
            &message.conversation,
            &message.sender.id,
        ),
        conversation: message.conversation,
        sender: message.sender,
        text: crate::messaging::envelope::json_prefix(&message.text, MAX_TEXT_BYTES).to_owned(),
        timestamp: rfc3339(message.sent_at_ms),
        attachments: message.attachments,
        reply: message.reply,
    }
}

pub fn rfc3339(ms: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// The JSON body of a webhook, or a 400 that names where it went wrong
/// without echoing content.
pub fn json_body(req: &Request) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body is not valid JSON (line {} column {})",
            e.line(),
            e.column()
        ))
    })
}

/// The value of `Authorization: Bearer <token>`, or 401.
pub fn bearer(req: &Request) -> Result<&str, ApiError> {
    req.header("authorization")?
        .and_then(crate::http::bearer_token)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))
}

/// A MIME type's broad kind, as envelopes name attachments.
pub fn attachment_kind(content_type: Option<&str>) -> &'static str {
    match content_type.and_then(|t| t.split('/').next()) {
        Some("image") => "image",
        Some("audio") => "audio",
        Some("video") => "video",
        _ => "file",
    }
}
