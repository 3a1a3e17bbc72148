//! The session record: one person in one conversation on one channel.
//!
//! Stored as CBOR (ciborium) under [`crate::tenancy::keys::session_record`].
//! Every record starts with a format version `v` so a later change of shape
//! can migrate old records instead of failing on them.

use serde::{Deserialize, Serialize};

use crate::tenancy::ids::{ChannelId, Conversation, SessionId, TenantCtx};

/// The newest record format this code writes and reads.
pub const SESSION_FORMAT: u16 = 1;

/// How many recent messages a record keeps; older ones are dropped, so a
/// record stays far below Spin's 1 MB value limit however long a conversation runs.
pub const TRANSCRIPT_LIMIT: usize = 20;

/// Longest text kept per transcript entry, in bytes (cut at a char boundary).
pub const TRANSCRIPT_TEXT_LIMIT: usize = 2048;

/// Update ids a record remembers: far more than writers of one session can
/// land between one writer's swap and its read-back.
const RECENT_WRITES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// The flow is running or ready for the next message.
    Active,
    /// The flow asked something and waits for the user's answer.
    Waiting,
    /// The flow ended; a new message starts it again.
    Ended,
}

impl SessionStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(SessionStatus::Active),
            "waiting" => Some(SessionStatus::Waiting),
            "ended" => Some(SessionStatus::Ended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRef {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    /// Unix time in milliseconds.
    pub at_ms: i64,
    pub direction: Direction,
    pub text: String,
}

/// What [`SessionRecord::follow`] took in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Followed {
    /// Inbound messages added to the transcript.
    pub messages: u64,
    /// Replies added to the transcript.
    pub replies: u64,
    /// The record moved to a newer memory revision.
    pub moved: bool,
}

/// What a caller knows when a session is first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub channel: ChannelId,
    pub provider: String,
    pub conversation: Conversation,
    pub user_id: String,
    pub flow: Option<FlowRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Record format version; always [`SESSION_FORMAT`] when written by this code.
    pub v: u16,
    pub id: SessionId,
    pub ctx: TenantCtx,
    pub channel: ChannelId,
    pub provider: String,
    pub conversation: Conversation,
    pub user_id: String,
    pub flow: Option<FlowRef>,
    /// The flow node to resume at.
    pub cursor_node: Option<String>,
    pub status: SessionStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub message_count: u64,
    pub transcript: Vec<TranscriptEntry>,
    /// Bumped on every write; what compare-and-swap updates are checked against.
    pub revision: u64,
    /// Where the session sits in its team's index (see
    /// [`crate::tenancy::keys::session_index`]); a listing trusts an index
    /// slot only if the record points back at it.
    pub slot: u64,
    /// The revision of the session memory that `cursor_node`, `status` and
    /// the transcript reflect: the record follows the memory (the executor's
    /// commit point) and never moves back to an older revision of it.
    #[serde(default)]
    pub memory_revision: u64,
    /// Random ids of the latest updates written, newest last. An update that
    /// finds its own id here has landed already, however its compare-and-swap
    /// was reported (see `crate::store::kv`), so it is never applied twice.
    #[serde(default)]
    pub recent_writes: Vec<u64>,
    /// Where the session sits in its person's index (see
    /// [`crate::store::people`]), so deleting it removes that entry too; 0
    /// for sessions created before that index existed.
    #[serde(default)]
    pub person_slot: u64,
}

impl SessionRecord {
    pub fn new(ctx: &TenantCtx, new: NewSession, now_ms: i64, slot: u64) -> Self {
        let id = SessionId::derive(ctx, &new.channel, &new.conversation, &new.user_id);
        SessionRecord {
            v: SESSION_FORMAT,
            id,
            ctx: ctx.clone(),
            channel: new.channel,
            provider: new.provider,
            conversation: new.conversation,
            user_id: new.user_id,
            flow: new.flow,
            cursor_node: None,
            status: SessionStatus::Active,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            message_count: 0,
            transcript: Vec::new(),
            revision: 1,
            slot,
            memory_revision: 0,
            recent_writes: Vec::new(),
            person_slot: 0,
        }
    }

    /// Notes `write` as the update this version of the record comes from.
    pub fn note_write(&mut self, write: u64) {
        self.recent_writes.push(write);
        let excess = self.recent_writes.len().saturating_sub(RECENT_WRITES);
        self.recent_writes.drain(..excess);
    }

    /// Appends a message to the bounded transcript and counts it.
    pub fn record_message(&mut self, direction: Direction, text: &str, at_ms: i64) {
        self.transcript.push(TranscriptEntry {
            at_ms,
            direction,
            text: transcript_text(text).to_owned(),
        });
        let excess = self.transcript.len().saturating_sub(TRANSCRIPT_LIMIT);
        self.transcript.drain(..excess);
        self.message_count += 1;
        self.updated_at_ms = self.updated_at_ms.max(at_ms);
    }

    /// Takes in what `memory` applied since the revision this record shows:
    /// each message and its replies, in the order applied, and the flow's
    /// position. Never moves back to an older revision.
    pub fn follow(&mut self, memory: &SessionMemory, flow: &FlowRef) -> Followed {
        let mut took_in = Followed::default();
        if memory.revision <= self.memory_revision {
            return took_in;
        }
        let since = self.memory_revision;
        for done in memory.processed.iter().filter(|p| p.revision > since) {
            self.record_message(Direction::Inbound, &done.text, done.at_ms);
            for reply in &done.replies {
                self.record_message(Direction::Outbound, reply, done.at_ms);
            }
            took_in.messages += 1;
            took_in.replies += done.replies.len() as u64;
        }
        self.memory_revision = memory.revision;
        self.cursor_node = memory.waiting_at.clone();
        self.status = if memory.closed {
            SessionStatus::Ended
        } else if memory.waiting_at.is_some() {
            SessionStatus::Waiting
        } else {
            SessionStatus::Active
        };
        self.flow = Some(flow.clone());
        took_in.moved = true;
        took_in
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        ciborium::into_writer(self, &mut out).expect("a session record always encodes to CBOR");
        out
    }

    /// Decodes a stored record, checking its format version first so an
    /// unknown future format is reported as such rather than as garbage.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let value: ciborium::Value =
            ciborium::from_reader(bytes).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        let version = value
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("v")))
            .and_then(|(_, v)| v.as_integer())
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| RecordError::Corrupt("no format version".into()))?;
        if version != SESSION_FORMAT {
            return Err(RecordError::UnsupportedVersion(version));
        }
        value
            .deserialized()
            .map_err(|e| RecordError::Corrupt(e.to_string()))
    }
}

/// The part of `text` a transcript keeps: at most [`TRANSCRIPT_TEXT_LIMIT`]
/// bytes, cut at a char boundary.
pub fn transcript_text(text: &str) -> &str {
    utf8_prefix(text, TRANSCRIPT_TEXT_LIMIT)
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends at a
/// char boundary.
pub fn utf8_prefix(text: &str, max_bytes: usize) -> &str {
    let mut cut = text.len().min(max_bytes);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("stored record has format version {0}, this build reads version {SESSION_FORMAT}")]
    UnsupportedVersion(u16),
}

/// A session's working memory: named values the flow reads and writes.
pub type SessionState = serde_json::Map<String, serde_json::Value>;

/// Format version of [`SessionMemory`].
pub const MEMORY_FORMAT: u16 = 1;

/// How many processed message ids a session remembers (with their replies),
/// to recognise a redelivery long after the bridge's retries.
pub const REMEMBERED_MESSAGES: usize = 32;

/// What the state key (`state:{tenant}:{env}:{team}:{session}`) holds: the
/// flow's working memory plus what the executor needs to resume and to apply
/// each message once. This key is the executor's commit point: it changes
/// only by compare-and-swap, so two deliveries never both apply.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionMemory {
    pub v: u16,
    /// The flow's variables (`state.*` in templates); what the API shows as state.
    pub vars: SessionState,
    /// The `ask` node waiting for the next message.
    pub waiting_at: Option<String>,
    /// The flow reached an `end` with `close: true`.
    pub closed: bool,
    /// The most recent messages applied, oldest first, with the replies each produced.
    pub processed: Vec<Processed>,
    /// Bumped on every write.
    pub revision: u64,
    /// Random, new on every write, so two writers never write the same bytes
    /// (see `crate::store::kv`).
    #[serde(default)]
    pub write_id: u64,
}

/// A message the memory has applied: enough for the session record to
/// follow it later (the transcript entry, the replies) if the executor
/// stopped between committing the memory and updating the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processed {
    pub id: String,
    pub replies: Vec<String>,
    /// The memory revision that applied it.
    #[serde(default)]
    pub revision: u64,
    /// The message's text as the transcript keeps it.
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub at_ms: i64,
}

impl SessionMemory {
    pub fn new() -> Self {
        SessionMemory {
            v: MEMORY_FORMAT,
            ..SessionMemory::default()
        }
    }

    /// The replies of `message_id` if it was already applied.
    pub fn processed(&self, message_id: &str) -> Option<&Processed> {
        self.processed.iter().find(|p| p.id == message_id)
    }

    /// Records `message_id` as applied by the next revision, forgetting the
    /// oldest beyond the bound, and moves to that revision.
    pub fn remember(&mut self, message_id: &str, text: &str, at_ms: i64, replies: Vec<String>) {
        self.revision += 1;
        self.processed.push(Processed {
            id: message_id.to_owned(),
            replies,
            revision: self.revision,
            text: transcript_text(text).to_owned(),
            at_ms,
        });
        let excess = self.processed.len().saturating_sub(REMEMBERED_MESSAGES);
        self.processed.drain(..excess);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("session memory always encodes to CBOR");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let memory: SessionMemory =
            ciborium::from_reader(bytes).map_err(|e| RecordError::Corrupt(e.to_string()))?;
        if memory.v != MEMORY_FORMAT {
            return Err(RecordError::UnsupportedVersion(memory.v));
        }
        Ok(memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TenantCtx {
        TenantCtx::new("acme", "prod", Some("support")).unwrap()
    }

    fn new_session(user: &str) -> NewSession {
        NewSession {
            channel: ChannelId::parse("slack").unwrap(),
            provider: "messaging-slack".into(),
            conversation: Conversation {
                id: "C789012".into(),
                thread: Some("1700000000.0001".into()),
            },
            user_id: user.into(),
            flow: Some(FlowRef {
                name: "acme_support_flow".into(),
                version: "1.0".into(),
            }),
        }
    }

    #[test]
    fn cbor_round_trip_keeps_every_field() {
        let mut record = SessionRecord::new(&ctx(), new_session("U1"), 1_000, 2);
        record.record_message(Direction::Inbound, "hello", 2_000);
        record.cursor_node = Some("ask_name".into());
        record.status = SessionStatus::Waiting;
        let decoded = SessionRecord::decode(&record.encode()).unwrap();
        assert_eq!(decoded, record);
    }

    #[test]
    fn a_corrupted_record_is_a_clear_error() {
        let bytes = SessionRecord::new(&ctx(), new_session("U1"), 1, 1).encode();
        let truncated = &bytes[..bytes.len() / 2];
        assert!(matches!(
            SessionRecord::decode(truncated),
            Err(RecordError::Corrupt(_))
        ));
        assert!(matches!(
            SessionRecord::decode(b"\xff\x00garbage"),
            Err(RecordError::Corrupt(_))
        ));
        assert!(matches!(
            SessionRecord::decode(b""),
            Err(RecordError::Corrupt(_))
        ));
    }

    #[test]
    fn a_future_format_is_named_not_misread() {
        let mut value: ciborium::Value =
            ciborium::Value::serialized(&SessionRecord::new(&ctx(), new_session("U1"), 1, 1))
                .unwrap();
        for (k, v) in value.as_map_mut().unwrap() {
            if k.as_text() == Some("v") {
                *v = ciborium::Value::Integer(2.into());
            }
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        assert_eq!(
            SessionRecord::decode(&bytes),
            Err(RecordError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn a_record_with_an_invalid_scope_does_not_decode() {
        let mut value =
            ciborium::Value::serialized(&SessionRecord::new(&ctx(), new_session("U1"), 1, 1))
                .unwrap();
        for (k, v) in value.as_map_mut().unwrap() {
            if k.as_text() == Some("ctx") {
                *v = ciborium::Value::serialized(&serde_json::json!({
                    "tenant_id": "acme.prod", "env_id": "prod", "team_id": null
                }))
                .unwrap();
            }
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        assert!(matches!(
            SessionRecord::decode(&bytes),
            Err(RecordError::Corrupt(_))
        ));
    }

    #[test]
    fn the_transcript_stays_bounded() {
        let mut record = SessionRecord::new(&ctx(), new_session("U1"), 0, 1);
        for i in 0..(TRANSCRIPT_LIMIT + 5) {
            record.record_message(Direction::Inbound, &format!("m{i}"), i as i64);
        }
        assert_eq!(record.transcript.len(), TRANSCRIPT_LIMIT);
        assert_eq!(record.transcript[0].text, "m5");
        assert_eq!(record.message_count, (TRANSCRIPT_LIMIT + 5) as u64);
        record.record_message(Direction::Outbound, &"é".repeat(TRANSCRIPT_TEXT_LIMIT), 99);
        assert!(record.transcript.last().unwrap().text.len() <= TRANSCRIPT_TEXT_LIMIT);
    }

    #[test]
    fn memory_round_trips_through_cbor_and_remembers_a_bounded_past() {
        let mut memory = SessionMemory::new();
        memory.vars.insert("name".into(), "Ada".into());
        memory.vars.insert(
            "order".into(),
            serde_json::json!({"id": 42, "items": [1, 2]}),
        );
        memory.waiting_at = Some("ask_order".into());
        for i in 0..REMEMBERED_MESSAGES + 3 {
            memory.remember(&format!("m{i}"), "hi", i as i64, vec![format!("reply {i}")]);
        }
        assert_eq!(SessionMemory::decode(&memory.encode()).unwrap(), memory);
        assert_eq!(memory.processed.len(), REMEMBERED_MESSAGES);
        assert!(memory.processed("m0").is_none());
        assert_eq!(memory.processed("m34").unwrap().replies, ["reply 34"]);
        assert_eq!(memory.processed("m34").unwrap().revision, 35);
        assert_eq!(memory.revision, (REMEMBERED_MESSAGES + 3) as u64);
        assert!(SessionMemory::decode(b"\xa1").is_err());
        let mut future = memory.clone();
        future.v = 9;
        assert_eq!(
            SessionMemory::decode(&future.encode()),
            Err(RecordError::UnsupportedVersion(9))
        );
    }
}
