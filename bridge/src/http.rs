//! The bridge's HTTP surface: publish, a tenant's purge, health, metrics, and
//! problem answers for the rest.
//!
//! Why so small: components only publish (and, when a tenant is offboarded,
//! purge it); everything else the bridge does (deliveries) goes the other
//! way. Both take the publish token ([`check_publish_token`]). `/healthz` and
//! `/metrics` are for the orchestrator and Prometheus and carry no tenant
//! data, so they need no token.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::config::Token;
use crate::problem::Problem;
use crate::publish;
use crate::purge;

pub fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/publish/{subject}", post(publish::publish))
        .route("/v1/purge/tenants/{tenant}", post(purge::purge_tenant))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// Does the `Authorization: Bearer <token>` header carry `token`? Constant time
/// in the token's content.
pub fn bearer_matches(headers: &HeaderMap, token: &Token) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, rest)) = value.split_at_checked(7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ") && token.matches(rest)
}

/// The components' check, on every route that takes the publish token:
/// 401 (`WWW-Authenticate: Bearer`) unless the request carries it.
pub fn check_publish_token(app: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    if bearer_matches(headers, &app.config.publish.token) {
        Ok(())
    } else {
        Err(Problem::unauthorized())
    }
}

/// 200 when NATS is connected and the streams exist; 503 otherwise.
async fn healthz(State(app): State<Arc<AppState>>) -> Response {
    if app.nats.ready() {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok","nats":"connected","streams":"ready"}"#,
        )
            .into_response()
    } else if app.nats.connected() {
        Problem::unavailable("NATS connected, streams not ensured yet").into_response()
    } else {
        Problem::unavailable("NATS is not connected").into_response()
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let mut response = app.metrics.render(app.nats.connected()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn not_found() -> Problem {
    Problem::not_found()
}

async fn method_not_allowed(uri: Uri) -> Problem {
    let path = uri.path();
    if path.starts_with("/v1/publish/") || path.starts_with("/v1/purge/tenants/") {
        Problem::method_not_allowed("POST")
    } else {
        Problem::method_not_allowed("GET, HEAD")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        crate::config::Config::from_toml("", std::path::Path::new("."), |k| {
            (k == crate::config::ENV_PUBLISH_TOKEN)
                .then(|| "p-0123456789abcdef0123456789abcdef".to_string())
        })
        .unwrap()
        .publish
        .token
    }

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_token_exact() {
        let t = token();
        assert!(bearer_matches(
            &with_auth("Bearer p-0123456789abcdef0123456789abcdef"),
            &t
        ));
        assert!(bearer_matches(
            &with_auth("bearer p-0123456789abcdef0123456789abcdef"),
            &t
        ));
        for bad in [
            "Bearer p-0123456789abcdef0123456789abcdeF",
            "Bearer p-0123456789abcdef0123456789abcdef ",
            "Basic p-0123456789abcdef0123456789abcdef",
            "p-0123456789abcdef0123456789abcdef",
            "Bearer",
            "",
        ] {
            assert!(!bearer_matches(&with_auth(bad), &t), "{bad}");
        }
        assert!(!bearer_matches(&HeaderMap::new(), &t));
    }
}
