//! Sending a reply with the provider's own API and the tenant's own
//! credentials, resolved through the broker for the reply's tenant/team.
//!
//! A message's replies go out one after the other, in order. Egress records,
//! in its own store, how many texts of a session's latest message the
//! provider has accepted, so when one fails part-way the redelivery sends
//! only the rest, and a redelivery after success sends nothing (web chat
//! needs no record: its log skips ids it has). Outcomes map onto what the
//! bridge does next: a send that may work later
//! (429, 5xx, timeouts, an unreachable broker) is [`ApiError::Unavailable`]
//! (503: redelivered with backoff); one that never will (bad token, unknown
//! chat, a refused message) is [`ApiError::Unprocessable`] (422: dead-lettered
//! with the provider's reason). Reasons quote the provider's error code or
//! description only, never a token, a URL holding one, or the message.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::flows::tenant_config::{ChannelConfig, TenantConfig};
use crate::host::Host;
use crate::http::error::ApiError;
use crate::http::{Request, Response};
use crate::messaging::delivery::Delivery;
use crate::messaging::envelope::Outbound;
use crate::messaging::providers::{secret_error, secret_name};
use crate::secrets::client::{BrokerClient, SecretsClient};
use crate::service::log::RequestLog;
use crate::store::config::Status;
use crate::store::kv::{Cas, KeyValue};
use crate::store::webchat_log::{self, Activity, ConversationLog, Participant};
use crate::tenancy::ids::ConversationId;
use crate::tenancy::{keys, subjects};

pub const VAR_SLACK_API: &str = "slack_api_url";
pub const VAR_TELEGRAM_API: &str = "telegram_api_url";
pub const VAR_TEAMS_LOGIN: &str = "teams_login_url";
pub const DEFAULT_SLACK_API: &str = "https://slack.com";
pub const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";
pub const DEFAULT_TEAMS_LOGIN: &str = "https://login.microsoftonline.com";

/// The hosts Bot Framework sends Teams activities from and takes replies at
/// (the Teams SDK's service URL validation list: public cloud, GCC, GCC High,
/// DoD, China). A reply goes only to a service URL on one of these, over
/// https, or to `teams_extra_service_url`: egress checks it itself, so the
/// outbound allow-list is not the only barrier (`*.trafficmanager.net` is a
/// namespace any Azure customer can register in).
pub const TEAMS_SERVICE_HOSTS: &[&str] = &[
    "smba.trafficmanager.net",
    "smba.onyx.prod.teams.trafficmanager.net",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
    "frontend.botapi.msg.infra.teams.microsoftonline.cn",
];

/// One more service URL base (`scheme://host[:port]`) replies may go to: a
/// sovereign cloud not in [`TEAMS_SERVICE_HOSTS`], or a test's fake.
pub const VAR_TEAMS_EXTRA_SERVICE_URL: &str = "teams_extra_service_url";

/// How long before its expiry a cached Bot Framework token is fetched anew.
const TEAMS_TOKEN_MARGIN_MS: i64 = 5 * 60 * 1000;

/// Slack `error` codes that a later retry can cure; every other is permanent.
const SLACK_TRANSIENT: &[&str] = &[
    "ratelimited",
    "service_unavailable",
    "internal_error",
    "fatal_error",
    "request_timeout",
];

/// The store egress keeps its sending progress in (see [`keys::egress_progress`]).
pub const STORE_LABEL: &str = "egress";

/// What was done with a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The provider accepted it.
    Delivered,
    /// An earlier delivery had already sent all of it (a redelivery).
    AlreadyDelivered,
    /// Not sent: its tenant is being deleted.
    Dropped,
}

/// Applies one delivery from `greentic.messaging.egress...`: the reply must
/// name the scope its subject names, and its channel must still exist; then
/// it is sent with that tenant/team's credentials.
pub fn deliver(
    host: &dyn Host,
    delivery: &Delivery<'_>,
    log: &mut RequestLog,
) -> Result<Sent, ApiError> {
    // serde's message can quote a value (the reply text): say only that the shape is wrong.
    let out = Outbound::from_json(delivery.body).map_err(|_| {
        ApiError::Unprocessable("not an outbound message this version reads".into())
    })?;
    log.set_scope(&out.tenant);
    if subjects::egress(&out.tenant, &out.channel).as_str() != delivery.subject
        || out.id != delivery.msg_id
        || !delivery.ordered_as(&out.session_id)
    {
        return Err(ApiError::Unprocessable(
            "the message's tenant, channel, id or session does not match the delivery's".into(),
        ));
    }
    let channel = TenantConfig::find_channel(host, &out.tenant, &out.channel)?
        .filter(|c| c.config.provider == out.provider)
        .ok_or_else(|| {
            ApiError::Unprocessable("the channel is not in the tenant's configuration".into())
        })?;
    if channel.status == Status::Offboarding {
        log.info(
            "reply.dropped",
            json!({ "msg_id": out.id, "reason": "its tenant is being deleted" }),
        );
        return Ok(Sent::Dropped);
    }
    let secrets = BrokerClient::new(host, "egress");
    let sent = send(host, &secrets, &channel, &out)?;
    log.info(
        "reply.sent",
        json!({
            "provider": out.provider,
            "channel": out.channel.as_str(),
            "msg_id": out.id,
            "session": out.session_id.as_str(),
            "repeat": sent == Sent::AlreadyDelivered,
        }),
    );
    Ok(sent)
}

/// Sends one text; set up once per message with the channel's credentials.
type SendText<'a> = Box<dyn FnMut(&str) -> Result<(), ApiError> + 'a>;

/// Sends `out` on its channel: the texts no earlier delivery of it got
/// accepted, in order.
pub fn send(
    host: &dyn Host,
    secrets: &dyn SecretsClient,
    channel: &ChannelConfig,
    out: &Outbound,
) -> Result<Sent, ApiError> {
    if channel.config.provider == "messaging-webchat" {
        return webchat(host, channel, out);
    }
    let progress = Progress::open(host, channel, out)?;
    let already = progress.accepted()?;
    if already == out.texts.len() {
        return Ok(Sent::AlreadyDelivered);
    }
    let mut send_text: SendText<'_> = match channel.config.provider.as_str() {
        "messaging-slack" => slack(host, secrets, channel, out)?,
        "messaging-telegram" => telegram(host, secrets, channel, out)?,
        "messaging-teams" => teams(host, secrets, channel, out)?,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "no egress for provider {other}"
            )));
        }
    };
    // Progress is written once a message is sent, and when a send fails
    // part-way, so the retry sends only what the provider had not accepted:
    // one write per message, not per text. Only a crash between two texts
    // (nothing written) makes the retry send the message's earlier texts again.
    for (n, text) in out.texts.iter().enumerate().skip(already) {
        if let Err(e) = send_text(text) {
            if n > already {
                // The failure is what the bridge needs to hear; a record that
                // cannot be written only means those texts go again.
                let _ = progress.record(n);
            }
            return Err(e);
        }
    }
    progress.record(out.texts.len())?;
    Ok(Sent::Delivered)
}

/// How far the sending of a session's recent outbound messages got: for each
/// of the latest [`PROGRESS_KEPT`] messages, its id, a digest of its texts (a
/// flow run again may write other texts under the same id), and how many of
/// them the provider accepted. One record per session, so the store grows
/// with sessions, not with messages; changed by compare-and-swap, so two
/// messages of one session in flight at once each keep their own count, and
/// a redelivery after success sends nothing.
///
/// A store failure is a 503 like any other: the bridge redelivers, and at
/// worst a text whose acceptance could not be recorded (or whose answer was
/// lost in transit) is sent again.
struct Progress<'h> {
    kv: Box<dyn KeyValue + 'h>,
    key: String,
    claim_key: String,
    message: String,
    texts: String,
}

/// Messages per session whose progress is kept: more than a session has in
/// flight at once.
const PROGRESS_KEPT: usize = 8;

/// Attempts at recording progress against concurrent writers of one session.
const PROGRESS_ATTEMPTS: usize = 8;

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct ProgressRecord {
    /// Newest last.
    messages: Vec<MessageProgress>,
    /// Random, new on every write (see `crate::store::kv`).
    #[serde(default)]
    write_id: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MessageProgress {
    message: String,
    texts: String,
    sent: usize,
}

impl<'h> Progress<'h> {
    fn open(host: &'h dyn Host, channel: &ChannelConfig, out: &Outbound) -> Result<Self, ApiError> {
        let mut digest = Sha256::new();
        for text in &out.texts {
            digest.update((text.len() as u64).to_be_bytes());
            digest.update(text.as_bytes());
        }
        Ok(Progress {
            kv: host.open_store(STORE_LABEL)?,
            key: keys::egress_progress(&channel.ctx, &out.session_id),
            claim_key: keys::egress_progress_claim(&channel.ctx, &out.session_id),
            message: out.id.clone(),
            texts: hex::encode(&digest.finalize()[..16]),
        })
    }

    /// The stored record (raw, for compare-and-swap) and what it says.
    fn read(&self) -> Result<(Option<Vec<u8>>, ProgressRecord), ApiError> {
        let raw = self.kv.get(&self.key)?;
        // An unreadable record (an older shape) counts as no progress.
        let record = raw
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        Ok((raw, record))
    }

    /// Texts of this message already accepted: 0 unless the record holds this
    /// message, with these texts.
    fn accepted(&self) -> Result<usize, ApiError> {
        Ok(self.sent_in(&self.read()?.1))
    }

    fn sent_in(&self, record: &ProgressRecord) -> usize {
        record
            .messages
            .iter()
            .find(|m| m.message == self.message && m.texts == self.texts)
            .map_or(0, |m| m.sent)
    }

    /// Records that the provider accepted the first `sent` texts.
    fn record(&self, sent: usize) -> Result<(), ApiError> {
        for attempt in 1..=PROGRESS_ATTEMPTS {
            let (raw, mut record) = self.read()?;
            if self.sent_in(&record) >= sent {
                return Ok(());
            }
            record
                .messages
                .retain(|m| !(m.message == self.message && m.texts == self.texts));
            record.messages.push(MessageProgress {
                message: self.message.clone(),
                texts: self.texts.clone(),
                sent,
            });
            let excess = record.messages.len().saturating_sub(PROGRESS_KEPT);
            record.messages.drain(..excess);
            record.write_id = crate::store::kv::write_id();
            let bytes = serde_json::to_vec(&record).expect("a progress record serialises");
            let stored = match raw {
                Some(raw) => self.kv.compare_and_swap(&self.key, &raw, &bytes)? == Cas::Swapped,
                // Spin's SQLite backend has no atomic create (a swap of an
                // absent key is an upsert): the session's first record is
                // written by whoever the store's increment picks; another
                // message of the session waits for it, then swaps. A winner
                // that died before writing must not block the session: the
                // last attempt writes anyway, at worst losing a concurrent
                // message's count (that message is then sent again only if
                // redelivered).
                None => {
                    let first = self.kv.increment(&self.claim_key, 1)? == 1;
                    if first || attempt == PROGRESS_ATTEMPTS {
                        self.kv.set(&self.key, &bytes)?;
                    }
                    first || attempt == PROGRESS_ATTEMPTS
                }
            };
            if stored {
                return Ok(());
            }
        }
        Err(ApiError::Unavailable(
            "the session's send progress kept changing, or its first record is not written yet; retry"
                .into(),
        ))
    }
}

fn resolve(
    secrets: &dyn SecretsClient,
    channel: &ChannelConfig,
    purpose: &str,
) -> Result<String, ApiError> {
    let name = secret_name(channel, purpose)?;
    let value = secrets
        .resolve(&channel.ctx, &name)
        .map_err(|e| secret_error(&name, e))?;
    String::from_utf8(value)
        .map_err(|_| ApiError::Unprocessable(format!("secret `{}` is not text", name.as_str())))
}

fn base_url(host: &dyn Host, var: &str, default: &str) -> String {
    host.variable(var)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// Sends and classifies transport failures and HTTP statuses; the provider
/// module reads the body of anything else.
fn call(host: &dyn Host, provider: &str, base: &str, req: Request) -> Result<Response, ApiError> {
    // The outbound error may quote the URL, which for Telegram holds the
    // token: say only that the call failed.
    let response = host
        .send(base, req)
        .map_err(|_| ApiError::Unavailable(format!("{provider}: the API could not be reached")))?;
    match response.status {
        429 => {
            let after = response.header("retry-after").unwrap_or("unspecified");
            Err(ApiError::Unavailable(format!(
                "{provider}: rate limited (retry after {after} s)"
            )))
        }
        500..=599 => Err(ApiError::Unavailable(format!(
            "{provider}: server error {}",
            response.status
        ))),
        _ => Ok(response),
    }
}

/// A provider's short reason, cut to a length fit for a dead letter.
fn reason(value: &Value) -> String {
    let text = value.as_str().unwrap_or("no reason given");
    text.chars().take(200).collect()
}

fn slack<'a>(
    host: &'a dyn Host,
    secrets: &dyn SecretsClient,
    channel: &ChannelConfig,
    out: &'a Outbound,
) -> Result<SendText<'a>, ApiError> {
    let token = resolve(secrets, channel, "bot_token")?;
    let base = base_url(host, VAR_SLACK_API, DEFAULT_SLACK_API);
    Ok(Box::new(move |text| {
        let mut body = json!({ "channel": out.conversation.id, "text": text });
        if let Some(thread) = &out.conversation.thread {
            body["thread_ts"] = json!(thread);
        }
        let req = Request::new("POST", "/api/chat.postMessage")
            .with_header("authorization", format!("Bearer {token}"))
            .with_header("content-type", "application/json; charset=utf-8")
            .with_body(body.to_string());
        let response = call(host, "slack", &base, req)?;
        let answer = response.json_body();
        if response.status == 200 && answer["ok"] == true {
            return Ok(());
        }
        let error = reason(&answer["error"]);
        Err(if SLACK_TRANSIENT.contains(&error.as_str()) {
            ApiError::Unavailable(format!("slack: {error}"))
        } else {
            ApiError::Unprocessable(format!("slack: {error}"))
        })
    }))
}

fn telegram<'a>(
    host: &'a dyn Host,
    secrets: &dyn SecretsClient,
    channel: &ChannelConfig,
    out: &'a Outbound,
) -> Result<SendText<'a>, ApiError> {
    let token = resolve(secrets, channel, "bot_token")?;
    let chat_id: i64 = out
        .conversation
        .id
        .parse()
        .map_err(|_| ApiError::Unprocessable("telegram: the chat id is not a number".into()))?;
    let thread = out
        .conversation
        .thread
        .as_deref()
        .and_then(|t| t.parse::<i64>().ok());
    let base = base_url(host, VAR_TELEGRAM_API, DEFAULT_TELEGRAM_API);
    Ok(Box::new(move |text| {
        let mut body = json!({ "chat_id": chat_id, "text": text });
        if let Some(thread) = thread {
            body["message_thread_id"] = json!(thread);
        }
        let req = Request::new("POST", &format!("/bot{token}/sendMessage"))
            .with_header("content-type", "application/json")
            .with_body(body.to_string());
        let response = call(host, "telegram", &base, req)?;
        let answer = response.json_body();
        if response.status != 200 || answer["ok"] != true {
            return Err(ApiError::Unprocessable(format!(
                "telegram: {} {}",
                response.status,
                reason(&answer["description"])
            )));
        }
        Ok(())
    }))
}

fn teams<'a>(
    host: &'a dyn Host,
    secrets: &dyn SecretsClient,
    channel: &ChannelConfig,
    out: &'a Outbound,
) -> Result<SendText<'a>, ApiError> {
    let app_id = channel
        .setting("app_id")
        .ok_or_else(|| ApiError::NotConfigured("the Teams channel has no app_id".into()))?;
    let password = resolve(secrets, channel, "app_password")?;
    let service_url = out
        .reply
        .service_url
        .as_deref()
        .ok_or_else(|| ApiError::Unprocessable("teams: the reply has no service URL".into()))?;
    let (service_base, service_path) = split_url(service_url)
        .ok_or_else(|| ApiError::Unprocessable("teams: the service URL is not http(s)".into()))?;
    if !is_bot_framework_host(host, &service_base) {
        return Err(ApiError::Unprocessable(
            "teams: the service URL is not a Bot Framework host".into(),
        ));
    }
    let access = teams_token(host, channel, app_id, &password)?;

    let conversation: String = percent_encoding::utf8_percent_encode(
        &out.conversation.id,
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let mut path = format!("{service_path}v3/conversations/{conversation}/activities");
    if let Some(reply_to) = &out.reply.message_id {
        let encoded =
            percent_encoding::utf8_percent_encode(reply_to, percent_encoding::NON_ALPHANUMERIC);
        path.push_str(&format!("/{encoded}"));
    }
    Ok(Box::new(move |text| {
        let mut activity = json!({ "type": "message", "text": text });
        if let Some(reply_to) = &out.reply.message_id {
            activity["replyToId"] = json!(reply_to);
        }
        let req = Request::new("POST", &path)
            .with_header("authorization", format!("Bearer {access}"))
            .with_header("content-type", "application/json")
            .with_body(activity.to_string());
        let response = call(host, "teams", &service_base, req)?;
        if !(200..300).contains(&response.status) {
            return Err(ApiError::Unprocessable(format!(
                "teams: {} {}",
                response.status,
                reason(&response.json_body()["error"]["code"])
            )));
        }
        Ok(())
    }))
}

/// Whether replies may go to `base` (`scheme://host[:port]`).
fn is_bot_framework_host(host: &dyn Host, base: &str) -> bool {
    let documented = base
        .strip_prefix("https://")
        .is_some_and(|h| TEAMS_SERVICE_HOSTS.contains(&h));
    let extra = host
        .variable(VAR_TEAMS_EXTRA_SERVICE_URL)
        .is_some_and(|extra| !extra.trim().is_empty() && extra.trim_end_matches('/') == base);
    documented || extra
}

/// A Bot Framework access token for the channel's app: the one cached in the
/// egress store while it has more than a few minutes left (Microsoft
/// rate-limits its token endpoint, and a token is good for an hour), else a
/// new one from the client-credentials grant, cached for the next replies.
/// The cache holds a bearer token, so it stays in the egress store, which
/// only egress declares.
fn teams_token(
    host: &dyn Host,
    channel: &ChannelConfig,
    app_id: &str,
    password: &str,
) -> Result<String, ApiError> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Cached {
        app_id: String,
        access_token: String,
        expires_at_ms: i64,
    }
    let kv = host.open_store(STORE_LABEL)?;
    let key = keys::teams_access_token(&channel.ctx, &channel.channel);
    let now = host.now_ms();
    let cached: Option<Cached> = kv.get(&key)?.and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(c) =
        cached.filter(|c| c.app_id == app_id && c.expires_at_ms - TEAMS_TOKEN_MARGIN_MS > now)
    {
        return Ok(c.access_token);
    }
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", app_id)
        .append_pair("client_secret", password)
        .append_pair("scope", "https://api.botframework.com/.default")
        .finish();
    let login = base_url(host, VAR_TEAMS_LOGIN, DEFAULT_TEAMS_LOGIN);
    let token_req = Request::new("POST", "/botframework.com/oauth2/v2.0/token")
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_body(form);
    let answer = call(host, "teams login", &login, token_req)?;
    let body = answer.json_body();
    let access = body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "teams login: {} {}",
                answer.status,
                reason(&body["error"])
            ))
        })?;
    let expires_in_ms = body["expires_in"].as_i64().unwrap_or(0) * 1000;
    let fresh = Cached {
        app_id: app_id.to_owned(),
        access_token: access.clone(),
        expires_at_ms: now + expires_in_ms,
    };
    // A token that could not be cached still serves this reply.
    let _ = kv.set(
        &key,
        &serde_json::to_vec(&fresh).expect("a token record serialises"),
    );
    Ok(access)
}

/// `https://host[:port]/path/` -> (`https://host[:port]`, `/path/`).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("https://")
        .map(|r| ("https://", r))
        .or_else(|| url.strip_prefix("http://").map(|r| ("http://", r)))?;
    let (scheme, rest) = rest;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return None;
    }
    let mut path = format!("/{path}");
    if !path.ends_with('/') {
        path.push('/');
    }
    Some((format!("{scheme}{host}"), path))
}

fn webchat(host: &dyn Host, channel: &ChannelConfig, out: &Outbound) -> Result<Sent, ApiError> {
    let conversation = ConversationId::parse(&out.conversation.id)
        .map_err(|_| ApiError::Unprocessable("webchat: not a web chat conversation id".into()))?;
    let kv = host.open_store(webchat_log::STORE_LABEL)?;
    let log = ConversationLog::new(kv.as_ref(), &channel.ctx, &channel.channel, &conversation);
    let mut appended = false;
    for (n, text) in out.texts.iter().enumerate() {
        let activity = Activity {
            id: format!("{}-{n}", out.id),
            kind: "message".into(),
            from: Participant {
                id: "bot".into(),
                name: channel
                    .team_name
                    .clone()
                    .or(Some(channel.tenant_name.clone())),
                role: "bot".into(),
            },
            text: text.clone(),
            timestamp: crate::messaging::providers::rfc3339(host.now_ms()),
            reply_to_id: out.reply.message_id.clone(),
        };
        appended |= log.append(&activity)?;
    }
    Ok(if appended {
        Sent::Delivered
    } else {
        Sent::AlreadyDelivered
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_split_into_host_and_path() {
        assert_eq!(
            split_url("https://smba.trafficmanager.net/amer/"),
            Some(("https://smba.trafficmanager.net".into(), "/amer/".into()))
        );
        assert_eq!(
            split_url("http://127.0.0.1:9000"),
            Some(("http://127.0.0.1:9000".into(), "/".into()))
        );
        assert_eq!(split_url("ftp://x/"), None);
        assert_eq!(split_url("https:///x"), None);
    }
}
