//! Per-request time through the harness: a fresh instance of the release
//! wasm build per request, as under Spin. Watches for a component whose
//! start-up cost grows (a heavier instantiation, work done before routing).
//!
//! Needs the wasm build: `cargo build --target wasm32-wasip1 --release -p session-api -p secrets-broker`.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use greentic::TenantCtx;
use greentic::service::auth::VAR_HS256_SECRET;
use greentic::store::sessions::SessionStore;
use greentic::testing::{NOW_SECS, TEST_HS256_SECRET, new_session, token};
use spin_test_host::{Request, SpinApp};

/// Sessions in the listed scope: one default page's worth would hide
/// per-session costs less than a handful does, and fixtures stay quick.
const SESSIONS: usize = 20;

fn requests(c: &mut Criterion) {
    let app = SpinApp::builder()
        .variable(VAR_HS256_SECRET, TEST_HS256_SECRET)
        .wall_clock(UNIX_EPOCH + Duration::from_secs(NOW_SECS))
        .build()
        .unwrap_or_else(|e| panic!("{e:#}"));
    for wasm in ["session_api.wasm", "secrets_broker.wasm"] {
        let size =
            std::fs::metadata(spin_test_host::default_wasm_dir().join(wasm)).map(|m| m.len());
        eprintln!("{wasm}: {size:?} bytes");
    }
    let ctx = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let store = SessionStore::new(app.store("sessions"));
    for i in 0..SESSIONS {
        store
            .create(
                &ctx,
                new_session("slack", &format!("U{i}")),
                NOW_SECS as i64 * 1000,
            )
            .unwrap();
    }
    let list = Request::new("GET", "/api/v1/sessions")
        .with_header("authorization", token("acme", "prod").bearer())
        .with_header("x-tenant-id", "acme")
        .with_header("x-team-id", "support");
    let first = app.send(list.clone());
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(
        first.json_body()["sessions"].as_array().unwrap().len(),
        SESSIONS
    );

    let mut group = c.benchmark_group("wasm request");
    group.bench_function("session list (20 sessions)", |b| {
        b.iter(|| {
            let r = app.send(black_box(list.clone()));
            assert_eq!(r.status, 200);
        })
    });
    // The floor: instantiate, read the request, refuse it before any store access.
    let anonymous = Request::new("GET", "/api/v1/sessions").with_header("x-tenant-id", "acme");
    group.bench_function("refused without a token (401)", |b| {
        b.iter(|| {
            let r = app.send(black_box(anonymous.clone()));
            assert_eq!(r.status, 401);
        })
    });
    group.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
