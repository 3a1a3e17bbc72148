//! `GET /api/v1/sessions`, `GET /api/v1/sessions/{id}`, `DELETE /api/v1/sessions/{id}`,
//! `GET /api/v1/usage` (per-day counters of the same scope), `GET
//! /api/v1/export` (every session of the scope with its transcript and state,
//! as NDJSON pages) and `DELETE /api/v1/people/{channel}/{user}` (a person's
//! erasure, `greentic::store::people`).
//!
//! Every request takes the same steps, in the order SPEC §9 fixes: body size
//! (413, in `service::serve`), route, id syntax in path and query (400), then
//! `service::admit` (scope headers 400, token 401, claims 403, the tenant's
//! rate limits 429), then existence (404). A session of another
//! tenant, environment or team is indistinguishable from one that does not exist.

use std::time::UNIX_EPOCH;

use greentic::http::{DEFAULT_BODY_LIMIT, Request, Response};
use greentic::messaging::providers::rfc3339;
use greentic::messaging::{delivery, egress};
use greentic::service;
use greentic::service::auth::{Access, roles};
use greentic::service::limits;
use greentic::service::log::RequestLog;
use greentic::store::session::{SessionRecord, SessionStatus};
use greentic::store::sessions::{ListQuery, MAX_PAGE_LIMIT, SessionStore};
use greentic::store::usage::{self, Counts, Teams};
use greentic::store::webchat_log;
use greentic::store::{lifecycle, people};
use greentic::tenancy::ids::{ChannelId, Day, MAX_DAYS, SessionId};
use greentic::{ApiError, host::Host};
use serde_json::{Value, json};

pub const COMPONENT: &str = "session-api";

/// The key-value store (spin.toml label) holding sessions, state and indexes.
pub const STORE_LABEL: &str = "sessions";

const COLLECTION: &str = "/api/v1/sessions";
const USAGE: &str = "/api/v1/usage";
const EXPORT: &str = "/api/v1/export";
const PEOPLE: &str = "/api/v1/people/";
const PERSON: &str = "/api/v1/people/{channel}/{user}";
/// The longest provider user id accepted (they are far shorter in practice).
const MAX_USER_ID_BYTES: usize = 256;
/// Sessions per export page: each line holds a whole session (transcript
/// and state), so a page stays well within what one Spin response carries.
const EXPORT_PAGE_LIMIT: usize = 100;
const DEFAULT_PAGE_LIMIT: usize = 50;
const LIST_PARAMS: &[&str] = &["limit", "cursor", "channel", "status", "updated_since"];

/// What a request asks for, once its path and method are understood.
enum Operation {
    Usage(Vec<Day>),
    ErasePerson { channel: ChannelId, user: String },
    Export(ListQuery),
    List(ListQuery),
    Get(SessionLookup),
    Delete(SessionLookup),
}

/// A session id from the path: `None` when well-formed but unable to name a
/// session (then the answer is 404 without touching storage).
type SessionLookup = Option<SessionId>;

/// The bridge's scheduled call (bridge/README.md, "Schedules").
const SWEEP: &str = "/internal/v1/sweeps/retention";

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    if req.path.starts_with("/internal/") {
        return sweep(req, host);
    }
    service::serve(req, host, COMPONENT, DEFAULT_BODY_LIMIT, |req, log| {
        let (route, operation) = match parse(req, &Day::of(host.now_ms())) {
            Ok(parsed) => parsed,
            Err((route, e)) => return (route, Err(e)),
        };
        let outcome = service::admit(req, host, log).and_then(|(access, windows)| {
            apply(operation, &access, host, log).map(|r| r.with_rate_limit(&windows))
        });
        (route, outcome)
    })
}

/// Route, method and every id and parameter, before any credential is looked at.
fn parse(
    req: &Request,
    today: &Day,
) -> Result<(&'static str, Operation), (&'static str, ApiError)> {
    if req.path == USAGE {
        return match req.method.as_str() {
            "GET" => parse_usage_query(req, today)
                .map(|days| (USAGE, Operation::Usage(days)))
                .map_err(|e| (USAGE, e)),
            _ => Err((USAGE, ApiError::MethodNotAllowed { allow: "GET" })),
        };
    }
    if let Some(rest) = req.path.strip_prefix(PEOPLE) {
        return parse_person(req, rest).map_err(|e| (PERSON, e));
    }
    if req.path == EXPORT {
        return match req.method.as_str() {
            "GET" => parse_export_query(req)
                .map(|q| (EXPORT, Operation::Export(q)))
                .map_err(|e| (EXPORT, e)),
            _ => Err((EXPORT, ApiError::MethodNotAllowed { allow: "GET" })),
        };
    }
    let rest = req
        .path
        .strip_prefix(COLLECTION)
        .ok_or(("-", ApiError::NotFound))?;
    if rest.is_empty() {
        let route = COLLECTION;
        return match req.method.as_str() {
            "GET" => parse_list_query(req)
                .map(|q| (route, Operation::List(q)))
                .map_err(|e| (route, e)),
            _ => Err((route, ApiError::MethodNotAllowed { allow: "GET" })),
        };
    }
    let route = "/api/v1/sessions/{id}";
    let segment = rest
        .strip_prefix('/')
        .filter(|s| !s.contains('/'))
        .ok_or(("-", ApiError::NotFound))?;
    let lookup = parse_session_id(segment).map_err(|e| (route, e))?;
    match req.method.as_str() {
        "GET" => Ok((route, Operation::Get(lookup))),
        "DELETE" => Ok((route, Operation::Delete(lookup))),
        _ => Err((
            route,
            ApiError::MethodNotAllowed {
                allow: "GET, DELETE",
            },
        )),
    }
}

fn parse_session_id(segment: &str) -> Result<SessionLookup, ApiError> {
    let decoded = greentic::http::path_segments(segment);
    Ok(SessionId::parse(&decoded[0])?)
}

/// The days from `from` to `to` (inclusive, `YYYY-MM-DD`, UTC): `to`
/// defaults to today and `from` to `to`, so no dates is today, `from` alone
/// runs to today, and `to` alone is that one day.
fn parse_usage_query(req: &Request, today: &Day) -> Result<Vec<Day>, ApiError> {
    let (mut from, mut to) = (None, None);
    for (name, value) in req.query_params(&["from", "to"])? {
        let day = Day::parse(&value).ok_or_else(|| {
            ApiError::BadRequest(format!("{name} must be a date like 2026-11-29"))
        })?;
        if name == "from" {
            from = Some(day);
        } else {
            to = Some(day);
        }
    }
    let to = to.unwrap_or_else(|| today.clone());
    let from = from.unwrap_or_else(|| to.clone());
    Day::range(&from, &to).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "from must not be after to (default today), and a range covers at most {MAX_DAYS} days"
        ))
    })
}

/// `{channel}/{user}`: the channel's id and the provider's user id, each
/// one percent-decoded segment.
fn parse_person(req: &Request, rest: &str) -> Result<(&'static str, Operation), ApiError> {
    let segments = greentic::http::path_segments(rest);
    let [channel, user] = segments.as_slice() else {
        return Err(ApiError::NotFound);
    };
    let channel = ChannelId::parse(channel)?;
    if user.is_empty() || user.len() > MAX_USER_ID_BYTES {
        return Err(ApiError::BadRequest(format!(
            "a user id is 1 to {MAX_USER_ID_BYTES} bytes"
        )));
    }
    if req.method != "DELETE" {
        return Err(ApiError::MethodNotAllowed { allow: "DELETE" });
    }
    let user = user.clone();
    Ok((PERSON, Operation::ErasePerson { channel, user }))
}

/// An export page: `limit` (1 to 100 sessions) and `cursor`, as a listing's.
fn parse_export_query(req: &Request) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery {
        limit: EXPORT_PAGE_LIMIT,
        ..ListQuery::default()
    };
    for (name, value) in req.query_params(&["limit", "cursor"])? {
        if name == "cursor" {
            query.cursor = Some(value);
        } else {
            query.limit = value
                .parse()
                .ok()
                .filter(|n| (1..=EXPORT_PAGE_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit must be an integer from 1 to {EXPORT_PAGE_LIMIT}"
                    ))
                })?;
        }
    }
    Ok(query)
}

fn parse_list_query(req: &Request) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery {
        limit: DEFAULT_PAGE_LIMIT,
        ..ListQuery::default()
    };
    for (name, value) in req.query_params(LIST_PARAMS)? {
        match name.as_str() {
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limit must be an integer from 1 to {MAX_PAGE_LIMIT}"
                        ))
                    })?
            }
            "cursor" => query.cursor = Some(value),
            "channel" => query.channel = Some(ChannelId::parse(&value)?),
            "status" => {
                query.status = Some(SessionStatus::parse(&value).ok_or_else(|| {
                    ApiError::BadRequest("status must be one of active, waiting, ended".into())
                })?)
            }
            "updated_since" => {
                let at = humantime::parse_rfc3339(&value).map_err(|_| {
                    ApiError::BadRequest(
                        "updated_since must be an RFC 3339 UTC time, e.g. 2026-11-28T14:00:00Z"
                            .into(),
                    )
                })?;
                let ms = at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                query.updated_since_ms = Some(ms);
            }
            _ => unreachable!("query_params only returns allowed names"),
        }
    }
    Ok(query)
}

fn apply(
    operation: Operation,
    access: &Access,
    host: &dyn Host,
    log: &RequestLog,
) -> Result<Response, ApiError> {
    match operation {
        // Authorisation comes before existence: a reader learns nothing from DELETE.
        Operation::Delete(_) => access.require_any_role(&[roles::WRITER, roles::ADMIN])?,
        // An export is everything of the scope at once, and an erasure
        // cannot be undone: the tenant's admins only.
        Operation::Export(_) | Operation::ErasePerson { .. } => {
            access.require_any_role(&[roles::ADMIN])?
        }
        _ => {}
    }
    let kv = host.open_store(STORE_LABEL)?;
    let store = SessionStore::new(kv.as_ref());
    match operation {
        Operation::Usage(days) => {
            let teams = if access.team_given {
                Teams::Only(vec![access.ctx.team_token().to_owned()])
            } else {
                match &access.principal.teams {
                    Some(teams) => Teams::Only(teams.clone()),
                    None => Teams::All,
                }
            };
            let mut totals = Counts::default();
            let mut per_day = Vec::new();
            let limits_kv = host.open_store(limits::STORE_LABEL)?;
            let counted =
                usage::read_days(kv.as_ref(), limits_kv.as_ref(), &access.ctx, &teams, &days)?;
            for (day, counts) in days.iter().zip(counted) {
                totals.add(&counts);
                per_day.push(json!({ "date": day.as_str(), "counts": counts }));
            }
            let (_, limits) = limits::standing(host, access.ctx.tenant_id())?;
            Ok(Response::json(
                200,
                &json!({ "days": per_day, "totals": totals, "limits": limits }),
            ))
        }
        Operation::List(query) => {
            let page = store.list(&access.list_scope(), &query)?;
            let sessions: Vec<Value> = page
                .sessions
                .iter()
                .map(|s| session_json(s, false))
                .collect();
            Ok(Response::json(
                200,
                &json!({ "sessions": sessions, "next_cursor": page.next_cursor }),
            ))
        }
        Operation::ErasePerson { channel, user } => {
            let in_scope = |team: &str| access.can_see_team(team);
            let erased = with_session_data(host, kv.as_ref(), |stores| {
                Ok(people::erase(
                    stores,
                    &access.ctx,
                    &channel,
                    &user,
                    in_scope,
                    host.now_ms(),
                )?)
            })?
            .ok_or(ApiError::NotFound)?;
            // The audit line: who erased how much, never whom.
            log.info(
                "person.erased",
                json!({ "channel": channel.as_str(), "by": access.principal.subject, "erased": erased }),
            );
            Ok(Response::json(200, &erased))
        }
        Operation::Export(query) => {
            let page = store.list(&access.list_scope(), &query)?;
            let mut body = Vec::new();
            for record in &page.sessions {
                let mut line = session_json(record, true);
                line["state"] = Value::Object(store.state(&record.ctx, &record.id)?);
                serde_json::to_writer(&mut body, &line).expect("JSON values always serialise");
                body.push(b'\n');
            }
            log.info(
                "sessions.exported",
                json!({ "sessions": page.sessions.len(), "by": access.principal.subject }),
            );
            let response = Response {
                status: 200,
                headers: vec![("content-type".into(), "application/x-ndjson".into())],
                body,
            };
            Ok(match page.next_cursor {
                Some(cursor) => response.with_header("x-next-cursor", cursor),
                None => response,
            })
        }
        Operation::Get(lookup) => {
            let (ctx, record) = find(&store, access, lookup)?;
            let state = store.state(&ctx, &record.id)?;
            let mut body = session_json(&record, true);
            body["state"] = Value::Object(state);
            Ok(Response::json(200, &body))
        }
        Operation::Delete(lookup) => {
            let (ctx, record) = find(&store, access, lookup)?;
            // Everything of the session goes: its web chat log and send
            // progress too, not only what the sessions store holds.
            let forgotten = with_session_data(host, kv.as_ref(), |stores| {
                Ok(lifecycle::forget_session(stores, &ctx, &record.id)?)
            })?;
            if forgotten.is_none() {
                return Err(ApiError::NotFound);
            }
            log.info(
                "session.deleted",
                json!({ "session_id": record.id, "by": access.principal.subject }),
            );
            Ok(Response::no_content())
        }
    }
}

/// Runs `use_them` over every store a session's data is in (the sessions
/// store given, and the web chat and egress stores).
fn with_session_data<T>(
    host: &dyn Host,
    sessions: &dyn greentic::store::kv::KeyValue,
    use_them: impl FnOnce(&lifecycle::Stores<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let webchat = host.open_store(webchat_log::STORE_LABEL)?;
    let egress = host.open_store(egress::STORE_LABEL)?;
    use_them(&lifecycle::Stores {
        sessions,
        webchat: webchat.as_ref(),
        egress: egress.as_ref(),
    })
}

/// The session a request names, within what the caller may see. With
/// `X-Team-ID` only that team is looked in; without it, the session's team is
/// found through its locator and must be one the token allows. Any miss is 404.
fn find(
    store: &SessionStore,
    access: &Access,
    lookup: SessionLookup,
) -> Result<(greentic::TenantCtx, SessionRecord), ApiError> {
    let id = lookup.ok_or(ApiError::NotFound)?;
    let ctx = if access.team_given {
        access.ctx.clone()
    } else {
        store
            .locate(&access.ctx, &id)?
            .filter(|ctx| access.can_see_team(ctx.team_token()))
            .ok_or(ApiError::NotFound)?
    };
    let record = store.get(&ctx, &id)?.ok_or(ApiError::NotFound)?;
    Ok((ctx, record))
}

/// The JSON face of a session record; the transcript only on a single GET.
fn session_json(record: &SessionRecord, with_transcript: bool) -> Value {
    let mut body = json!({
        "id": record.id,
        "tenant": record.ctx.tenant_id(),
        "env": record.ctx.env_id(),
        "team": record.ctx.team_id(),
        "channel": record.channel,
        "provider": record.provider,
        "conversation": { "id": record.conversation.id, "thread": record.conversation.thread },
        "user_id": record.user_id,
        "flow": record.flow.as_ref().map(|f| json!({ "name": f.name, "version": f.version })),
        "cursor_node": record.cursor_node,
        "status": record.status,
        "created_at": rfc3339(record.created_at_ms),
        "updated_at": rfc3339(record.updated_at_ms),
        "message_count": record.message_count,
    });
    if with_transcript {
        body["transcript"] = record
            .transcript
            .iter()
            .map(|t| json!({ "at": rfc3339(t.at_ms), "direction": t.direction, "text": t.text }))
            .collect();
    }
    body
}

/// `POST /internal/v1/sweeps/retention`, the bridge's only: one batch of the
/// retention sweep (`greentic::store::lifecycle`), answered with what it did
/// and whether to call again.
fn sweep(req: &Request, host: &dyn Host) -> Response {
    service::serve(req, host, COMPONENT, DEFAULT_BODY_LIMIT, |req, log| {
        if req.path != SWEEP {
            return ("-", Err(ApiError::NotFound));
        }
        if req.method != "POST" {
            return (SWEEP, Err(ApiError::MethodNotAllowed { allow: "POST" }));
        }
        let outcome = (|| {
            delivery::check_bridge_token(req, host)?;
            let (sessions, config) = (
                host.open_store(STORE_LABEL)?,
                host.open_store(greentic::store::config::STORE_LABEL)?,
            );
            let swept = with_session_data(host, sessions.as_ref(), |stores| {
                let budget = lifecycle::SWEEP_BUDGET;
                Ok(lifecycle::sweep(
                    stores,
                    config.as_ref(),
                    host.now_ms(),
                    budget,
                )?)
            })?;
            log.info("retention.swept", json!(swept));
            Ok(Response::json(200, &swept))
        })();
        (SWEEP, outcome)
    })
}
