//! The retention sweep as the bridge calls it (`POST
//! /internal/v1/sweeps/retention` with its delivery token, on a schedule):
//! sessions idle beyond their tenant's `session_retention_days` are forgotten
//! everywhere, others stay, and only the bridge may ask. The clock is the
//! test's. Natively, in wasm, and in wasm on Redis.

use e2e_tests::{Call, Platform, Target, assert_problem, token};
use greentic::TenantCtx;
use greentic::store::kv::KeyValue;
use greentic::tenancy::keys;
use greentic::testing::{NOW_SECS, TEST_DELIVERY_TOKEN};

e2e_tests::on_every_target!(idle_sessions_are_forgotten_by_the_bridges_scheduled_sweep);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn sweep(p: &Platform, token: Option<&str>) -> greentic::http::Response {
    let mut req = greentic::http::Request::new("POST", "/internal/v1/sweeps/retention");
    if let Some(t) = token {
        req = req.with_header("authorization", format!("Bearer {t}"));
    }
    p.call(req)
}

fn idle_sessions_are_forgotten_by_the_bridges_scheduled_sweep(target: Target) {
    let mut p = Platform::empty(target);
    p.set_variable(
        greentic::messaging::bridge::VAR_DELIVERY_TOKEN,
        TEST_DELIVERY_TOKEN,
    );
    let now = NOW_SECS as i64 * 1000;
    let support = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let helpdesk = TenantCtx::new("bigcorp", "prod", Some("helpdesk")).unwrap();
    // Created (and last active) long ago, then the clock moves on.
    p.set_now_ms(now - 400 * DAY_MS);
    let old = p.add_session(&support, "slack", "U-OLD");
    let old_elsewhere = p.add_session(&helpdesk, "webchat", "V-OLD");
    p.set_now_ms(now - 10 * DAY_MS);
    let recent = p.add_session(&support, "slack", "U-RECENT");
    p.set_now_ms(now);

    let before = p.kv().snapshot();
    assert_problem(&sweep(&p, None), 401, "unauthorized");
    assert_problem(&sweep(&p, Some("not-the-bridge")), 401, "unauthorized");
    let user = p.call(
        Call::with(&token("acme", "prod").roles(&["admin"]))
            .request("POST", "/internal/v1/sweeps/retention"),
    );
    assert_problem(&user, 401, "unauthorized");
    assert_eq!(p.kv().snapshot(), before, "a refused sweep changes nothing");

    let r = sweep(&p, Some(TEST_DELIVERY_TOKEN));
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(
        r.json_body(),
        serde_json::json!({ "examined": 3, "deleted": 2, "more": false })
    );
    let exists = |ctx: &TenantCtx, id| {
        p.kv()
            .get(&keys::session_record(ctx, id))
            .unwrap()
            .is_some()
    };
    assert!(!exists(&support, &old));
    assert!(!exists(&helpdesk, &old_elsewhere));
    assert!(exists(&support, &recent), "ten days idle is within a year");
    let swept: Vec<_> = p
        .logs()
        .into_iter()
        .filter(|l| l["event"] == "retention.swept")
        .collect();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0]["deleted"], 2);
}
