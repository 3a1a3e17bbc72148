//! Publish throughput with acks: through the bridge over HTTP vs. directly with
//! async-nats, same nats-server, same concurrency, same run.
//!
//! `cargo bench -p greentic-bridge --bench publish_throughput`
//! (env: BENCH_MESSAGES, default 20000; BENCH_CONCURRENCY, default 32; 1 KiB payloads).
//! Both sides wait for the JetStream ack of every message and send a
//! `Nats-Msg-Id`, so the server does the same dedupe work for both. The bridge
//! is the real binary in its own process (logging at info, to /dev/null); the
//! HTTP load generator is a bare hyper HTTP/1.1 client with one keep-alive
//! connection per in-flight slot. Everything shares the machine's cores, so the
//! run also prints CPU time per message for each process (from /proc), which
//! says what the bridge itself costs independently of the machine's size.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use support::*;

const PAYLOAD_BYTES: usize = 1024;

/// CPU seconds (user + system) a process has used so far, from /proc (Linux).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 here; USER_HZ = 100.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU used by the load generator (this process), the bridge and nats-server.
#[derive(Clone, Copy)]
struct Cpu {
    client: f64,
    bridge: f64,
    nats: f64,
}

impl Cpu {
    fn now(bridge: u32, nats: u32) -> Cpu {
        Cpu {
            client: cpu_secs(std::process::id()),
            bridge: cpu_secs(bridge),
            nats: cpu_secs(nats),
        }
    }

    /// Microseconds of CPU per message since `before`.
    fn per_message(self, before: Cpu, messages: usize) -> String {
        let us = |a: f64, b: f64| (a - b) * 1e6 / messages as f64;
        format!(
            "CPU/msg: load generator {:.0} us, bridge {:.0} us, nats-server {:.0} us",
            us(self.client, before.client),
            us(self.bridge, before.bridge),
            us(self.nats, before.nats)
        )
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `total` publishes with `concurrency` in flight; returns messages/s.
async fn direct(
    js: &async_nats::jetstream::Context,
    run: &str,
    total: usize,
    concurrency: usize,
) -> f64 {
    let payload = Bytes::from(payload(0, PAYLOAD_BYTES));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let js = js.clone();
        let payload = payload.clone();
        let run = run.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(concurrency) {
                let ack = js
                    .send_publish(
                        INGRESS_SUBJECT,
                        PublishMessage::build()
                            .payload(payload.clone())
                            .message_id(format!("{run}-{i}")),
                    )
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
                assert!(!ack.duplicate);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTP/1.1 connection per in-flight slot: the leanest client
/// (the load generator shares the machine's two cores with what it measures).
async fn connect(host: &str) -> Sender {
    let tcp = tokio::net::TcpStream::connect(host)
        .await
        .expect("bridge reachable");
    tcp.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn via_bridge(host: &str, run: &str, total: usize, concurrency: usize) -> f64 {
    let payload = Bytes::from(payload(0, PAYLOAD_BYTES));
    let path = format!("/v1/publish/{INGRESS_SUBJECT}");
    let auth = format!("Bearer {PUBLISH_TOKEN}");
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        senders.push(connect(host).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (w, mut sender) in senders.into_iter().enumerate() {
        let (payload, path, auth, host) = (
            payload.clone(),
            path.clone(),
            auth.clone(),
            host.to_string(),
        );
        let run = run.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(concurrency) {
                let request = Request::post(path.as_str())
                    .header("host", host.as_str())
                    .header("authorization", auth.as_str())
                    .header("nats-msg-id", format!("{run}-{i}"))
                    .header("content-type", "application/json")
                    .body(Full::new(payload.clone()))
                    .unwrap();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.expect("bridge answers");
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Reference: the same HTTP round trips without NATS (`GET /healthz`).
async fn http_only(host: &str, total: usize, concurrency: usize) -> f64 {
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        senders.push(connect(host).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (w, mut sender) in senders.into_iter().enumerate() {
        let host = host.to_string();
        tasks.push(tokio::spawn(async move {
            for _ in (w..total).step_by(concurrency) {
                let request = Request::get("/healthz")
                    .header("host", host.as_str())
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.expect("bridge answers");
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let total = if quick {
        500
    } else {
        env_usize("BENCH_MESSAGES", 20_000)
    };
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let nats = NatsServer::start();
        // The bridge runs as its own process, as deployed (logging at info to /dev/null).
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config_path = dir.path().join("bridge.toml");
        std::fs::write(
            &config_path,
            config_toml(&format!("127.0.0.1:{port}"), &nats.url(), &[]),
        )
        .unwrap();
        let bridge = BridgeProcess::spawn(&config_path, port, std::path::Path::new("/dev/null"));
        bridge.wait_healthy().await;
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let host = bridge.base.trim_start_matches("http://").to_string();

        // Warm up both paths (connections, stream files).
        direct(&js, "warm-d", 500.min(total), concurrency).await;
        via_bridge(&host, "warm-b", 500.min(total), concurrency).await;

        println!(
            "publish with ack, {total} messages x {PAYLOAD_BYTES} B, {concurrency} in flight"
        );
        let (bridge_pid, nats_pid) = (bridge.pid(), nats.pid().unwrap());
        let mut rounds = Vec::new();
        for round in 1..=3 {
            let t0 = Cpu::now(bridge_pid, nats_pid);
            let d = direct(&js, &format!("d{round}"), total, concurrency).await;
            let t1 = Cpu::now(bridge_pid, nats_pid);
            let b = via_bridge(&host, &format!("b{round}"), total, concurrency).await;
            let t2 = Cpu::now(bridge_pid, nats_pid);
            rounds.push((b / d, d, b));
            println!(
                "round {round}: direct async-nats {d:>8.0} msg/s | via bridge (HTTP) {b:>8.0} msg/s | ratio {:.2}",
                b / d
            );
            println!("  direct     {}", t1.per_message(t0, total));
            println!("  via bridge {}", t2.per_message(t1, total));
        }
        let h = http_only(&host, total, concurrency).await;
        println!("reference: HTTP round trips alone (GET /healthz, no NATS) {h:>8.0} req/s");
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, d, b) = rounds[rounds.len() / 2];
        println!(
            "median round: direct {d:.0} msg/s, via bridge {b:.0} msg/s, ratio bridge/direct {ratio:.2}"
        );
        assert!(bridge.terminate().success());
    });
}
