//! Tenant-scoped structured logging: one JSON line per event.
//!
//! Every line carries `component`, `request_id`, `tenant`, `env` and `team`
//! (null until the request's [`TenantCtx`] is resolved, e.g. for a request
//! refused for a malformed id), so one tenant's activity can be followed and
//! counted. Callers pass only what is safe to keep: statuses, ids, counts, outcome
//! names. Never a token, a secret or a message text; there is deliberately no
//! way to log a request's headers or body.

use serde_json::{Map, Value, json};

use crate::host::Host;
use crate::tenancy::ids::{TenantCtx, TenantId};

pub struct RequestLog<'h> {
    host: &'h dyn Host,
    component: &'static str,
    request_id: String,
    scope: Option<TenantCtx>,
    /// The tenant of an operation on a whole tenant (no env, no team).
    tenant: Option<String>,
}

impl<'h> RequestLog<'h> {
    pub fn new(host: &'h dyn Host, component: &'static str, request_id: String) -> Self {
        RequestLog {
            host,
            component,
            request_id,
            scope: None,
            tenant: None,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// From now on every line carries this tenant, env and team.
    pub fn set_scope(&mut self, ctx: &TenantCtx) {
        self.scope = Some(ctx.clone());
    }

    /// For an operation on a whole tenant: lines carry the tenant, and
    /// null env and team.
    pub fn set_tenant(&mut self, tenant: &TenantId) {
        self.tenant = Some(tenant.as_str().to_owned());
    }

    pub fn info(&self, event: &str, fields: Value) {
        self.write("info", event, fields);
    }

    pub fn warn(&self, event: &str, fields: Value) {
        self.write("warn", event, fields);
    }

    fn write(&self, level: &str, event: &str, fields: Value) {
        let scope = self.scope.as_ref();
        let mut line = Map::new();
        line.insert("ts_ms".into(), json!(self.host.now_ms()));
        line.insert("level".into(), json!(level));
        line.insert("component".into(), json!(self.component));
        line.insert("request_id".into(), json!(self.request_id));
        let tenant = scope.map(|c| c.tenant_id()).or(self.tenant.as_deref());
        line.insert("tenant".into(), json!(tenant));
        line.insert("env".into(), json!(scope.map(|c| c.env_id())));
        line.insert("team".into(), json!(scope.map(|c| c.team_token())));
        line.insert("event".into(), json!(event));
        if let Value::Object(extra) = fields {
            for (k, v) in extra {
                line.entry(k).or_insert(v);
            }
        }
        self.host.log(&Value::Object(line).to_string());
    }
}

/// The caller's `X-Request-ID` when it is a plain token (so it cannot forge
/// log structure), otherwise a fresh random one.
pub fn request_id(supplied: Option<&str>, host: &dyn Host) -> String {
    match supplied {
        Some(id)
            if (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            id.to_owned()
        }
        _ => {
            let mut bytes = [0u8; 16];
            host.random(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}
