//! The steps every component takes around its own logic, in one place:
//! request id, tenant-scoped log, body limit, problem rendering, and one
//! access-log line per request (method, route, status, `duration_ms`);
//! the tenant-scoped request log ([`log`]) and the one auth check ([`auth`]).
//!
//! Uses `host`, `store`, `http` and `tenancy`. What every request of every
//! component goes through (per-tenant limits at the edge, say) belongs here.

pub mod auth;
pub mod limits;
pub mod log;

use serde_json::json;

use crate::host::Host;
use crate::http::error::ApiError;
use crate::http::ratelimit::RateWindow;
use crate::http::{Request, Response};
use crate::service::auth::Access;
use crate::service::log::{RequestLog, request_id};
use crate::store::config::Status;

/// What a component's handler returns: the route template it matched (logged
/// instead of the raw path, which may hold anything a client sent) and the outcome.
pub type Outcome = (&'static str, Result<Response, ApiError>);

/// The one admission step of a REST request, after its route and ids are
/// parsed: authorisation ([`auth::authorise_request`]: scope headers 400,
/// token 401, claims 403), the caller's tenant's standing (403
/// `tenant-suspended`), then its rate limits ([`limits::charge_api`]: 429).
/// Scopes `log` to the caller's tenant. The windows returned go on the
/// answer as `RateLimit` headers.
///
/// A platform admin is admitted while its own tenant is suspended: someone
/// must be able to resume it.
pub fn admit(
    req: &Request,
    host: &dyn Host,
    log: &mut RequestLog,
) -> Result<(Access, Vec<RateWindow>), ApiError> {
    let access = auth::authorise_request(req, host)?;
    log.set_scope(&access.ctx);
    let (status, limits) = limits::standing(host, access.ctx.tenant_id())?;
    let platform = access
        .principal
        .has_any_role(&[auth::roles::PLATFORM_ADMIN]);
    match status {
        _ if platform => {}
        Some(Status::Active) => {}
        Some(Status::Suspended | Status::Offboarding) => return Err(ApiError::TenantSuspended),
        // A token of a tenant this instance does not have (never created,
        // deleted, or served by another instance) reaches nothing, and
        // must not leave rate windows behind either.
        None => {
            return Err(ApiError::Forbidden(
                "the token's tenant is not configured on this instance".into(),
            ));
        }
    }
    let windows = limits::charge_api(host, &access, &limits, log)?;
    Ok((access, windows))
}

/// Runs `handler` for `req`. Bodies over `body_limit` are refused with 413
/// before the handler sees them. The response always carries `X-Request-ID`.
pub fn serve(
    req: &Request,
    host: &dyn Host,
    component: &'static str,
    body_limit: usize,
    handler: impl FnOnce(&Request, &mut RequestLog) -> Outcome,
) -> Response {
    // The monotonic clock (WASI has one), not the host's wall clock: tests
    // move that one, and a duration must not jump with it.
    let started = std::time::Instant::now();
    let supplied = req.header("x-request-id").ok().flatten();
    let mut log = RequestLog::new(host, component, request_id(supplied, host));
    let (route, outcome) = if req.body.len() > body_limit {
        ("-", Err(ApiError::PayloadTooLarge { limit: body_limit }))
    } else {
        handler(req, &mut log)
    };
    let response = outcome.unwrap_or_else(|e| {
        if e.status() >= 500 {
            log.warn(
                "request.failed",
                json!({ "problem": e.slug(), "detail": e.to_string() }),
            );
        }
        e.into_response(Some(log.request_id()))
    });
    // Milliseconds with microseconds: most requests take less than one.
    let duration_ms = (started.elapsed().as_micros() as f64) / 1000.0;
    log.info(
        "request",
        json!({ "method": req.method, "route": route, "status": response.status, "duration_ms": duration_ms }),
    );
    response.with_header("x-request-id", log.request_id())
}
