//! Push deliveries against a real nats-server and fake receivers: headers, acks,
//! retries with backoff, dead letters with their reason, bounded concurrency.

mod support;

use std::time::Duration;

use async_nats::jetstream::message::StreamMessage as RawMessage;
use support::*;

/// The `n`th (1-based) dead letter, once it exists.
async fn dead_letter(js: &async_nats::jetstream::Context, n: u64) -> RawMessage {
    eventually("a dead letter", || async {
        stream_len(js, "GREENTIC_DLQ").await >= n
    })
    .await;
    stored_message(js, "GREENTIC_DLQ", n).await
}

fn header<'a>(m: &'a RawMessage, name: &str) -> &'a str {
    m.headers
        .get(name)
        .unwrap_or_else(|| panic!("dead letter without {name}"))
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_delivered_with_its_headers_and_acked() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    let js = js(&nats).await;

    let r = bridge
        .publish(INGRESS_SUBJECT, "slack:T1:Ev1", r#"{"text":"hi"}"#)
        .await;
    assert_eq!(r.status(), 200);

    eventually("delivery", || async { !receiver.seen().is_empty() }).await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let d = &seen[0];
    assert_eq!(d.subject, INGRESS_SUBJECT);
    assert_eq!(d.msg_id, "slack:T1:Ev1");
    assert_eq!(d.attempt, 1);
    assert_eq!(d.seq, 1);
    assert_eq!(d.authorization, format!("Bearer {DELIVERY_TOKEN}"));
    assert_eq!(d.content_type, "application/json");
    assert_eq!(&d.body[..], br#"{"text":"hi"}"#);
    assert_eq!(
        bridge.running.metrics().delivery_counts("ingress"),
        (1, 0, 0)
    );
    assert_eq!(stream_len(&js, "GREENTIC_DLQ").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_then_200_is_retried_then_delivered() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(Duration::ZERO, |r| {
        if r.attempt == 1 {
            (500, problem_body(500, "store busy"))
        } else {
            (200, String::new())
        }
    })
    .await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    let js = js(&nats).await;

    bridge.publish(INGRESS_SUBJECT, "retry-1", "{}").await;
    eventually("second attempt", || async { receiver.seen().len() >= 2 }).await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;

    let attempts: Vec<u32> = receiver.seen().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2]);
    assert!(
        receiver
            .seen()
            .iter()
            .all(|r| r.msg_id == "retry-1" && r.seq == 1)
    );
    assert_eq!(
        bridge.running.metrics().delivery_counts("ingress"),
        (1, 1, 0)
    );
    assert_eq!(stream_len(&js, "GREENTIC_DLQ").await, 0);
}

/// A component that refuses the bridge's token (mid-rotation) must not cost
/// the message: it is held past `max_attempts` until the token is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_token_is_retried_not_dead_lettered() {
    let nats = NatsServer::start();
    // Refused past the test config's max_attempts (3), then accepted.
    let receiver = Receiver::start(Duration::ZERO, |r| match r.attempt {
        1 | 3 => (401, problem_body(401, "bad delivery token")),
        2 | 4 => (403, problem_body(403, "not the bridge")),
        _ => (200, String::new()),
    })
    .await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    let js = js(&nats).await;

    bridge.publish(INGRESS_SUBJECT, "rotating-1", "{}").await;
    eventually("fifth attempt", || async { receiver.seen().len() >= 5 }).await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;

    let attempts: Vec<u32> = receiver.seen().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5]);
    assert_eq!(
        bridge.running.metrics().delivery_counts("ingress"),
        (1, 4, 0)
    );
    assert_eq!(stream_len(&js, "GREENTIC_DLQ").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_always_fails_gets_the_message_dead_lettered_after_max_attempts() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(Duration::ZERO, |r| {
        (
            503,
            problem_body(503, &format!("flow store down (attempt {})", r.attempt)),
        )
    })
    .await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    let js = js(&nats).await;

    bridge
        .publish(INGRESS_SUBJECT, "slack:T1:Ev9", r#"{"text":"lost?"}"#)
        .await;
    let dlq = dead_letter(&js, 1).await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;

    // max_attempts = 3 in the test spec: three attempts, then the dead letter.
    let attempts: Vec<u32> = receiver.seen().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(
        dlq.subject.as_str(),
        "greentic.dlq.messaging.ingress.prod.acme.support.slack"
    );
    assert_eq!(&dlq.payload[..], br#"{"text":"lost?"}"#);
    assert_eq!(header(&dlq, "Greentic-Original-Subject"), INGRESS_SUBJECT);
    assert_eq!(header(&dlq, "Greentic-Msg-Id"), "slack:T1:Ev9");
    assert_eq!(header(&dlq, "Nats-Msg-Id"), "dlq:slack:T1:Ev9");
    assert_eq!(header(&dlq, "Greentic-Dlq-Status"), "503");
    assert_eq!(
        header(&dlq, "Greentic-Dlq-Reason"),
        "flow store down (attempt 3)"
    );
    assert_eq!(header(&dlq, "Greentic-Attempts"), "3");
    assert!(dlq.headers.get("Authorization").is_none());
    assert_eq!(
        bridge.running.metrics().delivery_counts("ingress"),
        (0, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_dead_lettered_at_once_with_the_problem_detail() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(Duration::ZERO, |_| {
        (
            422,
            problem_body(
                422,
                &format!("envelope scope does not match subject; {DELIVERY_TOKEN}"),
            ),
        )
    })
    .await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    let js = js(&nats).await;

    bridge.publish(INGRESS_SUBJECT, "bad-envelope", "{}").await;
    let dlq = dead_letter(&js, 1).await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;

    assert_eq!(receiver.seen().len(), 1, "a 4xx is not retried");
    assert_eq!(header(&dlq, "Greentic-Dlq-Status"), "422");
    assert_eq!(header(&dlq, "Greentic-Attempts"), "1");
    // The reason keeps the detail but never a token, even one the receiver echoed.
    assert_eq!(
        header(&dlq, "Greentic-Dlq-Reason"),
        "envelope scope does not match subject; [redacted]"
    );
    assert_eq!(
        bridge.running.metrics().delivery_counts("ingress"),
        (0, 0, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_slow_receiver_is_retried_then_dead_lettered_with_the_error_kind() {
    let nats = NatsServer::start();
    // Nothing listens on this port: every attempt is a connection error.
    let down = format!("http://127.0.0.1:{}/deliveries", free_port());
    // This one answers after the delivery timeout.
    let slow = Receiver::start(Duration::from_millis(1500), |_| (200, String::new())).await;
    let mut slow_spec = DeliverySpec::egress(slow.url.clone());
    slow_spec.timeout = "300ms";
    slow_spec.max_attempts = 2;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(down), slow_spec],
    ))
    .await;
    let js = js(&nats).await;

    bridge.publish(INGRESS_SUBJECT, "to-nowhere", "{}").await;
    let first = dead_letter(&js, 1).await;
    bridge.publish(EGRESS_SUBJECT, "too-slow", "{}").await;
    let second = dead_letter(&js, 2).await;

    assert_eq!(header(&first, "Greentic-Msg-Id"), "to-nowhere");
    assert_eq!(header(&first, "Greentic-Dlq-Status"), "connect");
    assert_eq!(header(&first, "Greentic-Attempts"), "3");
    assert!(header(&first, "Greentic-Dlq-Reason").starts_with("connection failed"));

    assert_eq!(header(&second, "Greentic-Msg-Id"), "too-slow");
    assert_eq!(header(&second, "Greentic-Dlq-Status"), "timeout");
    assert_eq!(header(&second, "Greentic-Attempts"), "2");
    assert_eq!(
        header(&second, "Greentic-Dlq-Reason"),
        "no answer within 300ms"
    );
    assert_eq!(
        bridge.running.metrics().delivery_counts("ingress"),
        (0, 2, 1)
    );
    assert_eq!(
        bridge.running.metrics().delivery_counts("egress"),
        (0, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_flight_never_exceed_the_configured_concurrency() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(Duration::from_millis(100), |_| (200, String::new())).await;
    let mut spec = DeliverySpec::ingress(receiver.url.clone());
    spec.concurrency = 3;
    // Publish everything first (a bridge without deliveries), so the delivering
    // bridge finds a backlog and can only be held back by its limit.
    let publisher = Bridge::start_ready(config(&nats.url(), &[])).await;
    for i in 0..24 {
        let r = publisher
            .publish(INGRESS_SUBJECT, &format!("burst-{i}"), "{}")
            .await;
        assert_eq!(r.status(), 200);
    }
    let bridge = Bridge::start_ready(config(&nats.url(), &[spec])).await;
    let js = js(&nats).await;
    eventually("all delivered", || async { receiver.seen().len() >= 24 }).await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;
    assert!(
        receiver.max_in_flight() <= 3,
        "max in flight {}",
        receiver.max_in_flight()
    );
    assert!(
        receiver.max_in_flight() >= 2,
        "deliveries did run in parallel"
    );
    assert_eq!(bridge.running.metrics().delivery_counts("ingress").0, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_only_sees_subjects_of_its_filter() {
    let nats = NatsServer::start();
    let acme = Receiver::ok().await;
    let everyone = Receiver::ok().await;
    let mut acme_only = DeliverySpec::ingress(acme.url.clone());
    acme_only.name = "acme-only";
    acme_only.filter = "greentic.messaging.ingress.*.acme.>";
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[acme_only, DeliverySpec::ingress(everyone.url.clone())],
    ))
    .await;

    let acme_subject = "greentic.messaging.ingress.prod.acme.default.web";
    let bigcorp_subject = "greentic.messaging.ingress.prod.bigcorp.default.web";
    bridge.publish(acme_subject, "m-acme", "{}").await;
    bridge.publish(bigcorp_subject, "m-bigcorp", "{}").await;
    eventually("fan-out", || async {
        everyone.seen().len() >= 2 && !acme.seen().is_empty()
    })
    .await;
    // Both consumers have nothing left: whatever acme-only was given, it has seen.
    let js = js(&nats).await;
    wait_settled(&js, "GREENTIC_INGRESS", "acme-only").await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;
    let acme_seen: Vec<String> = acme.seen().into_iter().map(|r| r.subject).collect();
    assert_eq!(acme_seen, [acme_subject]);
}
