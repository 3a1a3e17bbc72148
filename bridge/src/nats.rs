//! The one NATS connection, its JetStream context, and whether it is usable.
//!
//! Why it starts without NATS: the bridge must come up (and say 503 on
//! `/healthz` and on publishes) while NATS is still starting or down, rather than
//! crash-loop. The client reconnects forever; after every (re)connect the
//! streams are ensured again, because a NATS that lost its store comes back
//! without them. "Ready" means connected *and* streams ensured at least once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, context::ContextBuilder};
use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::{Notify, watch};

use crate::config::{Config, StreamsConfig};
use crate::streams;

/// Longest pause between reconnect attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Pause before trying to ensure the streams again after a failure.
const ENSURE_RETRY: Duration = Duration::from_secs(1);

pub struct Nats {
    client: Client,
    js: jetstream::Context,
    /// Set once the streams have been ensured; delivery workers wait on it.
    streams_ready: watch::Sender<bool>,
    /// Asks the supervisor to ensure the streams again (reconnect, "no responders").
    ensure_again: Arc<Notify>,
}

impl Nats {
    /// Creates the client; returns at once even when NATS is unreachable.
    pub async fn connect(config: &Config) -> Result<Arc<Nats>, async_nats::Error> {
        let ensure_again = Arc::new(Notify::new());
        let on_event = ensure_again.clone();
        let mut options = match &config.nats.creds_file {
            Some(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| format!("nats.creds_file {}: {e}", path.display()))?,
            None => ConnectOptions::new(),
        };
        options = options
            .name("greentic-bridge")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                let ms = 100u64.saturating_mul(1 << attempts.min(5));
                Duration::from_millis(ms).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let on_event = on_event.clone();
                async move {
                    match event {
                        Event::Connected => {
                            tracing::info!("nats connected");
                            on_event.notify_one();
                        }
                        Event::Disconnected => tracing::warn!("nats disconnected"),
                        other => tracing::info!(event = %other, "nats event"),
                    }
                }
            });
        let servers = config
            .nats
            .url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let client = options.connect(servers).await?;
        let js = ContextBuilder::new()
            .timeout(config.publish.ack_timeout)
            .build(client.clone());
        Ok(Arc::new(Nats {
            client,
            js,
            streams_ready: watch::channel(false).0,
            ensure_again,
        }))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn js(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Connected and streams ensured: publishes and deliveries can work.
    pub fn ready(&self) -> bool {
        self.connected() && *self.streams_ready.borrow()
    }

    /// A receiver that turns true once the streams exist.
    pub fn streams_ready(&self) -> watch::Receiver<bool> {
        self.streams_ready.subscribe()
    }

    /// Asks for the streams to be ensured again (e.g. a publish got "no responders").
    pub fn ensure_streams_again(&self) {
        self.ensure_again.notify_one();
    }

    /// Ensures the streams now and after every reconnect, until `shutdown`.
    pub async fn supervise_streams(
        self: Arc<Self>,
        cfg: StreamsConfig,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if self.connected() {
                match streams::ensure_all(&self.js, &cfg).await {
                    Ok(()) => {
                        self.streams_ready.send_replace(true);
                        tokio::select! {
                            _ = self.ensure_again.notified() => continue,
                            _ = shutdown.wait_for(|s| *s) => return,
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot ensure streams yet"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(ENSURE_RETRY) => {}
                _ = self.ensure_again.notified() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// The NATS URL for log lines: any `user:password@` part replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        (None, Some(at)) => format!("***@{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_logs() {
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("nats://u:secret@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(redact_url("tok@host:4222"), "***@host:4222");
    }
}
