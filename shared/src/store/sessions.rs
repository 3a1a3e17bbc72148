//! Sessions and their state over a [`KeyValue`] store, with per-team indexes.
//!
//! Listing goes through slot indexes ([`crate::store::index`]), never a scan:
//! one per team (`index/{tenant}/{env}/teams/{team}/sessions/..`). A listing
//! across teams merges the indexes of the teams the env's registry names
//! ([`crate::store::teams`]), newest first, so creating a session costs no
//! env-wide counter. A listing shows a session only if its record points back
//! at the slot it was found at.
//!
//! Creating a session writes its record, its memory (when the creator has
//! one), its locator, its slot and, the first time, its team's registration
//! in one batch: one transaction on Spin's SQLite backend, one MSET on Redis.

use crate::http::error::ApiError;
use crate::store::index::{InvalidCursor, MAX_SLOTS_PER_PAGE, SlotIndex};
use crate::store::kv::{self, Cas, KeyValue, KvError};
use crate::store::people;
use crate::store::session::{
    NewSession, RecordError, SessionMemory, SessionRecord, SessionState, SessionStatus,
};
use crate::store::teams::TeamRegistry;
use crate::tenancy::ids::{ChannelId, SessionId, TenantCtx};
use crate::tenancy::keys;

/// Largest page a caller may ask for.
pub const MAX_PAGE_LIMIT: usize = 200;

/// Compare-and-swap attempts before an update gives up with [`StoreError::Conflict`].
const MAX_UPDATE_ATTEMPTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("session already exists")]
    AlreadyExists,
    #[error("session not found")]
    NotFound,
    #[error("session kept changing; gave up after {MAX_UPDATE_ATTEMPTS} attempts")]
    Conflict,
    #[error("cursor is not valid for this listing")]
    InvalidCursor,
}

/// Which sessions a listing covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    /// One team of a tenant's environment (or the sessions without a team).
    Team(TenantCtx),
    /// Every team of the context's tenant and environment, or only the teams
    /// named (team ids, `default` for sessions without a team).
    Env {
        ctx: TenantCtx,
        teams: Option<Vec<String>>,
    },
}

impl From<InvalidCursor> for StoreError {
    fn from(_: InvalidCursor) -> Self {
        StoreError::InvalidCursor
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Kv(kv) => kv.into(),
            StoreError::Record(RecordError::Corrupt(_)) => {
                ApiError::Internal("a stored session record is unreadable".into())
            }
            StoreError::Record(e @ RecordError::UnsupportedVersion(_)) => {
                ApiError::Internal(e.to_string())
            }
            StoreError::AlreadyExists => ApiError::Conflict("session already exists".into()),
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict => ApiError::Unavailable("session is busy; retry".into()),
            StoreError::InvalidCursor => {
                ApiError::BadRequest("cursor is not valid for this listing".into())
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub cursor: Option<String>,
    pub channel: Option<ChannelId>,
    pub status: Option<SessionStatus>,
    pub updated_since_ms: Option<i64>,
}

impl ListQuery {
    fn matches(&self, record: &SessionRecord) -> bool {
        self.channel.as_ref().is_none_or(|c| *c == record.channel)
            && self.status.is_none_or(|s| s == record.status)
            && self
                .updated_since_ms
                .is_none_or(|t| record.updated_at_ms >= t)
    }
}

/// One page of a listing, newest session first. `next_cursor` is `None` only
/// when the listing is complete; a page may be short (or empty) before that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub sessions: Vec<SessionRecord>,
    pub next_cursor: Option<String>,
}

pub struct SessionStore<'a> {
    kv: &'a dyn KeyValue,
}

impl<'a> SessionStore<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        SessionStore { kv }
    }

    /// Creates the session `new` describes, without memory yet.
    pub fn create(
        &self,
        ctx: &TenantCtx,
        new: NewSession,
        now_ms: i64,
    ) -> Result<SessionRecord, StoreError> {
        let id = SessionId::derive(ctx, &new.channel, &new.conversation, &new.user_id);
        if self.kv.exists(&keys::session_record(ctx, &id))? {
            return Err(StoreError::AlreadyExists);
        }
        self.insert(ctx, SessionRecord::new(ctx, new, now_ms, 0), None)
    }

    /// Writes a new session: `record` (its slot is given here) and its first
    /// `memory`, in one batch with its index entry, locator and, the first
    /// time, its team's registration. The caller makes sure it is the only
    /// creator (the executor claims the memory first): a batch is not a
    /// compare-and-swap. Costs two increments (its team index slot, its
    /// person's, see [`crate::store::people`]), a third the first time its
    /// team has a session in the env and a fourth when that team is also the
    /// env's first (the registries' slots), plus the batch.
    pub fn insert(
        &self,
        ctx: &TenantCtx,
        mut record: SessionRecord,
        memory: Option<&mut SessionMemory>,
    ) -> Result<SessionRecord, StoreError> {
        let id = record.id.clone();
        let index = self.index(ctx);
        record.slot = index.allocate()?;
        let mut writes = TeamRegistry::new(self.kv).registration(ctx)?;
        let (person_slot, person_entry) =
            people::registration(self.kv, ctx, &record.channel, &record.user_id, &id)?;
        record.person_slot = person_slot;
        writes.push(person_entry);
        if person_slot == 1 {
            // The person's index begins here: noted beside the slot, so a
            // deletion of the tenant finds the index after every session of
            // the person is gone (no extra transaction: same batch).
            writes.push((
                keys::person_started_at(ctx, record.slot),
                keys::person_digest(&record.channel, &record.user_id).into_bytes(),
            ));
        }
        writes.push((
            keys::session_team_locator(ctx, &id),
            ctx.team_token().as_bytes().to_vec(),
        ));
        writes.push((
            keys::session_index(ctx).slot(record.slot),
            id.as_str().as_bytes().to_vec(),
        ));
        if let Some(memory) = memory {
            memory.write_id = kv::write_id();
            writes.push((keys::session_state(ctx, &id), memory.encode()));
        }
        writes.push((keys::session_record(ctx, &id), record.encode()));
        self.kv.set_many(&writes)?;
        Ok(record)
    }

    pub fn get(
        &self,
        ctx: &TenantCtx,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.read(ctx, id)
            .map(|found| found.map(|(_, record)| record))
    }

    /// [`Self::get`] for a walk over many sessions (a listing, the retention
    /// sweep): a record this version cannot read is passed over, as absent,
    /// rather than failing the walk at it for good (reading it directly says
    /// why, a 500); a store that cannot be read still fails it.
    pub fn get_readable(
        &self,
        ctx: &TenantCtx,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        match self.get(ctx, id) {
            Err(StoreError::Record(_)) => Ok(None),
            read => read,
        }
    }

    /// The full context (with team) of a session known only by tenant, env and id.
    pub fn locate(&self, ctx: &TenantCtx, id: &SessionId) -> Result<Option<TenantCtx>, StoreError> {
        let Some(team) = self.kv.get(&keys::session_team_locator(ctx, id))? else {
            return Ok(None);
        };
        let team = std::str::from_utf8(&team)
            .ok()
            .and_then(|t| ctx.with_team(Some(t)).ok())
            .ok_or_else(|| RecordError::Corrupt("session locator holds no team id".into()))?;
        Ok(Some(team))
    }

    /// Applies `change` to the stored record with compare-and-swap, retrying on
    /// a concurrent write, so two writers of one session lose no update.
    pub fn update(
        &self,
        ctx: &TenantCtx,
        id: &SessionId,
        now_ms: i64,
        mut change: impl FnMut(&mut SessionRecord),
    ) -> Result<SessionRecord, StoreError> {
        self.update_if(ctx, id, now_ms, |record| {
            change(record);
            true
        })
    }

    /// Like [`Self::update`], but `change` answers whether it changed
    /// anything; when it did not, nothing is written and the record is
    /// returned as stored.
    ///
    /// Each call is applied once: the record notes the update's random id, so
    /// a retry after a swap that landed but was reported as a conflict (Spin's
    /// Redis backend, see `crate::store::kv`) finds it there and stops. The last call
    /// of `change` is the one whose result was stored.
    pub fn update_if(
        &self,
        ctx: &TenantCtx,
        id: &SessionId,
        now_ms: i64,
        mut change: impl FnMut(&mut SessionRecord) -> bool,
    ) -> Result<SessionRecord, StoreError> {
        let key = keys::session_record(ctx, id);
        let write = kv::write_id();
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (stored, mut record) = self.read(ctx, id)?.ok_or(StoreError::NotFound)?;
            if record.recent_writes.contains(&write) || !change(&mut record) {
                return Ok(record);
            }
            record.revision += 1;
            record.updated_at_ms = record.updated_at_ms.max(now_ms);
            record.note_write(write);
            if self.kv.compare_and_swap(&key, &stored, &record.encode())? == Cas::Swapped {
                return Ok(record);
            }
        }
        // The last swap may have landed though reported as a conflict (and
        // been built upon since): a conflict must mean "not applied", or a
        // caller that tries again applies the change twice.
        let (_, record) = self.read(ctx, id)?.ok_or(StoreError::NotFound)?;
        if record.recent_writes.contains(&write) {
            return Ok(record);
        }
        Err(StoreError::Conflict)
    }

    /// Removes the session, its state and its index entries (its team's and
    /// its person's). Returns false when
    /// there was no such session. The record goes last but for the locator, so a
    /// delete that fails half-way leaves a record a retry can find and finish.
    pub fn delete(&self, ctx: &TenantCtx, id: &SessionId) -> Result<bool, StoreError> {
        let Some(record) = self.get(ctx, id)? else {
            return Ok(false);
        };
        // The index slot goes last: while it is there, a deletion cut off
        // half-way (here or by a tenant's offboarding) still finds the rest.
        if record.person_slot > 0 {
            people::unregister(
                self.kv,
                ctx,
                &record.channel,
                &record.user_id,
                record.person_slot,
            )?;
        }
        self.forget_keys(ctx, id)?;
        self.index(ctx).remove(record.slot)?;
        Ok(true)
    }

    /// Removes the keys of the session that its id alone names: memory,
    /// creation claim, locator and record (the record last). What
    /// [`Self::delete`] removes but for the index entries, which need the
    /// record; all that can go of a session whose record cannot be read.
    pub fn forget_keys(&self, ctx: &TenantCtx, id: &SessionId) -> Result<(), StoreError> {
        self.forget_memory(ctx, id)?;
        self.kv.delete(&keys::session_team_locator(ctx, id))?;
        self.kv.delete(&keys::session_record(ctx, id))?;
        Ok(())
    }

    /// Removes a session's memory and its creation claim: what a turn left
    /// behind when its record was deleted while it ran.
    pub fn forget_memory(&self, ctx: &TenantCtx, id: &SessionId) -> Result<(), StoreError> {
        self.kv.delete(&keys::session_state(ctx, id))?;
        self.kv.delete(&keys::session_memory_claim(ctx, id))?;
        Ok(())
    }

    /// The flow's variables for the session; empty when nothing was stored yet.
    pub fn state(&self, ctx: &TenantCtx, id: &SessionId) -> Result<SessionState, StoreError> {
        Ok(self
            .memory(ctx, id)?
            .map(|(_, m)| m.vars)
            .unwrap_or_default())
    }

    /// The session's memory as stored (raw bytes, for compare-and-swap) and decoded.
    pub fn memory(
        &self,
        ctx: &TenantCtx,
        id: &SessionId,
    ) -> Result<Option<(Vec<u8>, SessionMemory)>, StoreError> {
        match self.kv.get(&keys::session_state(ctx, id))? {
            Some(bytes) => {
                let memory = SessionMemory::decode(&bytes)?;
                Ok(Some((bytes, memory)))
            }
            None => Ok(None),
        }
    }

    /// Replaces the flow's variables (keeping the rest of the memory). For
    /// fixtures and tools; the executor commits through [`Self::swap_memory`].
    pub fn put_state(
        &self,
        ctx: &TenantCtx,
        id: &SessionId,
        state: &SessionState,
    ) -> Result<(), StoreError> {
        let mut memory = self
            .memory(ctx, id)?
            .map(|(_, m)| m)
            .unwrap_or_else(SessionMemory::new);
        memory.vars = state.clone();
        memory.revision += 1;
        Ok(self
            .kv
            .set(&keys::session_state(ctx, id), &memory.encode())?)
    }

    /// Writes `next` only if the memory is still `current` (raw bytes as read);
    /// `Ok(false)` when another writer got there first, or when the swap
    /// cannot be told from one (see `crate::store::kv`): the caller re-reads, and
    /// finds its message among the processed ones if it landed after all.
    /// Gives `next` a fresh write id, so no other writer writes its bytes.
    ///
    /// Writing the first memory of a session needs a claim: on Spin's SQLite
    /// backend a swap of an absent key is a plain upsert, so two creators
    /// would both "win". Only the first to [`Self::claim_memory`] creates it.
    pub fn swap_memory(
        &self,
        ctx: &TenantCtx,
        id: &SessionId,
        current: Option<&[u8]>,
        next: &mut SessionMemory,
    ) -> Result<bool, StoreError> {
        let key = keys::session_state(ctx, id);
        next.write_id = kv::write_id();
        match current {
            Some(current) => {
                Ok(self.kv.compare_and_swap(&key, current, &next.encode())? == Cas::Swapped)
            }
            None => {
                self.kv.set(&key, &next.encode())?;
                Ok(true)
            }
        }
    }

    /// Whether the caller is the first to create this session's memory (the
    /// host's atomic increment hands out 1 exactly once).
    pub fn claim_memory(&self, ctx: &TenantCtx, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.kv.increment(&keys::session_memory_claim(ctx, id), 1)? == 1)
    }

    /// One page of the scope's sessions, newest first, read through the
    /// scope's indexes: the cost is the page (at most [`MAX_SLOTS_PER_PAGE`]
    /// slots, plus the env's few teams), whatever else the store holds.
    pub fn list(&self, scope: &ListScope, query: &ListQuery) -> Result<Page, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE_LIMIT);
        match scope {
            ListScope::Team(ctx) => {
                let mut sessions = Vec::new();
                let next_cursor =
                    self.index(ctx)
                        .walk(query.cursor.as_deref(), limit, |slot, entry| {
                            let found = self
                                .read_entry(ctx, &entry)?
                                .filter(|r| r.slot == slot && query.matches(r));
                            Ok::<_, StoreError>(found.map(|r| sessions.push(r)).is_some())
                        })?;
                Ok(Page {
                    sessions,
                    next_cursor,
                })
            }
            ListScope::Env { ctx, teams } => {
                let mut registered = TeamRegistry::new(self.kv).teams(ctx)?;
                if let Some(allowed) = teams {
                    registered.retain(|t| allowed.iter().any(|a| a == t.team_token()));
                }
                self.list_merged(ctx, &registered, query, limit)
            }
        }
    }

    /// The sessions of several teams' indexes, newest first (by creation
    /// time; in one millisecond, by the teams' order in the registry, then
    /// newest slot first). The cursor holds where each team's walk stopped.
    fn list_merged(
        &self,
        env: &TenantCtx,
        teams: &[TenantCtx],
        query: &ListQuery,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let tag = merged_cursor_tag(env, teams);
        // Per team, the next slot to look at (0 = done). Teams registered
        // after a listing began hold only sessions newer than its first page.
        let mut next: Vec<u64> = match &query.cursor {
            Some(cursor) => {
                let mut next = decode_merged_cursor(cursor, &tag)?;
                next.resize(teams.len(), 0);
                next
            }
            None => teams
                .iter()
                .map(|t| self.index(t).newest())
                .collect::<Result<_, _>>()?,
        };
        let mut heads: Vec<Option<SessionRecord>> = vec![None; teams.len()];
        let (mut sessions, mut examined) = (Vec::new(), 0u64);
        while sessions.len() < limit {
            // Fill every empty head with its team's next live session.
            for (i, team) in teams.iter().enumerate() {
                while heads[i].is_none() && next[i] > 0 && examined < MAX_SLOTS_PER_PAGE {
                    let slot = next[i];
                    next[i] -= 1;
                    examined += 1;
                    if let Some(entry) = self.index(team).get(slot)? {
                        heads[i] = self.read_entry(team, &entry)?.filter(|r| r.slot == slot);
                    }
                }
            }
            let newest = heads
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.as_ref().map(|r| (i, r)))
                .max_by(|(i, a), (j, b)| {
                    a.created_at_ms
                        .cmp(&b.created_at_ms)
                        .then(j.cmp(i))
                        .then(a.slot.cmp(&b.slot))
                })
                .map(|(i, _)| i);
            let Some(i) = newest else {
                break;
            };
            let record = heads[i].take().expect("chosen among the filled heads");
            if query.matches(&record) {
                sessions.push(record);
            }
            if examined >= MAX_SLOTS_PER_PAGE {
                break;
            }
        }
        // A head read but not returned is where its team goes on from.
        for (i, head) in heads.iter().enumerate() {
            if let Some(record) = head {
                next[i] = record.slot;
            }
        }
        let more = next.iter().any(|&n| n > 0);
        Ok(Page {
            sessions,
            next_cursor: more.then(|| encode_merged_cursor(&tag, &next)),
        })
    }

    fn index(&self, ctx: &TenantCtx) -> SlotIndex<'a> {
        SlotIndex::new(self.kv, keys::session_index(ctx))
    }

    /// The session a team index entry (`{session}`) names, in that team, for
    /// a listing ([`Self::get_readable`]).
    fn read_entry(
        &self,
        team: &TenantCtx,
        entry: &[u8],
    ) -> Result<Option<SessionRecord>, StoreError> {
        let Some(id) = std::str::from_utf8(entry)
            .ok()
            .and_then(|id| SessionId::parse(id).ok().flatten())
        else {
            return Ok(None);
        };
        self.get_readable(team, &id)
    }

    /// The stored bytes and the decoded record, checked against the key's scope:
    /// a record that claims another scope than the key it sits under is corrupt.
    fn read(
        &self,
        ctx: &TenantCtx,
        id: &SessionId,
    ) -> Result<Option<(Vec<u8>, SessionRecord)>, StoreError> {
        let Some(bytes) = self.kv.get(&keys::session_record(ctx, id))? else {
            return Ok(None);
        };
        let record = SessionRecord::decode(&bytes)?;
        if record.ctx != *ctx || record.id != *id {
            return Err(RecordError::Corrupt(
                "record does not belong to the key it is stored under".into(),
            )
            .into());
        }
        Ok(Some((bytes, record)))
    }
}

const MERGED_CURSOR_VERSION: u8 = 1;

/// Ties a merged listing's cursor to its env and its list of teams.
fn merged_cursor_tag(env: &TenantCtx, teams: &[TenantCtx]) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(keys::team_registry(env).seq());
    for team in teams {
        digest.update(b"/");
        digest.update(team.team_token());
    }
    digest.finalize()[..8]
        .try_into()
        .expect("a SHA-256 digest has 32 bytes")
}

fn encode_merged_cursor(tag: &[u8; 8], next: &[u64]) -> String {
    use base64::Engine;
    let mut bytes = Vec::with_capacity(9 + 8 * next.len());
    bytes.push(MERGED_CURSOR_VERSION);
    bytes.extend_from_slice(tag);
    for slot in next {
        bytes.extend_from_slice(&slot.to_be_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_merged_cursor(cursor: &str, tag: &[u8; 8]) -> Result<Vec<u64>, InvalidCursor> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| InvalidCursor)?;
    if bytes.len() < 9 || bytes[0] != MERGED_CURSOR_VERSION || bytes[1..9] != tag[..] {
        return Err(InvalidCursor);
    }
    let slots = &bytes[9..];
    if slots.len() % 8 != 0 {
        return Err(InvalidCursor);
    }
    Ok(slots
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("chunks of 8")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::MAX_SLOTS_PER_PAGE;
    use crate::store::kv::{MemoryKv, TestKv};
    use crate::store::session::Direction;
    use crate::testing::new_session;
    use std::collections::BTreeSet;

    fn ctx(tenant: &str, team: Option<&str>) -> TenantCtx {
        TenantCtx::new(tenant, "prod", team).unwrap()
    }

    fn query(limit: usize) -> ListQuery {
        ListQuery {
            limit,
            ..ListQuery::default()
        }
    }

    fn list_all(store: &SessionStore, scope: &ListScope, mut q: ListQuery) -> Vec<SessionId> {
        let mut ids = Vec::new();
        loop {
            let page = store.list(scope, &q).unwrap();
            ids.extend(page.sessions.into_iter().map(|s| s.id));
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return ids,
            }
        }
    }

    #[test]
    fn an_invalid_cursor_is_a_bad_request() {
        assert_eq!(ApiError::from(StoreError::InvalidCursor).status(), 400);
    }

    #[test]
    fn create_get_update_delete() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let c = ctx("acme", Some("support"));
        let created = store.create(&c, new_session("slack", "U1"), 10).unwrap();
        assert_eq!(store.get(&c, &created.id).unwrap(), Some(created.clone()));
        assert_eq!(
            store.create(&c, new_session("slack", "U1"), 11),
            Err(StoreError::AlreadyExists)
        );
        let updated = store
            .update(&c, &created.id, 20, |r| {
                r.record_message(Direction::Inbound, "hi", 20)
            })
            .unwrap();
        assert_eq!(
            (
                updated.revision,
                updated.message_count,
                updated.updated_at_ms
            ),
            (2, 1, 20)
        );
        let mut state = SessionState::new();
        state.insert("name".into(), "Ada".into());
        store.put_state(&c, &created.id, &state).unwrap();
        assert_eq!(store.state(&c, &created.id).unwrap(), state);
        assert_eq!(
            store
                .locate(&c.with_team(None).unwrap(), &created.id)
                .unwrap(),
            Some(c.clone())
        );
        assert!(store.delete(&c, &created.id).unwrap());
        assert!(!store.delete(&c, &created.id).unwrap());
        assert_eq!(store.get(&c, &created.id).unwrap(), None);
        assert!(store.state(&c, &created.id).unwrap().is_empty());
        // Only the index counters, the team's and env's registrations and
        // where the person's index began are left behind.
        let left: Vec<String> = kv.snapshot().into_keys().collect();
        assert!(
            left.iter().all(|k| k.ends_with("/seq")
                || k.ends_with("/person")
                || k.contains("/team-registry/")
                || k.contains("/env-registry/")),
            "{left:?}"
        );
    }

    #[test]
    fn a_session_is_invisible_under_another_scope() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let owner = ctx("acme", Some("support"));
        let id = store
            .create(&owner, new_session("slack", "U1"), 1)
            .unwrap()
            .id;
        for other in [
            ctx("bigcorp", Some("support")),
            ctx("acme", Some("sales")),
            ctx("acme", None),
            TenantCtx::new("acme", "staging", Some("support")).unwrap(),
        ] {
            assert_eq!(store.get(&other, &id).unwrap(), None, "{other}");
            assert!(!store.delete(&other, &id).unwrap(), "{other}");
            assert_eq!(
                store.update(&other, &id, 2, |_| ()),
                Err(StoreError::NotFound)
            );
        }
        assert_eq!(store.locate(&ctx("bigcorp", None), &id).unwrap(), None);
        assert!(store.get(&owner, &id).unwrap().is_some());
    }

    #[test]
    fn pagination_returns_every_session_once_newest_first() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let c = ctx("acme", Some("support"));
        let created: Vec<SessionId> = (0..1_050)
            .map(|i| {
                store
                    .create(&c, new_session("slack", &format!("U{i}")), i)
                    .unwrap()
                    .id
            })
            .collect();
        let listed = list_all(&store, &ListScope::Team(c.clone()), query(50));
        let expected: Vec<SessionId> = created.iter().rev().cloned().collect();
        assert_eq!(listed, expected);
        let env_listed = list_all(
            &store,
            &ListScope::Env {
                ctx: c.with_team(None).unwrap(),
                teams: None,
            },
            query(200),
        );
        assert_eq!(env_listed, expected);
    }

    #[test]
    fn concurrent_creation_in_one_scope_loses_no_index_entry() {
        let kv = TestKv::new();
        let c = ctx("acme", Some("support"));
        let mut created = BTreeSet::new();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (kv, c) = (&kv, &c);
                    s.spawn(move || {
                        (0..100)
                            .map(|i| {
                                SessionStore::new(kv)
                                    .create(c, new_session("slack", &format!("U{t}-{i}")), 1)
                                    .unwrap()
                                    .id
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                created.extend(h.join().unwrap());
            }
        });
        let store = SessionStore::new(&kv);
        let listed = list_all(&store, &ListScope::Team(c.clone()), query(200));
        assert_eq!(listed.len(), 800);
        assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), created);
    }

    #[test]
    fn updates_apply_once_when_every_swap_is_reported_as_failed() {
        // Spin's Redis backend: `cas-failed` whether the swap wrote or not.
        let kv = TestKv::over(MemoryKv::misreporting_swaps());
        let c = ctx("acme", Some("support"));
        let record = four_writers_update_one_session(&kv, &c, 10);
        assert_eq!((record.message_count, record.revision), (40, 41));
        let texts: BTreeSet<_> = record.transcript.iter().map(|e| &e.text).collect();
        assert_eq!(texts.len(), record.transcript.len(), "no message twice");
    }

    /// A store that refuses its first `refused_first` compare-and-swaps (as
    /// if other writers kept winning), then lets one land, has it
    /// overwritten by another writer before its writer can read it back, and
    /// reports it as unsure.
    struct OvertakenOnce<'a> {
        inner: &'a TestKv,
        refused_first: usize,
        swaps: std::sync::atomic::AtomicUsize,
        overtaken: std::sync::atomic::AtomicBool,
        other_writer: &'a (dyn Fn(&TestKv) + Sync),
    }

    impl KeyValue for OvertakenOnce<'_> {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
            self.inner.set(key, value)
        }
        fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
            self.inner.set_many(pairs)
        }
        fn delete(&self, key: &str) -> Result<(), KvError> {
            self.inner.delete(key)
        }
        fn exists(&self, key: &str) -> Result<bool, KvError> {
            self.inner.exists(key)
        }
        fn get_keys(&self) -> Result<Vec<String>, KvError> {
            self.inner.get_keys()
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
            self.inner.increment(key, delta)
        }
        fn swap_reported(
            &self,
            key: &str,
            expected: &[u8],
            new: &[u8],
        ) -> Result<kv::Swap, KvError> {
            let n = self.swaps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < self.refused_first {
                return Ok(kv::Swap::Conflict);
            }
            let reported = self.inner.swap_reported(key, expected, new)?;
            if reported == kv::Swap::Swapped
                && !self
                    .overtaken
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                (self.other_writer)(self.inner);
                return Ok(kv::Swap::Unsure);
            }
            Ok(reported)
        }
    }

    #[test]
    fn an_update_overwritten_before_its_read_back_is_not_applied_again() {
        let kv = TestKv::new();
        let c = ctx("acme", Some("support"));
        let id = SessionStore::new(&kv)
            .create(&c, new_session("slack", "U1"), 1)
            .unwrap()
            .id;
        // Overtaken on its first swap, or on its very last allowed one (after
        // which a caller would be told "conflict" and try again).
        for (refused_first, theirs) in [(0, "theirs"), (MAX_UPDATE_ATTEMPTS - 1, "theirs-again")] {
            let other = |inner: &TestKv| {
                SessionStore::new(inner)
                    .update(&c, &id, 3, |r| {
                        r.record_message(Direction::Inbound, theirs, 3)
                    })
                    .unwrap();
            };
            let overtaken = OvertakenOnce {
                inner: &kv,
                refused_first,
                swaps: Default::default(),
                overtaken: Default::default(),
                other_writer: &other,
            };
            SessionStore::new(&overtaken)
                .update(&c, &id, 2, |r| {
                    r.record_message(Direction::Inbound, "mine", 2)
                })
                .expect("a landed update is reported as applied");
        }
        let record = SessionStore::new(&kv).get(&c, &id).unwrap().unwrap();
        let texts: Vec<_> = record.transcript.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["mine", "theirs", "mine", "theirs-again"]);
        assert_eq!(record.message_count, 4);
    }

    #[test]
    fn concurrent_updates_of_one_session_lose_nothing() {
        let kv = TestKv::new();
        let c = ctx("acme", Some("support"));
        let record = four_writers_update_one_session(&kv, &c, 25);
        assert_eq!((record.message_count, record.revision), (100, 101));
    }

    /// Creates a session, then four threads each record `messages` inbound
    /// messages in it at once; returns the record they leave.
    fn four_writers_update_one_session(
        kv: &TestKv,
        c: &TenantCtx,
        messages: usize,
    ) -> SessionRecord {
        let id = SessionStore::new(kv)
            .create(c, new_session("slack", "U1"), 1)
            .unwrap()
            .id;
        std::thread::scope(|s| {
            for t in 0..4 {
                let id = &id;
                s.spawn(move || {
                    for i in 0..messages {
                        // Under heavy contention an update may give up with
                        // `Conflict`; its caller tries again (the bridge
                        // redelivers), and nothing may be lost either way.
                        loop {
                            match SessionStore::new(kv).update(c, id, 2, |r| {
                                r.record_message(Direction::Inbound, &format!("{t}-{i}"), 2)
                            }) {
                                Ok(_) => break,
                                Err(StoreError::Conflict) => std::thread::yield_now(),
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                });
            }
        });
        SessionStore::new(kv).get(c, &id).unwrap().unwrap()
    }

    #[test]
    fn an_env_listing_merges_the_teams_newest_first_across_pages() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let teams = [
            ctx("acme", Some("support")),
            ctx("acme", Some("sales")),
            ctx("acme", None),
        ];
        // 60 sessions, created in turn across the teams, some in one millisecond.
        let created: Vec<SessionId> = (0..60)
            .map(|i| {
                store
                    .create(
                        &teams[i % 3],
                        new_session("slack", &format!("U{i}")),
                        (i / 2) as i64,
                    )
                    .unwrap()
                    .id
            })
            .collect();
        let env = ListScope::Env {
            ctx: ctx("acme", None),
            teams: None,
        };
        let listed = list_all(&store, &env, query(7));
        // Newest first; within one millisecond, the earlier-registered team first.
        let mut expected: Vec<(i64, usize, SessionId)> = created
            .iter()
            .enumerate()
            .map(|(i, id)| ((i / 2) as i64, i % 3, id.clone()))
            .collect();
        expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        assert_eq!(
            listed,
            expected
                .into_iter()
                .map(|(_, _, id)| id)
                .collect::<Vec<_>>()
        );
        // Limited to two teams: their sessions only, each once.
        let two = ListScope::Env {
            ctx: ctx("acme", None),
            teams: Some(vec!["sales".into(), "default".into()]),
        };
        let listed = list_all(&store, &two, query(5));
        assert_eq!(listed.len(), 40);
        assert_eq!(listed.iter().collect::<BTreeSet<_>>().len(), 40);
        // A cursor of one team list is refused for another.
        let cursor = store.list(&two, &query(5)).unwrap().next_cursor.unwrap();
        let elsewhere = ListQuery {
            cursor: Some(cursor),
            ..query(5)
        };
        assert_eq!(store.list(&env, &elsewhere), Err(StoreError::InvalidCursor));
        // Another tenant's env has none of them.
        let bigcorp = ListScope::Env {
            ctx: ctx("bigcorp", None),
            teams: None,
        };
        assert!(list_all(&store, &bigcorp, query(50)).is_empty());
    }

    #[test]
    fn filters_and_team_restrictions_apply() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let support = ctx("acme", Some("support"));
        let sales = ctx("acme", Some("sales"));
        let a = store
            .create(&support, new_session("slack", "U1"), 100)
            .unwrap()
            .id;
        let b = store
            .create(&support, new_session("telegram", "U2"), 200)
            .unwrap()
            .id;
        let c = store
            .create(&sales, new_session("teams", "U3"), 300)
            .unwrap()
            .id;
        store
            .update(&support, &b, 400, |r| r.status = SessionStatus::Ended)
            .unwrap();
        let env = support.with_team(None).unwrap();
        let all = ListScope::Env {
            ctx: env.clone(),
            teams: None,
        };
        let only = |q: ListQuery| list_all(&store, &all, q);
        assert_eq!(only(query(10)), vec![c.clone(), b.clone(), a.clone()]);
        assert_eq!(
            only(ListQuery {
                channel: Some(ChannelId::parse("slack").unwrap()),
                ..query(10)
            }),
            vec![a.clone()]
        );
        assert_eq!(
            only(ListQuery {
                status: Some(SessionStatus::Ended),
                ..query(10)
            }),
            vec![b.clone()]
        );
        assert_eq!(
            only(ListQuery {
                updated_since_ms: Some(250),
                ..query(10)
            }),
            vec![c.clone(), b.clone()]
        );
        let sales_only = ListScope::Env {
            ctx: env,
            teams: Some(vec!["sales".into()]),
        };
        assert_eq!(list_all(&store, &sales_only, query(10)), vec![c]);
        assert_eq!(
            list_all(&store, &ListScope::Team(support), query(10)),
            vec![b, a]
        );
    }

    #[test]
    fn a_listing_leaves_out_an_unreadable_record_and_reading_it_says_why() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let team = ctx("acme", Some("support"));
        let ids: Vec<SessionId> = (0..3)
            .map(|i| {
                store
                    .create(&team, new_session("slack", &format!("U{i}")), i)
                    .unwrap()
                    .id
            })
            .collect();
        kv.set(&keys::session_record(&team, &ids[1]), b"not a record")
            .unwrap();
        let listed = |scope: ListScope| {
            let page = store.list(&scope, &query(10)).unwrap();
            assert_eq!(page.next_cursor, None);
            page.sessions.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        let readable = vec![ids[2].clone(), ids[0].clone()];
        assert_eq!(listed(ListScope::Team(team.clone())), readable);
        let env = ListScope::Env {
            ctx: ctx("acme", None),
            teams: None,
        };
        assert_eq!(listed(env), readable);
        assert!(matches!(
            store.get(&team, &ids[1]),
            Err(StoreError::Record(_))
        ));
    }

    #[test]
    fn listing_reads_the_index_not_the_store() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        for tenant in ["t1", "t2", "t3"] {
            for i in 0..100 {
                store
                    .create(
                        &ctx(tenant, Some("support")),
                        new_session("slack", &format!("U{i}")),
                        1,
                    )
                    .unwrap();
            }
        }
        let before = kv.ops();
        let page = store
            .list(&ListScope::Team(ctx("t2", Some("support"))), &query(50))
            .unwrap();
        assert_eq!(page.sessions.len(), 50);
        assert_eq!(kv.full_scans(), 0);
        // The counter, then a slot and a record per session.
        assert_eq!(kv.ops() - before, 1 + 2 * 50);
    }

    #[test]
    fn a_selective_filter_returns_short_pages_with_a_cursor() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let c = ctx("acme", Some("support"));
        store
            .create(&c, new_session("telegram", "needle"), 1)
            .unwrap();
        for i in 0..(MAX_SLOTS_PER_PAGE + 10) {
            store
                .create(&c, new_session("slack", &format!("U{i}")), 1)
                .unwrap();
        }
        let q = ListQuery {
            channel: Some(ChannelId::parse("telegram").unwrap()),
            ..query(10)
        };
        let first = store.list(&ListScope::Team(c.clone()), &q).unwrap();
        assert!(first.sessions.is_empty());
        assert!(first.next_cursor.is_some());
        assert_eq!(list_all(&store, &ListScope::Team(c), q).len(), 1);
    }

    #[test]
    fn cursors_are_refused_outside_their_scope_or_when_mangled() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let c = ctx("acme", Some("support"));
        for i in 0..3 {
            store
                .create(&c, new_session("slack", &format!("U{i}")), 1)
                .unwrap();
        }
        let cursor = store
            .list(&ListScope::Team(c.clone()), &query(1))
            .unwrap()
            .next_cursor
            .unwrap();
        let elsewhere = ListQuery {
            cursor: Some(cursor.clone()),
            ..query(1)
        };
        for other in [
            ListScope::Team(ctx("bigcorp", Some("support"))),
            ListScope::Team(ctx("acme", Some("sales"))),
            ListScope::Env {
                ctx: ctx("acme", None),
                teams: None,
            },
        ] {
            assert_eq!(
                store.list(&other, &elsewhere),
                Err(StoreError::InvalidCursor)
            );
        }
        for bad in ["", "!!!", "AAAA", &cursor[..cursor.len() - 2]] {
            let q = ListQuery {
                cursor: Some(bad.to_string()),
                ..query(1)
            };
            assert_eq!(
                store.list(&ListScope::Team(c.clone()), &q),
                Err(StoreError::InvalidCursor),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn stale_slots_are_skipped() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let c = ctx("acme", Some("support"));
        let a = store.create(&c, new_session("slack", "U1"), 1).unwrap();
        // A slot pointing at a session that was never written (a create that
        // failed half-way), and a second slot pointing at the live record.
        kv.set(
            &keys::session_index(&c).slot(50),
            b"0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        kv.set(&keys::session_index(&c).slot(51), a.id.as_str().as_bytes())
            .unwrap();
        kv.increment(&keys::session_index(&c).seq(), 50).unwrap();
        assert_eq!(list_all(&store, &ListScope::Team(c), query(10)), vec![a.id]);
    }

    #[test]
    fn a_record_under_the_wrong_key_is_corrupt_not_served() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let acme = ctx("acme", Some("support"));
        let record = store.create(&acme, new_session("slack", "U1"), 1).unwrap();
        let bigcorp = ctx("bigcorp", Some("support"));
        kv.set(
            &keys::session_record(&bigcorp, &record.id),
            &record.encode(),
        )
        .unwrap();
        assert!(matches!(
            store.get(&bigcorp, &record.id),
            Err(StoreError::Record(RecordError::Corrupt(_)))
        ));
    }

    #[test]
    fn a_store_outage_is_reported_and_a_failed_delete_can_be_retried() {
        let kv = TestKv::new();
        let store = SessionStore::new(&kv);
        let c = ctx("acme", Some("support"));
        let id = store.create(&c, new_session("slack", "U1"), 1).unwrap().id;
        kv.fail_after(3);
        assert!(matches!(
            store.delete(&c, &id),
            Err(StoreError::Kv(KvError::Unavailable(_)))
        ));
        kv.recover();
        assert!(
            store.get(&c, &id).unwrap().is_some(),
            "the record outlives a failed delete"
        );
        assert!(store.delete(&c, &id).unwrap());
        assert_eq!(
            list_all(&store, &ListScope::Team(c), query(10)),
            Vec::<SessionId>::new()
        );
    }
}
