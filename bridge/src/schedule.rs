//! Scheduled calls: the timer Spin components do not have.
//!
//! Why here: a Spin component runs only when a request arrives, so periodic
//! work (the retention sweep) needs something long-running to call it. The
//! bridge runs as long as the platform and already holds the delivery token
//! the components accept from it, so each `[[schedule]]` is a task here that
//! POSTs an empty body to its endpoint with `Authorization: Bearer <delivery
//! token>`, through the same kind of client as the deliveries.
//!
//! A run is one or more calls: the endpoint answers 200 with
//! `{"examined": n, "deleted": m, "more": bool}` and, while `more` is true,
//! is called again at once, at most `max_calls_per_run` times; so a backlog
//! drains in one run, and no run is unbounded. Any other answer (not 200, no
//! boolean `more`), a timeout or a connection error ends the run as failed;
//! the next run comes at the next tick, there is no retry in between.
//!
//! Runs of one schedule never overlap (one task), and never bunch up after a
//! long one: a run longer than `every` skips the ticks it overran. The first
//! run comes shortly after start ([`FIRST_RUN_DELAY`], or `every` if shorter).
//! On shutdown the task stops at once, abandoning a call in flight: the
//! endpoints are idempotent, so the next run (here or after a restart) simply
//! does what it did not.
//!
//! Only replica 0 runs schedules ([`crate::start`]): see bridge/README,
//! Schedules, for the trade-off.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{ScheduleConfig, Token};
use crate::deliver::{self, Failure};
use crate::metrics::{Metrics, RunOutcome};

/// Delay of the first run after start (unless `every` is shorter): the
/// components usually start with the bridge and need a moment.
pub const FIRST_RUN_DELAY: Duration = Duration::from_secs(10);
/// Largest answer read; the contract's answer is a few dozen bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// One `[[schedule]]` at run time.
pub struct Schedule {
    cfg: ScheduleConfig,
    http: reqwest::Client,
    token: Token,
    metrics: Arc<Metrics>,
}

/// What a call answers (other fields are ignored).
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    examined: u64,
    #[serde(default)]
    deleted: u64,
    more: bool,
}

impl Schedule {
    pub fn new(
        cfg: ScheduleConfig,
        token: Token,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = deliver::endpoint_client(cfg.timeout)?;
        Ok(Schedule {
            cfg,
            http,
            token,
            metrics,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Runs every `every` until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let first = Instant::now() + self.cfg.every.min(FIRST_RUN_DELAY);
        let mut ticks = tokio::time::interval_at(first, self.cfg.every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tracing::info!(
            schedule = self.cfg.name,
            endpoint = %self.cfg.endpoint,
            every = %humantime::format_duration(self.cfg.every),
            max_calls_per_run = self.cfg.max_calls_per_run,
            "schedule started"
        );
        loop {
            tokio::select! {
                biased;
                // (The watch guard must not be held across awaits: dropped here.)
                () = shutdown.wait_for(|s| *s).map(drop) => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                biased;
                () = shutdown.wait_for(|s| *s).map(drop) => {
                    tracing::info!(schedule = self.cfg.name, "shutdown: scheduled run abandoned");
                    return;
                }
                () = self.run_once() => {}
            }
        }
    }

    /// One run: calls while the answer says `more`, up to `max_calls_per_run`.
    async fn run_once(&self) {
        let name = self.cfg.name.as_str();
        let (mut examined, mut deleted) = (0u64, 0u64);
        for call in 1..=self.cfg.max_calls_per_run {
            self.metrics.schedule_called(name);
            let answer = match self.call().await {
                Ok(answer) => answer,
                Err(failure) => {
                    self.metrics.schedule_ran(name, RunOutcome::Failed);
                    tracing::warn!(
                        schedule = name,
                        call,
                        status = failure.status,
                        reason = failure.reason,
                        examined,
                        deleted,
                        "scheduled call failed; the run ends until the next tick"
                    );
                    return;
                }
            };
            examined = examined.saturating_add(answer.examined);
            deleted = deleted.saturating_add(answer.deleted);
            tracing::debug!(
                schedule = name,
                call,
                examined = answer.examined,
                deleted = answer.deleted,
                more = answer.more,
                "scheduled call answered"
            );
            if !answer.more || call == self.cfg.max_calls_per_run {
                self.metrics.schedule_ran(name, RunOutcome::Ok);
                tracing::info!(
                    schedule = name,
                    calls = call,
                    examined,
                    deleted,
                    more = answer.more,
                    "scheduled run done"
                );
                return;
            }
        }
    }

    /// One POST and its answer; never carries the body or the token into a
    /// [`Failure`].
    async fn call(&self) -> Result<Answer, Failure> {
        let sent = self
            .http
            .post(self.cfg.endpoint.clone())
            .bearer_auth(self.token.as_str())
            .body("")
            .send()
            .await;
        let mut response = sent.map_err(|e| self.transport_failure(&e))?;
        let status = response.status();
        if status != StatusCode::OK {
            let reason = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                "the endpoint refuses the bridge's delivery token".to_string()
            } else {
                deliver::status_line(status)
            };
            return Err(Failure {
                status: status.as_u16().to_string(),
                reason,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_failure(&e))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER {
                return Err(Failure {
                    status: "200".into(),
                    reason: format!("answer longer than {MAX_ANSWER} bytes"),
                });
            }
        }
        // The parser's message may quote the body: not logged.
        serde_json::from_slice(&body).map_err(|_| Failure {
            status: "200".into(),
            reason: "the answer is not a JSON object with a boolean `more`".into(),
        })
    }

    fn transport_failure(&self, e: &reqwest::Error) -> Failure {
        if e.is_timeout() {
            Failure {
                status: "timeout".into(),
                reason: format!(
                    "no answer within {}",
                    humantime::format_duration(self.cfg.timeout)
                ),
            }
        } else {
            Failure {
                status: "connect".into(),
                reason: deliver::transport_reason(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_needs_a_boolean_more_and_nothing_else() {
        let a: Answer = serde_json::from_str(r#"{"examined":7,"deleted":2,"more":true}"#).unwrap();
        assert_eq!((a.examined, a.deleted, a.more), (7, 2, true));
        let a: Answer = serde_json::from_str(r#"{"more":false,"note":"x"}"#).unwrap();
        assert_eq!((a.examined, a.deleted, a.more), (0, 0, false));
        for bad in [
            r#"{"examined":1,"deleted":1}"#,
            r#"{"more":"yes"}"#,
            r#"[]"#,
            "",
        ] {
            assert!(serde_json::from_str::<Answer>(bad).is_err(), "{bad}");
        }
    }
}
