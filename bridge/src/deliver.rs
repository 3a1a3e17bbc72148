//! Push deliveries: messages from a durable JetStream consumer, POSTed to an HTTP endpoint.
//!
//! Why pull consumers: Spin components cannot hold a NATS subscription, so the
//! bridge pulls on their behalf. A durable pull consumer with explicit acks is
//! shared safely by every bridge replica (each message goes to one of them) and
//! survives restarts: a message is acked only after its endpoint said 2xx, or
//! after it was stored in the dead-letter stream, so nothing is lost in between.
//!
//! Outcome of one attempt (`X-Greentic-Attempt` = JetStream's delivery count):
//! - 2xx: ack.
//! - 4xx: the receiver refuses this message for good (bad envelope, unknown
//!   scope): dead-letter at once, then ack. Except 408 and 429, which say
//!   "later", not "never", and are retried like a 5xx; and 401/403, which
//!   refuse the bridge's token, not the message: held (nak with backoff) for
//!   as long as that lasts, whatever `max_attempts`, never dead-lettered.
//! - 5xx, timeout, connection error: nak with the next backoff delay; at
//!   `max_attempts` dead-letter with the last reason, then ack.
//!
//! A dead letter goes to `greentic.dlq.<subject without "greentic.">` with the
//! original payload and `Nats-Msg-Id: dlq:<id>`, so dead-lettering twice (e.g.
//! after a crash between the dead-letter ack and the consumer ack) stores it once.
//! A message no longer in its stream (its tenant was purged while the bridge
//! held it, [`crate::purge`]) is acked, not dead-lettered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use futures::{FutureExt, StreamExt};
use reqwest::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::RawMessageErrorKind;

use crate::config::{DeliveryConfig, Replica, Token};
use crate::lanes::{Group, LaneKey, Lanes};
use crate::metrics::Metrics;
use crate::nats::Nats;
use crate::rate::{self, Rates};
use crate::streams;
use crate::subject::{self, SubjectScope};

/// Longest reason kept in a dead letter's `Greentic-Dlq-Reason`.
pub const MAX_REASON_CHARS: usize = 500;
/// Most of an error response read to find its problem `detail`/`title`.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Delay of the nak that hands unstarted messages back on shutdown.
const HAND_BACK_DELAY: Duration = Duration::from_millis(500);
/// Messages a puller fetches ahead, per delivery slot: enough that tenants
/// sharing a partition take turns while one's burst is delivered, few enough
/// that a message rarely waits long (and is kept alive if it does).
pub const WINDOW_PER_SLOT: usize = 2;
/// Messages held back by their tenant's rate that a puller may keep besides
/// its window, in multiples of the window. A held message gives its window
/// place back, so a throttled tenant's backlog does not stop the partition
/// (other tenants' messages behind it are still pulled and started); this
/// bounds what the bridge keeps in memory for it: per partition at most
/// (1 + HELD_PER_WINDOW) x the window of fetched messages.
pub const HELD_PER_WINDOW: usize = 4;
/// How long a pull request waits on the server for messages: how long a
/// stopping puller usually waits for its last request to end (see
/// [`Delivery::pull`]), and how often an idle consumer asks again.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// Pause before rebuilding a consumer after it failed.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One `[[delivery]]` entry at run time.
pub struct Delivery {
    cfg: DeliveryConfig,
    http: reqwest::Client,
    token: Token,
    /// Strings that never go into a dead-letter reason (both bearer tokens).
    redact: Vec<Token>,
    nats: Arc<Nats>,
    metrics: Arc<Metrics>,
    /// Which partitions of the messaging streams this replica delivers.
    replica: Replica,
    partitions: u16,
}

/// Why an attempt failed: `status` is the HTTP status or `timeout`/`connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: String,
    pub reason: String,
}

#[derive(Debug)]
enum Outcome {
    Delivered(StatusCode),
    /// Never worth retrying: dead-letter now.
    Rejected(Failure),
    /// Worth retrying until `max_attempts`.
    Failed(Failure),
    /// The endpoint refused the bridge itself (401/403: a delivery token that
    /// differs from the components', as mid-rotation), not the message: retried
    /// for as long as that lasts, never dead-lettered.
    Refused(Failure),
}

/// A fetched message the bridge holds until it is acked, dead-lettered or
/// handed back.
struct Pending {
    message: jetstream::Message,
    subject: String,
    msg_id: String,
    /// `Greentic-Session` as published, if any.
    session: Option<String>,
    seq: u64,
    /// Of the next attempt: JetStream's delivery count when fetched, plus one
    /// for each retry here.
    attempt: u32,
    group: Group,
    key: LaneKey,
    /// Its `Greentic-Rate` until it has started (took its group's token):
    /// a retry takes none.
    rate: Option<u32>,
    /// When its group's rate first held it back, until it starts.
    held_since: Option<std::time::Instant>,
    /// How long the rate held it back, once started: `X-Greentic-Delayed-Ms`.
    delayed: Option<Duration>,
    /// When JetStream last heard that this message is being worked on.
    alive_since: Instant,
    /// Its place in its puller's window, given back when it is dropped or
    /// held back by its rate (see [`HELD_PER_WINDOW`]).
    window: Option<OwnedSemaphorePermit>,
    /// Its place among all its puller may hold, window and held together.
    _room: OwnedSemaphorePermit,
}

impl Pending {
    /// Its group is out of tokens at `now`: a rated message not started yet
    /// is held back from now on (if not already), and its window place goes
    /// back to the puller. True when it was not held before.
    fn hold(&mut self, now: std::time::Instant) -> bool {
        if self.rate.is_none() || self.held_since.is_some() {
            return false;
        }
        self.held_since = Some(now);
        self.window = None;
        true
    }

    /// It starts at `now`: the token is taken, the hold (if any) is over.
    /// True when it had been held.
    fn start(&mut self, now: std::time::Instant) -> bool {
        self.rate = None;
        match self.held_since.take() {
            Some(since) => {
                self.delayed = Some(now.saturating_duration_since(since));
                true
            }
            None => false,
        }
    }
}

/// A durable consumer a delivery pulls from.
struct Source {
    consumer: String,
    filter: String,
    /// The consumer of a bridge from before partitions: drained, never created.
    legacy: bool,
}

/// Places in a puller's window and room reserved for one pull request: the
/// request asks for as many messages as there are places, so every message
/// the server sends has one.
struct Places {
    window: OwnedSemaphorePermit,
    room: OwnedSemaphorePermit,
}

impl Places {
    /// At least one place (waiting for it), then every other free one, up to `most`.
    async fn reserve(window: &Arc<Semaphore>, room: &Arc<Semaphore>, most: usize) -> Places {
        let mut places = Places {
            window: window
                .clone()
                .acquire_owned()
                .await
                .expect("the window is never closed"),
            room: room
                .clone()
                .acquire_owned()
                .await
                .expect("the room is never closed"),
        };
        let more = window
            .available_permits()
            .min(room.available_permits())
            .min(most.saturating_sub(1));
        // Only this puller takes from its semaphores, so what is free stays free.
        if let (Ok(w), Ok(r)) = (
            window.clone().try_acquire_many_owned(more as u32),
            room.clone().try_acquire_many_owned(more as u32),
        ) {
            places.window.merge(w);
            places.room.merge(r);
        }
        places
    }

    fn len(&self) -> usize {
        self.window.num_permits()
    }

    /// The place of one message that arrived.
    fn take(&mut self) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
        let window = self
            .window
            .split(1)
            .expect("the server sends no more than asked");
        let room = self
            .room
            .split(1)
            .expect("window and room are reserved together");
        (window, room)
    }
}

impl Delivery {
    pub fn new(
        cfg: DeliveryConfig,
        token: Token,
        redact: Vec<Token>,
        nats: Arc<Nats>,
        metrics: Arc<Metrics>,
        (replica, partitions): (Replica, u16),
    ) -> Result<Self, reqwest::Error> {
        let http = endpoint_client(cfg.timeout)?;
        Ok(Delivery {
            cfg,
            http,
            token,
            redact,
            nats,
            metrics,
            replica,
            partitions,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Pulls and delivers until `shutdown`, then stops pulling, hands back what
    /// was fetched but not started (and what waits for a retry), and waits up
    /// to `grace` for what is in flight.
    ///
    /// One puller per consumer (per partition this replica serves) fetches
    /// up to [`WINDOW_PER_SLOT`] x `concurrency` messages ahead of what it
    /// has finished, and
    /// [`Lanes`] picks which fetched message starts next: one message per
    /// session at a time, in stream order, tenants in turn, and a tenant
    /// whose messages carry a rate no faster than it ([`Rates`]): one out of
    /// tokens is passed over until its next token, its messages held back
    /// (kept alive like every waiting message, never nakked). A failed attempt
    /// is retried here, after its backoff, rather than nakked: a nak would let
    /// the session's next message overtake it.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let concurrency = self.cfg.concurrency;
        let mut lanes: Lanes<Pending> = Lanes::new(self.cfg.tenant_concurrency);
        let mut retries: BTreeMap<(Instant, u64), Pending> = BTreeMap::new();
        // Each attempt's outcome, and which lane it holds (kept here, so a
        // panicked attempt still frees its lane).
        let mut in_flight: JoinSet<Option<(Pending, Duration)>> = JoinSet::new();
        let mut started: HashMap<tokio::task::Id, LaneKey> = HashMap::new();
        let mut rates = Rates::default();
        // Queued messages held back by their group's rate.
        let mut rate_held = 0usize;
        // Waiting messages are kept alive well before JetStream's ack_wait runs out.
        let mut keep_alive = tokio::time::interval(self.cfg.ack_wait / 3);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ready = self.nats.streams_ready();
        tokio::select! {
            _ = ready.wait_for(|r| *r) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }

        // Unbounded, because each puller's window and room bound what it
        // holds; a puller that had to wait here could let its pull request
        // time out in async-nats with messages unread (they would then wait
        // for `ack_wait`).
        let (fetched, mut incoming) = mpsc::unbounded_channel::<Pending>();
        let mut pullers = JoinSet::new();
        for source in self.sources() {
            pullers.spawn(self.clone().pull(source, fetched.clone(), shutdown.clone()));
        }
        drop(fetched);

        loop {
            // Groups refused a start for want of a token: closed until their
            // next one, their queued messages held back (below).
            let mut out_of_tokens: Vec<Group> = Vec::new();
            while in_flight.len() < concurrency {
                let now = std::time::Instant::now();
                let next = lanes.start_next_with(now, |group, pending| match pending.rate {
                    None => Ok(()),
                    Some(rate) => rates
                        .take(group, rate, now)
                        .inspect_err(|_| out_of_tokens.push(group.clone())),
                });
                let Some((key, mut pending)) = next else {
                    break;
                };
                if pending.start(now) {
                    rate_held -= 1;
                }
                let this = self.clone();
                let task = in_flight.spawn(async move { this.attempt(pending).await });
                started.insert(task.id(), key);
            }
            let now = std::time::Instant::now();
            for group in out_of_tokens {
                for pending in lanes.group_mut(&group) {
                    if pending.hold(now) {
                        rate_held += 1;
                    }
                }
            }
            self.metrics.holding(
                &self.cfg.name,
                lanes.queued() + retries.len(),
                rate_held,
                lanes.active(now),
            );
            let next_retry = retries.keys().next().map(|(due, _)| *due);
            // A group out of tokens can start again (only worth waking for
            // with a slot free: a finished attempt wakes the loop anyway).
            let reopens = if in_flight.len() < concurrency {
                lanes.reopens_at(now).map(Instant::from_std)
            } else {
                None
            };
            tokio::select! {
                biased;
                // (The watch guard must not be held across awaits: dropped here.)
                () = shutdown.wait_for(|s| *s).map(drop) => break,
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let id = match &done {
                        Ok((id, _)) => *id,
                        Err(e) => e.id(),
                    };
                    let key = started.remove(&id).expect("every attempt is recorded");
                    match done {
                        Ok((_, None)) => lanes.finish(&key),
                        Ok((_, Some((pending, delay)))) => {
                            lanes.pause(&key);
                            retries.insert((Instant::now() + delay, pending.seq), pending);
                        }
                        // A panicked attempt: its message comes back after
                        // ack_wait; its session must not stay blocked meanwhile.
                        Err(e) => {
                            tracing::error!(delivery = self.cfg.name, error = %e, "delivery task failed");
                            lanes.finish(&key);
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() => {
                    let now = Instant::now();
                    while let Some(entry) = retries.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let pending = entry.remove();
                        lanes.resume(&pending.key.clone(), &pending.group.clone(), pending);
                    }
                }
                _ = tokio::time::sleep_until(reopens.unwrap_or_else(Instant::now)), if reopens.is_some() => {}
                _ = keep_alive.tick() => {
                    self.keep_alive(lanes.iter_mut().chain(retries.values_mut())).await;
                }
                Some(mut pending) = incoming.recv() => {
                    let now = std::time::Instant::now();
                    // The tenant's configuration as of its latest message;
                    // a new rate is tried at once, not after the old one's wait.
                    if let Some(rate) = pending.rate
                        && rates.observe(&pending.group, rate, now)
                    {
                        lanes.open(&pending.group);
                    }
                    if lanes.is_closed(&pending.group, now) && pending.hold(now) {
                        rate_held += 1;
                    }
                    lanes.push(&pending.group.clone(), &pending.key.clone(), pending, now);
                }
            }
        }

        // Not started, waiting for a retry, or fetched meanwhile: kept until
        // what is in flight is done, then handed back to JetStream with what
        // failed meanwhile, all in stream order, so they come back in that
        // order. The pullers' last requests and the deliveries in flight end
        // together, within `grace` of the stop.
        let deadline = Instant::now() + grace;
        let mut unstarted: Vec<Pending> = lanes.drain();
        unstarted.extend(std::mem::take(&mut retries).into_values());
        let collected = tokio::time::timeout_at(deadline, async {
            while let Some(pending) = incoming.recv().await {
                unstarted.push(pending);
            }
        })
        .await;
        if collected.is_err() {
            tracing::warn!(
                delivery = self.cfg.name,
                "shutdown timeout: abandoning pull requests (JetStream redelivers what they bring)"
            );
            pullers.abort_all();
            while let Ok(pending) = incoming.try_recv() {
                unstarted.push(pending);
            }
        }
        while pullers.join_next().await.is_some() {}

        let pending = in_flight.len();
        if pending > 0 {
            tracing::info!(
                delivery = self.cfg.name,
                in_flight = pending,
                "finishing deliveries in flight"
            );
        }
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(done) = in_flight.join_next().await {
                if let Ok(Some((pending, _))) = done {
                    unstarted.push(pending);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                delivery = self.cfg.name,
                in_flight = in_flight.len(),
                "shutdown timeout: abandoning deliveries in flight (JetStream redelivers them)"
            );
            in_flight.abort_all();
        }

        unstarted.sort_by_key(|p| p.seq);
        let returned = unstarted.len();
        for pending in unstarted {
            let _ = pending
                .message
                .ack_with(AckKind::Nak(Some(HAND_BACK_DELAY)))
                .await;
        }
        if returned > 0 {
            tracing::info!(
                delivery = self.cfg.name,
                returned,
                "handed back queued messages"
            );
        }
    }

    /// The consumers this replica pulls from. On the messaging streams: one
    /// per partition it serves, plus, on replica 0, the consumer of a bridge
    /// from before partitions if one is left (its messages have no partition).
    fn sources(&self) -> Vec<Source> {
        let filter = self.cfg.filter_subject.as_str();
        if !streams::is_partitioned(&self.cfg.stream) {
            return vec![Source {
                consumer: self.cfg.name.clone(),
                filter: filter.to_string(),
                legacy: false,
            }];
        }
        let mut sources: Vec<Source> = self
            .replica
            .partitions(self.partitions)
            .into_iter()
            .map(|p| Source {
                consumer: format!("{}-p{p}", self.cfg.name),
                filter: streams::partition_filter(filter, Some(p)),
                legacy: false,
            })
            .collect();
        if self.replica.index == 0 {
            sources.push(Source {
                consumer: self.cfg.name.clone(),
                filter: streams::partition_filter(filter, None),
                legacy: true,
            });
        }
        sources
    }

    /// Fetches from one consumer into `fetched`, at most its window ahead of
    /// the messages finished, until shutdown; reopens the consumer after
    /// errors.
    ///
    /// Each pull request asks for no more messages than the window has room
    /// for and expires after [`PULL_EXPIRES`]. On shutdown the puller asks no
    /// more, but reads its last request to its end (the batch filled, or the
    /// server's expiry answer; async-nats gives up 5 s after the expiry if
    /// that answer is lost): what arrives until then goes to `fetched` like
    /// any message, and [`Delivery::run`] hands it back. Dropping a request
    /// before its end would lose what the server was sending at that moment:
    /// that message would stay assigned to this consumer, unseen, until
    /// `ack_wait` ran out.
    async fn pull(
        self: Arc<Self>,
        source: Source,
        fetched: mpsc::UnboundedSender<Pending>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let window_size = self.cfg.concurrency * WINDOW_PER_SLOT;
        let window = Arc::new(Semaphore::new(window_size));
        let room = Arc::new(Semaphore::new(window_size * (1 + HELD_PER_WINDOW)));
        'consumer: loop {
            let consumer = match self.open(&source).await {
                Ok(Some(consumer)) => consumer,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(delivery = self.cfg.name, consumer = source.consumer, error = %e, "cannot open consumer yet");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_PAUSE) => continue 'consumer,
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            };
            tracing::info!(
                delivery = self.cfg.name,
                stream = self.cfg.stream,
                consumer = source.consumer,
                filter = source.filter,
                endpoint = %self.cfg.endpoint,
                "delivering"
            );
            loop {
                let mut places = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|s| *s) => return,
                    places = Places::reserve(&window, &room, self.cfg.concurrency) => places,
                };
                let request = consumer
                    .batch()
                    .max_messages(places.len())
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await;
                let mut batch = match request {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(delivery = self.cfg.name, consumer = source.consumer, error = %e, "pull request failed");
                        break;
                    }
                };
                let mut failed = false;
                while let Some(next) = batch.next().await {
                    match next {
                        Ok(message) => {
                            if let Some(pending) = self.pending(message, places.take()).await
                                && let Err(unsent) = fetched.send(pending)
                            {
                                // The scheduler gave up on the pullers (its
                                // shutdown timeout): hand it back.
                                let _ = unsent
                                    .0
                                    .message
                                    .ack_with(AckKind::Nak(Some(HAND_BACK_DELAY)))
                                    .await;
                            }
                        }
                        // The server ended the request with an error status
                        // (the consumer or its stream gone, a leader change,
                        // ...): the batch ends; the streams are ensured again
                        // (idempotent) and the consumer reopened.
                        Err(e) => {
                            tracing::warn!(delivery = self.cfg.name, consumer = source.consumer, error = %e, "pull request ended with an error");
                            failed = true;
                        }
                    }
                }
                if failed {
                    self.nats.ensure_streams_again();
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// A fetched message with what the delivery needs to know of it, or
    /// `None` (terminated) for one without JetStream metadata.
    async fn pending(
        &self,
        message: jetstream::Message,
        (window, room): (OwnedSemaphorePermit, OwnedSemaphorePermit),
    ) -> Option<Pending> {
        let (attempt, seq) = match message.info() {
            Ok(info) => (
                u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
                info.stream_sequence,
            ),
            Err(e) => {
                tracing::error!(delivery = self.cfg.name, error = %e, "message without JetStream info");
                let _ = message.ack_with(AckKind::Term).await;
                return None;
            }
        };
        let subject = streams::published_subject(&message.subject).to_string();
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        // Any printable id (a dead letter's is `dlq:` + the original's).
        let msg_id = header(async_nats::header::NATS_MESSAGE_ID.as_ref())
            .filter(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_graphic()))
            .unwrap_or_else(|| format!("{}:{seq}", self.cfg.stream));
        let session = header(crate::publish::SESSION_HEADER).filter(|s| subject::is_msg_id(s));
        // The publish API stores only valid rates; any other value (a message
        // stored by someone else) limits nothing.
        let rate = header(crate::publish::RATE_HEADER).and_then(|r| rate::parse_rate(&r));
        let group = match SubjectScope::parse(&subject) {
            Some(scope) => format!("{}.{}", scope.env, scope.tenant),
            None => subject.clone(),
        };
        // A session is ordered within its subject (the session id is derived
        // from the whole scope anyway); a message without one stands alone.
        let key = match &session {
            Some(session) => format!("{subject} {session}"),
            None => format!("{subject} #{seq}"),
        };
        Some(Pending {
            message,
            subject,
            msg_id,
            session,
            seq,
            attempt,
            group,
            key,
            rate,
            held_since: None,
            delayed: None,
            alive_since: Instant::now(),
            window: Some(window),
            _room: room,
        })
    }

    /// Tells JetStream that messages held here longer than a third of
    /// `ack_wait` are still being worked on, so it does not redeliver them
    /// (to this or another replica) behind their session's back.
    async fn keep_alive(&self, held: impl Iterator<Item = &mut Pending>) {
        let due = Instant::now() - self.cfg.ack_wait / 3;
        for pending in held {
            if pending.alive_since <= due {
                let _ = pending.message.ack_with(AckKind::Progress).await;
                pending.alive_since = Instant::now();
            }
        }
    }

    /// Creates or updates the durable consumer. `None` for a legacy consumer
    /// that does not exist (nothing to drain) or has nothing left.
    async fn open(
        &self,
        source: &Source,
    ) -> Result<Option<consumer::PullConsumer>, async_nats::Error> {
        if source.legacy {
            let stream = self.nats.js().get_stream(self.cfg.stream.as_str()).await?;
            match stream.consumer_info(&source.consumer).await {
                Ok(info) if info.num_pending + info.num_ack_pending as u64 > 0 => {
                    tracing::info!(
                        delivery = self.cfg.name,
                        consumer = source.consumer,
                        pending = info.num_pending + info.num_ack_pending as u64,
                        "draining messages stored before partitions"
                    );
                }
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let config = consumer::pull::Config {
            durable_name: Some(source.consumer.clone()),
            description: Some(format!("greentic-bridge delivery to {}", self.cfg.endpoint)),
            filter_subject: source.filter.clone(),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.cfg.ack_wait,
            // The bridge counts attempts itself and dead-letters; the server
            // must never drop a message silently after N deliveries.
            max_deliver: -1,
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = self
            .nats
            .js()
            .create_consumer_on_stream(config, self.cfg.stream.as_str())
            .await?;
        Ok(Some(consumer))
    }

    /// One attempt at one message, and what follows from its outcome: done
    /// with (acked or dead-lettered: `None`), or to be retried after a delay.
    async fn attempt(&self, mut pending: Pending) -> Option<(Pending, Duration)> {
        let Pending {
            subject,
            msg_id,
            seq,
            attempt,
            ..
        } = &pending;
        let (attempt, seq) = (*attempt, *seq);
        let scope = SubjectScope::parse(subject);
        let span = tracing::info_span!(
            "delivery",
            delivery = self.cfg.name,
            subject,
            msg_id,
            tenant = scope.map(|s| s.tenant),
            env = scope.map(|s| s.env),
            team = scope.map(|s| s.team),
            channel = scope.map(|s| s.channel),
            seq,
            attempt,
        );

        let outcome = self.post(&pending).await;
        let retry = |pending: &mut Pending| {
            let delay = self.cfg.backoff_after(attempt);
            self.metrics.retried(&self.cfg.name);
            pending.attempt = attempt.saturating_add(1);
            delay
        };
        match outcome {
            Outcome::Delivered(status) => {
                // Counted before the ack: whoever sees the ack (a test, an
                // operator) then sees the count too.
                self.metrics.delivered(&self.cfg.name);
                if pending.delayed.is_some() {
                    self.metrics.rate_delayed(&self.cfg.name);
                }
                if let Err(e) = pending.message.double_ack().await {
                    // The endpoint has it; JetStream will offer it again after
                    // ack_wait and the receiver's dedupe (by msg id) absorbs it.
                    tracing::warn!(parent: &span, error = %e, "delivered but ack failed");
                }
                tracing::debug!(parent: &span, status = status.as_u16(), "delivered");
                None
            }
            Outcome::Rejected(failure) => self.dead_letter(pending, failure, &span).await,
            Outcome::Failed(failure) if attempt >= self.cfg.max_attempts => {
                self.dead_letter(pending, failure, &span).await
            }
            Outcome::Refused(failure) => {
                let delay = retry(&mut pending);
                tracing::error!(
                    parent: &span,
                    status = failure.status,
                    retry_in_ms = delay.as_millis() as u64,
                    "the endpoint refuses the bridge's delivery token; held until it accepts it"
                );
                Some((pending, delay))
            }
            Outcome::Failed(failure) => {
                let delay = retry(&mut pending);
                tracing::warn!(
                    parent: &span,
                    status = failure.status,
                    reason = failure.reason,
                    retry_in_ms = delay.as_millis() as u64,
                    "delivery failed; will retry"
                );
                Some((pending, delay))
            }
        }
    }

    /// POSTs the payload with the delivery headers and classifies the answer.
    async fn post(&self, pending: &Pending) -> Outcome {
        let mut request = self
            .http
            .post(self.cfg.endpoint.clone())
            .bearer_auth(self.token.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Greentic-Subject", &pending.subject)
            .header("X-Greentic-Msg-Id", &pending.msg_id)
            .header("X-Greentic-Attempt", pending.attempt)
            .header("X-Greentic-Stream-Seq", pending.seq);
        if let Some(session) = &pending.session {
            request = request.header("X-Greentic-Session", session);
        }
        if let Some(delayed) = pending.delayed {
            // Rounded up: a message the rate held at all says so with at least 1.
            let ms = delayed.as_micros().div_ceil(1000);
            request = request.header("X-Greentic-Delayed-Ms", ms.to_string());
        }
        let request = request.body(pending.message.payload.clone());
        match request.send().await {
            Ok(response) if response.status().is_success() => Outcome::Delivered(response.status()),
            Ok(response) => {
                let status = response.status();
                let reason = self.reason_from(response).await;
                let failure = Failure {
                    status: status.as_u16().to_string(),
                    reason,
                };
                if refuses_bridge(status) {
                    Outcome::Refused(failure)
                } else if permanent(status) {
                    Outcome::Rejected(failure)
                } else {
                    Outcome::Failed(failure)
                }
            }
            Err(e) if e.is_timeout() => Outcome::Failed(Failure {
                status: "timeout".into(),
                reason: format!(
                    "no answer within {}",
                    humantime::format_duration(self.cfg.timeout)
                ),
            }),
            Err(e) => Outcome::Failed(Failure {
                status: "connect".into(),
                reason: self.clean(&transport_reason(&e)),
            }),
        }
    }

    /// The problem `detail` (or `title`) of an error answer, else its status line.
    async fn reason_from(&self, mut response: reqwest::Response) -> String {
        let status = response.status();
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let from_problem = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                ["detail", "title"].iter().find_map(|k| {
                    v.get(k)
                        .and_then(|s| s.as_str())
                        .filter(|s| !s.trim().is_empty())
                        .map(str::to_string)
                })
            });
        let reason = from_problem.unwrap_or_else(|| status_line(status));
        self.clean(&reason)
    }

    fn clean(&self, reason: &str) -> String {
        let redact: Vec<&str> = self.redact.iter().map(Token::as_str).collect();
        clean_reason(reason, &redact)
    }

    /// Stores the message in the dead-letter stream, then acks the original.
    /// If NATS cannot take the dead letter, the message is retried later.
    async fn dead_letter(
        &self,
        pending: Pending,
        failure: Failure,
        span: &tracing::Span,
    ) -> Option<(Pending, Duration)> {
        let Pending {
            message,
            subject,
            msg_id,
            attempt: attempts,
            seq,
            ..
        } = &pending;
        if subject.starts_with(subject::DLQ_PREFIX) {
            // A dead letter that cannot be delivered is not dead-lettered again
            // (that would loop); it stays in GREENTIC_DLQ, this consumer moves on.
            let _ = message.ack_with(AckKind::Term).await;
            tracing::error!(parent: span, status = failure.status, reason = failure.reason, "dead letter undeliverable; skipped");
            return None;
        }
        if self.purged(*seq).await {
            // Its tenant was purged while the bridge held it (crate::purge):
            // a dead letter would store it again.
            let _ = message.double_ack().await;
            tracing::info!(parent: span, status = failure.status, "purged while held; not dead-lettered");
            return None;
        }
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("dlq:{msg_id}"));
        headers.insert("Greentic-Original-Subject", subject.as_str());
        headers.insert("Greentic-Msg-Id", msg_id.as_str());
        headers.insert("Greentic-Dlq-Status", failure.status.as_str());
        headers.insert("Greentic-Dlq-Reason", failure.reason.as_str());
        headers.insert("Greentic-Attempts", attempts.to_string());
        headers.insert("Greentic-Delivery", self.cfg.name.as_str());
        headers.insert("Greentic-Stream-Seq", seq.to_string());
        let dlq_subject = subject::dlq_subject(subject);
        let stored = match self
            .nats
            .js()
            .publish_with_headers(dlq_subject.clone(), headers, message.payload.clone())
            .await
        {
            Ok(pending) => pending.await.map_err(async_nats::Error::from),
            Err(e) => Err(e.into()),
        };
        match stored {
            Ok(ack) => {
                self.metrics.dead_lettered(&self.cfg.name);
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(parent: span, error = %e, "dead-lettered but ack failed");
                }
                tracing::warn!(
                    parent: span,
                    status = failure.status,
                    reason = failure.reason,
                    dlq_subject,
                    dlq_seq = ack.sequence,
                    "dead-lettered"
                );
                None
            }
            Err(e) => {
                let delay = self.cfg.backoff_after(*attempts);
                tracing::error!(parent: span, error = %e, "cannot store dead letter; will retry");
                Some((pending, delay))
            }
        }
    }

    /// Is message `seq` of the delivery's stream gone (its tenant purged)?
    /// Asked only before a dead letter, which is rare. When NATS cannot say,
    /// the answer is no: the message is dead-lettered as before.
    async fn purged(&self, seq: u64) -> bool {
        let Ok(stream) = self.nats.js().get_stream_no_info(&self.cfg.stream).await else {
            return false;
        };
        matches!(
            stream.get_raw_message(seq).await,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound
        )
    }
}

/// The HTTP client for calls to a component endpoint with the delivery token
/// (deliveries and schedules): `timeout` bounds a whole request.
pub fn endpoint_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("greentic-bridge/", env!("CARGO_PKG_VERSION")))
        // A redirect would be a misconfigured endpoint; following it could
        // carry the delivery token somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .build()
}

/// 4xx means "never" except 408 (Request Timeout) and 429 (Too Many Requests),
/// which mean "later". Other non-2xx (3xx, 1xx) are misconfigurations that a
/// retry will not fix. (401 and 403 are [`refuses_bridge`], checked first.)
fn permanent(status: StatusCode) -> bool {
    !(status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS)
}

/// 401/403: the endpoint refused the bridge's credentials, which says nothing
/// about the message; dead-lettering would empty the stream into the
/// dead-letter queue until an operator fixed the token.
fn refuses_bridge(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

/// Header-safe (no control characters), without any of `redact`, at most
/// [`MAX_REASON_CHARS`] characters.
fn clean_reason(reason: &str, redact: &[&str]) -> String {
    let mut reason = reason.to_string();
    for secret in redact {
        reason = reason.replace(secret, "[redacted]");
    }
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect::<String>()
        .trim()
        .to_string()
}

/// A short, URL-free description of a transport error.
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut deepest = None;
    while let Some(s) = source {
        deepest = Some(s.to_string());
        source = s.source();
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_request() || e.is_body() {
        "request failed"
    } else {
        "transport error"
    };
    match deepest {
        Some(d) => format!("{kind}: {d}"),
        None => kind.to_string(),
    }
}

/// `HTTP 503 Service Unavailable`: how a failed answer is named in logs,
/// metrics and dead letters when its body says nothing better.
pub(crate) fn status_line(status: StatusCode) -> String {
    format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_5xx_408_and_429_are_retried_and_401_403_held() {
        for code in [401, 403] {
            assert!(refuses_bridge(StatusCode::from_u16(code).unwrap()));
        }
        for code in [200, 400, 404, 422, 500] {
            assert!(!refuses_bridge(StatusCode::from_u16(code).unwrap()));
        }
        for (code, retried) in [
            (500, true),
            (502, true),
            (503, true),
            (408, true),
            (429, true),
            (400, false),
            (404, false),
            (409, false),
            (422, false),
            (302, false),
        ] {
            assert_eq!(
                !permanent(StatusCode::from_u16(code).unwrap()),
                retried,
                "{code}"
            );
        }
    }

    #[test]
    fn reasons_are_bounded_single_line_and_token_free() {
        let token = "d-0123456789abcdef0123456789abcdef";
        let long = format!("bad\r\nenvelope {token} {}", "é".repeat(600));
        let clean = clean_reason(&long, &[token]);
        assert!(!clean.contains(token));
        assert!(clean.starts_with("bad  envelope [redacted] é"));
        assert_eq!(clean.chars().count(), MAX_REASON_CHARS);
        assert!(!clean.chars().any(char::is_control));
    }
}
