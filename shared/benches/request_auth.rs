//! What every REST request pays before touching data: read the verifier's
//! configuration (under Spin every request is a fresh instance, so the PEM key is
//! parsed every time), read the scope headers, verify the bearer JWT (HS256 for
//! development, RS256 for production) and authorise the headers against its claims.

use criterion::{Criterion, criterion_group, criterion_main};
use greentic::http::Request;
use greentic::service::auth::{
    AuthConfig, Claims, RequestScope, VAR_AUDIENCE, VAR_HS256_SECRET, VAR_ISSUER, VAR_PUBLIC_KEYS,
    mint_hs256,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::hint::black_box;

const SECRET: &str = "bench-only-hs256-secret-0123456789abcdef";
const NOW: u64 = 1_795_867_200;

fn claims() -> Claims {
    Claims {
        sub: "ops@acme".into(),
        tenant: "acme".into(),
        env: "prod".into(),
        teams: Some(vec!["support".into(), "sales".into()]),
        roles: vec!["writer".into()],
        exp: NOW + 3600,
        nbf: None,
        iat: Some(NOW),
    }
}

fn request(token: &str) -> Request {
    Request::new("GET", "/api/v1/sessions")
        .with_header("authorization", format!("Bearer {token}"))
        .with_header("x-tenant-id", "acme")
        .with_header("x-env-id", "prod")
        .with_header("x-team-id", "support")
}

fn resolve(variables: &[(&str, &str)], req: &Request) {
    let config = AuthConfig::from_variables(|name| {
        variables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let scope = RequestScope::from_request(req).unwrap();
    let principal = config
        .authenticate(req.header("authorization").unwrap(), NOW)
        .unwrap();
    black_box(principal.authorise(&scope).unwrap());
}

fn bench(c: &mut Criterion) {
    let common = [(VAR_ISSUER, "greentic-dev"), (VAR_AUDIENCE, "greentic")];
    let hs = [common[0], common[1], (VAR_HS256_SECRET, SECRET)];
    let hs_req =
        request(&mint_hs256(SECRET.as_bytes(), "greentic-dev", "greentic", &claims()).unwrap());

    let rsa_private = include_str!("../src/testing/keys/test-rsa-private.pem");
    let rsa_public = include_str!("../src/testing/keys/test-rsa-public.pem");
    let rs = [common[0], common[1], (VAR_PUBLIC_KEYS, rsa_public)];
    let mut signed = serde_json::to_value(claims()).unwrap();
    signed["iss"] = "greentic-dev".into();
    signed["aud"] = "greentic".into();
    let rs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &signed,
        &EncodingKey::from_rsa_pem(rsa_private.as_bytes()).unwrap(),
    )
    .unwrap();
    let rs_req = request(&rs_token);

    let mut group = c.benchmark_group("resolve_ctx_verify_jwt_authorise");
    group.bench_function("hs256", |b| b.iter(|| resolve(&hs, &hs_req)));
    group.bench_function("rs256", |b| b.iter(|| resolve(&rs, &rs_req)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
