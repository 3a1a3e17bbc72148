//! The whole platform on one machine, as `scripts/dev` runs it: a real
//! nats-server with JetStream, the bridge, and the components behind one HTTP
//! listener. A message goes provider -> ingress -> bridge -> NATS -> bridge ->
//! flow executor -> bridge -> NATS -> bridge -> egress, and the tests watch
//! what comes out at the providers' (faked) APIs, the session API and the
//! web chat page in Debian's Chromium.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::{Broker, Call, NOW_SECS, Stores, token};
use greentic::http::{Request, Response};
use greentic::testing::MemoryHost;
use greentic_bridge::testing::{DELIVERY_TOKEN, DeliverySpec, NatsServer, PUBLISH_TOKEN, config};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use spin_test_host::manifest::Manifest;
use spin_test_host::router::Router;

const SLACK_SECRET: &str = "fullstack-slack-signing-secret";
const WEBCHAT_SECRET: &str = "fullstack-webchat-secret-0123456789";
const SLACK_API: &str = "http://slack.test:1";

/// What the fake Slack API was asked to post.
type Posts = Arc<Mutex<Vec<Value>>>;

/// nats-server, the bridge and the components, torn down on drop.
struct Stack {
    runtime: tokio::runtime::Runtime,
    nats: NatsServer,
    bridge: Option<greentic_bridge::Running>,
    front: SocketAddr,
    slack_posts: Posts,
    slack_answer: Arc<Mutex<Value>>,
    /// The components' host: its stores and its compiled bundle.
    host: Arc<MemoryHost>,
}

impl Stack {
    fn start() -> Stack {
        Stack::on(Stores::Memory)
    }

    /// The stack with the components' stores where `stores` keeps them.
    fn on(stores: Stores) -> Stack {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let nats = NatsServer::start();

        // The components: one memory host for the components that share
        // stores under Spin (sessions, webchat, egress), the broker behind chaining.
        let broker = Broker::new();
        let admin = |tenant: &str, team: &str| {
            Call::with(&token(tenant, "prod").roles(&["admin"])).team(team)
        };
        broker.put(
            &admin("acme", "support"),
            "slack_signing_secret",
            SLACK_SECRET,
        );
        broker.put(
            &admin("acme", "support"),
            "slack_bot_token",
            "xoxb-acme-support",
        );
        broker.put(
            &admin("bigcorp", "helpdesk"),
            "webchat_token_secret",
            WEBCHAT_SECRET,
        );
        // The hosts keep the test clock (NOW_SECS): messages carry its time.
        let host = broker.component_host_on(&["sessions", "webchat", "egress", "limits"], stores);

        let slack_posts: Posts = Arc::default();
        let slack_answer = Arc::new(Mutex::new(json!({ "ok": true, "ts": "1.1" })));
        let (posts, answer) = (slack_posts.clone(), slack_answer.clone());
        host.serve_url(
            SLACK_API,
            Arc::new(move |req: &Request| {
                posts.lock().unwrap().push(json!({
                    "auth": req.header("authorization").unwrap(),
                    "body": serde_json::from_slice::<Value>(&req.body).unwrap(),
                }));
                Response::json(200, &*answer.lock().unwrap())
            }),
        );
        host.set_variable("slack_api_url", SLACK_API);

        let host = Arc::new(host);
        let front = runtime.block_on(serve_components(host.clone()));

        let bridge_config = config(
            &nats.url(),
            &[
                DeliverySpec::ingress(format!("http://{front}/internal/v1/deliveries/ingress")),
                DeliverySpec::egress(format!("http://{front}/internal/v1/deliveries/egress")),
            ],
        );
        let bridge = runtime
            .block_on(greentic_bridge::start(bridge_config))
            .expect("the bridge starts");
        let bridge_url = format!("http://{}", bridge.local_addr());
        host.set_variable("bridge_url", &bridge_url);
        host.set_variable("bridge_publish_token", PUBLISH_TOKEN);
        host.set_variable("bridge_delivery_token", DELIVERY_TOKEN);
        // Outbound calls to the bridge leave the process, as under Spin.
        let target = bridge_url.clone();
        host.serve_url(
            &bridge_url,
            Arc::new(move |req: &Request| forward(&target, req)),
        );

        let stack = Stack {
            runtime,
            nats,
            bridge: Some(bridge),
            front,
            slack_posts,
            slack_answer,
            host,
        };
        stack.eventually("the bridge is ready", || {
            stack.bridge.as_ref().unwrap().ready()
        });
        stack
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.front)
    }

    /// A Slack message event, signed as Slack signs it.
    fn slack(&self, event_id: &str, text: &str) -> (u16, Value) {
        let body = json!({
            "type": "event_callback", "team_id": "T123456", "event_id": event_id,
            "event": {"type": "message", "channel": "C789012", "user": "U1", "text": text, "ts": "1700000000.000100"}
        })
        .to_string();
        let timestamp = NOW_SECS.to_string();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SLACK_SECRET.as_bytes()).unwrap();
        mac.update(format!("v0:{timestamp}:{body}").as_bytes());
        let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
        http(
            "POST",
            &self.url("/webhooks/prod/acme/support/slack"),
            &[
                ("x-slack-request-timestamp", &timestamp),
                ("x-slack-signature", &signature),
            ],
            Some(body),
        )
    }

    fn eventually(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn posts(&self) -> Vec<Value> {
        self.slack_posts.lock().unwrap().clone()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(bridge) = self.bridge.take() {
            self.runtime.block_on(bridge.shutdown());
        }
        self.nats.stop();
    }
}

/// One blocking HTTP exchange; answers status and JSON body (`Null` if none).
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<String>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = agent
        .run(req.body(body.unwrap_or_default()).unwrap())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A component's outbound request to the bridge, sent over real HTTP.
fn forward(base: &str, req: &Request) -> Response {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut out = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(format!("{base}{}", req.path));
    for (name, value) in &req.headers {
        out = out.header(name.as_str(), value.as_slice());
    }
    match agent.run(out.body(req.body.clone()).unwrap()) {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().read_to_vec().unwrap_or_default();
            Response {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            }
        }
        // As a refused connection looks to a component under Spin.
        Err(e) => Response::json(
            503,
            &json!({ "detail": format!("bridge unreachable: {e}") }),
        ),
    }
}

/// The components behind one listener, routed as spin.toml routes them.
async fn serve_components(host: Arc<MemoryHost>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let host = host.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 2 << 20)
                .await
                .unwrap_or_default();
            let mut request = Request::new(parts.method.as_str(), &parts.uri.to_string())
                .with_body(body.to_vec());
            for (name, value) in &parts.headers {
                request = request.with_header(name.as_str(), value.as_bytes());
            }
            // Handlers are synchronous and call out (broker, bridge): keep
            // them off the async workers.
            let response = tokio::task::spawn_blocking(move || route(&request, host.as_ref()))
                .await
                .unwrap();
            let mut builder = axum::http::Response::builder().status(response.status);
            for (name, value) in &response.headers {
                builder = builder.header(name, value);
            }
            builder.body(axum::body::Body::from(response.body)).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Routes as spin.toml does (the test host's router reads it), then runs the
/// chosen component's native handler. The broker is served by chaining only.
fn route(req: &Request, host: &MemoryHost) -> Response {
    static ROUTER: std::sync::OnceLock<Router> = std::sync::OnceLock::new();
    let router = ROUTER.get_or_init(|| Router::new(&Manifest::of_workspace()).unwrap());
    let component = router.route(&req.path).map(|m| m.component);
    match component.as_deref() {
        Some(ingress::COMPONENT) => ingress::handle(req, host),
        Some(flow_executor::COMPONENT) => flow_executor::handle(req, host),
        Some(egress::COMPONENT) => egress::handle(req, host),
        Some(session_api::COMPONENT) => session_api::handle(req, host),
        Some(webchat::COMPONENT) => webchat::handle(req, host),
        // A panic here would surface as a dropped connection; say why instead.
        Some(other) => Response::json(
            500,
            &json!({ "detail": format!("the full-stack test does not serve {other}") }),
        ),
        None => Response {
            status: 404,
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}

/// A tenant's `messages_per_minute`, end to end: ingress publishes each
/// message with it, the bridge holds what is beyond it (never refusing the
/// webhook), the executor counts what was held, and the session API shows it.
#[test]
fn a_tenants_messages_beyond_its_rate_are_delayed_not_refused_and_counted() {
    let stack = Stack::start();
    stack.host.update_tenant("acme", |acme| {
        acme.tenant.limits.messages_per_minute = Some(60); // one a second
    });

    let started = Instant::now();
    for (event, text) in [("EvRATE1", "hi"), ("EvRATE2", "Dana"), ("EvRATE3", "12345")] {
        let (status, body) = stack.slack(event, text);
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("published")),
            "{body}"
        );
    }
    stack.eventually("four replies", || stack.posts().len() >= 4);
    // The first message took the bucket's one token; the next two waited
    // for a token each (one a second), in the session's order.
    assert!(
        started.elapsed() >= Duration::from_millis(1_900),
        "three messages at one a second took {:?}",
        started.elapsed()
    );
    let texts: Vec<Value> = stack
        .posts()
        .iter()
        .map(|p| p["body"]["text"].clone())
        .collect();
    assert_eq!(texts[2], "Thanks Dana! What is your order number?");
    assert!(
        texts[3]
            .as_str()
            .unwrap()
            .starts_with("Got it, order 12345.")
    );

    let auth = token("acme", "prod").bearer();
    let (status, usage) = http(
        "GET",
        &stack.url("/api/v1/usage"),
        &[("authorization", &auth), ("x-tenant-id", "acme")],
        None,
    );
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["totals"]["messages_in"], 3);
    assert_eq!(usage["totals"]["messages_delayed"], 2);
}

#[test]
fn a_slack_message_becomes_a_reply_through_nats_and_the_session_shows_it() {
    slack_conversation(Stack::start());
}

/// The same conversation with sessions and web chat logs on a real
/// redis-server, as SpinKube runs them.
#[test]
fn a_slack_conversation_works_with_the_stores_on_redis() {
    slack_conversation(Stack::on(Stores::Redis));
}

fn slack_conversation(stack: Stack) {
    let (status, body) = stack.slack("EvFULL1", "hi");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "published");
    stack.eventually("two replies reach Slack", || stack.posts().len() >= 2);
    let posts = stack.posts();
    assert_eq!(posts[0]["auth"], "Bearer xoxb-acme-support");
    assert_eq!(posts[0]["body"]["channel"], "C789012");
    assert_eq!(
        posts[0]["body"]["text"],
        "Welcome to ACME Support! How can I help?"
    );
    assert_eq!(posts[1]["body"]["text"], "May I have your name?");

    // Slack retries the same event: one message, no third reply.
    let (status, body) = stack.slack("EvFULL1", "hi");
    assert_eq!((status, &body["duplicate"]), (200, &json!(true)));
    let (status, _) = stack.slack("EvFULL2", "Dana");
    assert_eq!(status, 200);
    stack.eventually("the third reply", || stack.posts().len() >= 3);
    assert_eq!(
        stack.posts()[2]["body"]["text"],
        "Thanks Dana! What is your order number?"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stack.posts().len(), 3, "a provider retry produced a reply");

    let auth = token("acme", "prod").bearer();
    let (status, list) = http(
        "GET",
        &stack.url("/api/v1/sessions"),
        &[
            ("authorization", &auth),
            ("x-tenant-id", "acme"),
            ("x-team-id", "support"),
        ],
        None,
    );
    assert_eq!(status, 200, "{list}");
    let id = list["sessions"][0]["id"].as_str().unwrap().to_owned();
    let (_, session) = http(
        "GET",
        &stack.url(&format!("/api/v1/sessions/{id}")),
        &[
            ("authorization", &auth),
            ("x-tenant-id", "acme"),
            ("x-team-id", "support"),
        ],
        None,
    );
    assert_eq!(session["state"]["name"], "Dana");
    assert_eq!(session["status"], "waiting");
}

#[test]
fn a_reply_slack_refuses_is_dead_lettered_and_nats_down_is_503_for_the_provider() {
    let mut stack = Stack::start();
    *stack.slack_answer.lock().unwrap() = json!({ "ok": false, "error": "channel_not_found" });
    assert_eq!(stack.slack("EvDLQ", "hi").0, 200);
    // The bridge counts what it dead-lettered: (delivered, retried, dead-lettered).
    stack.eventually("the refused replies are dead-lettered", || {
        stack
            .bridge
            .as_ref()
            .unwrap()
            .metrics()
            .delivery_counts("egress")
            .2
            == 1
    });
    // Refused at the first of the turn's two replies; the second was never tried.
    assert_eq!(stack.posts().len(), 1);

    stack.nats.stop();
    stack.eventually("NATS is seen down", || {
        !stack.bridge.as_ref().unwrap().ready()
    });
    let (status, body) = stack.slack("EvDOWN", "hi");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:greentic:problem:unavailable");
    stack.nats.spawn();
    stack.eventually("NATS is back", || stack.bridge.as_ref().unwrap().ready());
    assert_eq!(
        stack.slack("EvDOWN", "hi").0,
        200,
        "the provider's retry gets through"
    );
}

/// The hybrid deployment model (README, "Deploying"): acme on a dedicated
/// instance, with its own stores, bridge and NATS, beside a shared instance
/// where acme was never applied. acme's webhook sent to the shared instance
/// is the bare 404 of an unknown channel and leaves nothing there: no key in
/// its stores, no message in its streams. Sent to the dedicated instance, it
/// is answered by acme's flow.
#[test]
fn hybrid_a_dedicated_tenants_messages_reach_only_its_own_instance() {
    let dedicated = Stack::start();
    let shared = Stack::start();
    let config = shared.host.store(greentic::store::config::STORE_LABEL);
    for key in config.snapshot().into_keys() {
        if key.starts_with("config/acme/") {
            greentic::store::kv::KeyValue::delete(config, &key).unwrap();
        }
    }

    let (status, body) = shared.slack("EvHYBRID1", "hi");
    assert_eq!(
        (status, &body["detail"]),
        (404, &json!("not found")),
        "{body}"
    );
    for label in ["sessions", "webchat", "egress", "limits", "config"] {
        let keys: Vec<String> = shared.host.store(label).snapshot().into_keys().collect();
        assert!(
            keys.iter().all(|k| !k.contains("acme")),
            "the shared {label} store holds {keys:?}"
        );
    }
    let metrics = shared.bridge.as_ref().unwrap().metrics();
    assert_eq!(metrics.published_count("GREENTIC_INGRESS"), (0, 0));

    let (status, body) = dedicated.slack("EvHYBRID2", "hi");
    assert_eq!(status, 200, "{body}");
    dedicated.eventually("acme's flow answers on its own instance", || {
        !dedicated.posts().is_empty()
    });
    assert!(shared.posts().is_empty());
}
