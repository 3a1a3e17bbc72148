//! The product as users run it: the real Spin CLI (`spin build`, then `spin
//! up` of the repository's own spin.toml and the release wasm), a real
//! nats-server with JetStream and the bridge, and fakes of the providers'
//! APIs that egress calls. The stores are SQLite files (runtime-config.toml's
//! `type = "spin"`) or databases of a real redis-server (as SpinKube runs them).
//!
//! One platform per backend per test process, started on first use and
//! shared by every test of the process: tests keep apart by using people,
//! threads and ids of their own. Spin is found as scripts/find-spin finds it;
//! without it the tests fail with the install link, never skip.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::workspace_dir;
use greentic::testing::{TEST_HS256_SECRET, TEST_MASTER_KEY, TokenBuilder};
use greentic_bridge::testing::{
    DELIVERY_TOKEN, DeliverySpec, PUBLISH_TOKEN, config_toml, free_port, nats_server_bin, token_env,
};
use serde_json::{Value, json};

use crate::process::{Tied, spawn_tied};
use crate::providers::{slack, teams, telegram};

/// Where `spin up` keeps the key-value stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kv {
    /// SQLite files, as runtime-config.toml has it.
    Sqlite,
    /// A redis-server database per store, as deploy/runtime-config.redis.toml.
    Redis,
}

/// The labels spin.toml declares (runtime-config.toml defines each).
const STORES: &[&str] = &[
    "sessions", "secrets", "webchat", "egress", "cache", "limits", "config",
];

/// The tenant of the platform operator's tokens (role `platform-admin`).
pub const PLATFORM_OPERATOR: &str = "ops";

/// The secrets the platform's demo channels are given by [`RealPlatform::start`].
pub const SLACK_SIGNING_SECRET: &str = "on-spin-slack-signing-secret-0123";
pub const TELEGRAM_WEBHOOK_SECRET: &str = "on-spin-telegram-webhook-secret";
pub const WEBCHAT_TOKEN_SECRET: &str = "on-spin-webchat-token-secret-0123456789";
pub const SLACK_BOT_TOKEN: &str = "xoxb-on-spin-acme-support";
pub const TELEGRAM_BOT_TOKEN: &str = "123456:ON-SPIN-TG";

/// What a fake provider API was asked to do.
#[derive(Debug, Clone)]
pub struct ProviderCall {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// nats-server, the bridge and `spin up`, with the providers faked.
pub struct RealPlatform {
    pub kv: Kv,
    pub url: String,
    /// The fake provider APIs' base URL (also Bot Framework's service URL).
    pub providers: String,
    runtime: tokio::runtime::Runtime,
    spin: Tied,
    _nats: Tied,
    nats_url: String,
    /// The bridge, restarted on the same address when its deliveries change.
    bridge: Mutex<Option<greentic_bridge::Running>>,
    bridge_listen: String,
    calls: Arc<Mutex<Vec<ProviderCall>>>,
    logs: PathBuf,
    scratch: PathBuf,
    floor: Mutex<Option<Tied>>,
    /// Each store's location: a SQLite file or a Redis URL.
    pub stores: Vec<(String, String)>,
}

/// Which of the bridge's push deliveries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deliveries {
    /// None: published messages wait in their streams.
    None,
    /// Inbound messages to the flow executor only.
    Ingress,
    /// Replies to egress only.
    Egress,
    /// Inbound messages to the executor and replies to egress (production).
    Both,
}

/// The platform of `kv` for this test process, started on first use.
pub fn platform(kv: Kv) -> &'static RealPlatform {
    static SQLITE: OnceLock<RealPlatform> = OnceLock::new();
    static REDIS: OnceLock<RealPlatform> = OnceLock::new();
    match kv {
        Kv::Sqlite => SQLITE.get_or_init(|| RealPlatform::start(kv)),
        Kv::Redis => REDIS.get_or_init(|| RealPlatform::start(kv)),
    }
}

/// The Spin CLI: scripts/find-spin's answer (`SPIN_BIN`, `PATH`, ...).
pub fn spin_bin() -> PathBuf {
    let out = std::process::Command::new(workspace_dir().join("scripts/find-spin"))
        .output()
        .expect("scripts/find-spin runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The application the suites run: this repository's, or the checkout named
/// by `GREENTIC_SPIN_APP` (to run the same suites against another build,
/// say the one before a fix).
pub fn app_dir() -> PathBuf {
    std::env::var_os("GREENTIC_SPIN_APP")
        .map(PathBuf::from)
        .unwrap_or_else(workspace_dir)
}

/// `spin build` of the application, once per test process: the very build
/// users run (scripts/build-components ran the same commands, so this only
/// checks they are up to date).
fn spin_build() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = std::process::Command::new(spin_bin())
            .arg("build")
            .current_dir(app_dir())
            .output()
            .expect("spin build runs");
        assert!(
            out.status.success(),
            "spin build failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

impl RealPlatform {
    pub fn start(kv: Kv) -> RealPlatform {
        Self::start_with(kv, Deliveries::Both)
    }

    /// The platform with only `deliveries` running (benchmarks measure
    /// ingress alone, then the executor alone, then the whole pipeline).
    pub fn start_with(kv: Kv, deliveries: Deliveries) -> RealPlatform {
        spin_build();
        let scratch = workspace_dir().join(format!(
            "target/test-output/on-spin/{kv:?}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&scratch).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();

        let nats_port = free_port();
        let nats = spawn_tied(
            &nats_server_bin(),
            &[
                "-js".into(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                nats_port.to_string(),
                "-sd".into(),
                scratch.join("nats").display().to_string(),
            ],
            &[],
            &scratch.join("nats.log"),
            None,
        );
        nats.wait_until("nats-server", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_ok()
        });

        let calls: Arc<Mutex<Vec<ProviderCall>>> = Arc::default();
        let providers = runtime.block_on(serve_providers(calls.clone()));

        let spin_port = free_port();
        let url = format!("http://127.0.0.1:{spin_port}");
        let nats_url = format!("nats://127.0.0.1:{nats_port}");
        let bridge_listen = format!("127.0.0.1:{}", free_port());
        let bridge = runtime.block_on(start_bridge(&bridge_listen, &nats_url, &url, deliveries));
        let bridge_url = format!("http://{bridge_listen}");

        let stores: Vec<(String, String)> = STORES
            .iter()
            .map(|label| {
                let place = match kv {
                    Kv::Sqlite => scratch.join(format!("{label}.db")).display().to_string(),
                    Kv::Redis => crate::redis::fresh_url(),
                };
                (label.to_string(), place)
            })
            .collect();
        if kv == Kv::Sqlite {
            // As scripts/dev leaves them for `spin up`.
            sqlite_wal(stores.iter().map(|(_, path)| path.as_str()));
        }
        let runtime_config: String = stores
            .iter()
            .map(|(label, place)| match kv {
                Kv::Sqlite => {
                    format!("[key_value_store.{label}]\ntype = \"spin\"\npath = \"{place}\"\n\n")
                }
                Kv::Redis => {
                    format!("[key_value_store.{label}]\ntype = \"redis\"\nurl = \"{place}\"\n\n")
                }
            })
            .collect();
        let runtime_config_file = scratch.join("runtime-config.toml");
        std::fs::write(&runtime_config_file, runtime_config).unwrap();

        let logs = scratch.join("logs");
        let variables = [
            ("AUTH_HS256_SECRET", TEST_HS256_SECRET.to_owned()),
            ("SECRETS_MASTER_KEY", TEST_MASTER_KEY.to_owned()),
            ("BRIDGE_URL", bridge_url),
            ("BRIDGE_PUBLISH_TOKEN", PUBLISH_TOKEN.to_owned()),
            ("BRIDGE_DELIVERY_TOKEN", DELIVERY_TOKEN.to_owned()),
            ("SLACK_API_URL", providers.clone()),
            ("TELEGRAM_API_URL", providers.clone()),
            ("TEAMS_LOGIN_URL", providers.clone()),
            ("TEAMS_OPENID_HOST", providers.clone()),
            ("TEAMS_EXTRA_SERVICE_URL", providers.clone()),
        ];
        let env: Vec<(String, String)> = variables
            .into_iter()
            .map(|(name, value)| (format!("SPIN_VARIABLE_{name}"), value))
            .collect();
        let spin = spawn_tied(
            &spin_bin(),
            &[
                "up".into(),
                "--from".into(),
                app_dir().join("spin.toml").display().to_string(),
                "--runtime-config-file".into(),
                runtime_config_file.display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{spin_port}"),
                "--state-dir".into(),
                scratch.join("state").display().to_string(),
                "--log-dir".into(),
                logs.display().to_string(),
            ],
            &env,
            &scratch.join("spin.log"),
            Some(&scratch),
        );
        let docs = format!("{url}/api/openapi.yaml");
        spin.wait_until("spin up", Duration::from_secs(300), || {
            ureq::get(&docs).call().is_ok()
        });
        let platform = RealPlatform {
            kv,
            url,
            providers,
            runtime,
            spin,
            _nats: nats,
            nats_url,
            bridge: Mutex::new(Some(bridge)),
            bridge_listen,
            calls,
            logs,
            scratch,
            floor: Mutex::new(None),
            stores,
        };
        platform.wait_for_bridge();
        platform.apply_demo_tenants();
        platform.seed_demo_secrets();
        platform
    }

    fn wait_for_bridge(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.bridge.lock().unwrap().as_ref().unwrap().ready() {
            assert!(Instant::now() < deadline, "the bridge never reached NATS");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the bridge (it finishes what it is delivering) and starts it
    /// again on the same address with `deliveries`; the streams keep every
    /// message in between.
    pub fn restart_bridge(&self, deliveries: Deliveries) {
        let mut bridge = self.bridge.lock().unwrap();
        if let Some(running) = bridge.take() {
            self.runtime.block_on(running.shutdown());
        }
        *bridge = Some(self.runtime.block_on(start_bridge(
            &self.bridge_listen,
            &self.nats_url,
            &self.url,
            deliveries,
        )));
        drop(bridge);
        self.wait_for_bridge();
    }

    /// (delivered, retried, dead-lettered) of one of the bridge's deliveries
    /// since it last started.
    pub fn bridge_counts(&self, delivery: &str) -> (u64, u64, u64) {
        self.bridge
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .metrics()
            .delivery_counts(delivery)
    }

    /// Messages `delivery` delivered since the bridge last started.
    pub fn delivered(&self, delivery: &str) -> u64 {
        self.bridge_counts(delivery).0
    }

    /// Publishes every envelope to its ingress subject through the bridge,
    /// 16 at a time, as ingress would.
    pub fn publish_all(&self, envelopes: &[greentic::messaging::envelope::Envelope]) {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let bridge = format!("http://{}", self.bridge_listen);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(envelope) = envelopes.get(i) else {
                            return;
                        };
                        let subject = greentic::tenancy::subjects::ingress(
                            &envelope.tenant,
                            &envelope.channel,
                        );
                        let response = agent
                            .post(format!("{bridge}/v1/publish/{subject}"))
                            .header("authorization", format!("Bearer {PUBLISH_TOKEN}"))
                            .header("content-type", "application/json")
                            .header("nats-msg-id", &envelope.id)
                            .send(&envelope.to_json()[..])
                            .expect("the bridge answers");
                        assert_eq!(response.status().as_u16(), 200, "publish {i}");
                    }
                });
            }
        });
    }

    /// Every key of every store, as `label: key`, read from the backend
    /// itself (the SQLite file's table, or Redis's `KEYS *`): what a test
    /// scans to prove nothing of a tenant or a person is left. Never the
    /// product's way (`get_keys` costs the whole store).
    pub fn all_keys(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (label, place) in &self.stores {
            let keys: Vec<String> = match self.kv {
                Kv::Sqlite => {
                    let db = rusqlite::Connection::open_with_flags(
                        place,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                    )
                    .expect("the store's SQLite file opens");
                    // Spin keeps every store's keys in one table with a `key` column.
                    let tables: Vec<String> = db
                        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                        .and_then(|mut q| {
                            q.query_map([], |row| row.get(0))?
                                .collect::<Result<Vec<String>, _>>()
                        })
                        .expect("sqlite_master reads");
                    let mut keys = Vec::new();
                    for table in tables {
                        if let Ok(mut q) = db.prepare(&format!("SELECT key FROM \"{table}\"")) {
                            keys.extend(
                                q.query_map([], |row| row.get::<_, String>(0))
                                    .expect("keys read")
                                    .map(|k| k.expect("a key is text")),
                            );
                        }
                    }
                    keys
                }
                Kv::Redis => {
                    let client = redis::Client::open(place.as_str()).expect("a redis URL");
                    let mut conn = client.get_connection().expect("redis-server answers");
                    redis::cmd("KEYS")
                        .arg("*")
                        .query(&mut conn)
                        .expect("KEYS answers")
                }
            };
            all.extend(keys.into_iter().map(|k| format!("{label}: {k}")));
        }
        all
    }

    /// The SQLite file of store `label` (`None` on Redis).
    pub fn sqlite_file(&self, label: &str) -> Option<PathBuf> {
        (self.kv == Kv::Sqlite).then(|| self.scratch.join(format!("{label}.db")))
    }

    /// The benchmark's floor app (bench/floor/spin.toml) beside the product,
    /// publishing through the same bridge, its store on the same backend.
    /// Answers its base URL; started on first use.
    pub fn start_floor(&self) -> String {
        let mut floor = self.floor.lock().unwrap();
        let port = free_port();
        let place = match self.kv {
            Kv::Sqlite => self.scratch.join("floor-cache.db").display().to_string(),
            Kv::Redis => crate::redis::fresh_url(),
        };
        if self.kv == Kv::Sqlite {
            sqlite_wal([place.as_str()]);
        }
        let config = match self.kv {
            Kv::Sqlite => format!("[key_value_store.cache]\ntype = \"spin\"\npath = \"{place}\"\n"),
            Kv::Redis => format!("[key_value_store.cache]\ntype = \"redis\"\nurl = \"{place}\"\n"),
        };
        let config_file = self.scratch.join("floor-runtime-config.toml");
        std::fs::write(&config_file, config).unwrap();
        let env = [
            (
                "SPIN_VARIABLE_BRIDGE_URL".to_owned(),
                format!("http://{}", self.bridge_listen),
            ),
            (
                "SPIN_VARIABLE_BRIDGE_PUBLISH_TOKEN".to_owned(),
                PUBLISH_TOKEN.to_owned(),
            ),
        ];
        let app = spawn_tied(
            &spin_bin(),
            &[
                "up".into(),
                "--from".into(),
                workspace_dir()
                    .join("bench/floor/spin.toml")
                    .display()
                    .to_string(),
                "--runtime-config-file".into(),
                config_file.display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--state-dir".into(),
                self.scratch.join("floor-state").display().to_string(),
                "--quiet".into(),
            ],
            &env,
            &self.scratch.join("floor.log"),
            None,
        );
        let url = format!("http://127.0.0.1:{port}");
        let empty = format!("{url}/empty");
        app.wait_until("the floor app", Duration::from_secs(120), || {
            ureq::get(&empty).call().is_ok()
        });
        *floor = Some(app);
        url
    }

    /// How many texts the fake Telegram API was asked to send.
    pub fn telegram_sends(&self) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path.ends_with("/sendMessage"))
            .count()
    }

    /// How many texts the fake Telegram API was asked to send in forum topic `topic`.
    pub fn telegram_sends_in(&self, topic: i64) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path.ends_with("/sendMessage") && c.body["message_thread_id"] == topic)
            .count()
    }

    /// The demo bundle's tenants, applied through the tenant API as
    /// `greentic tenant apply bundles/demo.yaml` (and scripts/dev) does.
    fn apply_demo_tenants(&self) {
        let demo = greentic::testing::demo_bundle();
        for id in demo.bundle.tenants.keys() {
            let document = greentic::flows::control::TenantDocument::from_bundle(demo, id)
                .expect("the bundle lists it");
            self.apply_tenant(id, &document);
        }
    }

    /// Creates (or updates) tenant `id` with `document`, as a platform operator.
    pub fn apply_tenant(&self, id: &str, document: &greentic::flows::control::TenantDocument) {
        let operator = self
            .token(PLATFORM_OPERATOR, "prod")
            .roles(&["platform-admin"]);
        let (status, body) = self.call(
            "PUT",
            &format!("/api/v1/tenants/{id}"),
            &[
                ("authorization", &operator.bearer()),
                ("x-tenant-id", PLATFORM_OPERATOR),
            ],
            Some(serde_json::to_vec(document).unwrap()),
        );
        assert!(matches!(status, 200 | 201), "tenant {id}: {status} {body}");
    }

    fn seed_demo_secrets(&self) {
        for (tenant, team, name, value) in [
            (
                "acme",
                "support",
                "slack_signing_secret",
                SLACK_SIGNING_SECRET,
            ),
            ("acme", "support", "slack_bot_token", SLACK_BOT_TOKEN),
            (
                "acme",
                "support",
                "telegram_webhook_secret",
                TELEGRAM_WEBHOOK_SECRET,
            ),
            ("acme", "support", "telegram_bot_token", TELEGRAM_BOT_TOKEN),
            (
                "acme",
                "sales",
                "teams_app_password",
                "on-spin-teams-password",
            ),
            (
                "bigcorp",
                "helpdesk",
                "webchat_token_secret",
                WEBCHAT_TOKEN_SECRET,
            ),
        ] {
            let admin = self.token(tenant, "prod").roles(&["admin"]);
            let (status, body) = self.call(
                "PUT",
                &format!("/api/v1/secrets/{name}"),
                &[
                    ("authorization", &admin.bearer()),
                    ("x-tenant-id", tenant),
                    ("x-team-id", team),
                ],
                Some(json!({ "value": value }).to_string().into_bytes()),
            );
            assert!(matches!(status, 200 | 201), "{name}: {status} {body}");
        }
    }

    /// The nats-server the bridge uses.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// Now, by the machine's clock (the one Spin's components read).
    pub fn now_secs(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// A token for the session and secrets APIs, valid now.
    pub fn token(&self, tenant: &str, env: &str) -> TokenBuilder {
        let mut token = greentic::testing::token(tenant, env);
        token.claims.iat = Some(self.now_secs() as u64);
        token.claims.exp = self.now_secs() as u64 + 3600;
        token
    }

    /// One HTTP exchange with the platform: status and JSON body (`Null`
    /// when the body is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let (status, bytes) = self.call_raw(method, path, headers, body);
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        let (status, _, body) = self.call_with_headers(method, path, headers, body);
        (status, body)
    }

    /// [`Self::call_raw`] with the response's headers (names in lower case).
    pub fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let response = agent
            .run(req.body(body.unwrap_or_default()).unwrap())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.spin.output()));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        (
            status,
            headers,
            response.into_body().read_to_vec().unwrap_or_default(),
        )
    }

    /// A Slack message event, signed as Slack signs it, to the demo's channel.
    pub fn slack(&self, event_id: &str, user: &str, text: &str, thread: &str) -> (u16, Value) {
        let body = slack::message_event(event_id, user, text, Some(thread)).to_string();
        let headers = slack::signed_headers(SLACK_SIGNING_SECRET, self.now_secs(), body.as_bytes());
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.call(
            "POST",
            "/webhooks/prod/acme/support/slack",
            &headers,
            Some(body.into_bytes()),
        )
    }

    /// A Telegram update with the channel's webhook secret, in forum topic `topic`.
    pub fn telegram(&self, update_id: i64, from: i64, text: &str, topic: i64) -> (u16, Value) {
        let body = telegram::update(update_id, from, text, Some(topic)).to_string();
        self.call(
            "POST",
            "/webhooks/prod/acme/support/telegram",
            &[(telegram::SECRET_HEADER, TELEGRAM_WEBHOOK_SECRET)],
            Some(body.into_bytes()),
        )
    }

    /// A Teams message activity from the fake service URL, with a connector
    /// token valid now.
    pub fn teams(&self, id: &str, from: &str, conversation: &str, text: &str) -> (u16, Value) {
        let service_url = self.teams_service_url();
        let body =
            teams::message_activity_from(&service_url, id, from, conversation, text).to_string();
        let bearer = format!(
            "Bearer {}",
            teams::connector_token(&service_url, self.now_secs())
        );
        self.call(
            "POST",
            "/webhooks/prod/acme/sales/teams",
            &[("authorization", &bearer)],
            Some(body.into_bytes()),
        )
    }

    /// The service URL the fake Bot Framework sends Teams activities from.
    pub fn teams_service_url(&self) -> String {
        format!("{}/amer/", self.providers)
    }

    /// What the fake provider APIs received so far, oldest first.
    pub fn provider_calls(&self) -> Vec<ProviderCall> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until `done` holds.
    pub fn eventually(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {what} ({:?}); spin's output:\n{}",
                self.kv,
                tail(&self.spin.output(), 40)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The JSON log lines a component wrote to its stderr so far.
    pub fn component_log(&self, component: &str) -> Vec<Value> {
        let file = self.logs.join(format!("{component}_stderr.txt"));
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn spin_output(&self) -> String {
        self.spin.output()
    }

    /// Runs a future on the platform's runtime (the bridge's), for NATS checks.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The bridge on `listen`, delivering to the app at `app` as `deliveries` says.
async fn start_bridge(
    listen: &str,
    nats_url: &str,
    app: &str,
    deliveries: Deliveries,
) -> greentic_bridge::Running {
    let specs: Vec<DeliverySpec> = [
        DeliverySpec::ingress(format!("{app}/internal/v1/deliveries/ingress")),
        DeliverySpec::egress(format!("{app}/internal/v1/deliveries/egress")),
    ]
    .into_iter()
    .filter(|d| match deliveries {
        Deliveries::None => false,
        Deliveries::Ingress => d.name == "ingress",
        Deliveries::Egress => d.name == "egress",
        Deliveries::Both => true,
    })
    .map(|mut d| {
        // As production runs them (bridge/bridge.local.toml), with retries
        // generous enough for a loaded 2-core CI machine.
        d.concurrency = 16;
        d.timeout = "10s";
        d.max_attempts = 6;
        d.backoff = r#"["100ms", "500ms", "1s"]"#;
        d
    })
    .collect();
    let text = config_toml(listen, nats_url, &specs);
    let config = greentic_bridge::Config::from_toml(&text, std::path::Path::new("."), token_env)
        .expect("the bridge's test config");
    greentic_bridge::start(config)
        .await
        .expect("the bridge starts")
}

fn teams_keys_path(document: &str) -> String {
    format!("/v1/.well-known/{document}")
}

/// Slack, Telegram and Bot Framework (login, OpenID keys, the Teams service
/// URL), answering as the real APIs do
/// on success, and recording each call. Returns the base URL.
async fn serve_providers(calls: Arc<Mutex<Vec<ProviderCall>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let calls = calls.clone();
        let base = base.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let path = parts.uri.path().to_owned();
            let authorization = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let parsed = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            let answer = if path == teams_keys_path("openidconfiguration") {
                teams::openid_metadata(&base)
            } else if path == teams_keys_path("keys") {
                teams::jwks()
            } else if path.contains("/v3/conversations/") {
                json!({ "id": "on-spin-reply" })
            } else if path == "/api/chat.postMessage" {
                json!({ "ok": true, "channel": parsed["channel"], "ts": "1700000000.000200" })
            } else if path.ends_with("/sendMessage") {
                json!({ "ok": true, "result": { "message_id": 1, "date": 1700000000, "chat": { "id": parsed["chat_id"], "type": "supergroup" }, "text": parsed["text"] } })
            } else if path.ends_with("/oauth2/v2.0/token") {
                json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "on-spin-bf-access-token" })
            } else {
                json!({ "ok": false, "error": "unknown_method" })
            };
            calls.lock().unwrap().push(ProviderCall {
                path,
                authorization,
                body: parsed,
            });
            axum::Json(answer)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A number no other call in this test process returns (and, with the
/// process id in it, no earlier run of the tests against the same stores).
pub fn unique_number() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(1);
    i64::from(std::process::id()) * 1_000_000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh id for a test's people, threads and messages.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", unique_number())
}

/// Puts SQLite store files in WAL mode before Spin opens them, with the
/// script scripts/dev uses.
fn sqlite_wal<'a>(paths: impl IntoIterator<Item = &'a str>) {
    let script = crate::workspace_dir().join("scripts/sqlite-wal");
    let status = std::process::Command::new(&script)
        .args(paths)
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(status.success(), "{} failed", script.display());
}
