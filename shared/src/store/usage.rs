//! Per-tenant usage: counters per tenant/env/team/day of messages in, replies
//! out and errors, kept with the store's atomic `increment` so concurrent
//! deliveries never lose a count.
//!
//! A message costs one increment: messages in and replies out share one
//! counter per team and day ([`Counter::Traffic`]), replies counted in units
//! of 2^32, so neither can overflow into the other below four billion a day.
//! An env-wide read sums the teams the env's registry names
//! ([`crate::store::teams`]), a few keys per day rather than one more write per
//! message.
//!
//! What the per-tenant limits held back is counted too: inbound messages the
//! bridge delayed for the tenant's rate (by the executor, beside the traffic),
//! and REST calls and web chat messages refused with 429 (by whoever refused
//! them, in the limits store, which has its own team registry). Counting costs
//! nothing on a request that is not limited.

use serde::Serialize;

use crate::store::kv::{KeyValue, KvError};
use crate::store::teams::TeamRegistry;
use crate::tenancy::ids::{Counter, Day, TenantCtx};
use crate::tenancy::keys;

/// One reply in the traffic counter.
const REPLY: i64 = 1 << 32;

/// Counts `messages` in and `replies` out for `ctx`'s team: one increment.
pub fn record_traffic(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    messages: u64,
    replies: u64,
    now_ms: i64,
) -> Result<(), KvError> {
    add(
        kv,
        ctx,
        Counter::Traffic,
        messages as i64 + replies as i64 * REPLY,
        now_ms,
    )
}

/// Counts `n` errors for `ctx`'s team. Errors can come before a team has a
/// session (a first message whose flow fails), so the team is registered
/// here too.
pub fn record_errors(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    n: i64,
    now_ms: i64,
) -> Result<(), KvError> {
    if n == 0 {
        return Ok(());
    }
    TeamRegistry::new(kv).ensure(ctx)?;
    add(kv, ctx, Counter::Errors, n, now_ms)
}

/// Counts `n` inbound messages of `ctx`'s team that the bridge held for the
/// tenant's rate before delivering them.
pub fn record_delayed(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    n: i64,
    now_ms: i64,
) -> Result<(), KvError> {
    add(kv, ctx, Counter::Delayed, n, now_ms)
}

/// Counts one request of `ctx`'s team refused with 429, as `counter`
/// ([`Counter::ApiRefused`] or [`Counter::WebchatRefused`]), in the limits store.
pub fn record_refused(
    limits: &dyn KeyValue,
    ctx: &TenantCtx,
    counter: Counter,
    now_ms: i64,
) -> Result<(), KvError> {
    TeamRegistry::new(limits).ensure(ctx)?;
    add(limits, ctx, counter, 1, now_ms)
}

/// Adds `n` to `counter` of `ctx`'s team for the day of `now_ms`: one
/// increment, none for 0.
fn add(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    counter: Counter,
    n: i64,
    now_ms: i64,
) -> Result<(), KvError> {
    if n != 0 {
        kv.increment(&keys::usage(ctx, &Day::of(now_ms), counter), n)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub messages_in: i64,
    pub replies_out: i64,
    pub errors: i64,
    /// Inbound messages delayed by the tenant's message rate (never dropped).
    pub messages_delayed: i64,
    /// REST calls refused with 429.
    pub api_requests_refused: i64,
    /// Web chat messages refused with 429.
    pub webchat_messages_refused: i64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.messages_in += other.messages_in;
        self.replies_out += other.replies_out;
        self.errors += other.errors;
        self.messages_delayed += other.messages_delayed;
        self.api_requests_refused += other.api_requests_refused;
        self.webchat_messages_refused += other.webchat_messages_refused;
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

/// The counts of `day` for the tenant and env of `ctx`, over `teams`:
/// traffic from `kv` (the sessions store), refusals from `limits`.
pub fn read(
    kv: &dyn KeyValue,
    limits: &dyn KeyValue,
    ctx: &TenantCtx,
    teams: &Teams,
    day: &Day,
) -> Result<Counts, KvError> {
    read_days(kv, limits, ctx, teams, std::slice::from_ref(day)).map(|mut days| days.remove(0))
}

/// The counts of each of `days`, in order, for the tenant and env of `ctx`,
/// over `teams` (each store's registry is read once).
pub fn read_days(
    kv: &dyn KeyValue,
    limits: &dyn KeyValue,
    ctx: &TenantCtx,
    teams: &Teams,
    days: &[Day],
) -> Result<Vec<Counts>, KvError> {
    let scopes: Vec<TenantCtx> = match teams {
        Teams::All => {
            let mut all = TeamRegistry::new(kv).teams(ctx)?;
            for team in TeamRegistry::new(limits).teams(ctx)? {
                if !all.contains(&team) {
                    all.push(team);
                }
            }
            all
        }
        Teams::Only(list) => list
            .iter()
            .filter_map(|t| {
                ctx.with_team((t != crate::tenancy::ids::DEFAULT_TEAM).then_some(t.as_str()))
                    .ok()
            })
            .collect(),
    };
    days.iter()
        .map(|day| {
            let mut counts = Counts::default();
            for team in &scopes {
                let traffic =
                    crate::store::kv::read_counter(kv, &keys::usage(team, day, Counter::Traffic))?;
                counts.messages_in += traffic & (REPLY - 1);
                counts.replies_out += traffic >> 32;
                let counter = |kv: &dyn KeyValue, counter| {
                    crate::store::kv::read_counter(kv, &keys::usage(team, day, counter))
                };
                counts.errors += counter(kv, Counter::Errors)?;
                counts.messages_delayed += counter(kv, Counter::Delayed)?;
                counts.api_requests_refused += counter(limits, Counter::ApiRefused)?;
                counts.webchat_messages_refused += counter(limits, Counter::WebchatRefused)?;
            }
            Ok(counts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::TestKv;

    #[test]
    fn counts_are_per_team_and_per_env_and_never_cross_tenants() {
        let kv = TestKv::new();
        let limits = TestKv::new();
        let now = 1_795_867_200_000;
        let support = TenantCtx::new("acme", "prod", Some("support")).unwrap();
        let sales = TenantCtx::new("acme", "prod", Some("sales")).unwrap();
        let bigcorp = TenantCtx::new("bigcorp", "prod", Some("support")).unwrap();
        // Teams are registered when their sessions are created.
        for c in [&support, &sales] {
            TeamRegistry::new(&kv).ensure(c).unwrap();
        }
        record_traffic(&kv, &support, 2, 3, now).unwrap();
        record_traffic(&kv, &sales, 1, 0, now).unwrap();
        record_errors(&kv, &bigcorp, 7, now).unwrap();
        record_delayed(&kv, &support, 4, now).unwrap();
        // A team with refusals but no sessions is still counted env-wide.
        let quiet = TenantCtx::new("acme", "prod", Some("quiet")).unwrap();
        record_refused(&limits, &quiet, Counter::ApiRefused, now).unwrap();
        record_refused(&limits, &bigcorp, Counter::WebchatRefused, now).unwrap();
        let day = Day::of(now);
        let only = |t: &str| Teams::Only(vec![t.to_owned()]);
        assert_eq!(
            read(&kv, &limits, &support, &only("support"), &day).unwrap(),
            Counts {
                messages_in: 2,
                replies_out: 3,
                messages_delayed: 4,
                ..Counts::default()
            }
        );
        let acme_all = read(&kv, &limits, &support, &Teams::All, &day).unwrap();
        assert_eq!(
            (
                acme_all.api_requests_refused,
                acme_all.webchat_messages_refused,
                acme_all.messages_delayed
            ),
            (1, 0, 4)
        );
        assert_eq!(
            read(&kv, &limits, &support, &only("support"), &day)
                .unwrap()
                .api_requests_refused,
            0,
            "another team's refusals are not this team's"
        );
        assert_eq!(
            read(&kv, &limits, &bigcorp, &Teams::All, &day)
                .unwrap()
                .webchat_messages_refused,
            1
        );
        assert_eq!(
            read(&kv, &limits, &support, &Teams::All, &day)
                .unwrap()
                .messages_in,
            3
        );
        assert_eq!(
            read(&kv, &limits, &support, &Teams::All, &day)
                .unwrap()
                .errors,
            0
        );
        assert_eq!(
            read(&kv, &limits, &bigcorp, &Teams::All, &day)
                .unwrap()
                .errors,
            7
        );
        let staging = TenantCtx::new("acme", "staging", None).unwrap();
        assert_eq!(
            read(&kv, &limits, &staging, &Teams::All, &day).unwrap(),
            Counts::default()
        );
    }
}
