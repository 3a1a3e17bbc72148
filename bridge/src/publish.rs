//! `POST /v1/publish/{subject}`: a component's message, stored durably before we say 200.
//!
//! Why the order of checks: SPEC §9 fixes it for every public boundary: body size
//! (413), then syntax of the ids in path and headers (400, whatever the token),
//! then the token (401). The answer is 200 only after JetStream acknowledged the
//! message, because the caller (ingress) answers the provider from it: a 200
//! without an ack could lose a message the provider will never resend. Anything
//! that keeps the ack from arriving is 503 with `Retry-After`, so the provider
//! retries, and the same `Nats-Msg-Id` makes that retry a duplicate, not a copy.

use std::sync::Arc;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Serialize;

use crate::AppState;
use crate::problem::Problem;
use crate::subject::{self, SubjectScope};

/// Header carrying the dedupe id, the same name JetStream uses.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Optional: the conversation the message belongs to. Stored as a NATS
/// header; deliveries apply one session's messages in stream order and pass
/// it on as `X-Greentic-Session`, which the receiver checks against the body.
pub const SESSION_HEADER: &str = "Greentic-Session";
/// Optional: the tenant's inbound rate, messages per minute
/// ([`crate::rate::parse_rate`]). Stored as a NATS header; deliveries start
/// the tenant's messages no faster than the latest rate they saw
/// ([`crate::deliver`]).
pub const RATE_HEADER: &str = "Greentic-Rate";
/// Bytes kept free under NATS's `max_payload` for headers: the message id now,
/// and the dead-letter headers if the message ever has to be dead-lettered
/// (worst case about 3 KiB: two ids, the subject, a 500-char UTF-8 reason),
/// which must not then fail for size.
pub const HEADER_HEADROOM: usize = 4096;

#[derive(Debug, Serialize)]
pub struct Published {
    pub stream: String,
    pub seq: u64,
    pub duplicate: bool,
}

pub async fn publish(
    State(app): State<Arc<AppState>>,
    subject: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A path that does not decode (bad percent-encoding) is a bad subject too.
    let Ok(Path(subject)) = subject else {
        return Problem::bad_request("the subject in the path does not decode").into_response();
    };
    match handle(&app, subject, &headers, body).await {
        Ok(published) => Json(published).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn handle(
    app: &AppState,
    subject: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Published, Problem> {
    let limit = app.config.publish.max_payload_bytes;

    // 1. Size (413), before reading more than the limit.
    let payload = read_limited(headers, body, limit).await?;

    // 2. Syntax of subject and message id (400), whatever the token.
    app.config
        .publish
        .allow
        .check(&subject)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let msg_id = headers
        .get(MSG_ID_HEADER)
        .ok_or_else(|| Problem::bad_request("the Nats-Msg-Id header is required"))?
        .to_str()
        .ok()
        .filter(|id| subject::is_msg_id(id))
        .ok_or_else(|| {
            Problem::bad_request("Nats-Msg-Id must be 1..=200 characters of [A-Za-z0-9._:-]")
        })?
        .to_string();
    let session = match headers.get(SESSION_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|s| subject::is_msg_id(s))
                .ok_or_else(|| {
                    Problem::bad_request(
                        "Greentic-Session must be 1..=200 characters of [A-Za-z0-9._:-]",
                    )
                })?
                .to_string(),
        ),
    };

    let rate = match headers.get(RATE_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(crate::rate::parse_rate)
                .ok_or_else(|| {
                    Problem::bad_request(
                        "Greentic-Rate must be a decimal integer of messages per minute, 1..=1000000",
                    )
                })?,
        ),
    };

    // 3. Authentication (401).
    crate::http::check_publish_token(app, headers)?;

    // 4. The payload is JSON: deliveries announce it as application/json.
    if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return Err(Problem::bad_request("the payload is not valid JSON"));
    }

    // 5. NATS must be able to take it now.
    let nats = &app.nats;
    let scope = SubjectScope::parse(&subject);
    if !nats.ready() {
        app.metrics.publish_error();
        tracing::warn!(
            subject,
            msg_id,
            tenant = scope.map(|s| s.tenant),
            env = scope.map(|s| s.env),
            team = scope.map(|s| s.team),
            channel = scope.map(|s| s.channel),
            "publish refused: nats unavailable"
        );
        return Err(Problem::unavailable("NATS is unavailable; retry later"));
    }
    if payload.len() + HEADER_HEADROOM > nats.client().max_payload() {
        return Err(Problem::payload_too_large(
            nats.client().max_payload().saturating_sub(HEADER_HEADROOM),
        ));
    }

    // 6. Publish and wait for the ack (bounded by publish.ack_timeout).
    let mut message = PublishMessage::build().payload(payload).message_id(&msg_id);
    if let Some(session) = &session {
        message = message.header(SESSION_HEADER, session.as_str());
    }
    if let Some(rate) = rate {
        message = message.header(RATE_HEADER, rate.to_string().as_str());
    }
    let ack = match nats.js().send_publish(subject.clone(), message).await {
        Ok(pending) => pending.await,
        Err(e) => Err(e),
    };
    match ack {
        Ok(ack) => {
            app.metrics.published(&ack.stream, ack.duplicate);
            // One line per message is `debug` (the metrics count them); a
            // duplicate (a provider's retry) is worth seeing at `info`.
            macro_rules! published {
                ($level:expr) => {
                    tracing::event!(
                        $level,
                        subject,
                        msg_id,
                        tenant = scope.map(|s| s.tenant),
                        env = scope.map(|s| s.env),
                        team = scope.map(|s| s.team),
                        channel = scope.map(|s| s.channel),
                        stream = ack.stream,
                        seq = ack.sequence,
                        duplicate = ack.duplicate,
                        "published"
                    )
                };
            }
            if ack.duplicate {
                published!(tracing::Level::INFO);
            } else {
                published!(tracing::Level::DEBUG);
            }
            Ok(Published {
                stream: ack.stream,
                seq: ack.sequence,
                duplicate: ack.duplicate,
            })
        }
        Err(e) => {
            tracing::warn!(
                subject,
                msg_id,
                tenant = scope.map(|s| s.tenant),
                env = scope.map(|s| s.env),
                team = scope.map(|s| s.team),
                channel = scope.map(|s| s.channel),
                error = %e,
                "publish failed"
            );
            match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => {
                    Err(Problem::payload_too_large(nats.client().max_payload()))
                }
                kind => {
                    app.metrics.publish_error();
                    if kind == PublishErrorKind::StreamNotFound {
                        nats.ensure_streams_again();
                    }
                    Err(Problem::unavailable(
                        "no acknowledgement from NATS; retry later",
                    ))
                }
            }
        }
    }
}

/// How much of a body declared over the limit is read (and dropped) before
/// the 413, in multiples of the limit.
const DRAIN_FACTOR: u64 = 4;

/// Reads the body, refusing (413) as soon as it passes `limit` bytes.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        // The client is still sending: answering before its body is read
        // and closing can reach it as a reset instead of the 413 (then a
        // component sees a transport failure and retries). A body of up to
        // DRAIN_FACTOR x the limit is read and dropped first; a larger one
        // is cut off.
        if n <= limit as u64 * DRAIN_FACTOR {
            let mut stream = body.into_data_stream();
            while let Some(Ok(_)) = stream.next().await {}
        }
        return Err(Problem::payload_too_large(limit));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| Problem::bad_request("the request body could not be read"))?;
        if buf.len() + chunk.len() > limit {
            return Err(Problem::payload_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
