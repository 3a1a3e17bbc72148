//! The floor under ingress: the same I/O a Telegram webhook costs ingress,
//! and nothing else. It reads the request body, does one key-value get
//! (ingress reads its tenant's configuration), makes one chained call whose callee does
//! one key-value get (ingress asks the secrets broker), and publishes one
//! message through the bridge (one outbound POST answered after the JetStream
//! ack). The benchmark divides ingress's rate by this one's.

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    use futures::StreamExt;
    use spin_sdk::http::{Method, Request, Response};

    let msg_id = req
        .headers()
        .get("x-floor-id")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| "floor".into());
    let mut body = Vec::new();
    let mut stream = req.into_body_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
    }
    let file = spin_sdk::key_value::Store::open("cache")
        .and_then(|store| store.get("config/acme/head"))
        .expect("the store answers")
        .unwrap_or_default();
    let secret: Response = spin_sdk::http::send(
        Request::builder()
            .method(Method::Post)
            .uri("http://floor-kv-get.spin.internal/")
            .body(Vec::new())
            .build(),
    )
    .await
    .expect("the chained call answers");
    let bridge = spin_sdk::variables::get("bridge_url").expect("bridge_url is set");
    let token = spin_sdk::variables::get("bridge_publish_token").expect("the token is set");
    let published: Response = spin_sdk::http::send(
        Request::builder()
            .method(Method::Post)
            .uri(format!(
                "{bridge}/v1/publish/greentic.messaging.ingress.prod.floor.default.web"
            ))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("nats-msg-id", format!("floor:{msg_id}"))
            .body(format!(
                r#"{{"bytes":{},"file":{},"secret":{}}}"#,
                body.len(),
                file.len(),
                secret.body().len()
            ))
            .build(),
    )
    .await
    .expect("the bridge answers");
    Response::new(*published.status(), "published")
}
