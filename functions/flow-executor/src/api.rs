//! `POST /internal/v1/deliveries/ingress`: a public route only the bridge can
//! use (its delivery token is checked before anything else is read).

use greentic::ApiError;
use greentic::delivery;
use greentic::executor;
use greentic::host::Host;
use greentic::http::{Request, Response};
use greentic::service;
use serde_json::json;

pub const COMPONENT: &str = "flow-executor";
pub const ROUTE: &str = "/internal/v1/deliveries/ingress";
/// Envelopes are small; the bridge refuses payloads over 1 MiB anyway.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    service::serve(req, host, COMPONENT, BODY_LIMIT, |req, log| {
        if req.path != ROUTE {
            return ("-", Err(ApiError::NotFound));
        }
        if req.method != "POST" {
            return (ROUTE, Err(ApiError::MethodNotAllowed { allow: "POST" }));
        }
        let outcome = delivery::authenticate(req, host)
            .and_then(|d| executor::deliver_ingress(host, &d, log))
            .map(|done| {
                Response::json(
                    200,
                    &json!({
                        "session_id": done.session_id.as_str(),
                        "replies": done.replies,
                        "duplicate": done.duplicate,
                    }),
                )
            });
        if let Err(e) = &outcome
            && e.status() < 500
        {
            log.warn(
                "delivery.refused",
                json!({ "problem": e.slug(), "detail": e.to_string() }),
            );
        }
        (ROUTE, outcome)
    })
}
