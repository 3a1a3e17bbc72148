//! The one error type of the HTTP surface, rendered as RFC 9457
//! `application/problem+json`. Every component maps its failures into
//! [`ApiError`]; this module alone decides statuses, problem types and headers.
//! The errors of the layers above become an `ApiError` where they are defined
//! (`From<KvError>` in `store::kv`, `From<StoreError>` in `store::sessions`,
//! `From<BridgeError>` in `messaging::bridge`), so `http/` needs nothing but
//! the ids of `tenancy/`.
//!
//! Details are written for the caller and never carry a secret, a token, a
//! message body or anything of another tenant.

use serde::Serialize;

use crate::http::Response;
use crate::http::ratelimit::{self, RateWindow};
use crate::tenancy::ids::{ConversationIdError, IdError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error("{0}")]
    BadRequest(String),
    /// A configuration document that does not validate: one line per
    /// problem (`file: path: reason`), also listed in the problem's `errors`.
    #[error("the document is invalid: {}", .0.join("; "))]
    InvalidDocument(Vec<String>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Deliberately detail-free: a missing resource and another tenant's
    /// resource must look the same.
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The tenant is suspended: nothing new of it is accepted.
    #[error("tenant is suspended")]
    TenantSuspended,
    /// Well-formed, but it cannot be applied as it is (a delivery whose
    /// envelope contradicts its subject, a flow that fails): retrying will not help.
    #[error("{0}")]
    Unprocessable(String),
    /// A dependency (key-value store, bridge, broker) did not answer; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// Over a rate limit: nothing was done; try again after the window resets.
    #[error("rate limit exceeded: {}", exceeded_policies(.0))]
    TooManyRequests(Vec<RateWindow>),
    /// The deployment lacks configuration this request needs (an auth key, a secret).
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [String]>,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::InvalidId(_) | ApiError::BadRequest(_) | ApiError::InvalidDocument(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) | ApiError::TenantSuspended => 403,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PreconditionFailed(_) => 412,
            ApiError::Unprocessable(_) => 422,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Unavailable(_) | ApiError::NotConfigured(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The stable last segment of the problem `type`, also used in logs.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::InvalidId(_) => "invalid-id",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::InvalidDocument(_) => "invalid-document",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TenantSuspended => "tenant-suspended",
            ApiError::NotFound => "not-found",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PreconditionFailed(_) => "precondition-failed",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::TooManyRequests(_) => "too-many-requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotConfigured(_) => "not-configured",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::InvalidId(_) => "Invalid identifier",
            ApiError::BadRequest(_) => "Bad request",
            ApiError::InvalidDocument(_) => "Invalid document",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::TenantSuspended => "Tenant suspended",
            ApiError::NotFound => "Not found",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::PreconditionFailed(_) => "Precondition failed",
            ApiError::Unprocessable(_) => "Unprocessable content",
            ApiError::TooManyRequests(_) => "Too many requests",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::NotConfigured(_) => "Not configured",
            ApiError::Internal(_) => "Internal error",
        }
    }

    pub fn into_response(self, request_id: Option<&str>) -> Response {
        let problem = Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{}", self.slug()),
            title: self.title(),
            status: self.status(),
            detail: self.to_string(),
            request_id,
            errors: match &self {
                ApiError::InvalidDocument(errors) => Some(errors),
                _ => None,
            },
        };
        let mut response = Response::json(problem.status, &problem);
        response.headers[0].1 = "application/problem+json".into();
        match &self {
            ApiError::Unauthorized(_) => {
                response = response.with_header(
                    "www-authenticate",
                    r#"Bearer realm="greentic", error="invalid_token""#,
                )
            }
            ApiError::MethodNotAllowed { allow } => {
                response = response.with_header("allow", *allow)
            }
            ApiError::Unavailable(_) => response = response.with_header("retry-after", "5"),
            ApiError::TooManyRequests(windows) => {
                response = response
                    .with_header("retry-after", ratelimit::retry_after(windows).to_string())
                    .with_rate_limit(windows)
            }
            _ => {}
        }
        response
    }
}

fn exceeded_policies(windows: &[RateWindow]) -> String {
    let names: Vec<String> = windows
        .iter()
        .filter(|w| w.exceeded())
        .map(|w| {
            format!(
                "{} requests per {} s for this {}",
                w.quota, w.window_s, w.policy
            )
        })
        .collect();
    names.join("; ")
}

/// Problem types are URNs: stable names that do not pretend to be documentation URLs.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:greentic:problem:";

impl From<ConversationIdError> for ApiError {
    fn from(err: ConversationIdError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::ids::IdKind;

    #[test]
    fn problems_are_rfc9457() {
        let response =
            ApiError::InvalidId(IdError::Invalid(IdKind::Tenant)).into_response(Some("req-1"));
        assert_eq!(response.status, 400);
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        let body = response.json_body();
        assert_eq!(body["type"], "urn:greentic:problem:invalid-id");
        assert_eq!(body["status"], 400);
        assert_eq!(body["title"], "Invalid identifier");
        assert_eq!(body["request_id"], "req-1");
        assert!(body["detail"].as_str().unwrap().contains("tenant"));
    }

    #[test]
    fn unauthorized_carries_a_challenge_and_405_an_allow() {
        let r = ApiError::Unauthorized("token expired".into()).into_response(None);
        assert_eq!(r.status, 401);
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        let r = ApiError::MethodNotAllowed {
            allow: "GET, DELETE",
        }
        .into_response(None);
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, DELETE")));
    }

    #[test]
    fn a_refused_conversation_id_is_the_400_it_always_was() {
        assert_eq!(
            ApiError::from(ConversationIdError),
            ApiError::BadRequest("a conversation id is 1-64 of A-Z a-z 0-9 _ -".into())
        );
    }
}
