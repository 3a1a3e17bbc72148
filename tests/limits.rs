//! Per-tenant limits of the REST APIs as a client meets them: `RateLimit`
//! headers on every admitted answer, 429 problem+json with `Retry-After` over
//! a quota, nothing changed by a refused request, the refusals in
//! `/api/v1/usage`, and one tenant's (or subject's) exhaustion never touching
//! another's quota. The quotas are the demo bundle's, i.e. the built-in
//! defaults: 600 calls a minute per token subject, 1,200 per tenant.

use e2e_tests::{Broker, Call, Platform, Target, assert_problem, token};
use greentic::TenantCtx;
use greentic::http::Response;
use greentic::tenancy::limits::Limits;
use greentic::testing::{MemoryHost, NOW_SECS, TokenBuilder};

e2e_tests::on_every_target!(
    a_subject_over_its_quota_gets_429_with_headers_and_changes_nothing,
    a_tenant_over_its_quota_is_refused_whoever_asks,
    the_secrets_api_is_counted_too,
);

const SUBJECT_QUOTA: u32 = 600;
const TENANT_QUOTA: u32 = 1_200;

fn support() -> TenantCtx {
    TenantCtx::new("acme", "prod", Some("support")).unwrap()
}

/// A token of acme's prod env for subject `sub`, allowed to write.
fn acme_as(sub: &str) -> TokenBuilder {
    let mut token = token("acme", "prod").roles(&["writer"]);
    token.claims.sub = sub.to_owned();
    token
}

/// Sends `n` admitted GETs of `path` as `call`; panics on any other answer.
fn spend(p: &Platform, call: &Call, path: &str, n: u32) -> Response {
    let mut last = None;
    for i in 0..n {
        let r = p.call(call.request("GET", path));
        assert_eq!(r.status, 200, "request {i}: {}", r.json_body());
        last = Some(r);
    }
    last.expect("n > 0")
}

/// `RateLimit` and `RateLimit-Policy` as the draft writes them.
#[track_caller]
fn assert_rate_headers(r: &Response, tenant_left: u32, subject_left: u32, reset: u32) {
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(
            format!("\"tenant\";q={TENANT_QUOTA};w=60, \"subject\";q={SUBJECT_QUOTA};w=60")
                .as_str()
        )
    );
    assert_eq!(
        r.header("ratelimit"),
        Some(
            format!("\"tenant\";r={tenant_left};t={reset}, \"subject\";r={subject_left};t={reset}")
                .as_str()
        )
    );
}

fn usage_totals(p: &Platform, call: &Call) -> serde_json::Value {
    let r = p.call(call.request("GET", "/api/v1/usage"));
    assert_eq!(r.status, 200, "{}", r.json_body());
    r.json_body()
}

fn a_subject_over_its_quota_gets_429_with_headers_and_changes_nothing(target: Target) {
    let mut p = Platform::empty(target);
    let id = p.add_session(&support(), "slack", "U1");
    let path = format!("/api/v1/sessions/{id}");
    let dana = Call::with(&acme_as("dana"));

    let first = p.call(dana.request("GET", &path));
    assert_eq!(first.status, 200);
    assert_rate_headers(&first, TENANT_QUOTA - 1, SUBJECT_QUOTA - 1, 60);
    let last = spend(&p, &dana, &path, SUBJECT_QUOTA - 1);
    assert_rate_headers(&last, TENANT_QUOTA - SUBJECT_QUOTA, 0, 60);

    // Over: a GET and a DELETE are refused alike, and the DELETE deletes nothing.
    let sessions_before = p.kv().snapshot();
    for method in ["GET", "DELETE"] {
        let r = p.call(dana.request(method, &path));
        assert_problem(&r, 429, "too-many-requests");
        assert_eq!(r.header("retry-after"), Some("60"));
        assert!(
            r.json_body()["detail"]
                .as_str()
                .unwrap()
                .contains("600 requests per 60 s for this subject"),
            "{}",
            r.json_body()
        );
        assert!(
            r.header("ratelimit")
                .unwrap()
                .contains("\"subject\";r=0;t=60")
        );
    }
    assert_eq!(
        p.kv().snapshot(),
        sessions_before,
        "a refused request changes nothing"
    );

    // Another subject of acme still has its own quota; bigcorp has all of its.
    let erin = p.call(Call::with(&acme_as("erin")).request("GET", &path));
    assert_eq!(erin.status, 200);
    assert_rate_headers(
        &erin,
        TENANT_QUOTA - SUBJECT_QUOTA - 3,
        SUBJECT_QUOTA - 1,
        60,
    );
    let bigcorp = p.call(Call::with(&token("bigcorp", "prod")).request("GET", "/api/v1/sessions"));
    assert_eq!(bigcorp.status, 200);
    assert_rate_headers(&bigcorp, TENANT_QUOTA - 1, SUBJECT_QUOTA - 1, 60);

    // Half a minute on, the window has 30 s left; a minute on, dana is back.
    p.set_now_ms((NOW_SECS as i64 + 30) * 1000);
    let r = p.call(dana.request("GET", &path));
    assert_problem(&r, 429, "too-many-requests");
    assert_eq!(r.header("retry-after"), Some("30"));
    p.set_now_ms((NOW_SECS as i64 + 60) * 1000);
    let back = p.call(dana.request("DELETE", &path));
    assert_eq!(back.status, 204);
    assert_rate_headers(&back, TENANT_QUOTA - 1, SUBJECT_QUOTA - 1, 60);

    // The refusals are the tenant's usage (of the day they happened), and
    // only acme's; the answer also says what the limits are.
    let acme_usage = usage_totals(&p, &Call::with(&token("acme", "prod")));
    assert_eq!(acme_usage["totals"]["api_requests_refused"], 3);
    assert_eq!(
        acme_usage["limits"],
        serde_json::to_value(Limits::default()).unwrap()
    );
    let bigcorp_usage = usage_totals(&p, &Call::with(&token("bigcorp", "prod")));
    assert_eq!(bigcorp_usage["totals"]["api_requests_refused"], 0);
}

fn a_tenant_over_its_quota_is_refused_whoever_asks(target: Target) {
    let p = Platform::empty(target);
    for sub in ["dana", "erin"] {
        spend(
            &p,
            &Call::with(&acme_as(sub)),
            "/api/v1/sessions",
            SUBJECT_QUOTA,
        );
    }
    // 1,200 calls: the tenant's quota is spent, whoever asks next.
    let r = p.call(Call::with(&acme_as("frank")).request("GET", "/api/v1/sessions"));
    assert_problem(&r, 429, "too-many-requests");
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with("\"tenant\";r=0;t=60")
    );
    assert!(
        r.json_body()["detail"]
            .as_str()
            .unwrap()
            .contains("1200 requests per 60 s for this tenant")
    );
    let bigcorp = p.call(Call::with(&token("bigcorp", "prod")).request("GET", "/api/v1/sessions"));
    assert_eq!(bigcorp.status, 200);
}

fn the_secrets_api_is_counted_too(target: Target) {
    let broker = Broker::on(target);
    let admin = Call::with(&token("acme", "prod").roles(&["admin"])).team("support");
    let r = broker.call(admin.request("GET", "/api/v1/secrets"));
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_rate_headers(&r, TENANT_QUOTA - 1, SUBJECT_QUOTA - 1, 60);
}

/// A tenant's own limits (a new version of its configuration) apply to it alone.
#[test]
fn a_tenants_own_limits_apply_to_it_alone() {
    let host = MemoryHost::new(&[session_api::STORE_LABEL, "limits"]);
    host.update_tenant("acme", |acme| {
        acme.tenant.limits.api_requests_per_minute = Some(5);
        acme.tenant.limits.api_requests_per_minute_per_subject = Some(2);
    });
    let call = |tok: &TokenBuilder| {
        session_api::handle(&Call::with(tok).request("GET", "/api/v1/sessions"), &host)
    };
    let dana = acme_as("dana");
    assert_eq!(call(&dana).status, 200);
    let second = call(&dana);
    assert_eq!(
        second.header("ratelimit-policy"),
        Some("\"tenant\";q=5;w=60, \"subject\";q=2;w=60")
    );
    assert_problem(&call(&dana), 429, "too-many-requests");
    assert_eq!(call(&token("bigcorp", "prod")).status, 200);
    // A tenant this instance does not have reaches nothing and counts
    // nowhere (a deleted tenant's tokens leave nothing behind).
    let windows = host.store("limits").snapshot();
    assert_problem(&call(&token("stranger", "prod")), 403, "forbidden");
    assert_eq!(host.store("limits").snapshot(), windows);
}
