//! POST /v1/publish against a real nats-server: acks, dedupe, and every refusal
//! (which must leave the streams untouched).

mod support;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (NatsServer, Bridge, async_nats::jetstream::Context) {
    let nats = NatsServer::start();
    let bridge = Bridge::start_ready(config(&nats.url(), &[])).await;
    let js = js(&nats).await;
    (nats, bridge, js)
}

async fn assert_nothing_published(js: &async_nats::jetstream::Context) {
    for stream in ["GREENTIC_INGRESS", "GREENTIC_EGRESS", "GREENTIC_DLQ"] {
        assert_eq!(stream_len(js, stream).await, 0, "{stream} must stay empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_answered_after_the_ack_with_stream_and_seq() {
    let (_nats, bridge, js) = setup().await;

    let r = bridge
        .publish(INGRESS_SUBJECT, "slack:T1:Ev1", r#"{"text":"hi"}"#)
        .await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(
        body,
        serde_json::json!({"stream": "GREENTIC_INGRESS", "seq": 1, "duplicate": false})
    );

    let r = bridge
        .publish(EGRESS_SUBJECT, "reply:1", r#"{"text":"hello"}"#)
        .await;
    let body = json(r).await;
    assert_eq!(body["stream"], "GREENTIC_EGRESS");
    assert_eq!(body["seq"], 1);

    // What JetStream holds is exactly what was sent, under the caller's id.
    let stored = stored_message(&js, "GREENTIC_INGRESS", 1).await;
    // Stored under its subject plus its partition (bridge/README.md, Order
    // and turns): one of the default 8.
    let (subject, partition) = stored.subject.rsplit_once('.').unwrap();
    assert_eq!(subject, INGRESS_SUBJECT);
    assert!(partition.parse::<u16>().is_ok_and(|p| p < 8), "{partition}");
    assert_eq!(&stored.payload[..], br#"{"text":"hi"}"#);
    assert_eq!(
        stored.headers.get("Nats-Msg-Id").unwrap().as_str(),
        "slack:T1:Ev1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_msg_id_twice_is_one_message() {
    let (_nats, bridge, js) = setup().await;

    let first = json(bridge.publish(INGRESS_SUBJECT, "slack:T1:Ev7", "{}").await).await;
    let retry = json(bridge.publish(INGRESS_SUBJECT, "slack:T1:Ev7", "{}").await).await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["seq"], first["seq"]);
    assert_eq!(stream_len(&js, "GREENTIC_INGRESS").await, 1);

    // Same id of another channel scope is another message (ids carry their scope).
    let other = json(bridge.publish(INGRESS_SUBJECT, "slack:T2:Ev7", "{}").await).await;
    assert_eq!(other["duplicate"], false);
    assert_eq!(stream_len(&js, "GREENTIC_INGRESS").await, 2);

    let metrics = bridge.metrics_text().await;
    assert!(metrics.contains("greentic_bridge_published_total{stream=\"GREENTIC_INGRESS\"} 2\n"));
    assert!(
        metrics
            .contains("greentic_bridge_publish_duplicates_total{stream=\"GREENTIC_INGRESS\"} 1\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_missing_token_is_401_and_nothing_is_published() {
    let (_nats, bridge, js) = setup().await;
    let wrong = "test-publish-0123456789abcdef012345678X";
    for token in [None, Some(wrong), Some(DELIVERY_TOKEN), Some("")] {
        let r = bridge
            .publish_with(INGRESS_SUBJECT, Some("id-1"), token, "{}")
            .await;
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body = assert_problem(r, 401, "unauthorized").await;
        assert!(!body.to_string().contains(wrong));
    }
    // Another scheme with the right token is still refused.
    let r = bridge
        .http
        .post(format!("{}/v1/publish/{INGRESS_SUBJECT}", bridge.base))
        .header("Nats-Msg-Id", "id-1")
        .header("Authorization", format!("Basic {PUBLISH_TOKEN}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    assert_nothing_published(&js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_subjects_are_400_whatever_the_token_and_nothing_is_published() {
    let (_nats, bridge, js) = setup().await;
    let subjects = [
        // wildcards
        "greentic.messaging.ingress.prod.*.support.slack",
        "greentic.messaging.ingress.prod.acme.support.>",
        "greentic.messaging.ingress.>",
        "greentic.messaging.ingress.prod.acme.support.sl*ck",
        // percent-encoded wildcard, decoded by the router
        "greentic.messaging.ingress.prod.%2A.support.slack",
        // extra or missing tokens
        "greentic.messaging.ingress.prod.acme.support.slack.extra",
        "greentic.messaging.ingress.prod.acme.support",
        // upper case
        "greentic.messaging.ingress.prod.ACME.support.slack",
        "Greentic.messaging.ingress.prod.acme.support.slack",
        // empty tokens
        "greentic.messaging.ingress.prod..support.slack",
        "greentic.messaging.ingress.prod.acme.support.slack.",
        ".greentic.messaging.ingress.prod.acme.support.slack",
        // wrong prefix, or a stream callers may not write
        "other.messaging.ingress.prod.acme.support.slack",
        "greentic.messaging.sideways.prod.acme.support.slack",
        "greentic.dlq.messaging.ingress.prod.acme.support.slack",
        // characters ids never have
        "greentic.messaging.ingress.prod.ac%20me.support.slack",
        "greentic.messaging.ingress.prod.ac:me.support.slack",
        // not UTF-8 once decoded
        "greentic.messaging.ingress.prod.%FF.support.slack",
        &format!(
            "greentic.messaging.ingress.prod.{}.support.slack",
            "a".repeat(64)
        ),
    ];
    for subject in subjects {
        for token in [Some(PUBLISH_TOKEN), Some("not-the-token"), None] {
            let r = bridge
                .publish_with(subject, Some("id-1"), token, "{}")
                .await;
            assert_eq!(r.status(), 400, "{subject} with {token:?}");
            assert_problem(r, 400, "bad-request").await;
        }
    }
    assert_nothing_published(&js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_msg_ids_and_non_json_payloads_are_400() {
    let (_nats, bridge, js) = setup().await;
    let long = "x".repeat(201);
    for id in [
        None,
        Some(""),
        Some("has space"),
        Some("a/b"),
        Some(long.as_str()),
    ] {
        let r = bridge
            .publish_with(INGRESS_SUBJECT, id, Some(PUBLISH_TOKEN), "{}")
            .await;
        let body = assert_problem(r, 400, "bad-request").await;
        assert!(body["detail"].as_str().unwrap().contains("Nats-Msg-Id"));
    }
    for payload in ["", "not json", "{\"a\":", "\u{0}"] {
        let r = bridge
            .publish_with(INGRESS_SUBJECT, Some("id-2"), Some(PUBLISH_TOKEN), payload)
            .await;
        assert_problem(r, 400, "bad-request").await;
    }
    assert_nothing_published(&js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_over_the_limit_are_413_and_nothing_is_published() {
    let (_nats, bridge, js) = setup().await;
    // The test config sets max_payload_bytes = 65536.
    let at_limit = payload(0, 65536);
    assert_eq!(at_limit.len(), 65536);
    let over = payload(1, 65537);

    let r = bridge.publish(INGRESS_SUBJECT, "big-1", &over).await;
    assert_problem(r, 413, "payload-too-large").await;
    // 413 comes first, even before the token.
    let r = bridge
        .publish_with(INGRESS_SUBJECT, Some("big-1"), None, over.clone())
        .await;
    assert_problem(r, 413, "payload-too-large").await;

    // Without Content-Length (chunked), the limit holds while reading.
    let addr = bridge.running.local_addr();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/publish/{INGRESS_SUBJECT} HTTP/1.1\r\nHost: bridge\r\n\
         Authorization: Bearer {PUBLISH_TOKEN}\r\nNats-Msg-Id: big-2\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let chunk = "x".repeat(16 * 1024);
    for _ in 0..5 {
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if tcp.write_all(framed.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    assert_nothing_published(&js).await;
    let r = bridge.publish(INGRESS_SUBJECT, "big-3", &at_limit).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_nats_could_not_also_dead_letter_are_413() {
    // With NATS's default max_payload (1 MiB), a 1 MiB payload leaves no room
    // for the headers a dead letter needs: refused up front, not lost later.
    let nats = NatsServer::start();
    let text = config_toml("127.0.0.1:0", &nats.url(), &[])
        .replace("max_payload_bytes = 65536", "max_payload_bytes = 1048576");
    let config =
        greentic_bridge::Config::from_toml(&text, std::path::Path::new("."), token_env).unwrap();
    let bridge = Bridge::start_ready(config).await;
    let js = js(&nats).await;

    let r = bridge
        .publish(INGRESS_SUBJECT, "mib", &payload(0, 1024 * 1024))
        .await;
    let body = assert_problem(r, 413, "payload-too-large").await;
    assert!(body["detail"].as_str().unwrap().contains("1044480"));
    assert_nothing_published(&js).await;

    let r = bridge
        .publish(INGRESS_SUBJECT, "mib", &payload(0, 1024 * 1024 - 4096))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_routes_and_methods_answer_with_problems() {
    let (_nats, bridge, _js) = setup().await;
    let r = bridge
        .http
        .get(format!("{}/nope", bridge.base))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;

    let r = bridge
        .http
        .get(format!("{}/v1/publish/{INGRESS_SUBJECT}", bridge.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_problem(r, 405, "method-not-allowed").await;

    let r = bridge
        .http
        .post(format!("{}/healthz", bridge.base))
        .send()
        .await
        .unwrap();
    assert_problem(r, 405, "method-not-allowed").await;

    let r = bridge
        .http
        .get(format!("{}/healthz", bridge.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["status"], "ok");

    let r = bridge
        .http
        .get(format!("{}/metrics", bridge.base))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("greentic_bridge_publish_errors_total 0\n"));
    assert!(text.contains("greentic_bridge_nats_connected 1\n"));
}
