//! Tenant configurations in the `config` store: every change a new,
//! immutable version; one key holds the current one.
//!
//! A request reads one key of its own tenant (`config/{tenant}/head`), so
//! its cost does not depend on how many tenants exist. The head is a copy of
//! the newest version, written by compare-and-swap: two changes made from
//! the same version cannot both land, the second is told it lost
//! ([`CommitError::Conflict`]). The history (`config/{tenant}/versions/{n}`)
//! is written only by the writer whose swap landed, after it; a crash in
//! between leaves the newest version only in the head, which every reader
//! of the history consults, and which the next writer copies into the
//! history before its own swap.
//!
//! Creating a tenant cannot rely on compare-and-swap (on Spin's SQLite
//! backend a swap on an absent key is a plain upsert): the creator is
//! whoever increments `config/{tenant}/claim` to 1, and it writes the first
//! version, the tenant's slot in the tenant index and the head in one batch.
//! A second claimant finding no head is told to retry (503: the first may
//! still be writing); the third assumes the first died, writes the batch
//! itself and reads the head back, so that of two such writers only the one
//! whose batch is there answers "created" (the other gets 412). Every version names its index slot, and a listing
//! shows a slot only if the tenant's head points back at it, so a slot left
//! by such a crash is never listed twice.
//!
//! This module stores versions; what a version's document holds, and its
//! validation, is the flows layer's ([`crate::flows::control`] builds on it).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::store::index::{InvalidCursor, SlotIndex};
use crate::store::kv::{Cas, KeyValue, KvError, write_id};
use crate::tenancy::ids::TenantId;
use crate::tenancy::keys;
use crate::tenancy::limits::Limits;

/// The key-value store (spin.toml label) of tenant configurations.
pub const STORE_LABEL: &str = "config";

/// The largest stored version, in bytes. Fermyon Cloud's key-value stores
/// refuse values over 1 MB; Redis would take more, but a configuration that
/// fits one store must fit all of them.
pub const MAX_VERSION_BYTES: usize = 1_000_000;

/// Whether a tenant takes traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    /// New messages and API calls of the tenant are refused; what was
    /// accepted before is still processed.
    Suspended,
    /// The tenant is being deleted (`store/offboard.rs`): refused like a
    /// suspended one, and what was accepted before is dropped on delivery.
    /// No change leads out of it.
    Offboarding,
}

/// One version of a tenant's configuration, as stored (head and history alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version<D> {
    pub tenant: String,
    pub version: u64,
    /// The token subject that made this version.
    pub author: String,
    pub at_ms: i64,
    /// What this version did: `created`, `updated`, `rolled back to N`,
    /// `suspended`, `resumed`.
    pub change: String,
    pub status: Status,
    /// Resolved when the version was made: the document's own over the defaults.
    pub limits: Limits,
    pub document: D,
    /// The tenant's slot in the tenant index (see the module doc).
    pub slot: u64,
    /// Makes every stored value unique to its writer, so a swap Spin's Redis
    /// misreports is read back correctly.
    pub write_id: u64,
}

/// The claim a creator must reach to write a tenant whose first claimant
/// never wrote: the first claimant may still be writing, so the second is
/// told to retry (503), and the third assumes the first died.
pub const CREATE_PATIENCE: i64 = 3;

/// What a request needs of its tenant's head when it does not need the
/// document: status and limits, the document skipped unparsed.
pub type Admission = Version<serde::de::IgnoredAny>;

/// What a change to write looks like before the store numbers it.
#[derive(Debug, Clone)]
pub struct Change<D> {
    pub author: String,
    pub at_ms: i64,
    pub change: String,
    pub status: Status,
    pub limits: Limits,
    pub document: D,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The head is no longer the version the change was made from.
    #[error("the configuration changed meanwhile (now version {current})")]
    Conflict { current: u64 },
    /// Another request is creating the tenant right now.
    #[error("the tenant is being created by another request; retry")]
    BeingCreated,
    #[error("a configuration version is limited to {MAX_VERSION_BYTES} bytes; this one has {size}")]
    TooLarge { size: usize },
    #[error(transparent)]
    Store(#[from] KvError),
}

impl From<CommitError> for ApiError {
    fn from(err: CommitError) -> Self {
        match err {
            CommitError::Conflict { .. } => ApiError::PreconditionFailed(err.to_string()),
            CommitError::BeingCreated => ApiError::Unavailable(err.to_string()),
            CommitError::TooLarge { .. } => ApiError::PayloadTooLarge {
                limit: MAX_VERSION_BYTES,
            },
            CommitError::Store(e) => e.into(),
        }
    }
}

/// A page of a tenant's history, newest first, and the version to continue
/// before (`None` after version 1).
pub type History<D> = (Vec<Version<D>>, Option<u64>);

/// A head as read: the parsed version and its exact bytes (what a swap expects).
pub struct Head<D> {
    pub version: Version<D>,
    bytes: Vec<u8>,
}

pub struct ConfigStore<'a> {
    kv: &'a dyn KeyValue,
}

impl<'a> ConfigStore<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        ConfigStore { kv }
    }

    /// The tenant's current version, `None` when the tenant does not exist.
    /// One read.
    pub fn current<D: DeserializeOwned>(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Version<D>>, ApiError> {
        Ok(self.head(tenant)?.map(|h| h.version))
    }

    /// The head with its bytes, for a change to be made from it.
    pub fn head<D: DeserializeOwned>(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Head<D>>, ApiError> {
        let Some(bytes) = self.kv.get(&keys::config_head(tenant))? else {
            return Ok(None);
        };
        let version = parse(tenant, &bytes)?;
        Ok(Some(Head { version, bytes }))
    }

    /// Version `n` of the tenant, `None` when it has no such version.
    pub fn version<D: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        n: u64,
    ) -> Result<Option<Version<D>>, ApiError> {
        if let Some(bytes) = self.kv.get(&keys::config_version(tenant, n))? {
            return parse(tenant, &bytes).map(Some);
        }
        // The newest version may be only in the head (see the module doc).
        Ok(self.current::<D>(tenant)?.filter(|head| head.version == n))
    }

    /// Writes `change` as the tenant's next version after `from` (the head it
    /// was made from; `None` to create the tenant). Returns the stored version.
    pub fn commit<D: Serialize + DeserializeOwned + Clone>(
        &self,
        tenant: &TenantId,
        from: Option<&Head<D>>,
        change: Change<D>,
    ) -> Result<Version<D>, CommitError> {
        match from {
            None => self.create(tenant, change),
            Some(head) => self.update(tenant, head, change),
        }
    }

    fn create<D: Serialize + DeserializeOwned + Clone>(
        &self,
        tenant: &TenantId,
        change: Change<D>,
    ) -> Result<Version<D>, CommitError> {
        // Sized before anything is written: a refused version writes nothing.
        // Its final slot number only makes it shorter than this.
        let mut version = numbered(tenant, 1, u64::MAX, change);
        encode(&version)?;
        let claim = self.kv.increment(&keys::config_claim(tenant), 1)?;
        if claim > 1 {
            if let Some(head) = self.kv.get(&keys::config_head(tenant))? {
                let current = serde_json::from_slice::<Admission>(&head).map_or(0, |v| v.version);
                return Err(CommitError::Conflict { current });
            }
            if claim < CREATE_PATIENCE {
                return Err(CommitError::BeingCreated);
            }
        }
        let index = SlotIndex::new(self.kv, keys::tenant_index());
        version.slot = index.allocate()?;
        let bytes = encode(&version)?;
        self.kv.set_many(&[
            (keys::config_version(tenant, 1), bytes.clone()),
            (
                keys::tenant_index().slot(version.slot),
                tenant.as_str().as_bytes().to_vec(),
            ),
            (keys::config_head(tenant), bytes),
        ])?;
        // A creator that took over from a stalled one may have raced it:
        // only the batch that is there now was created.
        if claim > 1 && !self.landed(tenant, &version)? {
            return Err(CommitError::Conflict { current: 1 });
        }
        Ok(version)
    }

    fn update<D: Serialize + DeserializeOwned + Clone>(
        &self,
        tenant: &TenantId,
        from: &Head<D>,
        change: Change<D>,
    ) -> Result<Version<D>, CommitError> {
        let previous = from.version.version;
        let version = numbered(tenant, previous + 1, from.version.slot, change);
        let bytes = encode(&version)?;
        // The version this one replaces, in case its writer stopped before
        // writing it to the history (the same bytes, so a race writes them twice).
        let replaced = keys::config_version(tenant, previous);
        if !self.kv.exists(&replaced)? {
            self.kv.set(&replaced, &from.bytes)?;
        }
        match self
            .kv
            .compare_and_swap(&keys::config_head(tenant), &from.bytes, &bytes)?
        {
            Cas::Swapped => {}
            Cas::Conflict if self.landed(tenant, &version)? => {}
            Cas::Conflict => {
                let current = self
                    .current::<serde::de::IgnoredAny>(tenant)
                    .map_err(|_| CommitError::Conflict { current: previous })?
                    .map_or(previous, |v| v.version);
                return Err(CommitError::Conflict { current });
            }
        }
        self.kv
            .set(&keys::config_version(tenant, version.version), &bytes)?;
        Ok(version)
    }

    /// Whether `version` is stored although its swap was reported as a
    /// conflict: in the head, or (replaced since) in the history.
    fn landed<D>(&self, tenant: &TenantId, version: &Version<D>) -> Result<bool, KvError> {
        let mine = |bytes: Option<Vec<u8>>| {
            bytes
                .and_then(|b| serde_json::from_slice::<Version<serde::de::IgnoredAny>>(&b).ok())
                .is_some_and(|v| v.version == version.version && v.write_id == version.write_id)
        };
        Ok(mine(self.kv.get(&keys::config_head(tenant))?)
            || mine(
                self.kv
                    .get(&keys::config_version(tenant, version.version))?,
            ))
    }

    /// The versions of a tenant, newest first, from `before` (exclusive) or
    /// the newest: at most `limit`, and the version to continue before.
    /// `None` when the tenant does not exist.
    pub fn history<D: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Option<History<D>>, ApiError> {
        let Some(newest) = self
            .current::<serde::de::IgnoredAny>(tenant)?
            .map(|v| v.version)
        else {
            return Ok(None);
        };
        let mut n = before.map_or(newest, |b| b.saturating_sub(1).min(newest));
        let mut versions = Vec::new();
        while n > 0 && versions.len() < limit {
            if let Some(v) = self.version(tenant, n)? {
                versions.push(v);
            }
            n -= 1;
        }
        Ok(Some((versions, (n > 0).then_some(n + 1))))
    }

    /// The tenants created, newest first, one page: `(ids, cursor)`. Each
    /// entry is checked against its tenant's head (see the module doc).
    pub fn tenants(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Admission>, Option<String>), ApiError> {
        let index = SlotIndex::new(self.kv, keys::tenant_index());
        let mut page = Vec::new();
        let next = index.walk::<ListError>(cursor, limit, |slot, entry| {
            let Some(tenant) = std::str::from_utf8(&entry)
                .ok()
                .and_then(|t| TenantId::parse(t).ok())
            else {
                return Ok(false);
            };
            let Some(bytes) = self.kv.get(&keys::config_head(&tenant))? else {
                return Ok(false);
            };
            // One unreadable head is left out (reading it directly says why),
            // rather than failing the whole listing.
            match parse::<serde::de::IgnoredAny>(&tenant, &bytes) {
                Ok(head) if head.slot == slot => {
                    page.push(head);
                    Ok(true)
                }
                _ => Ok(false),
            }
        });
        match next {
            Ok(next) => Ok((page, next)),
            Err(ListError::Api(e)) => Err(e),
            Err(ListError::Cursor) => Err(ApiError::BadRequest("invalid cursor".into())),
        }
    }
}

enum ListError {
    Api(ApiError),
    Cursor,
}

impl From<KvError> for ListError {
    fn from(e: KvError) -> Self {
        ListError::Api(e.into())
    }
}

impl From<ApiError> for ListError {
    fn from(e: ApiError) -> Self {
        ListError::Api(e)
    }
}

impl From<InvalidCursor> for ListError {
    fn from(_: InvalidCursor) -> Self {
        ListError::Cursor
    }
}

fn numbered<D>(tenant: &TenantId, version: u64, slot: u64, change: Change<D>) -> Version<D> {
    Version {
        tenant: tenant.as_str().to_owned(),
        version,
        author: change.author,
        at_ms: change.at_ms,
        change: change.change,
        status: change.status,
        limits: change.limits,
        document: change.document,
        slot,
        write_id: write_id(),
    }
}

fn encode<D: Serialize>(version: &Version<D>) -> Result<Vec<u8>, CommitError> {
    let bytes = serde_json::to_vec(version).expect("a configuration version always serialises");
    if bytes.len() > MAX_VERSION_BYTES {
        return Err(CommitError::TooLarge { size: bytes.len() });
    }
    Ok(bytes)
}

/// A stored version of `tenant`: one that does not parse, or names another
/// tenant, is an internal error rather than served.
fn parse<D: DeserializeOwned>(tenant: &TenantId, bytes: &[u8]) -> Result<Version<D>, ApiError> {
    let version: Version<D> = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("configuration of tenant {tenant}: {e}")))?;
    if version.tenant != tenant.as_str() {
        return Err(ApiError::Internal(format!(
            "configuration of tenant {tenant} is stored under another tenant's key"
        )));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::TestKv;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn change(text: &str) -> Change<String> {
        Change {
            author: "ops".into(),
            at_ms: 1,
            change: "updated".into(),
            status: Status::Active,
            limits: Limits::default(),
            document: text.into(),
        }
    }

    #[test]
    fn versions_are_numbered_kept_and_the_head_is_the_newest() {
        let kv = TestKv::new();
        let store = ConfigStore::new(&kv);
        let first = store.commit(&acme(), None, change("one")).unwrap();
        assert_eq!(first.version, 1);
        let head = store.head::<String>(&acme()).unwrap().unwrap();
        let second = store.commit(&acme(), Some(&head), change("two")).unwrap();
        assert_eq!((second.version, second.slot), (2, first.slot));
        let current = store.current::<String>(&acme()).unwrap().unwrap();
        assert_eq!(current.document, "two");
        assert_eq!(
            store
                .version::<String>(&acme(), 1)
                .unwrap()
                .unwrap()
                .document,
            "one"
        );
        let (history, next) = store.history::<String>(&acme(), None, 10).unwrap().unwrap();
        assert_eq!(
            history.iter().map(|v| v.version).collect::<Vec<_>>(),
            [2, 1]
        );
        assert_eq!(next, None);
        let (page, next) = store.history::<String>(&acme(), None, 1).unwrap().unwrap();
        assert_eq!((page[0].version, next), (2, Some(2)));
        let (page, next) = store.history::<String>(&acme(), next, 1).unwrap().unwrap();
        assert_eq!((page[0].version, next), (1, None));
    }

    #[test]
    fn two_changes_from_one_version_cannot_both_land() {
        let kv = TestKv::new();
        let store = ConfigStore::new(&kv);
        store.commit(&acme(), None, change("one")).unwrap();
        let a = store.head::<String>(&acme()).unwrap().unwrap();
        let b = store.head::<String>(&acme()).unwrap().unwrap();
        store.commit(&acme(), Some(&a), change("a")).unwrap();
        let lost = store.commit(&acme(), Some(&b), change("b")).unwrap_err();
        assert!(
            matches!(lost, CommitError::Conflict { current: 2 }),
            "{lost:?}"
        );
        assert_eq!(
            store.current::<String>(&acme()).unwrap().unwrap().document,
            "a"
        );
        // A second creation of an existing tenant loses too.
        assert!(matches!(
            store.commit(&acme(), None, change("again")).unwrap_err(),
            CommitError::Conflict { .. }
        ));
    }

    #[test]
    fn a_version_missing_from_the_history_is_read_from_the_head_and_filled_in_later() {
        let kv = TestKv::new();
        let store = ConfigStore::new(&kv);
        store.commit(&acme(), None, change("one")).unwrap();
        let head = store.head::<String>(&acme()).unwrap().unwrap();
        store.commit(&acme(), Some(&head), change("two")).unwrap();
        // As if the writer of version 2 stopped before its history write.
        kv.delete(&keys::config_version(&acme(), 2)).unwrap();
        assert_eq!(
            store
                .version::<String>(&acme(), 2)
                .unwrap()
                .unwrap()
                .document,
            "two"
        );
        let head = store.head::<String>(&acme()).unwrap().unwrap();
        store.commit(&acme(), Some(&head), change("three")).unwrap();
        assert!(kv.get(&keys::config_version(&acme(), 2)).unwrap().is_some());
    }

    #[test]
    fn an_oversized_version_is_refused_and_nothing_is_written() {
        let kv = TestKv::new();
        let store = ConfigStore::new(&kv);
        store.commit(&acme(), None, change("one")).unwrap();
        let head = store.head::<String>(&acme()).unwrap().unwrap();
        let before = kv.snapshot();
        let big = "x".repeat(MAX_VERSION_BYTES);
        let err = store
            .commit(&acme(), Some(&head), change(&big))
            .unwrap_err();
        assert!(matches!(err, CommitError::TooLarge { .. }), "{err:?}");
        assert_eq!(kv.snapshot(), before);
    }

    #[test]
    fn an_oversized_tenant_is_refused_before_anything_is_written() {
        let kv = TestKv::new();
        let big = "x".repeat(MAX_VERSION_BYTES);
        let err = ConfigStore::new(&kv)
            .commit(&acme(), None, change(&big))
            .unwrap_err();
        assert!(matches!(err, CommitError::TooLarge { .. }), "{err:?}");
        assert_eq!(kv.writes(), 0);
    }

    #[test]
    fn a_creation_whose_first_claimant_never_wrote_is_taken_over_by_the_third() {
        let kv = TestKv::new();
        let store = ConfigStore::new(&kv);
        // The first claimant stopped right after its claim.
        kv.increment(&keys::config_claim(&acme()), 1).unwrap();
        let second = store.commit(&acme(), None, change("one")).unwrap_err();
        assert!(matches!(second, CommitError::BeingCreated), "{second:?}");
        let third = store.commit(&acme(), None, change("one")).unwrap();
        assert_eq!(third.version, 1);
        let head = store.current::<String>(&acme()).unwrap().unwrap();
        assert_eq!(head.write_id, third.write_id);
        let (listed, _) = store.tenants(None, 10).unwrap();
        assert_eq!(listed.len(), 1);
    }

    #[test]
    fn every_swap_reported_as_failed_still_lands_once() {
        // Spin's Redis store says `cas-failed` after every swap (tests/README,
        // conformance row 1): the version is read back and counted as landed.
        let kv = TestKv::over(crate::store::kv::MemoryKv::misreporting_swaps());
        let store = ConfigStore::new(&kv);
        store.commit(&acme(), None, change("one")).unwrap();
        let head = store.head::<String>(&acme()).unwrap().unwrap();
        let two = store.commit(&acme(), Some(&head), change("two")).unwrap();
        assert_eq!(two.version, 2);
        let (history, _) = store.history::<String>(&acme(), None, 10).unwrap().unwrap();
        let numbers: Vec<u64> = history.iter().map(|v| v.version).collect();
        assert_eq!(numbers, [2, 1]);
        assert!(
            store
                .history::<String>(&TenantId::parse("nobody").unwrap(), None, 10)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_listing_walks_the_index_and_shows_each_tenant_once() {
        let kv = TestKv::new();
        let store = ConfigStore::new(&kv);
        for t in ["acme", "bigcorp", "cyberdyne"] {
            store
                .commit(&TenantId::parse(t).unwrap(), None, change(t))
                .unwrap();
        }
        // A slot left by a creator that stopped before its batch.
        let index = SlotIndex::new(&kv, keys::tenant_index());
        let orphan = index.allocate().unwrap();
        index.set(orphan, b"acme").unwrap();
        let scans = kv.full_scans();
        let (page, next) = store.tenants(None, 2).unwrap();
        let ids: Vec<&str> = page.iter().map(|v| v.tenant.as_str()).collect();
        assert_eq!(ids, ["cyberdyne", "bigcorp"]);
        let (page, end) = store.tenants(next.as_deref(), 2).unwrap();
        let ids: Vec<&str> = page.iter().map(|v| v.tenant.as_str()).collect();
        assert_eq!((ids, end), (vec!["acme"], None));
        assert_eq!(kv.full_scans(), scans);
    }

    #[test]
    fn a_request_reads_one_key_of_its_tenant() {
        let kv = TestKv::new();
        let store = ConfigStore::new(&kv);
        store.commit(&acme(), None, change("one")).unwrap();
        let ops = kv.ops();
        let admission = store
            .current::<serde::de::IgnoredAny>(&acme())
            .unwrap()
            .unwrap();
        assert_eq!((admission.status, kv.ops() - ops), (Status::Active, 1));
    }
}
