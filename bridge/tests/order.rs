//! Order and turns, against a real nats-server: one session's messages reach
//! the endpoint one at a time in stream order (retries included), sessions
//! run in parallel, and tenants take turns within what the bridge pulled.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

const SUBJECT_B: &str = "greentic.messaging.ingress.prod.bigcorp.default.web";

/// Stream sequences of the 2xx-answered deliveries, per session, in the order received.
fn by_session(seen: &[Received]) -> HashMap<String, Vec<u64>> {
    let mut sessions: HashMap<String, Vec<u64>> = HashMap::new();
    for r in seen {
        sessions.entry(r.session.clone()).or_default().push(r.seq);
    }
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sessions_messages_arrive_one_at_a_time_in_stream_order() {
    let nats = NatsServer::start();
    // Uneven answer times: without ordering, a later message of a session
    // would often overtake an earlier one.
    let receiver = Receiver::start_varied(
        |r| Duration::from_millis([15, 1, 7, 3][r.seq as usize % 4]),
        true,
        |_| (200, String::new()),
    )
    .await;
    let spec = DeliverySpec {
        concurrency: 16,
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let _bridge = Bridge::start_ready(config(&nats.url(), &[spec])).await;
    let bridge = &_bridge;
    // 50 messages of one person, sent as fast as possible, interleaved with
    // 3 other sessions' so that parallelism is possible.
    let mut published = 0;
    for n in 0..50 {
        for session in ["s-dana", "s-2", "s-3", "s-4"] {
            if session == "s-dana" || n < 10 {
                bridge
                    .publish_in_session(INGRESS_SUBJECT, &format!("{session}-{n}"), session, "{}")
                    .await;
                published += 1;
            }
        }
    }
    eventually("all delivered", || async {
        receiver.seen().len() >= published
    })
    .await;

    let seen = receiver.seen();
    assert_eq!(seen.len(), published, "each message delivered once");
    for (session, seqs) in by_session(&seen) {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "{session} applied out of stream order");
    }
    assert_eq!(by_session(&seen)["s-dana"].len(), 50);
    assert_eq!(
        receiver.max_session_in_flight(),
        1,
        "two messages of one session were in flight at once"
    );
    assert!(
        receiver.max_in_flight() >= 2,
        "different sessions did not run in parallel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_message_is_not_overtaken_by_its_sessions_next_one() {
    let nats = NatsServer::start();
    // The second message fails twice, then succeeds.
    let receiver = Receiver::start(Duration::ZERO, |r| {
        if r.msg_id == "m2" && r.attempt < 3 {
            (503, problem_body(503, "busy"))
        } else {
            (200, String::new())
        }
    })
    .await;
    let spec = DeliverySpec {
        concurrency: 8,
        max_attempts: 5,
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let bridge = Bridge::start_ready(config(&nats.url(), &[spec])).await;
    for n in 1..=5 {
        bridge
            .publish_in_session(INGRESS_SUBJECT, &format!("m{n}"), "s-1", "{}")
            .await;
    }
    eventually("m5 delivered", || async {
        receiver.seen().iter().any(|r| r.msg_id == "m5")
    })
    .await;

    let order: Vec<(String, u32)> = receiver
        .seen()
        .iter()
        .map(|r| (r.msg_id.clone(), r.attempt))
        .collect();
    let expected: Vec<(String, u32)> = [
        ("m1", 1),
        ("m2", 1),
        ("m2", 2),
        ("m2", 3),
        ("m3", 1),
        ("m4", 1),
        ("m5", 1),
    ]
    .iter()
    .map(|(id, attempt)| (id.to_string(), *attempt))
    .collect();
    assert_eq!(order, expected);
    assert_eq!(
        bridge.running.metrics().delivery_counts("ingress"),
        (5, 2, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tenant_takes_its_turn_before_a_noisy_tenants_backlog() {
    let nats = NatsServer::start();
    // Closed at first: the noisy tenant's first messages occupy every slot
    // while the rest, and then the quiet tenant's one, are pulled behind them.
    let receiver =
        Receiver::start_gated(Duration::from_millis(5), false, |_| (200, String::new())).await;
    let spec = DeliverySpec {
        concurrency: 2,
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let bridge = Bridge::start_ready(config(&nats.url(), &[spec])).await;
    for n in 0..6 {
        bridge
            .publish_in_session(
                INGRESS_SUBJECT,
                &format!("noisy-{n}"),
                &format!("a{n}"),
                "{}",
            )
            .await;
    }
    bridge
        .publish_in_session(SUBJECT_B, "quiet-0", "b0", "{}")
        .await;
    // The window is 4 x concurrency = 8 messages: all 7 are pulled.
    eventually("the first two started", || async {
        receiver.seen().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    receiver.open();
    eventually("all delivered", || async { receiver.seen().len() == 7 }).await;

    let order: Vec<String> = receiver.seen().iter().map(|r| r.msg_id.clone()).collect();
    let quiet = order.iter().position(|id| id == "quiet-0").unwrap();
    // Stream order would put it last (7th); taking turns, it starts with the
    // first free slot after the two that held them.
    assert!(
        quiet <= 3,
        "quiet tenant's message started {}th: {order:?}",
        quiet + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_header_that_is_not_an_id_is_refused() {
    let nats = NatsServer::start();
    let bridge = Bridge::start_ready(config(&nats.url(), &[])).await;
    let response = bridge
        .http
        .post(format!("{}/v1/publish/{INGRESS_SUBJECT}", bridge.base))
        .bearer_auth(PUBLISH_TOKEN)
        .header("Nats-Msg-Id", "m1")
        .header("Greentic-Session", "a b")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "bad-request").await;
    let js = js(&nats).await;
    assert_eq!(stream_len(&js, "GREENTIC_INGRESS").await, 0);
}
