//! Test fixtures shared by every crate's tests (feature `testing`): an
//! in-memory host, the unsafe ids every boundary must refuse, test-only keys and
//! a token builder. One builder per fixture kind, so tests read as specifications.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::flows::control::{Author, ControlPlane, IfMatch, TenantDocument};
use crate::host::{Host, OutboundError};
use crate::http::{Request, Response};
use crate::service::auth::{self, Claims};
use crate::store::kv::{KeyValue, KvError, TestKv};
use crate::store::offboard::TenantStores;
use crate::store::sessions::SessionStore;
use crate::store::teams::TeamRegistry;
use crate::store::webchat_log::{Activity, ConversationLog, Participant};
use crate::store::{people, rate};
use crate::tenancy::ids::{
    ChannelId, Conversation, ConversationId, Counter, Day, TenantCtx, TenantId,
};
use crate::tenancy::keys as key;

/// Ids every id position (path segment, header, claim, bundle key) must refuse:
/// key and subject separators, NATS wildcards, traversal, case, padding,
/// emptiness, non-ASCII and control characters. Too long is added by callers
/// that can build it (`"a".repeat(64)`).
pub const UNSAFE_IDS: &[&str] = &[
    "acme.prod",
    "*",
    ">",
    "a:b",
    "../x",
    "a/b",
    "ACME",
    "Acme",
    "",
    " acme",
    "acme ",
    "_acme",
    "-acme",
    "acmé",
    "ａcme",
    "a\u{0}b",
    "a\nb",
    "a%2fb",
];

/// The development signing secret tests configure (never a deployment's).
pub const TEST_HS256_SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
pub const TEST_ISSUER: &str = "greentic-dev";
pub const TEST_AUDIENCE: &str = "greentic";

/// The secrets broker's master key in tests (`k1`, 32 bytes), and a second one
/// for rotation tests. Never a deployment's.
pub const TEST_MASTER_KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const TEST_MASTER_KEY_2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// Test-only key pairs (see `testing/keys/README.md`).
pub mod keys {
    pub const RSA_PRIVATE: &str = include_str!("testing/keys/test-rsa-private.pem");
    pub const RSA_PUBLIC: &str = include_str!("testing/keys/test-rsa-public.pem");
    pub const RSA_OTHER_PRIVATE: &str = include_str!("testing/keys/test-rsa-other-private.pem");
    pub const EC_PRIVATE: &str = include_str!("testing/keys/test-ec-private.pem");
    pub const EC_PUBLIC: &str = include_str!("testing/keys/test-ec-public.pem");
    pub const ED25519_PRIVATE: &str = include_str!("testing/keys/test-ed25519-private.pem");
    pub const ED25519_PUBLIC: &str = include_str!("testing/keys/test-ed25519-public.pem");
}

/// A new Slack session of `user` in conversation `C1` of `channel`, no flow yet.
pub fn new_session(channel: &str, user: &str) -> crate::store::session::NewSession {
    crate::store::session::NewSession {
        channel: crate::tenancy::ids::ChannelId::parse(channel)
            .expect("test channels are valid ids"),
        provider: "messaging-slack".into(),
        conversation: crate::tenancy::ids::Conversation {
            id: "C1".into(),
            thread: None,
        },
        user_id: user.into(),
        flow: None,
    }
}

/// A bot's message in a web chat conversation's log, as egress appends one.
pub fn bot_activity(id: &str, text: &str) -> Activity {
    Activity {
        id: id.into(),
        kind: "message".into(),
        from: Participant {
            id: "bot".into(),
            name: None,
            role: "bot".into(),
        },
        text: text.into(),
        timestamp: "2026-11-28T12:00:00Z".into(),
        reply_to_id: None,
    }
}

/// A fixed "now" for tests, in Unix seconds (2026-11-28T12:00:00Z).
pub const NOW_SECS: u64 = 1_795_867_200;

/// Builds the claims of a test token; `.mint()` signs it with the test secret.
#[derive(Debug, Clone)]
pub struct TokenBuilder {
    pub claims: Claims,
}

pub fn token(tenant: &str, env: &str) -> TokenBuilder {
    TokenBuilder {
        claims: Claims {
            sub: format!("user@{tenant}"),
            tenant: tenant.into(),
            env: env.into(),
            teams: None,
            roles: Vec::new(),
            exp: NOW_SECS + 3600,
            nbf: None,
            iat: Some(NOW_SECS),
        },
    }
}

impl TokenBuilder {
    pub fn teams(mut self, teams: &[&str]) -> Self {
        self.claims.teams = Some(teams.iter().map(|t| t.to_string()).collect());
        self
    }

    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.claims.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    pub fn mint(&self) -> String {
        auth::mint_hs256(
            TEST_HS256_SECRET.as_bytes(),
            TEST_ISSUER,
            TEST_AUDIENCE,
            &self.claims,
        )
        .expect("test claims always sign")
    }

    /// `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.mint())
    }
}

/// How a test serves another component's requests in process.
pub type InternalHandler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A host in memory: declared stores, variables, a settable clock, captured
/// logs, and other components reachable as `http://{name}.spin.internal`.
pub struct MemoryHost {
    /// Reachable servers by base URL (`http://{component}.spin.internal`, or
    /// an outside service such as the bridge).
    internal: Mutex<BTreeMap<String, InternalHandler>>,
    stores: BTreeMap<String, TestKv>,
    variables: Mutex<BTreeMap<String, String>>,
    now_ms: AtomicI64,
    random_counter: AtomicU64,
    logs: Mutex<Vec<String>>,
}

impl MemoryHost {
    /// A host whose component declared `labels` and the `config` store (the
    /// demo bundle's tenants applied to it), with the auth variables set to
    /// the test issuer, audience and secret.
    pub fn new(labels: &[&str]) -> Self {
        Self::with_stores(labels, |_| TestKv::new())
    }

    /// [`MemoryHost::new`] with each store made by `open` (e.g. over Redis).
    pub fn with_stores(labels: &[&str], open: impl Fn(&str) -> TestKv) -> Self {
        let host = MemoryHost {
            internal: Mutex::new(BTreeMap::new()),
            stores: labels
                .iter()
                .chain(&[crate::store::config::STORE_LABEL])
                .map(|l| (l.to_string(), open(l)))
                .collect(),
            variables: Mutex::new(BTreeMap::new()),
            now_ms: AtomicI64::new(NOW_SECS as i64 * 1000),
            random_counter: AtomicU64::new(0),
            logs: Mutex::new(Vec::new()),
        };
        host.set_variable(auth::VAR_ISSUER, TEST_ISSUER);
        host.set_variable(auth::VAR_AUDIENCE, TEST_AUDIENCE);
        host.set_variable(auth::VAR_HS256_SECRET, TEST_HS256_SECRET);
        apply_demo(host.store(crate::store::config::STORE_LABEL));
        host
    }

    /// Makes `component` reachable at `http://{component}.spin.internal`.
    pub fn serve_internal(&self, component: &str, handler: InternalHandler) {
        self.serve_url(&format!("http://{component}.spin.internal"), handler);
    }

    /// Makes an outside service reachable at `base_url` (as if it were in the
    /// component's `allowed_outbound_hosts`).
    pub fn serve_url(&self, base_url: &str, handler: InternalHandler) {
        self.internal
            .lock()
            .unwrap()
            .insert(base_url.to_owned(), handler);
    }

    /// Changes tenant `id`'s configuration as its admin would: `edit` gets
    /// the current document, the result is checked and applied as a new version.
    pub fn update_tenant(&self, id: &str, edit: impl FnOnce(&mut TenantDocument)) {
        update_tenant(self.store(crate::store::config::STORE_LABEL), id, edit);
    }

    pub fn store(&self, label: &str) -> &TestKv {
        self.stores
            .get(label)
            .unwrap_or_else(|| panic!("store {label} is not declared"))
    }

    pub fn set_variable(&self, name: &str, value: &str) {
        self.variables
            .lock()
            .unwrap()
            .insert(name.into(), value.into());
    }

    pub fn set_now_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Every log line written so far, parsed.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).expect("log lines are JSON"))
            .collect()
    }

    pub fn raw_logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Host for MemoryHost {
    fn open_store(&self, label: &str) -> Result<Box<dyn KeyValue + '_>, KvError> {
        match self.stores.get(label) {
            Some(kv) => Ok(Box::new(kv)),
            None => Err(KvError::AccessDenied(label.into())),
        }
    }

    fn variable(&self, name: &str) -> Option<String> {
        self.variables.lock().unwrap().get(name).cloned()
    }

    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    fn log(&self, line: &str) {
        self.logs.lock().unwrap().push(line.to_owned());
    }

    fn random(&self, buf: &mut [u8]) {
        let n = self
            .random_counter
            .fetch_add(1, Ordering::Relaxed)
            .to_be_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = n[i % 8];
        }
    }

    /// Only registered components are reachable; anything else is refused,
    /// as Spin refuses a host missing from `allowed_outbound_hosts`.
    fn send(&self, base_url: &str, req: Request) -> Result<Response, OutboundError> {
        let handler = self.internal.lock().unwrap().get(base_url).cloned();
        let handler = handler.ok_or_else(|| OutboundError::Denied(base_url.to_owned()))?;
        Ok(handler(&req))
    }
}

/// `bundles/demo.yaml`, loaded once per test process.
pub fn demo_bundle() -> &'static crate::flows::bundle::LoadedBundle {
    static LOADED: std::sync::OnceLock<crate::flows::bundle::LoadedBundle> =
        std::sync::OnceLock::new();
    LOADED.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bundles/demo.yaml");
        crate::flows::bundle::load(std::path::Path::new(path))
            .unwrap_or_else(|e| panic!("the demo bundle is invalid: {e:?}"))
    })
}

/// Applies every tenant of the demo bundle to a `config` store, as
/// `greentic tenant apply bundles/demo.yaml` does through the API.
pub fn apply_demo(config: &dyn KeyValue) {
    let plane = ControlPlane::new(config);
    for id in demo_bundle().bundle.tenants.keys() {
        let document = TenantDocument::from_bundle(demo_bundle(), id).expect("listed above");
        let tenant = TenantId::parse(id).expect("the demo's ids are valid");
        plane
            .apply(&tenant, document, &platform_author())
            .unwrap_or_else(|e| panic!("cannot apply the demo's tenant {id}: {e}"));
    }
}

/// Changes tenant `id`'s configuration in a `config` store: `edit` gets the
/// current document, the result is checked and applied as a new version.
pub fn update_tenant(config: &dyn KeyValue, id: &str, edit: impl FnOnce(&mut TenantDocument)) {
    let tenant = TenantId::parse(id).expect("test ids are valid");
    let plane = ControlPlane::new(config);
    let mut document = plane
        .store()
        .current::<TenantDocument>(&tenant)
        .expect("the config store reads")
        .expect("the tenant exists")
        .document;
    edit(&mut document);
    plane
        .apply(&tenant, document, &platform_author())
        .unwrap_or_else(|e| panic!("cannot update tenant {id}: {e}"));
}

/// Starts deleting tenant `id` in a `config` store (status `offboarding`),
/// as the tenant API's first step does.
pub fn begin_offboarding(config: &dyn KeyValue, id: &str) {
    let tenant = TenantId::parse(id).expect("test ids are valid");
    ControlPlane::new(config)
        .begin_offboarding(&tenant, &platform_author())
        .unwrap_or_else(|e| panic!("cannot begin deleting {id}: {e}"));
}

/// A platform admin applying configuration, as tests and benchmarks do.
pub fn platform_author() -> Author<'static> {
    Author {
        subject: "demo",
        platform: true,
        now_ms: NOW_SECS as i64 * 1000,
        if_match: IfMatch::Any,
    }
}

/// (tenant, team or none for the tenant itself, secret name)
type ScopedName = (String, Option<String>, String);

/// A stand-in for the secrets broker in a component's native tests: secrets
/// set per exact scope, resolved team first, then tenant, like the broker.
/// End-to-end tests use the real broker through [`MemoryHost::serve_internal`].
#[derive(Default)]
pub struct FakeSecrets {
    values: Mutex<BTreeMap<ScopedName, Vec<u8>>>,
    unavailable: std::sync::atomic::AtomicBool,
}

impl FakeSecrets {
    /// Stores `value` for `ctx`'s team (or its tenant when it has no team).
    pub fn set(&self, ctx: &crate::TenantCtx, name: &str, value: &[u8]) {
        let key = (
            ctx.tenant_id().to_owned(),
            ctx.team_id().map(str::to_owned),
            name.to_owned(),
        );
        self.values.lock().unwrap().insert(key, value.to_vec());
    }

    /// Makes every call fail as an unreachable broker does.
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::Relaxed);
    }
}

impl crate::secrets::client::SecretsClient for FakeSecrets {
    fn resolve(
        &self,
        ctx: &crate::TenantCtx,
        name: &crate::tenancy::ids::SecretName,
    ) -> Result<Vec<u8>, crate::secrets::client::SecretsClientError> {
        use crate::secrets::client::SecretsClientError;
        if self.unavailable.load(Ordering::Relaxed) {
            return Err(SecretsClientError::Unavailable(
                "fake broker is down".into(),
            ));
        }
        let values = self.values.lock().unwrap();
        let lookup = |team: Option<&str>| {
            values.get(&(
                ctx.tenant_id().to_owned(),
                team.map(str::to_owned),
                name.as_str().to_owned(),
            ))
        };
        ctx.team_id()
            .and_then(|team| lookup(Some(team)))
            .or_else(|| lookup(None))
            .cloned()
            .ok_or(SecretsClientError::NotFound)
    }

    fn verify_hmac_sha256(
        &self,
        ctx: &crate::TenantCtx,
        name: &crate::tenancy::ids::SecretName,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, crate::secrets::client::SecretsClientError> {
        let key = self.resolve(ctx, name)?;
        Ok(crate::secrets::client::hmac_sha256_matches(
            &key, message, mac,
        ))
    }
}

/// The bridge's publish endpoint in memory, for components' native tests:
/// checks the publish token, keeps what was published per subject, drops a
/// repeated `Nats-Msg-Id` as JetStream's duplicate window does, purges a
/// tenant's messages (`POST /v1/purge/tenants/{tenant}`), and can be taken
/// down. Serve it at a URL with [`MemoryHost::serve_url`].
#[derive(Default)]
pub struct FakeBridge {
    stored: Mutex<Vec<Published>>,
    down: std::sync::atomic::AtomicBool,
}

/// One message the bridge stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub subject: String,
    pub msg_id: String,
    /// `Greentic-Session` as published; delivered as `X-Greentic-Session`.
    pub session: Option<String>,
    /// `Greentic-Rate` as published: the tenant's inbound messages per minute.
    pub rate: Option<u32>,
    pub payload: Vec<u8>,
}

/// The publish token [`FakeBridge`] accepts.
pub const TEST_BRIDGE_TOKEN: &str = "test-bridge-publish-token-0123456789";
/// The delivery token tests configure for the bridge's pushes.
pub const TEST_DELIVERY_TOKEN: &str = "test-bridge-delivery-token-0123456789";
pub const TEST_BRIDGE_URL: &str = "http://127.0.0.1:4280";

impl FakeBridge {
    /// A bridge reachable from `host` at [`TEST_BRIDGE_URL`], with the
    /// host's bridge variables set to match.
    pub fn serve(host: &MemoryHost) -> Arc<FakeBridge> {
        let bridge = Arc::new(FakeBridge::default());
        let serving = bridge.clone();
        host.serve_url(TEST_BRIDGE_URL, Arc::new(move |req| serving.publish(req)));
        host.set_variable(crate::messaging::bridge::VAR_BRIDGE_URL, TEST_BRIDGE_URL);
        host.set_variable(
            crate::messaging::bridge::VAR_PUBLISH_TOKEN,
            TEST_BRIDGE_TOKEN,
        );
        host.set_variable(
            crate::messaging::bridge::VAR_DELIVERY_TOKEN,
            TEST_DELIVERY_TOKEN,
        );
        bridge
    }

    pub fn publish(&self, req: &Request) -> Response {
        if self.down.load(Ordering::Relaxed) {
            return Response::json(
                503,
                &serde_json::json!({ "detail": "NATS is not connected" }),
            );
        }
        let expected = format!("Bearer {TEST_BRIDGE_TOKEN}");
        if req.header("authorization").ok().flatten() != Some(expected.as_str()) {
            return Response::json(401, &serde_json::json!({ "detail": "bad token" }));
        }
        if let Some(tenant) = req.path.strip_prefix("/v1/purge/tenants/") {
            let mut stored = self.stored.lock().unwrap();
            let before = stored.len();
            stored.retain(|p| p.subject.split('.').nth(4) != Some(tenant));
            let purged = before - stored.len();
            return Response::json(200, &serde_json::json!({ "purged": purged }));
        }
        let subject = req
            .path
            .strip_prefix("/v1/publish/")
            .unwrap_or_default()
            .to_owned();
        let msg_id = req
            .header("nats-msg-id")
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        let session = req
            .header(crate::messaging::bridge::SESSION_HEADER)
            .ok()
            .flatten()
            .map(str::to_owned);
        let rate = req
            .header(crate::messaging::bridge::RATE_HEADER)
            .ok()
            .flatten()
            .map(|r| r.parse().expect("Greentic-Rate is a number"));
        let mut stored = self.stored.lock().unwrap();
        let duplicate = stored.iter().any(|p| p.msg_id == msg_id);
        if !duplicate {
            stored.push(Published {
                subject,
                msg_id,
                session,
                rate,
                payload: req.body.clone(),
            });
        }
        let stream = if req.path.contains(".egress.") {
            "GREENTIC_EGRESS"
        } else {
            "GREENTIC_INGRESS"
        };
        Response::json(
            200,
            &serde_json::json!({ "stream": stream, "seq": stored.len(), "duplicate": duplicate }),
        )
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Everything stored, in order.
    pub fn published(&self) -> Vec<Published> {
        self.stored.lock().unwrap().clone()
    }

    /// What was stored on subjects starting with `prefix`.
    pub fn on(&self, prefix: &str) -> Vec<Published> {
        self.published()
            .into_iter()
            .filter(|p| p.subject.starts_with(prefix))
            .collect()
    }

    /// A delivery of `published` as the bridge pushes it (attempt `attempt`),
    /// to the route `bridge/bridge.local.toml` maps its subject to.
    pub fn delivery(published: &Published, attempt: u32) -> Request {
        let route = if published.subject.starts_with("greentic.messaging.egress.") {
            "/internal/v1/deliveries/egress"
        } else {
            "/internal/v1/deliveries/ingress"
        };
        let request = Request::new("POST", route)
            .with_header("authorization", format!("Bearer {TEST_DELIVERY_TOKEN}"))
            .with_header("content-type", "application/json")
            .with_header(
                crate::messaging::delivery::SUBJECT_HEADER,
                &published.subject,
            )
            .with_header(crate::messaging::delivery::MSG_ID_HEADER, &published.msg_id)
            .with_header(
                crate::messaging::delivery::ATTEMPT_HEADER,
                attempt.to_string(),
            )
            .with_body(published.payload.clone());
        match &published.session {
            Some(session) => {
                request.with_header(crate::messaging::delivery::SESSION_HEADER, session)
            }
            None => request,
        }
    }
}

/// A person's message with the usual test defaults (conversation `C1`, no
/// thread); change fields as a test needs.
pub fn message(provider_id: &str, user: &str, text: &str) -> crate::messaging::providers::Message {
    crate::messaging::providers::Message {
        id_kind: "event",
        provider_id: provider_id.into(),
        conversation: crate::tenancy::ids::Conversation {
            id: "C1".into(),
            thread: None,
        },
        sender: crate::messaging::envelope::Sender {
            id: user.into(),
            name: None,
        },
        text: text.into(),
        sent_at_ms: 0,
        attachments: Vec::new(),
        reply: crate::messaging::envelope::ReplyAddress::default(),
    }
}

/// The envelope ingress makes of `message` on a channel of the host's bundle
/// (env `prod`).
pub fn envelope_on(
    host: &dyn Host,
    tenant: &str,
    team: &str,
    channel: &str,
    message: crate::messaging::providers::Message,
) -> crate::messaging::envelope::Envelope {
    let ctx = crate::TenantCtx::new(tenant, "prod", Some(team)).expect("test ids are valid");
    let channel = crate::tenancy::ids::ChannelId::parse(channel).expect("test ids are valid");
    let config = crate::flows::tenant_config::TenantConfig::load(host, tenant)
        .expect("the bundle reads")
        .expect("the tenant is in the bundle");
    let channel = config
        .channel(&ctx, &channel)
        .expect("the channel is in the bundle");
    crate::messaging::providers::envelope(&channel, message)
}

impl Published {
    /// An inbound envelope as ingress publishes it.
    pub fn inbound(envelope: &crate::messaging::envelope::Envelope) -> Published {
        Published {
            subject: crate::tenancy::subjects::ingress(&envelope.tenant, &envelope.channel)
                .to_string(),
            msg_id: envelope.id.clone(),
            session: Some(envelope.session_id.as_str().to_owned()),
            rate: None,
            payload: envelope.to_json(),
        }
    }

    /// A reply as the executor publishes it.
    pub fn reply(out: &crate::messaging::envelope::Outbound) -> Published {
        Published {
            subject: crate::tenancy::subjects::egress(&out.tenant, &out.channel).to_string(),
            msg_id: out.id.clone(),
            session: Some(out.session_id.as_str().to_owned()),
            rate: None,
            payload: out.to_json(),
        }
    }
}

/// Everything a tenant leaves in the stores as it is used: sessions
/// in several envs and teams (one a web chat visitor's with a log),
/// send progress, an erased person, usage and refusal counters,
/// rate windows, a Teams access token. The deletion tests' fixture.
pub fn use_tenant(stores: &TenantStores<'_>, tenant: &str, now_ms: i64) {
    let sessions = SessionStore::new(stores.data.sessions);
    for env in ["prod", "staging", "unlisted"] {
        for team in [Some("support"), Some("sales"), None] {
            let ctx = TenantCtx::new(tenant, env, team).unwrap();
            for user in ["U-ADA", "U-BOB", "U-DANA"] {
                let id = sessions
                    .create(&ctx, crate::testing::new_session("slack", user), now_ms)
                    .unwrap()
                    .id;
                stores
                    .data
                    .egress
                    .set(&key::egress_progress(&ctx, &id), b"progress")
                    .unwrap();
                stores
                    .data
                    .egress
                    .increment(&key::egress_progress_claim(&ctx, &id), 1)
                    .unwrap();
            }
            let web = ChannelId::parse("webchat").unwrap();
            let conversation = ConversationId::parse("wc-visitor-1").unwrap();
            let mut visitor = crate::testing::new_session("webchat", "u-visitor");
            visitor.provider = "messaging-webchat".into();
            visitor.conversation = Conversation {
                id: conversation.as_str().into(),
                thread: None,
            };
            sessions.create(&ctx, visitor, now_ms).unwrap();
            let log = ConversationLog::new(stores.data.webchat, &ctx, &web, &conversation);
            for n in 0..3 {
                log.append(&bot_activity(&format!("reply-{n}"), "hello"))
                    .unwrap();
            }
            for (kv, counter) in [
                (stores.data.sessions, Counter::Traffic),
                (stores.data.sessions, Counter::Errors),
                (stores.limits, Counter::ApiRefused),
                (stores.limits, Counter::WebchatRefused),
            ] {
                TeamRegistry::new(kv).ensure(&ctx).unwrap();
                for day in [now_ms - (24 * 60 * 60 * 1000), now_ms] {
                    kv.increment(&key::usage(&ctx, &Day::of(day), counter), 1)
                        .unwrap();
                }
            }
            rate::count(
                stores.limits,
                &key::rate_webchat_conversation(&ctx, &web, &conversation),
                "conversation",
                10,
                now_ms,
            )
            .unwrap();
            rate::count(
                stores.limits,
                &key::rate_webchat_channel(&ctx, &web),
                "channel",
                10,
                now_ms,
            )
            .unwrap();
            let teams = ChannelId::parse("teams").unwrap();
            stores
                .data
                .egress
                .set(&key::teams_access_token(&ctx, &teams), b"token")
                .unwrap();
        }
        let env_ctx = TenantCtx::new(tenant, env, None).unwrap();
        let slack = ChannelId::parse("slack").unwrap();
        people::erase(&stores.data, &env_ctx, &slack, "U-DANA", |_| true, now_ms).unwrap();
        // A person whose only session was deleted (by the retention sweep
        // or DELETE of the session): their person index stays behind.
        let support = TenantCtx::new(tenant, env, Some("support")).unwrap();
        let gone = sessions
            .create(&support, new_session("slack", "U-SWEPT"), now_ms)
            .unwrap()
            .id;
        sessions.delete(&support, &gone).unwrap();
        // A record this version cannot read.
        let odd = sessions
            .create(&support, new_session("slack", "U-ODD"), now_ms)
            .unwrap()
            .id;
        stores
            .data
            .sessions
            .set(&key::session_record(&support, &odd), b"not a record")
            .unwrap();
    }
    let ctx = TenantCtx::new(tenant, "prod", None).unwrap();
    for minute in [-7_200_000, -60_000, 0] {
        for subject in ["admin", "ops-robot"] {
            let at = now_ms + minute;
            rate::count(stores.limits, &key::rate_api(&ctx), "tenant", 10, at).unwrap();
            rate::count(
                stores.limits,
                &key::rate_api_subject(&ctx, subject),
                "subject",
                10,
                at,
            )
            .unwrap();
        }
    }
}

/// Every store a tenant's data is in, in memory, with the demo's tenants
/// configured: the world of the data lifecycle's tests (retention, deletion).
pub struct TenantWorld {
    pub sessions: TestKv,
    pub webchat: TestKv,
    pub egress: TestKv,
    pub limits: TestKv,
    pub config: TestKv,
}

impl TenantWorld {
    pub fn new() -> TenantWorld {
        let world = TenantWorld {
            sessions: TestKv::new(),
            webchat: TestKv::new(),
            egress: TestKv::new(),
            limits: TestKv::new(),
            config: TestKv::new(),
        };
        apply_demo(&world.config);
        world
    }

    /// The stores of a session's data.
    pub fn data(&self) -> crate::store::lifecycle::Stores<'_> {
        crate::store::lifecycle::Stores {
            sessions: &self.sessions,
            webchat: &self.webchat,
            egress: &self.egress,
        }
    }

    /// The stores of a tenant's data (all of them).
    pub fn stores(&self) -> TenantStores<'_> {
        TenantStores {
            data: self.data(),
            limits: &self.limits,
            config: &self.config,
        }
    }

    pub fn all(&self) -> [(&'static str, &TestKv); 5] {
        [
            ("sessions", &self.sessions),
            ("webchat", &self.webchat),
            ("egress", &self.egress),
            ("limits", &self.limits),
            ("config", &self.config),
        ]
    }

    /// Every key (as `store: key`) and value of every store whose key
    /// contains `needle`, sorted.
    pub fn keys_naming(&self, needle: &str) -> Vec<(String, Vec<u8>)> {
        let mut found: Vec<(String, Vec<u8>)> = self
            .all()
            .into_iter()
            .flat_map(|(label, kv)| {
                kv.snapshot()
                    .into_iter()
                    .filter(|(key, _)| key.contains(needle))
                    .map(move |(key, value)| (format!("{label}: {key}"), value))
            })
            .collect();
        found.sort();
        found
    }
}

impl Default for TenantWorld {
    fn default() -> Self {
        Self::new()
    }
}
