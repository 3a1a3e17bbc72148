//! `POST /internal/v1/deliveries/egress`: a public route only the bridge can
//! use (its delivery token is checked before anything else is read).

use greentic::host::Host;
use greentic::http::{Request, Response};
use greentic::messaging::delivery;
use greentic::messaging::egress::{self, Sent};
use serde_json::json;

pub const COMPONENT: &str = "egress";
pub const ROUTE: &str = "/internal/v1/deliveries/egress";
pub use greentic::messaging::delivery::BODY_LIMIT;

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    delivery::handle(req, host, COMPONENT, ROUTE, |delivery, log| {
        let sent = egress::deliver(host, delivery, log)?;
        Ok(json!({ "sent": sent != Sent::Dropped, "repeat": sent == Sent::AlreadyDelivered }))
    })
}
