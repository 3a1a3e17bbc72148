//! Every storage key the platform writes, built here and nowhere else.
//!
//! **Architecture Invariant:** only this module formats storage keys, and only
//! from validated types ([`TenantCtx`], [`ChannelId`], [`SessionId`],
//! [`SecretName`]). Since no validated id contains `/`, `:` or `.`, two different
//! scopes can never produce the same key, and no key of one tenant is a prefix
//! of another tenant's key space.
//!
//! | key | holds |
//! |---|---|
//! | `sessions/{tenant}/{env}/{team}/{session}.cbor` | session record, CBOR (seed format) |
//! | `state:{tenant}:{env}:{team}:{session}` | session working memory, CBOR (seed format) |
//! | `secrets/global/{name}` | platform-wide secret (seed format) |
//! | `secrets/{tenant}/{name}` | tenant secret (seed format) |
//! | `secrets/{tenant}/teams/{team}/{name}` | team secret (seed format) |
//! | `index/{tenant}/{env}/teams/{team}/sessions/seq` | counter: slots handed out in the team index |
//! | `index/{tenant}/{env}/teams/{team}/sessions/{slot}` | `{session}` at that slot |
//! | `index/{tenant}/{env}/teams/{team}/sessions/{slot}/person` | the person index (its digest) the session at that slot started, written when it was the person's first: kept after the session, so an offboarding finds every person index |
//! | `index/{tenant}/{env}/session-teams/{session}` | the team a session id belongs to |
//! | `index/{tenant}/{env}/team-registry/seq` and `/{slot}` | the teams with data in the env (team tokens), each registered once |
//! | `index/{tenant}/{env}/team-registry/of/{team}` | marks a team as registered |
//! | `index/{tenant}/env-registry/seq` and `/{slot}`, `/of/{env}` | the envs of the tenant with data in the store (sessions and limits stores), each registered with its first team: what an offboarding walks |
//! | `claim:{tenant}:{env}:{team}:{session}` | counter: who creates the session's memory |
//! | `index/{tenant}/{env}/people/{digest}/seq` and `/{slot}` | one person's sessions in the env, `{team}/{session}` each (digest of channel and provider user id): what an erasure walks |
//! | `sweep/{tenant}/{env}/{team}` | the retention sweep's next slot in the team's session index |
//! | `sweep/global/tenant` | the retention sweep's next slot in the tenant index |
//! | `erased/{tenant}/{env}/{team}/{digest}` | when a person was erased there (Unix ms): their messages sent before it are dropped on delivery |
//! | `index/{tenant}/{env}/teams/{team}/erased/seq` and `/{slot}` | the team's erased markers (each slot holds a marker's key): what an offboarding walks |
//! | `webchat/{tenant}/{env}/{team}/{digest}/seq` and `/{n}` | a web chat conversation's bot activities, the newest 200 kept (webchat store; digest of channel and conversation) |
//! | `webchat-sent/{tenant}/{env}/{team}/{digest}` | an outbound message already in a web chat log (webchat store; digest of channel, conversation and message id) |
//! | `egress-progress/{tenant}/{env}/{team}/{session}` | the session's recent outbound messages: for each, its id, a digest of its texts, how many a provider accepted (egress store) |
//! | `egress-progress-claim/{tenant}/{env}/{team}/{session}` | counter: who creates the session's first progress record (egress store) |
//! | `teams-token/{tenant}/{env}/{team}/{digest}` | the channel's Bot Framework access token and its expiry (egress store) |
//! | `providers/teams/signing-keys` | Bot Framework's published signing keys and when they were fetched (cache store; public, not a tenant's) |
//! | `usage/{tenant}/{env}/{team}/{day}/traffic` | counter: messages in plus replies out times 2^32, per day |
//! | `usage/{tenant}/{env}/{team}/{day}/errors` | counter: errors per day |
//! | `usage/{tenant}/{env}/{team}/{day}/delayed` | counter: inbound messages the bridge held for the tenant's rate, per day |
//! | `usage/{tenant}/{env}/{team}/{day}/api-refused` and `/webchat-refused` | counters: REST calls and web chat messages refused with 429, per day (limits store) |
//! | `rate-api/{tenant}/{minute}` | counter: the tenant's REST calls in that minute (limits store) |
//! | `rate-api-subject/{tenant}/{digest}/{minute}` | counter: one token subject's REST calls in that minute (limits store; digest of the subject) |
//! | `rate-webchat/{tenant}/{env}/{team}/{digest}/{minute}` | counter: a web chat conversation's messages in that minute (limits store) |
//! | `rate-channel/{tenant}/{env}/{team}/{digest}/{minute}` | counter: a web chat channel's messages in that minute (limits store) |
//! | `rate-api/...`, `rate-api-subject/...`, `rate-webchat/...`, `rate-channel/...` + `/last` | the window a rate scope opened last (limits store): the one before it is deleted when the next opens |
//! | `rate-scopes/{tenant}/seq` and `/{slot}` | the tenant's rate scopes (each slot a scope's prefix), registered at their first window: what an offboarding walks (limits store) |
//! | `index/{tenant}/{env}/team-registry/...` in the limits store | the teams with refusals counted, as in the sessions store |
//! | `secrets-index/{global,{tenant},{tenant}/teams/{team}}/seq` and `/{slot}` | secret names of a scope (secrets store) |
//! | `secrets-index/{tenant}/team-registry/seq`, `/{slot}` and `/of/{team}` | the teams of the tenant with secrets, each registered once (secrets store): what an offboarding walks |
//! | `config/{tenant}/head` | the tenant's current configuration version, JSON: what every request of the tenant reads (config store) |
//! | `config/{tenant}/versions/{n}` | version `n` of the tenant's configuration, immutable (config store) |
//! | `config/{tenant}/claim` | counter: whoever increments it to 1 creates the tenant (config store) |
//! | `config/{tenant}/offboarding` | how far the tenant's offboarding got, JSON (config store; deleted with the head, last) |
//! | `config/{tenant}/offboarding-lease/{minute}` | counter: whoever increments it to 1 runs the offboarding's call in that minute (config store) |
//! | `config/global/tenants/seq` and `/{slot}` | the tenants created, each once: what the tenant listing walks (config store) |
//!
//! `{team}` is the team id or `default`. The tenant `global` is reserved (see
//! [`crate::tenancy::ids`]) so `secrets/global/` is never a tenant's folder. Every
//! key stays under Spin's 256-byte limit with 63-byte ids (a test builds each
//! one at its longest): keys that would need a fourth id, a conversation or a
//! provider's message id carry a digest of those instead.

use crate::tenancy::ids::{
    ChannelId, ConversationId, Counter, Day, IdKind, SecretName, SecretScope, SessionId, TenantCtx,
    TenantId, validate_id,
};

/// `sessions/{tenant}/{env}/{team}/{session_id}.cbor`
pub fn session_record(ctx: &TenantCtx, session: &SessionId) -> String {
    format!(
        "sessions/{}/{}/{}/{}.cbor",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        session.as_str()
    )
}

/// `state:{tenant}:{env}:{team|default}:{session_id}`, exactly the seed's format.
pub fn session_state(ctx: &TenantCtx, session: &SessionId) -> String {
    format!(
        "state:{}:{}:{}:{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        session.as_str()
    )
}

/// `claim:{tenant}:{env}:{team}:{session}`: a counter; whoever increments it
/// to 1 creates the session's memory (see `SessionStore::claim_memory`).
pub fn session_memory_claim(ctx: &TenantCtx, session: &SessionId) -> String {
    format!(
        "claim:{}:{}:{}:{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        session.as_str()
    )
}

/// `usage/{tenant}/{env}/{team}/{day}/{counter}`: a counter of the
/// context's team (`default` = no team) for one day.
pub fn usage(ctx: &TenantCtx, day: &Day, counter: Counter) -> String {
    format!(
        "usage/{}/{}/{}/{}/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        day.as_str(),
        counter.as_str()
    )
}

/// A web chat conversation's activity log:
/// `webchat/{tenant}/{env}/{team}/{digest of channel and conversation}` with
/// `/seq` and one key per activity (the watermark is the slot number).
pub fn webchat_log(
    ctx: &TenantCtx,
    channel: &ChannelId,
    conversation: &ConversationId,
) -> IndexKeys {
    IndexKeys {
        prefix: format!(
            "webchat/{}/{}/{}/{}",
            ctx.tenant_id(),
            ctx.env_id(),
            ctx.team_token(),
            digest(channel.as_str(), conversation.as_str())
        ),
    }
}

/// Marks an outbound message as already appended to a web chat
/// conversation's log, so a redelivery does not show it twice:
/// `webchat-sent/{tenant}/{env}/{team}/{digest of channel, conversation and message id}`.
pub fn webchat_sent(
    ctx: &TenantCtx,
    channel: &ChannelId,
    conversation: &ConversationId,
    message_id: &str,
) -> String {
    format!(
        "webchat-sent/{}/{}/{}/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        digest(
            channel.as_str(),
            &format!("{}/{message_id}", conversation.as_str())
        )
    )
}

/// How far egress got in sending a session's recent outbound messages (egress
/// store): `egress-progress/{tenant}/{env}/{team}/{session}`.
pub fn egress_progress(ctx: &TenantCtx, session: &SessionId) -> String {
    format!(
        "egress-progress/{}/{}/{}/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        session.as_str()
    )
}

/// Bot Framework's signing keys as ingress last fetched them (cache store).
/// Public material shared by every tenant: no tenant's data lives here.
pub fn teams_signing_keys() -> String {
    "providers/teams/signing-keys".to_owned()
}

/// A channel's Bot Framework access token while it is valid (egress store):
/// `teams-token/{tenant}/{env}/{team}/{digest of channel}`.
pub fn teams_access_token(ctx: &TenantCtx, channel: &ChannelId) -> String {
    format!(
        "teams-token/{}/{}/{}/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        digest(channel.as_str(), "")
    )
}

/// Who creates a session's first egress progress record (a counter; the
/// writer that increments it to 1): `egress-progress-claim/{tenant}/{env}/{team}/{session}`.
pub fn egress_progress_claim(ctx: &TenantCtx, session: &SessionId) -> String {
    format!(
        "egress-progress-claim/{}/{}/{}/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        session.as_str()
    )
}

/// The per-minute request counters of a tenant's REST API calls (limits
/// store): `rate-api/{tenant}/{window}`.
pub fn rate_api(ctx: &TenantCtx) -> RateKeys {
    RateKeys {
        scopes: rate_scopes_of(ctx.tenant_id()),
        prefix: format!("rate-api/{}", ctx.tenant_id()),
    }
}

/// The per-minute request counters of one token subject within a tenant
/// (limits store): `rate-api-subject/{tenant}/{digest of subject}/{window}`.
/// A subject is whatever an issuer put in `sub`, so only its digest goes in a key.
pub fn rate_api_subject(ctx: &TenantCtx, subject: &str) -> RateKeys {
    RateKeys {
        scopes: rate_scopes_of(ctx.tenant_id()),
        prefix: format!(
            "rate-api-subject/{}/{}",
            ctx.tenant_id(),
            digest("", subject)
        ),
    }
}

/// The per-minute message counters of one web chat conversation (limits
/// store): `rate-webchat/{tenant}/{env}/{team}/{digest of channel and conversation}/{window}`.
pub fn rate_webchat_conversation(
    ctx: &TenantCtx,
    channel: &ChannelId,
    conversation: &ConversationId,
) -> RateKeys {
    RateKeys {
        scopes: rate_scopes_of(ctx.tenant_id()),
        prefix: format!(
            "rate-webchat/{}/{}/{}/{}",
            ctx.tenant_id(),
            ctx.env_id(),
            ctx.team_token(),
            digest(channel.as_str(), conversation.as_str())
        ),
    }
}

/// The per-minute message counters of a web chat channel (limits store):
/// `rate-channel/{tenant}/{env}/{team}/{digest of channel}/{window}`.
pub fn rate_webchat_channel(ctx: &TenantCtx, channel: &ChannelId) -> RateKeys {
    RateKeys {
        scopes: rate_scopes_of(ctx.tenant_id()),
        prefix: format!(
            "rate-channel/{}/{}/{}/{}",
            ctx.tenant_id(),
            ctx.env_id(),
            ctx.team_token(),
            digest(channel.as_str(), "")
        ),
    }
}

/// The counters of one rate limit: one key per fixed window, all under one
/// prefix that only this module builds (see [`crate::store::rate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateKeys {
    prefix: String,
    scopes: IndexKeys,
}

impl RateKeys {
    /// The counter of window number `window` (minutes since the epoch).
    pub fn window(&self, window: u64) -> String {
        format!("{}/{window}", self.prefix)
    }

    /// `{prefix}/last`: the window this scope opened last, so the one
    /// before it can be deleted however long the scope was quiet.
    pub fn last(&self) -> String {
        format!("{}/last", self.prefix)
    }

    /// The tenant's registry of rate scopes this scope belongs in.
    pub fn scopes(&self) -> &IndexKeys {
        &self.scopes
    }

    /// What a slot of [`rate_scopes`] holds for this scope.
    pub fn as_entry(&self) -> &str {
        &self.prefix
    }

    /// The scope a slot of `tenant`'s [`rate_scopes`] names, if it is one
    /// of that tenant's: an entry is data read back from a store, so it is
    /// checked against the formats above before a key is made of it.
    pub fn from_entry(tenant: &TenantId, entry: &str) -> Option<RateKeys> {
        let mut parts = entry.split('/');
        let kind = parts.next()?;
        let owner = parts.next()?;
        let rest: Vec<&str> = parts.collect();
        let plain = |s: &&str| validate_id(IdKind::Team, s).is_ok();
        let well_formed = owner == tenant.as_str()
            && match kind {
                "rate-api" => rest.is_empty(),
                "rate-api-subject" => rest.len() == 1 && is_digest(rest[0]),
                "rate-webchat" | "rate-channel" => {
                    rest.len() == 3 && rest[..2].iter().all(plain) && is_digest(rest[2])
                }
                _ => false,
            };
        well_formed.then(|| RateKeys {
            scopes: rate_scopes(tenant),
            prefix: entry.to_owned(),
        })
    }
}

/// `rate-scopes/{tenant}`: the tenant's rate scopes, each registered when it
/// opens its first window (limits store).
pub fn rate_scopes(tenant: &TenantId) -> IndexKeys {
    rate_scopes_of(tenant.as_str())
}

fn rate_scopes_of(tenant: &str) -> IndexKeys {
    IndexKeys {
        prefix: format!("rate-scopes/{tenant}"),
    }
}

/// Whether `s` is what [`digest`] makes: 32 lowercase hex digits.
fn is_digest(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 16 bytes of SHA-256 over `{channel}/{rest}`, in hex. A channel id holds no
/// `/`, so no two pairs share an input; and a key with the three scope ids
/// plus a digest stays under Spin's 256-byte limit, where one with a channel,
/// a conversation or a provider's message id spelled out would not.
fn digest(channel: &str, rest: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(channel)
        .chain_update("/")
        .chain_update(rest)
        .finalize();
    hex::encode(&digest[..16])
}

/// The keys of one slot index (see [`crate::store::index`]): a counter and one key
/// per slot, all under one prefix that only this module builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKeys {
    prefix: String,
}

impl IndexKeys {
    /// The counter that hands out slots. Only ever changed with the host's
    /// atomic increment, so two writers never get the same slot.
    pub fn seq(&self) -> String {
        format!("{}/seq", self.prefix)
    }

    /// One slot, written only by the writer that got its number from [`Self::seq`].
    pub fn slot(&self, slot: u64) -> String {
        format!("{}/{slot}", self.prefix)
    }
}

/// The sessions of the context's team (or of no team), in the order they
/// were created: `index/{tenant}/{env}/teams/{team}/sessions`.
pub fn session_index(ctx: &TenantCtx) -> IndexKeys {
    IndexKeys {
        prefix: format!(
            "index/{}/{}/teams/{}/sessions",
            ctx.tenant_id(),
            ctx.env_id(),
            ctx.team_token()
        ),
    }
}

/// The teams (team tokens, `default` included) that have data in the
/// context's tenant and env, each registered once when its first session is
/// created: `index/{tenant}/{env}/team-registry`. What env-wide listings and
/// usage read instead of an env-wide index.
pub fn team_registry(ctx: &TenantCtx) -> IndexKeys {
    IndexKeys {
        prefix: format!("index/{}/{}/team-registry", ctx.tenant_id(), ctx.env_id()),
    }
}

/// Marks the context's team as registered in [`team_registry`]:
/// `index/{tenant}/{env}/team-registry/of/{team}`.
pub fn team_registered(ctx: &TenantCtx) -> String {
    format!(
        "index/{}/{}/team-registry/of/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token()
    )
}

/// The sessions of one person (a provider's user id on one channel) in the
/// context's env, across teams: `index/{tenant}/{env}/people/{digest}`.
pub fn person_index(ctx: &TenantCtx, channel: &ChannelId, user_id: &str) -> IndexKeys {
    person_index_at(ctx, &person_digest(channel, user_id))
}

fn person_index_at(ctx: &TenantCtx, digest: &str) -> IndexKeys {
    IndexKeys {
        prefix: format!("index/{}/{}/people/{digest}", ctx.tenant_id(), ctx.env_id()),
    }
}

/// `index/{tenant}/{env}/teams/{team}/sessions/{slot}/person`: the digest
/// of the person index whose first session took `slot` of the team index.
pub fn person_started_at(ctx: &TenantCtx, slot: u64) -> String {
    format!("{}/{slot}/person", session_index(ctx).prefix)
}

/// The digest a person index's key ends with ([`person_index`]).
pub fn person_digest(channel: &ChannelId, user_id: &str) -> String {
    digest(channel.as_str(), user_id)
}

/// The person index of `ctx`'s env a stored digest names, if it is one.
pub fn person_index_of_digest(ctx: &TenantCtx, stored: &str) -> Option<IndexKeys> {
    is_digest(stored).then(|| person_index_at(ctx, stored))
}

/// `erased/{tenant}/{env}/{team}/{digest}`: when the person was erased in
/// the context's team.
pub fn person_erased(ctx: &TenantCtx, channel: &ChannelId, user_id: &str) -> String {
    format!(
        "erased/{}/{}/{}/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token(),
        digest(channel.as_str(), user_id)
    )
}

/// `index/{tenant}/{env}/teams/{team}/erased`: the team's erased markers,
/// each slot holding a marker's key, so an offboarding finds them.
pub fn erased_index(ctx: &TenantCtx) -> IndexKeys {
    IndexKeys {
        prefix: format!(
            "index/{}/{}/teams/{}/erased",
            ctx.tenant_id(),
            ctx.env_id(),
            ctx.team_token()
        ),
    }
}

/// The erased marker a slot of `ctx`'s [`erased_index`] names, if it is
/// one of that team's (an entry is read back from a store, so it is checked).
pub fn erased_marker_from_entry(ctx: &TenantCtx, entry: &str) -> Option<String> {
    let prefix = format!(
        "erased/{}/{}/{}/",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token()
    );
    entry
        .strip_prefix(&prefix)
        .filter(|d| is_digest(d))
        .map(|_| entry.to_owned())
}

/// The envs of a tenant with data in a store, each registered once with its
/// first team: `index/{tenant}/env-registry`.
pub fn env_registry(tenant: &TenantId) -> IndexKeys {
    IndexKeys {
        prefix: format!("index/{tenant}/env-registry"),
    }
}

/// Marks the context's env as registered in [`env_registry`]:
/// `index/{tenant}/env-registry/of/{env}`.
pub fn env_registered(ctx: &TenantCtx) -> String {
    format!("index/{}/env-registry/of/{}", ctx.tenant_id(), ctx.env_id())
}

/// `sweep/{tenant}/{env}/{team}`: where the retention sweep goes on in the
/// context's team's session index.
pub fn sweep_cursor(ctx: &TenantCtx) -> String {
    format!(
        "sweep/{}/{}/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        ctx.team_token()
    )
}

/// `sweep/global/tenant`: the tenant the retention sweep goes on with (a
/// slot of [`tenant_index`]).
pub fn sweep_tenant_cursor() -> String {
    "sweep/global/tenant".into()
}

/// Where a session id is found without knowing its team.
pub fn session_team_locator(ctx: &TenantCtx, session: &SessionId) -> String {
    format!(
        "index/{}/{}/session-teams/{}",
        ctx.tenant_id(),
        ctx.env_id(),
        session.as_str()
    )
}

/// `config/{tenant}/head`: the tenant's current configuration, the one key a
/// request reads to find its channel, flow, limits and status.
pub fn config_head(tenant: &TenantId) -> String {
    format!("config/{tenant}/head")
}

/// `config/{tenant}/versions/{n}`: version `n`, written once and never changed.
pub fn config_version(tenant: &TenantId, version: u64) -> String {
    format!("config/{tenant}/versions/{version}")
}

/// `config/{tenant}/claim`: a counter; whoever increments it to 1 writes the
/// tenant's first version (compare-and-swap cannot create a key atomically
/// on Spin's SQLite backend).
pub fn config_claim(tenant: &TenantId) -> String {
    format!("config/{tenant}/claim")
}

/// `config/{tenant}/offboarding`: how far deleting the tenant got.
pub fn offboarding(tenant: &TenantId) -> String {
    format!("config/{tenant}/offboarding")
}

/// `config/{tenant}/offboarding-lease/{minute}`: one call of the
/// offboarding at a time (a counter, taken by whoever increments it to 1).
pub fn offboarding_lease(tenant: &TenantId, minute: u64) -> String {
    format!("config/{tenant}/offboarding-lease/{minute}")
}

/// `config/global/tenants`: one slot per tenant created (the reserved tenant
/// `global` keeps platform-wide keys apart from every tenant's).
pub fn tenant_index() -> IndexKeys {
    IndexKeys {
        prefix: "config/global/tenants".into(),
    }
}

/// `secrets/global/{name}`, `secrets/{tenant}/{name}` or
/// `secrets/{tenant}/teams/{team}/{name}`: the seed's secret namespacing.
pub fn secret(scope: &SecretScope, name: &SecretName) -> String {
    match scope {
        SecretScope::Global => format!("secrets/global/{}", name.as_str()),
        SecretScope::Tenant(tenant) => format!("secrets/{tenant}/{}", name.as_str()),
        SecretScope::Team(tenant, team) => {
            format!("secrets/{tenant}/teams/{team}/{}", name.as_str())
        }
    }
}

/// The names of a secret scope, for listing: `secrets-index/global`,
/// `secrets-index/{tenant}` or `secrets-index/{tenant}/teams/{team}`.
pub fn secret_index(scope: &SecretScope) -> IndexKeys {
    let prefix = match scope {
        SecretScope::Global => "secrets-index/global".to_owned(),
        SecretScope::Tenant(tenant) => format!("secrets-index/{tenant}"),
        SecretScope::Team(tenant, team) => format!("secrets-index/{tenant}/teams/{team}"),
    };
    IndexKeys { prefix }
}

/// `secrets-index/{tenant}/team-registry`: the teams of the tenant with
/// secrets, each registered once, so an offboarding finds them.
pub fn secret_team_registry(tenant: &TenantId) -> IndexKeys {
    IndexKeys {
        prefix: format!("secrets-index/{tenant}/team-registry"),
    }
}

/// Marks a team as registered in [`secret_team_registry`]:
/// `secrets-index/{tenant}/team-registry/of/{team}`.
pub fn secret_team_registered(tenant: &TenantId, team: &str) -> String {
    format!("secrets-index/{tenant}/team-registry/of/{team}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(team: Option<&str>) -> TenantCtx {
        TenantCtx::new("acme", "prod", team).unwrap()
    }

    fn sid() -> SessionId {
        SessionId::parse("session_001").unwrap().unwrap()
    }

    #[test]
    fn session_and_state_keys_are_the_seeds() {
        assert_eq!(
            session_record(&ctx(Some("support")), &sid()),
            "sessions/acme/prod/support/session_001.cbor"
        );
        assert_eq!(
            session_state(&ctx(Some("support")), &sid()),
            "state:acme:prod:support:session_001"
        );
        assert_eq!(
            session_state(&ctx(None), &sid()),
            "state:acme:prod:default:session_001"
        );
        assert_eq!(
            session_record(&ctx(None), &sid()),
            "sessions/acme/prod/default/session_001.cbor"
        );
    }

    #[test]
    fn secret_keys_are_the_seeds() {
        let c = ctx(Some("support"));
        let name = |n: &str| SecretName::parse(n).unwrap();
        assert_eq!(
            secret(&SecretScope::Global, &name("signing_key")),
            "secrets/global/signing_key"
        );
        assert_eq!(
            secret(&SecretScope::tenant_of(&c), &name("slack_bot_token")),
            "secrets/acme/slack_bot_token"
        );
        assert_eq!(
            secret(&SecretScope::team_of(&c).unwrap(), &name("webhook_secret")),
            "secrets/acme/teams/support/webhook_secret"
        );
        assert_eq!(SecretScope::team_of(&ctx(None)), None);
        assert_eq!(
            secret_index(&SecretScope::team_of(&c).unwrap()).slot(3),
            "secrets-index/acme/teams/support/3"
        );
    }

    #[test]
    fn index_keys_stay_under_the_tenant() {
        let c = ctx(Some("support"));
        assert_eq!(team_registry(&c).seq(), "index/acme/prod/team-registry/seq");
        assert_eq!(
            team_registered(&c),
            "index/acme/prod/team-registry/of/support"
        );
        assert_eq!(
            session_index(&c).slot(7),
            "index/acme/prod/teams/support/sessions/7"
        );
        assert_eq!(
            session_team_locator(&c, &sid()),
            "index/acme/prod/session-teams/session_001"
        );
    }

    #[test]
    fn config_keys_are_the_tenants_and_the_index_is_the_platforms() {
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(config_head(&acme), "config/acme/head");
        assert_eq!(config_version(&acme, 3), "config/acme/versions/3");
        assert_eq!(config_claim(&acme), "config/acme/claim");
        assert_eq!(tenant_index().slot(7), "config/global/tenants/7");
        assert!(
            TenantId::parse("global").is_err(),
            "no tenant's keys can be the index's"
        );
    }

    #[test]
    fn the_longest_key_fits_spins_limit() {
        let long = "a".repeat(63);
        let c = TenantCtx::new(&long, &long, Some(&long)).unwrap();
        let s = SessionId::parse(&"f".repeat(32)).unwrap().unwrap();
        let channel = ChannelId::parse(&long).unwrap();
        let conversation = ConversationId::parse(&"c".repeat(64)).unwrap();
        let message_id = "m".repeat(1000);
        let day = Day::of(0);
        let team = SecretScope::team_of(&c).unwrap();
        let tenant = TenantId::parse(&long).unwrap();
        // The last minute a clock of Unix milliseconds in an i64 can name.
        let last_minute = i64::MAX as u64 / 60_000;
        for key in [
            session_record(&c, &s),
            session_state(&c, &s),
            session_memory_claim(&c, &s),
            session_index(&c).seq(),
            session_index(&c).slot(u64::MAX),
            session_team_locator(&c, &s),
            secret(&team, &SecretName::parse(&long).unwrap()),
            secret_index(&team).slot(u64::MAX),
            usage(&c, &day, Counter::Traffic),
            team_registry(&c).slot(u64::MAX),
            team_registered(&c),
            webchat_log(&c, &channel, &conversation).slot(u64::MAX),
            webchat_sent(&c, &channel, &conversation, &message_id),
            egress_progress(&c, &s),
            egress_progress_claim(&c, &s),
            teams_access_token(&c, &channel),
            rate_api(&c).window(last_minute),
            rate_api_subject(&c, &message_id).window(last_minute),
            rate_webchat_conversation(&c, &channel, &conversation).window(last_minute),
            rate_webchat_channel(&c, &channel).window(last_minute),
            usage(&c, &day, Counter::ApiRefused),
            person_index(&c, &channel, &message_id).slot(u64::MAX),
            person_erased(&c, &channel, &message_id),
            sweep_cursor(&c),
            config_head(&tenant),
            config_version(&tenant, u64::MAX),
            config_claim(&tenant),
            tenant_index().slot(u64::MAX),
        ] {
            assert!(key.len() <= 256, "{} bytes: {key}", key.len());
        }
    }
}
