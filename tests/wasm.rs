//! What only the wasm build under spin.toml's rules can show: which paths
//! reach which component, that the broker's internal operations are
//! reachable only by chaining, that every runtime config defines the stores
//! the components declare, that the messaging components answer through
//! their wasm builds, and that every component fits the Spin releases we
//! claim. Everything else runs on every target in the other test files.

use e2e_tests::wasm;
use greentic::http::Request;
use serde_json::{Value, json};

#[test]
fn each_public_route_reaches_its_component_and_nothing_else_answers() {
    let app = wasm::app();
    for path in [
        "/api/v1/sessions",
        "/api/v1/sessions/x",
        "/api/v1/secrets",
        "/api/v1/secrets/x/value",
    ] {
        let r = app.send(Request::new("GET", path).with_header("x-tenant-id", "acme"));
        assert_eq!(r.status, 401, "{path}: only a component answers 401");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    for path in [
        "/",
        "/api",
        "/api/v1",
        "/api/v1/sessionsx",
        "/internal/v1/secrets",
    ] {
        let r = app.send(Request::new("GET", path));
        assert_eq!((r.status, r.body.len()), (404, 0), "{path}");
    }
    assert!(app.failures().is_empty(), "{:?}", app.failures());
}

#[test]
fn the_brokers_internal_operations_are_reachable_only_by_chaining() {
    let app = wasm::app();
    let resolve = |path: &str| {
        Request::new("POST", path)
            .with_header("x-tenant-id", "acme")
            .with_header("x-env-id", "prod")
            .with_body(json!({ "name": "api_key" }).to_string())
    };
    for path in [
        "/internal/v1/secrets/resolve",
        "/internal/v1/secrets/verify-hmac-sha256",
        "/api/v1/secrets/../../../internal/v1/secrets/resolve",
        "/api/v1/secrets/%2e%2e/%2e%2e/%2e%2e/internal/v1/secrets/resolve",
    ] {
        let r = app.send(resolve(path));
        assert_eq!(r.status, 404, "{path} reached an internal operation");
        assert!(r.json_body().get("value").is_none());
    }
    // The same request by chaining reaches the operation (no such secret yet).
    let chained = app.send_chained("secrets-broker", resolve("/internal/v1/secrets/resolve"));
    assert_eq!(chained.status, 404);
    assert_eq!(
        chained.json_body()["type"],
        "urn:greentic:problem:not-found"
    );
}

#[test]
fn every_runtime_config_defines_every_declared_store() {
    for config in ["runtime-config.toml", "deploy/runtime-config.redis.toml"] {
        let path = spin_test_host::workspace_dir().join(config);
        assert!(path.is_file(), "{config} is missing");
        if let Err(e) = wasm::builder().runtime_config(Some(path)).build() {
            panic!("`spin up --runtime-config-file {config}` would not start: {e:#}");
        }
    }
}

/// The messaging components through their wasm build: ingress verifying with
/// the broker by chaining, web chat tokens and reads, and the bridge-only
/// delivery routes refusing anyone without the bridge's token.
#[test]
fn the_messaging_components_answer_through_the_wasm_build() {
    use hmac::{KeyInit, Mac};
    let app = wasm::start(
        wasm::builder()
            .variable("bridge_publish_token", "wasm-test-publish-token-0123456789")
            .variable(
                "bridge_delivery_token",
                "wasm-test-delivery-token-0123456789",
            )
            // Nothing listens there: publishing must fail as "unavailable".
            .variable("bridge_url", "http://127.0.0.1:9"),
    );
    let put = |tenant: &str, team: &str, name: &str, value: &str| {
        let req = Request::new("PUT", &format!("/api/v1/secrets/{name}"))
            .with_header(
                "authorization",
                e2e_tests::token(tenant, "prod").roles(&["admin"]).bearer(),
            )
            .with_header("x-tenant-id", tenant)
            .with_header("x-team-id", team)
            .with_body(json!({ "value": value }).to_string());
        assert_eq!(app.send(req).status, 201);
    };
    put(
        "acme",
        "support",
        "slack_signing_secret",
        "wasm-slack-secret",
    );
    put(
        "bigcorp",
        "helpdesk",
        "webchat_token_secret",
        "wasm-webchat-secret-0123456789",
    );

    let slack = |path: &str, body: &Value, secret: &str| {
        let raw = body.to_string();
        let ts = e2e_tests::NOW_SECS.to_string();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:{raw}").as_bytes());
        let sig = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
        app.send(
            Request::new("POST", path)
                .with_header("x-slack-request-timestamp", &ts)
                .with_header("x-slack-signature", sig)
                .with_body(raw),
        )
    };
    let hook = "/webhooks/prod/acme/support/slack";
    let challenge = json!({ "type": "url_verification", "challenge": "c-123" });
    let r = slack(hook, &challenge, "wasm-slack-secret");
    assert_eq!(
        (r.status, r.json_body()["challenge"].clone()),
        (200, json!("c-123"))
    );
    assert_eq!(slack(hook, &challenge, "wrong").status, 401);
    assert_eq!(
        slack(
            "/webhooks/prod/acme/support/nobody",
            &challenge,
            "wasm-slack-secret"
        )
        .status,
        404
    );
    assert_eq!(
        slack(
            "/webhooks/prod/ac.me/support/slack",
            &challenge,
            "wasm-slack-secret"
        )
        .status,
        400
    );
    let event = greentic_harness::providers::slack::message_event("EvWASM", "U1", "hi", None);
    let r = slack(hook, &event, "wasm-slack-secret");
    assert_eq!(r.status, 503, "{}", r.json_body());
    assert_eq!(r.json_body()["type"], "urn:greentic:problem:unavailable");

    let chat = "/webhooks/prod/bigcorp/helpdesk/webchat";
    let token = app.send(
        Request::new("POST", &format!("{chat}/tokens"))
            .with_header("authorization", "Bearer wasm-webchat-secret-0123456789"),
    );
    assert_eq!(token.status, 200, "{}", token.json_body());
    let token = token.json_body()["token"].as_str().unwrap().to_owned();
    let read = |bearer: &str| {
        app.send(
            Request::new(
                "GET",
                "/webchat/v1/prod/bigcorp/helpdesk/webchat/activities",
            )
            .with_header("authorization", format!("Bearer {bearer}")),
        )
    };
    let r = read(&token);
    assert_eq!(
        (r.status, r.json_body()["activities"].clone()),
        (200, json!([]))
    );
    assert_eq!(read("forged").status, 401);
    let page = app.send(Request::new("GET", "/webchat"));
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("Greentic web chat"));

    for route in [
        "/internal/v1/deliveries/ingress",
        "/internal/v1/deliveries/egress",
    ] {
        let r = app.send(
            Request::new("POST", route)
                .with_header("authorization", "Bearer not-the-bridge")
                .with_body("{}"),
        );
        assert_eq!(r.status, 401, "{route}");
    }
    assert!(app.failures().is_empty(), "{:?}", app.failures());
}

/// The Spin releases the README claims, by the world their HTTP trigger gives
/// a component: 3.0, 3.2 and 3.4 (Spin's 3.5 and 3.6 environments list 3.4's
/// world for components exporting wasi:http 0.2's incoming-handler).
const SPIN_WORLDS: &[&str] = &[
    "fermyon:spin/http-trigger@3.0.0",
    "spin:up/http-trigger@3.2.0",
    "spin:up/http-trigger@3.4.0",
];

/// What `spin build` checks for `application.targets`, offline: each
/// component of spin.toml, made a component as Spin makes it, can run where
/// the HTTP trigger of every Spin release we claim puts it. Spin 2's world
/// has no `wasi:keyvalue` (compare-and-swap), so the same check must refuse
/// every component that keeps state there.
#[test]
fn every_component_fits_the_spin_releases_we_claim() {
    use spin_test_host::environment::{GuestWorld, HostWorld, spin_sdk_wit_dir};
    let wit = spin_sdk_wit_dir().unwrap();
    let hosts: Vec<(&str, HostWorld)> = SPIN_WORLDS
        .iter()
        .map(|w| (*w, HostWorld::load(&wit, w).unwrap()))
        .collect();
    let spin2 = HostWorld::load(&wit, "fermyon:spin/http-trigger@2.0.0").unwrap();
    let manifest = spin_test_host::manifest::Manifest::of_workspace();
    assert!(manifest.component.len() >= 7);
    let mut misfits = Vec::new();
    for (id, component) in &manifest.component {
        let wasm = spin_test_host::workspace_dir().join(&component.source);
        let module = std::fs::read(&wasm)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-components)", wasm.display()));
        let guest = GuestWorld::of_module(&module).unwrap();
        for (world, host) in &hosts {
            if let Err(e) = host.fits(&guest) {
                misfits.push(format!("{id} does not fit {world}: {e:#}"));
            }
        }
        if !component.key_value_stores.is_empty() {
            let why = format!(
                "{:#}",
                spin2.fits(&guest).expect_err("Spin 2 has no wasi:keyvalue")
            );
            assert!(why.contains("wasi:keyvalue"), "{id} on Spin 2: {why}");
        }
    }
    assert!(misfits.is_empty(), "{}", misfits.join("\n"));
}
