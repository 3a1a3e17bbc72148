//! `POST /webhooks/{env}/{tenant}/{team}/{channel}` (provider webhooks and web
//! chat activities) and `POST /webhooks/{env}/{tenant}/{team}/{channel}/tokens`
//! (web chat tokens).
//!
//! Order of checks (SPEC §9): body size (413), path ids (400), method (405),
//! channel existence (404, one body whichever part is unknown), the provider's
//! verification (401; 503 when its secret is not configured), the body (400),
//! then publishing (503 when the bridge or NATS cannot take it). Nothing is
//! published before verification, and 200 means JetStream stored it.

use greentic::ApiError;
use greentic::flows::tenant_config::{ChannelConfig, TenantConfig};
use greentic::host::Host;
use greentic::http::{Request, Response};
use greentic::messaging::bridge::{BridgeClient, MAX_PUBLISH_BYTES};
use greentic::messaging::providers::{self, Inbound, Webhook, webchat};
use greentic::secrets::client::BrokerClient;
use greentic::service;
use greentic::service::limits;
use greentic::service::log::RequestLog;
use greentic::tenancy::ids::{ChannelId, ConversationId, TenantCtx};
use greentic::tenancy::subjects;
use serde_json::json;

pub const COMPONENT: &str = "ingress";

/// Largest webhook body accepted (SPEC's default). Provider payloads are a
/// few KiB; a bigger body is refused with 413 before anything else.
pub const BODY_LIMIT: usize = 1024 * 1024;

const PREFIX: &str = "/webhooks/";
const WEBHOOK_ROUTE: &str = "/webhooks/{env}/{tenant}/{team}/{channel}";
const TOKENS_ROUTE: &str = "/webhooks/{env}/{tenant}/{team}/{channel}/tokens";

enum Target {
    Webhook,
    WebchatToken,
}

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    service::serve(req, host, COMPONENT, BODY_LIMIT, |req, log| {
        let (route, target, ctx, channel) = match parse(req) {
            Ok(parsed) => parsed,
            Err((route, e)) => return (route, Err(e)),
        };
        log.set_scope(&ctx);
        let outcome = find_channel(host, &ctx, &channel).and_then(|config| match target {
            Target::Webhook => webhook(req, host, log, &config),
            Target::WebchatToken => token(req, host, log, &config),
        });
        if let Err(e) = &outcome
            && matches!(e.status(), 401 | 503)
        {
            log.warn(
                "webhook.refused",
                json!({ "channel": channel.as_str(), "problem": e.slug() }),
            );
        }
        (route, outcome)
    })
}

type Parsed = (&'static str, Target, TenantCtx, ChannelId);

/// Route, ids and method, before any lookup.
fn parse(req: &Request) -> Result<Parsed, (&'static str, ApiError)> {
    let rest = req
        .path
        .strip_prefix(PREFIX)
        .ok_or(("-", ApiError::NotFound))?;
    let segments = greentic::http::path_segments(rest);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (route, target, ids) = match segments.as_slice() {
        [env, tenant, team, channel] => (
            WEBHOOK_ROUTE,
            Target::Webhook,
            [*env, *tenant, *team, *channel],
        ),
        [env, tenant, team, channel, "tokens"] => (
            TOKENS_ROUTE,
            Target::WebchatToken,
            [*env, *tenant, *team, *channel],
        ),
        _ => return Err(("-", ApiError::NotFound)),
    };
    let [env, tenant, team, channel] = ids;
    let ctx = TenantCtx::from_route(env, tenant, team).map_err(|e| (route, e.into()))?;
    let channel = ChannelId::parse(channel).map_err(|e| (route, e.into()))?;
    if req.method != "POST" {
        return Err((route, ApiError::MethodNotAllowed { allow: "POST" }));
    }
    Ok((route, target, ctx, channel))
}

/// The channel, if the tenant's configuration has it in that env and team.
/// Every miss is the same bare 404, so a caller learns nothing about which
/// part is unknown.
fn find_channel(
    host: &dyn Host,
    ctx: &TenantCtx,
    channel: &ChannelId,
) -> Result<ChannelConfig, ApiError> {
    TenantConfig::find_channel(host, ctx, channel)?.ok_or(ApiError::NotFound)
}

fn webhook(
    req: &Request,
    host: &dyn Host,
    log: &RequestLog,
    channel: &ChannelConfig,
) -> Result<Response, ApiError> {
    let secrets = BrokerClient::new(host, COMPONENT);
    let hook = Webhook {
        channel,
        req,
        now_ms: host.now_ms(),
        secrets: &secrets,
        host,
    };
    let provider = channel.config.provider.as_str();
    let inbound = providers::receive(&hook)?;
    // A suspended tenant takes nothing new (403 `tenant-suspended`), and
    // only a caller the provider's verification accepted learns that.
    channel.require_active()?;
    match inbound {
        Inbound::Answer(response) => {
            log.info("webhook.answered", json!({ "provider": provider }));
            Ok(response)
        }
        Inbound::Ignore(reason) => {
            log.info(
                "webhook.ignored",
                json!({ "provider": provider, "reason": reason }),
            );
            Ok(Response::json(
                200,
                &json!({ "status": "ignored", "reason": reason }),
            ))
        }
        Inbound::Message(envelope) => {
            let subject = subjects::ingress(&channel.ctx, &channel.channel);
            let payload = envelope.to_json();
            // Only a body padded on purpose (names, ids or attachments of
            // absurd length) gets here: a retry will not shrink it.
            if payload.len() > MAX_PUBLISH_BYTES {
                return Err(ApiError::PayloadTooLarge {
                    limit: MAX_PUBLISH_BYTES,
                });
            }
            let windows = if provider == "messaging-webchat" {
                let conversation = ConversationId::parse(&envelope.conversation.id)?;
                limits::charge_webchat(
                    host,
                    &channel.ctx,
                    &channel.channel,
                    &conversation,
                    &channel.limits,
                    log,
                )?
            } else {
                Vec::new()
            };
            let ack = BridgeClient::new(host).publish(
                &subject,
                &envelope.id,
                &envelope.session_id,
                Some(channel.limits.messages_per_minute),
                payload,
            )?;
            log.info(
                "message.published",
                json!({
                    "provider": provider,
                    "channel": channel.channel.as_str(),
                    "msg_id": envelope.id,
                    "session": envelope.session_id.as_str(),
                    "stream": ack.stream,
                    "seq": ack.seq,
                    "duplicate": ack.duplicate,
                }),
            );
            Ok(Response::json(
                200,
                &json!({ "status": "published", "id": envelope.id, "duplicate": ack.duplicate }),
            )
            .with_rate_limit(&windows))
        }
    }
}

fn token(
    req: &Request,
    host: &dyn Host,
    log: &RequestLog,
    channel: &ChannelConfig,
) -> Result<Response, ApiError> {
    if channel.config.provider != "messaging-webchat" {
        return Err(ApiError::NotFound);
    }
    let secrets = BrokerClient::new(host, COMPONENT);
    let response = webchat::issue_token(channel, req, host, &secrets)?;
    channel.require_active()?;
    log.info(
        "webchat.token_issued",
        json!({ "channel": channel.channel.as_str() }),
    );
    Ok(response)
}
