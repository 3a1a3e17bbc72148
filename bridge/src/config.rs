//! Configuration: one TOML file plus environment overrides, checked completely at start.
//!
//! Why this shape: the file is committed (local runs, deploy manifests), so it
//! never holds a secret; the two bearer tokens come from the environment or from
//! a file path (a mounted Kubernetes Secret). Every key is checked before the
//! bridge does anything (unknown keys, durations, subject patterns, token length),
//! so a typo stops the start with a message naming the key instead of running
//! silently on a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::streams;
use crate::subject::{AllowList, Pattern};

pub const ENV_NATS_URL: &str = "GREENTIC_BRIDGE_NATS_URL";
pub const ENV_LISTEN: &str = "GREENTIC_BRIDGE_LISTEN";
pub const ENV_PUBLISH_TOKEN: &str = "GREENTIC_BRIDGE_PUBLISH_TOKEN";
pub const ENV_DELIVERY_TOKEN: &str = "GREENTIC_BRIDGE_DELIVERY_TOKEN";
/// `index/count`: which share of the partitions this replica delivers.
pub const ENV_REPLICA: &str = "GREENTIC_BRIDGE_REPLICA";

/// Shortest bearer token accepted (bytes).
pub const MIN_TOKEN_LEN: usize = 32;
const DEFAULT_LISTEN: &str = "127.0.0.1:4280";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
const DEFAULT_ALLOW: [&str; 2] = [
    "greentic.messaging.ingress.>",
    "greentic.messaging.egress.>",
];
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
const MAX_MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// The components keep every message they publish within this (an inbound
/// envelope's text is capped, a turn's replies are refused above it), so a
/// bridge that takes less would refuse verified messages.
const MIN_MAX_PAYLOAD: usize = 64 * 1024;
const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const DEFAULT_BACKOFF: [&str; 4] = ["1s", "5s", "30s", "2m"];
const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONCURRENCY: usize = 16;
const MAX_CONCURRENCY: usize = 1024;
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest `every` of a schedule: a timer tighter than this is a loop.
const MIN_SCHEDULE_EVERY: Duration = Duration::from_secs(1);
const DEFAULT_SCHEDULE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CALLS_PER_RUN: u32 = 100;
const MAX_MAX_CALLS_PER_RUN: u32 = 10_000;

/// The validated configuration the bridge runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub nats: NatsConfig,
    pub publish: PublishConfig,
    pub streams: StreamsConfig,
    pub deliveries: Vec<DeliveryConfig>,
    /// Calls the bridge makes on a timer (replica 0 only).
    pub schedules: Vec<ScheduleConfig>,
    /// Present whenever there is at least one delivery or schedule.
    pub delivery_token: Option<Token>,
    /// Longest wait for in-flight publishes and deliveries on shutdown.
    pub shutdown_timeout: Duration,
    pub replica: Replica,
}

/// This bridge's place among the replicas: it delivers the partitions `p`
/// with `p % count == index`, and no other replica does (see bridge/README,
/// Order and turns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub index: u16,
    pub count: u16,
}

impl Replica {
    pub const ALONE: Replica = Replica { index: 0, count: 1 };

    /// The partitions (of `partitions`) this replica delivers.
    pub fn partitions(&self, partitions: u16) -> Vec<u16> {
        (0..partitions)
            .filter(|p| p % self.count == self.index)
            .collect()
    }

    fn parse(raw: &str, partitions: u16) -> Result<Replica, String> {
        let parsed = raw.split_once('/').and_then(|(i, n)| {
            Some((i.trim().parse::<u16>().ok()?, n.trim().parse::<u16>().ok()?))
        });
        let Some((index, count)) = parsed else {
            return Err(format!("`{raw}` is not index/count, like 0/2"));
        };
        if count == 0 || index >= count {
            return Err(format!(
                "`{raw}`: the index must be below the count (0/2, 1/2)"
            ));
        }
        if count > partitions {
            return Err(format!(
                "`{raw}`: more replicas than streams.partitions ({partitions}) leaves some without work"
            ));
        }
        Ok(Replica { index, count })
    }
}

#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// One URL or several, comma-separated (a cluster).
    pub url: String,
    /// NATS credentials (`.creds`: user JWT + nkey seed), for secured servers.
    pub creds_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub allow: AllowList,
    pub max_payload_bytes: usize,
    /// How long a publish waits for the JetStream ack before answering 503.
    pub ack_timeout: Duration,
    pub token: Token,
}

#[derive(Debug, Clone)]
pub struct StreamsConfig {
    pub duplicate_window: Duration,
    pub replicas: usize,
    /// Retention; zero keeps messages forever.
    pub max_age: Duration,
    /// Partitions of the messaging streams (by env, tenant, team, channel):
    /// the unit of ordering across bridge replicas.
    pub partitions: u16,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Durable consumer name, shared by every bridge replica.
    pub name: String,
    pub stream: String,
    pub filter_subject: Pattern,
    pub endpoint: reqwest::Url,
    pub max_attempts: u32,
    pub backoff: Vec<Duration>,
    pub timeout: Duration,
    pub concurrency: usize,
    /// Most POSTs in flight for one tenant (`env.tenant`) while another
    /// tenant is active: the rest of `concurrency` stays free for the others.
    /// A tenant alone uses every slot.
    pub tenant_concurrency: usize,
    /// How long JetStream waits for an ack before redelivering; longer than a
    /// delivery can take (a queued message waits for a slot, then for its POST).
    pub ack_wait: Duration,
}

impl DeliveryConfig {
    /// Delay before attempt `attempt + 1` after attempt `attempt` (1-based) failed.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) - 1) as usize;
        self.backoff[i.min(self.backoff.len() - 1)]
    }
}

/// One `[[schedule]]`: Spin components cannot run on a timer, so the bridge
/// POSTs to `endpoint` every `every`, again at once while the answer says
/// `more`, at most `max_calls_per_run` times per run (see bridge/README,
/// Schedules).
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// The `schedule` label of its metrics and logs.
    pub name: String,
    pub endpoint: reqwest::Url,
    pub every: Duration,
    /// Per call, whole request.
    pub timeout: Duration,
    pub max_calls_per_run: u32,
}

/// A bearer token. Never printed; compared in constant time.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison (for equal lengths; tokens are at least 32 bytes).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(candidate))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What went wrong with the configuration; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

// ---- the file as written ------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    publish_token_file: Option<PathBuf>,
    delivery_token_file: Option<PathBuf>,
    shutdown_timeout: Option<String>,
    replica: Option<String>,
    #[serde(default)]
    nats: FileNats,
    #[serde(default)]
    publish: FilePublish,
    #[serde(default)]
    streams: FileStreams,
    #[serde(default, rename = "delivery")]
    deliveries: Vec<FileDelivery>,
    #[serde(default, rename = "schedule")]
    schedules: Vec<FileSchedule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNats {
    url: Option<String>,
    creds_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePublish {
    allow_subjects: Option<Vec<String>>,
    max_payload_bytes: Option<usize>,
    ack_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStreams {
    duplicate_window: Option<String>,
    replicas: Option<usize>,
    max_age: Option<String>,
    partitions: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDelivery {
    name: String,
    stream: String,
    filter_subject: String,
    endpoint: String,
    max_attempts: Option<u32>,
    backoff: Option<Vec<String>>,
    timeout: Option<String>,
    concurrency: Option<usize>,
    tenant_concurrency: Option<usize>,
    ack_wait: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchedule {
    name: String,
    endpoint: String,
    every: String,
    timeout: Option<String>,
    max_calls_per_run: Option<u32>,
}

// ---- loading -------------------------------------------------------------

impl Config {
    /// Reads `path` and applies the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, |k| std::env::var(k).ok())
    }

    /// Reads `path` and applies overrides from `env` (a lookup, for tests).
    pub fn load_with_env(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base, env)
    }

    /// Parses TOML text; relative file paths resolve against `base_dir`.
    pub fn from_toml(
        text: &str,
        base_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let env = |k: &str| env(k).filter(|v| !v.is_empty());

        let listen_raw = env(ENV_LISTEN)
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_raw.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{listen_raw}` is not an address like 127.0.0.1:4280"),
            )
        })?;

        let nats_url = env(ENV_NATS_URL)
            .or(file.nats.url)
            .unwrap_or_else(|| DEFAULT_NATS_URL.into());
        for part in nats_url.split(',') {
            if part.trim().is_empty() {
                return Err(invalid("nats.url", "has an empty server address"));
            }
            part.trim().parse::<async_nats::ServerAddr>().map_err(|e| {
                invalid(
                    "nats.url",
                    format!("`{}` is not a NATS URL: {e}", crate::nats::redact_url(part)),
                )
            })?;
        }
        let nats = NatsConfig {
            url: nats_url,
            creds_file: file.nats.creds_file.map(|p| base_dir.join(p)),
        };

        let publish_token = token(
            "publish token",
            ENV_PUBLISH_TOKEN,
            "publish_token_file",
            env(ENV_PUBLISH_TOKEN),
            file.publish_token_file.as_deref(),
            base_dir,
        )?
        .ok_or_else(|| {
            invalid(
                "publish token",
                format!("missing: set {ENV_PUBLISH_TOKEN} or publish_token_file"),
            )
        })?;

        let publish = publish_config(file.publish, publish_token)?;
        let streams = streams_config(file.streams)?;
        let replica = match env(ENV_REPLICA).or(file.replica) {
            None => Replica::ALONE,
            Some(raw) => {
                Replica::parse(&raw, streams.partitions).map_err(|e| invalid("replica", e))?
            }
        };

        let deliveries = file
            .deliveries
            .into_iter()
            .enumerate()
            .map(|(i, d)| delivery_config(i, d))
            .collect::<Result<Vec<_>, _>>()?;
        unique_names("delivery", deliveries.iter().map(|d| d.name.as_str()))?;
        let schedules = file
            .schedules
            .into_iter()
            .enumerate()
            .map(|(i, s)| schedule_config(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        unique_names("schedule", schedules.iter().map(|s| s.name.as_str()))?;

        let delivery_token = token(
            "delivery token",
            ENV_DELIVERY_TOKEN,
            "delivery_token_file",
            env(ENV_DELIVERY_TOKEN),
            file.delivery_token_file.as_deref(),
            base_dir,
        )?;
        if delivery_token.is_none() && !(deliveries.is_empty() && schedules.is_empty()) {
            return Err(invalid(
                "delivery token",
                format!(
                    "missing: set {ENV_DELIVERY_TOKEN} or delivery_token_file \
                     (needed by [[delivery]] and [[schedule]])"
                ),
            ));
        }
        if let Some(d) = &delivery_token
            && d.as_str() == publish.token.as_str()
        {
            return Err(invalid(
                "delivery token",
                "must differ from the publish token (receivers tell the bridge from components by it)",
            ));
        }

        let shutdown_timeout = duration_or(
            "shutdown_timeout",
            file.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
        )?;

        Ok(Config {
            listen,
            nats,
            publish,
            streams,
            deliveries,
            schedules,
            delivery_token,
            shutdown_timeout,
            replica,
        })
    }
}

fn publish_config(file: FilePublish, token: Token) -> Result<PublishConfig, ConfigError> {
    let raw = file
        .allow_subjects
        .unwrap_or_else(|| DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect());
    if raw.is_empty() {
        return Err(invalid(
            "publish.allow_subjects",
            "needs at least one pattern",
        ));
    }
    let mut patterns = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let pattern = Pattern::parse(p).map_err(|e| {
            invalid(
                format!("publish.allow_subjects[{i}]"),
                format!("`{p}`: {e}"),
            )
        })?;
        if pattern.as_str().starts_with("greentic.dlq.") || pattern.as_str() == "greentic.>" {
            return Err(invalid(
                format!("publish.allow_subjects[{i}]"),
                format!("`{p}`: dead-letter subjects are written by the bridge only"),
            ));
        }
        patterns.push(pattern);
    }
    let max_payload_bytes = file.max_payload_bytes.unwrap_or(DEFAULT_MAX_PAYLOAD);
    if !(MIN_MAX_PAYLOAD..=MAX_MAX_PAYLOAD).contains(&max_payload_bytes) {
        return Err(invalid(
            "publish.max_payload_bytes",
            format!(
                "must be {MIN_MAX_PAYLOAD}..={MAX_MAX_PAYLOAD}: the components send up to \
                 {MIN_MAX_PAYLOAD} bytes in one message"
            ),
        ));
    }
    let ack_timeout = positive("publish.ack_timeout", file.ack_timeout, DEFAULT_ACK_TIMEOUT)?;
    Ok(PublishConfig {
        allow: AllowList::new(patterns),
        max_payload_bytes,
        ack_timeout,
        token,
    })
}

fn streams_config(file: FileStreams) -> Result<StreamsConfig, ConfigError> {
    let duplicate_window = positive(
        "streams.duplicate_window",
        file.duplicate_window,
        streams::DEFAULT_DUPLICATE_WINDOW,
    )?;
    let max_age = duration_or("streams.max_age", file.max_age, streams::DEFAULT_MAX_AGE)?;
    if !max_age.is_zero() && duplicate_window > max_age {
        return Err(invalid(
            "streams.duplicate_window",
            "must not exceed streams.max_age",
        ));
    }
    let replicas = file.replicas.unwrap_or(1);
    if !(1..=5).contains(&replicas) {
        return Err(invalid("streams.replicas", "must be 1..=5"));
    }
    let partitions = file.partitions.unwrap_or(streams::DEFAULT_PARTITIONS);
    if !(1..=streams::MAX_PARTITIONS).contains(&partitions) {
        return Err(invalid(
            "streams.partitions",
            format!("must be 1..={}", streams::MAX_PARTITIONS),
        ));
    }
    Ok(StreamsConfig {
        duplicate_window,
        replicas,
        max_age,
        partitions,
    })
}

fn delivery_config(i: usize, d: FileDelivery) -> Result<DeliveryConfig, ConfigError> {
    let key = |k: &str| format!("delivery[{i}].{k}");
    check_name(&key("name"), &d.name)?;
    let Some(stream_subjects) = streams::subjects_of(&d.stream) else {
        let known: Vec<&str> = streams::STREAMS.iter().map(|(n, _)| *n).collect();
        return Err(invalid(
            key("stream"),
            format!("`{}` is not one of {}", d.stream, known.join(", ")),
        ));
    };
    let filter_subject = Pattern::parse(&d.filter_subject).map_err(|e| {
        invalid(
            key("filter_subject"),
            format!("`{}`: {e}", d.filter_subject),
        )
    })?;
    let stream_pattern = Pattern::parse(stream_subjects).expect("stream subjects are valid");
    if !filter_subject.is_within(&stream_pattern) {
        return Err(invalid(
            key("filter_subject"),
            format!(
                "`{}` is outside stream {} (`{stream_subjects}`)",
                d.filter_subject, d.stream
            ),
        ));
    }
    let endpoint = endpoint(&key("endpoint"), &d.endpoint)?;
    let max_attempts = d.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=100).contains(&max_attempts) {
        return Err(invalid(key("max_attempts"), "must be 1..=100"));
    }
    let backoff_raw = d
        .backoff
        .unwrap_or_else(|| DEFAULT_BACKOFF.iter().map(|s| s.to_string()).collect());
    if backoff_raw.is_empty() {
        return Err(invalid(key("backoff"), "needs at least one delay"));
    }
    let backoff = backoff_raw
        .iter()
        .enumerate()
        .map(|(j, b)| parse_duration(&format!("delivery[{i}].backoff[{j}]"), b))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout = positive(&key("timeout"), d.timeout, DEFAULT_DELIVERY_TIMEOUT)?;
    let concurrency = d.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(invalid(
            key("concurrency"),
            format!("must be 1..={MAX_CONCURRENCY}"),
        ));
    }
    let tenant_concurrency = d
        .tenant_concurrency
        .unwrap_or_else(|| default_tenant_concurrency(concurrency));
    if !(1..=concurrency).contains(&tenant_concurrency) {
        return Err(invalid(
            key("tenant_concurrency"),
            format!("must be 1..={concurrency} (the delivery's concurrency)"),
        ));
    }
    let ack_wait = positive(
        &key("ack_wait"),
        d.ack_wait,
        timeout * 2 + Duration::from_secs(10),
    )?;
    if ack_wait <= timeout {
        return Err(invalid(key("ack_wait"), "must be longer than timeout"));
    }
    Ok(DeliveryConfig {
        name: d.name,
        stream: d.stream,
        filter_subject,
        endpoint,
        max_attempts,
        backoff,
        timeout,
        concurrency,
        tenant_concurrency,
        ack_wait,
    })
}

fn schedule_config(i: usize, s: FileSchedule) -> Result<ScheduleConfig, ConfigError> {
    let key = |k: &str| format!("schedule[{i}].{k}");
    check_name(&key("name"), &s.name)?;
    let endpoint = endpoint(&key("endpoint"), &s.endpoint)?;
    let every = parse_duration(&key("every"), &s.every)?;
    if every < MIN_SCHEDULE_EVERY {
        return Err(invalid(key("every"), "must be at least 1s"));
    }
    let timeout = positive(&key("timeout"), s.timeout, DEFAULT_SCHEDULE_TIMEOUT)?;
    let max_calls_per_run = s.max_calls_per_run.unwrap_or(DEFAULT_MAX_CALLS_PER_RUN);
    if !(1..=MAX_MAX_CALLS_PER_RUN).contains(&max_calls_per_run) {
        return Err(invalid(
            key("max_calls_per_run"),
            format!("must be 1..={MAX_MAX_CALLS_PER_RUN}"),
        ));
    }
    Ok(ScheduleConfig {
        name: s.name,
        endpoint,
        every,
        timeout,
        max_calls_per_run,
    })
}

/// A name used as a consumer name and a metrics label: `[A-Za-z0-9_-]{1,64}`.
fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if !ok {
        return Err(invalid(
            key,
            format!("`{name}` must be 1..=64 chars of [A-Za-z0-9_-]"),
        ));
    }
    Ok(())
}

/// No two entries of `[[section]]` share a name.
fn unique_names<'a>(
    section: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, name) in names.enumerate() {
        if !seen.insert(name) {
            return Err(invalid(
                format!("{section}[{i}].name"),
                format!("`{name}` is used twice"),
            ));
        }
    }
    Ok(())
}

/// An endpoint the bridge POSTs to with the delivery token: http(s), a host,
/// no credentials of its own.
fn endpoint(key: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
    let endpoint = reqwest::Url::parse(raw).map_err(|e| invalid(key, format!("`{raw}`: {e}")))?;
    if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
        return Err(invalid(key, "must be an http:// or https:// URL"));
    }
    if !endpoint.username().is_empty() || endpoint.password().is_some() {
        return Err(invalid(
            key,
            "must not carry credentials; the bridge sends the delivery token",
        ));
    }
    Ok(endpoint)
}

/// A quarter of the slots, at least one: on Spin every request competes for
/// the same cores, so a tenant's flood with every slot makes a quiet tenant's
/// one request wait behind all of them (the cap holds only beside another
/// active tenant, so a tenant alone still has every slot).
fn default_tenant_concurrency(concurrency: usize) -> usize {
    (concurrency / 4).max(1)
}

/// A token from the environment (wins) or from a file; checked for length and
/// header-safe characters. `None` when neither is set.
fn token(
    what: &str,
    env_name: &str,
    file_key: &str,
    from_env: Option<String>,
    file: Option<&Path>,
    base_dir: &Path,
) -> Result<Option<Token>, ConfigError> {
    let (value, source) = match (from_env, file) {
        (Some(v), _) => (v, env_name.to_string()),
        (None, Some(path)) => {
            let path = base_dir.join(path);
            let v = std::fs::read_to_string(&path)
                .map_err(|e| invalid(file_key, format!("cannot read {}: {e}", path.display())))?;
            (v.trim().to_string(), path.display().to_string())
        }
        (None, None) => return Ok(None),
    };
    if value.len() < MIN_TOKEN_LEN {
        return Err(invalid(
            what,
            format!(
                "from {source} is {} bytes; at least {MIN_TOKEN_LEN} are required",
                value.len()
            ),
        ));
    }
    if !value.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(
            what,
            format!("from {source} must be printable ASCII without spaces"),
        ));
    }
    Ok(Some(Token(value.into())))
}

fn parse_duration(key: &str, raw: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(raw).map_err(|e| {
        invalid(
            key,
            format!("`{raw}` is not a duration like \"500ms\", \"5s\", \"2m\", \"2h\": {e}"),
        )
    })
}

fn duration_or(key: &str, raw: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    raw.map_or(Ok(default), |r| parse_duration(key, &r))
}

fn positive(key: &str, raw: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    let d = duration_or(key, raw, default)?;
    if d.is_zero() {
        return Err(invalid(key, "must be longer than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUB: &str = "p-0123456789abcdef0123456789abcdef";
    const DEL: &str = "d-0123456789abcdef0123456789abcdef";

    fn env_with(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn tokens() -> impl Fn(&str) -> Option<String> {
        env_with(&[(ENV_PUBLISH_TOKEN, PUB), (ENV_DELIVERY_TOKEN, DEL)])
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("."), tokens())
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const DELIVERY: &str = r#"
[[delivery]]
name = "ingress"
stream = "GREENTIC_INGRESS"
filter_subject = "greentic.messaging.ingress.>"
endpoint = "http://127.0.0.1:3000/internal/v1/deliveries/ingress"
"#;

    const SCHEDULE: &str = r#"
[[schedule]]
name = "retention"
endpoint = "http://127.0.0.1:3000/internal/v1/sweeps/retention"
every = "5m"
"#;

    #[test]
    fn an_empty_file_gets_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:4280");
        assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(c.publish.max_payload_bytes, 1024 * 1024);
        assert_eq!(c.publish.allow.patterns().len(), 2);
        assert_eq!(c.streams.duplicate_window, Duration::from_secs(7200));
        assert_eq!(c.streams.replicas, 1);
        assert_eq!(c.streams.partitions, 8);
        assert_eq!(c.replica, Replica::ALONE);
        assert!(c.deliveries.is_empty());
        assert!(c.schedules.is_empty());
    }

    #[test]
    fn schedule_defaults_follow_the_contract() {
        let c = parse(SCHEDULE).unwrap();
        let s = &c.schedules[0];
        assert_eq!(s.name, "retention");
        assert_eq!(
            s.endpoint.as_str(),
            "http://127.0.0.1:3000/internal/v1/sweeps/retention"
        );
        assert_eq!(s.every, Duration::from_secs(300));
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.max_calls_per_run, 100);
        let c = parse(&format!(
            "{SCHEDULE}timeout = \"2s\"\nmax_calls_per_run = 10000\n"
        ))
        .unwrap();
        assert_eq!(c.schedules[0].timeout, Duration::from_secs(2));
        assert_eq!(c.schedules[0].max_calls_per_run, 10_000);
    }

    #[test]
    fn bad_schedules_are_refused() {
        let cases = [
            (
                SCHEDULE.replace("\"retention\"", "\"re.tention\""),
                "schedule[0].name",
            ),
            (
                SCHEDULE.replace("\"retention\"", "\"\""),
                "schedule[0].name",
            ),
            (
                SCHEDULE.replace("http://127.0.0.1:3000", "ftp://127.0.0.1:3000"),
                "schedule[0].endpoint",
            ),
            (
                SCHEDULE.replace("http://127.0.0.1:3000", "http://u:p@127.0.0.1:3000"),
                "schedule[0].endpoint",
            ),
            (SCHEDULE.replace("\"5m\"", "\"999ms\""), "schedule[0].every"),
            (
                SCHEDULE.replace("\"5m\"", "\"five minutes\""),
                "schedule[0].every",
            ),
            (
                format!("{SCHEDULE}timeout = \"0s\"\n"),
                "schedule[0].timeout",
            ),
            (
                format!("{SCHEDULE}max_calls_per_run = 0\n"),
                "schedule[0].max_calls_per_run",
            ),
            (
                format!("{SCHEDULE}max_calls_per_run = 10001\n"),
                "schedule[0].max_calls_per_run",
            ),
            (format!("{SCHEDULE}{SCHEDULE}"), "schedule[1].name"),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.starts_with(key), "{key}: {e}\n{text}");
        }
        assert!(parse(&SCHEDULE.replace("\"5m\"", "\"1s\"")).is_ok());
        let e = err(&format!("{SCHEDULE}{SCHEDULE}"));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&format!("{SCHEDULE}cron = \"*/5 * * * *\"\n"));
        assert!(e.contains("unknown field `cron`"), "{e}");
        let e = err(&SCHEDULE.replace("every = \"5m\"\n", ""));
        assert!(e.contains("missing field `every`"), "{e}");
        // A delivery and a schedule may share a name: their labels differ.
        let c = parse(&format!(
            "{DELIVERY}{}",
            SCHEDULE.replace("\"retention\"", "\"ingress\"")
        ))
        .unwrap();
        assert_eq!(c.schedules[0].name, c.deliveries[0].name);
    }

    #[test]
    fn a_schedule_needs_the_delivery_token() {
        let e = Config::from_toml(
            SCHEDULE,
            Path::new("."),
            env_with(&[(ENV_PUBLISH_TOKEN, PUB)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(ENV_DELIVERY_TOKEN), "{e}");
        assert!(e.contains("[[schedule]]"), "{e}");
    }

    #[test]
    fn a_replica_serves_its_share_of_the_partitions_and_nonsense_is_refused() {
        let c = parse("replica = \"1/3\"\n").unwrap();
        assert_eq!(c.replica, Replica { index: 1, count: 3 });
        assert_eq!(c.replica.partitions(8), [1, 4, 7]);
        let env = env_with(&[(ENV_PUBLISH_TOKEN, PUB), (ENV_REPLICA, "0/2")]);
        let c = Config::from_toml("replica = \"1/3\"\n", Path::new("."), env).unwrap();
        assert_eq!(c.replica, Replica { index: 0, count: 2 }, "env wins");
        for bad in ["2/2", "0/0", "1", "a/b", "-1/2"] {
            let e = err(&format!("replica = \"{bad}\"\n"));
            assert!(e.starts_with("replica"), "{bad}: {e}");
        }
        let e = err("replica = \"0/9\"\n");
        assert!(e.contains("more replicas than streams.partitions"), "{e}");
        assert!(err("[streams]\npartitions = 0\n").starts_with("streams.partitions"));
        assert!(err("[streams]\npartitions = 257\n").starts_with("streams.partitions"));
    }

    #[test]
    fn a_payload_limit_below_what_components_send_is_refused() {
        let e = err("[publish]\nmax_payload_bytes = 65535\n");
        assert!(e.starts_with("publish.max_payload_bytes"), "{e}");
        assert!(parse("[publish]\nmax_payload_bytes = 65536\n").is_ok());
    }

    #[test]
    fn delivery_defaults_follow_the_contract() {
        let c = parse(DELIVERY).unwrap();
        let d = &c.deliveries[0];
        assert_eq!(d.max_attempts, 5);
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!(d.concurrency, 16);
        assert_eq!(d.tenant_concurrency, 4);
        assert_eq!(d.backoff, [1, 5, 30, 120].map(Duration::from_secs).to_vec());
        assert!(d.ack_wait > d.timeout);
        assert_eq!(d.backoff_after(1), Duration::from_secs(1));
        assert_eq!(d.backoff_after(4), Duration::from_secs(120));
        assert_eq!(d.backoff_after(9), Duration::from_secs(120));
    }

    #[test]
    fn a_tenant_share_beyond_the_delivery_is_refused() {
        for bad in ["0", "17"] {
            let e = err(&format!("{DELIVERY}tenant_concurrency = {bad}\n"));
            assert!(
                e.starts_with("delivery[0].tenant_concurrency"),
                "{bad}: {e}"
            );
        }
        let c = parse(&format!("{DELIVERY}concurrency = 2\n")).unwrap();
        assert_eq!(c.deliveries[0].tenant_concurrency, 1, "at least one");
    }

    #[test]
    fn the_committed_local_file_is_valid() {
        let text = include_str!("../bridge.local.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:4280");
        let names: Vec<&str> = c.deliveries.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["ingress", "egress"]);
        let names: Vec<&str> = c.schedules.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["retention"]);
        assert_eq!(
            c.schedules[0].endpoint.as_str(),
            "http://127.0.0.1:3000/internal/v1/sweeps/retention",
            "scripts/dev rewrites http://127.0.0.1:3000 to the app's address"
        );
    }

    #[test]
    fn env_overrides_the_file() {
        let env = env_with(&[
            (ENV_PUBLISH_TOKEN, PUB),
            (ENV_NATS_URL, "nats://10.0.0.1:4222"),
            (ENV_LISTEN, "0.0.0.0:9000"),
        ]);
        let c = Config::from_toml(
            "listen = \"127.0.0.1:1\"\n[nats]\nurl = \"nats://x:1\"\n",
            Path::new("."),
            env,
        )
        .unwrap();
        assert_eq!(c.nats.url, "nats://10.0.0.1:4222");
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
    }

    #[test]
    fn nats_urls_are_checked_and_may_list_a_cluster() {
        let c = parse("[nats]\nurl = \"nats://a:4222, nats://b:4222\"\n").unwrap();
        assert_eq!(c.nats.url, "nats://a:4222, nats://b:4222");
        let e = err("[nats]\nurl = \"http://u:secret@a:4222\"\n");
        assert!(e.starts_with("nats.url"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        assert!(err("[nats]\nurl = \"\"\n").starts_with("nats.url"));
    }

    #[test]
    fn tokens_come_from_files_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pub.token"), format!("{PUB}\n")).unwrap();
        std::fs::write(dir.path().join("del.token"), DEL).unwrap();
        let text = format!(
            "publish_token_file = \"pub.token\"\ndelivery_token_file = \"del.token\"\n{DELIVERY}"
        );
        let c = Config::from_toml(&text, dir.path(), env_with(&[])).unwrap();
        assert_eq!(c.publish.token.as_str(), PUB);
        assert_eq!(c.delivery_token.unwrap().as_str(), DEL);
    }

    #[test]
    fn missing_or_short_tokens_are_refused_without_echoing_them() {
        let e = Config::from_toml("", Path::new("."), env_with(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(ENV_PUBLISH_TOKEN), "{e}");

        let e = Config::from_toml(
            "",
            Path::new("."),
            env_with(&[(ENV_PUBLISH_TOKEN, "short-secret")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at least 32"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");

        let e = Config::from_toml(
            DELIVERY,
            Path::new("."),
            env_with(&[(ENV_PUBLISH_TOKEN, PUB)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(ENV_DELIVERY_TOKEN), "{e}");

        let e = Config::from_toml(
            DELIVERY,
            Path::new("."),
            env_with(&[(ENV_PUBLISH_TOKEN, PUB), (ENV_DELIVERY_TOKEN, PUB)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("must differ"), "{e}");
    }

    #[test]
    fn a_token_cannot_be_written_into_the_file() {
        let e = err("publish_token = \"p-0123456789abcdef0123456789abcdef\"\n");
        assert!(e.contains("unknown field `publish_token`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_everywhere() {
        assert!(err("lisen = \"x\"").contains("unknown field `lisen`"));
        assert!(err("[nats]\nurls = \"x\"").contains("unknown field `urls`"));
        assert!(err("[streams]\nreplica = 3").contains("unknown field `replica`"));
        let e = err(&format!("{DELIVERY}retries = 3\n"));
        assert!(e.contains("unknown field `retries`"), "{e}");
    }

    #[test]
    fn bad_durations_name_their_key() {
        let e = err(&format!("{DELIVERY}backoff = [\"1s\", \"5x\"]\n"));
        assert!(e.starts_with("delivery[0].backoff[1]: `5x`"), "{e}");
        let e = err("[streams]\nduplicate_window = \"two hours\"\n");
        assert!(e.starts_with("streams.duplicate_window"), "{e}");
        let e = err(&format!("{DELIVERY}timeout = \"0s\"\n"));
        assert!(e.starts_with("delivery[0].timeout"), "{e}");
    }

    #[test]
    fn bad_subject_patterns_are_refused() {
        let e = err("[publish]\nallow_subjects = [\"greentic.messaging..>\"]\n");
        assert!(e.starts_with("publish.allow_subjects[0]"), "{e}");
        let e = err("[publish]\nallow_subjects = [\"foo.>\"]\n");
        assert!(e.contains("greentic."), "{e}");
        let e = err("[publish]\nallow_subjects = [\"greentic.dlq.>\"]\n");
        assert!(e.contains("dead-letter"), "{e}");
        let e = err(&DELIVERY.replace(
            "greentic.messaging.ingress.>",
            "greentic.messaging.egress.>",
        ));
        assert!(e.starts_with("delivery[0].filter_subject"), "{e}");
    }

    #[test]
    fn bad_deliveries_are_refused() {
        let e = err(&DELIVERY.replace("GREENTIC_INGRESS", "INGRESS"));
        assert!(e.starts_with("delivery[0].stream"), "{e}");
        let e = err(&DELIVERY.replace("name = \"ingress\"", "name = \"in.gress\""));
        assert!(e.starts_with("delivery[0].name"), "{e}");
        let e = err(&DELIVERY.replace("http://127.0.0.1:3000", "ftp://127.0.0.1:3000"));
        assert!(e.starts_with("delivery[0].endpoint"), "{e}");
        let e = err(&format!("{DELIVERY}{DELIVERY}"));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&format!("{DELIVERY}concurrency = 0\n"));
        assert!(e.starts_with("delivery[0].concurrency"), "{e}");
        let e = err(&format!("{DELIVERY}backoff = []\n"));
        assert!(e.starts_with("delivery[0].backoff"), "{e}");
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let c = parse(DELIVERY).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(PUB) && !shown.contains(DEL));
    }

    #[test]
    fn tokens_compare_by_content() {
        let t = Token(PUB.into());
        assert!(t.matches(PUB.as_bytes()));
        assert!(!t.matches(DEL.as_bytes()));
        assert!(!t.matches(b""));
    }
}
