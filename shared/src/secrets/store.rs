//! Secrets over the broker's [`KeyValue`] store: sealed records, per-scope
//! name indexes for listing, and resolution for components.
//!
//! A record holds its metadata in the clear (name, times, who changed it, size,
//! key id) and the value only sealed ([`super::crypto`]). Nothing here ever
//! returns a value from a listing or writes one to a log.

use serde::{Deserialize, Serialize};

use super::crypto::{MasterKeys, NONCE_LEN, OpenError, Sealed};
use std::collections::BTreeSet;

use crate::store::budget::Budget;
use crate::store::index::{InvalidCursor, SlotIndex};
use crate::store::kv::{Cas, KeyValue, KvError};
use crate::tenancy::ids::{IdKind, SecretName, SecretScope, TenantCtx, TenantId, validate_id};
use crate::tenancy::keys;

/// Largest secret value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

const RECORD_FORMAT: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("stored secret `{name}` {reason}")]
    Unreadable { name: String, reason: String },
    #[error("secret values are at most {MAX_VALUE_LEN} bytes")]
    TooLarge,
    #[error("cursor is not valid for this listing")]
    InvalidCursor,
}

impl From<InvalidCursor> for SecretError {
    fn from(_: InvalidCursor) -> Self {
        SecretError::InvalidCursor
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SecretRecord {
    v: u16,
    name: SecretName,
    key_id: String,
    #[serde(with = "serde_bytes_array")]
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
    size: usize,
    created_at_ms: i64,
    updated_at_ms: i64,
    updated_by: String,
    /// Where the name sits in its scope's index.
    slot: u64,
}

/// Serialises the nonce as a CBOR byte string rather than an array of integers.
mod serde_bytes_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 24], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 24], D::Error> {
        let bytes: ciborium::Value = Deserialize::deserialize(d)?;
        bytes
            .as_bytes()
            .and_then(|b| <[u8; 24]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| serde::de::Error::custom("nonce must be 24 bytes"))
    }
}

/// What may be shown about a secret: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretMeta {
    pub name: SecretName,
    pub scope: &'static str,
    pub key_id: String,
    pub size: usize,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

/// A secret found for a component, and the scope it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub scope: &'static str,
    pub value: Vec<u8>,
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Replaced,
}

pub struct SecretStore<'a> {
    kv: &'a dyn KeyValue,
}

impl<'a> SecretStore<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        SecretStore { kv }
    }

    /// Creates or replaces a secret. `fresh_nonce` gives new random bytes on
    /// every call (each seal takes its own).
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        keys: &MasterKeys,
        scope: &SecretScope,
        name: &SecretName,
        value: &[u8],
        by: &str,
        now_ms: i64,
        fresh_nonce: &dyn Fn() -> [u8; NONCE_LEN],
    ) -> Result<(SecretMeta, Put), SecretError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(SecretError::TooLarge);
        }
        let key = keys::secret(scope, name);
        let existing = self.read(&key, name)?;
        let (slot, created_at_ms, outcome) = match &existing {
            Some(old) => (old.slot, old.created_at_ms, Put::Replaced),
            None => {
                if let SecretScope::Team(tenant, team) = scope {
                    self.register_team(tenant, team)?;
                }
                let index = self.index(scope);
                let slot = index.allocate()?;
                index.set(slot, name.as_str().as_bytes())?;
                (slot, now_ms, Put::Created)
            }
        };
        let sealed = keys.seal(&key, value, fresh_nonce());
        let record = SecretRecord {
            v: RECORD_FORMAT,
            name: name.clone(),
            key_id: sealed.key_id,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            size: value.len(),
            created_at_ms,
            updated_at_ms: now_ms,
            updated_by: by.to_owned(),
            slot,
        };
        self.kv.set(&key, &encode(&record))?;
        Ok((meta(&record, scope), outcome))
    }

    pub fn meta(
        &self,
        scope: &SecretScope,
        name: &SecretName,
    ) -> Result<Option<SecretMeta>, SecretError> {
        Ok(self
            .read(&keys::secret(scope, name), name)?
            .map(|r| meta(&r, scope)))
    }

    /// The secret with its value. A record sealed under a previous master key
    /// is re-sealed under the current one on the way (compare-and-swap, so a
    /// concurrent put wins).
    pub fn reveal(
        &self,
        keys: &MasterKeys,
        scope: &SecretScope,
        name: &SecretName,
        fresh_nonce: &dyn Fn() -> [u8; NONCE_LEN],
    ) -> Result<Option<(SecretMeta, Vec<u8>)>, SecretError> {
        let key = keys::secret(scope, name);
        let Some(stored) = self.kv.get(&key)? else {
            return Ok(None);
        };
        let record = decode(&stored, name)?;
        let value = keys
            .open(
                &key,
                &Sealed {
                    key_id: record.key_id.clone(),
                    nonce: record.nonce,
                    ciphertext: record.ciphertext.clone(),
                },
            )
            .map_err(|e: OpenError| SecretError::Unreadable {
                name: name.as_str().into(),
                reason: e.to_string(),
            })?;
        if record.key_id != keys.current_id() {
            let sealed = keys.seal(&key, &value, fresh_nonce());
            let resealed = SecretRecord {
                key_id: sealed.key_id,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                ..record.clone()
            };
            // A conflict means someone put a new value meanwhile: theirs stands.
            let _: Cas = self
                .kv
                .compare_and_swap(&key, &stored, &encode(&resealed))?;
        }
        Ok(Some((meta(&record, scope), value)))
    }

    /// Removes a secret and its index entry. Returns false when there was none.
    pub fn delete(&self, scope: &SecretScope, name: &SecretName) -> Result<bool, SecretError> {
        let key = keys::secret(scope, name);
        let Some(record) = self.read(&key, name)? else {
            return Ok(false);
        };
        self.index(scope).remove(record.slot)?;
        self.kv.delete(&key)?;
        Ok(true)
    }

    /// One page of a scope's secrets (metadata only), newest first.
    pub fn list(
        &self,
        scope: &SecretScope,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SecretMeta>, Option<String>), SecretError> {
        let mut page = Vec::new();
        let next = self.index(scope).walk(cursor, limit, |slot, entry| {
            let Some(name) = std::str::from_utf8(&entry)
                .ok()
                .and_then(|n| SecretName::parse(n).ok())
            else {
                return Ok::<_, SecretError>(false);
            };
            let live = self
                .read(&keys::secret(scope, &name), &name)?
                .filter(|r| r.slot == slot);
            Ok(live.map(|r| page.push(meta(&r, scope))).is_some())
        })?;
        Ok((page, next))
    }

    /// The secret a component asks for: the context's team first, then its
    /// tenant, then a platform-wide one only if `name` is in `shared_globals`.
    /// Never another tenant's: every scope tried is built from `ctx`.
    pub fn resolve(
        &self,
        keys: &MasterKeys,
        ctx: &TenantCtx,
        name: &SecretName,
        shared_globals: &[SecretName],
        fresh_nonce: &dyn Fn() -> [u8; NONCE_LEN],
    ) -> Result<Option<Resolved>, SecretError> {
        let global = shared_globals.contains(name).then_some(SecretScope::Global);
        let scopes = SecretScope::team_of(ctx)
            .into_iter()
            .chain([SecretScope::tenant_of(ctx)])
            .chain(global);
        for scope in scopes {
            if let Some((meta, value)) = self.reveal(keys, &scope, name, fresh_nonce)? {
                return Ok(Some(Resolved {
                    scope: meta.scope,
                    value,
                }));
            }
        }
        Ok(None)
    }

    /// Notes a team as having secrets (once), before its first secret is
    /// written, so a tenant's deletion finds every team's secrets.
    fn register_team(&self, tenant: &str, team: &str) -> Result<(), SecretError> {
        let tenant = TenantId::parse(tenant).expect("a scope is built from a valid tenant id");
        let marker = keys::secret_team_registered(&tenant, team);
        if !self.kv.exists(&marker)? {
            let registry = SlotIndex::new(self.kv, keys::secret_team_registry(&tenant));
            let slot = registry.allocate()?;
            registry.set(slot, team.as_bytes())?;
            self.kv.set(&marker, b"1")?;
        }
        Ok(())
    }

    /// Deletes the tenant's secrets, tenant-wide and of every team (those
    /// in `teams` and those the team registry names), while `budget` lasts.
    /// Returns how many secrets went and whether none is left.
    pub fn forget_tenant(
        &self,
        tenant: &TenantId,
        teams: &BTreeSet<String>,
        budget: &mut Budget,
    ) -> Result<(u64, bool), SecretError> {
        let registry = SlotIndex::new(self.kv, keys::secret_team_registry(tenant));
        let mut all_teams = teams.clone();
        for slot in 1..=registry.newest_stored()? {
            if let Some(team) = registry.get(slot)?.and_then(|t| String::from_utf8(t).ok()) {
                all_teams.insert(team);
            }
        }
        let scopes = all_teams
            .into_iter()
            .filter(|team| validate_id(IdKind::Team, team).is_ok())
            .map(|team| SecretScope::Team(tenant.as_str().to_owned(), team))
            .chain([SecretScope::Tenant(tenant.as_str().to_owned())]);
        let mut removed = 0;
        for scope in scopes {
            let drained = self.index(&scope).drain(budget, |_, entry| {
                if let Some(name) = entry
                    .as_deref()
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| SecretName::parse(n).ok())
                {
                    let key = keys::secret(&scope, &name);
                    if self.kv.exists(&key)? {
                        self.kv.delete(&key)?;
                        removed += 1;
                    }
                }
                Ok::<usize, KvError>(1)
            })?;
            if !drained {
                return Ok((removed, false));
            }
        }
        let drained = registry.drain(budget, |_, team| {
            if let Some(team) = team.and_then(|t| String::from_utf8(t).ok()) {
                self.kv
                    .delete(&keys::secret_team_registered(tenant, &team))?;
            }
            Ok::<usize, KvError>(1)
        })?;
        Ok((removed, drained))
    }

    fn index(&self, scope: &SecretScope) -> SlotIndex<'a> {
        SlotIndex::new(self.kv, keys::secret_index(scope))
    }

    fn read(&self, key: &str, name: &SecretName) -> Result<Option<SecretRecord>, SecretError> {
        self.kv
            .get(key)?
            .map(|bytes| decode(&bytes, name))
            .transpose()
    }
}

fn meta(record: &SecretRecord, scope: &SecretScope) -> SecretMeta {
    SecretMeta {
        name: record.name.clone(),
        scope: scope.kind(),
        key_id: record.key_id.clone(),
        size: record.size,
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
        updated_by: record.updated_by.clone(),
    }
}

fn encode(record: &SecretRecord) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(record, &mut out).expect("a secret record always encodes");
    out
}

fn decode(bytes: &[u8], name: &SecretName) -> Result<SecretRecord, SecretError> {
    let unreadable = |reason: String| SecretError::Unreadable {
        name: name.as_str().into(),
        reason,
    };
    let record: SecretRecord =
        ciborium::from_reader(bytes).map_err(|e| unreadable(format!("is corrupt: {e}")))?;
    if record.v != RECORD_FORMAT {
        return Err(unreadable(format!("has format version {}", record.v)));
    }
    if record.name != *name {
        return Err(unreadable("is stored under another name".into()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::TestKv;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn name(n: &str) -> SecretName {
        SecretName::parse(n).unwrap()
    }

    fn ctx(tenant: &str, team: Option<&str>) -> TenantCtx {
        TenantCtx::new(tenant, "prod", team).unwrap()
    }

    /// Distinct nonces, as a real random source gives.
    fn nonces() -> impl Fn() -> [u8; NONCE_LEN] {
        let n = std::cell::Cell::new(0u8);
        move || {
            n.set(n.get() + 1);
            [n.get(); NONCE_LEN]
        }
    }

    fn put(store: &SecretStore, keys: &MasterKeys, scope: &SecretScope, n: &str, v: &str) -> Put {
        store
            .put(keys, scope, &name(n), v.as_bytes(), "test", 1, &nonces())
            .unwrap()
            .1
    }

    #[test]
    fn the_stored_bytes_never_hold_the_value() {
        let kv = TestKv::new();
        let (store, keys) = (SecretStore::new(&kv), MasterKeys::parse(K1, "").unwrap());
        put(
            &store,
            &keys,
            &SecretScope::tenant_of(&ctx("acme", None)),
            "api_key",
            "sk-live-0123456789",
        );
        for (_, bytes) in kv.snapshot() {
            assert!(
                !bytes.windows(10).any(|w| w == b"sk-live-01"),
                "plaintext at rest"
            );
        }
    }

    #[test]
    fn a_record_moved_to_another_tenants_key_does_not_open() {
        let kv = TestKv::new();
        let (store, keys) = (SecretStore::new(&kv), MasterKeys::parse(K1, "").unwrap());
        let acme = SecretScope::tenant_of(&ctx("acme", None));
        let bigcorp = SecretScope::tenant_of(&ctx("bigcorp", None));
        put(&store, &keys, &acme, "api_key", "acme-value");
        let bytes = kv
            .get(&keys::secret(&acme, &name("api_key")))
            .unwrap()
            .unwrap();
        kv.set(&keys::secret(&bigcorp, &name("api_key")), &bytes)
            .unwrap();
        let err = store
            .reveal(&keys, &bigcorp, &name("api_key"), &nonces())
            .unwrap_err();
        assert!(matches!(err, SecretError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn resolution_prefers_the_team_then_the_tenant_then_shared_globals() {
        let kv = TestKv::new();
        let (store, keys) = (SecretStore::new(&kv), MasterKeys::parse(K1, "").unwrap());
        let support = ctx("acme", Some("support"));
        put(
            &store,
            &keys,
            &SecretScope::tenant_of(&support),
            "token",
            "tenant-token",
        );
        put(
            &store,
            &keys,
            &SecretScope::Global,
            "signing_key",
            "global-key",
        );
        put(
            &store,
            &keys,
            &SecretScope::Global,
            "private_thing",
            "platform-only",
        );
        let resolve = |c: &TenantCtx, n: &str| {
            store
                .resolve(&keys, c, &name(n), &[name("signing_key")], &nonces())
                .unwrap()
                .map(|r| (r.scope, String::from_utf8(r.value).unwrap()))
        };
        assert_eq!(
            resolve(&support, "token"),
            Some(("tenant", "tenant-token".into()))
        );
        put(
            &store,
            &keys,
            &SecretScope::team_of(&support).unwrap(),
            "token",
            "team-token",
        );
        assert_eq!(
            resolve(&support, "token"),
            Some(("team", "team-token".into()))
        );
        assert_eq!(
            resolve(&ctx("acme", Some("sales")), "token"),
            Some(("tenant", "tenant-token".into()))
        );
        assert_eq!(resolve(&ctx("bigcorp", Some("support")), "token"), None);
        assert_eq!(
            resolve(&support, "signing_key"),
            Some(("global", "global-key".into()))
        );
        assert_eq!(resolve(&support, "private_thing"), None);
    }

    #[test]
    fn rotation_reseals_on_read_and_keeps_the_value() {
        let kv = TestKv::new();
        let store = SecretStore::new(&kv);
        let scope = SecretScope::tenant_of(&ctx("acme", None));
        put(
            &store,
            &MasterKeys::parse(K1, "").unwrap(),
            &scope,
            "api_key",
            "v1",
        );
        let rotated = MasterKeys::parse(K2, K1).unwrap();
        assert_eq!(
            store
                .meta(&scope, &name("api_key"))
                .unwrap()
                .unwrap()
                .key_id,
            "k1"
        );
        let (_, value) = store
            .reveal(&rotated, &scope, &name("api_key"), &nonces())
            .unwrap()
            .unwrap();
        assert_eq!(value, b"v1");
        assert_eq!(
            store
                .meta(&scope, &name("api_key"))
                .unwrap()
                .unwrap()
                .key_id,
            "k2"
        );
        // Once resealed, the old key is no longer needed.
        let only_new = MasterKeys::parse(K2, "").unwrap();
        assert!(
            store
                .reveal(&only_new, &scope, &name("api_key"), &nonces())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn listing_is_per_scope_and_metadata_only() {
        let kv = TestKv::new();
        let (store, keys) = (SecretStore::new(&kv), MasterKeys::parse(K1, "").unwrap());
        let acme = SecretScope::tenant_of(&ctx("acme", None));
        let team = SecretScope::team_of(&ctx("acme", Some("support"))).unwrap();
        assert_eq!(put(&store, &keys, &acme, "a", "1"), Put::Created);
        assert_eq!(put(&store, &keys, &acme, "b", "2"), Put::Created);
        assert_eq!(put(&store, &keys, &acme, "a", "3"), Put::Replaced);
        put(&store, &keys, &team, "c", "4");
        put(
            &store,
            &keys,
            &SecretScope::tenant_of(&ctx("bigcorp", None)),
            "d",
            "5",
        );
        let names = |scope: &SecretScope| -> Vec<String> {
            store
                .list(scope, None, 10)
                .unwrap()
                .0
                .into_iter()
                .map(|m| m.name.as_str().to_owned())
                .collect()
        };
        assert_eq!(names(&acme), ["b", "a"]);
        assert_eq!(names(&team), ["c"]);
        assert!(store.delete(&acme, &name("a")).unwrap());
        assert!(!store.delete(&acme, &name("a")).unwrap());
        assert_eq!(names(&acme), ["b"]);
        assert_eq!(kv.full_scans(), 0);
    }

    #[test]
    fn oversized_values_are_refused_and_change_nothing() {
        let kv = TestKv::new();
        let (store, keys) = (SecretStore::new(&kv), MasterKeys::parse(K1, "").unwrap());
        let big = vec![b'x'; MAX_VALUE_LEN + 1];
        let scope = SecretScope::tenant_of(&ctx("acme", None));
        assert_eq!(
            store
                .put(&keys, &scope, &name("big"), &big, "t", 1, &nonces())
                .unwrap_err(),
            SecretError::TooLarge
        );
        assert!(kv.snapshot().is_empty());
    }
}
