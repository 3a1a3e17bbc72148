//! One tenant's configuration, as a request reads it.
//!
//! Under Spin every request starts a fresh instance, so whatever a request
//! reads of the configuration it reads every time. It reads one key: its
//! tenant's current version in the `config` store
//! ([`crate::store::config`]), whose name comes from a validated tenant id,
//! so the cost does not depend on how many tenants exist. The control plane
//! ([`crate::flows::control`]) validated the version before storing it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::flows::bundle::{Channel, Tenant};
use crate::flows::control::TenantDocument;
use crate::flows::flow::Flow;
use crate::host::Host;
use crate::http::error::ApiError;
use crate::store::config::{self, ConfigStore, Status, Version};
use crate::tenancy::ids::{ChannelId, TenantCtx, TenantId};
use crate::tenancy::limits::Limits;

/// A tenant's current configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    pub id: String,
    pub version: u64,
    pub status: Status,
    pub tenant: Tenant,
    /// The flows this tenant's teams and channels run, by name.
    pub flows: BTreeMap<String, Flow>,
    /// Resolved: the tenant's own over the built-in defaults.
    pub limits: Limits,
}

/// A channel as a request addresses it: configured for its tenant, in an
/// environment the tenant has, under the team named.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    pub ctx: TenantCtx,
    pub channel: ChannelId,
    pub config: Channel,
    /// The flow this channel runs (its own, its team's or its tenant's).
    pub flow: Option<String>,
    pub tenant_name: String,
    pub team_name: Option<String>,
    /// The tenant's resolved limits.
    pub limits: Limits,
    /// Whether the tenant takes new traffic ([`ChannelConfig::require_active`]).
    pub status: Status,
}

impl TenantConfig {
    /// Reads the tenant's current configuration. `Ok(None)` when the tenant
    /// does not exist.
    pub fn load(host: &dyn Host, tenant_id: &str) -> Result<Option<TenantConfig>, ApiError> {
        Ok(
            read::<TenantDocument>(host, tenant_id)?.map(|v| TenantConfig {
                id: v.tenant,
                version: v.version,
                status: v.status,
                tenant: v.document.tenant,
                flows: v.document.flows,
                limits: v.limits,
            }),
        )
    }

    /// The channel `ctx` and `channel` address in its tenant's configuration,
    /// or `None` when the tenant, env, team or channel is unknown: the one
    /// lookup every component does at its boundary.
    ///
    /// It reads the configuration without its flows: parsing a flow compiles
    /// its patterns, which a request that only needs the channel (ingress,
    /// egress, web chat) should not pay for.
    pub fn find_channel(
        host: &dyn Host,
        ctx: &TenantCtx,
        channel: &ChannelId,
    ) -> Result<Option<ChannelConfig>, ApiError> {
        Ok(read::<Routing>(host, ctx.tenant_id())?.and_then(|v| {
            channel_of(
                &v.tenant,
                &v.document.tenant,
                v.limits,
                v.status,
                ctx,
                channel,
            )
        }))
    }

    /// The channel `ctx` (which must name a team) and `channel` address, or
    /// `None` if the env, team or channel is not the tenant's.
    pub fn channel(&self, ctx: &TenantCtx, channel: &ChannelId) -> Option<ChannelConfig> {
        channel_of(
            &self.id,
            &self.tenant,
            self.limits,
            self.status,
            ctx,
            channel,
        )
    }
}

/// What a channel lookup reads of a tenant's document: everything but the
/// flows, which are skipped unparsed.
#[derive(Deserialize)]
struct Routing {
    tenant: Tenant,
    #[serde(rename = "flows", default)]
    _flows: serde::de::IgnoredAny,
}

/// The current version of tenant `tenant_id` with its document read as `D`.
fn read<D: serde::de::DeserializeOwned>(
    host: &dyn Host,
    tenant_id: &str,
) -> Result<Option<Version<D>>, ApiError> {
    let tenant = TenantId::parse(tenant_id)?;
    let kv = host.open_store(config::STORE_LABEL)?;
    ConfigStore::new(kv.as_ref()).current(&tenant)
}

/// The channel `ctx` (which must name a team) and `channel` address in
/// tenant `id`, or `None` if the env, team or channel is not the tenant's.
fn channel_of(
    id: &str,
    tenant: &Tenant,
    limits: Limits,
    status: Status,
    ctx: &TenantCtx,
    channel: &ChannelId,
) -> Option<ChannelConfig> {
    if ctx.tenant_id() != id || !tenant.environments.iter().any(|e| e.id == ctx.env_id()) {
        return None;
    }
    let team = tenant.teams.get(ctx.team_id()?)?;
    let config = team.channels.get(channel.as_str())?;
    let flow = config
        .flow
        .as_ref()
        .or(team.flow.as_ref())
        .or(tenant.flow.as_ref())
        .cloned();
    Some(ChannelConfig {
        ctx: ctx.clone(),
        channel: channel.clone(),
        config: config.clone(),
        flow,
        tenant_name: tenant.name.clone(),
        team_name: team.name.clone(),
        limits,
        status,
    })
}

impl ChannelConfig {
    /// Refuses new traffic of a suspended tenant (ingress, the web chat's
    /// reads). Deliveries of what was accepted before do not ask.
    pub fn require_active(&self) -> Result<(), ApiError> {
        match self.status {
            Status::Active => Ok(()),
            Status::Suspended | Status::Offboarding => Err(ApiError::TenantSuspended),
        }
    }

    /// A string setting of the channel's `config` (non-secret provider settings).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.config.config.get(key).and_then(|v| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;

    #[test]
    fn channels_resolve_only_within_their_tenant_env_and_team() {
        let host = MemoryHost::new(&[]);
        let config = TenantConfig::load(&host, "acme").unwrap().unwrap();
        let slack = ChannelId::parse("slack").unwrap();
        let at = |env: &str, team: Option<&str>| TenantCtx::new("acme", env, team).unwrap();
        let found = config
            .channel(&at("prod", Some("support")), &slack)
            .unwrap();
        assert_eq!(found.config.provider, "messaging-slack");
        assert_eq!(found.flow.as_deref(), Some("acme_support_flow"));
        assert_eq!(found.setting("workspace_id"), Some("T123456"));
        assert!(
            config
                .channel(&at("staging", Some("support")), &slack)
                .is_some()
        );
        assert!(
            config
                .channel(&at("dev", Some("support")), &slack)
                .is_none()
        );
        assert!(config.channel(&at("prod", Some("sales")), &slack).is_none());
        assert!(config.channel(&at("prod", None), &slack).is_none());
        let bigcorp = TenantCtx::new("bigcorp", "prod", Some("support")).unwrap();
        assert!(config.channel(&bigcorp, &slack).is_none());
        assert_eq!(TenantConfig::load(&host, "nobody").unwrap(), None);
    }

    /// ARCHITECTURE's invariant: a request's cost does not grow with the
    /// number of tenants. The lookup is one read whatever the store holds,
    /// and never a scan.
    #[test]
    fn a_channel_lookup_is_one_read_however_many_tenants_exist() {
        use crate::flows::control::{ControlPlane, TenantDocument};
        use crate::store::config::STORE_LABEL;
        let host = MemoryHost::new(&[]);
        let kv = host.store(STORE_LABEL);
        let ctx = TenantCtx::new("acme", "prod", Some("support")).unwrap();
        let slack = ChannelId::parse("slack").unwrap();
        let cost = || {
            let (ops, scans) = (kv.ops(), kv.full_scans());
            assert!(
                TenantConfig::find_channel(&host, &ctx, &slack)
                    .unwrap()
                    .is_some()
            );
            (kv.ops() - ops, kv.full_scans() - scans)
        };
        assert_eq!(cost(), (1, 0));
        let plane = ControlPlane::new(kv);
        let document =
            TenantDocument::from_bundle(crate::testing::demo_bundle(), "bigcorp").unwrap();
        let author = crate::testing::platform_author();
        for i in 0..1_000 {
            let tenant = TenantId::parse(&format!("t{i}")).unwrap();
            plane.apply(&tenant, document.clone(), &author).unwrap();
        }
        assert_eq!(cost(), (1, 0));
    }
}
