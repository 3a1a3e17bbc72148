//! The key-value contract the components are written against.
//!
//! It mirrors Spin's key-value semantics rather than an idealised store:
//! `get_keys` returns every key of the store (Spin has no prefix query), and
//! atomics are `increment` plus compare-and-swap (`wasi:keyvalue/atomics`),
//! with the real backends' quirks (`../shared/spin-notes.md`, tests/README.md):
//! - On Spin's SQLite backend a compare-and-swap of a key that does not exist
//!   yet is a plain upsert, so nothing here relies on CAS to *create* a key:
//!   new keys get their uniqueness from `increment` (see [`crate::store::sessions`]).
//! - Spin's Redis backend reports `cas-failed` for every swap, also one that
//!   wrote (its closing `UNWATCH <key>` is refused by Redis). So a backend may
//!   answer [`Swap::Unsure`], and [`KeyValue::compare_and_swap`] settles it by
//!   reading the key back: every value written by compare-and-swap carries a
//!   random [`write_id`], so finding exactly the bytes written means they landed.
//!
//! The Spin implementation lives in each component (`spin-sdk` stays out of
//! `shared/`); [`TestKv`] is the one for tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::http::error::ApiError;

/// A closed set of store failures, as Spin reports them; host internals stay out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("key-value store `{0}` is not declared for this component")]
    AccessDenied(String),
    #[error("no key-value store is labelled `{0}`")]
    NoSuchStore(String),
    #[error("key-value store unavailable: {0}")]
    Unavailable(String),
}

impl From<KvError> for ApiError {
    fn from(err: KvError) -> Self {
        match err {
            // A store the manifest did not declare is a deployment bug, not an outage.
            KvError::AccessDenied(_) | KvError::NoSuchStore(_) => {
                ApiError::Internal(err.to_string())
            }
            KvError::Unavailable(_) => ApiError::Unavailable("session store unavailable".into()),
        }
    }
}

/// What a compare-and-swap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    Swapped,
    /// The value was not the expected one, or was replaced again before it
    /// could be read back. Either way the caller re-reads and re-checks; it
    /// must recognise a change of its own already in the value (see
    /// [`KeyValue::compare_and_swap`]).
    Conflict,
}

/// What a backend reports of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    Swapped,
    /// Nothing was written: the key did not hold the expected value.
    Conflict,
    /// The backend cannot tell whether it wrote (Spin's Redis store says
    /// `cas-failed` after its swaps, successful or not).
    Unsure,
}

/// Random bytes to make a written value unique to its writer, so that reading
/// a key back tells whether one's own compare-and-swap landed.
pub fn write_id() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the platform provides random bytes");
    u64::from_le_bytes(bytes)
}

pub trait KeyValue {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Writes every pair at once: one transaction on Spin's SQLite backend,
    /// one `MSET` on Redis (`wasi:keyvalue/batch` `set-many`), so the keys
    /// of one step appear together and cost one write.
    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError>;
    /// Deleting a missing key is not an error (as in Spin).
    fn delete(&self, key: &str) -> Result<(), KvError>;
    /// Deletes every key, one `delete` each (Spin's `delete-many` is one
    /// `DEL` on Redis, but the test host does not provide it yet).
    fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        keys.iter().try_for_each(|key| self.delete(key))
    }
    fn exists(&self, key: &str) -> Result<bool, KvError>;
    /// Every key in the store, all tenants included: costs the whole store.
    fn get_keys(&self) -> Result<Vec<String>, KvError>;
    /// Atomically adds `delta` to the counter at `key` (absent = 0) and returns
    /// the new value. Keep counters in keys of their own: Spin's SQLite backend
    /// stores them as 8-byte little-endian integers and fails on anything else.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError>;
    /// The backend's own compare-and-swap, with what it reports. Callers use
    /// [`KeyValue::compare_and_swap`], which settles [`Swap::Unsure`].
    fn swap_reported(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<Swap, KvError>;

    /// Writes `new` only if the key currently holds exactly `expected`. Atomic
    /// for an existing key on every Spin backend; see the module doc for absent keys.
    ///
    /// `new` must be unique to this write (carry a [`write_id`]): when the
    /// backend cannot tell whether it swapped, the key is read back, and
    /// holding exactly `new` means the swap landed. A [`Cas::Conflict`] may
    /// also mean the swap landed and another writer replaced the value before
    /// the read-back, so a caller that retries must first check whether its
    /// change is already in what it re-reads.
    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<Cas, KvError> {
        Ok(match self.swap_reported(key, expected, new)? {
            Swap::Swapped => Cas::Swapped,
            Swap::Conflict => Cas::Conflict,
            Swap::Unsure if self.get(key)?.as_deref() == Some(new) => Cas::Swapped,
            Swap::Unsure => Cas::Conflict,
        })
    }
}

/// The value of the counter at `key` (0 when absent), read the way every
/// backend agrees on: Spin's SQLite backend keeps counters as 8 little-endian
/// bytes, Redis as decimal text, so a plain `get` would be ambiguous. Reading
/// through `increment(key, 0)` is not, and `exists` first keeps a read from
/// creating keys.
pub fn read_counter(kv: &dyn KeyValue, key: &str) -> Result<i64, KvError> {
    if kv.exists(key)? {
        kv.increment(key, 0)
    } else {
        Ok(0)
    }
}

impl<T: KeyValue + ?Sized> KeyValue for &T {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        (**self).set(key, value)
    }
    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        (**self).set_many(pairs)
    }
    fn delete(&self, key: &str) -> Result<(), KvError> {
        (**self).delete(key)
    }
    fn exists(&self, key: &str) -> Result<bool, KvError> {
        (**self).exists(key)
    }
    fn get_keys(&self) -> Result<Vec<String>, KvError> {
        (**self).get_keys()
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        (**self).increment(key, delta)
    }
    fn swap_reported(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<Swap, KvError> {
        (**self).swap_reported(key, expected, new)
    }
}

/// The store every test and benchmark uses: Spin's semantics over an
/// in-memory map by default, or over another backend (the end-to-end suites
/// also run on a real redis-server this way). It counts operations so tests
/// and benchmarks can see what a request really cost, and can be told to fail,
/// to prove that a store outage is answered with 503 and changes nothing.
pub struct TestKv {
    backend: Box<dyn KeyValue + Send + Sync>,
    outage: Outage,
    ops: AtomicU64,
    writes: AtomicU64,
    full_scans: AtomicU64,
}

/// A handle that makes its [`TestKv`] fail, for a test to hold where the
/// store itself cannot go (inside a fake provider's answer, say).
#[derive(Clone, Default)]
pub struct Outage(std::sync::Arc<Mutex<Option<u64>>>);

impl Outage {
    /// Every operation after the next `n` fails with [`KvError::Unavailable`].
    pub fn after(&self, n: u64) {
        *self.0.lock().unwrap() = Some(n);
    }

    pub fn end(&self) {
        *self.0.lock().unwrap() = None;
    }
}

impl Default for TestKv {
    fn default() -> Self {
        Self::over(MemoryKv::default())
    }
}

impl TestKv {
    /// An empty store in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same instrumentation over `backend`, which must start empty for
    /// tests that compare snapshots.
    pub fn over(backend: impl KeyValue + Send + Sync + 'static) -> Self {
        TestKv {
            backend: Box::new(backend),
            outage: Outage::default(),
            ops: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            full_scans: AtomicU64::new(0),
        }
    }

    /// Every operation after the next `n` fails with [`KvError::Unavailable`].
    pub fn fail_after(&self, n: u64) {
        self.outage.after(n);
    }

    pub fn recover(&self) {
        self.outage.end();
    }

    /// A handle on this store's failures.
    pub fn outage(&self) -> Outage {
        self.outage.clone()
    }

    /// Operations served so far (each call counts once).
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Write transactions so far: `set`, `set_many`, `delete`, `increment`
    /// and compare-and-swap each count one (a `set_many` of many keys is one
    /// transaction on Spin's SQLite backend, as it is counted here).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Calls of `get_keys` so far: each one reads every tenant's keys.
    pub fn full_scans(&self) -> u64 {
        self.full_scans.load(Ordering::Relaxed)
    }

    /// A copy of everything stored, to compare before and after an operation.
    /// Read straight from the backend: it neither counts nor fails.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let keys = self.backend.get_keys().expect("the test store is readable");
        keys.into_iter()
            .filter_map(|key| {
                let value = self.backend.get(&key).expect("the test store is readable");
                value.map(|v| (key, v))
            })
            .collect()
    }

    fn begin(&self) -> Result<&dyn KeyValue, KvError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        let mut fail_after = self.outage.0.lock().unwrap();
        if let Some(left) = fail_after.as_mut() {
            if *left == 0 {
                return Err(KvError::Unavailable("injected failure".into()));
            }
            *left -= 1;
        }
        Ok(&*self.backend)
    }

    fn begin_write(&self) -> Result<&dyn KeyValue, KvError> {
        let backend = self.begin()?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(backend)
    }
}

impl KeyValue for TestKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.begin()?.get(key)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.begin_write()?.set(key, value)
    }

    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        self.begin_write()?.set_many(pairs)
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.begin_write()?.delete(key)
    }

    fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.begin()?.exists(key)
    }

    fn get_keys(&self) -> Result<Vec<String>, KvError> {
        let backend = self.begin()?;
        self.full_scans.fetch_add(1, Ordering::Relaxed);
        backend.get_keys()
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        // `increment(key, 0)` is how counters are read on every backend.
        if delta == 0 {
            self.begin()?.increment(key, delta)
        } else {
            self.begin_write()?.increment(key, delta)
        }
    }

    fn swap_reported(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<Swap, KvError> {
        self.begin_write()?.swap_reported(key, expected, new)
    }
}

/// A map in memory with Spin's semantics; one lock makes each operation atomic.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
    misreport: bool,
}

impl MemoryKv {
    /// A map whose compare-and-swap answers [`Swap::Unsure`] whatever it did,
    /// as Spin's Redis backend does: the fast tests of code that must cope.
    pub fn misreporting_swaps() -> Self {
        MemoryKv {
            misreport: true,
            ..MemoryKv::default()
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.entries.lock().unwrap()
    }
}

impl KeyValue for MemoryKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.entries().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.entries().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let mut entries = self.entries();
        for (key, value) in pairs {
            entries.insert(key.clone(), value.clone());
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.entries().remove(key);
        Ok(())
    }

    fn exists(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.entries().contains_key(key))
    }

    fn get_keys(&self) -> Result<Vec<String>, KvError> {
        Ok(self.entries().keys().cloned().collect())
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let mut entries = self.entries();
        let current = match entries.get(key) {
            None => 0,
            Some(bytes) => decode_counter(bytes).ok_or_else(|| {
                KvError::Unavailable(format!("key `{key}` does not hold a counter"))
            })?,
        };
        let next = current + delta;
        entries.insert(key.to_owned(), next.to_le_bytes().to_vec());
        Ok(next)
    }

    fn swap_reported(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<Swap, KvError> {
        let mut entries = self.entries();
        let swapped = match entries.get_mut(key) {
            Some(current) if current.as_slice() == expected => {
                *current = new.to_vec();
                true
            }
            _ => false,
        };
        Ok(match (swapped, self.misreport) {
            (_, true) => Swap::Unsure,
            (true, false) => Swap::Swapped,
            (false, false) => Swap::Conflict,
        })
    }
}

/// Counters as Spin's SQLite backend stores them: an i64, little-endian.
fn decode_counter(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_spin() {
        let kv = TestKv::new();
        assert_eq!(kv.get("a").unwrap(), None);
        kv.delete("a").unwrap();
        kv.set("a", b"1").unwrap();
        assert!(kv.exists("a").unwrap());
        assert_eq!(kv.get_keys().unwrap(), vec!["a".to_string()]);
        assert_eq!(kv.increment("n", 2).unwrap(), 2);
        assert_eq!(kv.increment("n", 0).unwrap(), 2);
        assert!(
            kv.increment("a", 1).is_err(),
            "a non-counter key is refused"
        );
        assert_eq!(kv.compare_and_swap("a", b"0", b"2").unwrap(), Cas::Conflict);
        assert_eq!(kv.compare_and_swap("a", b"1", b"2").unwrap(), Cas::Swapped);
        assert_eq!(
            kv.compare_and_swap("missing", b"", b"x").unwrap(),
            Cas::Conflict
        );
        assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn an_unsure_swap_is_settled_by_reading_the_key_back() {
        let kv = TestKv::over(MemoryKv::misreporting_swaps());
        kv.set("a", b"1").unwrap();
        assert_eq!(kv.swap_reported("a", b"1", b"2").unwrap(), Swap::Unsure);
        assert_eq!(kv.swap_reported("a", b"1", b"3").unwrap(), Swap::Unsure);
        assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(kv.compare_and_swap("a", b"2", b"4").unwrap(), Cas::Swapped);
        assert_eq!(kv.compare_and_swap("a", b"2", b"5").unwrap(), Cas::Conflict);
        assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"4"[..]));
    }

    #[test]
    fn injected_failures_change_nothing() {
        let kv = TestKv::new();
        kv.set("a", b"1").unwrap();
        kv.fail_after(0);
        assert!(matches!(kv.set("a", b"2"), Err(KvError::Unavailable(_))));
        kv.recover();
        assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn increments_race_without_losing_a_count() {
        let kv = TestKv::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        kv.increment("n", 1).unwrap();
                    }
                });
            }
        });
        assert_eq!(kv.increment("n", 0).unwrap(), 800);
    }

    #[test]
    fn store_outages_are_503_and_misconfiguration_500() {
        assert_eq!(
            ApiError::from(KvError::Unavailable("x".into())).status(),
            503
        );
        assert_eq!(
            ApiError::from(KvError::AccessDenied("secrets".into())).status(),
            500
        );
    }
}
