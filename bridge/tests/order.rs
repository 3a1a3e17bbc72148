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

/// Waits for `published` deliveries, then checks each came once and each
/// session's came in stream order; returns what the receiver saw.
async fn all_in_stream_order_per_session(receiver: &Receiver, published: usize) -> Vec<Received> {
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
    seen
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
    let bridge = Bridge::start_ready(config(&nats.url(), &[spec])).await;
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
    let seen = all_in_stream_order_per_session(&receiver, published).await;
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
    // (The receiver sees the last delivery before the bridge hears its answer.)
    eventually("five delivered, two retried", || async {
        bridge.running.metrics().delivery_counts("ingress") == (5, 2, 0)
    })
    .await;
}

/// The partition NATS stores `subject` under, learnt by publishing a probe to
/// the egress twin of `subject` (same tokens, same hash, nothing delivers it).
async fn partition_of(
    bridge: &Bridge,
    js: &async_nats::jetstream::Context,
    subject: &str,
) -> String {
    let egress = subject.replace(".ingress.", ".egress.");
    let r = bridge
        .publish(
            &egress,
            &format!("probe-{}", egress.replace('.', "-")),
            "{}",
        )
        .await;
    let seq = json(r).await["seq"].as_u64().unwrap();
    let stored = stored_message(js, "GREENTIC_EGRESS", seq).await;
    assert!(stored.subject.starts_with(&egress), "{}", stored.subject);
    stored.subject.rsplit('.').next().unwrap().to_string()
}

/// Noisy (6 messages, 6 sessions) then quiet (1), with the receiver closed
/// until the noisy tenant's first messages hold every slot: the position
/// the quiet message started at.
async fn quiet_position(partitions: u16, concurrency: usize, quiet_subject: Option<&str>) -> usize {
    let nats = NatsServer::start();
    // Answers spaced 50 ms apart once open, so slots free one at a time and
    // the order received is the order started.
    let receiver = Receiver::start_varied(
        |r| {
            let n: u64 = r.msg_id.rsplit('-').next().unwrap().parse().unwrap();
            Duration::from_millis(5 + 50 * n)
        },
        false,
        |_| (200, String::new()),
    )
    .await;
    let spec = DeliverySpec {
        concurrency,
        // Turns alone, without a tenant's cap.
        tenant_concurrency: Some(concurrency),
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let mut config = config(&nats.url(), &[spec]);
    config.streams.partitions = partitions;
    let bridge = Bridge::start_ready(config).await;
    let js = js(&nats).await;
    let quiet_subject = match quiet_subject {
        Some(s) => s.to_string(),
        None => {
            // A channel of the quiet tenant hashed into another partition.
            let noisy = partition_of(&bridge, &js, INGRESS_SUBJECT).await;
            let mut found = None;
            for c in 0..64 {
                let candidate = format!("{SUBJECT_B}{c}");
                if partition_of(&bridge, &js, &candidate).await != noisy {
                    found = Some(candidate);
                    break;
                }
            }
            found.expect("some channel hashes into another partition")
        }
    };
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
        .publish_in_session(&quiet_subject, "quiet-0", "b0", "{}")
        .await;
    eventually("the first slots taken", || async {
        receiver.seen().len() == concurrency
    })
    .await;
    // Long enough for every puller to fetch what its window allows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The operator sees it: the messages held back and the tenants active
    // (in both cases here, three wait: two of the noisy tenant's and the
    // quiet one; the rest are in flight or, partitioned, not pulled yet).
    let metrics = bridge.running.metrics().render(true);
    let waiting = "greentic_bridge_waiting{delivery=\"ingress\"} 3\n";
    assert!(metrics.contains(waiting), "{waiting} in\n{metrics}");
    assert!(metrics.contains("greentic_bridge_tenants_active{delivery=\"ingress\"} 2\n"));
    receiver.open();
    eventually("all delivered", || async { receiver.seen().len() == 7 }).await;
    let order: Vec<String> = receiver.seen().iter().map(|r| r.msg_id.clone()).collect();
    order.iter().position(|id| id == "quiet-0").unwrap() + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tenant_in_another_partition_goes_with_the_first_free_slot() {
    // Stream order would make it 7th; the noisy backlog waits in its own
    // partition, the quiet message in its own, and tenants take turns.
    let position = quiet_position(8, 2, None).await;
    assert_eq!(position, 3, "quiet tenant's message started {position}th");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_sharing_a_partition_take_turns_within_the_pulled_window() {
    // One partition, 4 slots, a window of 2 per slot: all 7 are pulled, the
    // quiet one starts with the first free slot (stream order: 7th).
    let position = quiet_position(1, 4, Some(SUBJECT_B)).await;
    assert_eq!(position, 5, "quiet tenant's message started {position}th");
}

/// 12 messages (each its own session) on `subjects` in turn, through a
/// delivery of 4 slots with a tenant cap of 2; the receiver that saw them.
/// Each subject has one message delivered first, so that every tenant is
/// active before the burst however the partitions' pullers interleave.
async fn through_capped_delivery(subjects: &[&str]) -> Receiver {
    let nats = NatsServer::start();
    // Slow answers: the burst is all pulled while the first ones are in flight.
    let receiver = Receiver::start(Duration::from_millis(200), |_| (200, String::new())).await;
    let spec = DeliverySpec {
        concurrency: 4,
        tenant_concurrency: Some(2),
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let bridge = Bridge::start_ready(config(&nats.url(), &[spec])).await;
    for (i, subject) in subjects.iter().enumerate() {
        bridge
            .publish_in_session(subject, &format!("first-{i}"), &format!("first{i}"), "{}")
            .await;
    }
    eventually("the first ones delivered", || async {
        receiver.seen().len() == subjects.len()
    })
    .await;
    for n in 0..12 {
        let subject = subjects[n % subjects.len()];
        bridge
            .publish_in_session(subject, &format!("m-{n}"), &format!("s{n}"), "{}")
            .await;
    }
    let total = 12 + subjects.len();
    eventually("all delivered", || async { receiver.seen().len() == total }).await;
    receiver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_alone_uses_every_slot_and_beside_another_only_its_share() {
    let alone = through_capped_delivery(&[INGRESS_SUBJECT]).await;
    assert_eq!(alone.max_in_flight(), 4, "alone, acme is not capped");

    let both = through_capped_delivery(&[INGRESS_SUBJECT, SUBJECT_B]).await;
    assert_eq!(
        both.max_in_flight_of(INGRESS_SUBJECT),
        2,
        "acme beside bigcorp"
    );
    assert_eq!(both.max_in_flight_of(SUBJECT_B), 2, "bigcorp beside acme");
    assert_eq!(both.max_in_flight(), 4);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_partitions_and_keep_each_session_in_order() {
    let nats = NatsServer::start();
    let receiver = Receiver::start_varied(
        |r| Duration::from_millis([9, 1, 4, 2][r.seq as usize % 4]),
        true,
        |_| (200, String::new()),
    )
    .await;
    let replica = |index: u16| {
        let spec = DeliverySpec {
            concurrency: 16,
            ..DeliverySpec::ingress(receiver.url.clone())
        };
        let mut config = config(&nats.url(), &[spec]);
        config.replica = greentic_bridge::config::Replica { index, count: 2 };
        config
    };
    let first = Bridge::start_ready(replica(0)).await;
    let second = Bridge::start_ready(replica(1)).await;
    // Eight channels, so both replicas' partitions get messages; on each,
    // one person writing 12 times and two others writing 3 times.
    let mut published = 0;
    for n in 0..12 {
        for c in 0..8 {
            let subject = format!("{INGRESS_SUBJECT}{c}");
            for person in ["dana", "lee", "kim"] {
                if person == "dana" || n < 3 {
                    let bridge = if published % 2 == 0 { &first } else { &second };
                    bridge
                        .publish_in_session(
                            &subject,
                            &format!("{c}-{person}-{n}"),
                            &format!("{c}-{person}"),
                            "{}",
                        )
                        .await;
                    published += 1;
                }
            }
        }
    }
    all_in_stream_order_per_session(&receiver, published).await;
    assert_eq!(receiver.max_session_in_flight(), 1);
    let delivered = |b: &Bridge| b.running.metrics().delivery_counts("ingress").0;
    // (The receiver sees a delivery before the bridge hears its answer.)
    eventually("every delivery counted", || async {
        delivered(&first) + delivered(&second) == published as u64
    })
    .await;
    assert!(
        delivered(&first) > 0 && delivered(&second) > 0,
        "one replica did all the work: {} / {}",
        delivered(&first),
        delivered(&second)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stored_before_partitions_are_still_delivered() {
    use async_nats::jetstream::{consumer, stream};
    let nats = NatsServer::start();
    let js = js(&nats).await;
    // What a bridge from before partitions left: the stream without the
    // partition transform, its consumer, and undelivered messages.
    js.create_stream(stream::Config {
        name: "GREENTIC_INGRESS".into(),
        subjects: vec!["greentic.messaging.ingress.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_consumer_on_stream(
        consumer::pull::Config {
            durable_name: Some("ingress".into()),
            filter_subject: "greentic.messaging.ingress.>".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        },
        "GREENTIC_INGRESS",
    )
    .await
    .unwrap();
    for n in 0..3 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("old-{n}").as_str());
        headers.insert("Greentic-Session", "s-old");
        js.publish_with_headers(INGRESS_SUBJECT, headers, "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let receiver = Receiver::ok().await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    bridge
        .publish_in_session(INGRESS_SUBJECT, "new-0", "s-new", "{}")
        .await;
    eventually("old and new delivered", || async {
        receiver.seen().len() >= 4
    })
    .await;
    let mut ids: Vec<String> = receiver.seen().iter().map(|r| r.msg_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["new-0", "old-0", "old-1", "old-2"]);
    // Every delivery states the subject as published, never the partition.
    assert!(receiver.seen().iter().all(|r| r.subject == INGRESS_SUBJECT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_in_order_across_a_restart_while_its_first_message_fails() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let nats = NatsServer::start();
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = {
        let healthy = healthy.clone();
        Receiver::start(Duration::ZERO, move |r| {
            if r.msg_id == "m1" && !healthy.load(Ordering::SeqCst) {
                (503, problem_body(503, "busy"))
            } else {
                (200, String::new())
            }
        })
        .await
    };
    let spec = || DeliverySpec {
        max_attempts: 100,
        backoff: r#"["200ms"]"#,
        ..DeliverySpec::ingress(receiver.url.clone())
    };
    let first = Bridge::start_ready(config(&nats.url(), &[spec()])).await;
    for n in 1..=3 {
        first
            .publish_in_session(INGRESS_SUBJECT, &format!("m{n}"), "s-1", "{}")
            .await;
    }
    eventually("m1 refused twice", || async {
        receiver.seen().iter().filter(|r| r.msg_id == "m1").count() >= 2
    })
    .await;
    // Stopped while m1 waits for its retry and m2, m3 wait behind it.
    first.running.shutdown().await;
    healthy.store(true, Ordering::SeqCst);
    let _second = Bridge::start_ready(config(&nats.url(), &[spec()])).await;
    eventually("m3 delivered", || async {
        receiver.seen().iter().any(|r| r.msg_id == "m3")
    })
    .await;

    let ids: Vec<String> = receiver.seen().iter().map(|r| r.msg_id.clone()).collect();
    let last_m1 = ids.iter().rposition(|id| id == "m1").unwrap();
    let first_m2 = ids.iter().position(|id| id == "m2").unwrap();
    let first_m3 = ids.iter().position(|id| id == "m3").unwrap();
    assert!(last_m1 < first_m2 && first_m2 < first_m3, "{ids:?}");
}
