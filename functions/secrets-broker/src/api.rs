//! The broker's HTTP surface.
//!
//! Admin API (public, JWT):
//! - `GET    /api/v1/secrets`               list names and metadata (admin, secrets-reader)
//! - `GET    /api/v1/secrets/{name}`        metadata (admin, secrets-reader)
//! - `GET    /api/v1/secrets/{name}/value`  the value (secrets-reader)
//! - `PUT    /api/v1/secrets/{name}`        `{"value": "..."}`, create or replace (admin)
//! - `DELETE /api/v1/secrets/{name}`        (admin)
//!
//! The scope is the team of `X-Team-ID` when given, else the tenant; a token
//! limited to teams (`teams` claim) cannot touch tenant-level secrets.
//! `?scope=global` addresses platform-wide secrets and needs `platform-admin`.
//!
//! Internal (service chaining only; tenant from `X-Tenant-ID`/`X-Env-ID`/`X-Team-ID`):
//! - `POST /internal/v1/secrets/resolve`             `{"name"}` -> `{"value", "scope"}`
//! - `POST /internal/v1/secrets/verify-hmac-sha256`  the message as the body, the secret's
//!   name and the hex MAC in `X-Greentic-Secret-Name` / `X-Greentic-Hmac-Sha256` -> `{"valid"}`
//! - `POST /internal/v1/secrets/forget-tenant`       `{"teams": [...]}`, tenant from
//!   `X-Tenant-ID` -> `{"removed", "more"}`: one budgeted step of deleting every
//!   secret of the tenant (the tenant API's offboarding calls it until `more` is false)
//!
//! Every put, read, resolve, verify, delete and denial is one audit log line
//! (who, scope, name, outcome), never the value.

use greentic::ApiError;
use greentic::host::Host;
use greentic::http::{Request, Response};
use greentic::secrets::STORE_LABEL;
use greentic::secrets::client::{
    CALLER_HEADER, FORGET_TENANT_PATH, MAC_HEADER, RESOLVE_PATH, SECRET_NAME_HEADER,
    VERIFY_HMAC_SHA256_PATH, hmac_sha256_matches,
};
use greentic::secrets::crypto::{MasterKeys, NONCE_LEN};
use greentic::secrets::store::{Put, SecretError, SecretMeta, SecretStore};
use greentic::service;
use greentic::service::auth::{Access, roles};
use greentic::service::log::RequestLog;
use greentic::store::budget::Budget;
use greentic::store::offboard::OFFBOARD_BUDGET;
use greentic::tenancy::ids::{IdError, IdKind, SecretName, SecretScope, TenantCtx, TenantId};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub const COMPONENT: &str = "secrets-broker";

/// Admin request bodies are small JSON documents around a value of at most
/// 64 KiB.
pub const BODY_LIMIT: usize = 128 * 1024;

/// An internal HMAC check carries the message it is about: the largest
/// webhook body ingress accepts plus what a provider's signing base adds to
/// it (Slack's `v0:{timestamp}:`), so whatever ingress accepted can be verified.
pub const INTERNAL_BODY_LIMIT: usize = greentic::http::DEFAULT_BODY_LIMIT + 1024;

/// The most a request to `path` may carry.
pub fn body_limit(path: &str) -> usize {
    if path.starts_with("/internal/") {
        INTERNAL_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

/// Platform-wide secrets that components may resolve (comma-separated names).
pub const VAR_SHARED_GLOBAL: &str = "secrets_shared_global";

const ADMIN: &str = "/api/v1/secrets";
const DEFAULT_PAGE_LIMIT: usize = 50;
const MAX_PAGE_LIMIT: usize = 200;

enum Operation {
    Admin(AdminOp),
    Internal(InternalCall),
    ForgetTenant {
        tenant: TenantId,
        teams: BTreeSet<String>,
    },
}

enum AdminOp {
    List {
        global: bool,
        cursor: Option<String>,
        limit: usize,
    },
    Meta {
        global: bool,
        name: SecretName,
    },
    Value {
        global: bool,
        name: SecretName,
    },
    Put {
        global: bool,
        name: SecretName,
        value: String,
    },
    Delete {
        global: bool,
        name: SecretName,
    },
}

impl AdminOp {
    /// The name an operation is about, for the audit line of a denial.
    fn name(&self) -> Option<&SecretName> {
        match self {
            AdminOp::List { .. } => None,
            AdminOp::Meta { name, .. }
            | AdminOp::Value { name, .. }
            | AdminOp::Put { name, .. }
            | AdminOp::Delete { name, .. } => Some(name),
        }
    }
}

/// A component asking for a secret (`verify: None`) or for an HMAC check
/// with it (`verify: Some((message, mac))`).
struct InternalCall {
    ctx: TenantCtx,
    name: SecretName,
    verify: Option<(Vec<u8>, Vec<u8>)>,
}

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    service::serve(req, host, COMPONENT, body_limit(&req.path), |req, log| {
        let (route, operation) = match parse(req) {
            Ok(parsed) => parsed,
            Err((route, e)) => return (route, Err(e)),
        };
        let outcome = match operation {
            Operation::Internal(call) => internal(call, req, host, log),
            Operation::ForgetTenant { tenant, teams } => forget_tenant(&tenant, &teams, host, log),
            Operation::Admin(admin_op) => {
                let name = admin_op.name().cloned();
                service::admit(req, host, log)
                    .and_then(|(access, windows)| {
                        admin(admin_op, &access, host, log).map(|r| r.with_rate_limit(&windows))
                    })
                    .inspect_err(|e| {
                        if matches!(e.status(), 401 | 403) {
                            log.warn(
                                "secret.denied",
                                json!({ "name": name, "problem": e.slug() }),
                            );
                        }
                    })
            }
        };
        (route, outcome)
    })
}

type Parsed = Result<(&'static str, Operation), (&'static str, ApiError)>;

/// Route, method, names, query and body, before any credential is looked at.
fn parse(req: &Request) -> Parsed {
    if let Some(op) = req.path.strip_prefix("/internal/v1/secrets/") {
        return parse_internal(req, op);
    }
    let rest = req
        .path
        .strip_prefix(ADMIN)
        .ok_or(("-", ApiError::NotFound))?;
    let with = |route: &'static str, r: Result<Operation, ApiError>| {
        r.map(|op| (route, op)).map_err(|e| (route, e))
    };
    if rest.is_empty() {
        let route = ADMIN;
        if req.method != "GET" {
            return Err((route, ApiError::MethodNotAllowed { allow: "GET" }));
        }
        return with(route, parse_list(req));
    }
    let segments: Vec<&str> = rest.strip_prefix('/').unwrap_or("").split('/').collect();
    match (segments.as_slice(), req.method.as_str()) {
        ([name], method) => {
            let route = "/api/v1/secrets/{name}";
            with(
                route,
                (|| {
                    let name = parse_name(name)?;
                    let global = parse_scope(req)?;
                    match method {
                        "GET" => Ok(Operation::Admin(AdminOp::Meta { global, name })),
                        "DELETE" => Ok(Operation::Admin(AdminOp::Delete { global, name })),
                        "PUT" => Ok(Operation::Admin(AdminOp::Put {
                            global,
                            value: parse_put_body(&name, &req.body)?,
                            name,
                        })),
                        _ => Err(ApiError::MethodNotAllowed {
                            allow: "GET, PUT, DELETE",
                        }),
                    }
                })(),
            )
        }
        ([name, "value"], method) => {
            let route = "/api/v1/secrets/{name}/value";
            with(
                route,
                (|| {
                    let (name, global) = (parse_name(name)?, parse_scope(req)?);
                    match method {
                        "GET" => Ok(Operation::Admin(AdminOp::Value { global, name })),
                        _ => Err(ApiError::MethodNotAllowed { allow: "GET" }),
                    }
                })(),
            )
        }
        _ => Err(("-", ApiError::NotFound)),
    }
}

fn parse_name(segment: &str) -> Result<SecretName, ApiError> {
    let decoded = greentic::http::path_segments(segment);
    Ok(SecretName::parse(&decoded[0])?)
}

/// `?scope=global` addresses platform-wide secrets; no other scope is spelt out.
fn parse_scope(req: &Request) -> Result<bool, ApiError> {
    match req.query_params(&["scope"])?.first() {
        None => Ok(false),
        Some((_, scope)) if scope == "global" => Ok(true),
        Some(_) => Err(ApiError::BadRequest(
            "scope must be `global` or absent".into(),
        )),
    }
}

fn parse_list(req: &Request) -> Result<Operation, ApiError> {
    let (mut global, mut cursor, mut limit) = (false, None, DEFAULT_PAGE_LIMIT);
    for (name, value) in req.query_params(&["scope", "cursor", "limit"])? {
        match name.as_str() {
            "scope" if value == "global" => global = true,
            "scope" => {
                return Err(ApiError::BadRequest(
                    "scope must be `global` or absent".into(),
                ));
            }
            "cursor" => cursor = Some(value),
            _ => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limit must be an integer from 1 to {MAX_PAGE_LIMIT}"
                        ))
                    })?
            }
        }
    }
    Ok(Operation::Admin(AdminOp::List {
        global,
        cursor,
        limit,
    }))
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    // The serde message names the field or position, never echoes a value.
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {}", e.classify_message())))
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    fn classify_message(&self) -> String {
        match self.classify() {
            serde_json::error::Category::Data => format!(
                "wrong shape at line {} column {}",
                self.line(),
                self.column()
            ),
            _ => format!("not JSON (line {} column {})", self.line(), self.column()),
        }
    }
}

fn parse_put_body(name: &SecretName, body: &[u8]) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PutBody {
        value: String,
    }
    let put: PutBody = json_body(body)?;
    greentic::secrets::check_value(name, put.value.as_bytes())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(put.value)
}

fn parse_internal(req: &Request, op: &str) -> Parsed {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Resolve {
        name: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ForgetTenant {
        teams: BTreeSet<String>,
    }
    let route = match op {
        "resolve" => RESOLVE_PATH,
        "verify-hmac-sha256" => VERIFY_HMAC_SHA256_PATH,
        "forget-tenant" => FORGET_TENANT_PATH,
        _ => return Err(("-", ApiError::NotFound)),
    };
    let parsed = (|| {
        if req.method != "POST" {
            return Err(ApiError::MethodNotAllowed { allow: "POST" });
        }
        if route == FORGET_TENANT_PATH {
            let tenant = req
                .header("x-tenant-id")?
                .ok_or(IdError::Missing(IdKind::Tenant))?;
            let body: ForgetTenant = json_body(&req.body)?;
            for team in &body.teams {
                greentic::tenancy::ids::validate_id(IdKind::Team, team)?;
            }
            return Ok(Operation::ForgetTenant {
                tenant: TenantId::parse(tenant)?,
                teams: body.teams,
            });
        }
        let ctx = internal_ctx(req)?;
        if route == RESOLVE_PATH {
            let body: Resolve = json_body(&req.body)?;
            return Ok(Operation::Internal(InternalCall {
                ctx,
                name: SecretName::parse(&body.name)?,
                verify: None,
            }));
        }
        // The message is the raw body (no base64 to inflate it); the name
        // and the MAC travel in headers.
        let name = req
            .header(SECRET_NAME_HEADER)?
            .ok_or(IdError::Missing(IdKind::Secret))?;
        let name = SecretName::parse(name)?;
        let mac = req
            .header(MAC_HEADER)?
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| ApiError::BadRequest(format!("{MAC_HEADER} must be hex")))?;
        Ok(Operation::Internal(InternalCall {
            ctx,
            name,
            verify: Some((req.body.clone(), mac)),
        }))
    })();
    parsed.map(|op| (route, op)).map_err(|e| (route, e))
}

/// The caller's context on an internal call: explicit headers, since a chained
/// request carries no route matches.
fn internal_ctx(req: &Request) -> Result<TenantCtx, ApiError> {
    let tenant = req
        .header("x-tenant-id")?
        .ok_or(IdError::Missing(IdKind::Tenant))?;
    let env = req
        .header("x-env-id")?
        .ok_or(IdError::Missing(IdKind::Env))?;
    Ok(TenantCtx::new(tenant, env, req.header("x-team-id")?)?)
}

/// The scope an admin request addresses, and whether the token may touch it.
fn admin_scope(access: &Access, global: bool) -> Result<SecretScope, ApiError> {
    if global {
        access.require_any_role(&[roles::PLATFORM_ADMIN])?;
        return Ok(SecretScope::Global);
    }
    if let Some(team) = SecretScope::team_of(&access.ctx).filter(|_| access.team_given) {
        return Ok(team);
    }
    if access.principal.teams.is_some() {
        return Err(ApiError::Forbidden(
            "a token limited to teams cannot manage tenant-level secrets".into(),
        ));
    }
    Ok(SecretScope::tenant_of(&access.ctx))
}

/// Roles per operation; platform-wide secrets need only `platform-admin`.
fn require_roles(access: &Access, global: bool, wanted: &[&str]) -> Result<(), ApiError> {
    if global {
        Ok(())
    } else {
        access.require_any_role(wanted)
    }
}

fn admin(
    op: AdminOp,
    access: &Access,
    host: &dyn Host,
    log: &RequestLog,
) -> Result<Response, ApiError> {
    let kv = host.open_store(STORE_LABEL)?;
    let store = SecretStore::new(kv.as_ref());
    let by = access.principal.subject.as_str();
    match op {
        AdminOp::List {
            global,
            cursor,
            limit,
        } => {
            let scope = admin_scope(access, global)?;
            require_roles(access, global, &[roles::ADMIN, roles::SECRETS_READER])?;
            let (page, next_cursor) = store
                .list(&scope, cursor.as_deref(), limit)
                .map_err(secret_error)?;
            log.info(
                "secret.list",
                json!({ "by": by, "scope": scope.kind(), "count": page.len() }),
            );
            let secrets: Vec<Value> = page.iter().map(meta_json).collect();
            Ok(Response::json(
                200,
                &json!({ "secrets": secrets, "next_cursor": next_cursor }),
            ))
        }
        AdminOp::Meta { global, name } => {
            let scope = admin_scope(access, global)?;
            require_roles(access, global, &[roles::ADMIN, roles::SECRETS_READER])?;
            let meta = store
                .meta(&scope, &name)
                .map_err(secret_error)?
                .ok_or(ApiError::NotFound)?;
            Ok(Response::json(200, &meta_json(&meta)))
        }
        AdminOp::Value { global, name } => {
            let scope = admin_scope(access, global)?;
            require_roles(access, global, &[roles::SECRETS_READER])?;
            let keys = master_keys(host)?;
            let found = store
                .reveal(&keys, &scope, &name, &nonces(host))
                .map_err(secret_error)?;
            let outcome = if found.is_some() { "found" } else { "missing" };
            log.info(
                "secret.read",
                json!({ "by": by, "scope": scope.kind(), "name": name, "outcome": outcome }),
            );
            let (meta, value) = found.ok_or(ApiError::NotFound)?;
            let mut body = meta_json(&meta);
            body["value"] = json!(String::from_utf8_lossy(&value));
            Ok(Response::json(200, &body))
        }
        AdminOp::Put {
            global,
            name,
            value,
        } => {
            let scope = admin_scope(access, global)?;
            require_roles(access, global, &[roles::ADMIN])?;
            let keys = master_keys(host)?;
            let now = host.now_ms();
            let (meta, put) = store
                .put(
                    &keys,
                    &scope,
                    &name,
                    value.as_bytes(),
                    by,
                    now,
                    &nonces(host),
                )
                .map_err(secret_error)?;
            let outcome = if put == Put::Created {
                "created"
            } else {
                "replaced"
            };
            log.info(
                "secret.put",
                json!({ "by": by, "scope": scope.kind(), "name": name, "outcome": outcome }),
            );
            Ok(Response::json(
                if put == Put::Created { 201 } else { 200 },
                &meta_json(&meta),
            ))
        }
        AdminOp::Delete { global, name } => {
            let scope = admin_scope(access, global)?;
            require_roles(access, global, &[roles::ADMIN])?;
            let deleted = store.delete(&scope, &name).map_err(secret_error)?;
            let outcome = if deleted { "deleted" } else { "missing" };
            log.info(
                "secret.delete",
                json!({ "by": by, "scope": scope.kind(), "name": name, "outcome": outcome }),
            );
            if deleted {
                Ok(Response::no_content())
            } else {
                Err(ApiError::NotFound)
            }
        }
    }
}

/// One budgeted step of deleting a tenant's secrets, with one audit line
/// (counts only).
fn forget_tenant(
    tenant: &TenantId,
    teams: &BTreeSet<String>,
    host: &dyn Host,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    log.set_tenant(tenant);
    let kv = host.open_store(STORE_LABEL)?;
    let mut budget = Budget::new(OFFBOARD_BUDGET);
    let (removed, done) = SecretStore::new(kv.as_ref())
        .forget_tenant(tenant, teams, &mut budget)
        .map_err(secret_error)?;
    log.info(
        "secret.forget-tenant",
        json!({ "removed": removed, "more": !done }),
    );
    Ok(Response::json(
        200,
        &json!({ "removed": removed, "more": !done }),
    ))
}

fn internal(
    call: InternalCall,
    req: &Request,
    host: &dyn Host,
    log: &mut RequestLog,
) -> Result<Response, ApiError> {
    let InternalCall { ctx, name, verify } = call;
    log.set_scope(&ctx);
    // Informational only: in-app callers are trusted by construction (chaining).
    let by = req
        .header(CALLER_HEADER)
        .ok()
        .flatten()
        .filter(|c| greentic::tenancy::ids::validate_id(IdKind::Channel, c).is_ok());
    let keys = master_keys(host)?;
    let shared = shared_globals(host)?;
    let kv = host.open_store(STORE_LABEL)?;
    let store = SecretStore::new(kv.as_ref());
    // An empty value (stored before values were checked) verifies nothing
    // and is no credential: it counts as missing, so the caller refuses.
    let found = store
        .resolve(&keys, &ctx, &name, &shared, &nonces(host))
        .map_err(secret_error)?
        .filter(|r| !r.value.is_empty());
    match verify {
        None => {
            let outcome = found.as_ref().map_or("missing", |r| r.scope);
            log.info(
                "secret.resolve",
                json!({ "by": by, "name": name, "outcome": outcome }),
            );
            let found = found.ok_or(ApiError::NotFound)?;
            Ok(Response::json(
                200,
                &json!({ "value": String::from_utf8_lossy(&found.value), "scope": found.scope }),
            ))
        }
        Some((message, mac)) => {
            let valid = found
                .as_ref()
                .map(|r| hmac_sha256_matches(&r.value, &message, &mac));
            let outcome = match valid {
                None => "missing",
                Some(true) => "valid",
                Some(false) => "invalid",
            };
            log.info(
                "secret.verify",
                json!({ "by": by, "name": name, "outcome": outcome }),
            );
            let valid = valid.ok_or(ApiError::NotFound)?;
            Ok(Response::json(200, &json!({ "valid": valid })))
        }
    }
}

fn master_keys(host: &dyn Host) -> Result<MasterKeys, ApiError> {
    MasterKeys::from_variables(|name| host.variable(name))
}

fn shared_globals(host: &dyn Host) -> Result<Vec<SecretName>, ApiError> {
    host.variable(VAR_SHARED_GLOBAL)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            SecretName::parse(n).map_err(|_| {
                ApiError::NotConfigured(format!("{VAR_SHARED_GLOBAL} holds an invalid secret name"))
            })
        })
        .collect()
}

/// Fresh nonces from the host's randomness, one per seal.
fn nonces(host: &dyn Host) -> impl Fn() -> [u8; NONCE_LEN] + '_ {
    move || {
        let mut nonce = [0u8; NONCE_LEN];
        host.random(&mut nonce);
        nonce
    }
}

fn secret_error(e: SecretError) -> ApiError {
    match e {
        SecretError::Kv(kv) => kv.into(),
        SecretError::TooLarge => ApiError::BadRequest(e.to_string()),
        SecretError::InvalidCursor => ApiError::BadRequest(e.to_string()),
        SecretError::Unreadable { .. } => ApiError::Internal(e.to_string()),
    }
}

fn rfc3339(ms: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

fn meta_json(meta: &SecretMeta) -> Value {
    json!({
        "name": meta.name,
        "scope": meta.scope,
        "size": meta.size,
        "key_id": meta.key_id,
        "created_at": rfc3339(meta.created_at_ms),
        "updated_at": rfc3339(meta.updated_at_ms),
        "updated_by": meta.updated_by,
    })
}
