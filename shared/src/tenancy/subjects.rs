//! Every NATS subject and message-dedupe id the platform uses, built here and
//! nowhere else (the storage-key discipline of [`crate::tenancy::keys`], for NATS).
//!
//! **Architecture Invariant:** subjects are formatted only from validated types.
//! A validated id has no `.`, `*`, `>` or whitespace, so no tenant, team or
//! channel can add a token to a subject or turn it into a wildcard, and two
//! different scopes never share a subject. The bridge checks the same rule again
//! before it publishes.
//!
//! | subject | carries |
//! |---|---|
//! | `greentic.messaging.ingress.{env}.{tenant}.{team}.{channel}` | verified inbound messages |
//! | `greentic.messaging.egress.{env}.{tenant}.{team}.{channel}` | replies to send out |
//!
//! `{team}` is the team id or `default`.

use crate::tenancy::ids::{ChannelId, TenantCtx};

/// Where a message is going, as the bridge's publish route takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Verified inbound messages of one channel.
pub fn ingress(ctx: &TenantCtx, channel: &ChannelId) -> Subject {
    messaging("ingress", ctx, channel)
}

/// Replies to send out on one channel.
pub fn egress(ctx: &TenantCtx, channel: &ChannelId) -> Subject {
    messaging("egress", ctx, channel)
}

fn messaging(direction: &str, ctx: &TenantCtx, channel: &ChannelId) -> Subject {
    Subject(format!(
        "greentic.messaging.{direction}.{}.{}.{}.{}",
        ctx.env_id(),
        ctx.tenant_id(),
        ctx.team_token(),
        channel
    ))
}

/// The `Nats-Msg-Id` of a provider's message: the channel scope, then the
/// provider's own id, so equal ids of two tenants (or channels) never collide
/// and a provider's retry is recognised as the same message.
///
/// A provider id that is not a plain token (anything but ASCII letters,
/// digits, `_` and `-`, or longer than 96) is replaced by its SHA-256. A scope
/// whose ids are so long that the whole would not leave room for the suffixes
/// replies add (`:replies`) is replaced by a digest of it. So the result always
/// fits the bridge's `[A-Za-z0-9._:-]{1,200}` with [`MSG_ID_SUFFIX_ROOM`] to spare.
pub fn dedupe_id(ctx: &TenantCtx, channel: &ChannelId, kind: &str, provider_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let plain = !provider_id.is_empty()
        && provider_id.len() <= 96
        && provider_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let id = if plain {
        provider_id.to_owned()
    } else {
        hex::encode(Sha256::digest(provider_id.as_bytes()))
    };
    let scope = format!(
        "{}:{}:{}:{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        channel
    );
    let full = format!("{scope}:{kind}-{id}");
    if full.len() + MSG_ID_SUFFIX_ROOM <= MSG_ID_MAX_LEN {
        return full;
    }
    let scope = hex::encode(&Sha256::digest(scope.as_bytes())[..16]);
    format!("{scope}:{kind}-{id}")
}

/// The bridge's longest `Nats-Msg-Id`.
pub const MSG_ID_MAX_LEN: usize = 200;

/// What a dedupe id leaves free for suffixes of derived messages.
pub const MSG_ID_SUFFIX_ROOM: usize = 24;

/// A provider id that is unique only within its conversation (Teams and web
/// chat activity ids), made unique within the channel: a digest of the
/// conversation, then the id, which stays readable.
pub fn within_conversation(conversation: &str, id: &str) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "{}-{id}",
        hex::encode(&Sha256::digest(conversation.as_bytes())[..8])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(team: Option<&str>) -> TenantCtx {
        TenantCtx::new("acme", "prod", team).unwrap()
    }

    #[test]
    fn subjects_are_the_seeds() {
        let slack = ChannelId::parse("slack").unwrap();
        assert_eq!(
            ingress(&ctx(Some("support")), &slack).as_str(),
            "greentic.messaging.ingress.prod.acme.support.slack"
        );
        assert_eq!(
            egress(&ctx(None), &slack).as_str(),
            "greentic.messaging.egress.prod.acme.default.slack"
        );
    }

    #[test]
    fn dedupe_ids_are_scoped_and_always_safe() {
        let slack = ChannelId::parse("slack").unwrap();
        let id = dedupe_id(&ctx(Some("support")), &slack, "event", "Ev08MFMKH6");
        assert_eq!(id, "acme:prod:support:slack:event-Ev08MFMKH6");
        let bigcorp = TenantCtx::new("bigcorp", "prod", Some("support")).unwrap();
        assert_ne!(id, dedupe_id(&bigcorp, &slack, "event", "Ev08MFMKH6"));
        for odd in ["a b", "x.y>*", "", &"z".repeat(65), "f:1234;messageid=9"] {
            let id = dedupe_id(&ctx(None), &slack, "activity", odd);
            assert!(id.len() <= 200, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)),
                "{id}"
            );
        }
        assert_ne!(
            dedupe_id(&ctx(None), &slack, "a", "x y"),
            dedupe_id(&ctx(None), &slack, "a", "x z")
        );
    }

    #[test]
    fn dedupe_ids_of_the_longest_scopes_leave_room_for_suffixes() {
        let long = "a".repeat(63);
        let longer = format!("{}b", "a".repeat(62));
        let ctx = TenantCtx::new(&long, &long, Some(&long)).unwrap();
        let other = TenantCtx::new(&longer, &long, Some(&long)).unwrap();
        let channel = ChannelId::parse(&long).unwrap();
        for provider_id in ["Ev1", &"z".repeat(96), "not plain"] {
            let id = dedupe_id(&ctx, &channel, "activity", provider_id);
            assert!(id.len() + MSG_ID_SUFFIX_ROOM <= MSG_ID_MAX_LEN, "{id}");
            assert_ne!(id, dedupe_id(&other, &channel, "activity", provider_id));
        }
    }
}
