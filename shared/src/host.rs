//! What a component needs from its host, as a trait: the Spin implementation
//! lives in each component (spin-sdk stays out of `shared/`), the in-memory one
//! in [`crate::testing`]. Handlers take `&dyn Host` and nothing else, so the same
//! handler code runs under Spin and in native tests.

use crate::http::{Request, Response};
use crate::store::kv::{KeyValue, KvError};

/// Why an outbound request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The host refused it: not in the component's `allowed_outbound_hosts`.
    #[error("outbound request to {0} is not allowed")]
    Denied(String),
    #[error("outbound request failed: {0}")]
    Failed(String),
}

pub trait Host {
    /// Opens a key-value store by its spin.toml label. A label the component
    /// did not declare fails with [`KvError::AccessDenied`], as under Spin.
    fn open_store(&self, label: &str) -> Result<Box<dyn KeyValue + '_>, KvError>;
    /// A Spin variable mapped to this component, `None` when unset or unmapped.
    fn variable(&self, name: &str) -> Option<String>;
    /// Wall-clock time, Unix milliseconds.
    fn now_ms(&self) -> i64;
    /// Writes one finished log line (JSON) to the host's log.
    fn log(&self, line: &str);
    /// Fills `buf` with random bytes (request ids, nonces).
    fn random(&self, buf: &mut [u8]);
    /// Sends `req` to `base_url` (`scheme://host[:port]`, no path). Another
    /// component of the app is `http://{component}.spin.internal` (Spin's
    /// service chaining, dispatched in memory).
    fn send(&self, base_url: &str, req: Request) -> Result<Response, OutboundError>;
}
