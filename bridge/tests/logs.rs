//! The bridge's log lines, read from the binary's output as an operator
//! reads them: a publish refused because NATS is down names the tenant, env,
//! team and channel of its subject, and never the payload or a token.

mod support;

use std::time::Duration;

use greentic_bridge::testing::{NatsServer, PUBLISH_TOKEN, config_toml, free_port};
use support::*;

#[tokio::test]
async fn a_refused_publish_is_logged_with_its_tenant_and_without_its_payload() {
    let nats = NatsServer::not_started();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(
        &config_path,
        config_toml(&format!("127.0.0.1:{port}"), &nats.url(), &[]),
    )
    .unwrap();
    let log = dir.path().join("bridge.log");
    let bridge = BridgeProcess::spawn(&config_path, port, &log);
    eventually("the bridge listens", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;

    let r = publish_to(
        &http_client(),
        &bridge.base,
        "greentic.messaging.ingress.prod.acme.support.slack",
        Some("acme:prod:support:slack:event-Ev1"),
        Some(PUBLISH_TOKEN),
        r#"{"text":"a customer's words"}"#,
    )
    .await;
    assert_eq!(r.status().as_u16(), 503);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let refused: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("nats unavailable"))
        })
        .unwrap_or_else(|| panic!("no refusal line in:\n{text}"));
    let fields = &refused;
    assert_eq!(
        (
            &fields["tenant"],
            &fields["env"],
            &fields["team"],
            &fields["channel"]
        ),
        (
            &serde_json::json!("acme"),
            &serde_json::json!("prod"),
            &serde_json::json!("support"),
            &serde_json::json!("slack")
        ),
        "{refused}"
    );
    assert!(!text.contains("a customer's words"), "a payload was logged");
    assert!(!text.contains(PUBLISH_TOKEN), "a token was logged");
    bridge.terminate();
}
