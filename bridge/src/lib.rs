//! greentic-bridge: the native service between Spin components and NATS JetStream.
//!
//! Spin components cannot open a TCP connection to NATS, so they reach it over
//! HTTP through this bridge, in both directions:
//! - **publish** (`POST /v1/publish/{subject}`): a component's message is checked
//!   (subject allow-list, id syntax, size, bearer token) and stored in JetStream;
//!   the answer comes only after the ack ([`publish`]).
//! - **deliver**: durable pull consumers push stored messages to component
//!   endpoints with retries and a dead-letter stream ([`deliver`]).
//! - **purge** (`POST /v1/purge/tenants/{tenant}`): an offboarded tenant's
//!   messages removed from every stream, dead letters included ([`purge`]).
//!
//! It also calls component endpoints on a timer, which Spin has not
//! (retention sweeps, [`schedule`]).
//!
//! **Architecture Invariant:** only this crate speaks NATS. Subjects it accepts
//! carry only ids valid per SPEC §3, so no caller can reach another tenant's
//! subject or a wildcard ([`subject`]).
//!
//! [`start`] wires everything and returns a handle for a graceful [`Running::shutdown`];
//! `main.rs` adds the CLI, logging and signals around it.

pub mod config;
pub mod deliver;
pub mod http;
pub mod lanes;
pub mod metrics;
pub mod nats;
pub mod problem;
pub mod publish;
pub mod purge;
pub mod quickack;
pub mod rate;
pub mod schedule;
pub mod streams;
pub mod subject;
#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::Config;

use crate::deliver::Delivery;
use crate::metrics::Metrics;
use crate::nats::Nats;
use crate::schedule::Schedule;

/// What the HTTP handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub nats: Arc<Nats>,
    pub metrics: Arc<Metrics>,
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("nats: {0}")]
    Nats(async_nats::Error),
    /// `name` is `delivery <name>` or `schedule <name>`.
    #[error("{name}: cannot build its HTTP client: {source}")]
    HttpClient {
        name: String,
        source: reqwest::Error,
    },
}

/// A started bridge.
pub struct Running {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// The address the HTTP server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// NATS connected and streams ensured.
    pub fn ready(&self) -> bool {
        self.state.nats.ready()
    }

    /// Stops the schedules (abandoning a call in flight), stops accepting
    /// requests and pulling messages, finishes what is in flight
    /// (bounded by `shutdown_timeout`), flushes acks to NATS, and returns.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        self.shutdown.send_replace(true);
        let grace = self.state.config.shutdown_timeout;
        // Each task bounds itself by `grace` (a delivery: its pullers' last
        // requests and its deliveries in flight); the extra second is for
        // their own cleanup (a delivery's naks of what it hands back).
        let finished = tokio::time::timeout(grace + std::time::Duration::from_secs(1), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!("shutdown timeout: stopping remaining tasks");
            self.tasks.abort_all();
        }
        let flush = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.state.nats.client().flush(),
        )
        .await;
        if !matches!(flush, Ok(Ok(()))) {
            tracing::warn!(
                "could not flush NATS before exit; unacked messages will be redelivered"
            );
        }
        tracing::info!("stopped");
    }
}

/// Selects rustls' crypto provider for the process: reqwest (https endpoints) and
/// async-nats (tls://) both use rustls, and ring needs no C toolchain beyond cc.
/// Call before building any reqwest client; harmless when already done.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Binds the listener, connects to NATS (in the background if it is down),
/// ensures the streams and starts the deliveries, and the schedules on
/// replica 0.
pub async fn start(config: Config) -> Result<Running, StartError> {
    init_tls();

    let config = Arc::new(config);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;

    let nats = Nats::connect(&config).await.map_err(StartError::Nats)?;
    let stream_names: Vec<&str> = streams::STREAMS.iter().map(|(n, _)| *n).collect();
    let delivery_names: Vec<&str> = config.deliveries.iter().map(|d| d.name.as_str()).collect();
    let schedule_names: Vec<&str> = config.schedules.iter().map(|s| s.name.as_str()).collect();
    let metrics = Arc::new(Metrics::new(
        &stream_names,
        &delivery_names,
        &schedule_names,
    ));

    let mut redact = vec![config.publish.token.clone()];
    redact.extend(config.delivery_token.clone());
    let mut deliveries = Vec::with_capacity(config.deliveries.len());
    for d in &config.deliveries {
        let token = config
            .delivery_token
            .clone()
            .expect("config requires a delivery token with deliveries");
        let delivery = Delivery::new(
            d.clone(),
            token,
            redact.clone(),
            nats.clone(),
            metrics.clone(),
            (config.replica, config.streams.partitions),
        )
        .map_err(|source| StartError::HttpClient {
            name: format!("delivery {}", d.name),
            source,
        })?;
        deliveries.push(Arc::new(delivery));
    }
    let mut schedules = Vec::with_capacity(config.schedules.len());
    for s in &config.schedules {
        let token = config
            .delivery_token
            .clone()
            .expect("config requires a delivery token with schedules");
        let schedule = Schedule::new(s.clone(), token, metrics.clone()).map_err(|source| {
            StartError::HttpClient {
                name: format!("schedule {}", s.name),
                source,
            }
        })?;
        schedules.push(schedule);
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = Arc::new(AppState {
        config: config.clone(),
        nats: nats.clone(),
        metrics,
    });
    let mut tasks = JoinSet::new();

    tasks.spawn(
        nats.clone()
            .supervise_streams(config.streams.clone(), shutdown_rx.clone()),
    );
    for delivery in deliveries {
        tasks.spawn(delivery.run(shutdown_rx.clone(), config.shutdown_timeout));
    }
    // One replica calls the schedules, so a sweep runs once per tick, not once
    // per replica (bridge/README, Schedules).
    if config.replica.index == 0 {
        for schedule in schedules {
            tasks.spawn(schedule.run(shutdown_rx.clone()));
        }
    } else if !schedules.is_empty() {
        let names: Vec<&str> = schedules.iter().map(Schedule::name).collect();
        tracing::info!(
            replica = format!("{}/{}", config.replica.index, config.replica.count),
            schedules = names.join(","),
            "schedules run on replica 0 only; skipped here"
        );
    }
    let router = http::router(state.clone());
    let mut http_shutdown = shutdown_rx.clone();
    tasks.spawn(async move {
        // Small request/response exchanges: neither Nagle nor a delayed
        // acknowledgement may hold one back (see quickack.rs).
        let listener = quickack::QuickAckListener(listener);
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = http_shutdown.wait_for(|s| *s).await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "http server failed");
        }
    });

    tracing::info!(
        listen = %addr,
        nats = nats::redact_url(&config.nats.url),
        deliveries = config.deliveries.len(),
        schedules = config.schedules.len(),
        "greentic-bridge started"
    );
    Ok(Running {
        addr,
        state,
        shutdown,
        tasks,
    })
}
