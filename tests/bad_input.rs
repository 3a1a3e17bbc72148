//! Bad input gets a clear problem with the right status, in the order SPEC §9
//! fixes (413, 400, 401, 403, 404), and reads or writes nothing.

use e2e_tests::{Call, NOW_SECS, Platform, Target, UNSAFE_IDS, assert_problem, token};
use greentic::TenantCtx;
use greentic::http::Request;
use greentic::testing::{TEST_AUDIENCE, TEST_ISSUER, keys};

e2e_tests::on_every_target!(
    unsafe_ids_are_400_in_every_position_whatever_the_token,
    a_missing_tenant_header_is_400,
    a_duplicated_scope_header_is_400,
    bad_tokens_are_401_with_a_challenge,
    every_endpoint_refuses_a_missing_or_forged_token,
    check_order_is_size_then_ids_then_token_then_scope_then_existence,
    a_well_formed_id_that_cannot_be_a_session_is_404_without_a_lookup,
    bad_list_parameters_are_400,
    unknown_paths_and_methods_are_404_and_405,
);

fn platform(target: Target) -> (Platform, String) {
    let mut p = Platform::empty(target);
    let id = p.add_session(
        &TenantCtx::new("acme", "prod", Some("support")).unwrap(),
        "slack",
        "U1",
    );
    (p, id.to_string())
}

fn unsafe_ids() -> Vec<String> {
    UNSAFE_IDS
        .iter()
        .map(|s| s.to_string())
        .chain(["a".repeat(64), "x".repeat(300)])
        .collect()
}

/// `bad` in each id position of a request: the three scope headers, the
/// session id in the path, and the channel filter.
fn every_position(bad: &str, id: &str, auth: &Call) -> Vec<(String, Request)> {
    let enc = percent_encode(bad);
    vec![
        (
            "X-Tenant-ID".into(),
            auth.clone().tenant(bad).request("GET", "/api/v1/sessions"),
        ),
        (
            "X-Env-ID".into(),
            auth.clone().env(bad).request("GET", "/api/v1/sessions"),
        ),
        (
            "X-Team-ID".into(),
            auth.clone()
                .team(bad)
                .request("GET", &format!("/api/v1/sessions/{id}")),
        ),
        (
            "path id (GET)".into(),
            auth.request("GET", &format!("/api/v1/sessions/{enc}")),
        ),
        (
            "path id (DELETE)".into(),
            auth.request("DELETE", &format!("/api/v1/sessions/{enc}")),
        ),
        (
            "channel filter".into(),
            auth.request("GET", &format!("/api/v1/sessions?channel={enc}")),
        ),
    ]
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unsafe_ids_are_400_in_every_position_whatever_the_token(target: Target) {
    let (p, id) = platform(target);
    let good = Call::with(&token("acme", "prod").roles(&["admin"]));
    let no_token = Call {
        token: None,
        ..good.clone()
    };
    let bad_token = Call {
        token: Some("not-a-token".into()),
        ..good.clone()
    };
    for bad in unsafe_ids() {
        // An empty path id is the collection, and an empty filter a bad request: both covered elsewhere.
        for auth in [&good, &no_token, &bad_token] {
            for (position, req) in every_position(&bad, &id, auth) {
                if bad.is_empty() && position.starts_with("path id") {
                    continue;
                }
                let ops = p.kv().ops();
                let r = p.call(req);
                assert_eq!(r.status, 400, "{bad:?} in {position}: {}", r.json_body());
                assert_eq!(p.kv().ops(), ops, "{bad:?} in {position} touched the store");
                match r.json_body()["detail"].as_str() {
                    Some(detail) => assert!(
                        bad.len() < 3 || !detail.contains(&bad),
                        "the refused id is echoed: {detail}"
                    ),
                    // A header HTTP cannot carry is refused by Spin's HTTP
                    // server, bare, before any component sees it.
                    None => assert!(
                        target.is_wasm()
                            && position.starts_with("X-")
                            && bad.chars().any(char::is_control),
                        "{bad:?} in {position}: no problem body"
                    ),
                }
            }
        }
    }
}

fn a_missing_tenant_header_is_400(target: Target) {
    let (p, _) = platform(target);
    let mut call = Call::with(&token("acme", "prod"));
    call.tenant = None;
    let r = p.call(call.request("GET", "/api/v1/sessions"));
    assert_problem(&r, 400, "invalid-id");
    assert!(
        r.json_body()["detail"]
            .as_str()
            .unwrap()
            .contains("tenant id is missing")
    );
}

fn a_duplicated_scope_header_is_400(target: Target) {
    let (p, _) = platform(target);
    let req = Call::with(&token("acme", "prod"))
        .request("GET", "/api/v1/sessions")
        .with_header("x-tenant-id", "bigcorp");
    assert_problem(&p.call(req), 400, "bad-request");
}

fn bad_tokens_are_401_with_a_challenge(target: Target) {
    let (p, _) = platform(target);
    let mut expired = token("acme", "prod");
    expired.claims.exp = NOW_SECS - 3600;
    let mut early = token("acme", "prod");
    early.claims.nbf = Some(NOW_SECS + 3600);
    let signed =
        |claims: serde_json::Value, alg: jsonwebtoken_alg::Alg| jsonwebtoken_alg::sign(alg, claims);
    let base = serde_json::json!({"sub": "x", "tenant": "acme", "env": "prod", "exp": NOW_SECS + 600,
                                  "iss": TEST_ISSUER, "aud": TEST_AUDIENCE});
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let good = token("acme", "prod").mint();
    let mut tampered: Vec<char> = good.chars().collect();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == 'A' { 'B' } else { 'A' };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("expired", Some(expired.mint())),
        ("not yet valid", Some(early.mint())),
        (
            "wrong issuer",
            Some(signed(
                with("iss", "evil".into()),
                jsonwebtoken_alg::Alg::Hs256,
            )),
        ),
        (
            "wrong audience",
            Some(signed(
                with("aud", "other".into()),
                jsonwebtoken_alg::Alg::Hs256,
            )),
        ),
        ("tampered", Some(tampered.into_iter().collect())),
        ("alg none", Some(jsonwebtoken_alg::unsigned(base.clone()))),
        (
            "HS256 keyed with the RSA public key",
            Some(signed(
                base.clone(),
                jsonwebtoken_alg::Alg::Hs256WithPublicKey,
            )),
        ),
        (
            "RS256 with no RSA key configured",
            Some(signed(base.clone(), jsonwebtoken_alg::Alg::Rs256)),
        ),
        (
            "no sub",
            Some(signed(without("sub"), jsonwebtoken_alg::Alg::Hs256)),
        ),
        (
            "no tenant",
            Some(signed(without("tenant"), jsonwebtoken_alg::Alg::Hs256)),
        ),
        (
            "no env",
            Some(signed(without("env"), jsonwebtoken_alg::Alg::Hs256)),
        ),
        (
            "no exp",
            Some(signed(without("exp"), jsonwebtoken_alg::Alg::Hs256)),
        ),
    ];
    for (case, bearer) in cases {
        let call = Call {
            token: bearer,
            ..Call::with(&token("acme", "prod"))
        };
        let ops = p.kv().ops();
        let r = p.call(call.request("GET", "/api/v1/sessions"));
        assert_problem(&r, 401, "unauthorized");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{case}"
        );
        assert_eq!(p.kv().ops(), ops, "{case} touched the store");
    }
}

fn every_endpoint_refuses_a_missing_or_forged_token(target: Target) {
    let (p, id) = platform(target);
    let holder = Call::with(&token("acme", "prod").roles(&["admin"]));
    let forged = token("acme", "prod")
        .roles(&["admin"])
        .mint()
        .replace('.', "x.");
    for bearer in [None, Some(forged)] {
        let call = Call {
            token: bearer,
            ..holder.clone()
        };
        for (method, path) in [
            ("GET", "/api/v1/sessions".to_owned()),
            ("GET", format!("/api/v1/sessions/{id}")),
            ("DELETE", format!("/api/v1/sessions/{id}")),
        ] {
            let ops = p.kv().ops();
            let r = p.call(call.request(method, &path));
            assert_problem(&r, 401, "unauthorized");
            assert!(r.header("www-authenticate").is_some(), "{method} {path}");
            assert_eq!(p.kv().ops(), ops, "{method} {path} touched the store");
        }
    }
}

/// Signing helpers for hand-made tokens (the platform's own minting only makes valid ones).
mod jsonwebtoken_alg {
    use super::keys;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use greentic::testing::TEST_HS256_SECRET;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

    pub enum Alg {
        Hs256,
        Hs256WithPublicKey,
        Rs256,
    }

    pub fn sign(alg: Alg, claims: serde_json::Value) -> String {
        let (algorithm, key) = match alg {
            Alg::Hs256 => (
                Algorithm::HS256,
                EncodingKey::from_secret(TEST_HS256_SECRET.as_bytes()).unwrap(),
            ),
            Alg::Hs256WithPublicKey => (
                Algorithm::HS256,
                EncodingKey::from_secret(keys::RSA_PUBLIC.as_bytes()).unwrap(),
            ),
            Alg::Rs256 => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(keys::RSA_PRIVATE.as_bytes()).unwrap(),
            ),
        };
        encode(&Header::new(algorithm), &claims, &key).unwrap()
    }

    pub fn unsigned(claims: serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }
}

fn check_order_is_size_then_ids_then_token_then_scope_then_existence(target: Target) {
    let (p, _) = platform(target);
    let huge = vec![b'x'; greentic::http::DEFAULT_BODY_LIMIT + 1];
    let no_token = Call {
        token: None,
        ..Call::with(&token("acme", "prod"))
    };
    assert_problem(
        &p.call(
            no_token
                .clone()
                .tenant("A.B")
                .request("GET", "/api/v1/sessions")
                .with_body(huge),
        ),
        413,
        "payload-too-large",
    );
    assert_problem(
        &p.call(
            no_token
                .clone()
                .tenant("A.B")
                .request("GET", "/api/v1/sessions"),
        ),
        400,
        "invalid-id",
    );
    assert_problem(
        &p.call(
            no_token
                .tenant("bigcorp")
                .request("GET", "/api/v1/sessions"),
        ),
        401,
        "unauthorized",
    );
    let reader = Call::with(&token("acme", "prod"));
    assert_problem(
        &p.call(
            reader
                .clone()
                .tenant("bigcorp")
                .request("GET", "/api/v1/sessions/ffffffffffffffffffffffffffffffff"),
        ),
        403,
        "forbidden",
    );
    assert_problem(
        &p.call(reader.clone().request(
            "DELETE",
            "/api/v1/sessions/ffffffffffffffffffffffffffffffff",
        )),
        403,
        "forbidden",
    );
    assert_problem(
        &p.call(reader.request("GET", "/api/v1/sessions/ffffffffffffffffffffffffffffffff")),
        404,
        "not-found",
    );
}

fn a_well_formed_id_that_cannot_be_a_session_is_404_without_a_lookup(target: Target) {
    let (p, _) = platform(target);
    let ops = p.kv().ops();
    let r = p.call(
        Call::with(&token("acme", "prod"))
            .request("GET", &format!("/api/v1/sessions/{}", "a".repeat(40))),
    );
    assert_problem(&r, 404, "not-found");
    assert_eq!(p.kv().ops(), ops);
}

fn bad_list_parameters_are_400(target: Target) {
    let (p, _) = platform(target);
    let call = Call::with(&token("acme", "prod"));
    for query in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "cursor=%%%",
        "cursor=AAAA",
        "cursor=",
        "status=closed",
        "updated_since=yesterday",
        "updated_since=2026-13-01T00:00:00Z",
        "limt=5",
        "limit=5&limit=6",
        "channel=",
    ] {
        let r = p.call(call.request("GET", &format!("/api/v1/sessions?{query}")));
        assert_eq!(r.status, 400, "{query}: {}", r.json_body());
    }
    assert_eq!(
        p.call(call.request("GET", "/api/v1/sessions?limit=200"))
            .status,
        200
    );
}

fn unknown_paths_and_methods_are_404_and_405(target: Target) {
    let (p, id) = platform(target);
    let call = Call::with(&token("acme", "prod").roles(&["admin"]));
    for path in [
        "/api/v1/sessions/a/b",
        &format!("/api/v1/sessions/{id}/state"),
    ] {
        assert_problem(&p.call(call.request("GET", path)), 404, "not-found");
    }
    // Outside the component's routes: its own problem natively, Spin's bare
    // 404 in wasm (the component never sees the request).
    for path in ["/api/v1/sessionsx", "/api/v2/sessions"] {
        let r = p.call(call.request("GET", path));
        assert_eq!(r.status, 404, "{path}");
        if target.is_wasm() {
            assert!(r.body.is_empty(), "{path} reached a component");
        }
    }
    let r = p.call(call.request("POST", "/api/v1/sessions"));
    assert_problem(&r, 405, "method-not-allowed");
    assert_eq!(r.header("allow"), Some("GET"));
    let r = p.call(call.request("PUT", &format!("/api/v1/sessions/{id}")));
    assert_eq!(r.header("allow"), Some("GET, DELETE"));
}
