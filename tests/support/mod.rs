//! Fixtures for the end-to-end tests: the tenant matrix, a platform with
//! sessions seeded across it, and one way to call the session API.

use greentic::TenantCtx;
use greentic::http::{Request, Response};
use greentic::session::SessionId;
use greentic::session_store::SessionStore;
use greentic::testing::{MemoryHost, TokenBuilder};

pub use greentic::testing::{NOW_SECS, UNSAFE_IDS, token};

/// The scopes of the matrix: the seed's tenants, two environments each, and
/// two teams each plus sessions with no team.
pub const TENANTS: &[&str] = &["acme", "bigcorp"];
pub const ENVS: &[&str] = &["prod", "staging"];
pub const TEAMS: &[Option<&str>] = &[Some("support"), Some("sales"), None];

/// Sessions created per scope.
pub const PER_SCOPE: usize = 3;

pub fn every_scope() -> Vec<TenantCtx> {
    let mut scopes = Vec::new();
    for tenant in TENANTS {
        for env in ENVS {
            for team in TEAMS {
                scopes.push(TenantCtx::new(tenant, env, *team).unwrap());
            }
        }
    }
    scopes
}

/// A session API host with [`PER_SCOPE`] sessions in every scope of the matrix.
pub struct Platform {
    pub host: MemoryHost,
    /// Every seeded session with the scope it lives in.
    pub sessions: Vec<(TenantCtx, SessionId)>,
}

impl Platform {
    pub fn empty() -> Self {
        Platform {
            host: MemoryHost::new(&[session_api::STORE_LABEL]),
            sessions: Vec::new(),
        }
    }

    pub fn seeded() -> Self {
        let mut platform = Platform::empty();
        for ctx in every_scope() {
            for i in 0..PER_SCOPE {
                platform.add_session(&ctx, "slack", &format!("U{i}"));
            }
        }
        platform
    }

    pub fn add_session(&mut self, ctx: &TenantCtx, channel: &str, user: &str) -> SessionId {
        let store = SessionStore::new(self.kv());
        let new = greentic::testing::new_session(channel, user);
        let id = store.create(ctx, new, self.host_now_ms()).unwrap().id;
        self.sessions.push((ctx.clone(), id.clone()));
        id
    }

    pub fn kv(&self) -> &greentic::kv::MemoryKv {
        self.host.store(session_api::STORE_LABEL)
    }

    fn host_now_ms(&self) -> i64 {
        use greentic::host::Host;
        self.host.now_ms()
    }

    pub fn sessions_in(&self, pred: impl Fn(&TenantCtx) -> bool) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|(c, _)| pred(c))
            .map(|(_, id)| id.clone())
            .collect()
    }

    pub fn call(&self, req: Request) -> Response {
        session_api::handle(&req, &self.host)
    }

    /// Follows `next_cursor` to the end and returns every listed session id.
    pub fn list_all(&self, base: &Call, page: usize) -> Result<Vec<String>, Response> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/sessions?limit={page}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let response = self.call(base.request("GET", &path));
            if response.status != 200 {
                return Err(response);
            }
            let body = response.json_body();
            ids.extend(
                body["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["id"].as_str().unwrap().to_owned()),
            );
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(ids),
            }
        }
    }
}

/// Who calls and which scope headers they send.
#[derive(Clone)]
pub struct Call {
    pub token: Option<String>,
    pub tenant: Option<String>,
    pub env: Option<String>,
    pub team: Option<String>,
}

impl Call {
    /// A caller holding `token`, asking for its own tenant (no env or team header).
    pub fn with(token: &TokenBuilder) -> Self {
        Call {
            token: Some(token.mint()),
            tenant: Some(token.claims.tenant.clone()),
            env: None,
            team: None,
        }
    }

    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    pub fn env(mut self, env: &str) -> Self {
        self.env = Some(env.into());
        self
    }

    pub fn team(mut self, team: &str) -> Self {
        self.team = Some(team.into());
        self
    }

    pub fn request(&self, method: &str, path: &str) -> Request {
        let mut req = Request::new(method, path);
        if let Some(t) = &self.token {
            req = req.with_header("authorization", format!("Bearer {t}"));
        }
        for (name, value) in [
            ("x-tenant-id", &self.tenant),
            ("x-env-id", &self.env),
            ("x-team-id", &self.team),
        ] {
            if let Some(v) = value {
                req = req.with_header(name, v);
            }
        }
        req
    }
}

/// Asserts an RFC 9457 problem with `status` and problem type `slug`.
#[track_caller]
pub fn assert_problem(response: &Response, status: u16, slug: &str) {
    let body = response.json_body();
    assert_eq!(
        (response.status, body["type"].as_str()),
        (
            status,
            Some(format!("urn:greentic:problem:{slug}").as_str())
        ),
        "body: {body}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
}

/// The secrets broker on a memory host, with the test master key and
/// `signing_key` as the one platform-wide secret components may resolve.
pub struct Broker {
    pub host: std::sync::Arc<MemoryHost>,
}

impl Broker {
    pub fn new() -> Self {
        let host = MemoryHost::new(&[greentic::secrets::STORE_LABEL]);
        host.set_variable(
            greentic::secrets::crypto::VAR_MASTER_KEY,
            greentic::testing::TEST_MASTER_KEY,
        );
        host.set_variable(secrets_broker::api::VAR_SHARED_GLOBAL, "signing_key");
        Broker {
            host: std::sync::Arc::new(host),
        }
    }

    pub fn kv(&self) -> &greentic::kv::MemoryKv {
        self.host.store(greentic::secrets::STORE_LABEL)
    }

    pub fn call(&self, req: Request) -> Response {
        secrets_broker::handle(&req, self.host.as_ref())
    }

    /// `PUT /api/v1/secrets/{name}` as `call`; panics unless it succeeds.
    pub fn put(&self, call: &Call, name: &str, value: &str) {
        let r = self.call(
            call.request("PUT", &format!("/api/v1/secrets/{name}"))
                .with_body(json_value(value)),
        );
        assert!(
            matches!(r.status, 200 | 201),
            "put {name}: {} {}",
            r.status,
            r.json_body()
        );
    }

    /// A host for another component that reaches this broker by service chaining.
    pub fn component_host(&self, labels: &[&str]) -> MemoryHost {
        let caller = MemoryHost::new(labels);
        let broker = self.host.clone();
        caller.serve_internal(
            "secrets-broker",
            std::sync::Arc::new(move |req| secrets_broker::handle(req, broker.as_ref())),
        );
        caller
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

/// `{"value": value}`
pub fn json_value(value: &str) -> Vec<u8> {
    serde_json::json!({ "value": value })
        .to_string()
        .into_bytes()
}
