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

use serde_json::json;

use crate::bridge::{BridgeClient, MAX_PUBLISH_BYTES};
use crate::delivery::Delivery;
use crate::engine::{self, TurnInput};
use crate::envelope::{Envelope, Outbound};
use crate::error::ApiError;
use crate::host::Host;
use crate::log::RequestLog;
use crate::session::{FlowRef, Followed, NewSession, SessionId, SessionMemory};
use crate::session_store::{SessionStore, StoreError};
use crate::subjects;
use crate::tenant_config::TenantConfig;
use crate::usage::{self, Counter};

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
    // serde's message can quote the offending value (a message text): say
    // only that the shape is wrong.
    let envelope = Envelope::from_json(delivery.body)
        .map_err(|_| ApiError::Unprocessable("not a message envelope this version reads".into()))?;
    let ctx = envelope.tenant.clone();
    log.set_scope(&ctx);
    // The subject is what streams and permissions key on: an envelope that
    // claims another scope than its subject is refused, never trusted.
    if subjects::ingress(&ctx, &envelope.channel).as_str() != delivery.subject
        || envelope.id != delivery.msg_id
    {
        return Err(ApiError::Unprocessable(
            "the envelope's tenant, channel or id does not match the delivery's subject".into(),
        ));
    }
    let expected = SessionId::derive(
        &ctx,
        &envelope.channel,
        &envelope.conversation,
        &envelope.sender.id,
    );
    if envelope.session_id != expected {
        return Err(ApiError::Unprocessable(
            "the envelope's session id is not its conversation's".into(),
        ));
    }
    let tenant = TenantConfig::load(host, ctx.tenant_id())?;
    let channel = tenant
        .as_ref()
        .and_then(|t| t.channel(&ctx, &envelope.channel))
        .ok_or_else(|| ApiError::Unprocessable("the channel is not in the bundle".into()))?;
    let flow_name = channel
        .flow
        .clone()
        .ok_or_else(|| ApiError::Unprocessable("the channel has no flow".into()))?;
    let flow = tenant
        .as_ref()
        .and_then(|t| t.flows.get(&flow_name))
        .ok_or_else(|| {
            ApiError::Unprocessable(format!("flow `{flow_name}` is not in the bundle"))
        })?;

    let kv = host.open_store(STORE_LABEL)?;
    let store = SessionStore::new(kv.as_ref());
    let now = host.now_ms();
    let record = match store.get(&ctx, &envelope.session_id)? {
        Some(record) => record,
        None => match store.create(
            &ctx,
            NewSession {
                channel: envelope.channel.clone(),
                provider: envelope.provider.clone(),
                conversation: envelope.conversation.clone(),
                user_id: envelope.sender.id.clone(),
                flow: Some(FlowRef {
                    name: flow.name.clone(),
                    version: flow.version.clone(),
                }),
            },
            now,
        ) {
            Ok(record) => record,
            Err(StoreError::AlreadyExists) => store
                .get(&ctx, &envelope.session_id)?
                .ok_or(ApiError::Unavailable("session is being created".into()))?,
            Err(e) => return Err(e.into()),
        },
    };

    let input = TurnInput {
        text: envelope.text.clone(),
        sender_id: envelope.sender.id.clone(),
        sender_name: envelope.sender.name.clone(),
        channel: envelope.channel.to_string(),
        session_id: envelope.session_id.to_string(),
        message_count: record.message_count + 1,
        tenant_id: ctx.tenant_id().to_owned(),
        tenant_name: channel.tenant_name.clone(),
        team_id: ctx.team_id().map(str::to_owned),
        team_name: channel.team_name.clone(),
    };
    let id = &envelope.session_id;
    let mut applied = None;
    for _ in 0..MAX_APPLY_ATTEMPTS {
        let current = store.memory(&ctx, id)?;
        if let Some((_, memory)) = &current
            && let Some(done) = memory.processed(&envelope.id)
        {
            applied = Some((done.replies.clone(), memory.clone(), true));
            break;
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
            match engine::run_turn(flow, memory.waiting_at.as_deref(), &mut memory.vars, &input) {
                Ok(turn) => turn,
                Err(e) => {
                    usage::record(kv.as_ref(), &ctx, Counter::Errors, 1, now)?;
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
        let outbound_bytes = Outbound::reply_to(&envelope, turn.replies.clone())
            .to_json()
            .len();
        if outbound_bytes > MAX_PUBLISH_BYTES {
            usage::record(kv.as_ref(), &ctx, Counter::Errors, 1, now)?;
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
        if raw.is_none() && !store.claim_memory(&ctx, id)? && delivery.attempt < CLAIM_PATIENCE {
            return Err(ApiError::Unavailable(
                "the session's memory is being created; retry".into(),
            ));
        }
        if store.swap_memory(&ctx, id, raw.as_deref(), &mut memory)? {
            applied = Some((turn.replies, memory, false));
            break;
        }
    }
    let Some((replies, memory, duplicate)) = applied else {
        return Err(ApiError::Unavailable(
            "the session kept changing; retry".into(),
        ));
    };

    // Everything after the commit is idempotent, so a redelivery of a
    // message applied before (duplicate) completes whatever a failure left
    // undone: the replies go out again under the same `Nats-Msg-Id`s (JetStream
    // drops the copies), and the record catches up with the memory.
    if !replies.is_empty() {
        let outbound = Outbound::reply_to(&envelope, replies.clone());
        let egress = subjects::egress(&ctx, &envelope.channel);
        BridgeClient::new(host).publish(&egress, &outbound.id, outbound.to_json())?;
    }

    // The record is the session's face (API, listings): it follows the
    // committed memory, taking in every message the memory applied since the
    // revision it shows, in order. Usage counts what the stored follow-up
    // took in, after it is stored: a store failure in between leaves that
    // message uncounted rather than counting it twice on the retry.
    let flow_ref = FlowRef {
        name: flow.name.clone(),
        version: flow.version.clone(),
    };
    let mut took_in = Followed::default();
    let followed = store.update_if(&ctx, id, now, |record| {
        took_in = record.follow(&memory, &flow_ref);
        took_in.messages > 0 || took_in.moved
    });
    match followed {
        Ok(_) => {}
        // Deleted by an operator while this turn ran: the turn is applied
        // and its replies are out, so the delivery is done, not a 404 the
        // bridge would dead-letter; there is just no record left to follow.
        Err(StoreError::NotFound) => {
            took_in = Followed::default();
            log.info(
                "session.deleted_during_turn",
                json!({ "msg_id": envelope.id, "session": id.as_str() }),
            )
        }
        Err(e) => return Err(e.into()),
    }
    if took_in.messages > 0 {
        usage::record(
            kv.as_ref(),
            &ctx,
            Counter::MessagesIn,
            took_in.messages as i64,
            now,
        )?;
    }
    if took_in.replies > 0 {
        usage::record(
            kv.as_ref(),
            &ctx,
            Counter::RepliesOut,
            took_in.replies as i64,
            now,
        )?;
    }
    log.info(
        "message.applied",
        json!({
            "msg_id": envelope.id,
            "session": id.as_str(),
            "flow": flow.name,
            "replies": replies.len(),
            "duplicate": duplicate,
        }),
    );
    Ok(Delivered {
        session_id: id.clone(),
        replies: replies.len(),
        duplicate,
    })
}
