//! Every NATS subject and message-dedupe id the platform uses, built here and
//! nowhere else (the storage-key discipline of [`crate::keys`], for NATS).
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

use crate::tenant::{ChannelId, TenantCtx};

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
/// digits, `_` and `-`, or longer than 64) is replaced by its SHA-256, so the
/// result always fits the bridge's `[A-Za-z0-9._:-]{1,200}`.
pub fn dedupe_id(ctx: &TenantCtx, channel: &ChannelId, kind: &str, provider_id: &str) -> String {
    let plain = !provider_id.is_empty()
        && provider_id.len() <= 64
        && provider_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let id = if plain {
        provider_id.to_owned()
    } else {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(provider_id.as_bytes()))
    };
    format!(
        "{}:{}:{}:{}:{kind}-{id}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        channel
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
}
