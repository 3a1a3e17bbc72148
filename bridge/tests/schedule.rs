//! Scheduled calls against fake endpoints: a run calls again while the answer
//! says `more`, up to `max_calls_per_run`, with the delivery token; a failure
//! ends the run; only replica 0 calls; shutdown stops a schedule mid-call.
//!
//! The fake endpoint answers from a script by call number and can hang a call
//! forever: a schedule whose call hangs makes no further call and ends no
//! further run, so the counts the test reads once it saw that call are final,
//! whatever the machine's load (no timing claim).

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use greentic_bridge::Config;
use support::*;

/// What the endpoint does with call `n` (1-based).
#[derive(Clone)]
enum Reply {
    Answer(u16, &'static str),
    /// Never answers (until the caller gives up).
    Hang,
}

const MORE: Reply = Reply::Answer(200, r#"{"examined":10,"deleted":4,"more":true}"#);
const DONE: Reply = Reply::Answer(200, r#"{"examined":3,"deleted":1,"more":false}"#);

/// What the endpoint saw of one call.
#[derive(Debug, Clone)]
struct Call {
    authorization: String,
    body: Bytes,
}

#[derive(Clone)]
struct SweeperState {
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<dyn Fn(usize) -> Reply + Send + Sync>,
}

/// A fake scheduled endpoint (axum on 127.0.0.1:0) that records every call.
struct Sweeper {
    url: String,
    state: SweeperState,
    task: tokio::task::JoinHandle<()>,
}

impl Sweeper {
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Sweeper {
        let state = SweeperState {
            calls: Arc::default(),
            script: Arc::new(script),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/internal/v1/sweeps/retention", axum::routing::post(sweep))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Sweeper {
            url: format!("http://{addr}/internal/v1/sweeps/retention"),
            state,
            task,
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Waits until it has seen `n` calls.
    async fn wait_calls(&self, n: usize) {
        eventually(&format!("{n} scheduled calls"), || async {
            self.calls().len() >= n
        })
        .await;
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn sweep(
    State(state): State<SweeperState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    let n = {
        let mut calls = state.calls.lock().unwrap();
        calls.push(Call {
            authorization: headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body,
        });
        calls.len()
    };
    match (state.script)(n) {
        Reply::Answer(status, body) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body,
        ),
        Reply::Hang => std::future::pending().await,
    }
}

/// A bridge config with `schedules`, as replica `replica` (e.g. "1/2") if given.
fn config_with(nats: &NatsServer, schedules: &[ScheduleSpec], replica: Option<&str>) -> Config {
    let mut text = String::new();
    if let Some(replica) = replica {
        text.push_str(&format!("replica = \"{replica}\"\n"));
    }
    text.push_str(&config_toml("127.0.0.1:0", &nats.url(), &[]));
    for s in schedules {
        text.push_str(&s.toml());
    }
    Config::from_toml(&text, Path::new("."), token_env).expect("test config")
}

fn counts(bridge: &Bridge) -> (u64, u64, u64) {
    bridge.running.metrics().schedule_counts("retention")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_calls_again_while_more_with_the_delivery_token() {
    let nats = NatsServer::start();
    // Run 1: more, more, done. Call 4 (run 2) hangs: the counts stay put.
    let sweeper = Sweeper::start(|n| match n {
        1 | 2 => MORE,
        3 => DONE,
        _ => Reply::Hang,
    })
    .await;
    let bridge = Bridge::start_ready(config_with(
        &nats,
        &[ScheduleSpec::retention(sweeper.url.clone())],
        None,
    ))
    .await;

    sweeper.wait_calls(4).await;
    // One run of exactly three calls ended ok; the fourth call is the next run's.
    assert_eq!(counts(&bridge), (1, 0, 4));
    let calls = sweeper.calls();
    assert_eq!(calls.len(), 4);
    for call in &calls {
        assert_eq!(call.authorization, format!("Bearer {DELIVERY_TOKEN}"));
        assert!(call.body.is_empty(), "an empty body");
    }

    let metrics = bridge.metrics_text().await;
    for line in [
        "greentic_bridge_schedule_runs_total{schedule=\"retention\",outcome=\"ok\"} 1",
        "greentic_bridge_schedule_runs_total{schedule=\"retention\",outcome=\"failed\"} 0",
        "greentic_bridge_schedule_calls_total{schedule=\"retention\"} 4",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line} in\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stops_at_max_calls_per_run_while_the_endpoint_says_more() {
    let nats = NatsServer::start();
    // Always more; call 4 (run 2, after the cap of 3) hangs.
    let sweeper = Sweeper::start(|n| if n <= 3 { MORE } else { Reply::Hang }).await;
    let schedule = ScheduleSpec {
        max_calls_per_run: 3,
        ..ScheduleSpec::retention(sweeper.url.clone())
    };
    let bridge = Bridge::start_ready(config_with(&nats, &[schedule], None)).await;

    sweeper.wait_calls(4).await;
    // Run 1 stopped at 3 calls (ok: bounded, the rest is for the next run),
    // and run 2 began with call 4.
    assert_eq!(counts(&bridge), (1, 0, 4));
    assert_eq!(sweeper.calls().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_or_an_answer_without_more_ends_the_run_as_failed() {
    let nats = NatsServer::start();
    let sweeper = Sweeper::start(|n| match n {
        // Run 1: a 500 with more work left, never called again in that run.
        1 => Reply::Answer(500, r#"{"more":true}"#),
        // Run 2: 200 without `more`.
        2 => Reply::Answer(200, r#"{"examined":1,"deleted":1}"#),
        // Run 3 works again; run 4 hangs.
        3 => DONE,
        _ => Reply::Hang,
    })
    .await;
    let bridge = Bridge::start_ready(config_with(
        &nats,
        &[ScheduleSpec::retention(sweeper.url.clone())],
        None,
    ))
    .await;

    sweeper.wait_calls(4).await;
    assert_eq!(counts(&bridge), (1, 2, 4), "(ok runs, failed runs, calls)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_ends_the_run_as_failed() {
    let nats = NatsServer::start();
    // Only the first call hangs; the bridge gives up on it after `timeout`.
    let sweeper = Sweeper::start(|n| if n == 1 { Reply::Hang } else { DONE }).await;
    let schedule = ScheduleSpec {
        timeout: "300ms",
        ..ScheduleSpec::retention(sweeper.url.clone())
    };
    let bridge = Bridge::start_ready(config_with(&nats, &[schedule], None)).await;

    eventually("a run after the timed-out one", || async {
        counts(&bridge).0 >= 1
    })
    .await;
    let (_, failed, _) = counts(&bridge);
    assert_eq!(failed, 1, "only the hung call failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_replica_0_calls_the_schedules() {
    let nats = NatsServer::start();
    let first = Sweeper::start(|_| DONE).await;
    let second = Sweeper::start(|_| DONE).await;
    // Started one after the other, the second (replica 1/2) first.
    let other = Bridge::start_ready(config_with(
        &nats,
        &[ScheduleSpec::retention(second.url.clone())],
        Some("1/2"),
    ))
    .await;
    let zero = Bridge::start_ready(config_with(
        &nats,
        &[ScheduleSpec::retention(first.url.clone())],
        Some("0/2"),
    ))
    .await;

    // Replica 0, started later, has run three times: replica 1 had every
    // chance to run too, and did not.
    first.wait_calls(3).await;
    assert!(second.calls().is_empty(), "replica 1/2 called its endpoint");
    assert_eq!(counts(&other), (0, 0, 0));
    assert!(counts(&zero).0 >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_schedule_waiting_for_its_call() {
    let nats = NatsServer::start();
    let sweeper = Sweeper::start(|_| Reply::Hang).await;
    // The call would wait 30 s; shutdown_timeout is 5 s.
    let bridge = Bridge::start_ready(config_with(
        &nats,
        &[ScheduleSpec::retention(sweeper.url.clone())],
        None,
    ))
    .await;
    sweeper.wait_calls(1).await;

    // Running::shutdown waits up to shutdown_timeout + 1 s (6 s here) for
    // tasks that do not stop, then aborts them: well within that means the
    // schedule stopped by itself.
    let started = Instant::now();
    bridge.running.shutdown().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?}: the schedule did not stop"
    );
    assert_eq!(sweeper.calls().len(), 1);
}
