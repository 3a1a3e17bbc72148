//! Fixed one-minute windows counted with the store's atomic `increment`
//! (atomic on Spin's SQLite and Redis backends alike), so every instance of
//! every component sees one count per tenant however many run at once.
//!
//! A window's counter is one key ([`crate::tenancy::keys::RateKeys`]). The
//! request that opens a window (its increment returns 1) deletes the window
//! the scope opened last, which the scope's `last` key names however long
//! ago that was, so a scope keeps its current window and `last` alive and
//! nothing older (a request late across a minute's end deletes the past
//! window it reopened). The first window a scope ever opens registers it in its
//! tenant's `rate-scopes` index, so an offboarding finds every window
//! ([`forget_scopes`]); that costs an increment and a write once per scope,
//! and opening a window a read and a write more than counting in it.
//! A fixed window lets a client send up to twice its
//! quota across a window boundary; a sliding window would cost a read of the
//! previous window on every request, for a refinement clients do not rely on.

use crate::http::ratelimit::RateWindow;
use crate::store::budget::Budget;
use crate::store::index::SlotIndex;
use crate::store::kv::{KeyValue, KvError};
use crate::tenancy::ids::TenantId;
use crate::tenancy::keys::{self, RateKeys};

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
    if used == 1 {
        open(kv, keys, window)?;
    }
    Ok(RateWindow {
        policy,
        quota,
        window_s: WINDOW_S,
        used: u64::try_from(used).unwrap_or(0),
        reset_s: u64::from(WINDOW_S) - now_s % u64::from(WINDOW_S),
    })
}

/// Notes `window` as the scope's last one and deletes the one it replaces
/// (or registers the scope, the first time). A request that read its clock
/// just before another opened the next window (or an instance whose clock
/// lags) may open an older window after a newer one: that never moves
/// `last` back nor deletes the newer window; the older one, over already,
/// is deleted at once, so no window but `last` outlives its minute.
fn open(kv: &dyn KeyValue, keys: &RateKeys, window: u64) -> Result<(), KvError> {
    let last = kv
        .get(&keys.last())?
        .and_then(|b| String::from_utf8(b).ok()?.parse::<u64>().ok());
    match last {
        None => {
            let scopes = SlotIndex::new(kv, keys.scopes().clone());
            let slot = scopes.allocate()?;
            scopes.set(slot, keys.as_entry().as_bytes())?;
        }
        Some(last) if last < window => kv.delete(&keys.window(last))?,
        Some(last) if last > window => return kv.delete(&keys.window(window)),
        Some(_) => return Ok(()),
    }
    kv.set(&keys.last(), window.to_string().as_bytes())
}

/// Deletes the tenant's rate scopes with their windows, newest first, while
/// `budget` lasts. Returns whether none is left.
pub fn forget_scopes(
    kv: &dyn KeyValue,
    tenant: &TenantId,
    budget: &mut Budget,
) -> Result<bool, KvError> {
    SlotIndex::new(kv, keys::rate_scopes(tenant)).drain(budget, |_, entry| {
        if let Some(scope) = entry
            .as_deref()
            .and_then(|e| std::str::from_utf8(e).ok())
            .and_then(|e| RateKeys::from_entry(tenant, e))
            && let Some(last) = kv
                .get(&scope.last())?
                .and_then(|b| String::from_utf8(b).ok()?.parse::<u64>().ok())
        {
            kv.delete_many(&[
                scope.window(last),
                scope.window(last.saturating_sub(1)),
                scope.last(),
            ])?;
        }
        Ok::<usize, KvError>(1)
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
    fn opening_a_window_deletes_the_last_one_and_scopes_never_share_a_count() {
        let kv = TestKv::new();
        let acme = keys::rate_api(&TenantCtx::new("acme", "prod", None).unwrap());
        let bigcorp = keys::rate_api(&TenantCtx::new("bigcorp", "prod", None).unwrap());
        let minute = 1_795_867_200_000;
        count(&kv, &acme, "tenant", 3, minute).unwrap();
        count(&kv, &acme, "tenant", 3, minute).unwrap();
        assert_eq!(count(&kv, &bigcorp, "tenant", 3, minute).unwrap().used, 1);
        // Quiet for an hour: the window opened then still replaces this one.
        count(&kv, &acme, "tenant", 3, minute + 3_600_000).unwrap();
        let mut keys = kv.get_keys().unwrap();
        keys.sort();
        let window = minute as u64 / 60_000;
        assert_eq!(
            keys,
            [
                format!("rate-api/acme/{}", window + 60),
                "rate-api/acme/last".to_owned(),
                format!("rate-api/bigcorp/{window}"),
                "rate-api/bigcorp/last".to_owned(),
                "rate-scopes/acme/1".to_owned(),
                "rate-scopes/acme/seq".to_owned(),
                "rate-scopes/bigcorp/1".to_owned(),
                "rate-scopes/bigcorp/seq".to_owned(),
            ]
        );
        // A request whose clock read the minute before moves nothing back,
        // and leaves no window of that past minute.
        count(&kv, &acme, "tenant", 3, minute + 3_540_000).unwrap();
        assert_eq!(
            kv.get("rate-api/acme/last").unwrap().unwrap(),
            (window + 60).to_string().as_bytes()
        );
        assert!(
            kv.exists(&format!("rate-api/acme/{}", window + 60))
                .unwrap()
        );
        assert!(
            !kv.exists(&format!("rate-api/acme/{}", window + 59))
                .unwrap()
        );
    }

    #[test]
    fn forgetting_a_tenants_scopes_leaves_no_key_of_it_and_every_other_tenants() {
        let kv = TestKv::new();
        let ctx = |t: &str| TenantCtx::new(t, "prod", Some("support")).unwrap();
        let channel = crate::tenancy::ids::ChannelId::parse("web").unwrap();
        let minute = 1_795_867_200_000;
        for (tenant, at) in [
            ("acme", 0),
            ("acme", 60_000),
            ("bigcorp", 0),
            ("acme", 59_000),
        ] {
            let c = ctx(tenant);
            count(&kv, &keys::rate_api(&c), "tenant", 3, minute + at).unwrap();
            count(
                &kv,
                &keys::rate_api_subject(&c, "dana"),
                "subject",
                3,
                minute + at,
            )
            .unwrap();
            count(
                &kv,
                &keys::rate_webchat_channel(&c, &channel),
                "channel",
                3,
                minute + at,
            )
            .unwrap();
        }
        let bigcorp_keys = |kv: &TestKv| {
            let mut k: Vec<String> = kv
                .get_keys()
                .unwrap()
                .into_iter()
                .filter(|k| k.contains("bigcorp"))
                .collect();
            k.sort();
            k
        };
        let before = bigcorp_keys(&kv);
        let acme = TenantId::parse("acme").unwrap();
        let mut budget = Budget::new(2);
        assert!(!forget_scopes(&kv, &acme, &mut budget).unwrap());
        assert!(forget_scopes(&kv, &acme, &mut Budget::new(100)).unwrap());
        let left = kv.get_keys().unwrap();
        assert!(left.iter().all(|k| !k.contains("acme")), "{left:?}");
        assert_eq!(bigcorp_keys(&kv), before);
    }
}
