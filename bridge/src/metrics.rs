//! Counters for `/metrics`, rendered in the Prometheus text format by hand.
//!
//! Why by hand: a few counters and gauges with a label or two do not justify
//! a metrics framework. Label values are known at start (stream, delivery and
//! schedule names, outcomes), so every series exists from the first scrape, at zero; a
//! counter that only appears after its first event makes `rate()` and alerts
//! misbehave. No label names a tenant: tenants come and go by the thousand,
//! and a series per tenant would grow without bound; per-tenant figures are
//! in the logs (every line carries `tenant`) and the usage API.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter (or gauge) family: a series per combination of label values.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: Vec<&'static str>,
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl Family {
    /// A counter with one `label`, a series per value in `values`.
    fn new(name: &'static str, help: &'static str, label: &'static str, values: &[&str]) -> Self {
        Self::with_series(name, help, &[label], values.iter().map(|v| vec![*v]))
    }

    /// A counter with several `labels`, a series per entry of `series`
    /// (one value per label, in order).
    fn with_series<'a>(
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
        series: impl IntoIterator<Item = Vec<&'a str>>,
    ) -> Self {
        let values = series
            .into_iter()
            .map(|s| {
                debug_assert_eq!(s.len(), labels.len(), "{name}: one value per label");
                (s.into_iter().map(str::to_string).collect(), 0)
            })
            .collect();
        Family {
            name,
            help,
            kind: "counter",
            labels: labels.to_vec(),
            values: Mutex::new(values),
        }
    }

    fn gauge(name: &'static str, help: &'static str, label: &'static str, values: &[&str]) -> Self {
        Family {
            kind: "gauge",
            ..Self::new(name, help, label, values)
        }
    }

    fn key(series: &[&str]) -> Vec<String> {
        series.iter().map(|v| v.to_string()).collect()
    }

    fn set(&self, series: &[&str], n: u64) {
        let mut values = self.values.lock().expect("metrics lock");
        values.insert(Self::key(series), n);
    }

    fn inc(&self, series: &[&str]) {
        self.add(series, 1)
    }

    fn add(&self, series: &[&str], n: u64) {
        let mut values = self.values.lock().expect("metrics lock");
        *values.entry(Self::key(series)).or_default() += n;
    }

    fn get(&self, series: &[&str]) -> u64 {
        let values = self.values.lock().expect("metrics lock");
        values.get(&Self::key(series)).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        let values = self.values.lock().expect("metrics lock");
        for (series, n) in values.iter() {
            // Label values are stream, delivery and schedule names
            // ([A-Za-z0-9_-]) and fixed words: nothing to escape.
            let labels: Vec<String> = self
                .labels
                .iter()
                .zip(series)
                .map(|(label, value)| format!("{label}=\"{value}\""))
                .collect();
            let _ = writeln!(out, "{}{{{}}} {}", self.name, labels.join(","), n);
        }
    }
}

/// Every counter the bridge exports.
#[derive(Debug)]
pub struct Metrics {
    published: Family,
    duplicates: Family,
    delivered: Family,
    retried: Family,
    dead_lettered: Family,
    waiting: Family,
    tenants_active: Family,
    rate_held: Family,
    rate_delayed: Family,
    schedule_runs: Family,
    schedule_calls: Family,
    purged: Family,
    publish_errors: AtomicU64,
}

/// How a scheduled run ended: the `outcome` label of `greentic_bridge_schedule_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every call answered 200 with `more`; the run stopped at `more: false`
    /// or at `max_calls_per_run`.
    Ok,
    /// A call failed (not 200, timeout, connection, no `more` in the answer).
    Failed,
}

impl RunOutcome {
    const ALL: [RunOutcome; 2] = [RunOutcome::Ok, RunOutcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
        }
    }
}

impl Metrics {
    pub fn new(streams: &[&str], deliveries: &[&str], schedules: &[&str]) -> Self {
        Metrics {
            published: Family::new(
                "greentic_bridge_published_total",
                "Messages stored by JetStream through POST /v1/publish (duplicates excluded).",
                "stream",
                streams,
            ),
            duplicates: Family::new(
                "greentic_bridge_publish_duplicates_total",
                "Publishes JetStream recognised as duplicates of an earlier Nats-Msg-Id.",
                "stream",
                streams,
            ),
            delivered: Family::new(
                "greentic_bridge_delivered_total",
                "Messages delivered to their endpoint (2xx) and acknowledged.",
                "delivery",
                deliveries,
            ),
            retried: Family::new(
                "greentic_bridge_retried_total",
                "Delivery attempts that failed (5xx, timeout, connection) and were scheduled again.",
                "delivery",
                deliveries,
            ),
            dead_lettered: Family::new(
                "greentic_bridge_dead_lettered_total",
                "Messages moved to the dead-letter stream.",
                "delivery",
                deliveries,
            ),
            waiting: Family::gauge(
                "greentic_bridge_waiting",
                "Messages pulled but not being delivered: waiting for their session's previous message, their tenant's turn or rate, or a retry.",
                "delivery",
                deliveries,
            ),
            tenants_active: Family::gauge(
                "greentic_bridge_tenants_active",
                "Tenants with a message pulled in the last 5 s; above 1, each is held to tenant_concurrency.",
                "delivery",
                deliveries,
            ),
            rate_held: Family::gauge(
                "greentic_bridge_rate_held",
                "Messages pulled and held back by their tenant's Greentic-Rate.",
                "delivery",
                deliveries,
            ),
            rate_delayed: Family::new(
                "greentic_bridge_rate_delayed_total",
                "Messages delivered after their tenant's Greentic-Rate held them back.",
                "delivery",
                deliveries,
            ),
            schedule_runs: Family::with_series(
                "greentic_bridge_schedule_runs_total",
                "Runs of a [[schedule]]: ok when every call answered 200 with `more`, failed when one did not.",
                &["schedule", "outcome"],
                schedules
                    .iter()
                    .flat_map(|s| RunOutcome::ALL.map(|o| vec![*s, o.as_str()])),
            ),
            schedule_calls: Family::new(
                "greentic_bridge_schedule_calls_total",
                "Calls made by a [[schedule]] (several per run while the endpoint answers more: true).",
                "schedule",
                schedules,
            ),
            purged: Family::new(
                "greentic_bridge_purged_total",
                "Messages removed from a stream by tenant purges (POST /v1/purge/tenants/{tenant}).",
                "stream",
                streams,
            ),
            publish_errors: AtomicU64::new(0),
        }
    }

    /// What a delivery holds now: messages waiting (of which `rate_held`
    /// held back by a rate), tenants active.
    pub fn holding(&self, delivery: &str, waiting: usize, rate_held: usize, tenants_active: usize) {
        self.waiting.set(&[delivery], waiting as u64);
        self.rate_held.set(&[delivery], rate_held as u64);
        self.tenants_active.set(&[delivery], tenants_active as u64);
    }

    /// A message held back by its rate was delivered.
    pub fn rate_delayed(&self, delivery: &str) {
        self.rate_delayed.inc(&[delivery])
    }

    /// Current values, for tests: (held now, delivered after being held) of a delivery.
    pub fn rate_counts(&self, delivery: &str) -> (u64, u64) {
        (
            self.rate_held.get(&[delivery]),
            self.rate_delayed.get(&[delivery]),
        )
    }

    pub fn published(&self, stream: &str, duplicate: bool) {
        if duplicate {
            self.duplicates.inc(&[stream])
        } else {
            self.published.inc(&[stream])
        }
    }

    pub fn delivered(&self, delivery: &str) {
        self.delivered.inc(&[delivery])
    }

    pub fn retried(&self, delivery: &str) {
        self.retried.inc(&[delivery])
    }

    pub fn dead_lettered(&self, delivery: &str) {
        self.dead_lettered.inc(&[delivery])
    }

    /// A scheduled call is made.
    pub fn schedule_called(&self, schedule: &str) {
        self.schedule_calls.inc(&[schedule])
    }

    /// A scheduled run ended.
    pub fn schedule_ran(&self, schedule: &str, outcome: RunOutcome) {
        self.schedule_runs.inc(&[schedule, outcome.as_str()])
    }

    /// Current values, for tests: (ok runs, failed runs, calls) of a schedule.
    pub fn schedule_counts(&self, schedule: &str) -> (u64, u64, u64) {
        (
            self.schedule_runs.get(&[schedule, RunOutcome::Ok.as_str()]),
            self.schedule_runs
                .get(&[schedule, RunOutcome::Failed.as_str()]),
            self.schedule_calls.get(&[schedule]),
        )
    }

    /// A tenant's purge removed `n` messages from `stream`.
    pub fn purged(&self, stream: &str, n: u64) {
        self.purged.add(&[stream], n)
    }

    /// Current value, for tests: messages purged from a stream.
    pub fn purged_count(&self, stream: &str) -> u64 {
        self.purged.get(&[stream])
    }

    pub fn publish_error(&self) {
        self.publish_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Current values, for tests: (published, duplicates) of a stream.
    pub fn published_count(&self, stream: &str) -> (u64, u64) {
        (
            self.published.get(&[stream]),
            self.duplicates.get(&[stream]),
        )
    }

    /// Current values, for tests: (delivered, retried, dead-lettered) of a delivery.
    pub fn delivery_counts(&self, delivery: &str) -> (u64, u64, u64) {
        (
            self.delivered.get(&[delivery]),
            self.retried.get(&[delivery]),
            self.dead_lettered.get(&[delivery]),
        )
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, nats_connected: bool) -> String {
        let mut out = String::with_capacity(2048);
        for family in [
            &self.published,
            &self.duplicates,
            &self.delivered,
            &self.retried,
            &self.dead_lettered,
            &self.waiting,
            &self.tenants_active,
            &self.rate_held,
            &self.rate_delayed,
            &self.schedule_runs,
            &self.schedule_calls,
            &self.purged,
        ] {
            family.render(&mut out);
        }
        let _ = writeln!(
            out,
            "# HELP greentic_bridge_publish_errors_total Publishes answered 503 (NATS unavailable or no ack in time).\n\
             # TYPE greentic_bridge_publish_errors_total counter\n\
             greentic_bridge_publish_errors_total {}",
            self.publish_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP greentic_bridge_nats_connected 1 while the NATS connection is up.\n\
             # TYPE greentic_bridge_nats_connected gauge\n\
             greentic_bridge_nats_connected {}",
            u8::from(nats_connected)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_present_from_the_start() {
        let m = Metrics::new(&["GREENTIC_INGRESS"], &["ingress"], &["retention"]);
        let text = m.render(true);
        for line in [
            "greentic_bridge_published_total{stream=\"GREENTIC_INGRESS\"} 0",
            "greentic_bridge_publish_duplicates_total{stream=\"GREENTIC_INGRESS\"} 0",
            "greentic_bridge_delivered_total{delivery=\"ingress\"} 0",
            "greentic_bridge_retried_total{delivery=\"ingress\"} 0",
            "greentic_bridge_dead_lettered_total{delivery=\"ingress\"} 0",
            "greentic_bridge_waiting{delivery=\"ingress\"} 0",
            "greentic_bridge_tenants_active{delivery=\"ingress\"} 0",
            "greentic_bridge_rate_held{delivery=\"ingress\"} 0",
            "greentic_bridge_rate_delayed_total{delivery=\"ingress\"} 0",
            "greentic_bridge_schedule_runs_total{schedule=\"retention\",outcome=\"ok\"} 0",
            "greentic_bridge_schedule_runs_total{schedule=\"retention\",outcome=\"failed\"} 0",
            "greentic_bridge_schedule_calls_total{schedule=\"retention\"} 0",
            "greentic_bridge_purged_total{stream=\"GREENTIC_INGRESS\"} 0",
            "greentic_bridge_publish_errors_total 0",
            "greentic_bridge_nats_connected 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn counters_count() {
        let m = Metrics::new(&["S"], &["d"], &["s"]);
        m.published("S", false);
        m.published("S", true);
        m.published("S", false);
        m.delivered("d");
        m.retried("d");
        m.dead_lettered("d");
        m.holding("d", 7, 3, 2);
        m.rate_delayed("d");
        m.publish_error();
        m.purged("S", 3);
        m.purged("S", 0);
        m.purged("S", 2);
        assert_eq!(m.purged_count("S"), 5);
        m.schedule_called("s");
        m.schedule_called("s");
        m.schedule_ran("s", RunOutcome::Ok);
        m.schedule_called("s");
        m.schedule_ran("s", RunOutcome::Failed);
        m.schedule_called("s");
        m.schedule_ran("s", RunOutcome::Failed);
        assert_eq!(m.schedule_counts("s"), (1, 2, 4));
        assert_eq!(m.published_count("S"), (2, 1));
        assert_eq!(m.delivery_counts("d"), (1, 1, 1));
        let text = m.render(false);
        assert!(text.contains("greentic_bridge_published_total{stream=\"S\"} 2\n"));
        assert!(text.contains("greentic_bridge_publish_errors_total 1\n"));
        assert!(text.contains("greentic_bridge_purged_total{stream=\"S\"} 5\n"));
        assert!(text.contains("greentic_bridge_nats_connected 0\n"));
        assert!(text.contains("# TYPE greentic_bridge_waiting gauge\n"));
        assert!(text.contains("greentic_bridge_waiting{delivery=\"d\"} 7\n"));
        assert!(text.contains("greentic_bridge_tenants_active{delivery=\"d\"} 2\n"));
        assert!(text.contains("greentic_bridge_rate_held{delivery=\"d\"} 3\n"));
        assert!(text.contains("greentic_bridge_rate_delayed_total{delivery=\"d\"} 1\n"));
        assert_eq!(m.rate_counts("d"), (3, 1));
        assert!(text.contains("# TYPE greentic_bridge_schedule_runs_total counter\n"));
        assert!(text.contains(
            "greentic_bridge_schedule_runs_total{schedule=\"s\",outcome=\"failed\"} 2\n"
        ));
        assert!(text.contains("greentic_bridge_schedule_calls_total{schedule=\"s\"} 4\n"));
    }
}
