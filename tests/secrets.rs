//! The secrets broker: admin API, isolation, encryption at rest, resolution
//! for components, audit, and bad input.

use e2e_tests::{Broker, Call, Target, UNSAFE_IDS, assert_problem, json_value, token};
use greentic::TenantCtx;
use greentic::http::Request;
use greentic::secrets::client::{SecretsClient, SecretsClientError, hmac_sha256_matches};
use greentic::store::kv::KeyValue;
use greentic::tenancy::ids::{SecretName, SecretScope};
use greentic::tenancy::keys;
use greentic::testing::{FakeSecrets, TEST_MASTER_KEY, TEST_MASTER_KEY_2};

e2e_tests::on_every_target!(
    put_list_and_read_through_the_admin_api,
    acme_cannot_read_list_overwrite_or_delete_bigcorps_secrets,
    teams_see_their_own_and_their_tenants_secrets_and_shadow_the_tenants,
    global_secrets_need_the_platform_role_and_resolve_only_when_shared,
    roles_bound_what_a_token_may_do,
    stored_bytes_never_hold_the_value_and_moved_or_tampered_records_fail,
    a_wrong_or_missing_master_key_is_a_clear_error_never_plaintext,
    rotating_the_master_key_keeps_every_secret,
    bad_input_is_refused_and_writes_nothing,
    every_admin_endpoint_refuses_a_missing_or_forged_token,
    components_verify_hmacs_without_seeing_the_secret,
    every_operation_is_audited_without_the_value,
    empty_or_short_verification_secrets_are_refused_and_never_verify,
    an_hmac_check_takes_the_largest_body_ingress_accepts,
);

fn admin(tenant: &str) -> Call {
    Call::with(&token(tenant, "prod").roles(&["admin", "secrets-reader"]))
}

fn team_admin(tenant: &str, team: &str) -> Call {
    Call::with(
        &token(tenant, "prod")
            .teams(&[team])
            .roles(&["admin", "secrets-reader"]),
    )
    .team(team)
}

fn ctx(tenant: &str, team: Option<&str>) -> TenantCtx {
    TenantCtx::new(tenant, "prod", team).unwrap()
}

fn name(n: &str) -> SecretName {
    SecretName::parse(n).unwrap()
}

fn value_of(broker: &Broker, call: &Call, n: &str) -> Option<String> {
    let r = broker.call(call.request("GET", &format!("/api/v1/secrets/{n}/value")));
    match r.status {
        200 => Some(r.json_body()["value"].as_str().unwrap().to_owned()),
        _ => None,
    }
}

/// Resolves as a component does: by service chaining to the broker.
fn resolve(broker: &Broker, ctx: &TenantCtx, n: &str) -> Result<String, SecretsClientError> {
    broker
        .client()
        .resolve(ctx, &name(n))
        .map(|v| String::from_utf8(v).unwrap())
}

fn put_list_and_read_through_the_admin_api(target: Target) {
    let b = Broker::on(target);
    let acme = admin("acme");
    let r = b.call(
        acme.request("PUT", "/api/v1/secrets/slack_bot_token")
            .with_body(json_value("xoxb-1")),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json_body()["scope"], "tenant");
    assert!(r.json_body().get("value").is_none());
    let r = b.call(
        acme.request("PUT", "/api/v1/secrets/slack_bot_token")
            .with_body(json_value("xoxb-2")),
    );
    assert_eq!(r.status, 200, "a second put replaces");
    b.put(&acme, "openai_api_key", "sk-1");

    let list = b.call(acme.request("GET", "/api/v1/secrets")).json_body();
    let names: Vec<&str> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["openai_api_key", "slack_bot_token"]);
    assert!(
        !list.to_string().contains("xoxb") && !list.to_string().contains("sk-1"),
        "a listing holds no value"
    );

    let meta = b
        .call(acme.request("GET", "/api/v1/secrets/slack_bot_token"))
        .json_body();
    assert_eq!(
        (meta["size"].as_u64(), meta["key_id"].as_str()),
        (Some(6), Some("k1"))
    );
    assert_eq!(meta["updated_by"], "user@acme");
    assert!(meta.get("value").is_none());
    assert_eq!(
        value_of(&b, &acme, "slack_bot_token").as_deref(),
        Some("xoxb-2")
    );

    assert_eq!(
        b.call(acme.request("DELETE", "/api/v1/secrets/slack_bot_token"))
            .status,
        204
    );
    assert_problem(
        &b.call(acme.request("GET", "/api/v1/secrets/slack_bot_token")),
        404,
        "not-found",
    );
    assert_problem(
        &b.call(acme.request("DELETE", "/api/v1/secrets/slack_bot_token")),
        404,
        "not-found",
    );
}

fn acme_cannot_read_list_overwrite_or_delete_bigcorps_secrets(target: Target) {
    let b = Broker::on(target);
    b.put(&admin("bigcorp"), "telegram_bot_token", "bigcorp-token");
    b.put(
        &team_admin("bigcorp", "helpdesk"),
        "webhook_secret",
        "bigcorp-team",
    );
    let before = b.kv().snapshot();

    // Asking for bigcorp by header is refused outright.
    for call in [
        admin("acme").tenant("bigcorp"),
        admin("acme").tenant("bigcorp").team("helpdesk"),
    ] {
        for (method, path) in [
            ("GET", "/api/v1/secrets"),
            ("GET", "/api/v1/secrets/telegram_bot_token"),
            ("GET", "/api/v1/secrets/telegram_bot_token/value"),
            ("DELETE", "/api/v1/secrets/telegram_bot_token"),
        ] {
            assert_problem(&b.call(call.request(method, path)), 403, "forbidden");
        }
        let put = call
            .request("PUT", "/api/v1/secrets/telegram_bot_token")
            .with_body(json_value("stolen"));
        assert_problem(&b.call(put), 403, "forbidden");
    }
    assert_eq!(b.kv().snapshot(), before);

    // Within its own scope acme finds nothing of bigcorp's, and a put of the same
    // name creates acme's own secret.
    for call in [admin("acme"), admin("acme").team("helpdesk")] {
        assert_eq!(
            b.call(call.request("GET", "/api/v1/secrets")).json_body()["secrets"],
            serde_json::json!([])
        );
        for n in ["telegram_bot_token", "webhook_secret"] {
            assert_problem(
                &b.call(call.request("GET", &format!("/api/v1/secrets/{n}"))),
                404,
                "not-found",
            );
            assert_eq!(value_of(&b, &call, n), None);
            assert_problem(
                &b.call(call.request("DELETE", &format!("/api/v1/secrets/{n}"))),
                404,
                "not-found",
            );
        }
    }
    b.put(&admin("acme"), "telegram_bot_token", "acme-token");
    assert_eq!(
        value_of(&b, &admin("bigcorp"), "telegram_bot_token").as_deref(),
        Some("bigcorp-token")
    );
    assert_eq!(
        resolve(&b, &ctx("acme", Some("helpdesk")), "webhook_secret"),
        Err(SecretsClientError::NotFound)
    );
    assert_eq!(
        resolve(&b, &ctx("acme", None), "telegram_bot_token").unwrap(),
        "acme-token"
    );
}

fn teams_see_their_own_and_their_tenants_secrets_and_shadow_the_tenants(target: Target) {
    let b = Broker::on(target);
    b.put(&admin("acme"), "openai_api_key", "tenant-openai");
    b.put(&admin("acme"), "webhook_secret", "tenant-webhook");
    b.put(
        &team_admin("acme", "support"),
        "webhook_secret",
        "support-webhook",
    );
    b.put(&team_admin("acme", "sales"), "crm_key", "sales-crm");

    let support = ctx("acme", Some("support"));
    let sales = ctx("acme", Some("sales"));
    assert_eq!(
        resolve(&b, &support, "webhook_secret").unwrap(),
        "support-webhook",
        "the team's shadows the tenant's"
    );
    assert_eq!(
        resolve(&b, &sales, "webhook_secret").unwrap(),
        "tenant-webhook"
    );
    assert_eq!(
        resolve(&b, &support, "openai_api_key").unwrap(),
        "tenant-openai"
    );
    assert_eq!(
        resolve(&b, &support, "crm_key"),
        Err(SecretsClientError::NotFound),
        "support cannot resolve sales's"
    );

    // Through the admin API, a support token cannot reach sales or the tenant level.
    let support_token = team_admin("acme", "support");
    assert_problem(
        &b.call(
            support_token
                .clone()
                .team("sales")
                .request("GET", "/api/v1/secrets/crm_key/value"),
        ),
        403,
        "forbidden",
    );
    let mut tenant_level = support_token.clone();
    tenant_level.team = None;
    assert_problem(
        &b.call(tenant_level.request("GET", "/api/v1/secrets")),
        403,
        "forbidden",
    );
    let put = tenant_level
        .request("PUT", "/api/v1/secrets/openai_api_key")
        .with_body(json_value("x"));
    assert_problem(&b.call(put), 403, "forbidden");
    assert_eq!(
        value_of(&b, &support_token, "webhook_secret").as_deref(),
        Some("support-webhook")
    );
    assert_eq!(value_of(&b, &support_token, "crm_key"), None);
}

fn global_secrets_need_the_platform_role_and_resolve_only_when_shared(target: Target) {
    let b = Broker::on(target);
    let platform = Call::with(&token("ops", "prod").roles(&["platform-admin"]));
    let put = |call: &Call, n: &str| {
        b.call(
            call.request("PUT", &format!("/api/v1/secrets/{n}?scope=global"))
                .with_body(json_value("g")),
        )
    };
    assert_problem(&put(&admin("acme"), "signing_key"), 403, "forbidden");
    assert_eq!(put(&platform, "signing_key").status, 201);
    assert_eq!(put(&platform, "platform_db_password").status, 201);
    assert_eq!(
        b.call(platform.request("GET", "/api/v1/secrets?scope=global"))
            .json_body()["secrets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_problem(
        &b.call(admin("acme").request("GET", "/api/v1/secrets?scope=global")),
        403,
        "forbidden",
    );
    // The global scope is not the platform tenant's own scope.
    let ops_admin = Call::with(&token("ops", "prod").roles(&["platform-admin", "admin"]));
    assert_eq!(
        b.call(ops_admin.request("GET", "/api/v1/secrets"))
            .json_body()["secrets"],
        serde_json::json!([])
    );

    assert_eq!(
        resolve(&b, &ctx("acme", Some("support")), "signing_key").unwrap(),
        "g"
    );
    assert_eq!(
        resolve(&b, &ctx("acme", None), "platform_db_password"),
        Err(SecretsClientError::NotFound)
    );
    assert_problem(
        &b.call(admin("acme").request("GET", "/api/v1/secrets/x?scope=tenant")),
        400,
        "bad-request",
    );
}

fn roles_bound_what_a_token_may_do(target: Target) {
    let b = Broker::on(target);
    b.put(&admin("acme"), "api_key", "v");
    let reader = Call::with(&token("acme", "prod"));
    let writer = Call::with(&token("acme", "prod").roles(&["writer"]));
    let only_admin = Call::with(&token("acme", "prod").roles(&["admin"]));
    let only_reader = Call::with(&token("acme", "prod").roles(&["secrets-reader"]));
    for call in [&reader, &writer] {
        assert_problem(
            &b.call(call.request("GET", "/api/v1/secrets")),
            403,
            "forbidden",
        );
        assert_problem(
            &b.call(call.request("GET", "/api/v1/secrets/api_key/value")),
            403,
            "forbidden",
        );
        assert_problem(
            &b.call(call.request("DELETE", "/api/v1/secrets/api_key")),
            403,
            "forbidden",
        );
    }
    assert_problem(
        &b.call(only_admin.request("GET", "/api/v1/secrets/api_key/value")),
        403,
        "forbidden",
    );
    assert_eq!(
        b.call(only_admin.request("GET", "/api/v1/secrets/api_key"))
            .status,
        200
    );
    assert_eq!(value_of(&b, &only_reader, "api_key").as_deref(), Some("v"));
    let put = only_reader
        .request("PUT", "/api/v1/secrets/api_key")
        .with_body(json_value("w"));
    assert_problem(&b.call(put), 403, "forbidden");
}

fn stored_bytes_never_hold_the_value_and_moved_or_tampered_records_fail(target: Target) {
    let b = Broker::on(target);
    b.put(&admin("acme"), "api_key", "sk-live-plaintext-value");
    for (_, bytes) in b.kv().snapshot() {
        assert!(
            !bytes.windows(13).any(|w| w == b"sk-live-plain"),
            "plaintext at rest"
        );
    }
    let acme_key = keys::secret(
        &SecretScope::tenant_of(&ctx("acme", None)),
        &name("api_key"),
    );
    let stored = b.kv().get(&acme_key).unwrap().unwrap();

    // Copied under bigcorp's key: it does not open there.
    let bigcorp_key = keys::secret(
        &SecretScope::tenant_of(&ctx("bigcorp", None)),
        &name("api_key"),
    );
    b.kv().set(&bigcorp_key, &stored).unwrap();
    let r = b.call(admin("bigcorp").request("GET", "/api/v1/secrets/api_key/value"));
    assert_problem(&r, 500, "internal");
    assert!(
        r.json_body()["detail"]
            .as_str()
            .unwrap()
            .contains("does not open under its storage key")
    );
    assert!(resolve(&b, &ctx("bigcorp", None), "api_key").is_err());

    // Tampered in place: refused, never garbage.
    let mut tampered = stored.clone();
    let at = tampered.len() - 40;
    tampered[at] ^= 0x55;
    b.kv().set(&acme_key, &tampered).unwrap();
    assert_eq!(value_of(&b, &admin("acme"), "api_key"), None);
    b.kv().set(&acme_key, &stored).unwrap();
    assert_eq!(
        value_of(&b, &admin("acme"), "api_key").as_deref(),
        Some("sk-live-plaintext-value")
    );
}

fn a_wrong_or_missing_master_key_is_a_clear_error_never_plaintext(target: Target) {
    let mut b = Broker::on(target);
    b.put(&admin("acme"), "api_key", "v");
    b.set_variable("secrets_master_key", &TEST_MASTER_KEY_2.replace("k2", "k1"));
    let r = b.call(admin("acme").request("GET", "/api/v1/secrets/api_key/value"));
    assert_problem(&r, 500, "internal");
    assert!(r.json_body().get("value").is_none());

    b.set_variable("secrets_master_key", "");
    let r = b.call(admin("acme").request("GET", "/api/v1/secrets/api_key/value"));
    assert_problem(&r, 503, "not-configured");
    assert!(
        r.json_body()["detail"]
            .as_str()
            .unwrap()
            .contains("secrets_master_key")
    );
    let r = b.call(
        admin("acme")
            .request("PUT", "/api/v1/secrets/other")
            .with_body(json_value("v")),
    );
    assert_problem(&r, 503, "not-configured");
    assert_eq!(
        resolve(&b, &ctx("acme", None), "api_key"),
        Err(SecretsClientError::Unavailable(
            "broker answered 503".into()
        ))
    );
    // Metadata needs no key.
    assert_eq!(
        b.call(admin("acme").request("GET", "/api/v1/secrets/api_key"))
            .status,
        200
    );
}

fn rotating_the_master_key_keeps_every_secret(target: Target) {
    let mut b = Broker::on(target);
    b.put(&admin("acme"), "api_key", "v1");
    b.set_variable("secrets_master_key", TEST_MASTER_KEY_2);
    b.set_variable("secrets_previous_keys", TEST_MASTER_KEY);
    assert_eq!(
        value_of(&b, &admin("acme"), "api_key").as_deref(),
        Some("v1")
    );
    assert_eq!(
        b.call(admin("acme").request("GET", "/api/v1/secrets/api_key"))
            .json_body()["key_id"],
        "k2"
    );
    b.set_variable("secrets_previous_keys", "");
    assert_eq!(resolve(&b, &ctx("acme", None), "api_key").unwrap(), "v1");
}

fn bad_input_is_refused_and_writes_nothing(target: Target) {
    let b = Broker::on(target);
    b.put(&admin("acme"), "api_key", "v");
    let before = b.kv().snapshot();
    let acme = admin("acme");
    let too_long = "a".repeat(64);
    for bad in UNSAFE_IDS
        .iter()
        .copied()
        .filter(|s| !s.is_empty())
        .chain([too_long.as_str()])
    {
        let enc: String = bad.bytes().map(|c| format!("%{c:02X}")).collect();
        let r = b.call(
            acme.request("PUT", &format!("/api/v1/secrets/{enc}"))
                .with_body(json_value("v")),
        );
        assert_eq!(r.status, 400, "{bad:?}");
        let internal = Request::new("POST", "/internal/v1/secrets/resolve")
            .with_header("x-tenant-id", "acme")
            .with_header("x-env-id", "prod")
            .with_body(serde_json::json!({ "name": bad }).to_string());
        assert_eq!(b.call_internal(internal).status, 400, "internal {bad:?}");
        if target.is_wasm() && bad.chars().any(char::is_control) {
            // wasi-http refuses such a header value: no component can send it.
            continue;
        }
        let internal = Request::new("POST", "/internal/v1/secrets/resolve")
            .with_header("x-tenant-id", bad)
            .with_header("x-env-id", "prod")
            .with_body(r#"{"name":"api_key"}"#);
        assert_eq!(
            b.call_internal(internal).status,
            400,
            "internal tenant {bad:?}"
        );
    }
    let put = |body: Vec<u8>| {
        b.call(
            acme.request("PUT", "/api/v1/secrets/api_key")
                .with_body(body),
        )
    };
    assert_problem(&put(b"{not json".to_vec()), 400, "bad-request");
    assert_problem(&put(br#"{"value": 5}"#.to_vec()), 400, "bad-request");
    assert_problem(
        &put(br#"{"value": "v", "extra": 1}"#.to_vec()),
        400,
        "bad-request",
    );
    assert_problem(&put(Vec::new()), 400, "bad-request");
    assert_problem(
        &put(json_value(&"x".repeat(64 * 1024 + 1))),
        400,
        "bad-request",
    );
    assert_problem(&put(vec![b' '; 128 * 1024 + 1]), 413, "payload-too-large");
    let mut no_tenant = acme.clone();
    no_tenant.tenant = None;
    assert_problem(
        &b.call(no_tenant.request("GET", "/api/v1/secrets")),
        400,
        "invalid-id",
    );
    let no_env = Request::new("POST", "/internal/v1/secrets/resolve")
        .with_header("x-tenant-id", "acme")
        .with_body(r#"{"name":"api_key"}"#);
    assert_problem(&b.call_internal(no_env), 400, "invalid-id");
    assert_problem(
        &b.call(acme.request("GET", "/api/v1/secrets?limit=500")),
        400,
        "bad-request",
    );
    assert_problem(
        &b.call(acme.request("POST", "/api/v1/secrets")),
        405,
        "method-not-allowed",
    );
    assert_problem(
        &b.call_internal(acme.request("GET", "/internal/v1/secrets/resolve")),
        405,
        "method-not-allowed",
    );
    assert_problem(
        &b.call(acme.request("GET", "/api/v1/secrets/a/b/c")),
        404,
        "not-found",
    );
    assert_eq!(b.kv().snapshot(), before, "bad input changed the store");
}

fn every_admin_endpoint_refuses_a_missing_or_forged_token(target: Target) {
    let b = Broker::on(target);
    b.put(&admin("acme"), "api_key", "v");
    let before = b.kv().snapshot();
    let forged = token("acme", "prod")
        .roles(&["admin", "secrets-reader"])
        .mint()
        .replace('.', "x.");
    for bearer in [None, Some(forged)] {
        let call = Call {
            token: bearer,
            ..admin("acme")
        };
        for (method, path) in [
            ("GET", "/api/v1/secrets"),
            ("GET", "/api/v1/secrets/api_key"),
            ("GET", "/api/v1/secrets/api_key/value"),
            ("PUT", "/api/v1/secrets/api_key"),
            ("DELETE", "/api/v1/secrets/api_key"),
        ] {
            let mut req = call.request(method, path);
            if method == "PUT" {
                req = req.with_body(json_value("stolen"));
            }
            let r = b.call(req);
            assert_problem(&r, 401, "unauthorized");
            assert!(r.json_body().get("value").is_none());
        }
    }
    assert_eq!(b.kv().snapshot(), before);
}

fn components_verify_hmacs_without_seeing_the_secret(target: Target) {
    let b = Broker::on(target);
    b.put(
        &team_admin("acme", "support"),
        "slack_signing_secret",
        "8f742231b10e8888abcd99yyyzzz85a5",
    );
    let client = b.client();
    let support = ctx("acme", Some("support"));
    let message = b"v0:1531420618:token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J";
    let mac = {
        use hmac::{KeyInit, Mac};
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"8f742231b10e8888abcd99yyyzzz85a5")
            .unwrap();
        m.update(message);
        m.finalize().into_bytes().to_vec()
    };
    let n = name("slack_signing_secret");
    assert_eq!(
        client.verify_hmac_sha256(&support, &n, message, &mac),
        Ok(true)
    );
    assert_eq!(
        client.verify_hmac_sha256(&support, &n, b"tampered", &mac),
        Ok(false)
    );
    assert_eq!(
        client.verify_hmac_sha256(&ctx("acme", Some("sales")), &n, message, &mac),
        Err(SecretsClientError::NotFound)
    );
    assert_eq!(
        client.verify_hmac_sha256(&ctx("bigcorp", Some("support")), &n, message, &mac),
        Err(SecretsClientError::NotFound)
    );

    // The test double agrees with the broker.
    let fake = FakeSecrets::default();
    fake.set(
        &support,
        "slack_signing_secret",
        b"8f742231b10e8888abcd99yyyzzz85a5",
    );
    assert_eq!(
        fake.verify_hmac_sha256(&support, &n, message, &mac),
        Ok(true)
    );
    assert!(hmac_sha256_matches(
        b"8f742231b10e8888abcd99yyyzzz85a5",
        message,
        &mac
    ));

    // A component that cannot reach the broker gets "unavailable", not a pass.
    let err = b
        .unreachable_client()
        .verify_hmac_sha256(&support, &n, message, &mac)
        .unwrap_err();
    assert_eq!(
        err,
        SecretsClientError::Unavailable(
            "outbound request to http://secrets-broker.spin.internal is not allowed".into()
        )
    );
}

fn every_operation_is_audited_without_the_value(target: Target) {
    let b = Broker::on(target);
    let acme = admin("acme");
    b.put(&acme, "api_key", "super-secret-value-123");
    value_of(&b, &acme, "api_key");
    resolve(&b, &ctx("acme", Some("support")), "api_key").unwrap();
    b.call(Call::with(&token("acme", "prod")).request("GET", "/api/v1/secrets/api_key/value"));
    b.call(acme.request("DELETE", "/api/v1/secrets/api_key"));
    let logs = b.logs();
    let events: Vec<(&str, &str)> = logs
        .iter()
        .filter(|l| l["event"].as_str().unwrap().starts_with("secret."))
        .map(|l| {
            (
                l["event"].as_str().unwrap(),
                l["outcome"]
                    .as_str()
                    .or(l["problem"].as_str())
                    .unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("secret.put", "created"),
            ("secret.read", "found"),
            ("secret.resolve", "tenant"),
            ("secret.denied", "forbidden"),
            ("secret.delete", "deleted")
        ]
    );
    for line in logs.iter().filter(|l| l["event"] != "request") {
        assert_eq!(line["tenant"], "acme", "{line}");
        assert_eq!(line["name"], "api_key", "{line}");
    }
    assert!(
        !b.raw_logs().contains("super-secret-value"),
        "a value reached the log"
    );
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(message);
    m.finalize().into_bytes().to_vec()
}

fn empty_or_short_verification_secrets_are_refused_and_never_verify(target: Target) {
    let b = Broker::on(target);
    let support = team_admin("acme", "support");
    let before = b.kv().snapshot();
    let put = |n: &str, value: &str| {
        b.call(
            support
                .request("PUT", &format!("/api/v1/secrets/{n}"))
                .with_body(json_value(value)),
        )
    };
    assert_problem(&put("api_key", ""), 400, "bad-request");
    for verifier in [
        "slack_signing_secret",
        "telegram_webhook_secret",
        "webchat_token_secret",
    ] {
        let r = put(verifier, "fifteen-bytes-x");
        assert_problem(&r, 400, "bad-request");
        assert!(
            r.json_body()["detail"]
                .as_str()
                .unwrap()
                .contains("16 bytes")
        );
    }
    assert_eq!(b.kv().snapshot(), before, "a refused value was stored");
    assert_eq!(
        put("telegram_webhook_secret", "sixteen-bytes-xx").status,
        201
    );
    assert_eq!(
        put("api_key", "k").status,
        201,
        "other secrets may be short"
    );

    // A record stored empty before values were checked counts as missing:
    // nothing resolves it and nothing verifies with it.
    let keys = greentic::secrets::crypto::MasterKeys::parse(TEST_MASTER_KEY, "").unwrap();
    let scope = SecretScope::team_of(&ctx("acme", Some("support"))).unwrap();
    greentic::secrets::store::SecretStore::new(b.kv())
        .put(
            &keys,
            &scope,
            &name("slack_signing_secret"),
            b"",
            "old",
            1,
            &|| [9; 24],
        )
        .unwrap();
    let client = b.client();
    let support_ctx = ctx("acme", Some("support"));
    let forged = hmac(b"", b"v0:1:{}");
    assert_eq!(
        client.verify_hmac_sha256(
            &support_ctx,
            &name("slack_signing_secret"),
            b"v0:1:{}",
            &forged
        ),
        Err(SecretsClientError::NotFound)
    );
    assert_eq!(
        client.resolve(&support_ctx, &name("slack_signing_secret")),
        Err(SecretsClientError::NotFound)
    );
    assert!(!hmac_sha256_matches(b"", b"v0:1:{}", &forged));
}

fn an_hmac_check_takes_the_largest_body_ingress_accepts(target: Target) {
    let b = Broker::on(target);
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    b.put(
        &team_admin("acme", "support"),
        "slack_signing_secret",
        secret,
    );
    // Slack's signing base for a body of ingress's largest size.
    let mut message = b"v0:1531420618:".to_vec();
    message.resize(message.len() + greentic::http::DEFAULT_BODY_LIMIT, b'x');
    let mac = hmac(secret.as_bytes(), &message);
    assert_eq!(
        b.client().verify_hmac_sha256(
            &ctx("acme", Some("support")),
            &name("slack_signing_secret"),
            &message,
            &mac
        ),
        Ok(true)
    );
}
