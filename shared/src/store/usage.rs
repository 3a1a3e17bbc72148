//! Per-tenant usage: counters per tenant/env/team/day of messages in, replies
//! out and errors, kept with the store's atomic `increment` so concurrent
//! deliveries never lose a count.
//!
//! Each event counts twice: under its team and under `*` (every team of the
//! env), so an env-wide read is one key per day and counter, not one per team.

use serde::Serialize;

use crate::store::kv::{KeyValue, KvError};
use crate::tenancy::ids::{Counter, Day, TenantCtx};
use crate::tenancy::keys;

/// Counts one or more events of `counter` for `ctx`'s team and for its env.
pub fn record(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    counter: Counter,
    n: i64,
    now_ms: i64,
) -> Result<(), KvError> {
    if n == 0 {
        return Ok(());
    }
    let day = Day::of(now_ms);
    kv.increment(&keys::usage(ctx, Some(ctx.team_token()), &day, counter), n)?;
    kv.increment(&keys::usage(ctx, None, &day, counter), n)?;
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub messages_in: i64,
    pub replies_out: i64,
    pub errors: i64,
}

impl Counts {
    fn add(&mut self, counter: Counter, n: i64) {
        match counter {
            Counter::MessagesIn => self.messages_in += n,
            Counter::RepliesOut => self.replies_out += n,
            Counter::Errors => self.errors += n,
        }
    }
}

/// Which teams a read covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teams {
    /// Every team of the env (and messages with no team).
    All,
    /// These team tokens (`default` for no team), summed.
    Only(Vec<String>),
}

/// The counts of `day` for the tenant and env of `ctx`, over `teams`.
pub fn read(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    teams: &Teams,
    day: &Day,
) -> Result<Counts, KvError> {
    let mut counts = Counts::default();
    let scopes: Vec<Option<&str>> = match teams {
        Teams::All => vec![None],
        Teams::Only(list) => list.iter().map(|t| Some(t.as_str())).collect(),
    };
    for team in scopes {
        for counter in Counter::ALL {
            let n = crate::store::kv::read_counter(kv, &keys::usage(ctx, team, day, counter))?;
            counts.add(counter, n);
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::TestKv;

    #[test]
    fn counts_are_per_team_and_per_env_and_never_cross_tenants() {
        let kv = TestKv::new();
        let now = 1_795_867_200_000;
        let support = TenantCtx::new("acme", "prod", Some("support")).unwrap();
        let sales = TenantCtx::new("acme", "prod", Some("sales")).unwrap();
        let bigcorp = TenantCtx::new("bigcorp", "prod", Some("support")).unwrap();
        record(&kv, &support, Counter::MessagesIn, 2, now).unwrap();
        record(&kv, &support, Counter::RepliesOut, 3, now).unwrap();
        record(&kv, &sales, Counter::MessagesIn, 1, now).unwrap();
        record(&kv, &bigcorp, Counter::Errors, 7, now).unwrap();
        let day = Day::of(now);
        let only = |t: &str| Teams::Only(vec![t.to_owned()]);
        assert_eq!(
            read(&kv, &support, &only("support"), &day).unwrap(),
            Counts {
                messages_in: 2,
                replies_out: 3,
                errors: 0
            }
        );
        assert_eq!(
            read(&kv, &support, &Teams::All, &day).unwrap().messages_in,
            3
        );
        assert_eq!(read(&kv, &support, &Teams::All, &day).unwrap().errors, 0);
        assert_eq!(read(&kv, &bigcorp, &Teams::All, &day).unwrap().errors, 7);
        let staging = TenantCtx::new("acme", "staging", None).unwrap();
        assert_eq!(
            read(&kv, &staging, &Teams::All, &day).unwrap(),
            Counts::default()
        );
    }
}
