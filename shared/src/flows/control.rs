//! The tenant control plane: a tenant's configuration (teams, channels,
//! flows, limits) changed while the platform runs, each change validated as
//! `greentic bundle validate` validates a bundle and kept as a new version
//! in the `config` store ([`crate::store::config`]).
//!
//! A [`TenantDocument`] is one tenant as a bundle writes it (`tenants.{id}`)
//! with the flows its teams and channels run, so a bundle is applied tenant
//! by tenant ([`TenantDocument::from_bundle`]) and a tenant's admin edits
//! what `GET` gave them. The document of a version is exactly what was
//! accepted: flows are stored as documents, and nothing is compiled ahead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flows::bundle::{Bundle, LoadedBundle, Tenant};
use crate::flows::flow::Flow;
use crate::flows::yaml::{self, ConfigError};
use crate::http::error::ApiError;
use crate::store::config::{Change, ConfigStore, Head, Status, Version};
use crate::store::kv::KeyValue;
use crate::tenancy::ids::{IdKind, TenantId, validate_id};
use crate::tenancy::limits::{Limits, LimitsSpec};

/// How documents are named in their errors: a request body has no file name.
pub const DOCUMENT: &str = "document";

/// One tenant's configuration: the body of `PUT /api/v1/tenants/{tenant}`,
/// the `document` of every version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDocument {
    /// Exactly a bundle's `tenants.{id}`.
    pub tenant: Tenant,
    /// The flows the tenant's teams and channels name, by name.
    #[serde(default)]
    pub flows: BTreeMap<String, Flow>,
}

impl TenantDocument {
    /// Parses and validates the document in `text` (YAML or JSON) for
    /// tenant `id`: every problem, named `document: path: reason`.
    pub fn parse(id: &TenantId, text: &str) -> Result<TenantDocument, Vec<ConfigError>> {
        let document: TenantDocument = yaml::parse(DOCUMENT, text)?;
        document.check(id)?;
        Ok(document)
    }

    /// The problems `greentic bundle validate` would find in a bundle of
    /// this one tenant, with paths under `tenant.` and `flows.{name}.`.
    pub fn check(&self, id: &TenantId) -> Result<(), Vec<ConfigError>> {
        let bundle = Bundle {
            limits: LimitsSpec::default(),
            tenants: BTreeMap::from([(id.as_str().to_owned(), self.tenant.clone())]),
        };
        let prefix = format!("tenants.{id}");
        let mut errors: Vec<ConfigError> = bundle
            .problems(DOCUMENT)
            .into_iter()
            .map(|mut e| {
                if let Some(rest) = e.path.strip_prefix(&prefix) {
                    e.path = format!("tenant{rest}");
                }
                e
            })
            .collect();
        let named = bundle.flow_references();
        for (name, at) in &named {
            let at = at.replacen(&prefix, "tenant", 1);
            if validate_id(IdKind::Channel, name).is_err() {
                errors.push(ConfigError::new(
                    DOCUMENT,
                    at,
                    "flow names match ^[a-z0-9][a-z0-9_-]{0,62}$",
                ));
            } else if !self.flows.contains_key(*name) {
                errors.push(ConfigError::new(
                    DOCUMENT,
                    at,
                    format!("flow `{name}` is not in the document's `flows`"),
                ));
            }
        }
        for (name, flow) in &self.flows {
            let at = format!("flows.{name}");
            if !named.contains_key(name.as_str()) {
                errors.push(ConfigError::new(
                    DOCUMENT,
                    at.clone(),
                    "no team or channel runs this flow; remove it",
                ));
            }
            if flow.name != *name {
                errors.push(ConfigError::new(
                    DOCUMENT,
                    format!("{at}.name"),
                    format!(
                        "the flow is listed as `{name}` but declares `{}`",
                        flow.name
                    ),
                ));
            }
            errors.extend(flow.problems(DOCUMENT).into_iter().map(|mut e| {
                e.path = format!("{at}.{}", e.path);
                e
            }));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Tenant `id` of a loaded bundle as one document: the bundle's
    /// platform limits become the tenant's where it sets none of its own,
    /// and only the flows it runs come along. `None` if the bundle has no
    /// such tenant.
    pub fn from_bundle(loaded: &LoadedBundle, id: &str) -> Option<TenantDocument> {
        let mut tenant = loaded.bundle.tenants.get(id)?.clone();
        tenant.limits = tenant.limits.or(&loaded.bundle.limits);
        let flows = loaded
            .bundle
            .flow_references()
            .into_iter()
            .filter(|(_, at)| at.starts_with(&format!("tenants.{id}.")))
            .filter_map(|(name, _)| Some((name.to_owned(), loaded.flows.get(name)?.clone())))
            .collect();
        Some(TenantDocument { tenant, flows })
    }

    /// The tenant's limits: its own over the built-in defaults.
    pub fn limits(&self) -> Limits {
        self.tenant.limits.over(Limits::default())
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Created(Version<TenantDocument>),
    Updated(Version<TenantDocument>),
    /// The document is the current one's: no version was made.
    Unchanged(Version<TenantDocument>),
}

impl Applied {
    pub fn version(&self) -> &Version<TenantDocument> {
        match self {
            Applied::Created(v) | Applied::Updated(v) | Applied::Unchanged(v) => v,
        }
    }
}

/// Who changes what, and on which version (`If-Match`).
pub struct Author<'a> {
    pub subject: &'a str,
    /// A platform admin: may create tenants and set their limits. A
    /// tenant's own admin changes everything else of its tenant.
    pub platform: bool,
    pub now_ms: i64,
    /// What the caller said the current version is (`If-Match`).
    pub if_match: IfMatch,
}

/// An `If-Match` precondition on the tenant's current version (RFC 9110
/// 13.1.1; the ETag of a version `N` is `"N"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// No `If-Match`: whatever the current version is.
    Any,
    /// `*`: the tenant must exist.
    Exists,
    /// `"N"`: the current version must be N.
    Version(u64),
    /// A weak tag (`W/"N"`), which never matches for a change.
    Weak,
}

/// The control plane over one `config` store.
pub struct ControlPlane<'a> {
    store: ConfigStore<'a>,
}

impl<'a> ControlPlane<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        ControlPlane {
            store: ConfigStore::new(kv),
        }
    }

    pub fn store(&self) -> &ConfigStore<'a> {
        &self.store
    }

    /// Makes `document` the tenant's configuration, once it checks out:
    /// creates the tenant (platform admins only), or makes the next version.
    pub fn apply(
        &self,
        tenant: &TenantId,
        document: TenantDocument,
        by: &Author<'_>,
    ) -> Result<Applied, ApiError> {
        document.check(tenant).map_err(invalid)?;
        let head = self.head(tenant, by)?;
        match head {
            None if !by.platform => Err(ApiError::Forbidden(
                "only a platform admin creates tenants".into(),
            )),
            None => {
                let limits = document.limits();
                let created = self.store.commit(
                    tenant,
                    None,
                    change(by, "created".into(), Status::Active, limits, document),
                )?;
                Ok(Applied::Created(created))
            }
            Some(head) if head.version.document == document => Ok(Applied::Unchanged(head.version)),
            Some(_) if !by.platform && document.tenant.limits != self.current_limits(tenant)? => {
                Err(ApiError::Forbidden(
                    "only a platform admin changes a tenant's limits (tenant.limits)".into(),
                ))
            }
            Some(head) => {
                let (status, limits) = (head.version.status, document.limits());
                let updated = self.store.commit(
                    tenant,
                    Some(&head),
                    change(by, "updated".into(), status, limits, document),
                )?;
                Ok(Applied::Updated(updated))
            }
        }
    }

    /// The limits the tenant's current document sets (as written).
    fn current_limits(&self, tenant: &TenantId) -> Result<LimitsSpec, ApiError> {
        Ok(self
            .store
            .current::<TenantDocument>(tenant)?
            .map(|v| v.document.tenant.limits)
            .unwrap_or_default())
    }

    /// A new version with the document of version `to`.
    pub fn roll_back(
        &self,
        tenant: &TenantId,
        to: u64,
        by: &Author<'_>,
    ) -> Result<Applied, ApiError> {
        let head = self.head(tenant, by)?.ok_or(ApiError::NotFound)?;
        let mut target = self
            .store
            .version::<TenantDocument>(tenant, to)?
            .ok_or(ApiError::NotFound)?;
        if !by.platform {
            // A tenant's admin rolls back its configuration, not its limits.
            target.document.tenant.limits = head.version.document.tenant.limits.clone();
        }
        // Checked again: what validation accepts may have changed since.
        target.document.check(tenant).map_err(invalid)?;
        if target.document == head.version.document {
            return Ok(Applied::Unchanged(head.version));
        }
        let (status, limits) = (head.version.status, target.document.limits());
        let rolled = self.store.commit(
            tenant,
            Some(&head),
            change(
                by,
                format!("rolled back to {to}"),
                status,
                limits,
                target.document,
            ),
        )?;
        Ok(Applied::Updated(rolled))
    }

    /// Suspends or resumes the tenant: a new version with the same document.
    pub fn set_status(
        &self,
        tenant: &TenantId,
        status: Status,
        by: &Author<'_>,
    ) -> Result<Applied, ApiError> {
        let head = self.head(tenant, by)?.ok_or(ApiError::NotFound)?;
        if head.version.status == status {
            return Ok(Applied::Unchanged(head.version));
        }
        let what = match status {
            Status::Active => "resumed",
            Status::Suspended => "suspended",
            Status::Offboarding => "deletion started",
        };
        let (limits, document) = (head.version.limits, head.version.document.clone());
        let changed = self.store.commit(
            tenant,
            Some(&head),
            change(by, what.into(), status, limits, document),
        )?;
        Ok(Applied::Updated(changed))
    }

    /// The head a change is made from, checked against `If-Match`.
    fn head(
        &self,
        tenant: &TenantId,
        by: &Author<'_>,
    ) -> Result<Option<Head<TenantDocument>>, ApiError> {
        let head = self.store.head::<TenantDocument>(tenant)?;
        let current = head.as_ref().map(|h| h.version.version);
        let failed = |why: String| Err(ApiError::PreconditionFailed(why));
        match (by.if_match, current) {
            (IfMatch::Any, _) => {}
            (IfMatch::Exists, Some(_)) => {}
            (IfMatch::Exists, None) => {
                return failed("If-Match: * but the tenant has no version".into());
            }
            (IfMatch::Weak, _) => {
                return failed("a weak ETag never matches a change (RFC 9110 13.1.1)".into());
            }
            (IfMatch::Version(expected), Some(v)) if expected == v => {}
            (IfMatch::Version(expected), Some(v)) => {
                return failed(format!(
                    "If-Match names version {expected}; the current one is {v}"
                ));
            }
            (IfMatch::Version(expected), None) => {
                return failed(format!(
                    "If-Match names version {expected}; the tenant has none"
                ));
            }
        }
        if head
            .as_ref()
            .is_some_and(|h| h.version.status == Status::Offboarding)
        {
            return Err(ApiError::Conflict(
                "the tenant is being deleted; no change leads back".into(),
            ));
        }
        Ok(head)
    }

    /// Starts deleting the tenant (platform admins only): a new version
    /// with status `offboarding`, which refuses the tenant's traffic like a
    /// suspension and drops its deliveries. Returns that version (also when
    /// the deletion had started before); `NotFound` when there is no tenant.
    pub fn begin_offboarding(
        &self,
        tenant: &TenantId,
        by: &Author<'_>,
    ) -> Result<Version<TenantDocument>, ApiError> {
        if !by.platform {
            return Err(ApiError::Forbidden(
                "only a platform admin deletes tenants".into(),
            ));
        }
        match self.store.head::<TenantDocument>(tenant)? {
            None => Err(ApiError::NotFound),
            Some(head) if head.version.status == Status::Offboarding => Ok(head.version),
            Some(_) => Ok(self
                .set_status(tenant, Status::Offboarding, by)?
                .version()
                .clone()),
        }
    }
}

fn change(
    by: &Author<'_>,
    what: String,
    status: Status,
    limits: Limits,
    document: TenantDocument,
) -> Change<TenantDocument> {
    Change {
        author: by.subject.to_owned(),
        at_ms: by.now_ms,
        change: what,
        status,
        limits,
        document,
    }
}

/// Every problem of a document as the 400 a request gets.
pub fn invalid(errors: Vec<ConfigError>) -> ApiError {
    ApiError::InvalidDocument(errors.iter().map(ToString::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::TestKv;

    fn demo() -> LoadedBundle {
        crate::flows::bundle::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bundles/demo.yaml"
        )))
        .unwrap()
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn by(if_match: Option<u64>) -> Author<'static> {
        Author {
            subject: "ops",
            platform: true,
            now_ms: 1_000,
            if_match: if_match.map_or(IfMatch::Any, IfMatch::Version),
        }
    }

    fn tenant_admin(if_match: Option<u64>) -> Author<'static> {
        Author {
            platform: false,
            ..by(if_match)
        }
    }

    #[test]
    fn a_bundles_tenant_is_one_valid_document_with_only_its_flows() {
        let document = TenantDocument::from_bundle(&demo(), "acme").unwrap();
        assert_eq!(
            document.flows.keys().collect::<Vec<_>>(),
            ["acme_support_flow"]
        );
        document.check(&acme()).unwrap();
        let text = serde_json::to_string(&document).unwrap();
        assert_eq!(TenantDocument::parse(&acme(), &text).unwrap(), document);
        assert!(TenantDocument::from_bundle(&demo(), "nobody").is_none());
    }

    #[test]
    fn problems_are_named_by_path_in_the_document() {
        let mut document = TenantDocument::from_bundle(&demo(), "acme").unwrap();
        document
            .tenant
            .teams
            .get_mut("support")
            .unwrap()
            .channels
            .get_mut("slack")
            .unwrap()
            .config
            .insert("bot_token".into(), "xoxb".into());
        document
            .flows
            .get_mut("acme_support_flow")
            .unwrap()
            .nodes
            .clear();
        document
            .tenant
            .settings
            .insert("api_password".into(), "hunter2".into());
        let errors: Vec<String> = document
            .check(&acme())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        for expected in [
            "document: tenant.teams.support.channels.slack.config.bot_token: looks like a secret; store it with `greentic secret put`, not in the configuration",
            "document: tenant.settings.api_password: looks like a secret; store it with `greentic secret put`, not in the configuration",
            "document: flows.acme_support_flow.nodes: a flow needs at least one node",
        ] {
            assert!(
                errors.iter().any(|e| e == expected),
                "missing {expected:?} in {errors:#?}"
            );
        }
        let mut missing = TenantDocument::from_bundle(&demo(), "acme").unwrap();
        missing.flows.clear();
        let errors = missing.check(&acme()).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "document: tenant.flow: flow `acme_support_flow` is not in the document's `flows`"
        );
    }

    #[test]
    fn apply_creates_updates_and_leaves_an_equal_document_alone() {
        let kv = TestKv::new();
        let plane = ControlPlane::new(&kv);
        let document = TenantDocument::from_bundle(&demo(), "acme").unwrap();
        assert!(matches!(
            plane
                .apply(&acme(), document.clone(), &tenant_admin(None))
                .unwrap_err(),
            ApiError::Forbidden(_)
        ));
        let created = plane.apply(&acme(), document.clone(), &by(None)).unwrap();
        assert!(
            matches!(created, Applied::Created(ref v) if v.version == 1 && v.change == "created")
        );
        let writes = kv.writes();
        let same = plane
            .apply(&acme(), document.clone(), &tenant_admin(Some(1)))
            .unwrap();
        assert!(matches!(same, Applied::Unchanged(ref v) if v.version == 1));
        assert_eq!(kv.writes(), writes);
        let mut renamed = document.clone();
        renamed.tenant.name = "ACME Corp.".into();
        let updated = plane
            .apply(&acme(), renamed.clone(), &tenant_admin(Some(1)))
            .unwrap();
        assert!(matches!(updated, Applied::Updated(ref v) if v.version == 2 && v.author == "ops"));
        // A change made from version 1 now loses.
        let stale = plane
            .apply(&acme(), document.clone(), &tenant_admin(Some(1)))
            .unwrap_err();
        assert!(
            matches!(stale, ApiError::PreconditionFailed(_)),
            "{stale:?}"
        );
        let back = plane.roll_back(&acme(), 1, &by(None)).unwrap();
        assert!(
            matches!(back, Applied::Updated(ref v) if v.version == 3 && v.change == "rolled back to 1" && v.document == document)
        );
        let suspended = plane
            .set_status(&acme(), Status::Suspended, &by(Some(3)))
            .unwrap();
        assert!(
            matches!(suspended, Applied::Updated(ref v) if v.version == 4 && v.status == Status::Suspended && v.document == document)
        );
        // Suspension survives a document change.
        let updated = plane.apply(&acme(), renamed, &tenant_admin(None)).unwrap();
        assert_eq!(updated.version().status, Status::Suspended);
        assert!(matches!(
            plane.roll_back(&acme(), 99, &by(None)).unwrap_err(),
            ApiError::NotFound
        ));
    }

    #[test]
    fn a_tenants_own_admin_changes_everything_but_its_limits() {
        let kv = TestKv::new();
        let plane = ControlPlane::new(&kv);
        let document = TenantDocument::from_bundle(&demo(), "acme").unwrap();
        plane.apply(&acme(), document.clone(), &by(None)).unwrap();
        let mut raised = document.clone();
        raised.tenant.limits.messages_per_minute = Some(1_000_000);
        let before = kv.snapshot();
        let refused = plane
            .apply(&acme(), raised.clone(), &tenant_admin(None))
            .unwrap_err();
        assert!(
            matches!(refused, ApiError::Forbidden(ref why) if why.contains("tenant.limits")),
            "{refused:?}"
        );
        assert_eq!(kv.snapshot(), before);
        // The platform raises it; the tenant's admin then rolls its
        // configuration back to version 1, keeping the raised limit.
        let raised = plane.apply(&acme(), raised, &by(None)).unwrap();
        assert_eq!(raised.version().limits.messages_per_minute, 1_000_000);
        let mut renamed = document.clone();
        renamed.tenant.name = "ACME Corp.".into();
        renamed.tenant.limits.messages_per_minute = Some(1_000_000);
        plane.apply(&acme(), renamed, &tenant_admin(None)).unwrap();
        let back = plane.roll_back(&acme(), 1, &tenant_admin(None)).unwrap();
        assert_eq!(back.version().document.tenant.name, "ACME Corporation");
        assert_eq!(back.version().limits.messages_per_minute, 1_000_000);
    }
}
