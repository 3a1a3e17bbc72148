//! `POST /internal/v1/deliveries/ingress`: a public route only the bridge can
//! use (its delivery token is checked before anything else is read).

use greentic::host::Host;
use greentic::http::{Request, Response};
use greentic::messaging::{delivery, executor};
use serde_json::json;

pub const COMPONENT: &str = "flow-executor";
pub const ROUTE: &str = "/internal/v1/deliveries/ingress";
pub use greentic::messaging::delivery::BODY_LIMIT;

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    delivery::handle(req, host, COMPONENT, ROUTE, |delivery, log| {
        let done = executor::deliver_ingress(host, delivery, log)?;
        Ok(json!({
            "session_id": done.session_id.as_str(),
            "replies": done.replies,
            "duplicate": done.duplicate,
        }))
    })
}
