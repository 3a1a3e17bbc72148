//! Per-tenant rate limits of the REST APIs: every authorised request counts
//! once against its tenant's per-minute quota and once against its token
//! subject's; over either, it is refused with 429 before it reads or changes
//! anything.
//!
//! Counting comes after authentication on purpose: the tenant a request is
//! counted against comes from a verified token, so nobody can spend another
//! tenant's quota (or lock it out) with requests that carry its id but no
//! valid token. The quotas come from the tenant's current configuration (the
//! `config` store) and the counters live in the `limits` key-value store,
//! which only the components that enforce limits declare.

use serde_json::json;

use crate::host::Host;
use crate::http::error::ApiError;
use crate::http::ratelimit::RateWindow;
use crate::service::auth::Access;
use crate::service::log::RequestLog;
use crate::store::config::{self, ConfigStore, Status};
use crate::store::{rate, usage};
use crate::tenancy::ids::{ChannelId, ConversationId, Counter, TenantCtx, TenantId};
use crate::tenancy::keys;
use crate::tenancy::limits::Limits;

/// The key-value store (spin.toml label) of rate windows and refusal counts.
pub const STORE_LABEL: &str = "limits";

/// Tenant `tenant_id`'s status and limits, from its current configuration
/// (one read of the `config` store, the document skipped unparsed); no
/// status and the built-in limits for a tenant with no configuration (a
/// platform admin's token may name one).
pub fn standing(host: &dyn Host, tenant_id: &str) -> Result<(Option<Status>, Limits), ApiError> {
    let tenant = TenantId::parse(tenant_id)?;
    let kv = host.open_store(config::STORE_LABEL)?;
    Ok(
        match ConfigStore::new(kv.as_ref()).current::<serde::de::IgnoredAny>(&tenant)? {
            None => (None, Limits::default()),
            Some(v) => (Some(v.status), v.limits),
        },
    )
}

/// Counts this request of `access` against its tenant's and its subject's
/// quotas. Returns the windows (for the `RateLimit` headers of the answer),
/// or 429 with them when either is exceeded; the refusal is counted in the
/// tenant's usage and logged.
pub fn charge_api(
    host: &dyn Host,
    access: &Access,
    limits: &Limits,
    log: &RequestLog,
) -> Result<Vec<RateWindow>, ApiError> {
    let kv = host.open_store(STORE_LABEL)?;
    let now = host.now_ms();
    let windows = vec![
        rate::count(
            kv.as_ref(),
            &keys::rate_api(&access.ctx),
            "tenant",
            limits.api_requests_per_minute,
            now,
        )?,
        rate::count(
            kv.as_ref(),
            &keys::rate_api_subject(&access.ctx, &access.principal.subject),
            "subject",
            limits.api_requests_per_minute_per_subject,
            now,
        )?,
    ];
    refuse_if_exceeded(
        kv.as_ref(),
        &access.ctx,
        Counter::ApiRefused,
        windows,
        now,
        log,
    )
}

/// Counts one web chat message against its conversation's and its channel's
/// quotas (`limits` are the channel's tenant's). Anyone holding a web chat
/// token can post, so this is what keeps one visitor, or one page's
/// visitors together, from flooding the tenant. Over either, 429 before the
/// message is published; the refusal is counted in the tenant's usage.
pub fn charge_webchat(
    host: &dyn Host,
    ctx: &TenantCtx,
    channel: &ChannelId,
    conversation: &ConversationId,
    limits: &Limits,
    log: &RequestLog,
) -> Result<Vec<RateWindow>, ApiError> {
    let kv = host.open_store(STORE_LABEL)?;
    let now = host.now_ms();
    let windows = vec![
        rate::count(
            kv.as_ref(),
            &keys::rate_webchat_conversation(ctx, channel, conversation),
            "conversation",
            limits.webchat_messages_per_minute_per_conversation,
            now,
        )?,
        rate::count(
            kv.as_ref(),
            &keys::rate_webchat_channel(ctx, channel),
            "channel",
            limits.webchat_messages_per_minute_per_channel,
            now,
        )?,
    ];
    refuse_if_exceeded(kv.as_ref(), ctx, Counter::WebchatRefused, windows, now, log)
}

/// `windows` when none is exceeded; else the refusal, counted and logged.
fn refuse_if_exceeded(
    kv: &dyn crate::store::kv::KeyValue,
    ctx: &TenantCtx,
    counter: Counter,
    windows: Vec<RateWindow>,
    now: i64,
    log: &RequestLog,
) -> Result<Vec<RateWindow>, ApiError> {
    if !windows.iter().any(RateWindow::exceeded) {
        return Ok(windows);
    }
    usage::record_refused(kv, ctx, counter, now)?;
    let exceeded: Vec<&str> = windows
        .iter()
        .filter(|w| w.exceeded())
        .map(|w| w.policy)
        .collect();
    log.info("rate.limited", json!({ "limit": exceeded }));
    Err(ApiError::TooManyRequests(windows))
}
