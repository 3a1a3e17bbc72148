//! The isolation matrix: acme/bigcorp x prod/staging x support/sales/no team,
//! each caller against every operation on every other scope's sessions.
//! Every cross-tenant, cross-env and cross-team attempt fails (404 or 403),
//! changes nothing and looks the same as asking for a session that never existed.

use std::collections::BTreeSet;

use e2e_tests::{Call, Platform, assert_problem, every_scope, token};
use greentic::TenantCtx;
use greentic::http::Response;
use greentic::session::SessionId;
use greentic::testing::TokenBuilder;

/// The operations on one session, as data: adding one here adds its cases to
/// every test below.
const SESSION_OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/api/v1/sessions/"),
    ("DELETE", "/api/v1/sessions/"),
];

/// A token for exactly the caller's scope, allowed to write.
fn scoped_token(ctx: &TenantCtx) -> TokenBuilder {
    token(ctx.tenant_id(), ctx.env_id())
        .teams(&[ctx.team_token()])
        .roles(&["writer"])
}

fn scoped_call(ctx: &TenantCtx) -> Call {
    Call::with(&scoped_token(ctx))
        .env(ctx.env_id())
        .team(ctx.team_token())
}

/// A problem body without its request id, to compare two answers.
fn anonymous(r: &Response) -> serde_json::Value {
    let mut body = r.json_body();
    body.as_object_mut().unwrap().remove("request_id");
    body
}

fn ids(list: Vec<SessionId>) -> BTreeSet<String> {
    list.into_iter().map(|id| id.to_string()).collect()
}

#[test]
fn listing_returns_exactly_the_callers_scope() {
    let p = Platform::seeded();
    for ctx in every_scope() {
        let listed: BTreeSet<String> = p
            .list_all(&scoped_call(&ctx), 2)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            listed,
            ids(p.sessions_in(|c| *c == ctx)),
            "team listing of {ctx}"
        );

        // No X-Team-ID with a one-team token: still only that team.
        let no_header = Call::with(&scoped_token(&ctx));
        let listed: BTreeSet<String> = p.list_all(&no_header, 4).unwrap().into_iter().collect();
        assert_eq!(
            listed,
            ids(p.sessions_in(|c| *c == ctx)),
            "team-token env listing of {ctx}"
        );

        // A token for every team lists the whole environment, and only it.
        let whole_env = Call::with(&token(ctx.tenant_id(), ctx.env_id()));
        let listed: BTreeSet<String> = p.list_all(&whole_env, 5).unwrap().into_iter().collect();
        let expected =
            ids(p.sessions_in(|c| c.tenant_id() == ctx.tenant_id() && c.env_id() == ctx.env_id()));
        assert_eq!(listed, expected, "env listing of {ctx}");
    }
}

#[test]
fn no_caller_reaches_another_scopes_session() {
    let p = Platform::seeded();
    let before = p.kv().snapshot();
    let never_existed = "0123456789abcdef0123456789abcdef";
    for caller in every_scope() {
        for (owner, id) in p.sessions.iter().filter(|(owner, _)| *owner != caller) {
            for (method, prefix) in SESSION_OPERATIONS {
                // With the team header and without it (found through the locator).
                for call in [scoped_call(&caller), Call::with(&scoped_token(&caller))] {
                    let r = p.call(call.request(method, &format!("{prefix}{id}")));
                    assert_problem(&r, 404, "not-found");
                    let missing = p.call(call.request(method, &format!("{prefix}{never_existed}")));
                    assert_eq!(
                        anonymous(&r),
                        anonymous(&missing),
                        "{caller} {method} {owner}'s session is distinguishable"
                    );
                }
            }
        }
    }
    assert_eq!(
        p.kv().snapshot(),
        before,
        "a cross-scope attempt changed the store"
    );
}

#[test]
fn headers_outside_the_token_are_forbidden() {
    let p = Platform::seeded();
    let before = p.kv().snapshot();
    for caller in every_scope() {
        let mut attempts = Vec::new();
        for other in every_scope() {
            if other.tenant_id() != caller.tenant_id() {
                attempts.push(scoped_call(&caller).tenant(other.tenant_id()));
            }
            if other.env_id() != caller.env_id() {
                attempts.push(scoped_call(&caller).env(other.env_id()));
            }
            if other.team_token() != caller.team_token() {
                attempts.push(scoped_call(&caller).team(other.team_token()));
            }
        }
        for call in attempts {
            assert_problem(
                &p.call(call.request("GET", "/api/v1/sessions")),
                403,
                "forbidden",
            );
            for (_, id) in &p.sessions {
                for (method, prefix) in SESSION_OPERATIONS {
                    assert_problem(
                        &p.call(call.request(method, &format!("{prefix}{id}"))),
                        403,
                        "forbidden",
                    );
                }
            }
        }
    }
    assert_eq!(p.kv().snapshot(), before);
}

#[test]
fn a_cursor_from_one_scope_is_refused_in_another() {
    let p = Platform::seeded();
    let acme = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let r = p.call(scoped_call(&acme).request("GET", "/api/v1/sessions?limit=1"));
    let cursor = r.json_body()["next_cursor"].as_str().unwrap().to_owned();
    for other in every_scope().into_iter().filter(|c| *c != acme) {
        let r = p.call(
            scoped_call(&other)
                .request("GET", &format!("/api/v1/sessions?limit=1&cursor={cursor}")),
        );
        assert_problem(&r, 400, "bad-request");
    }
}
