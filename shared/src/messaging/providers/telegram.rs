//! Telegram Bot API webhooks (`messaging-telegram`).
//!
//! Verification: Telegram sends the `secret_token` given to `setWebhook` in
//! `X-Telegram-Bot-Api-Secret-Token`; it must equal the channel's
//! `{channel}_webhook_secret` (constant-time). A missing header is 401, never
//! a pass.
//!
//! Only `message` updates from people are published (text, or a caption with
//! media). Other updates (edits, callbacks, joins), bots' messages and chats
//! other than the channel's `chat_id` are acknowledged and dropped.

use serde_json::Value;

use super::{Inbound, Message, Webhook, attachment_kind, envelope, json_body, matches_secret};
use crate::http::error::ApiError;
use crate::messaging::envelope::{Attachment, ReplyAddress, Sender};
use crate::tenancy::ids::Conversation;

pub fn receive(hook: &Webhook<'_>) -> Result<Inbound, ApiError> {
    let token = hook
        .req
        .header("x-telegram-bot-api-secret-token")?
        .ok_or_else(|| {
            ApiError::Unauthorized("X-Telegram-Bot-Api-Secret-Token is missing".into())
        })?;
    if !matches_secret(hook, "webhook_secret", token.as_bytes())? {
        return Err(ApiError::Unauthorized(
            "X-Telegram-Bot-Api-Secret-Token does not match".into(),
        ));
    }
    let update = json_body(hook.req)?;
    let update_id = update["update_id"]
        .as_i64()
        .ok_or_else(|| ApiError::BadRequest("update without an integer update_id".into()))?;
    let message = &update["message"];
    if !message.is_object() {
        return Ok(Inbound::Ignore("update is not a new message"));
    }
    let chat_id = id_text(&message["chat"]["id"])
        .ok_or_else(|| ApiError::BadRequest("message without chat.id".into()))?;
    if let Some(expected) = hook.channel.setting("chat_id")
        && expected != chat_id
    {
        return Ok(Inbound::Ignore("message from another chat"));
    }
    let from = &message["from"];
    if from["is_bot"].as_bool() == Some(true) {
        return Ok(Inbound::Ignore("bot message"));
    }
    let sender_id = id_text(&from["id"])
        .ok_or_else(|| ApiError::BadRequest("message without from.id".into()))?;
    let message_id = id_text(&message["message_id"])
        .ok_or_else(|| ApiError::BadRequest("message without message_id".into()))?;
    let name = [&from["first_name"], &from["last_name"]]
        .into_iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let thread = (message["is_topic_message"].as_bool() == Some(true))
        .then(|| id_text(&message["message_thread_id"]))
        .flatten();
    let text = message["text"]
        .as_str()
        .or(message["caption"].as_str())
        .unwrap_or_default();
    Ok(Inbound::Message(Box::new(envelope(
        hook.channel,
        Message {
            id_kind: "update",
            provider_id: update_id.to_string(),
            conversation: Conversation {
                id: chat_id,
                thread,
            },
            sender: Sender {
                id: sender_id,
                name: (!name.is_empty()).then_some(name),
            },
            text: text.to_owned(),
            sent_at_ms: message["date"].as_i64().map_or(hook.now_ms, |s| s * 1000),
            attachments: attachments(message),
            reply: ReplyAddress {
                message_id: Some(message_id),
                service_url: None,
            },
        },
    ))))
}

/// Telegram ids are integers (chat ids may be negative); envelopes carry text.
fn id_text(v: &Value) -> Option<String> {
    v.as_i64().map(|n| n.to_string())
}

/// Media as file ids: Telegram gives no URL without a `getFile` call with the bot token.
fn attachments(message: &Value) -> Vec<Attachment> {
    let mut found = Vec::new();
    // A photo comes in several sizes; the last is the largest.
    if let Some(photo) = message["photo"].as_array().and_then(|sizes| sizes.last()) {
        found.push(Attachment {
            kind: "image".into(),
            name: None,
            content_type: None,
            url: None,
            provider_ref: photo["file_id"].as_str().map(str::to_owned),
        });
    }
    for field in ["document", "audio", "video", "voice"] {
        let media = &message[field];
        if media.is_object() {
            let content_type = media["mime_type"].as_str().map(str::to_owned);
            found.push(Attachment {
                kind: match field {
                    "document" => attachment_kind(content_type.as_deref()),
                    "voice" => "audio",
                    other => other,
                }
                .into(),
                name: media["file_name"].as_str().map(str::to_owned),
                content_type,
                url: None,
                provider_ref: media["file_id"].as_str().map(str::to_owned),
            });
        }
    }
    found
}
