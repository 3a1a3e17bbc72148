//! The activity log of a web chat conversation: what egress appends for the
//! platform's own web chat, and what the browser reads after its watermark.
//! Kept in the `webchat` store with a slot index per conversation (the
//! store's atomic increment hands out positions), so appends never collide
//! and a read costs the new activities only.
//!
//! A conversation keeps its newest [`MAX_ACTIVITIES`]: appending past that
//! drops the oldest activity and its redelivery marker, so one visitor
//! cannot grow the store without bound (the web chat's per-conversation rate
//! limits how fast). A message redelivered after that many newer activities
//! would be shown again; a store failure while dropping leaves that one
//! activity behind.

use serde::{Deserialize, Serialize};

use crate::store::index::SlotIndex;
use crate::store::kv::{KeyValue, KvError};
use crate::tenancy::ids::{ChannelId, ConversationId, TenantCtx};
use crate::tenancy::keys;

/// The key-value store (spin.toml label) holding web chat logs.
pub const STORE_LABEL: &str = "webchat";

/// Most activities one read returns; the client reads again from the new watermark.
pub const MAX_READ: u64 = 100;

/// Most activities a conversation keeps: the newest.
pub const MAX_ACTIVITIES: u64 = 200;

/// One activity as the web client shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub from: Participant,
    pub text: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
    /// The activity (the person's message) this answers.
    pub reply_to_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub name: Option<String>,
    /// `bot` or `user`.
    pub role: String,
}

pub struct ConversationLog<'a> {
    kv: &'a dyn KeyValue,
    ctx: TenantCtx,
    channel: ChannelId,
    conversation: ConversationId,
    index: SlotIndex<'a>,
}

impl<'a> ConversationLog<'a> {
    pub fn new(
        kv: &'a dyn KeyValue,
        ctx: &TenantCtx,
        channel: &ChannelId,
        conversation: &ConversationId,
    ) -> Self {
        ConversationLog {
            kv,
            ctx: ctx.clone(),
            channel: channel.clone(),
            conversation: conversation.clone(),
            index: SlotIndex::new(kv, keys::webchat_log(ctx, channel, conversation)),
        }
    }

    /// Appends `activity` unless an activity with its id was appended before
    /// (a redelivery). Returns whether it was appended.
    pub fn append(&self, activity: &Activity) -> Result<bool, KvError> {
        let sent = keys::webchat_sent(&self.ctx, &self.channel, &self.conversation, &activity.id);
        if self.kv.exists(&sent)? {
            return Ok(false);
        }
        let slot = self.index.allocate()?;
        let json = serde_json::to_vec(activity).expect("activities always serialise");
        self.index.set(slot, &json)?;
        self.kv.set(&sent, b"1")?;
        if slot > MAX_ACTIVITIES {
            self.drop_slot(slot - MAX_ACTIVITIES)?;
        }
        Ok(true)
    }

    /// Removes the activity at `slot` and its redelivery marker.
    fn drop_slot(&self, slot: u64) -> Result<(), KvError> {
        if let Some(bytes) = self.index.get(slot)?
            && let Ok(old) = serde_json::from_slice::<Activity>(&bytes)
        {
            self.kv.delete(&keys::webchat_sent(
                &self.ctx,
                &self.channel,
                &self.conversation,
                &old.id,
            ))?;
        }
        self.index.remove(slot)
    }

    /// Removes every kept activity, its redelivery marker and the counter:
    /// the conversation as if it never had a log. Returns how many activities.
    pub fn erase(&self) -> Result<u64, KvError> {
        let newest = self.index.newest()?;
        let mut erased = 0;
        for slot in newest.saturating_sub(MAX_ACTIVITIES) + 1..=newest {
            if self.index.get(slot)?.is_some() {
                self.drop_slot(slot)?;
                erased += 1;
            }
        }
        self.index.forget()?;
        Ok(erased)
    }

    /// Activities after `watermark`, oldest first, and the watermark to read
    /// from next. A watermark past the newest activity (a client's stale or
    /// made-up one) reads as the newest, so the client picks up from there.
    pub fn read_after(&self, watermark: u64) -> Result<(Vec<Activity>, u64), KvError> {
        let newest = self.index.newest()?;
        // Nothing older than the kept activities is left to read.
        let watermark = watermark
            .min(newest)
            .max(newest.saturating_sub(MAX_ACTIVITIES));
        let last = newest.min(watermark.saturating_add(MAX_READ));
        let mut activities = Vec::new();
        for slot in watermark + 1..=last {
            if let Some(bytes) = self.index.get(slot)?
                && let Ok(activity) = serde_json::from_slice(&bytes)
            {
                activities.push(activity);
            }
        }
        Ok((activities, last.max(watermark)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::TestKv;

    fn activity(id: &str) -> Activity {
        crate::testing::bot_activity(id, &format!("text {id}"))
    }

    #[test]
    fn reads_after_the_watermark_once_each_and_per_conversation() {
        let kv = TestKv::new();
        let ctx = TenantCtx::new("bigcorp", "prod", Some("helpdesk")).unwrap();
        let webchat = ChannelId::parse("webchat").unwrap();
        let (a, b) = (
            ConversationId::parse("wc-a").unwrap(),
            ConversationId::parse("wc-b").unwrap(),
        );
        let log_a = ConversationLog::new(&kv, &ctx, &webchat, &a);
        assert!(log_a.append(&activity("1")).unwrap());
        assert!(log_a.append(&activity("2")).unwrap());
        assert!(
            !log_a.append(&activity("2")).unwrap(),
            "a redelivery is not shown twice"
        );
        let (all, watermark) = log_a.read_after(0).unwrap();
        assert_eq!(
            all.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(watermark, 2);
        assert_eq!(log_a.read_after(2).unwrap(), (vec![], 2));
        assert!(
            ConversationLog::new(&kv, &ctx, &webchat, &b)
                .read_after(0)
                .unwrap()
                .0
                .is_empty()
        );
        let other = TenantCtx::new("acme", "prod", Some("helpdesk")).unwrap();
        assert!(
            ConversationLog::new(&kv, &other, &webchat, &a)
                .read_after(0)
                .unwrap()
                .0
                .is_empty()
        );
        assert_eq!(
            log_a.read_after(u64::MAX).unwrap(),
            (vec![], 2),
            "a watermark past the newest reads as the newest"
        );
        assert!(ConversationId::parse("a/b").is_err());
        assert!(ConversationId::parse("").is_err());
    }

    #[test]
    fn a_conversation_keeps_its_newest_activities_only() {
        let kv = TestKv::new();
        let ctx = TenantCtx::new("bigcorp", "prod", Some("helpdesk")).unwrap();
        let webchat = ChannelId::parse("webchat").unwrap();
        let conversation = ConversationId::parse("wc-a").unwrap();
        let log = ConversationLog::new(&kv, &ctx, &webchat, &conversation);
        let total = MAX_ACTIVITIES + 5;
        for n in 1..=total {
            assert!(log.append(&activity(&n.to_string())).unwrap());
        }
        // A slot, a marker per kept activity, and the counter: nothing more.
        assert_eq!(kv.snapshot().len() as u64, 2 * MAX_ACTIVITIES + 1);
        // From the start, a reader gets the oldest kept activity first.
        let (read, watermark) = log.read_after(0).unwrap();
        assert_eq!(read.first().unwrap().id, "6");
        assert_eq!(read.len() as u64, MAX_READ);
        assert_eq!(watermark, 5 + MAX_READ);
        // A dropped activity's marker is gone, a kept one's is not.
        assert!(log.append(&activity("1")).unwrap(), "dropped: shown again");
        assert!(!log.append(&activity(&total.to_string())).unwrap());
    }
}
