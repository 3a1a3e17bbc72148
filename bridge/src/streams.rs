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
use crate::subject;

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

/// Tokens of a messaging subject as published (SPEC §5):
/// `greentic.messaging.{kind}.{env}.{tenant}.{team}.{channel}`.
pub const MESSAGING_TOKENS: usize = 7;

/// Whether the stream's messages are stored with a partition token.
pub fn is_partitioned(stream: &str) -> bool {
    stream == INGRESS || stream == EGRESS
}

/// The messaging streams store each message under its subject plus one
/// token, its partition: a hash of env, tenant, team and channel computed by
/// NATS itself (subject mapping `partition()`), so one channel's messages,
/// and so one session's, are always in the same partition. Each partition is
/// delivered by one bridge replica, which is what keeps a session in order
/// across replicas. Publishers and receivers never see the token.
fn partition_transform(subjects: &str, partitions: u16) -> stream::SubjectTransform {
    let prefix = subjects.trim_end_matches('>');
    stream::SubjectTransform {
        source: format!("{prefix}*.*.*.*"),
        destination: format!(
            "{prefix}{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}.{{{{wildcard(4)}}}}.{{{{partition({partitions},1,2,3,4)}}}}"
        ),
    }
}

/// A stored subject without its partition token: the subject as published.
pub fn published_subject(stored: &str) -> &str {
    match stored.rsplit_once('.') {
        Some((subject, partition))
            if stored.starts_with("greentic.messaging.")
                && stored.split('.').count() == MESSAGING_TOKENS + 1
                && partition.bytes().all(|b| b.is_ascii_digit()) =>
        {
            subject
        }
        _ => stored,
    }
}

/// The filter of a delivery over the messaging streams, widened to the seven
/// tokens of a subject as published (`greentic.messaging.ingress.>` becomes
/// `greentic.messaging.ingress.*.*.*.*`), then narrowed to `partition` if
/// given. Without one it matches only messages stored before partitions.
pub fn partition_filter(filter: &str, partition: Option<u16>) -> String {
    let mut tokens: Vec<&str> = filter.split('.').collect();
    if tokens.last() == Some(&">") {
        tokens.pop();
        while tokens.len() < MESSAGING_TOKENS {
            tokens.push("*");
        }
    }
    let mut filter = tokens.join(".");
    if let Some(p) = partition {
        filter.push_str(&format!(".{p}"));
    }
    filter
}

/// The subjects a tenant's messages are stored under in `stream`, as one
/// filter (for a purge): wherever the stream keeps them, the tenant is a
/// token of its own, so one literal token selects exactly that tenant (`acme`
/// never matches `acme2`, nor an env or team named `acme`), in every env.
/// - the messaging streams: `greentic.messaging.{kind}.*.{tenant}.>`, which
///   covers the subject as published plus its partition token
///   ([`partition_transform`]) and messages stored before partitions;
/// - the dead letters: a dead letter is stored under
///   [`subject::dlq_subject`] of its original subject as published (no
///   partition), which is also its `Greentic-Original-Subject`:
///   `greentic.dlq.messaging.*.*.{tenant}.>`.
///
/// `None` for a stream that is not one of [`STREAMS`]. `tenant` must be an
/// id ([`subject::is_id`]): no `.`, `*` or `>`.
pub fn tenant_filter(stream: &str, tenant: &str) -> Option<String> {
    debug_assert!(subject::is_id(tenant), "tenant filters are built from ids");
    let subjects = subjects_of(stream)?;
    if is_partitioned(stream) {
        let prefix = subjects.trim_end_matches('>');
        Some(format!("{prefix}*.{tenant}.>"))
    } else if stream == DLQ {
        Some(subject::dlq_subject(&format!(
            "greentic.messaging.*.*.{tenant}.>"
        )))
    } else {
        None
    }
}

/// The configuration the bridge wants for `name`.
pub fn stream_config(name: &str, subjects: &str, cfg: &StreamsConfig) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        subject_transform: is_partitioned(name)
            .then(|| partition_transform(subjects, cfg.partitions)),
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
/// Default partitions per messaging stream: a handful per replica, so
/// replicas share the work and one flooded channel holds back only the
/// channels hashed into its partition. Fixed once streams hold messages.
pub const DEFAULT_PARTITIONS: u16 = 8;
pub const MAX_PARTITIONS: u16 = 256;
/// Default retention: a week of messages, dead letters included.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_cover_seven_tokens_then_the_partition() {
        assert_eq!(
            partition_filter("greentic.messaging.ingress.>", Some(3)),
            "greentic.messaging.ingress.*.*.*.*.3"
        );
        assert_eq!(
            partition_filter("greentic.messaging.egress.prod.>", None),
            "greentic.messaging.egress.prod.*.*.*"
        );
        assert_eq!(
            partition_filter("greentic.messaging.ingress.prod.acme.*.slack", Some(0)),
            "greentic.messaging.ingress.prod.acme.*.slack.0"
        );
    }

    #[test]
    fn a_tenant_filter_names_the_tenant_token_of_every_stream() {
        assert_eq!(
            tenant_filter(INGRESS, "acme").as_deref(),
            Some("greentic.messaging.ingress.*.acme.>")
        );
        assert_eq!(
            tenant_filter(EGRESS, "acme").as_deref(),
            Some("greentic.messaging.egress.*.acme.>")
        );
        assert_eq!(
            tenant_filter(DLQ, "acme").as_deref(),
            Some("greentic.dlq.messaging.*.*.acme.>")
        );
        assert_eq!(tenant_filter("OTHER", "acme"), None);
        // The tenant is the same token of a subject as published, stored
        // with its partition, and dead-lettered.
        let published = "greentic.messaging.ingress.prod.acme.support.slack";
        for (stream, stored) in [
            (INGRESS, published.to_string()),
            (INGRESS, format!("{published}.7")),
            (DLQ, subject::dlq_subject(published)),
        ] {
            let filter = tenant_filter(stream, "acme").unwrap();
            let f: Vec<&str> = filter.split('.').collect();
            let s: Vec<&str> = stored.split('.').collect();
            let tenant_at = f.iter().position(|t| *t == "acme").unwrap();
            assert_eq!(s[tenant_at], "acme", "{stored}");
            assert_eq!(f[..tenant_at].len(), s[..tenant_at].len());
            assert!(
                f[..tenant_at]
                    .iter()
                    .zip(&s[..tenant_at])
                    .all(|(f, s)| *f == "*" || f == s),
                "{filter} vs {stored}"
            );
        }
    }

    #[test]
    fn the_partition_token_is_removed_only_from_stored_messaging_subjects() {
        let published = "greentic.messaging.ingress.prod.acme.support.slack";
        assert_eq!(published_subject(&format!("{published}.7")), published);
        assert_eq!(published_subject(published), published);
        assert_eq!(
            published_subject("greentic.dlq.messaging.ingress.prod.acme.support.slack"),
            "greentic.dlq.messaging.ingress.prod.acme.support.slack"
        );
    }
}
