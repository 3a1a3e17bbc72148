//! The three JetStream streams the platform relies on, created or updated at start.
//!
//! Why the bridge owns them: nobody else speaks NATS, and a stream that is
//! missing turns every publish into "no responders". Creating them idempotently
//! on every start (and again after every reconnect, in case NATS came back
//! with an empty store) means an operator never has to run `nats stream add`.
//! The duplicate window is what turns a provider's retry (same `Nats-Msg-Id`)
//! into `duplicate: true` instead of a second message.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::StreamsConfig;

/// Verified inbound messages (SPEC §5).
pub const INGRESS: &str = "GREENTIC_INGRESS";
/// Replies to send out (SPEC §5).
pub const EGRESS: &str = "GREENTIC_EGRESS";
/// What could not be delivered, with the reason in headers.
pub const DLQ: &str = "GREENTIC_DLQ";

/// Name and subject space of every stream, in creation order.
pub const STREAMS: [(&str, &str); 3] = [
    (INGRESS, "greentic.messaging.ingress.>"),
    (EGRESS, "greentic.messaging.egress.>"),
    (DLQ, "greentic.dlq.>"),
];

/// Subject space of a known stream.
pub fn subjects_of(stream: &str) -> Option<&'static str> {
    STREAMS
        .iter()
        .find(|(name, _)| *name == stream)
        .map(|(_, subjects)| *subjects)
}

/// The configuration the bridge wants for `name`.
pub fn stream_config(name: &str, subjects: &str, cfg: &StreamsConfig) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        num_replicas: cfg.replicas,
        duplicate_window: cfg.duplicate_window,
        max_age: cfg.max_age,
        ..Default::default()
    }
}

/// Creates or updates every stream. Idempotent; any replica may run it.
pub async fn ensure_all(
    js: &jetstream::Context,
    cfg: &StreamsConfig,
) -> Result<(), async_nats::Error> {
    for (name, subjects) in STREAMS {
        let info = js
            .create_or_update_stream(stream_config(name, subjects, cfg))
            .await
            .map_err(|e| format!("stream {name}: {e}"))?;
        tracing::info!(
            stream = name,
            subjects,
            messages = info.state.messages,
            duplicate_window_s = cfg.duplicate_window.as_secs(),
            replicas = cfg.replicas,
            "stream ready"
        );
    }
    Ok(())
}

/// Default duplicate window: well past the providers' retry schedules (Slack
/// retries after about 1 and 5 minutes; Telegram and Bot Framework retry within
/// minutes too), so a retried webhook is a duplicate, not a second message.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);
/// Default retention: a week of messages, dead letters included.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
