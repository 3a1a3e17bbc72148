//! Fixed one-minute windows counted with the store's atomic `increment`
//! (atomic on Spin's SQLite and Redis backends alike), so every instance of
//! every component sees one count per tenant however many run at once.
//!
//! A window's counter is one key ([`crate::tenancy::keys::RateKeys`]). The
//! request that opens a window (its increment returns 1) deletes the previous
//! window's key, so a limit keeps at most two keys alive, and a scope that
//! goes quiet leaves one. A fixed window lets a client send up to twice its
//! quota across a window boundary; a sliding window would cost a read of the
//! previous window on every request, for a refinement clients do not rely on.

use crate::http::ratelimit::RateWindow;
use crate::store::kv::{KeyValue, KvError};
use crate::tenancy::keys::RateKeys;

/// Every window is one minute: limits are written per minute.
pub const WINDOW_S: u32 = 60;

/// Counts one request against `quota` per minute in `keys`' current window,
/// and returns the window as counted (check [`RateWindow::exceeded`]). A
/// refused request is counted too: a client that keeps trying while refused
/// stays refused until the window ends.
pub fn count(
    kv: &dyn KeyValue,
    keys: &RateKeys,
    policy: &'static str,
    quota: u32,
    now_ms: i64,
) -> Result<RateWindow, KvError> {
    let now_s = u64::try_from(now_ms).unwrap_or(0) / 1000;
    let window = now_s / u64::from(WINDOW_S);
    let used = kv.increment(&keys.window(window), 1)?;
    if used == 1 && window > 0 {
        kv.delete(&keys.window(window - 1))?;
    }
    Ok(RateWindow {
        policy,
        quota,
        window_s: WINDOW_S,
        used: u64::try_from(used).unwrap_or(0),
        reset_s: u64::from(WINDOW_S) - now_s % u64::from(WINDOW_S),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::TestKv;
    use crate::tenancy::ids::TenantCtx;
    use crate::tenancy::keys;

    #[test]
    fn a_window_counts_up_to_its_quota_then_refuses_until_the_next_minute() {
        let kv = TestKv::new();
        let acme = keys::rate_api(&TenantCtx::new("acme", "prod", None).unwrap());
        let minute = 1_795_867_200_000; // a whole minute
        let at = |ms: i64| count(&kv, &acme, "tenant", 3, minute + ms).unwrap();
        assert!(!at(0).exceeded());
        assert!(!at(10_000).exceeded());
        let third = at(20_000);
        assert_eq!((third.used, third.remaining(), third.reset_s), (3, 0, 40));
        let fourth = at(59_999);
        assert!(fourth.exceeded());
        assert_eq!(fourth.reset_s, 1);
        let next = at(60_000);
        assert_eq!((next.used, next.exceeded(), next.reset_s), (1, false, 60));
    }

    #[test]
    fn opening_a_window_deletes_the_one_before_and_scopes_never_share_a_count() {
        let kv = TestKv::new();
        let acme = keys::rate_api(&TenantCtx::new("acme", "prod", None).unwrap());
        let bigcorp = keys::rate_api(&TenantCtx::new("bigcorp", "prod", None).unwrap());
        let minute = 1_795_867_200_000;
        count(&kv, &acme, "tenant", 3, minute).unwrap();
        count(&kv, &acme, "tenant", 3, minute).unwrap();
        assert_eq!(count(&kv, &bigcorp, "tenant", 3, minute).unwrap().used, 1);
        count(&kv, &acme, "tenant", 3, minute + 60_000).unwrap();
        let mut keys = kv.get_keys().unwrap();
        keys.sort();
        let window = minute as u64 / 60_000;
        assert_eq!(
            keys,
            [
                format!("rate-api/acme/{}", window + 1),
                format!("rate-api/bigcorp/{window}")
            ]
        );
    }
}
