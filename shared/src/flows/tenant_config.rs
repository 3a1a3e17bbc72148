//! One tenant's configuration, as a request reads it.
//!
//! Under Spin every request starts a fresh instance, so whatever a request
//! reads of the bundle it reads every time. Parsing the whole bundle per
//! request would make every tenant pay for all the others. So the bundle is
//! validated once, at build time (`greentic bundle compile`), and split into
//! one JSON file per tenant holding its teams, channels and the flows they
//! use; a component mounts that folder (`files` in spin.toml) and reads only
//! `tenants/{tenant}.json`, whose name comes from a validated tenant id.
//!
//! Each tenant's resolved limits are in its file, and also alone in
//! `limits/{tenant}.json` (with the platform's in `limits.json`, for tokens
//! of tenants the bundle does not list): the REST APIs read only those few
//! bytes per request ([`crate::service::limits`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flows::bundle::{Channel, LoadedBundle, Tenant};
use crate::flows::flow::Flow;
use crate::host::Host;
use crate::http::error::ApiError;
use crate::tenancy::ids::{ChannelId, TenantCtx};
use crate::tenancy::limits::{self, Limits};

/// Bumped when the compiled layout changes; an older file is refused.
pub const FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub format: u32,
    pub id: String,
    pub tenant: Tenant,
    /// The flows this tenant's teams and channels run, by name.
    pub flows: BTreeMap<String, Flow>,
    /// Resolved: the tenant's own over the bundle's over the built-in defaults.
    pub limits: Limits,
}

/// The file of one tenant, relative to the compiled folder.
pub fn file_name(tenant_id: &str) -> String {
    format!("tenants/{tenant_id}.json")
}

/// One file per tenant, one of limits per tenant and the platform's
/// limits: `(file name, JSON)`.
pub fn compile(loaded: &LoadedBundle) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        limits::PLATFORM_FILE.to_owned(),
        json(&loaded.bundle.platform_limits()),
    )];
    for id in loaded.bundle.tenants.keys() {
        files.push((limits::file_name(id), json(&loaded.bundle.limits_of(id))));
    }
    let tenants = loaded.bundle.tenants.iter().map(|(id, tenant)| {
        let mut flows = BTreeMap::new();
        let named = std::iter::once(tenant.flow.as_ref())
            .chain(tenant.teams.values().map(|t| t.flow.as_ref()))
            .chain(
                tenant
                    .teams
                    .values()
                    .flat_map(|t| t.channels.values().map(|c| c.flow.as_ref())),
            )
            .flatten();
        for name in named {
            if let Some(flow) = loaded.flows.get(name) {
                flows.insert(name.clone(), flow.clone());
            }
        }
        let config = TenantConfig {
            format: FORMAT,
            id: id.clone(),
            tenant: tenant.clone(),
            flows,
            limits: loaded.bundle.limits_of(id),
        };
        (file_name(id), json(&config))
    });
    tenants.chain(files).collect()
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("configs always serialise")
}

/// A channel as a request addresses it: present in the bundle, in an
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
}

impl TenantConfig {
    /// Reads the tenant's compiled file through the host. `Ok(None)` when the
    /// tenant does not exist.
    pub fn load(host: &dyn Host, tenant_id: &str) -> Result<Option<TenantConfig>, ApiError> {
        read::<TenantConfig>(host, tenant_id)
    }

    /// The channel `ctx` and `channel` address in its tenant's compiled file,
    /// or `None` when the tenant, env, team or channel is unknown: the one
    /// lookup every component does at its boundary.
    ///
    /// It reads the file without its flows: parsing a flow compiles its
    /// patterns, which a request that only needs the channel (ingress,
    /// egress, web chat) should not pay for.
    pub fn find_channel(
        host: &dyn Host,
        ctx: &TenantCtx,
        channel: &ChannelId,
    ) -> Result<Option<ChannelConfig>, ApiError> {
        Ok(read::<Routing>(host, ctx.tenant_id())?
            .and_then(|r| channel_of(&r.id, &r.tenant, r.limits, ctx, channel)))
    }

    /// The channel `ctx` (which must name a team) and `channel` address, or
    /// `None` if the env, team or channel is not the tenant's.
    pub fn channel(&self, ctx: &TenantCtx, channel: &ChannelId) -> Option<ChannelConfig> {
        channel_of(&self.id, &self.tenant, self.limits, ctx, channel)
    }
}

/// What a channel lookup reads of a tenant's file: everything but the flows,
/// which are skipped unparsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Routing {
    format: u32,
    id: String,
    tenant: Tenant,
    #[serde(rename = "flows")]
    _flows: serde::de::IgnoredAny,
    limits: Limits,
}

/// The compiled layout's header, checked on whatever view of a file is read.
trait Compiled: serde::de::DeserializeOwned {
    fn header(&self) -> (u32, &str);
}

impl Compiled for TenantConfig {
    fn header(&self) -> (u32, &str) {
        (self.format, &self.id)
    }
}

impl Compiled for Routing {
    fn header(&self) -> (u32, &str) {
        (self.format, &self.id)
    }
}

/// Reads `tenants/{tenant_id}.json` as `T`: `Ok(None)` when the tenant does
/// not exist, an internal error when its file is unreadable, stale or
/// misplaced.
fn read<T: Compiled>(host: &dyn Host, tenant_id: &str) -> Result<Option<T>, ApiError> {
    let Some(bytes) = host
        .bundle_file(&file_name(tenant_id))
        .map_err(ApiError::Internal)?
    else {
        return Ok(None);
    };
    let config: T = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("compiled config of tenant {tenant_id}: {e}")))?;
    if config.header() != (FORMAT, tenant_id) {
        return Err(ApiError::Internal(format!(
            "compiled config of tenant {tenant_id} is stale or misplaced: run `greentic bundle compile`"
        )));
    }
    Ok(Some(config))
}

/// The channel `ctx` (which must name a team) and `channel` address in
/// tenant `id`, or `None` if the env, team or channel is not the tenant's.
fn channel_of(
    id: &str,
    tenant: &Tenant,
    limits: Limits,
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
    })
}

impl ChannelConfig {
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
    fn each_tenant_gets_its_own_file_with_only_its_flows() {
        let loaded = crate::flows::bundle::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bundles/demo.yaml"
        )))
        .unwrap();
        let files = compile(&loaded);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "tenants/acme.json",
                "tenants/bigcorp.json",
                "limits.json",
                "limits/acme.json",
                "limits/bigcorp.json"
            ]
        );
        let acme: TenantConfig = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(acme.flows.keys().collect::<Vec<_>>(), ["acme_support_flow"]);
        assert!(!String::from_utf8_lossy(&files[0].1).contains("bigcorp"));
    }

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
}
