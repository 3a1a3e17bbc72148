//! The isolation matrix: acme/bigcorp x prod/staging x support/sales/no team,
//! each caller against every operation on every other scope's sessions.
//! Every cross-tenant, cross-env and cross-team attempt fails (404 or 403),
//! changes nothing and looks the same as asking for a session that never existed.
//! Secrets have the same matrix without environments (they are per tenant and
//! team): admin API and resolution by service chaining.

use std::collections::BTreeSet;

use e2e_tests::{
    Broker, Call, Console, Platform, TEAMS, TENANTS, Target, assert_problem, every_scope, token,
};
use greentic::TenantCtx;
use greentic::http::Response;
use greentic::secrets::client::{SecretsClient, SecretsClientError};
use greentic::tenancy::ids::{SecretName, SessionId};
use greentic::testing::TokenBuilder;

e2e_tests::on_every_target!(
    listing_returns_exactly_the_callers_scope,
    no_caller_reaches_another_scopes_session,
    headers_outside_the_token_are_forbidden,
    a_cursor_from_one_scope_is_refused_in_another,
    no_admin_reaches_another_scopes_secrets,
    components_resolve_only_their_own_scopes_secrets,
    no_caller_spends_or_sees_another_tenants_or_teams_rate_limits,
    no_caller_reads_or_changes_another_tenants_configuration,
    an_export_holds_exactly_the_callers_scope,
);

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

fn listing_returns_exactly_the_callers_scope(target: Target) {
    let p = Platform::seeded(target);
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

fn no_caller_reaches_another_scopes_session(target: Target) {
    let mut p = Platform::seeded(target);
    let before = p.kv().snapshot();
    let never_existed = "0123456789abcdef0123456789abcdef";
    for (minute, caller) in every_scope().into_iter().enumerate() {
        // Each caller in a minute of its own: its ~150 calls here, with the
        // calls of its tenant's other scopes (one token subject), would go
        // past the subject's per-minute quota (600), which is not what this
        // matrix is about (tests/limits.rs is).
        p.set_now_ms((e2e_tests::NOW_SECS as i64 + 60 * minute as i64) * 1000);
        for (method, prefix) in SESSION_OPERATIONS {
            // With the team header and without it (found through the locator).
            for call in [scoped_call(&caller), Call::with(&scoped_token(&caller))] {
                let missing = p.call(call.request(method, &format!("{prefix}{never_existed}")));
                assert_problem(&missing, 404, "not-found");
                for (owner, id) in p.sessions.iter().filter(|(owner, _)| *owner != caller) {
                    let r = p.call(call.request(method, &format!("{prefix}{id}")));
                    assert_problem(&r, 404, "not-found");
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

fn headers_outside_the_token_are_forbidden(target: Target) {
    let p = Platform::seeded(target);
    let before = p.kv().snapshot();
    for caller in every_scope() {
        // One header at a time outside the token; each distinct request once.
        let mut attempts: Vec<Call> = Vec::new();
        for other in every_scope() {
            let mut candidates = Vec::new();
            if other.tenant_id() != caller.tenant_id() {
                candidates.push(scoped_call(&caller).tenant(other.tenant_id()));
            }
            if other.env_id() != caller.env_id() {
                candidates.push(scoped_call(&caller).env(other.env_id()));
            }
            if other.team_token() != caller.team_token() {
                candidates.push(scoped_call(&caller).team(other.team_token()));
            }
            for call in candidates {
                let headers = |c: &Call| (c.tenant.clone(), c.env.clone(), c.team.clone());
                if !attempts.iter().any(|a| headers(a) == headers(&call)) {
                    attempts.push(call);
                }
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

fn a_cursor_from_one_scope_is_refused_in_another(target: Target) {
    let p = Platform::seeded(target);
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

/// A scope secrets live in: a tenant's team, or the tenant itself (`None`).
type SecretScope = (&'static str, Option<&'static str>);

fn secret_scopes() -> Vec<SecretScope> {
    let mut scopes = Vec::new();
    for tenant in TENANTS {
        for team in TEAMS {
            scopes.push((*tenant, *team));
        }
    }
    scopes
}

/// An admin of exactly that scope: limited to the team, or tenant-wide.
fn secrets_admin((tenant, team): SecretScope) -> Call {
    let admin = token(tenant, "prod").roles(&["admin", "secrets-reader"]);
    match team {
        Some(team) => Call::with(&admin.teams(&[team])).team(team),
        None => Call::with(&admin),
    }
}

/// A name only this scope has; every scope also has an `api_key` of its own.
fn only_in((tenant, team): SecretScope) -> String {
    format!("only_{tenant}_{}", team.unwrap_or("tenant"))
}

fn api_key_of((tenant, team): SecretScope) -> String {
    format!("{tenant}-{}-key", team.unwrap_or("tenant"))
}

fn broker_with_a_secret_in_every_scope(target: Target) -> Broker {
    let b = Broker::on(target);
    for scope in secret_scopes() {
        b.put(&secrets_admin(scope), "api_key", &api_key_of(scope));
        b.put(&secrets_admin(scope), &only_in(scope), "x");
    }
    b
}

fn no_admin_reaches_another_scopes_secrets(target: Target) {
    let b = broker_with_a_secret_in_every_scope(target);
    let before = b.kv().snapshot();
    for caller in secret_scopes() {
        let call = secrets_admin(caller);
        let listed = b.call(call.request("GET", "/api/v1/secrets")).json_body();
        let names: BTreeSet<&str> = listed["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        let only = only_in(caller);
        assert_eq!(names, ["api_key", only.as_str()].into(), "{caller:?}");
        let own = b.call(call.request("GET", "/api/v1/secrets/api_key/value"));
        assert_eq!(
            own.json_body()["value"].as_str(),
            Some(api_key_of(caller).as_str())
        );

        for other in secret_scopes().into_iter().filter(|o| *o != caller) {
            let name = only_in(other);
            for (method, path) in [
                ("GET", format!("/api/v1/secrets/{name}")),
                ("GET", format!("/api/v1/secrets/{name}/value")),
                ("DELETE", format!("/api/v1/secrets/{name}")),
            ] {
                let r = b.call(call.request(method, &path));
                assert_problem(&r, 404, "not-found");
            }
            // Naming the other scope in the headers is refused outright.
            let (tenant, team) = other;
            let asking = if tenant != caller.0 {
                Some(call.clone().tenant(tenant))
            } else if caller.1.is_some() {
                Some(match team {
                    Some(team) => call.clone().team(team),
                    None => Call {
                        team: None,
                        ..call.clone()
                    },
                })
            } else {
                None // a tenant-wide admin may address its teams by header
            };
            if let Some(asking) = asking {
                for (method, path) in [
                    ("GET", "/api/v1/secrets".to_owned()),
                    ("GET", format!("/api/v1/secrets/{name}/value")),
                    ("DELETE", format!("/api/v1/secrets/{name}")),
                ] {
                    let r = b.call(asking.request(method, &path));
                    assert_problem(&r, 403, "forbidden");
                }
                let put = asking
                    .request("PUT", &format!("/api/v1/secrets/{name}"))
                    .with_body(e2e_tests::json_value("overwritten"));
                assert_problem(&b.call(put), 403, "forbidden");
            }
        }
    }
    assert_eq!(
        b.kv().snapshot(),
        before,
        "a cross-scope attempt changed the store"
    );
}

fn components_resolve_only_their_own_scopes_secrets(target: Target) {
    let b = broker_with_a_secret_in_every_scope(target);
    let client = b.client();
    for env in ["prod", "staging"] {
        for caller in secret_scopes() {
            let ctx = TenantCtx::new(caller.0, env, caller.1).unwrap();
            let resolve = |name: &str| client.resolve(&ctx, &SecretName::parse(name).unwrap());
            // The team's own shadows the tenant's.
            assert_eq!(
                resolve("api_key"),
                Ok(api_key_of(caller).into_bytes()),
                "{ctx}"
            );
            for other in secret_scopes() {
                let visible = other == caller || (other.0 == caller.0 && other.1.is_none());
                let expected = if visible {
                    Ok(b"x".to_vec())
                } else {
                    Err(SecretsClientError::NotFound)
                };
                assert_eq!(
                    resolve(&only_in(other)),
                    expected,
                    "{ctx} resolving {other:?}'s"
                );
            }
        }
    }
}

/// The limits row of the matrix: acme's support caller spends its whole
/// per-minute quota (the subject's: 600); then every scope asks once. acme's
/// scopes (the same token subject) are refused, bigcorp's are admitted with
/// quotas untouched, and each scope's refusals show in that scope's usage only.
fn no_caller_spends_or_sees_another_tenants_or_teams_rate_limits(target: Target) {
    let p = Platform::empty(target);
    let support = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    for _ in 0..600 {
        let r = p.call(scoped_call(&support).request("GET", "/api/v1/sessions"));
        assert_eq!(r.status, 200);
    }
    assert_problem(
        &p.call(scoped_call(&support).request("GET", "/api/v1/sessions")),
        429,
        "too-many-requests",
    );
    let mut bigcorp_calls = 0;
    for ctx in every_scope() {
        let r = p.call(scoped_call(&ctx).request("GET", "/api/v1/sessions"));
        if ctx.tenant_id() == "acme" {
            assert_problem(&r, 429, "too-many-requests");
        } else {
            // bigcorp's counts are its own calls and nothing of acme's.
            bigcorp_calls += 1;
            assert_eq!(r.status, 200, "{ctx:?}: {}", r.json_body());
            assert_eq!(
                r.header("ratelimit"),
                Some(
                    format!(
                        "\"tenant\";r={};t=60, \"subject\";r={};t=60",
                        1200 - bigcorp_calls,
                        600 - bigcorp_calls
                    )
                    .as_str()
                ),
                "{ctx:?}"
            );
        }
    }
    // A reader of each scope (another subject, so not refused itself).
    let refused_seen_by = |ctx: &TenantCtx| {
        let mut reader = scoped_token(ctx);
        reader.claims.sub = "auditor".into();
        let r = p.call(
            Call::with(&reader)
                .env(ctx.env_id())
                .team(ctx.team_token())
                .request("GET", "/api/v1/usage"),
        );
        assert_eq!(r.status, 200, "{ctx:?}: {}", r.json_body());
        r.json_body()["totals"]["api_requests_refused"].clone()
    };
    for ctx in every_scope() {
        let expected = match (ctx.tenant_id(), ctx.env_id(), ctx.team_token()) {
            ("acme", "prod", "support") => 2,
            ("acme", _, _) => 1,
            _ => 0,
        };
        assert_eq!(refused_seen_by(&ctx), expected, "{ctx:?}");
    }
}

/// The tenant API's operations on one tenant, as data: `{t}` is the tenant.
const CONFIG_OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/api/v1/tenants/{t}"),
    ("GET", "/api/v1/tenants/{t}/versions"),
    ("GET", "/api/v1/tenants/{t}/versions/1"),
    ("PUT", "/api/v1/tenants/{t}"),
    ("POST", "/api/v1/tenants/{t}/rollback"),
    ("PUT", "/api/v1/tenants/{t}/status"),
    ("DELETE", "/api/v1/tenants/{t}"),
];

fn config_request(call: &Call, method: &str, path: &str, tenant: &str) -> greentic::http::Request {
    let body = match path.rsplit('/').next() {
        Some("rollback") => serde_json::json!({ "version": 1 }).to_string().into_bytes(),
        Some("status") => serde_json::json!({ "status": "suspended" })
            .to_string()
            .into_bytes(),
        _ => {
            let source = if tenant == "bigcorp" {
                "bigcorp"
            } else {
                "acme"
            };
            let document = greentic::flows::control::TenantDocument::from_bundle(
                greentic::testing::demo_bundle(),
                source,
            )
            .unwrap();
            serde_json::to_vec(&document).unwrap()
        }
    };
    call.request(method, &path.replace("{t}", tenant))
        .with_body(body)
}

/// Every kind of token of each tenant (admin, read-only, writer, an admin
/// limited to one team) and no token, against every operation of the tenant
/// API on every tenant: another tenant's configuration, existing or not, is
/// the same 403; a tenant's own is readable by its tenant-wide tokens and
/// changeable by its admin only; suspension, deletion and listing are the
/// platform's.
/// Nothing refused is written.
fn no_caller_reads_or_changes_another_tenants_configuration(target: Target) {
    let console = Console::on(target);
    let before = console.config().snapshot();
    for &caller_tenant in TENANTS {
        let tokens = [
            (
                "admin",
                Some(token(caller_tenant, "prod").roles(&["admin"])),
            ),
            ("reader", Some(token(caller_tenant, "prod"))),
            (
                "writer",
                Some(token(caller_tenant, "prod").roles(&["writer"])),
            ),
            (
                "team admin",
                Some(
                    token(caller_tenant, "prod")
                        .teams(&["support"])
                        .roles(&["admin"]),
                ),
            ),
            ("no token", None),
        ];
        for (kind, tok) in &tokens {
            let call = match tok {
                Some(tok) => Call::with(tok),
                None => Call {
                    token: None,
                    tenant: Some(caller_tenant.to_owned()),
                    env: None,
                    team: None,
                },
            };
            let listing = console.call(call.request("GET", "/api/v1/tenants"));
            let expected_listing = if tok.is_some() { 403 } else { 401 };
            assert_eq!(
                listing.status, expected_listing,
                "{caller_tenant} {kind} lists tenants"
            );
            for &(method, path) in CONFIG_OPERATIONS {
                for target_tenant in TENANTS.iter().copied().chain(["ghost"]) {
                    let r = console.call(config_request(&call, method, path, target_tenant));
                    let what =
                        format!("{caller_tenant} {kind}: {method} {path} of {target_tenant}");
                    let own = target_tenant == caller_tenant;
                    let write = method != "GET";
                    let expected = match (tok.is_some(), *kind, own) {
                        (false, _, _) => 401,
                        (true, _, false) => 403,
                        (true, "team admin", true) => 403,
                        (true, _, true) if path.ends_with("status") || method == "DELETE" => 403,
                        (true, "admin", true) => 200,
                        (true, _, true) if write => 403,
                        (true, _, true) => 200,
                    };
                    assert_eq!(r.status, expected, "{what}: {}", r.json_body());
                    if !own && tok.is_some() {
                        let ghost = console.call(config_request(&call, method, path, "ghost"));
                        assert_eq!(
                            anonymous(&r),
                            anonymous(&ghost),
                            "{what} tells whether the tenant exists"
                        );
                    }
                }
            }
        }
    }
    // Every write above was refused or changed nothing (the admins sent
    // their own current document and rolled back to the version they are at).
    assert_eq!(console.config().snapshot(), before);
}

/// `/api/v1/export` of every scope's admin holds exactly that scope's
/// sessions: never another tenant's, env's or team's.
fn an_export_holds_exactly_the_callers_scope(target: Target) {
    let p = Platform::seeded(target);
    for ctx in every_scope() {
        let admin = token(ctx.tenant_id(), ctx.env_id())
            .teams(&[ctx.team_token()])
            .roles(&["admin"]);
        let call = Call::with(&admin).env(ctx.env_id()).team(ctx.team_token());
        let exported: BTreeSet<String> = p
            .export_all(&call, 2)
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(exported, ids(p.sessions_in(|c| c == &ctx)), "{ctx:?}");
    }
}
