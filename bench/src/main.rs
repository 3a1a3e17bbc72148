//! The platform's throughput under the real Spin, as bench/run prints it.
//!
//! For each key-value backend (SQLite, then Redis) it starts the product as
//! the real-Spin test suites do (nats-server, the bridge, `spin up` of
//! spin.toml, fake provider APIs) and a floor app (bench/floor: trivial
//! components doing only the I/O the product's components do), then measures:
//! - request rates with wrk (`-t2 -c16`): an empty component, the OpenAPI
//!   document, a session listing with a JWT, a Telegram webhook (verified
//!   through the broker, published with the JetStream ack), the floor under it;
//! - the flow executor alone: the first messages (each of a new person) the
//!   webhook phase left in the ingress stream, delivered by the bridge as
//!   fast as the executor takes them;
//! - egress alone: the replies those messages left waiting, sent to the
//!   fake Telegram API;
//! - the whole pipeline: a burst of webhooks as fast as ingress takes them,
//!   timed until every reply has come out at the fake Telegram API (so its
//!   rate includes ingress's own work);
//! - idle end-to-end latency: webhook sent to reply received, one at a time.
//!
//! Ratios are against the empty component of the same run. Figures move with
//! the machine and what else runs on it: compare runs of one machine.
//!
//! `--fairness` measures instead whether one tenant's flood slows another:
//! BigCorp's web chat sends a message every 100 ms (each a new conversation)
//! and times each until its reply is in the conversation's log, first alone,
//! then while wrk floods ACME's Telegram channel as fast as ingress takes it.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greentic_harness::spin_up::{Deliveries, Kv, RealPlatform, TELEGRAM_WEBHOOK_SECRET};

struct Args {
    backends: Vec<Kv>,
    seconds: u64,
    fairness: bool,
}

fn args() -> Args {
    let mut args = Args {
        backends: vec![Kv::Sqlite, Kv::Redis],
        seconds: 5,
        fairness: false,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < raw.len() {
        match raw[i].as_str() {
            "--sqlite" => args.backends = vec![Kv::Sqlite],
            "--redis" => args.backends = vec![Kv::Redis],
            "--seconds" => {
                i += 1;
                args.seconds = raw[i].parse().expect("--seconds takes a number");
            }
            "--fairness" => args.fairness = true,
            "--bench" => {} // cargo's own
            other => {
                panic!("unknown argument {other}: --sqlite | --redis | --seconds N | --fairness")
            }
        }
        i += 1;
    }
    args
}

/// What wrk measured.
struct Load {
    /// Requests answered 2xx or 3xx.
    ok: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// Tenants the session API phase spreads its calls over.
const API_CALLERS: usize = 256;

fn wrk(
    url: &str,
    seconds: u64,
    script: Option<&str>,
    headers: &[(&str, &str)],
    env: &[(&str, String)],
) -> Load {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c16", "--latency", "-d"])
        .arg(format!("{seconds}s"));
    if let Some(script) = script {
        cmd.arg("-s").arg(
            greentic_harness::workspace_dir()
                .join("bench/wrk")
                .join(script),
        );
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk runs (bench/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l[prefix.len()..].split_whitespace().next())
    };
    let ms = |v: &str| -> f64 {
        let (n, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
        let n: f64 = n.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => f64::NAN,
        }
    };
    let total: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Load {
        ok: total - non_2xx,
        per_sec: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: field("50%").map_or(f64::NAN, ms),
        p99_ms: field("99%").map_or(f64::NAN, ms),
        non_2xx,
    }
}

/// Waits until `delivery` has handled `count` messages since the bridge
/// started (delivered or dead-lettered), at most ten minutes.
fn wait_for(platform: &RealPlatform, delivery: &str, count: u64, started: Instant) {
    loop {
        let (delivered, _, dead) = platform.bridge_counts(delivery);
        if delivered + dead >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{delivery} stalled at {delivered} of {count}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the bridge with only `deliveries` (one of them) and times it
/// through `backlog` waiting messages; `what` names the row, `{}` the count.
fn drain(platform: &RealPlatform, deliveries: Deliveries, backlog: u64, what: &str) -> Row {
    let delivery = match deliveries {
        Deliveries::Ingress => "ingress",
        Deliveries::Egress => "egress",
        other => panic!("drain times one delivery, not {other:?}"),
    };
    platform.restart_bridge(deliveries);
    let started = Instant::now();
    wait_for(platform, delivery, backlog, started);
    let (delivered, retried, dead) = platform.bridge_counts(delivery);
    Row {
        what: what.replace("{}", &delivered.to_string()),
        rate: delivered as f64 / started.elapsed().as_secs_f64(),
        unit: "msg/s",
        detail: format!("retried {retried}, dead-lettered {dead}"),
    }
}

/// wrk sending Telegram webhooks, each a new person's first message, for
/// `seconds`; `phase` keeps the ids of a run's phases apart.
fn telegram_webhooks(platform: &RealPlatform, seconds: u64, run: &str, phase: u8) -> Load {
    wrk(
        &format!("{}/webhooks/prod/acme/support/telegram", platform.url),
        seconds,
        Some("telegram.lua"),
        &[],
        &[
            ("SECRET", TELEGRAM_WEBHOOK_SECRET.to_owned()),
            ("RUN", run.to_owned()),
            ("PHASE", phase.to_string()),
        ],
    )
}

fn run_id() -> String {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 1_000_000)
        .to_string()
}

struct Row {
    what: String,
    rate: f64,
    unit: &'static str,
    detail: String,
}

/// Percentile `q` (0..=100) of sorted `values`.
fn percentile(sorted: &[f64], q: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) * q + 50) / 100]
}

const BIGCORP_CHAT: &str = "/webhooks/prod/bigcorp/helpdesk/webchat";
const BIGCORP_GREETING: &str = "BigCorp Helpdesk here. What's your issue?";

/// A web chat conversation (its token issued before any timing).
struct Chat {
    bearer: String,
    conversation: String,
}

fn webchat_chat(platform: &RealPlatform) -> Chat {
    let (status, chat) = platform.call(
        "POST",
        &format!("{BIGCORP_CHAT}/tokens"),
        &[(
            "authorization",
            &format!("Bearer {}", greentic_harness::spin_up::WEBCHAT_TOKEN_SECRET),
        )],
        Some(br#"{"user_name":"Bench"}"#.to_vec()),
    );
    assert_eq!(status, 200, "{chat}");
    Chat {
        bearer: format!("Bearer {}", chat["token"].as_str().unwrap()),
        conversation: chat["conversation_id"].as_str().unwrap().to_string(),
    }
}

/// When each of BigCorp's replies was handed to egress: when the executor's
/// publish of it reached NATS, by conversation (a plain NATS subscription
/// beside the bridge's consumers).
struct EgressWatch {
    handed: Arc<Mutex<HashMap<String, Instant>>>,
    _runtime: tokio::runtime::Runtime,
}

impl EgressWatch {
    fn start(platform: &RealPlatform) -> EgressWatch {
        use futures::StreamExt;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let mut replies = runtime.block_on(async {
            let client = async_nats::connect(platform.nats_url()).await.unwrap();
            let replies = client
                .subscribe("greentic.messaging.egress.*.bigcorp.>")
                .await
                .unwrap();
            client.flush().await.unwrap();
            replies
        });
        let seen = handed.clone();
        runtime.spawn(async move {
            while let Some(reply) = replies.next().await {
                let at = Instant::now();
                let outbound: serde_json::Value =
                    serde_json::from_slice(&reply.payload).expect("an outbound envelope");
                let conversation = outbound["conversation"]["id"].as_str().unwrap();
                seen.lock()
                    .unwrap()
                    .entry(conversation.to_string())
                    .or_insert(at);
            }
        });
        EgressWatch {
            handed,
            _runtime: runtime,
        }
    }

    fn handed(&self, conversation: &str) -> Option<Instant> {
        self.handed.lock().unwrap().get(conversation).copied()
    }
}

/// One BigCorp message's timings, in milliseconds.
struct RoundTrip {
    /// From sending it until its reply is in the conversation's log (polled
    /// every 5 ms): what the visitor waits.
    visitor: f64,
    /// From its webhook's answer (accepted) until its reply was handed to
    /// egress: the issue's measure, the bridge's and the executor's share.
    accepted_to_egress: f64,
}

/// One web chat message in its own conversation, timed both ways.
fn webchat_round_trip(platform: &RealPlatform, watch: &EgressWatch, chat: &Chat) -> RoundTrip {
    let sent = Instant::now();
    let (status, body) = platform.call(
        "POST",
        BIGCORP_CHAT,
        &[("authorization", &chat.bearer)],
        Some(br#"{"type":"message","id":"m1","text":"hi"}"#.to_vec()),
    );
    let accepted = Instant::now();
    assert_eq!(status, 200, "{body}");
    loop {
        let (status, log) = platform.call(
            "GET",
            "/webchat/v1/prod/bigcorp/helpdesk/webchat/activities",
            &[("authorization", &chat.bearer)],
            None,
        );
        let replied = status == 200
            && log["activities"]
                .as_array()
                .is_some_and(|a| a.iter().any(|m| m["text"] == BIGCORP_GREETING));
        if replied {
            let visitor = sent.elapsed().as_secs_f64() * 1000.0;
            // Egress wrote the log after the reply was handed to it.
            let handed = watch
                .handed(&chat.conversation)
                .expect("the reply went through egress");
            return RoundTrip {
                visitor,
                accepted_to_egress: handed.saturating_duration_since(accepted).as_secs_f64()
                    * 1000.0,
            };
        }
        assert!(
            sent.elapsed() < Duration::from_secs(600),
            "no reply in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `count` web chat conversations.
fn webchat_chats(platform: &RealPlatform, count: u64) -> Vec<Chat> {
    (0..count).map(|_| webchat_chat(platform)).collect()
}

/// One phase's latencies, each sorted.
struct Latencies {
    visitor: Vec<f64>,
    accepted_to_egress: Vec<f64>,
}

/// BigCorp's messages, one every 100 ms, one per conversation, each timed to
/// its reply on a thread of its own (a slow reply does not delay the next send).
fn quiet_tenant(platform: &RealPlatform, watch: &EgressWatch, chats: &[Chat]) -> Latencies {
    let start = Instant::now();
    let trips: Vec<RoundTrip> = std::thread::scope(|scope| {
        let handles: Vec<_> = chats
            .iter()
            .enumerate()
            .map(|(i, chat)| {
                let due = start + Duration::from_millis(100 * i as u64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                scope.spawn(move || webchat_round_trip(platform, watch, chat))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sorted = |f: fn(&RoundTrip) -> f64| {
        let mut all: Vec<f64> = trips.iter().map(f).collect();
        all.sort_by(f64::total_cmp);
        all
    };
    Latencies {
        visitor: sorted(|t| t.visitor),
        accepted_to_egress: sorted(|t| t.accepted_to_egress),
    }
}

fn fairness(args: &Args) {
    let mut lines = Vec::new();
    for kv in args.backends.clone() {
        let name = format!("{kv:?}").to_lowercase();
        eprintln!("bench: fairness on {name}");
        let platform = RealPlatform::start_with(kv, Deliveries::Both);
        let watch = EgressWatch::start(&platform);
        // Tokens first: issuing them is not what is timed.
        let warm_up = webchat_chats(&platform, 10);
        let alone = webchat_chats(&platform, args.seconds * 10);
        let flooded = webchat_chats(&platform, args.seconds.saturating_sub(1).max(1) * 10);
        // The first requests of each component pay for compilation caches.
        quiet_tenant(&platform, &watch, &warm_up);
        let quiet = quiet_tenant(&platform, &watch, &alone);

        let run = run_id();
        let replies_before = platform.telegram_sends();
        let flood_started = Instant::now();
        let (flood, under_flood) = std::thread::scope(|scope| {
            let flood = scope.spawn(|| telegram_webhooks(&platform, args.seconds, &run, 0));
            // Starts with the flood, ends with it.
            std::thread::sleep(Duration::from_millis(200));
            let under = quiet_tenant(&platform, &watch, &flooded);
            (flood.join().unwrap(), under)
        });
        let flood_secs = flood_started.elapsed().as_secs_f64();
        // Every first message of ACME's gets two replies.
        let answered = (platform.telegram_sends() - replies_before) / 2;
        let cells = |quiet: &[f64], flooded: &[f64]| {
            format!(
                "{:.0} / {:.0} ms | {:.0} / {:.0} ms | {:.1}",
                percentile(quiet, 50),
                percentile(quiet, 99),
                percentile(flooded, 50),
                percentile(flooded, 99),
                percentile(flooded, 99) / percentile(quiet, 99),
            )
        };
        for (measure, quiet, flooded) in [
            (
                "accepted -> handed to egress",
                &quiet.accepted_to_egress,
                &under_flood.accepted_to_egress,
            ),
            (
                "sent -> reply in the visitor's log",
                &quiet.visitor,
                &under_flood.visitor,
            ),
        ] {
            lines.push(format!(
                "| {name} | {measure} | {} | {:.0} msg/s accepted, {:.0} msg/s answered, {} left waiting |",
                cells(quiet, flooded),
                flood.per_sec,
                answered as f64 / flood_secs,
                flood.ok.saturating_sub(answered as u64),
            ));
        }
    }
    println!();
    println!(
        "| backend | BigCorp's measure | alone p50 / p99 | under ACME's flood p50 / p99 | p99 ratio | ACME's flood |"
    );
    println!("|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
}

fn main() {
    let args = args();
    if args.fairness {
        return fairness(&args);
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut empty_rate = None;
    for kv in args.backends.clone() {
        let name = format!("{kv:?}").to_lowercase();
        eprintln!("bench: starting the platform on {name}");
        let platform = RealPlatform::start_with(kv, Deliveries::None);
        let floor = platform.start_floor();

        if empty_rate.is_none() {
            let empty = wrk(&format!("{floor}/empty"), args.seconds, None, &[], &[]);
            empty_rate = Some(empty.per_sec);
            rows.push(Row {
                what: "empty spin-sdk component".into(),
                rate: empty.per_sec,
                unit: "req/s",
                detail: format!("p50 {:.2} ms", empty.p50_ms),
            });
            let docs = wrk(
                &format!("{}/api/openapi.yaml", platform.url),
                args.seconds,
                None,
                &[],
                &[],
            );
            rows.push(Row {
                what: "GET /api/openapi.yaml".into(),
                rate: docs.per_sec,
                unit: "req/s",
                detail: format!("p50 {:.2} ms", docs.p50_ms),
            });
        }

        // Spread over tenants enough that none reaches its quota (wrk can
        // send 2,500 a second here; each caller gets 600 a minute). Each is
        // configured (a token of a tenant the instance lacks is refused).
        let document = greentic::flows::control::TenantDocument::from_bundle(
            greentic::testing::demo_bundle(),
            "acme",
        )
        .expect("the demo bundle has acme");
        let callers = (0..API_CALLERS)
            .map(|i| {
                let tenant = format!("bench-{i}");
                platform.apply_tenant(&tenant, &document);
                let bearer = platform.token(&tenant, "prod").bearer();
                format!("{tenant} {bearer}")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let sessions = wrk(
            &format!("{}/api/v1/sessions", platform.url),
            args.seconds,
            Some("sessions.lua"),
            &[],
            &[("TOKENS", callers)],
        );
        rows.push(Row {
            what: format!("GET /api/v1/sessions (JWT) [{name}]"),
            rate: sessions.per_sec,
            unit: "req/s",
            detail: format!(
                "p50 {:.2} ms, non-2xx {}",
                sessions.p50_ms, sessions.non_2xx
            ),
        });

        // Ingress alone: every request a new person's first message, stored
        // in the ingress stream (no deliveries yet).
        let run = run_id();
        let webhook = telegram_webhooks(&platform, args.seconds, &run, 0);
        rows.push(Row {
            what: format!("Telegram webhook -> verified -> acked publish [{name}]"),
            rate: webhook.per_sec,
            unit: "req/s",
            detail: format!(
                "p50 {:.2} ms, p99 {:.2} ms, non-2xx {}",
                webhook.p50_ms, webhook.p99_ms, webhook.non_2xx
            ),
        });
        let backlog = webhook.ok;
        // Ingress doing less, to say what each step of a webhook costs: only
        // the tenant's file (a channel it does not have: 404), then also the
        // broker's verification (a wrong secret: 401). Neither publishes.
        for (what, path, secret) in [
            (
                "ingress, tenant file only (unknown channel, 404)",
                "/webhooks/prod/acme/support/nochannel",
                TELEGRAM_WEBHOOK_SECRET,
            ),
            (
                "ingress, file + broker verification (wrong secret, 401)",
                "/webhooks/prod/acme/support/telegram",
                "not-the-secret",
            ),
        ] {
            let load = wrk(
                &format!("{}{path}", platform.url),
                args.seconds,
                Some("telegram.lua"),
                &[],
                &[
                    ("SECRET", secret.to_owned()),
                    ("RUN", run.clone()),
                    ("PHASE", "1".to_owned()),
                ],
            );
            rows.push(Row {
                what: format!("{what} [{name}]"),
                rate: load.per_sec,
                unit: "req/s",
                detail: format!(
                    "p50 {:.2} ms, refused {} of {}",
                    load.p50_ms,
                    load.non_2xx,
                    load.non_2xx + load.ok
                ),
            });
        }

        // The executor alone: those first messages, delivered by the bridge
        // as fast as the executor takes them (replies wait in their stream).
        rows.push(drain(
            &platform,
            Deliveries::Ingress,
            backlog,
            &format!("flow executor alone, {{}} first messages of as many people [{name}]"),
        ));
        // Egress alone: the replies those messages left waiting, sent to
        // the (fake) provider as fast as egress takes them.
        rows.push(drain(
            &platform,
            Deliveries::Egress,
            backlog,
            &format!("egress alone, {{}} replies of two texts [{name}]"),
        ));

        // The whole pipeline: idle latency one message at a time, then a flood.
        platform.restart_bridge(Deliveries::Both);
        let mut latencies = Vec::new();
        for i in 0..20 {
            let person = greentic_harness::spin_up::unique_number();
            let topic = greentic_harness::spin_up::unique_number();
            let sent = Instant::now();
            let (status, body) = platform.telegram(person, person, "hi", topic);
            assert_eq!(status, 200, "{body}");
            while platform.telegram_sends_in(topic) < 2 {
                assert!(
                    sent.elapsed() < Duration::from_secs(30),
                    "no reply to message {i}"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        // A burst as fast as ingress takes it, then until every message's
        // replies are out: the pipeline's capacity, ingress's work included.
        let replies_before = platform.telegram_sends();
        let started = Instant::now();
        let burst = telegram_webhooks(&platform, args.seconds, &run, 1);
        // Every first message gets two replies (ACME's greeting and question).
        let wanted = replies_before + 2 * burst.ok as usize;
        let (mut seen, mut moved) = (platform.telegram_sends(), Instant::now());
        while seen < wanted {
            std::thread::sleep(Duration::from_millis(10));
            let now = platform.telegram_sends();
            if now > seen {
                (seen, moved) = (now, Instant::now());
            }
            assert!(
                moved.elapsed() < Duration::from_secs(60),
                "the pipeline stalled at {} of {} replies",
                seen - replies_before,
                wanted - replies_before
            );
        }
        let pipeline = burst.ok as f64 / started.elapsed().as_secs_f64();
        rows.push(Row {
            what: format!("whole pipeline: webhook -> NATS -> executor -> NATS -> egress -> Telegram, {} messages [{name}]", burst.ok),
            rate: pipeline,
            unit: "msg/s",
            detail: format!(
                "pipeline / ingress alone = {:.2} (ingress took the burst at {:.0}/s)",
                pipeline / webhook.per_sec,
                burst.per_sec
            ),
        });
        rows.push(Row {
            what: format!("idle end-to-end latency, webhook -> reply at Telegram [{name}]"),
            rate: latencies[latencies.len() / 2],
            unit: "ms p50",
            detail: format!("p95 {:.1} ms", latencies[latencies.len() * 95 / 100]),
        });

        // The floor under ingress, last: what it publishes piles up unread.
        platform.restart_bridge(Deliveries::None);
        let floor_load = wrk(
            &format!("{floor}/floor"),
            args.seconds,
            Some("floor.lua"),
            &[],
            &[("RUN", run)],
        );
        rows.push(Row {
            what: format!("floor: body + file + chained KV get + publish [{name}]"),
            rate: floor_load.per_sec,
            unit: "req/s",
            detail: format!(
                "ingress / floor = {:.2}",
                webhook.per_sec / floor_load.per_sec
            ),
        });
    }

    let empty = empty_rate.unwrap_or(f64::NAN);
    println!();
    println!("| what | rate | vs empty component | detail |");
    println!("|---|---|---|---|");
    for row in &rows {
        let ratio = if row.unit.ends_with("/s") {
            format!("{:.2}", row.rate / empty)
        } else {
            String::new()
        };
        println!(
            "| {} | {:.1} {} | {} | {} |",
            row.what, row.rate, row.unit, ratio, row.detail
        );
    }
}
