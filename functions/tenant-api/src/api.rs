//! The tenant control plane's REST surface:
//!
//! | route | who |
//! |---|---|
//! | `GET /api/v1/tenants` | platform admin: every tenant, newest first, paged |
//! | `GET /api/v1/tenants/{tenant}` | the tenant's tokens (not team-limited), platform admin |
//! | `PUT /api/v1/tenants/{tenant}` | the tenant's `admin` (update), platform admin (create, update) |
//! | `GET /api/v1/tenants/{tenant}/versions[/{n}]` | as `GET` of the tenant |
//! | `POST /api/v1/tenants/{tenant}/rollback` | as `PUT` |
//! | `PUT /api/v1/tenants/{tenant}/status` | platform admin: suspend or resume |
//! | `DELETE /api/v1/tenants/{tenant}` | platform admin: one call of the tenant's deletion (`offboard.rs`) |
//!
//! Every request takes the same steps as the other REST APIs (SPEC §9):
//! body size (413), route and ids (400), `service::admit` (scope headers
//! 400, token 401, claims 403, the caller's tenant suspended 403, rate
//! limits 429), the caller's right to the tenant named in the path (403,
//! whether or not it exists), then the body (400), existence (404) and
//! `If-Match` (412). A refused request writes nothing.
//!
//! A platform admin's token names its own (operator) tenant in `tenant` and
//! `X-Tenant-ID`, like every token; the role lets it act on the tenant the
//! path names.

use greentic::flows::control::{self, Applied, Author, ControlPlane, IfMatch, TenantDocument};
use greentic::http::{Request, Response};
use greentic::messaging::providers::rfc3339;
use greentic::service;
use greentic::service::auth::{Access, roles};
use greentic::service::log::RequestLog;
use greentic::store::config::{self, MAX_VERSION_BYTES, Status, Version};
use greentic::tenancy::ids::TenantId;
use greentic::{ApiError, host::Host};
use serde::Serialize;
use serde_json::{Value, json};

pub const COMPONENT: &str = "tenant-api";

/// A document may be as large as a stored version, plus room for YAML's
/// looser layout; the stored size is checked again before writing (413).
pub const BODY_LIMIT: usize = 2 * MAX_VERSION_BYTES;

const COLLECTION: &str = "/api/v1/tenants";
const ITEM: &str = "/api/v1/tenants/{tenant}";
const VERSIONS: &str = "/api/v1/tenants/{tenant}/versions";
const VERSION: &str = "/api/v1/tenants/{tenant}/versions/{version}";
const ROLLBACK: &str = "/api/v1/tenants/{tenant}/rollback";
const STATUS: &str = "/api/v1/tenants/{tenant}/status";
const DEFAULT_PAGE_LIMIT: usize = 50;
const MAX_PAGE_LIMIT: usize = 200;

enum Operation {
    List {
        limit: usize,
        cursor: Option<String>,
    },
    Get(TenantId),
    Put(TenantId),
    History {
        tenant: TenantId,
        limit: usize,
        before: Option<u64>,
    },
    Version(TenantId, u64),
    Rollback(TenantId),
    SetStatus(TenantId),
    Delete(TenantId),
}

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    service::serve(req, host, COMPONENT, BODY_LIMIT, |req, log| {
        let (route, operation) = match parse(req) {
            Ok(parsed) => parsed,
            Err((route, e)) => return (route, Err(e)),
        };
        let outcome = service::admit(req, host, log).and_then(|(access, windows)| {
            apply(operation, req, &access, host, log).map(|r| r.with_rate_limit(&windows))
        });
        (route, outcome)
    })
}

/// Route, method, ids and query, before any credential is looked at.
fn parse(req: &Request) -> Result<(&'static str, Operation), (&'static str, ApiError)> {
    let rest = req
        .path
        .strip_prefix(COLLECTION)
        .ok_or(("-", ApiError::NotFound))?;
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let method = req.method.as_str();
    let tenant = |raw: &str, route| TenantId::parse(raw).map_err(|e| (route, e.into()));
    let only = |route, allow: &'static str| {
        if method == allow {
            Ok(())
        } else {
            Err((route, ApiError::MethodNotAllowed { allow }))
        }
    };
    match segments.as_slice() {
        [] => {
            only(COLLECTION, "GET")?;
            let (limit, cursor) = page(req, "cursor").map_err(|e| (COLLECTION, e))?;
            Ok((COLLECTION, Operation::List { limit, cursor }))
        }
        [t] => {
            let t = tenant(t, ITEM)?;
            match method {
                "GET" => Ok((ITEM, Operation::Get(t))),
                "PUT" => Ok((ITEM, Operation::Put(t))),
                "DELETE" => Ok((ITEM, Operation::Delete(t))),
                _ => Err((
                    ITEM,
                    ApiError::MethodNotAllowed {
                        allow: "GET, PUT, DELETE",
                    },
                )),
            }
        }
        [t, "versions"] => {
            let t = tenant(t, VERSIONS)?;
            only(VERSIONS, "GET")?;
            let (limit, before) = page(req, "before").map_err(|e| (VERSIONS, e))?;
            let before = before
                .map(|b| version_number(&b))
                .transpose()
                .map_err(|e| (VERSIONS, e))?;
            Ok((
                VERSIONS,
                Operation::History {
                    tenant: t,
                    limit,
                    before,
                },
            ))
        }
        [t, "versions", n] => {
            let t = tenant(t, VERSION)?;
            only(VERSION, "GET")?;
            let n = version_number(n).map_err(|e| (VERSION, e))?;
            Ok((VERSION, Operation::Version(t, n)))
        }
        [t, "rollback"] => {
            let t = tenant(t, ROLLBACK)?;
            only(ROLLBACK, "POST")?;
            Ok((ROLLBACK, Operation::Rollback(t)))
        }
        [t, "status"] => {
            let t = tenant(t, STATUS)?;
            only(STATUS, "PUT")?;
            Ok((STATUS, Operation::SetStatus(t)))
        }
        _ => Err(("-", ApiError::NotFound)),
    }
}

/// `limit` and the named continuation parameter of a paged listing.
fn page(req: &Request, after: &str) -> Result<(usize, Option<String>), ApiError> {
    let mut limit = DEFAULT_PAGE_LIMIT;
    let mut next = None;
    for (name, value) in req.query_params(&["limit", after])? {
        if name == "limit" {
            limit = value
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_PAGE_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE_LIMIT}"))
                })?;
        } else {
            next = Some(value);
        }
    }
    Ok((limit, next))
}

fn version_number(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::BadRequest("a version is a whole number from 1".into()))
}

fn apply(
    operation: Operation,
    req: &Request,
    access: &Access,
    host: &dyn Host,
    log: &RequestLog,
) -> Result<Response, ApiError> {
    let kv = host.open_store(config::STORE_LABEL)?;
    let plane = ControlPlane::new(kv.as_ref());
    let platform_admin = access.principal.has_any_role(&[roles::PLATFORM_ADMIN]);
    let by = |if_match| Author {
        subject: &access.principal.subject,
        platform: platform_admin,
        now_ms: host.now_ms(),
        if_match,
    };
    match operation {
        Operation::List { limit, cursor } => {
            access.require_any_role(&[roles::PLATFORM_ADMIN])?;
            let (page, next) = plane.store().tenants(cursor.as_deref(), limit)?;
            let items: Vec<Value> = page.iter().map(summary).collect();
            Ok(Response::json(
                200,
                &json!({ "items": items, "next_cursor": next }),
            ))
        }
        Operation::Get(tenant) => {
            may_read(access, &tenant)?;
            let current = plane
                .store()
                .current::<TenantDocument>(&tenant)?
                .ok_or(ApiError::NotFound)?;
            Ok(with_etag(Response::json(200, &full(&current)), &current))
        }
        Operation::Put(tenant) => {
            may_change(access, &tenant)?;
            let if_match = if_match(req)?;
            let text = std::str::from_utf8(&req.body)
                .map_err(|_| ApiError::BadRequest("the document is not UTF-8".into()))?;
            let document = TenantDocument::parse(&tenant, text).map_err(control::invalid)?;
            let applied = plane.apply(&tenant, document, &by(if_match))?;
            log.info("tenant_config", json!({ "config_tenant": tenant.as_str(), "result": result(&applied), "version": applied.version().version }));
            Ok(answer(applied))
        }
        Operation::History {
            tenant,
            limit,
            before,
        } => {
            may_read(access, &tenant)?;
            let (versions, next) = plane
                .store()
                .history::<serde::de::IgnoredAny>(&tenant, before, limit)?
                .ok_or(ApiError::NotFound)?;
            let items: Vec<Value> = versions.iter().map(summary).collect();
            Ok(Response::json(
                200,
                &json!({ "items": items, "next_before": next }),
            ))
        }
        Operation::Version(tenant, n) => {
            may_read(access, &tenant)?;
            let version = plane
                .store()
                .version::<TenantDocument>(&tenant, n)?
                .ok_or(ApiError::NotFound)?;
            Ok(Response::json(200, &full(&version)))
        }
        Operation::Rollback(tenant) => {
            may_change(access, &tenant)?;
            let if_match = if_match(req)?;
            let to = body_field(req, "version")?
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::BadRequest("`version` is a whole number from 1".into()))?;
            let applied = plane.roll_back(&tenant, to, &by(if_match))?;
            log.info("tenant_config", json!({ "config_tenant": tenant.as_str(), "result": result(&applied), "version": applied.version().version }));
            Ok(answer(applied))
        }
        Operation::Delete(tenant) => {
            access.require_any_role(&[roles::PLATFORM_ADMIN])?;
            crate::offboard::delete_tenant(
                &plane,
                kv.as_ref(),
                &tenant,
                &by(IfMatch::Any),
                host,
                log,
            )
        }
        Operation::SetStatus(tenant) => {
            access.require_any_role(&[roles::PLATFORM_ADMIN])?;
            let if_match = if_match(req)?;
            let status = match body_field(req, "status")?.as_str() {
                Some("active") => Status::Active,
                Some("suspended") => Status::Suspended,
                _ => {
                    return Err(ApiError::BadRequest(
                        "`status` is `active` or `suspended`".into(),
                    ));
                }
            };
            let applied = plane.set_status(&tenant, status, &by(if_match))?;
            log.info("tenant_config", json!({ "config_tenant": tenant.as_str(), "result": result(&applied), "version": applied.version().version }));
            Ok(answer(applied))
        }
    }
}

/// Reading a tenant's configuration: its own tokens, unless limited to
/// teams (the configuration is the whole tenant's), or a platform admin.
fn may_read(access: &Access, tenant: &TenantId) -> Result<(), ApiError> {
    if access.principal.has_any_role(&[roles::PLATFORM_ADMIN]) {
        return Ok(());
    }
    if access.ctx.tenant_id() != tenant.as_str() {
        return Err(ApiError::Forbidden(
            "token does not grant this tenant".into(),
        ));
    }
    if access.principal.teams.is_some() {
        return Err(ApiError::Forbidden(
            "a token limited to teams cannot read or change the tenant's configuration".into(),
        ));
    }
    Ok(())
}

/// Changing it: as reading, with the `admin` role (or a platform admin).
fn may_change(access: &Access, tenant: &TenantId) -> Result<(), ApiError> {
    may_read(access, tenant)?;
    access.require_any_role(&[roles::ADMIN, roles::PLATFORM_ADMIN])
}

/// `If-Match`: `"N"` (a version's ETag; a bare `N` is taken too), `*`, or a
/// weak tag, which never matches. A list of tags is not supported.
fn if_match(req: &Request) -> Result<IfMatch, ApiError> {
    let Some(raw) = req.header("if-match")? else {
        return Ok(IfMatch::Any);
    };
    let raw = raw.trim();
    if raw == "*" {
        return Ok(IfMatch::Exists);
    }
    if raw.starts_with("W/") {
        return Ok(IfMatch::Weak);
    }
    let bare = match raw.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"'),
        None => Some(raw),
    };
    bare.and_then(|n| n.parse::<u64>().ok())
        .map(IfMatch::Version)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "If-Match is one version's ETag as GET gives it (e.g. \"3\") or *".into(),
            )
        })
}

/// One field of a small JSON body.
fn body_field(req: &Request, name: &str) -> Result<Value, ApiError> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|_| ApiError::BadRequest("the body is not JSON".into()))?;
    Ok(body.get(name).cloned().unwrap_or(Value::Null))
}

fn result(applied: &Applied) -> &'static str {
    match applied {
        Applied::Created(_) => "created",
        Applied::Updated(_) => "updated",
        Applied::Unchanged(_) => "unchanged",
    }
}

fn answer(applied: Applied) -> Response {
    let status = if matches!(applied, Applied::Created(_)) {
        201
    } else {
        200
    };
    let version = applied.version();
    let mut body = full(version);
    body["result"] = result(&applied).into();
    let response = with_etag(Response::json(status, &body), version);
    match applied {
        Applied::Created(v) => {
            response.with_header("location", format!("{COLLECTION}/{}", v.tenant))
        }
        _ => response,
    }
}

fn with_etag<D>(response: Response, version: &Version<D>) -> Response {
    response.with_header("etag", format!("\"{}\"", version.version))
}

/// A version without its document (listings, history).
fn summary<D>(version: &Version<D>) -> Value {
    json!({
        "tenant": version.tenant,
        "version": version.version,
        "author": version.author,
        "at": rfc3339(version.at_ms),
        "change": version.change,
        "status": version.status,
    })
}

fn full<D: Serialize>(version: &Version<D>) -> Value {
    let mut body = summary(version);
    body["limits"] = json!(version.limits);
    body["document"] = json!(version.document);
    body
}
