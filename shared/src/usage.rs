//! Per-tenant usage: counters per tenant/env/team/day of messages in, replies
//! out and errors, kept with the store's atomic `increment` so concurrent
//! deliveries never lose a count.
//!
//! Each event counts twice: under its team and under `*` (every team of the
//! env), so an env-wide read is one key per day and counter, not one per team.

use serde::Serialize;

use crate::keys;
use crate::kv::{KeyValue, KvError};
use crate::tenant::TenantCtx;

/// The most days one read may cover.
pub const MAX_DAYS: usize = 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    MessagesIn,
    RepliesOut,
    Errors,
}

impl Counter {
    pub const ALL: [Counter; 3] = [Counter::MessagesIn, Counter::RepliesOut, Counter::Errors];

    pub fn as_str(self) -> &'static str {
        match self {
            Counter::MessagesIn => "messages_in",
            Counter::RepliesOut => "replies_out",
            Counter::Errors => "errors",
        }
    }
}

/// A UTC calendar day, `YYYY-MM-DD`; only ever built from a clock or a
/// checked string, so it is safe in a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(String);

const DAY_MS: i64 = 86_400_000;

impl Day {
    pub fn of(ms: i64) -> Day {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        Day(humantime::format_rfc3339(at).to_string()[..10].to_owned())
    }

    /// A `YYYY-MM-DD` date, or `None`.
    pub fn parse(raw: &str) -> Option<Day> {
        let parsed = humantime::parse_rfc3339(&format!("{raw}T00:00:00Z")).ok()?;
        let day = Day::of(
            parsed
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_millis() as i64,
        );
        (day.0 == raw).then_some(day)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn start_ms(&self) -> i64 {
        humantime::parse_rfc3339(&format!("{}T00:00:00Z", self.0))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// Every day from `from` to `to`, inclusive; `None` if reversed or longer than [`MAX_DAYS`].
    pub fn range(from: &Day, to: &Day) -> Option<Vec<Day>> {
        let (start, end) = (from.start_ms(), to.start_ms());
        if end < start || (end - start) / DAY_MS >= MAX_DAYS as i64 {
            return None;
        }
        Some(
            (0..=(end - start) / DAY_MS)
                .map(|i| Day::of(start + i * DAY_MS))
                .collect(),
        )
    }
}

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
            let n = crate::kv::read_counter(kv, &keys::usage(ctx, team, day, counter))?;
            counts.add(counter, n);
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::TestKv;

    #[test]
    fn days_parse_strictly_and_ranges_are_bounded() {
        assert_eq!(Day::of(0).as_str(), "1970-01-01");
        assert_eq!(Day::parse("2026-11-29").unwrap().as_str(), "2026-11-29");
        for bad in [
            "2026-11-31",
            "2026-1-29",
            "29-11-2026",
            "2026-11-29x",
            "",
            "2026-11-29/../x",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        let (a, b) = (
            Day::parse("2026-11-28").unwrap(),
            Day::parse("2026-12-01").unwrap(),
        );
        let days: Vec<String> = Day::range(&a, &b)
            .unwrap()
            .iter()
            .map(|d| d.0.clone())
            .collect();
        assert_eq!(
            days,
            ["2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01"]
        );
        assert!(Day::range(&b, &a).is_none());
        assert!(
            Day::range(
                &Day::parse("2026-01-01").unwrap(),
                &Day::parse("2026-02-01").unwrap()
            )
            .is_none()
        );
    }

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
