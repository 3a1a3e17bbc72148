//! What a component checks on a push delivery from the bridge, before it
//! looks at the message: the bridge's delivery token (constant time), and the
//! subject and message id the bridge states. The token proves the request
//! comes from the bridge; consumers then check that the envelope agrees with
//! the subject, since a subject is what NATS permissions and streams key on.

use subtle::ConstantTimeEq;

use crate::bridge::VAR_DELIVERY_TOKEN;
use crate::error::ApiError;
use crate::host::Host;
use crate::http::Request;

pub const SUBJECT_HEADER: &str = "x-greentic-subject";
pub const MSG_ID_HEADER: &str = "x-greentic-msg-id";
pub const ATTEMPT_HEADER: &str = "x-greentic-attempt";

/// A delivery whose token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<'r> {
    pub subject: &'r str,
    pub msg_id: &'r str,
    /// 1 on the first delivery, counting up on redeliveries.
    pub attempt: u32,
    pub body: &'r [u8],
}

/// Checks the bridge's token, then reads the delivery headers. An unset token
/// is 503 (the bridge retries; nothing is accepted unauthenticated), a wrong
/// one 401, missing headers 400.
pub fn authenticate<'r>(req: &'r Request, host: &dyn Host) -> Result<Delivery<'r>, ApiError> {
    let expected = host
        .variable(VAR_DELIVERY_TOKEN)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::NotConfigured(format!("{VAR_DELIVERY_TOKEN} is not set")))?;
    let presented = req
        .header("authorization")?
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
    if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(ApiError::Unauthorized(
            "not the bridge's delivery token".into(),
        ));
    }
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
        body: &req.body,
    })
}
