//! Fixtures for the end-to-end tests: the tenant matrix, a platform with
//! sessions seeded across it, the secrets broker, and one way to call them,
//! each on either [`Target`]: the handlers natively, or the release wasm
//! build under spin-test-host (see [`wasm`]).

pub mod wasm;

use std::borrow::Borrow;
use std::sync::Arc;

use greentic::TenantCtx;
use greentic::http::{Request, Response};
use greentic::secrets::client::{BrokerClient, SecretsClient, SecretsClientError};
use greentic::store::kv::TestKv;
use greentic::store::sessions::SessionStore;
use greentic::tenancy::ids::{SecretName, SessionId};
use greentic::testing::{MemoryHost, TokenBuilder};
use spin_test_host::SpinApp;

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

/// Where the components run: their handlers natively on a [`MemoryHost`],
/// or their release wasm build under spin-test-host, as Spin runs them, with
/// the stores in memory (as `spin up` with SQLite) or on a real redis-server
/// (as SpinKube with deploy/runtime-config.redis.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Native,
    Wasm,
    WasmOnRedis,
}

impl Target {
    /// Requests go through an HTTP server (Spin's), which refuses some
    /// malformed ones before any component sees them.
    pub fn is_wasm(self) -> bool {
        matches!(self, Target::Wasm | Target::WasmOnRedis)
    }
}

/// Defines one `#[test]` per target for each test body (a `fn(Target)`):
/// `native::name`, `wasm::name` and `wasm_on_redis::name`, so the same
/// assertions hold on all three.
#[macro_export]
macro_rules! on_every_target {
    ($($test:ident),+ $(,)?) => {
        $crate::one_test_per_case!(
            native => $crate::Target::Native,
            wasm => $crate::Target::Wasm,
            wasm_on_redis => $crate::Target::WasmOnRedis;
            [$($test),+]
        );
    };
}

/// What [`on_every_target!`] and [`on_every_store!`] expand to: a module per
/// case, in it a `#[test]` per body calling the body with that case.
#[doc(hidden)]
#[macro_export]
macro_rules! one_test_per_case {
    ($($module:ident => $case:expr),+ ; $tests:tt) => {
        $($crate::one_test_per_case!(@module $module, $case, $tests);)+
    };
    (@module $module:ident, $case:expr, [$($test:ident),+]) => {
        mod $module {
            $(#[test]
            fn $test() {
                super::$test($case)
            })+
        }
    };
}

/// Where a native test keeps its stores: in memory, or each store in a
/// database of its own on a real redis-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stores {
    Memory,
    Redis,
}

impl Stores {
    /// An empty store for `label`.
    pub fn open(self, label: &str) -> TestKv {
        match self {
            Stores::Memory => TestKv::new(),
            Stores::Redis => greentic_harness::redis::fresh_store(label),
        }
    }

    /// A host whose component declared exactly `labels`, its stores here.
    pub fn host(self, labels: &[&str]) -> MemoryHost {
        MemoryHost::with_stores(labels, |label| self.open(label))
    }
}

/// Defines one `#[test]` per [`Stores`] for each native test body (a
/// `fn(Stores)`): `in_memory::name` and `on_redis::name`.
#[macro_export]
macro_rules! on_every_store {
    ($($test:ident),+ $(,)?) => {
        $crate::one_test_per_case!(
            in_memory => $crate::Stores::Memory,
            on_redis => $crate::Stores::Redis;
            [$($test),+]
        );
    };
}

enum Backend<H> {
    Native(H),
    Wasm(Box<SpinApp>),
}

/// The session API with [`PER_SCOPE`] sessions in every scope of the matrix
/// (or none), on either target.
pub struct Platform {
    backend: Backend<MemoryHost>,
    now_ms: i64,
    /// Every seeded session with the scope it lives in.
    pub sessions: Vec<(TenantCtx, SessionId)>,
}

impl Platform {
    pub fn empty(target: Target) -> Self {
        Platform {
            backend: match target {
                Target::Native => Backend::Native(MemoryHost::new(&[
                    session_api::STORE_LABEL,
                    greentic::service::limits::STORE_LABEL,
                    greentic::store::webchat_log::STORE_LABEL,
                    greentic::messaging::egress::STORE_LABEL,
                ])),
                target => Backend::Wasm(Box::new(wasm::app_on(target))),
            },
            now_ms: NOW_SECS as i64 * 1000,
            sessions: Vec::new(),
        }
    }

    pub fn seeded(target: Target) -> Self {
        let mut platform = Platform::empty(target);
        for ctx in every_scope() {
            for i in 0..PER_SCOPE {
                platform.add_session(&ctx, "slack", &format!("U{i}"));
            }
        }
        platform
    }

    /// Creates a session directly in the store, as the flow executor does.
    pub fn add_session(&mut self, ctx: &TenantCtx, channel: &str, user: &str) -> SessionId {
        let store = SessionStore::new(self.kv());
        let new = greentic::testing::new_session(channel, user);
        let id = store.create(ctx, new, self.now_ms).unwrap().id;
        self.sessions.push((ctx.clone(), id.clone()));
        id
    }

    pub fn kv(&self) -> &TestKv {
        self.store(session_api::STORE_LABEL)
    }

    /// One of the session API's stores (sessions, limits, webchat, egress, config).
    pub fn store(&self, label: &str) -> &TestKv {
        match &self.backend {
            Backend::Native(host) => host.store(label),
            Backend::Wasm(app) => app.store(label),
        }
    }

    /// Moves the clock of the fixtures and of the component.
    pub fn set_now_ms(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        match &self.backend {
            Backend::Native(host) => host.set_now_ms(now_ms),
            Backend::Wasm(app) => {
                let since_epoch = std::time::Duration::from_millis(now_ms as u64);
                app.set_wall_clock(std::time::UNIX_EPOCH + since_epoch);
            }
        }
    }

    /// Sets a Spin variable; in wasm by restarting the app over the same stores.
    pub fn set_variable(&mut self, name: &str, value: &str) {
        set_variable(&mut self.backend, name, value);
    }

    /// The component's log lines.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        logs(&self.backend)
    }

    pub fn raw_logs(&self) -> String {
        raw_logs(&self.backend)
    }

    pub fn sessions_in(&self, pred: impl Fn(&TenantCtx) -> bool) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|(c, _)| pred(c))
            .map(|(_, id)| id.clone())
            .collect()
    }

    pub fn call(&self, req: Request) -> Response {
        match &self.backend {
            Backend::Native(host) => session_api::handle(&req, host),
            Backend::Wasm(app) => app.send(req),
        }
    }

    /// Follows `X-Next-Cursor` through `/api/v1/export` pages of `limit`:
    /// every NDJSON line, parsed.
    pub fn export_all(&self, call: &Call, limit: usize) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/export?limit={limit}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = self.call(call.request("GET", &path));
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
            let text = String::from_utf8(r.body.clone()).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'));
            lines.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
            match r.header("x-next-cursor") {
                Some(next) => cursor = Some(next.to_owned()),
                None => return lines,
            }
        }
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

fn set_variable<H: Borrow<MemoryHost>>(backend: &mut Backend<H>, name: &str, value: &str) {
    match backend {
        Backend::Native(host) => Borrow::<MemoryHost>::borrow(host).set_variable(name, value),
        Backend::Wasm(app) => app
            .restart_with_variable(name, value)
            .unwrap_or_else(|e| panic!("cannot restart with {name}: {e:#}")),
    }
}

fn logs<H: Borrow<MemoryHost>>(backend: &Backend<H>) -> Vec<serde_json::Value> {
    match backend {
        Backend::Native(host) => host.borrow().logs(),
        Backend::Wasm(app) => wasm::logs(app),
    }
}

fn raw_logs<H: Borrow<MemoryHost>>(backend: &Backend<H>) -> String {
    match backend {
        Backend::Native(host) => host.borrow().raw_logs(),
        Backend::Wasm(app) => app.logs().join("\n"),
    }
}

/// The tenant API beside the components that read what it writes: requests
/// under `/api/v1/tenants` go to the tenant API, `/api/v1/sessions` and
/// `/api/v1/usage` to the session API, `/webhooks` to ingress, on either target.
pub struct Console {
    backend: Backend<MemoryHost>,
}

/// The tenant of the platform operator's tokens in these tests.
pub const OPERATOR: &str = "ops";

impl Console {
    pub fn on(target: Target) -> Self {
        Console {
            backend: match target {
                Target::Native => Backend::Native(MemoryHost::new(&[
                    session_api::STORE_LABEL,
                    greentic::service::limits::STORE_LABEL,
                    "cache",
                ])),
                target => Backend::Wasm(Box::new(wasm::app_on(target))),
            },
        }
    }

    /// The `config` store, holding the demo's tenants to begin with.
    pub fn config(&self) -> &TestKv {
        match &self.backend {
            Backend::Native(host) => host.store(greentic::store::config::STORE_LABEL),
            Backend::Wasm(app) => app.store(greentic::store::config::STORE_LABEL),
        }
    }

    pub fn call(&self, req: Request) -> Response {
        match &self.backend {
            Backend::Native(host) if req.path.starts_with("/api/v1/tenants") => {
                tenant_api::handle(&req, host)
            }
            Backend::Native(host) if req.path.starts_with("/webhooks/") => {
                ingress::handle(&req, host)
            }
            Backend::Native(host) => session_api::handle(&req, host),
            Backend::Wasm(app) => app.send(req),
        }
    }

    pub fn logs(&self) -> Vec<serde_json::Value> {
        logs(&self.backend)
    }
}

/// A platform operator's token (role `platform-admin`, tenant [`OPERATOR`]).
pub fn operator() -> Call {
    Call::with(&token(OPERATOR, "prod").roles(&["platform-admin"]))
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

/// One string field of every item of a page (`{"items": [...]}`).
pub fn item_fields(page: &serde_json::Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|item| item[field].as_str().unwrap_or_default().to_owned())
        .collect()
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

/// The secrets broker with the test master key and `signing_key` as the one
/// platform-wide secret components may resolve, on either target.
pub struct Broker {
    backend: Backend<Arc<MemoryHost>>,
    /// Chained calls served to the hosts of [`Broker::component_host_on`].
    chained: Arc<std::sync::atomic::AtomicUsize>,
}

impl Broker {
    /// The broker's handler on a memory host.
    pub fn new() -> Self {
        Broker::on(Target::Native)
    }

    pub fn on(target: Target) -> Self {
        let backend = match target {
            Target::Native => {
                let host = MemoryHost::new(&[
                    greentic::secrets::STORE_LABEL,
                    greentic::service::limits::STORE_LABEL,
                ]);
                host.set_variable(
                    greentic::secrets::crypto::VAR_MASTER_KEY,
                    greentic::testing::TEST_MASTER_KEY,
                );
                host.set_variable(secrets_broker::api::VAR_SHARED_GLOBAL, "signing_key");
                Backend::Native(Arc::new(host))
            }
            target => Backend::Wasm(Box::new(wasm::app_on(target))),
        };
        Broker {
            backend,
            chained: Arc::default(),
        }
    }

    /// How many chained calls the components of [`Broker::component_host_on`]
    /// have made to the broker.
    pub fn chained_calls(&self) -> usize {
        self.chained.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn kv(&self) -> &TestKv {
        match &self.backend {
            Backend::Native(host) => host.store(greentic::secrets::STORE_LABEL),
            Backend::Wasm(app) => app.store(greentic::secrets::STORE_LABEL),
        }
    }

    /// A request from outside (the admin API).
    pub fn call(&self, req: Request) -> Response {
        match &self.backend {
            Backend::Native(host) => secrets_broker::handle(&req, host.as_ref()),
            Backend::Wasm(app) => app.send(req),
        }
    }

    /// A request from another component of the app (service chaining).
    pub fn call_internal(&self, req: Request) -> Response {
        match &self.backend {
            Backend::Native(host) => secrets_broker::handle(&req, host.as_ref()),
            Backend::Wasm(app) => app.send_chained(secrets_broker::COMPONENT, req),
        }
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

    /// The broker as a component allowed to chain to it sees it.
    pub fn client(&self) -> Caller<'_> {
        Caller {
            broker: self,
            reachable: true,
        }
    }

    /// The broker as a component without it in `allowed_outbound_hosts` sees it.
    pub fn unreachable_client(&self) -> Caller<'_> {
        Caller {
            broker: self,
            reachable: false,
        }
    }

    /// A host for another component that reaches this broker by service
    /// chaining (native only: in wasm, components are the app's own), its
    /// stores in memory.
    pub fn component_host(&self, labels: &[&str]) -> MemoryHost {
        self.component_host_on(labels, Stores::Memory)
    }

    /// [`Broker::component_host`] with its stores where `stores` keeps them.
    pub fn component_host_on(&self, labels: &[&str], stores: Stores) -> MemoryHost {
        let Backend::Native(host) = &self.backend else {
            panic!("component_host is for native tests; in wasm use Broker::client");
        };
        let caller = stores.host(labels);
        let (broker, chained) = (host.clone(), self.chained.clone());
        caller.serve_internal(
            secrets_broker::COMPONENT,
            Arc::new(move |req| {
                chained.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                secrets_broker::handle(req, broker.as_ref())
            }),
        );
        caller
    }

    /// Sets a Spin variable; in wasm by restarting the app over the same stores.
    pub fn set_variable(&mut self, name: &str, value: &str) {
        set_variable(&mut self.backend, name, value);
    }

    pub fn logs(&self) -> Vec<serde_json::Value> {
        logs(&self.backend)
    }

    pub fn raw_logs(&self) -> String {
        raw_logs(&self.backend)
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

/// A component calling the broker through [`BrokerClient`]: natively on a
/// memory host, in wasm from the probe component.
pub struct Caller<'b> {
    broker: &'b Broker,
    reachable: bool,
}

impl Caller<'_> {
    fn native<T>(&self, call: impl FnOnce(&BrokerClient) -> T) -> Option<T> {
        let Backend::Native(_) = &self.broker.backend else {
            return None;
        };
        let host = if self.reachable {
            self.broker.component_host(&[])
        } else {
            MemoryHost::new(&[])
        };
        Some(call(&BrokerClient::new(&host, "ingress")))
    }

    fn wasm(
        &self,
        ctx: &TenantCtx,
        name: &SecretName,
        verify: Option<(&[u8], &[u8])>,
    ) -> Result<serde_json::Value, SecretsClientError> {
        let Backend::Wasm(app) = &self.broker.backend else {
            unreachable!("native calls are served by `native`");
        };
        let route = if self.reachable {
            wasm::ALLOWED_CALLER
        } else {
            wasm::ISOLATED_CALLER
        };
        wasm::call_broker(app, route, ctx, name, verify)
    }
}

impl SecretsClient for Caller<'_> {
    fn resolve(&self, ctx: &TenantCtx, name: &SecretName) -> Result<Vec<u8>, SecretsClientError> {
        if let Some(native) = self.native(|client| client.resolve(ctx, name)) {
            return native;
        }
        let answer = self.wasm(ctx, name, None)?;
        Ok(answer["value"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec())
    }

    fn verify_hmac_sha256(
        &self,
        ctx: &TenantCtx,
        name: &SecretName,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretsClientError> {
        if let Some(native) =
            self.native(|client| client.verify_hmac_sha256(ctx, name, message, mac))
        {
            return native;
        }
        let answer = self.wasm(ctx, name, Some((message, mac)))?;
        Ok(answer["valid"].as_bool().expect("a verdict"))
    }
}

/// `{"value": value}`
pub fn json_value(value: &str) -> Vec<u8> {
    serde_json::json!({ "value": value })
        .to_string()
        .into_bytes()
}

/// Defines one `#[test]` per [`greentic_harness::spin_up::Kv`] for each test body (a `fn(Kv)`):
/// `on_sqlite::name` and `on_redis::name`.
#[macro_export]
macro_rules! on_real_spin {
    ($($test:ident),+ $(,)?) => {
        $crate::one_test_per_case!(
            on_sqlite => greentic_harness::spin_up::Kv::Sqlite,
            on_redis => greentic_harness::spin_up::Kv::Redis;
            [$($test),+]
        );
    };
}
