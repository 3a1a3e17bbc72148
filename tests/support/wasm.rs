//! The wasm side of the end-to-end fixtures: the application of `spin.toml`,
//! built for wasm32-wasip1 in release, under spin-test-host, configured as a
//! development `spin up` with the test secrets.
//!
//! No component chains to the broker from a public route yet, so two
//! test-only callers are added beside the application's own components: the
//! probe (tests/spin-test-host/probe) calling the broker through the same
//! `BrokerClient` and `SpinHost` a component uses, once allowed to chain to
//! it and once not.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use greentic::http::Request;
use greentic::secrets::client::SecretsClientError;
use greentic::tenancy::ids::{SecretName, TenantCtx};
use greentic::testing::{NOW_SECS, TEST_HS256_SECRET, TEST_MASTER_KEY};
use serde_json::Value;
use spin_test_host::{Builder, SpinApp};

use crate::Target;

/// Routes of the test-only callers.
pub const ALLOWED_CALLER: &str = "/test-probe/allowed";
pub const ISOLATED_CALLER: &str = "/test-probe/isolated";

const CALLERS: &str = r#"
# Test-only (tests/support/wasm.rs): callers of the broker.
[[trigger.http]]
route = "/test-probe/allowed/..."
component = "test-probe-allowed"

[[trigger.http]]
route = "/test-probe/isolated/..."
component = "test-probe-isolated"

[component.test-probe-allowed]
source = "target/wasm32-wasip1/release/spin_test_probe.wasm"
allowed_outbound_hosts = ["http://secrets-broker.spin.internal"]

[component.test-probe-allowed.build]
command = "cargo build --target wasm32-wasip1 --release -p spin-test-probe"

[component.test-probe-isolated]
source = "target/wasm32-wasip1/release/spin_test_probe.wasm"

[component.test-probe-isolated.build]
command = "cargo build --target wasm32-wasip1 --release -p spin-test-probe"
"#;

/// The application with the test signing secret and master key, `signing_key`
/// as the one shared platform-wide secret, and its clock stopped at the
/// fixtures' "now".
pub fn builder() -> Builder {
    SpinApp::builder()
        .variable(greentic::service::auth::VAR_HS256_SECRET, TEST_HS256_SECRET)
        .variable(greentic::secrets::crypto::VAR_MASTER_KEY, TEST_MASTER_KEY)
        .variable(secrets_broker::api::VAR_SHARED_GLOBAL, "signing_key")
        .wall_clock(UNIX_EPOCH + Duration::from_secs(NOW_SECS))
        .append_to_manifest(CALLERS)
}

/// [`builder`] started. Fails the test with the harness's explanation (e.g.
/// which `cargo build` makes a missing `.wasm`).
pub fn app() -> SpinApp {
    start(builder())
}

/// [`app`] with its stores where `target` keeps them.
pub fn app_on(target: Target) -> SpinApp {
    match target {
        Target::Wasm => app(),
        Target::WasmOnRedis => {
            start(builder().store_backend(Arc::new(greentic_harness::redis::fresh_store)))
        }
        Target::Native => panic!("the native target runs no wasm"),
    }
}

/// The application started, with the demo bundle's tenants in its `config`
/// store (as `greentic tenant apply bundles/demo.yaml` leaves them).
pub fn start(builder: Builder) -> SpinApp {
    let app = builder
        .build()
        .unwrap_or_else(|e| panic!("cannot start the wasm application: {e:#}"));
    greentic::testing::apply_demo(app.store(greentic::store::config::STORE_LABEL));
    app
}

/// Asks the caller at `route` to resolve (`verify: None`) or HMAC-verify a secret.
pub fn call_broker(
    app: &SpinApp,
    route: &str,
    ctx: &TenantCtx,
    name: &SecretName,
    verify: Option<(&[u8], &[u8])>,
) -> Result<Value, SecretsClientError> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("tenant", ctx.tenant_id())
        .append_pair("env", ctx.env_id())
        .append_pair("name", name.as_str());
    if let Some(team) = ctx.team_id() {
        query.append_pair("team", team);
    }
    let body = match verify {
        None => {
            query.append_pair("op", "resolve");
            Vec::new()
        }
        Some((message, mac)) => {
            query
                .append_pair("op", "verify")
                .append_pair("mac_hex", &hex::encode(mac));
            message.to_vec()
        }
    };
    let r = app.send(Request::new("POST", &format!("{route}?{}", query.finish())).with_body(body));
    assert_eq!(r.status, 200, "the probe failed: {:?}", app.failures());
    let report = r.json_body();
    match report["error"].as_str() {
        None => Ok(report),
        Some("not-found") => Err(SecretsClientError::NotFound),
        Some("unavailable") => Err(SecretsClientError::Unavailable(
            report["why"].as_str().unwrap_or_default().to_owned(),
        )),
        Some(other) => panic!("the probe refused the call: {other}"),
    }
}

/// Component log lines, each a JSON object (anything else fails the test).
pub fn logs(app: &SpinApp) -> Vec<Value> {
    app.logs()
        .iter()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("a log line is not JSON: {line}"))
        })
        .collect()
}
