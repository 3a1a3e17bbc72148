//! What only the wasm build under spin.toml's rules can show: which paths
//! reach which component, that the broker's internal operations are
//! reachable only by chaining, and that every runtime config defines the
//! stores the components declare. Everything else runs on both targets in
//! the other test files.

use e2e_tests::wasm;
use greentic::http::Request;
use serde_json::json;

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
