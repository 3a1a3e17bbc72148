//! NATS going away and coming back: the bridge says 503 (so providers retry),
//! never 200 without an ack, and recovers on its own.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_makes_publish_and_healthz_503_until_it_returns() {
    let mut nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    assert_eq!(
        bridge
            .publish(INGRESS_SUBJECT, "before", "{}")
            .await
            .status(),
        200
    );

    nats.stop();
    bridge.wait_healthy(false).await;
    let r = bridge
        .http
        .get(format!("{}/healthz", bridge.base))
        .send()
        .await
        .unwrap();
    assert_problem(r, 503, "unavailable").await;

    let r = bridge.publish(INGRESS_SUBJECT, "during", "{}").await;
    assert_eq!(r.headers()["retry-after"], "2");
    assert_problem(r, 503, "unavailable").await;
    let metrics = bridge.metrics_text().await;
    assert!(
        metrics.contains("greentic_bridge_publish_errors_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("greentic_bridge_nats_connected 0\n"));

    // Same port, same store: the bridge reconnects by itself.
    nats.spawn();
    bridge.wait_healthy(true).await;
    let r = bridge.publish(INGRESS_SUBJECT, "after", "{}").await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["seq"], 2, "the store kept the first message");

    eventually("deliveries resume", || async {
        let ids: Vec<String> = receiver.seen().into_iter().map(|r| r.msg_id).collect();
        ids.contains(&"before".to_string()) && ids.contains(&"after".to_string())
    })
    .await;
    assert!(!receiver.seen().iter().any(|r| r.msg_id == "during"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_started_before_nats_answers_503_then_becomes_ready() {
    let mut nats = NatsServer::not_started();
    let bridge = Bridge::start(config(&nats.url(), &[])).await;

    bridge.wait_healthy(false).await;
    let r = bridge.publish(INGRESS_SUBJECT, "early", "{}").await;
    assert_problem(r, 503, "unavailable").await;

    nats.spawn();
    bridge.wait_healthy(true).await;
    let r = bridge.publish(INGRESS_SUBJECT, "early", "{}").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r).await["duplicate"],
        false,
        "the refused publish stored nothing"
    );
    // The streams were created by the bridge once NATS came up.
    let js = js(&nats).await;
    for stream in ["GREENTIC_INGRESS", "GREENTIC_EGRESS", "GREENTIC_DLQ"] {
        let mut s = js.get_stream(stream).await.unwrap();
        let info = s.info().await.unwrap();
        assert_eq!(
            info.config.storage,
            async_nats::jetstream::stream::StorageType::File
        );
        assert_eq!(
            info.config.duplicate_window,
            std::time::Duration::from_secs(120)
        );
    }
}
