//! A person's data, found without a scan, and erased (GDPR art. 17).
//!
//! A person is a provider's user id on one channel. Every session they start
//! takes a slot in their person index (`index/{tenant}/{env}/people/{digest}`,
//! written in the session's creation batch), so an erasure reads their
//! sessions directly, whatever else the store holds. Erasing forgets each
//! of their sessions in the caller's scope everywhere it is kept
//! ([`crate::store::lifecycle::forget_session`]). Usage counters are
//! counts, not personal data, and stay.
//!
//! What stays: the erasure marker below (a digest of the id and a time),
//! kept so late messages are recognised; a web chat conversation's last
//! rate-limit window (a count under a digest); usage counts. The digests are
//! unsalted SHA-256, so for ids one can enumerate (Telegram's numbers) they
//! are pseudonymous, not anonymous.
//!
//! Messages of the person still in the NATS streams when they are erased
//! would start a new session on delivery. So the erasure leaves a marker per
//! team with its time (`erased/...`, a digest and a time, nothing else), and
//! the executor drops a message of a person whose session does not exist
//! when the message was sent at or before that time
//! ([`erased_at`]). Messages the person sends afterwards start afresh.

use crate::store::index::SlotIndex;
use crate::store::kv::{KeyValue, KvError, read_counter};
use crate::store::lifecycle::{Stores, forget_session};
use crate::store::sessions::{SessionStore, StoreError};
use crate::tenancy::ids::{ChannelId, SessionId, TenantCtx};
use crate::tenancy::keys;

/// Sessions one erasure removes at most; a person with more is finished by
/// asking again (the answer says `complete: false`).
pub const MAX_SESSIONS_PER_ERASURE: usize = 200;

/// The slot a new session of `user_id` on `channel` takes in its person
/// index, and the write that fills it (for the session's creation batch).
pub fn registration(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    channel: &ChannelId,
    user_id: &str,
    session: &SessionId,
) -> Result<(u64, (String, Vec<u8>)), KvError> {
    let index = keys::person_index(ctx, channel, user_id);
    let slot = SlotIndex::new(kv, index.clone()).allocate()?;
    let entry = format!("{}/{}", ctx.team_token(), session.as_str());
    Ok((slot, (index.slot(slot), entry.into_bytes())))
}

/// Removes a deleted session's entry from its person's index.
pub fn unregister(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    channel: &ChannelId,
    user_id: &str,
    slot: u64,
) -> Result<(), KvError> {
    SlotIndex::new(kv, keys::person_index(ctx, channel, user_id)).remove(slot)
}

/// When the person was erased in `ctx`'s team (Unix ms), if ever.
pub fn erased_at(
    kv: &dyn KeyValue,
    ctx: &TenantCtx,
    channel: &ChannelId,
    user_id: &str,
) -> Result<Option<i64>, KvError> {
    Ok(kv
        .get(&keys::person_erased(ctx, channel, user_id))?
        .and_then(|bytes| String::from_utf8(bytes).ok()?.parse().ok()))
}

/// What one erasure removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub sessions: usize,
    pub webchat_activities: u64,
    pub egress_records: usize,
    /// False when the person has more sessions in scope than one erasure
    /// takes ([`MAX_SESSIONS_PER_ERASURE`]): ask again.
    pub complete: bool,
}

/// Erases the person's sessions in `env` (tenant and env; its team is
/// ignored) whose team `in_scope` accepts. `None` when they have none there.
pub fn erase(
    stores: &Stores<'_>,
    env: &TenantCtx,
    channel: &ChannelId,
    user_id: &str,
    in_scope: impl Fn(&str) -> bool,
    now_ms: i64,
) -> Result<Option<Erased>, StoreError> {
    let person = keys::person_index(env, channel, user_id);
    let index = SlotIndex::new(stores.sessions, person.clone());
    // Read without creating it: asking about someone unknown writes nothing.
    let newest = u64::try_from(read_counter(stores.sessions, &person.seq())?).unwrap_or(0);
    let mut erased = Erased {
        complete: true,
        ..Erased::default()
    };
    let mut marked = Vec::new();
    let mut others_left = false;
    for slot in 1..=newest {
        let Some(entry) = index.get(slot)? else {
            continue;
        };
        let Some((ctx, id)) = parse_entry(env, &entry) else {
            index.remove(slot)?;
            continue;
        };
        if !in_scope(ctx.team_token()) {
            others_left = true;
            continue;
        }
        if erased.sessions == MAX_SESSIONS_PER_ERASURE {
            erased.complete = false;
            break;
        }
        // Marked before anything goes, so a message delivered meanwhile is
        // dropped rather than starting the session again.
        if !marked.contains(&ctx) && SessionStore::new(stores.sessions).get(&ctx, &id)?.is_some() {
            let marker = keys::person_erased(&ctx, channel, user_id);
            if !stores.sessions.exists(&marker)? {
                // Indexed before it is written, so no marker is ever beyond
                // an offboarding's reach.
                let index = SlotIndex::new(stores.sessions, keys::erased_index(&ctx));
                let slot = index.allocate()?;
                index.set(slot, marker.as_bytes())?;
            }
            stores
                .sessions
                .set(&marker, now_ms.to_string().as_bytes())?;
            marked.push(ctx.clone());
        }
        if let Some(forgotten) = forget_session(stores, &ctx, &id)? {
            erased.sessions += 1;
            erased.webchat_activities += forgotten.webchat_activities;
            erased.egress_records += forgotten.egress_records;
        }
        index.remove(slot)?;
    }
    if erased.complete && !others_left {
        // Nothing of the person is left in the env: neither is their index.
        index.forget()?;
    }
    Ok((erased.sessions > 0).then_some(erased))
}

/// `{team}/{session}` of a person index slot, within `env`.
fn parse_entry(env: &TenantCtx, entry: &[u8]) -> Option<(TenantCtx, SessionId)> {
    let (team, session) = std::str::from_utf8(entry).ok()?.split_once('/')?;
    let ctx = env.with_team(Some(team).filter(|t| *t != "default")).ok()?;
    Some((ctx, SessionId::parse(session).ok()??))
}
