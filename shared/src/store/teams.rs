//! Which teams of a tenant's environment have data: what env-wide listings
//! and usage reads walk instead of an env-wide index.
//!
//! An env-wide session index would cost every new session one more write
//! (its own counter), on the path that turns a first message into a reply.
//! Teams are few and stable, so each is registered once, when its first
//! session is created (or its first error counted): a slot index of team
//! tokens, and one marker per team so the next creations see it is there with
//! one read. Registering twice (two first sessions at once) leaves a
//! duplicate entry that readers drop; a registration is written in the same
//! batch as the session that caused it, so no team with data is missing.
//!
//! A team's registration also registers its env in the tenant's env registry
//! the first time (one more read per team registered): what an offboarding
//! walks to find every env with data, tokens naming envs no configuration
//! version had included.

use crate::store::index::SlotIndex;
use crate::store::kv::{KeyValue, KvError};
use crate::tenancy::ids::{DEFAULT_TEAM, IdKind, TenantCtx, TenantId, validate_id};
use crate::tenancy::keys::{self, IndexKeys};

pub struct TeamRegistry<'a> {
    kv: &'a dyn KeyValue,
}

impl<'a> TeamRegistry<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        TeamRegistry { kv }
    }

    /// The writes that register `ctx`'s team, to go into the batch that
    /// creates its data; none when it is registered already. Costs one read,
    /// plus one increment the first time.
    pub fn registration(&self, ctx: &TenantCtx) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        let marker = keys::team_registered(ctx);
        if self.kv.exists(&marker)? {
            return Ok(Vec::new());
        }
        let registry = SlotIndex::new(self.kv, keys::team_registry(ctx));
        let slot = registry.allocate()?;
        let mut writes = vec![
            (
                keys::team_registry(ctx).slot(slot),
                ctx.team_token().as_bytes().to_vec(),
            ),
            (marker, b"1".to_vec()),
        ];
        let env_marker = keys::env_registered(ctx);
        if !self.kv.exists(&env_marker)? {
            let tenant = TenantId::parse(ctx.tenant_id()).expect("a context's tenant is valid");
            let envs = SlotIndex::new(self.kv, keys::env_registry(&tenant));
            let slot = envs.allocate()?;
            writes.push((
                keys::env_registry(&tenant).slot(slot),
                ctx.env_id().as_bytes().to_vec(),
            ));
            writes.push((env_marker, b"1".to_vec()));
        }
        Ok(writes)
    }

    /// The envs of `tenant` with a registered team, each once.
    pub fn environments(&self, tenant: &TenantId) -> Result<Vec<String>, KvError> {
        self.entries(keys::env_registry(tenant), IdKind::Env)
    }

    /// A registry's ids in the order they were registered, each once
    /// (entries that are not valid ids of `kind` are passed over).
    fn entries(&self, registry: IndexKeys, kind: IdKind) -> Result<Vec<String>, KvError> {
        let registry = SlotIndex::new(self.kv, registry);
        let mut ids: Vec<String> = Vec::new();
        for slot in 1..=registry.newest_stored()? {
            if let Some(id) = registry
                .get(slot)?
                .and_then(|e| String::from_utf8(e).ok())
                .filter(|e| validate_id(kind, e).is_ok())
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Registers `ctx`'s team on its own (when no batch is being written).
    pub fn ensure(&self, ctx: &TenantCtx) -> Result<(), KvError> {
        let writes = self.registration(ctx)?;
        if writes.is_empty() {
            Ok(())
        } else {
            self.kv.set_many(&writes)
        }
    }

    /// The teams of `ctx`'s tenant and env with data, as contexts, in the
    /// order they were registered, each once.
    pub fn teams(&self, ctx: &TenantCtx) -> Result<Vec<TenantCtx>, KvError> {
        Ok(self
            .entries(keys::team_registry(ctx), IdKind::Team)?
            .iter()
            .map(|team| {
                ctx.with_team((team != DEFAULT_TEAM).then_some(team.as_str()))
                    .expect("registry entries are checked team ids")
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::TestKv;

    fn ctx(tenant: &str, team: Option<&str>) -> TenantCtx {
        TenantCtx::new(tenant, "prod", team).unwrap()
    }

    #[test]
    fn teams_are_registered_once_per_env_and_never_cross_tenants() {
        let kv = TestKv::new();
        let registry = TeamRegistry::new(&kv);
        for c in [
            ctx("acme", Some("support")),
            ctx("acme", Some("support")),
            ctx("acme", None),
            ctx("bigcorp", Some("support")),
        ] {
            registry.ensure(&c).unwrap();
        }
        // A second registration of one team that raced the first.
        kv.set(&keys::team_registry(&ctx("acme", None)).slot(9), b"support")
            .unwrap();
        kv.increment(&keys::team_registry(&ctx("acme", None)).seq(), 7)
            .unwrap();
        assert_eq!(
            registry.teams(&ctx("acme", None)).unwrap(),
            [ctx("acme", Some("support")), ctx("acme", None)]
        );
        assert_eq!(
            registry.teams(&ctx("bigcorp", None)).unwrap(),
            [ctx("bigcorp", Some("support"))]
        );
        let staging = TenantCtx::new("acme", "staging", None).unwrap();
        assert!(registry.teams(&staging).unwrap().is_empty());
        registry
            .ensure(&staging.with_team(Some("sales")).unwrap())
            .unwrap();
        let tenant = |t: &str| TenantId::parse(t).unwrap();
        assert_eq!(
            registry.environments(&tenant("acme")).unwrap(),
            ["prod", "staging"]
        );
        assert_eq!(registry.environments(&tenant("bigcorp")).unwrap(), ["prod"]);
        // Registered teams cost one read to confirm, nothing to write.
        let writes = kv.writes();
        assert!(
            registry
                .registration(&ctx("acme", Some("support")))
                .unwrap()
                .is_empty()
        );
        assert_eq!(kv.writes(), writes);
    }
}
