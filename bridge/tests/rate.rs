//! Per-tenant rate (`Greentic-Rate`), against a real nats-server: refused
//! when malformed, stored as a header, deliveries spaced at the rate and
//! marked `X-Greentic-Delayed-Ms`, nothing lost or repeated, sessions in
//! order, and other tenants (even in the same partition) not held back.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

const SUBJECT_B: &str = "greentic.messaging.ingress.prod.bigcorp.default.web";

/// Waits for `count` deliveries; checks each message came exactly once, at
/// its first attempt (held messages are kept alive, never redelivered).
async fn each_once(receiver: &Receiver, count: usize) -> Vec<Received> {
    eventually("all delivered", || async { receiver.seen().len() >= count }).await;
    let seen = receiver.seen();
    let mut ids: Vec<&str> = seen.iter().map(|r| r.msg_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), seen.len(), "a message came twice: {seen:?}");
    assert_eq!(seen.len(), count);
    assert!(seen.iter().all(|r| r.attempt == 1), "{seen:?}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_that_is_not_1_to_1000000_per_minute_is_refused_and_a_valid_one_stored() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    let js = js(&nats).await;
    for bad in ["0", "abc", "-5", "1000001", "1.5", "+60"] {
        let response = bridge
            .publish_headers(INGRESS_SUBJECT, "m1", &[("Greentic-Rate", bad)])
            .await;
        assert_problem(response, 400, "bad-request").await;
    }
    assert_eq!(stream_len(&js, "GREENTIC_INGRESS").await, 0);

    let response = bridge
        .publish_headers(INGRESS_SUBJECT, "m1", &[("Greentic-Rate", "60")])
        .await;
    assert_eq!(response.status(), 200);
    let stored = stored_message(&js, "GREENTIC_INGRESS", 1).await;
    assert_eq!(stored.headers.get("Greentic-Rate").unwrap().as_str(), "60");
    let seen = each_once(&receiver, 1).await;
    assert_eq!(seen[0].delayed_ms, None, "a first message is not held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_messages_start_no_faster_than_its_rate_and_say_how_long_they_waited() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let spec = DeliverySpec {
        // Slots for all four at once: only the rate spaces them.
        concurrency: 4,
        tenant_concurrency: Some(4),
        // Shorter than the last one's wait: it must be kept alive, not redelivered.
        timeout: "1s",
        ack_wait: Some("1500ms"),
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let bridge = Bridge::start_ready(config(&nats.url(), &[spec])).await;
    for n in 0..4 {
        bridge
            .publish_rated(INGRESS_SUBJECT, &format!("m{n}"), &format!("s{n}"), 60)
            .await;
    }
    let mut seen = each_once(&receiver, 4).await;
    seen.sort_by_key(|r| r.at);
    // 60/min: one at once (a burst of one), then one a second.
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "{} started {gap:?} after {}",
            pair[1].msg_id,
            pair[0].msg_id
        );
    }
    assert_eq!(seen[0].delayed_ms, None, "the first is not held");
    for r in &seen[1..] {
        assert!(r.delayed_ms.is_some_and(|ms| ms > 0), "{r:?}");
    }
    // The last waited about three seconds, and says so.
    assert!(seen[3].delayed_ms.unwrap() >= 2700, "{:?}", seen[3]);
    eventually("counted: none held, three delayed", || async {
        bridge.running.metrics().rate_counts("ingress") == (0, 3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_in_the_same_partition_is_not_held_behind_a_rated_backlog() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    // One partition, one slot: a window of 2. Without held messages giving
    // their window place back, B would be pulled only once all but two of
    // A's messages had started, a second apart.
    let spec = DeliverySpec {
        concurrency: 1,
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let mut config = config(&nats.url(), &[spec]);
    config.streams.partitions = 1;
    let bridge = Bridge::start_ready(config).await;
    for n in 0..4 {
        bridge
            .publish_rated(INGRESS_SUBJECT, &format!("a{n}"), &format!("a{n}"), 60)
            .await;
    }
    bridge.publish_in_session(SUBJECT_B, "b0", "b0", "{}").await;
    eventually("three of A held while B goes", || async {
        receiver.seen().iter().any(|r| r.msg_id == "b0")
    })
    .await;
    let order: Vec<String> = receiver.seen().iter().map(|r| r.msg_id.clone()).collect();
    assert_eq!(order, ["a0", "b0"], "B waited for A's rate");
    assert_eq!(bridge.running.metrics().rate_counts("ingress").0, 3);
    let seen = each_once(&receiver, 5).await;
    assert_eq!(seen[1].delayed_ms, None, "B was never held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_held_messages_arrive_in_stream_order() {
    let nats = NatsServer::start();
    // Uneven answers, so that order is not kept by accident.
    let receiver = Receiver::start_varied(
        |r| Duration::from_millis([30, 1, 15, 5][r.seq as usize % 4]),
        true,
        |_| (200, String::new()),
    )
    .await;
    let spec = DeliverySpec {
        concurrency: 4,
        tenant_concurrency: Some(4),
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let bridge = Bridge::start_ready(config(&nats.url(), &[spec])).await;
    // 240/min: a burst of 4, then one every 250 ms.
    let mut published = 0;
    for n in 0..6 {
        for session in ["s-dana", "s-lee"] {
            if session == "s-dana" || n < 3 {
                bridge
                    .publish_rated(INGRESS_SUBJECT, &format!("{session}-{n}"), session, 240)
                    .await;
                published += 1;
            }
        }
    }
    let seen = each_once(&receiver, published).await;
    let mut sessions: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in &seen {
        sessions.entry(&r.session).or_default().push(r.seq);
    }
    for (session, seqs) in sessions {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "{session} out of stream order");
    }
    assert_eq!(receiver.max_session_in_flight(), 1);
    // The rate held: beyond the burst of 4, one start every 250 ms.
    assert!(seen.iter().any(|r| r.delayed_ms.is_some()), "{seen:?}");
    let first = seen.iter().map(|r| r.at).min().unwrap();
    let last = seen.iter().map(|r| r.at).max().unwrap();
    let least = Duration::from_millis(250 * (published as u64 - 4) * 9 / 10);
    assert!(last - first >= least, "{:?} < {least:?}", last - first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_messages_survive_a_restart_and_buckets_start_full() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let spec = || DeliverySpec {
        concurrency: 4,
        tenant_concurrency: Some(4),
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let first = Bridge::start_ready(config(&nats.url(), &[spec()])).await;
    // 1/min: after the first, the others would wait minutes.
    for n in 0..3 {
        first
            .publish_rated(INGRESS_SUBJECT, &format!("m{n}"), &format!("s{n}"), 1)
            .await;
    }
    eventually("one delivered, two held", || async {
        receiver.seen().len() == 1 && first.running.metrics().rate_counts("ingress").0 == 2
    })
    .await;
    first.running.shutdown().await;

    // The held two were handed back; a new bridge's bucket is full (a burst
    // of one): one goes at once, the other stays held.
    let second = Bridge::start_ready(config(&nats.url(), &[spec()])).await;
    eventually("the second delivered after the restart", || async {
        receiver.seen().len() == 2 && second.running.metrics().rate_counts("ingress").0 == 1
    })
    .await;
    let ids: Vec<String> = receiver.seen().iter().map(|r| r.msg_id.clone()).collect();
    assert_eq!(ids[0], "m0");
    assert_ne!(ids[1], "m0", "{ids:?}");
    assert_eq!(
        receiver.seen()[1].delayed_ms,
        None,
        "not held by the new bridge"
    );
    second.running.shutdown().await;
}
