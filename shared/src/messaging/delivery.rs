//! What a component checks on a push delivery from the bridge, before it
//! looks at the message: the bridge's delivery token (constant time), and the
//! subject and message id the bridge states. The token proves the request
//! comes from the bridge; consumers then check that the envelope agrees with
//! the subject, since a subject is what NATS permissions and streams key on.

use subtle::ConstantTimeEq;

use crate::host::Host;
use crate::http::error::ApiError;
use crate::http::{Request, Response};
use crate::messaging::bridge::VAR_DELIVERY_TOKEN;
use crate::service;
use crate::service::log::RequestLog;

/// Largest delivery accepted; the bridge refuses bigger payloads anyway.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A component's whole delivery route: `POST route` with the bridge's token,
/// then `apply`. 2xx acknowledges; 4xx is dead-lettered with the problem's
/// detail as the reason, except the 401 for a wrong token, which the bridge
/// holds until the tokens agree; 5xx is redelivered with backoff.
pub fn handle(
    req: &Request,
    host: &dyn Host,
    component: &'static str,
    route: &'static str,
    apply: impl FnOnce(&Delivery<'_>, &mut RequestLog) -> Result<serde_json::Value, ApiError>,
) -> Response {
    service::serve(req, host, component, BODY_LIMIT, |req, log| {
        if req.path != route {
            return ("-", Err(ApiError::NotFound));
        }
        if req.method != "POST" {
            return (route, Err(ApiError::MethodNotAllowed { allow: "POST" }));
        }
        let outcome = authenticate(req, host)
            .and_then(|delivery| apply(&delivery, log))
            .map(|body| Response::json(200, &body));
        if let Err(e) = &outcome
            && e.status() < 500
        {
            log.warn(
                "delivery.refused",
                serde_json::json!({ "problem": e.slug(), "detail": e.to_string() }),
            );
        }
        (route, outcome)
    })
}

pub const SUBJECT_HEADER: &str = "x-greentic-subject";
pub const MSG_ID_HEADER: &str = "x-greentic-msg-id";
pub const ATTEMPT_HEADER: &str = "x-greentic-attempt";
/// The conversation a message belongs to, as its publisher stated it; the
/// bridge applies one session's messages in stream order (see bridge/README).
pub const SESSION_HEADER: &str = "x-greentic-session";
/// Present when the bridge held the message for its tenant's rate: how long, ms.
pub const DELAYED_HEADER: &str = "x-greentic-delayed-ms";

/// A delivery whose token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<'r> {
    pub subject: &'r str,
    pub msg_id: &'r str,
    /// 1 on the first delivery, counting up on redeliveries.
    pub attempt: u32,
    /// The session the bridge ordered this message by; absent on messages
    /// published before the bridge carried it.
    pub session: Option<&'r str>,
    /// The bridge held the message this long for its tenant's rate; `None`
    /// when it was not held.
    pub delayed_ms: Option<u64>,
    pub body: &'r [u8],
}

impl Delivery<'_> {
    /// Whether the session the bridge ordered by is the message's own: a
    /// message ordered under another session's key could overtake its own
    /// conversation's earlier messages.
    pub fn ordered_as(&self, session: &crate::tenancy::ids::SessionId) -> bool {
        self.session.is_none_or(|s| s == session.as_str())
    }
}

/// Checks that `req` comes from the bridge: its delivery token, compared in
/// constant time. An unset token is 503 (the bridge retries; nothing is
/// accepted unauthenticated), a missing or wrong one 401. What every route
/// the bridge calls checks first (deliveries, scheduled sweeps).
pub fn check_bridge_token(req: &Request, host: &dyn Host) -> Result<(), ApiError> {
    let expected = host
        .variable(VAR_DELIVERY_TOKEN)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::NotConfigured(format!("{VAR_DELIVERY_TOKEN} is not set")))?;
    let presented = req
        .header("authorization")?
        .and_then(crate::http::bearer_token)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
    if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(ApiError::Unauthorized(
            "not the bridge's delivery token".into(),
        ));
    }
    Ok(())
}

/// Checks the bridge's token, then reads the delivery headers (missing ones
/// are 400).
pub fn authenticate<'r>(req: &'r Request, host: &dyn Host) -> Result<Delivery<'r>, ApiError> {
    check_bridge_token(req, host)?;
    let header = |name: &str| {
        req.header(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("{name} is missing")))
    };
    let attempt = header(ATTEMPT_HEADER)?
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{ATTEMPT_HEADER} is not a number")))?;
    Ok(Delivery {
        subject: header(SUBJECT_HEADER)?,
        msg_id: header(MSG_ID_HEADER)?,
        attempt,
        session: req.header(SESSION_HEADER)?,
        delayed_ms: req
            .header(DELAYED_HEADER)?
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::BadRequest(format!("{DELAYED_HEADER} is not a number")))
            })
            .transpose()?,
        body: &req.body,
    })
}
