//! `DELETE /api/v1/tenants/{tenant}`: one call of a tenant's deletion.
//!
//! Each call does a bounded share of the work and answers how far it got:
//! `202` while work is left (call again; `greentic tenant delete` does), `200`
//! once the tenant is gone. The order keeps what is deleted from coming back:
//! 1. the tenant is marked `offboarding` (a new version): its webhooks, web
//!    chat and REST calls are refused from then on, and deliveries of what
//!    was accepted before are dropped by the executor and egress;
//! 2. the bridge purges its messages from every stream, dead letters
//!    included;
//! 3. the broker deletes its secrets (budgeted calls of its own);
//! 4. its data goes from the sessions, web chat, egress and limits stores
//!    (`store/offboard.rs`, budgeted);
//! 5. the bridge purges again (a message published while step 1 landed);
//! 6. its configuration goes, the head last: until then a new call goes on
//!    with the deletion, after it the tenant is unknown (404).
//!
//! Every step is safe to repeat, so a call cut off anywhere is resumed by
//! the next one. One call runs at a time (a lease per minute in the config
//! store; a second call meanwhile is 409): two at once would drain the same
//! index slot and count the index down twice.

use greentic::flows::control::{Author, ControlPlane};
use greentic::http::Response;
use greentic::messaging::bridge::BridgeClient;
use greentic::messaging::{egress, executor};
use greentic::secrets::client::BrokerClient;
use greentic::service::limits;
use greentic::service::log::RequestLog;
use greentic::store::budget::Budget;
use greentic::store::kv::KeyValue;
use greentic::store::lifecycle::Stores;
use greentic::store::offboard::{self, OFFBOARD_BUDGET, Progress, TenantStores};
use greentic::store::webchat_log;
use greentic::tenancy::ids::TenantId;
use greentic::{ApiError, host::Host};
use serde_json::json;

pub fn delete_tenant(
    plane: &ControlPlane<'_>,
    config: &dyn KeyValue,
    tenant: &TenantId,
    by: &Author<'_>,
    host: &dyn Host,
    log: &RequestLog,
) -> Result<Response, ApiError> {
    plane.begin_offboarding(tenant, by)?;
    let minute = offboard::take_lease(config, tenant, by.now_ms)?.ok_or_else(|| {
        ApiError::Conflict(
            "another call of this tenant's deletion is running (or died within two minutes); \
             call again shortly"
                .into(),
        )
    })?;
    let answer = with_lease(config, tenant, minute, by, host, log);
    offboard::release_lease(config, tenant, minute)?;
    answer
}

/// One call, holding the lease of `minute`.
fn with_lease(
    config: &dyn KeyValue,
    tenant: &TenantId,
    minute: u64,
    by: &Author<'_>,
    host: &dyn Host,
    log: &RequestLog,
) -> Result<Response, ApiError> {
    // Read again under the lease: the call before may have finished.
    let head = offboard::offboarding_head(config, tenant)?.ok_or(ApiError::NotFound)?;
    let mut progress = offboard::progress(config, tenant, head, by.subject, by.now_ms)?;
    progress.leased(minute);
    offboard::save(config, tenant, &progress)?;
    let done = run(config, tenant, &mut progress, host);
    // What got done stays done, even when a step failed after it; once the
    // head is gone, there is nothing to keep.
    if !matches!(done, Ok(true)) && offboard::offboarding_head(config, tenant)? == Some(head) {
        offboard::save(config, tenant, &progress)?;
    }
    let done = done?;
    log.info(
        "tenant.offboarding",
        json!({
            "config_tenant": tenant.as_str(),
            "by": progress.by,
            "done": done,
            "removed": progress.removed,
        }),
    );
    let body = json!({
        "tenant": tenant.as_str(),
        "state": if done { "deleted" } else { "deleting" },
        "removed": progress.removed,
    });
    Ok(Response::json(if done { 200 } else { 202 }, &body))
}

/// Goes on with the deletion where `progress` says. Returns whether the
/// tenant is gone.
fn run(
    config: &dyn KeyValue,
    tenant: &TenantId,
    progress: &mut Progress,
    host: &dyn Host,
) -> Result<bool, ApiError> {
    let bridge = BridgeClient::new(host);
    let mut budget = Budget::new(OFFBOARD_BUDGET);
    // The versions name the teams whose secrets the broker is asked about.
    if !offboard::read_versions(config, tenant, progress, &mut budget)? {
        return Ok(false);
    }
    if !progress.streams_purged {
        progress.removed.stream_messages += bridge.purge_tenant(tenant)?;
        progress.streams_purged = true;
    }
    if !progress.secrets_done {
        let broker = BrokerClient::new(host, "tenant-api");
        let (removed, more) = broker
            .forget_tenant(tenant, &progress.configured_teams())
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        progress.removed.secrets += removed;
        progress.secrets_done = !more;
        if more {
            return Ok(false);
        }
    }
    if !progress.data_done {
        let sessions = host.open_store(executor::STORE_LABEL)?;
        let webchat = host.open_store(webchat_log::STORE_LABEL)?;
        let egress = host.open_store(egress::STORE_LABEL)?;
        let limits = host.open_store(limits::STORE_LABEL)?;
        let stores = TenantStores {
            data: Stores {
                sessions: sessions.as_ref(),
                webchat: webchat.as_ref(),
                egress: egress.as_ref(),
            },
            limits: limits.as_ref(),
            config,
        };
        progress.data_done =
            offboard::delete_data(&stores, tenant, progress, host.now_ms(), &mut budget)?;
        if !progress.data_done {
            return Ok(false);
        }
    }
    if !progress.final_purge_done {
        progress.removed.stream_messages += bridge.purge_tenant(tenant)?;
        progress.final_purge_done = true;
    }
    offboard::delete_configuration(config, tenant, progress, &mut budget)
}
