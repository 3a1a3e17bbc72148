//! Turns one delivered ingress message into a conversation step: the flow of
//! its tenant/team/channel runs over the session's memory, the memory is
//! committed by compare-and-swap, replies go out through the bridge, and the
//! session record and usage counters follow.
//!
//! Exactly-once effect over at-least-once delivery: the session memory
//! remembers the ids it applied, with their replies. A redelivery of an
//! applied message changes nothing and re-publishes the same replies under the
//! same `Nats-Msg-Id`, which JetStream drops as a duplicate, so a crash between
//! commit and publish loses no reply and sends none twice. Two messages for one
//! session at once: the loser of the compare-and-swap re-runs the flow on the
//! winner's memory, so neither is lost.
//!
//! [`deliver_ingress`] is that pipeline, one named step a line:
//! `check_delivery`, `find_flow`, `apply_turn` (the compare-and-swap loop,
//! the commit point; a session's first message creates it there),
//! `publish_replies`, `follow_record`, `count_usage`.
//!
//! What a message costs the store, in write transactions: a later message of
//! a session three (the memory's swap, the record's swap, one usage
//! increment); a session's first message five (the memory's claim, its slot
//! in the team index, its slot in its person's index, one batch with the
//! record already following the memory, the usage increment), six when it
//! is its team's first in the env (the team's registration).
//! tests/executor.rs counts them.

use serde_json::json;

use crate::flows::engine::{self, TurnInput};
use crate::flows::flow::Flow;
use crate::flows::tenant_config::{ChannelConfig, TenantConfig};
use crate::host::Host;
use crate::http::error::ApiError;
use crate::messaging::bridge::{BridgeClient, MAX_PUBLISH_BYTES};
use crate::messaging::delivery::Delivery;
use crate::messaging::envelope::{Envelope, Outbound};
use crate::service::log::RequestLog;
use crate::store::config::Status;
use crate::store::kv::KeyValue;
use crate::store::people;
use crate::store::session::{FlowRef, Followed, NewSession, SessionMemory, SessionRecord};
use crate::store::sessions::{SessionStore, StoreError};
use crate::store::usage;
use crate::tenancy::ids::{SessionId, TenantCtx};
use crate::tenancy::subjects;

/// The key-value store (spin.toml label) holding sessions, their memory and usage.
pub const STORE_LABEL: &str = "sessions";

/// Compare-and-swap rounds before giving up with 503 (the bridge redelivers).
const MAX_APPLY_ATTEMPTS: usize = 8;

/// A delivery that finds a session's memory still being created waits this
/// many attempts for its creator, then assumes it died and creates it itself.
const CLAIM_PATIENCE: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub session_id: SessionId,
    pub replies: usize,
    /// The message had been applied before; only its replies were re-published.
    pub duplicate: bool,
}

/// Applies one delivery from `greentic.messaging.ingress...`.
pub fn deliver_ingress(
    host: &dyn Host,
    delivery: &Delivery<'_>,
    log: &mut RequestLog,
) -> Result<Delivered, ApiError> {
    let envelope = check_delivery(delivery, log)?;
    let (channel, flow) = find_flow(host, &envelope)?;
    if channel.status == Status::Offboarding {
        // Applying it would write what the deletion is removing.
        log.info(
            "message.dropped",
            json!({ "msg_id": envelope.id, "reason": "its tenant is being deleted" }),
        );
        return Ok(Delivered {
            session_id: envelope.session_id.clone(),
            replies: 0,
            duplicate: false,
        });
    }
    let kv = host.open_store(STORE_LABEL)?;
    let session = Session {
        kv: kv.as_ref(),
        store: SessionStore::new(kv.as_ref()),
        ctx: &envelope.tenant,
        id: &envelope.session_id,
        now: host.now_ms(),
    };
    let record = session.store.get(session.ctx, session.id)?;
    if record.is_none() && sent_before_erasure(&session, &envelope)? {
        // Its person was erased after sending it (store::people): applying
        // it would bring their conversation back.
        log.info(
            "message.dropped",
            json!({ "msg_id": envelope.id, "reason": "its sender was erased after sending it" }),
        );
        return Ok(Delivered {
            session_id: session.id.clone(),
            replies: 0,
            duplicate: false,
        });
    }
    let input = turn_input(&envelope, &channel, record.as_ref());
    let applied = apply_turn(
        &session,
        &envelope,
        &flow,
        &input,
        record.is_some(),
        delivery.attempt,
        log,
    )?;

    // Everything after the commit is idempotent, so a redelivery of a
    // message applied before (duplicate) completes whatever a failure left
    // undone: the replies go out again under the same `Nats-Msg-Id`s (JetStream
    // drops the copies), and the record catches up with the memory.
    publish_replies(host, &envelope, &applied.replies)?;

    // The record is the session's face (API, listings): it follows the
    // committed memory, taking in every message the memory applied since the
    // revision it shows, in order. Usage counts what the stored follow-up
    // took in, after it is stored: a store failure in between leaves that
    // message uncounted rather than counting it twice on the retry.
    let took_in = match applied.created {
        Some(took_in) => took_in,
        None => follow_record(&session, &envelope, &flow, &applied.memory, log)?,
    };
    count_usage(&session, took_in, delivery.delayed_ms.is_some())?;

    log.info(
        "message.applied",
        json!({
            "msg_id": envelope.id,
            "session": session.id.as_str(),
            "flow": flow.name,
            "replies": applied.replies.len(),
            "duplicate": applied.duplicate,
        }),
    );
    Ok(Delivered {
        session_id: session.id.clone(),
        replies: applied.replies.len(),
        duplicate: applied.duplicate,
    })
}

/// The session a delivery is applied to, and what every step after the
/// lookup reads and writes it with: one store, one scope, one clock reading.
struct Session<'a> {
    kv: &'a dyn KeyValue,
    store: SessionStore<'a>,
    ctx: &'a TenantCtx,
    id: &'a SessionId,
    now: i64,
}

/// A message's effect as the committed memory holds it.
struct Applied {
    replies: Vec<String>,
    memory: SessionMemory,
    /// Applied by an earlier delivery: this one only completes what follows the commit.
    duplicate: bool,
    /// The message created its session, record included: what the record
    /// took in (nothing is left for `follow_record`).
    created: Option<Followed>,
}

/// Whether the envelope's sender was erased in its team at or after the
/// time the provider says the message was sent. One read, made only for a
/// message whose session does not exist.
fn sent_before_erasure(session: &Session<'_>, envelope: &Envelope) -> Result<bool, ApiError> {
    let Some(erased) = people::erased_at(
        session.kv,
        session.ctx,
        &envelope.channel,
        &envelope.sender.id,
    )?
    else {
        return Ok(false);
    };
    let sent = humantime::parse_rfc3339_weak(&envelope.timestamp)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    Ok(sent.is_some_and(|sent| sent <= erased))
}

/// The delivery's envelope, once it agrees with what the bridge states.
fn check_delivery(delivery: &Delivery<'_>, log: &mut RequestLog) -> Result<Envelope, ApiError> {
    // serde's message can quote the offending value (a message text): say
    // only that the shape is wrong.
    let envelope = Envelope::from_json(delivery.body)
        .map_err(|_| ApiError::Unprocessable("not a message envelope this version reads".into()))?;
    let ctx = &envelope.tenant;
    log.set_scope(ctx);
    // The subject is what streams and permissions key on: an envelope that
    // claims another scope than its subject is refused, never trusted.
    if subjects::ingress(ctx, &envelope.channel).as_str() != delivery.subject
        || envelope.id != delivery.msg_id
    {
        return Err(ApiError::Unprocessable(
            "the envelope's tenant, channel or id does not match the delivery's subject".into(),
        ));
    }
    let expected = SessionId::derive(
        ctx,
        &envelope.channel,
        &envelope.conversation,
        &envelope.sender.id,
    );
    if envelope.session_id != expected || !delivery.ordered_as(&expected) {
        return Err(ApiError::Unprocessable(
            "the envelope's session id is not its conversation's, or not the one it was ordered by"
                .into(),
        ));
    }
    Ok(envelope)
}

/// The channel the message came in on and the flow it runs, from the
/// tenant's current configuration.
fn find_flow(host: &dyn Host, envelope: &Envelope) -> Result<(ChannelConfig, Flow), ApiError> {
    let ctx = &envelope.tenant;
    let tenant = TenantConfig::load(host, ctx.tenant_id())?;
    let channel = tenant
        .as_ref()
        .and_then(|t| t.channel(ctx, &envelope.channel))
        .ok_or_else(|| {
            ApiError::Unprocessable("the channel is not in the tenant's configuration".into())
        })?;
    let flow_name = channel
        .flow
        .clone()
        .ok_or_else(|| ApiError::Unprocessable("the channel has no flow".into()))?;
    let flow = tenant
        .and_then(|mut t| t.flows.remove(&flow_name))
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "flow `{flow_name}` is not in the tenant's configuration"
            ))
        })?;
    Ok((channel, flow))
}

/// The record a session's first message creates, already following `memory`.
fn new_record(
    session: &Session<'_>,
    envelope: &Envelope,
    flow_ref: &FlowRef,
    memory: &SessionMemory,
) -> (SessionRecord, Followed) {
    let new = NewSession {
        channel: envelope.channel.clone(),
        provider: envelope.provider.clone(),
        conversation: envelope.conversation.clone(),
        user_id: envelope.sender.id.clone(),
        flow: Some(flow_ref.clone()),
    };
    let mut record = SessionRecord::new(session.ctx, new, session.now, 0);
    let took_in = record.follow(memory, flow_ref);
    (record, took_in)
}

/// What the flow's templates see: the message, its session and its channel.
fn turn_input(
    envelope: &Envelope,
    channel: &ChannelConfig,
    record: Option<&SessionRecord>,
) -> TurnInput {
    let ctx = &envelope.tenant;
    TurnInput {
        text: envelope.text.clone(),
        sender_id: envelope.sender.id.clone(),
        sender_name: envelope.sender.name.clone(),
        channel: envelope.channel.to_string(),
        session_id: envelope.session_id.to_string(),
        message_count: record.map_or(0, |r| r.message_count) + 1,
        tenant_id: ctx.tenant_id().to_owned(),
        tenant_name: channel.tenant_name.clone(),
        team_id: ctx.team_id().map(str::to_owned),
        team_name: channel.team_name.clone(),
    }
}

/// Runs the flow over the session's memory and commits the result by
/// compare-and-swap: the commit point. A message the memory already applied
/// is not run again; the loser of a swap runs it again on the winner's memory.
/// A session's first message creates it: record, memory and index entry in
/// one batch (`has_record`: a record exists already, without memory).
fn apply_turn(
    session: &Session<'_>,
    envelope: &Envelope,
    flow: &Flow,
    input: &TurnInput,
    has_record: bool,
    attempt: u32,
    log: &RequestLog,
) -> Result<Applied, ApiError> {
    let (ctx, id, now) = (session.ctx, session.id, session.now);
    for _ in 0..MAX_APPLY_ATTEMPTS {
        let current = session.store.memory(ctx, id)?;
        if let Some((_, memory)) = &current
            && let Some(done) = memory.processed(&envelope.id)
        {
            return Ok(Applied {
                replies: done.replies.clone(),
                memory: memory.clone(),
                duplicate: true,
                created: None,
            });
        }
        let (raw, mut memory) = match current {
            Some((raw, memory)) => (Some(raw), memory),
            None => (None, SessionMemory::new()),
        };
        if memory.closed {
            // A closed conversation that hears from its person again starts over.
            memory.closed = false;
            memory.waiting_at = None;
        }
        let turn =
            match engine::run_turn(flow, memory.waiting_at.as_deref(), &mut memory.vars, input) {
                Ok(turn) => turn,
                Err(e) => {
                    usage::record_errors(session.kv, ctx, 1, now)?;
                    log.warn(
                    "flow.failed",
                    json!({ "flow": flow.name, "msg_id": envelope.id, "reason": e.to_string() }),
                );
                    return Err(ApiError::Unprocessable(e.to_string()));
                }
            };
        // Refused before the commit, so no committed turn can lose its
        // replies to the bridge's payload limit: the message is dead-lettered
        // with the reason instead.
        let outbound_bytes = Outbound::reply_to(envelope, turn.replies.clone())
            .to_json()
            .len();
        if outbound_bytes > MAX_PUBLISH_BYTES {
            usage::record_errors(session.kv, ctx, 1, now)?;
            log.warn(
                "flow.replies_too_large",
                json!({ "flow": flow.name, "msg_id": envelope.id, "bytes": outbound_bytes }),
            );
            return Err(ApiError::Unprocessable(format!(
                "the turn's replies make a message of {outbound_bytes} bytes; at most {MAX_PUBLISH_BYTES} go out at once"
            )));
        }
        if let Some(node) = &turn.restarted_from {
            log.info(
                "flow.restarted",
                json!({ "flow": flow.name, "version": flow.version, "msg_id": envelope.id, "missing_node": node }),
            );
        }
        memory.waiting_at = turn.waiting_at.clone();
        memory.closed = turn.closed;
        memory.remember(&envelope.id, &envelope.text, now, turn.replies.clone());
        // The first memory of a session is written by whoever the store's
        // increment picks, claimed only now that the turn has succeeded, so
        // a refused first turn leaves nothing behind for the next message.
        if raw.is_none() && !session.store.claim_memory(ctx, id)? && attempt < CLAIM_PATIENCE {
            return Err(ApiError::Unavailable(
                "the session's memory is being created; retry".into(),
            ));
        }
        if raw.is_none() && !has_record {
            let flow_ref = FlowRef {
                name: flow.name.clone(),
                version: flow.version.clone(),
            };
            let (record, took_in) = new_record(session, envelope, &flow_ref, &memory);
            session.store.insert(ctx, record, Some(&mut memory))?;
            return Ok(Applied {
                replies: turn.replies,
                memory,
                duplicate: false,
                created: Some(took_in),
            });
        }
        if session
            .store
            .swap_memory(ctx, id, raw.as_deref(), &mut memory)?
        {
            return Ok(Applied {
                replies: turn.replies,
                memory,
                duplicate: false,
                created: None,
            });
        }
    }
    Err(ApiError::Unavailable(
        "the session kept changing; retry".into(),
    ))
}

/// Publishes the turn's replies to `greentic.messaging.egress...` as one
/// outbound message, under the id derived from the inbound one.
fn publish_replies(
    host: &dyn Host,
    envelope: &Envelope,
    replies: &[String],
) -> Result<(), ApiError> {
    if !replies.is_empty() {
        let outbound = Outbound::reply_to(envelope, replies.to_vec());
        let egress = subjects::egress(&envelope.tenant, &envelope.channel);
        BridgeClient::new(host).publish(
            &egress,
            &outbound.id,
            &outbound.session_id,
            None,
            outbound.to_json(),
        )?;
    }
    Ok(())
}

/// Brings the session record up to the committed memory; what it took in is
/// what usage counts.
fn follow_record(
    session: &Session<'_>,
    envelope: &Envelope,
    flow: &Flow,
    memory: &SessionMemory,
    log: &RequestLog,
) -> Result<Followed, ApiError> {
    let flow_ref = FlowRef {
        name: flow.name.clone(),
        version: flow.version.clone(),
    };
    let mut took_in = Followed::default();
    let followed = session
        .store
        .update_if(session.ctx, session.id, session.now, |record| {
            took_in = record.follow(memory, &flow_ref);
            took_in.messages > 0 || took_in.moved
        });
    match followed {
        Ok(_) => {}
        // Deleted (by an operator, an erasure or the retention sweep) while
        // this turn ran: its replies are out, so the delivery is done, not a
        // 404 the bridge would dead-letter. The memory this turn committed
        // would outlive the record, found by no listing, export, erasure or
        // sweep: it goes too.
        Err(StoreError::NotFound) => {
            took_in = Followed::default();
            session.store.forget_memory(session.ctx, session.id)?;
            log.info(
                "session.deleted_during_turn",
                json!({ "msg_id": envelope.id, "session": session.id.as_str() }),
            )
        }
        Err(e) => return Err(e.into()),
    }
    Ok(took_in)
}

/// Counts the messages and replies the record took in: one increment; one
/// more when the bridge held this message for its tenant's rate (counted
/// with the message itself, so a redelivery does not count it twice).
fn count_usage(session: &Session<'_>, took_in: Followed, delayed: bool) -> Result<(), ApiError> {
    usage::record_traffic(
        session.kv,
        session.ctx,
        took_in.messages,
        took_in.replies,
        session.now,
    )?;
    if delayed && took_in.messages > 0 {
        usage::record_delayed(session.kv, session.ctx, 1, session.now)?;
    }
    Ok(())
}
