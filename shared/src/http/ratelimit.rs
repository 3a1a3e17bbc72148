//! How a rate limit is told to a client: `429` with `Retry-After`, and the
//! `RateLimit-Policy` / `RateLimit` fields of the IETF httpapi draft
//! (draft-ietf-httpapi-ratelimit-headers-10: a List of quoted policy names,
//! `q` quota and `w` window in seconds; `r` remaining and `t` seconds to
//! reset) on every answer of a limited route, so a client can slow down
//! before it is refused.

use serde::{Deserialize, Serialize};

/// One fixed window of one policy, as counted for this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateWindow {
    /// The policy's name in the headers (`tenant`, `subject`, ...).
    pub policy: &'static str,
    /// Requests allowed per window.
    pub quota: u32,
    /// The window's length, seconds.
    pub window_s: u32,
    /// Requests counted in the current window, this one included.
    pub used: u64,
    /// Seconds until the current window ends.
    pub reset_s: u64,
}

impl RateWindow {
    pub fn exceeded(&self) -> bool {
        self.used > u64::from(self.quota)
    }

    pub fn remaining(&self) -> u64 {
        u64::from(self.quota).saturating_sub(self.used)
    }
}

/// `RateLimit-Policy` and `RateLimit` for `windows`.
pub fn headers(windows: &[RateWindow]) -> [(&'static str, String); 2] {
    let policy = windows
        .iter()
        .map(|w| format!("\"{}\";q={};w={}", w.policy, w.quota, w.window_s))
        .collect::<Vec<_>>()
        .join(", ");
    let current = windows
        .iter()
        .map(|w| format!("\"{}\";r={};t={}", w.policy, w.remaining(), w.reset_s))
        .collect::<Vec<_>>()
        .join(", ");
    [("ratelimit-policy", policy), ("ratelimit", current)]
}

/// Seconds until every exceeded window has reset (at least 1).
pub fn retry_after(windows: &[RateWindow]) -> u64 {
    windows
        .iter()
        .filter(|w| w.exceeded())
        .map(|w| w.reset_s)
        .max()
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_drafts_structured_field_syntax() {
        let windows = [
            RateWindow {
                policy: "tenant",
                quota: 100,
                window_s: 60,
                used: 40,
                reset_s: 12,
            },
            RateWindow {
                policy: "subject",
                quota: 10,
                window_s: 60,
                used: 11,
                reset_s: 12,
            },
        ];
        let [policy, current] = headers(&windows);
        assert_eq!(
            policy,
            (
                "ratelimit-policy",
                "\"tenant\";q=100;w=60, \"subject\";q=10;w=60".to_owned()
            )
        );
        assert_eq!(
            current,
            (
                "ratelimit",
                "\"tenant\";r=60;t=12, \"subject\";r=0;t=12".to_owned()
            )
        );
        assert_eq!(retry_after(&windows), 12);
        assert!(!windows[0].exceeded() && windows[1].exceeded());
    }
}
