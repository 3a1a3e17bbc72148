//! The page and the activity reads. A read needs a web chat token of exactly
//! this tenant/env/team/channel; it returns only the token's own
//! conversation, so one visitor can never read another's (or another
//! tenant's) messages.

use greentic::ApiError;
use greentic::flows::tenant_config::TenantConfig;
use greentic::host::Host;
use greentic::http::{DEFAULT_BODY_LIMIT, Request, Response};
use greentic::messaging::providers::{bearer, webchat};
use greentic::secrets::client::BrokerClient;
use greentic::service;
use greentic::store::webchat_log::{ConversationLog, STORE_LABEL};
use greentic::tenancy::ids::{ChannelId, ConversationId, TenantCtx};
use serde_json::json;

pub const COMPONENT: &str = "webchat";
const PAGE_ROUTE: &str = "/webchat";
const ACTIVITIES_ROUTE: &str = "/webchat/v1/{env}/{tenant}/{team}/{channel}/activities";

/// The page, with its script inline so it needs no other file or build.
const PAGE: &str = include_str!("page.html");

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    service::serve(req, host, COMPONENT, DEFAULT_BODY_LIMIT, |req, log| {
        if req.path == PAGE_ROUTE || req.path == "/webchat/" {
            if req.method != "GET" {
                return (PAGE_ROUTE, Err(ApiError::MethodNotAllowed { allow: "GET" }));
            }
            let page = Response {
                status: 200,
                headers: vec![
                    ("content-type".into(), "text/html; charset=utf-8".into()),
                    // The page only talks to its own origin.
                    (
                        "content-security-policy".into(),
                        "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
                            .into(),
                    ),
                ],
                body: PAGE.as_bytes().to_vec(),
            };
            return (PAGE_ROUTE, Ok(page));
        }
        let Some(rest) = req.path.strip_prefix("/webchat/v1/") else {
            return ("-", Err(ApiError::NotFound));
        };
        let segments = greentic::http::path_segments(rest);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let [env, tenant, team, channel, "activities"] = segments.as_slice() else {
            return ("-", Err(ApiError::NotFound));
        };
        let outcome = (|| {
            let ctx = TenantCtx::from_route(env, tenant, team)?;
            let channel = ChannelId::parse(channel)?;
            log.set_scope(&ctx);
            if req.method != "GET" {
                return Err(ApiError::MethodNotAllowed { allow: "GET" });
            }
            let watermark = match req.query_params(&["watermark"])?.first() {
                Some((_, w)) => w
                    .parse::<u64>()
                    .map_err(|_| ApiError::BadRequest("watermark must be a whole number".into()))?,
                None => 0,
            };
            let channel = TenantConfig::find_channel(host, &ctx, &channel)?
                .filter(|c| c.config.provider == "messaging-webchat")
                .ok_or(ApiError::NotFound)?;
            let secrets = BrokerClient::new(host, COMPONENT);
            let claims = webchat::verify_token(&channel, bearer(req)?, host.now_ms(), &secrets)?;
            // After the token: only the conversation's own visitor learns
            // the tenant is suspended.
            channel.require_active()?;
            let conversation = ConversationId::parse(&claims.conv)?;
            let kv = host.open_store(STORE_LABEL)?;
            let log_of =
                ConversationLog::new(kv.as_ref(), &channel.ctx, &channel.channel, &conversation);
            let (activities, watermark) = log_of.read_after(watermark)?;
            Ok(Response::json(
                200,
                &json!({ "activities": activities, "watermark": watermark }),
            ))
        })();
        (ACTIVITIES_ROUTE, outcome)
    })
}
