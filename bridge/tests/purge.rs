//! POST /v1/purge/tenants/{tenant} against a real nats-server: a tenant's
//! messages leave every stream (partitioned messaging streams and dead
//! letters), no other tenant's do, and every refusal purges nothing.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use greentic_bridge::streams::published_subject;
use greentic_bridge::subject::SubjectScope;
use support::*;

const STREAMS: [&str; 3] = ["GREENTIC_INGRESS", "GREENTIC_EGRESS", "GREENTIC_DLQ"];

async fn purge(bridge: &Bridge, tenant: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = bridge
        .http
        .post(format!("{}/v1/purge/tenants/{tenant}", bridge.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("bridge reachable")
}

/// Purges `tenant` with the publish token; asserts a 200 JSON answer and
/// returns its count.
async fn purged(bridge: &Bridge, tenant: &str) -> u64 {
    let r = purge(bridge, tenant, Some(PUBLISH_TOKEN)).await;
    assert_eq!(r.status(), 200, "purge {tenant}");
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = json(r).await;
    let n = body["purged"].as_u64().expect("purged is a count");
    assert_eq!(body, serde_json::json!({ "purged": n }), "nothing else");
    n
}

fn header<'a>(m: &'a StreamMessage, name: &str) -> &'a str {
    m.headers
        .get(name)
        .unwrap_or_else(|| panic!("{} without {name}", m.subject))
        .as_str()
}

/// The tenant a stored message belongs to: of its subject as published, or
/// for a dead letter of its original subject (which must agree with the
/// dead letter's own subject).
fn tenant_of(stream: &str, m: &StreamMessage) -> String {
    let subject = published_subject(&m.subject);
    let scope = SubjectScope::parse(subject).unwrap_or_else(|| panic!("{subject}"));
    if stream == "GREENTIC_DLQ" {
        let original = header(m, "Greentic-Original-Subject");
        let of_original = SubjectScope::parse(original).unwrap();
        assert_eq!(of_original, scope, "{subject} vs {original}");
    }
    scope.tenant.to_string()
}

/// Msg ids (the original's, for dead letters) of what `stream` holds, by tenant.
async fn held_ids(js: &async_nats::jetstream::Context, stream: &str) -> Vec<(String, String)> {
    let id_header = if stream == "GREENTIC_DLQ" {
        "Greentic-Msg-Id"
    } else {
        "Nats-Msg-Id"
    };
    stored_messages(js, stream)
        .await
        .iter()
        .map(|m| (tenant_of(stream, m), header(m, id_header).to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_tenant_empties_every_stream_of_it_and_of_no_one_else() {
    let nats = NatsServer::start();
    // Every delivery in env `dev` is refused for good: dead-lettered at once,
    // so each tenant has dead letters from both directions.
    let receiver = Receiver::start(Duration::ZERO, |_| {
        (422, problem_body(422, "unknown scope"))
    })
    .await;
    let mut ingress = DeliverySpec::ingress(receiver.url.clone());
    ingress.filter = "greentic.messaging.ingress.dev.>";
    let mut egress = DeliverySpec::egress(receiver.url.clone());
    egress.filter = "greentic.messaging.egress.dev.>";
    let bridge = Bridge::start_ready(config(&nats.url(), &[ingress, egress])).await;
    let js = js(&nats).await;

    let mut subjects = Vec::new();
    for tenant in ["acme", "acme2", "bigcorp"] {
        for kind in ["ingress", "egress"] {
            for env in ["prod", "dev"] {
                for scope in ["support.slack", "default.web"] {
                    subjects.push(format!("greentic.messaging.{kind}.{env}.{tenant}.{scope}"));
                }
            }
        }
    }
    // Other tenants' messages with `acme` as env, team or channel.
    subjects.extend(
        [
            "greentic.messaging.ingress.prod.bigcorp.acme.web",
            "greentic.messaging.egress.acme.bigcorp.support.acme",
            "greentic.messaging.ingress.dev.acme2.acme.acme",
        ]
        .map(String::from),
    );
    for (i, subject) in subjects.iter().enumerate() {
        let r = bridge.publish(subject, &format!("m-{i}"), "{}").await;
        assert_eq!(r.status(), 200, "{subject}");
    }
    let dev = subjects
        .iter()
        .filter(|s| SubjectScope::parse(s).unwrap().env == "dev")
        .count() as u64;
    eventually("dev messages dead-lettered", || async {
        stream_len(&js, "GREENTIC_DLQ").await == dev
    })
    .await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;
    wait_settled(&js, "GREENTIC_EGRESS", "egress").await;

    let mut before = Vec::new();
    for stream in STREAMS {
        before.push(held_ids(&js, stream).await);
    }
    let acme_held: Vec<u64> = before
        .iter()
        .map(|ids| ids.iter().filter(|(t, _)| t == "acme").count() as u64)
        .collect();
    // 8 in each messaging stream (prod and dev), the dev half dead-lettered.
    assert_eq!(acme_held, [4, 4, 4]);

    assert_eq!(purged(&bridge, "acme").await, 12);

    for (stream, before) in STREAMS.iter().zip(&before) {
        let after = held_ids(&js, stream).await;
        assert!(
            after.iter().all(|(tenant, _)| tenant != "acme"),
            "{stream} still holds acme's: {after:?}"
        );
        let others: BTreeSet<_> = before.iter().filter(|(t, _)| t != "acme").collect();
        assert!(!others.is_empty());
        assert_eq!(
            after.iter().collect::<BTreeSet<_>>(),
            others,
            "{stream}: every other tenant's message stays"
        );
    }
    let metrics = bridge.running.metrics();
    for stream in STREAMS {
        assert_eq!(metrics.purged_count(stream), 4, "{stream}");
    }

    // Idempotent: nothing left to remove.
    assert_eq!(purged(&bridge, "acme").await, 0);
    let text = bridge.metrics_text().await;
    assert!(
        text.contains("greentic_bridge_purged_total{stream=\"GREENTIC_DLQ\"} 4\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tenant_id_a_missing_token_or_no_nats_purges_nothing() {
    let mut nats = NatsServer::start();
    let bridge = Bridge::start_ready(config(&nats.url(), &[])).await;
    let js = js(&nats).await;
    for subject in [INGRESS_SUBJECT, EGRESS_SUBJECT] {
        assert_eq!(bridge.publish(subject, "m-1", "{}").await.status(), 200);
    }
    let long = "a".repeat(64);
    for bad in [
        "ACME",
        "acme.bigcorp",
        "acme%2Ebigcorp",
        "*",
        "%3E",
        "acme%2A",
        "-acme",
        "_acme",
        "ac%20me",
        "%FF",
        long.as_str(),
    ] {
        // The id is checked first, whatever the token.
        for token in [Some(PUBLISH_TOKEN), None] {
            let r = purge(&bridge, bad, token).await;
            assert_problem(r, 400, "bad-request").await;
        }
    }
    for token in [None, Some("not-the-publish-token"), Some(DELIVERY_TOKEN)] {
        let r = purge(&bridge, "acme", token).await;
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_problem(r, 401, "unauthorized").await;
    }
    let r = bridge
        .http
        .get(format!("{}/v1/purge/tenants/acme", bridge.base))
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_problem(r, 405, "method-not-allowed").await;
    for stream in ["GREENTIC_INGRESS", "GREENTIC_EGRESS"] {
        assert_eq!(stream_len(&js, stream).await, 1, "{stream} untouched");
        assert_eq!(bridge.running.metrics().purged_count(stream), 0);
    }

    nats.stop();
    bridge.wait_healthy(false).await;
    let r = purge(&bridge, "acme", Some(PUBLISH_TOKEN)).await;
    assert_eq!(r.headers()["retry-after"], "2");
    assert_problem(r, 503, "unavailable").await;
}

/// A message the bridge holds when its tenant is purged may still be
/// delivered, but a refusal no longer dead-letters it: that would store the
/// purged tenant's message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_while_its_tenant_is_purged_is_not_dead_lettered() {
    let nats = NatsServer::start();
    // Answers (422: dead-letter at once) wait until the gate opens.
    let receiver = Receiver::start_gated(Duration::ZERO, false, |_| {
        (422, problem_body(422, "unknown scope"))
    })
    .await;
    let bridge = Bridge::start_ready(config(
        &nats.url(),
        &[DeliverySpec::ingress(receiver.url.clone())],
    ))
    .await;
    let js = js(&nats).await;
    let bigcorp = "greentic.messaging.ingress.prod.bigcorp.support.slack";
    bridge.publish(INGRESS_SUBJECT, "acme-1", "{}").await;
    bridge.publish(bigcorp, "bigcorp-1", "{}").await;
    eventually("both in flight", || async { receiver.seen().len() == 2 }).await;

    assert_eq!(purged(&bridge, "acme").await, 1);
    receiver.open();
    eventually("bigcorp's dead letter", || async {
        stream_len(&js, "GREENTIC_DLQ").await >= 1
    })
    .await;
    wait_settled(&js, "GREENTIC_INGRESS", "ingress").await;

    let dlq = held_ids(&js, "GREENTIC_DLQ").await;
    assert_eq!(dlq, [("bigcorp".to_string(), "bigcorp-1".to_string())]);
    assert_eq!(
        bridge.running.metrics().delivery_counts("ingress"),
        (0, 0, 1)
    );
    assert_eq!(purged(&bridge, "acme").await, 0);
}
