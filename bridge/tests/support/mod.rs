//! Fixtures shared by the bridge's integration tests: a real nats-server per
//! test, the bridge (in-process or as its binary), fake receivers, and polling.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use greentic_bridge::{Config, Running};

pub use greentic_bridge::testing::*;

/// An HTTP client for tests (after selecting the TLS provider reqwest needs).
pub fn http_client() -> reqwest::Client {
    greentic_bridge::init_tls();
    reqwest::Client::new()
}

/// A plain client of the test's nats-server, to look at what the bridge stored.
pub async fn js(nats: &NatsServer) -> async_nats::jetstream::Context {
    let client = async_nats::connect(nats.url()).await.unwrap();
    async_nats::jetstream::new(client)
}

/// Message `seq` of `stream` as JetStream stores it (subject, headers, payload).
pub async fn stored_message(
    js: &async_nats::jetstream::Context,
    stream: &str,
    seq: u64,
) -> async_nats::jetstream::message::StreamMessage {
    js.get_stream(stream)
        .await
        .unwrap()
        .get_raw_message(seq)
        .await
        .unwrap()
}

/// Every message `stream` still holds, in stream order (gaps, such as
/// purged messages, skipped).
pub async fn stored_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    let mut handle = js.get_stream(stream).await.unwrap();
    let state = handle.info().await.unwrap().state.clone();
    let mut messages = Vec::new();
    if state.messages == 0 {
        return messages;
    }
    for seq in state.first_sequence..=state.last_sequence {
        match handle.get_raw_message(seq).await {
            Ok(message) => messages.push(message),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
            Err(e) => panic!("{stream} seq {seq}: {e}"),
        }
    }
    assert_eq!(messages.len() as u64, state.messages, "{stream}");
    messages
}

pub async fn stream_len(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

// ---- the bridge in-process -------------------------------------------------------

pub struct Bridge {
    pub running: Running,
    pub base: String,
    pub http: reqwest::Client,
}

impl Bridge {
    pub async fn start(config: Config) -> Bridge {
        let running = greentic_bridge::start(config).await.expect("bridge starts");
        let base = format!("http://{}", running.local_addr());
        Bridge {
            running,
            base,
            http: http_client(),
        }
    }

    /// Starts and waits until `/healthz` says ready.
    pub async fn start_ready(config: Config) -> Bridge {
        let bridge = Self::start(config).await;
        bridge.wait_healthy(true).await;
        bridge
    }

    pub async fn wait_healthy(&self, healthy: bool) {
        let url = format!("{}/healthz", self.base);
        let http = self.http.clone();
        eventually(
            &format!("healthz {}", if healthy { 200 } else { 503 }),
            || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let status = http.get(&url).send().await.map(|r| r.status().as_u16());
                    status.ok() == Some(if healthy { 200 } else { 503 })
                }
            },
        )
        .await;
    }

    /// `GET /metrics` as text (Prometheus exposition).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn publish(&self, subject: &str, msg_id: &str, body: &str) -> reqwest::Response {
        self.publish_with(subject, Some(msg_id), Some(PUBLISH_TOKEN), body.to_string())
            .await
    }

    pub async fn publish_with(
        &self,
        subject: &str,
        msg_id: Option<&str>,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        publish_to(&self.http, &self.base, subject, msg_id, token, body).await
    }

    /// Publishes as a message of `session` (`Greentic-Session`); asserts the 200.
    pub async fn publish_in_session(&self, subject: &str, msg_id: &str, session: &str, body: &str) {
        let response = self
            .http
            .post(format!("{}/v1/publish/{subject}", self.base))
            .bearer_auth(PUBLISH_TOKEN)
            .header("Nats-Msg-Id", msg_id)
            .header("Greentic-Session", session)
            .body(body.to_string())
            .send()
            .await
            .expect("bridge reachable");
        assert_eq!(response.status(), 200, "publish {msg_id}");
    }

    /// Publishes `{}` with `Nats-Msg-Id` and the extra `headers`; the answer as is.
    pub async fn publish_headers(
        &self,
        subject: &str,
        msg_id: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/publish/{subject}", self.base))
            .bearer_auth(PUBLISH_TOKEN)
            .header("Nats-Msg-Id", msg_id);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body("{}").send().await.expect("bridge reachable")
    }

    /// Publishes as a message of `session` from a tenant limited to `rate`
    /// per minute (`Greentic-Rate`); asserts the 200.
    pub async fn publish_rated(&self, subject: &str, msg_id: &str, session: &str, rate: u32) {
        let rate = rate.to_string();
        let response = self
            .publish_headers(
                subject,
                msg_id,
                &[("Greentic-Session", session), ("Greentic-Rate", &rate)],
            )
            .await;
        assert_eq!(response.status(), 200, "publish {msg_id}");
    }
}

pub async fn publish_to(
    http: &reqwest::Client,
    base: &str,
    subject: &str,
    msg_id: Option<&str>,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = http.post(format!("{base}/v1/publish/{subject}")).body(body);
    if let Some(id) = msg_id {
        request = request.header("Nats-Msg-Id", id);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("bridge reachable")
}

/// Asserts a problem+json answer with `status` and slug.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    slug: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "content type"
    );
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["type"], format!("urn:greentic:problem:{slug}"));
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

// ---- the bridge as a process ------------------------------------------------------

/// The real binary, for restarts and signals.
pub struct BridgeProcess {
    child: Child,
    pub base: String,
}

impl BridgeProcess {
    pub fn spawn(config_path: &Path, port: u16, log: &Path) -> BridgeProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_greentic-bridge"))
            .arg("--config")
            .arg(config_path)
            .env("GREENTIC_BRIDGE_PUBLISH_TOKEN", PUBLISH_TOKEN)
            .env("GREENTIC_BRIDGE_DELIVERY_TOKEN", DELIVERY_TOKEN)
            .env(
                "RUST_LOG",
                std::env::var("BRIDGE_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn greentic-bridge");
        BridgeProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn wait_healthy(&self) {
        let url = format!("{}/healthz", self.base);
        eventually("bridge process healthy", || {
            let url = url.clone();
            async move {
                http_client()
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 200)
            }
        })
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful shutdown starts).
    pub fn signal_term(&self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    }

    /// Waits for the process to exit.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal_term();
        self.wait()
    }

    /// SIGKILL: a crash, nothing finishes.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- fake receivers ---------------------------------------------------------------

/// What a receiver saw of one delivery.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub msg_id: String,
    pub attempt: u32,
    pub seq: u64,
    /// `X-Greentic-Session`, empty when absent.
    pub session: String,
    /// `X-Greentic-Delayed-Ms`, `None` when absent.
    pub delayed_ms: Option<u64>,
    /// When the receiver got it (before any gate or delay).
    pub at: Instant,
    pub authorization: String,
    pub content_type: String,
    pub body: Bytes,
}

type Answer = Arc<dyn Fn(&Received) -> (u16, String) + Send + Sync>;
type Delay = Arc<dyn Fn(&Received) -> Duration + Send + Sync>;

/// Deliveries in flight per key (a session, a subject): now, and the most ever.
#[derive(Clone, Default)]
struct InFlightBy(Arc<Mutex<std::collections::HashMap<String, (usize, usize)>>>);

impl InFlightBy {
    fn enter(&self, key: &str) {
        let mut keys = self.0.lock().unwrap();
        let (now, most) = keys.entry(key.to_string()).or_default();
        *now += 1;
        *most = (*most).max(*now);
    }

    fn leave(&self, key: &str) {
        self.0.lock().unwrap().get_mut(key).unwrap().0 -= 1;
    }

    fn most_of(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).map_or(0, |(_, most)| *most)
    }

    fn most_of_any(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .values()
            .map(|(_, most)| *most)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Clone)]
struct ReceiverState {
    seen: Arc<Mutex<Vec<Received>>>,
    answer: Answer,
    delay: Delay,
    /// While false, answers wait (deliveries stay in flight).
    gate: tokio::sync::watch::Receiver<bool>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    /// By `X-Greentic-Session` (deliveries without one are not counted).
    session_in_flight: InFlightBy,
    subject_in_flight: InFlightBy,
}

/// An HTTP endpoint that records deliveries and answers as told.
pub struct Receiver {
    pub url: String,
    state: ReceiverState,
    gate: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers every delivery with `answer(received)`, after `delay`.
    pub async fn start(
        delay: Duration,
        answer: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> Receiver {
        Self::start_gated(delay, true, answer).await
    }

    /// Like [`Receiver::start`]; with `open = false` every answer waits for [`Receiver::open`].
    pub async fn start_gated(
        delay: Duration,
        open: bool,
        answer: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> Receiver {
        Self::start_varied(move |_| delay, open, answer).await
    }

    /// Like [`Receiver::start_gated`], each answer after `delay(received)`.
    pub async fn start_varied(
        delay: impl Fn(&Received) -> Duration + Send + Sync + 'static,
        open: bool,
        answer: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> Receiver {
        let (gate, gate_rx) = tokio::sync::watch::channel(open);
        let state = ReceiverState {
            seen: Arc::default(),
            answer: Arc::new(answer),
            delay: Arc::new(delay),
            gate: gate_rx,
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            session_in_flight: InFlightBy::default(),
            subject_in_flight: InFlightBy::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/deliveries", axum::routing::post(receive))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/deliveries"),
            state,
            gate,
            task,
        }
    }

    pub async fn ok() -> Receiver {
        Self::start(Duration::ZERO, |_| (200, String::new())).await
    }

    /// Lets waiting and future answers go.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    pub fn seen(&self) -> Vec<Received> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// The most deliveries of one subject ever in flight at once.
    pub fn max_in_flight_of(&self, subject: &str) -> usize {
        self.state.subject_in_flight.most_of(subject)
    }

    /// The most deliveries of one session (by `X-Greentic-Session`) ever in flight at once.
    pub fn max_session_in_flight(&self) -> usize {
        self.state.session_in_flight.most_of_any()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let h = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let received = Received {
        subject: h("x-greentic-subject"),
        msg_id: h("x-greentic-msg-id"),
        attempt: h("x-greentic-attempt").parse().unwrap_or(0),
        seq: h("x-greentic-stream-seq").parse().unwrap_or(0),
        session: h("x-greentic-session"),
        delayed_ms: headers.get("x-greentic-delayed-ms").map(|v| {
            v.to_str()
                .unwrap()
                .parse()
                .expect("delayed ms is an integer")
        }),
        at: Instant::now(),
        authorization: h("authorization"),
        content_type: h("content-type"),
        body,
    };
    if !received.session.is_empty() {
        state.session_in_flight.enter(&received.session);
    }
    state.subject_in_flight.enter(&received.subject);
    state.seen.lock().unwrap().push(received.clone());
    let _ = state.gate.clone().wait_for(|open| *open).await;
    let delay = (state.delay)(&received);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, body) = (state.answer)(&received);
    if !received.session.is_empty() {
        state.session_in_flight.leave(&received.session);
    }
    state.subject_in_flight.leave(&received.subject);
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/problem+json")],
        body,
    )
}

/// A problem+json body with `detail`.
pub fn problem_body(status: u16, detail: &str) -> String {
    serde_json::json!({
        "type": "urn:greentic:problem:test",
        "title": "Test failure",
        "status": status,
        "detail": detail,
    })
    .to_string()
}

/// Waits until every consumer of `delivery` (one per partition) has no
/// unacknowledged or pending message.
pub async fn wait_settled(js: &async_nats::jetstream::Context, stream: &str, delivery: &str) {
    use futures::TryStreamExt;
    eventually("consumers settled", || async {
        let stream = js.get_stream(stream).await.unwrap();
        let infos: Vec<_> = stream.consumers().try_collect().await.unwrap();
        let mine: Vec<_> = infos
            .iter()
            .filter(|i| i.name.starts_with(&format!("{delivery}-p")))
            .collect();
        !mine.is_empty()
            && mine
                .iter()
                .all(|i| i.num_ack_pending == 0 && i.num_pending == 0)
    })
    .await;
}

// ---- polling ---------------------------------------------------------------------

/// Polls `check` until it holds; fails after 30 s (an eventual condition, not a timing claim).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A JSON payload of exactly `size` bytes (at least 16).
pub fn payload(n: usize, size: usize) -> String {
    let head = format!(r#"{{"n":{n},"pad":""#);
    let pad = "x".repeat(size.saturating_sub(head.len() + 2));
    format!("{head}{pad}\"}}")
}

/// The JSON body of a response.
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON body")
}
