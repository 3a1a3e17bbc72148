//! Slack Events API (`messaging-slack`).
//!
//! Verification (Slack's "verifying requests" scheme): `X-Slack-Signature` is
//! `v0=` + hex HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{raw body}` under
//! the app's signing secret, and the timestamp must be within five minutes
//! (replays). The broker does the HMAC (`{channel}_signing_secret`), so the
//! secret never reaches ingress. `url_verification` is signed like the rest.
//!
//! Only `message` events from people are published: anything with a `bot_id`
//! or a subtype other than a plain message, file share or thread broadcast is
//! acknowledged and dropped, as are events from a workspace other than the
//! channel's `workspace_id`, or from a Slack channel other than its
//! `channel_id` (when the bundle sets one: then direct messages to the bot are
//! dropped too).

use serde_json::{Value, json};

use super::{
    Inbound, Message, Webhook, attachment_kind, envelope, json_body, secret_error, secret_name,
};
use crate::http::Response;
use crate::http::error::ApiError;
use crate::messaging::envelope::{Attachment, ReplyAddress, Sender};
use crate::tenancy::ids::Conversation;

/// How far a request's timestamp may be from now, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// Message subtypes that are still a person writing.
const PERSON_SUBTYPES: &[&str] = &["file_share", "thread_broadcast"];

pub fn receive(hook: &Webhook<'_>) -> Result<Inbound, ApiError> {
    verify(hook)?;
    let body = json_body(hook.req)?;
    match body["type"].as_str() {
        Some("url_verification") => {
            let challenge = body["challenge"].as_str().ok_or_else(|| {
                ApiError::BadRequest("url_verification without a challenge".into())
            })?;
            Ok(Inbound::Answer(Response::json(
                200,
                &json!({ "challenge": challenge }),
            )))
        }
        Some("event_callback") => event(hook, &body),
        Some(_) => Ok(Inbound::Ignore("not an event callback")),
        None => Err(ApiError::BadRequest("body has no `type`".into())),
    }
}

fn verify(hook: &Webhook<'_>) -> Result<(), ApiError> {
    let req = hook.req;
    let unauthorized = |why: &str| ApiError::Unauthorized(why.into());
    let timestamp = req
        .header("x-slack-request-timestamp")?
        .ok_or_else(|| unauthorized("X-Slack-Request-Timestamp is missing"))?;
    let signature = req
        .header("x-slack-signature")?
        .ok_or_else(|| unauthorized("X-Slack-Signature is missing"))?;
    let sent_at: i64 = timestamp
        .parse()
        .map_err(|_| unauthorized("X-Slack-Request-Timestamp is not a number"))?;
    if (hook.now_ms / 1000 - sent_at).abs() > MAX_SKEW_SECS {
        return Err(unauthorized(
            "the request timestamp is more than five minutes away",
        ));
    }
    let mac = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| unauthorized("X-Slack-Signature is not v0=<hex>"))?;
    let mut base = format!("v0:{timestamp}:").into_bytes();
    base.extend_from_slice(&req.body);
    let name = secret_name(hook.channel, "signing_secret")?;
    let valid = hook
        .secrets
        .verify_hmac_sha256(&hook.channel.ctx, &name, &base, &mac)
        .map_err(|e| secret_error(&name, e))?;
    if valid {
        Ok(())
    } else {
        Err(unauthorized("the Slack signature does not match"))
    }
}

fn event(hook: &Webhook<'_>, body: &Value) -> Result<Inbound, ApiError> {
    if let Some(expected) = hook.channel.setting("workspace_id")
        && body["team_id"].as_str() != Some(expected)
    {
        return Ok(Inbound::Ignore("event from another workspace"));
    }
    let event_id = body["event_id"]
        .as_str()
        .ok_or_else(|| ApiError::BadRequest("event_callback without an event_id".into()))?;
    let event = &body["event"];
    if event["type"] != "message" {
        return Ok(Inbound::Ignore("not a message event"));
    }
    if !event["bot_id"].is_null() || event["subtype"] == "bot_message" {
        return Ok(Inbound::Ignore("bot message"));
    }
    if let Some(subtype) = event["subtype"].as_str()
        && !PERSON_SUBTYPES.contains(&subtype)
    {
        return Ok(Inbound::Ignore(
            "message subtype that is not a person writing",
        ));
    }
    let field = |name: &str| {
        event[name]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("message event without `{name}`")))
    };
    let (user, channel, ts) = (field("user")?, field("channel")?, field("ts")?);
    if let Some(expected) = hook.channel.setting("channel_id")
        && channel != expected
    {
        return Ok(Inbound::Ignore("message in another Slack channel"));
    }
    let attachments = event["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|file| {
            let content_type = file["mimetype"].as_str().map(str::to_owned);
            Attachment {
                kind: attachment_kind(content_type.as_deref()).into(),
                name: file["name"].as_str().map(str::to_owned),
                content_type,
                url: file["url_private"].as_str().map(str::to_owned),
                provider_ref: file["id"].as_str().map(str::to_owned),
            }
        })
        .collect();
    Ok(Inbound::Message(Box::new(envelope(
        hook.channel,
        Message {
            id_kind: "event",
            provider_id: event_id.to_owned(),
            conversation: Conversation {
                id: channel.to_owned(),
                thread: event["thread_ts"].as_str().map(str::to_owned),
            },
            sender: Sender {
                id: user.to_owned(),
                name: None,
            },
            text: event["text"].as_str().unwrap_or_default().to_owned(),
            sent_at_ms: slack_ts_ms(ts).unwrap_or(hook.now_ms),
            attachments,
            reply: ReplyAddress {
                message_id: Some(ts.to_owned()),
                service_url: None,
            },
        },
    ))))
}

/// `"1700000000.000100"` -> Unix milliseconds.
fn slack_ts_ms(ts: &str) -> Option<i64> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, "0"));
    let millis: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
    let millis: i64 = millis.parse().ok()?;
    Some(secs.parse::<i64>().ok()? * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_timestamps_become_milliseconds() {
        assert_eq!(slack_ts_ms("1700000000.000100"), Some(1_700_000_000_000));
        assert_eq!(slack_ts_ms("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(slack_ts_ms("1700000000"), Some(1_700_000_000_000));
        assert_eq!(slack_ts_ms("x.1"), None);
        assert_eq!(slack_ts_ms("1.ééé"), None, "not a panic");
    }
}
