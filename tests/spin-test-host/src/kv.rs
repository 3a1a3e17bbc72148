//! Key-value stores: `fermyon:spin/key-value@2.0.0` and the parts
//! of `wasi:keyvalue@0.2.0-draft2` the components use (`store`, `atomics`).
//!
//! One [`TestKv`] per label, shared by every component of an application
//! instance, as `spin up` shares a runtime-config store. Each store is a
//! [`greentic::store::kv::TestKv`] (in memory, or over Redis when the builder says
//! so), so tests seed and inspect exactly what the wasm
//! reads and writes, through the same `KeyValue` trait the native tests use.
//! A component opens only the labels it declares in `key_value_stores`; any
//! other label is `access-denied`, as in Spin.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use greentic::store::kv::{KeyValue, KvError, Swap, TestKv};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bindings::fermyon::spin::key_value as spin_kv;
use crate::bindings::wasi::keyvalue::{atomics, batch, store as wasi_kv};

/// Every store of one application instance, by label.
#[derive(Default)]
pub struct Stores(BTreeMap<String, Arc<TestKv>>);

impl Stores {
    /// A store for each label any component declares, made by `open`.
    pub fn new<'a>(
        labels: impl IntoIterator<Item = &'a str>,
        open: impl Fn(&str) -> TestKv,
    ) -> Self {
        let mut stores = BTreeMap::new();
        for label in labels {
            if !stores.contains_key(label) {
                stores.insert(label.to_owned(), Arc::new(open(label)));
            }
        }
        Stores(stores)
    }

    pub fn get(&self, label: &str) -> Option<&TestKv> {
        self.0.get(label).map(|kv| &**kv)
    }
}

/// What one component may open.
#[derive(Clone)]
pub struct KvAccess {
    stores: Arc<Stores>,
    declared: Arc<BTreeSet<String>>,
}

/// The resource behind both a Spin `store` and a `wasi:keyvalue` `bucket`.
pub struct OpenStore(Arc<TestKv>);

/// A compare-and-swap in progress: the value `current` saw is what `swap` expects.
pub struct CasHandle {
    kv: Arc<TestKv>,
    key: String,
    seen: Option<Vec<u8>>,
}

impl KvAccess {
    pub fn new(stores: Arc<Stores>, declared: &[String]) -> Self {
        KvAccess {
            stores,
            declared: Arc::new(declared.iter().cloned().collect()),
        }
    }

    /// Spin checks the component's declaration first, then whether the store exists.
    pub fn open(&self, label: &str) -> Result<Arc<TestKv>, KvError> {
        if !self.declared.contains(label) {
            return Err(KvError::AccessDenied(label.to_owned()));
        }
        self.stores
            .0
            .get(label)
            .cloned()
            .ok_or_else(|| KvError::NoSuchStore(label.to_owned()))
    }
}

/// The view of a component's state the key-value host functions work on.
pub struct KvHost<'a> {
    pub access: &'a KvAccess,
    pub table: &'a mut ResourceTable,
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvHost<'a>;
}

pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvHost<'_>,
) -> wasmtime::Result<()> {
    spin_kv::add_to_linker::<T, HasKv>(linker, view)?;
    wasi_kv::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    batch::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
}

impl KvHost<'_> {
    fn store(&self, handle: &Resource<OpenStore>) -> wasmtime::Result<Arc<TestKv>> {
        Ok(self.table.get(handle)?.0.clone())
    }
}

fn spin_error(e: KvError) -> spin_kv::Error {
    match e {
        KvError::AccessDenied(_) => spin_kv::Error::AccessDenied,
        KvError::NoSuchStore(_) => spin_kv::Error::NoSuchStore,
        KvError::Unavailable(why) => spin_kv::Error::Other(why),
    }
}

fn wasi_error(e: KvError) -> wasi_kv::Error {
    match e {
        KvError::AccessDenied(_) => wasi_kv::Error::AccessDenied,
        KvError::NoSuchStore(_) => wasi_kv::Error::NoSuchStore,
        KvError::Unavailable(why) => wasi_kv::Error::Other(why),
    }
}

type SpinResult<T> = wasmtime::Result<Result<T, spin_kv::Error>>;
type WasiResult<T> = wasmtime::Result<Result<T, wasi_kv::Error>>;

impl spin_kv::Host for KvHost<'_> {}

impl spin_kv::HostStore for KvHost<'_> {
    fn open(&mut self, label: String) -> SpinResult<Resource<OpenStore>> {
        Ok(match self.access.open(&label) {
            Ok(kv) => Ok(self.table.push(OpenStore(kv))?),
            Err(e) => Err(spin_error(e)),
        })
    }

    fn get(&mut self, store: Resource<OpenStore>, key: String) -> SpinResult<Option<Vec<u8>>> {
        Ok(self.store(&store)?.get(&key).map_err(spin_error))
    }

    fn set(&mut self, store: Resource<OpenStore>, key: String, value: Vec<u8>) -> SpinResult<()> {
        Ok(self.store(&store)?.set(&key, &value).map_err(spin_error))
    }

    fn delete(&mut self, store: Resource<OpenStore>, key: String) -> SpinResult<()> {
        Ok(self.store(&store)?.delete(&key).map_err(spin_error))
    }

    fn exists(&mut self, store: Resource<OpenStore>, key: String) -> SpinResult<bool> {
        Ok(self.store(&store)?.exists(&key).map_err(spin_error))
    }

    fn get_keys(&mut self, store: Resource<OpenStore>) -> SpinResult<Vec<String>> {
        Ok(self.store(&store)?.get_keys().map_err(spin_error))
    }

    fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl wasi_kv::Host for KvHost<'_> {
    fn open(&mut self, label: String) -> WasiResult<Resource<OpenStore>> {
        Ok(match self.access.open(&label) {
            Ok(kv) => Ok(self.table.push(OpenStore(kv))?),
            Err(e) => Err(wasi_error(e)),
        })
    }
}

impl wasi_kv::HostBucket for KvHost<'_> {
    fn get(&mut self, bucket: Resource<OpenStore>, key: String) -> WasiResult<Option<Vec<u8>>> {
        Ok(self.store(&bucket)?.get(&key).map_err(wasi_error))
    }

    fn set(&mut self, bucket: Resource<OpenStore>, key: String, value: Vec<u8>) -> WasiResult<()> {
        Ok(self.store(&bucket)?.set(&key, &value).map_err(wasi_error))
    }

    fn delete(&mut self, bucket: Resource<OpenStore>, key: String) -> WasiResult<()> {
        Ok(self.store(&bucket)?.delete(&key).map_err(wasi_error))
    }

    fn exists(&mut self, bucket: Resource<OpenStore>, key: String) -> WasiResult<bool> {
        Ok(self.store(&bucket)?.exists(&key).map_err(wasi_error))
    }

    /// Spin returns every key at once and has no cursors.
    fn list_keys(
        &mut self,
        bucket: Resource<OpenStore>,
        cursor: Option<String>,
    ) -> WasiResult<wasi_kv::KeyResponse> {
        if cursor.is_some() {
            return Ok(Err(wasi_kv::Error::Other(
                "list_keys: cursors are not supported".into(),
            )));
        }
        Ok(self
            .store(&bucket)?
            .get_keys()
            .map(|keys| wasi_kv::KeyResponse { keys, cursor: None })
            .map_err(wasi_error))
    }

    fn drop(&mut self, bucket: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvHost<'_> {
    /// The counter is an i64 in 8 little-endian bytes, as on Spin's SQLite backend.
    fn increment(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        delta: i64,
    ) -> WasiResult<i64> {
        Ok(self
            .store(&bucket)?
            .increment(&key, delta)
            .map_err(wasi_error))
    }

    /// Swaps if the key still holds what `current` returned, and reports it
    /// as the store's backend does: a store over Redis answers `cas-failed`
    /// whatever it did, as Spin's Redis backend does (spin-notes.md). As on
    /// Spin's SQLite backend, a swap after `current` saw no value (or without
    /// `current`) is a plain upsert, not an atomic create.
    fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let handle = self.table.get(&cas)?;
        let outcome = match &handle.seen {
            Some(seen) => handle.kv.swap_reported(&handle.key, seen, &value),
            None => handle.kv.set(&handle.key, &value).map(|()| Swap::Swapped),
        };
        Ok(match outcome {
            Ok(Swap::Swapped) => {
                self.table.delete(cas)?;
                Ok(())
            }
            Ok(Swap::Conflict | Swap::Unsure) => Err(atomics::CasError::CasFailed(cas)),
            Err(e) => {
                self.table.delete(cas)?;
                Err(atomics::CasError::StoreError(wasi_error(e)))
            }
        })
    }
}

/// `set-many` is one write of the store, as on Spin's backends (one SQLite
/// transaction, one Redis MSET). `get-many` reads key by key; note that
/// Spin's Redis backend sends a `KEYS` pattern query for it instead
/// (tests/README.md), which is why the product never calls it.
impl batch::Host for KvHost<'_> {
    fn get_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> WasiResult<Vec<(String, Option<Vec<u8>>)>> {
        let kv = self.store(&bucket)?;
        Ok(keys
            .into_iter()
            .map(|key| kv.get(&key).map(|value| (key, value)))
            .collect::<Result<_, _>>()
            .map_err(wasi_error))
    }

    fn set_many(
        &mut self,
        bucket: Resource<OpenStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> WasiResult<()> {
        Ok(self
            .store(&bucket)?
            .set_many(&key_values)
            .map_err(wasi_error))
    }

    fn delete_many(&mut self, bucket: Resource<OpenStore>, keys: Vec<String>) -> WasiResult<()> {
        let kv = self.store(&bucket)?;
        Ok(keys
            .iter()
            .try_for_each(|key| kv.delete(key))
            .map_err(wasi_error))
    }
}

impl atomics::HostCas for KvHost<'_> {
    fn new(&mut self, bucket: Resource<OpenStore>, key: String) -> WasiResult<Resource<CasHandle>> {
        let kv = self.store(&bucket)?;
        Ok(Ok(self.table.push(CasHandle {
            kv,
            key,
            seen: None,
        })?))
    }

    fn current(&mut self, cas: Resource<CasHandle>) -> WasiResult<Option<Vec<u8>>> {
        let handle = self.table.get_mut(&cas)?;
        Ok(match handle.kv.get(&handle.key) {
            Ok(value) => {
                handle.seen = value.clone();
                Ok(value)
            }
            Err(e) => Err(wasi_error(e)),
        })
    }

    fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_labels_open() {
        let stores = Arc::new(Stores::new(["sessions", "secrets"], |_| TestKv::new()));
        let api = KvAccess::new(stores.clone(), &["sessions".into()]);
        assert!(api.open("sessions").is_ok());
        assert_eq!(
            api.open("secrets").err(),
            Some(KvError::AccessDenied("secrets".into()))
        );
        assert_eq!(
            api.open("default").err(),
            Some(KvError::AccessDenied("default".into()))
        );
        let none = KvAccess::new(stores.clone(), &[]);
        assert!(matches!(
            none.open("sessions"),
            Err(KvError::AccessDenied(_))
        ));

        // Two components declaring one label share one store.
        let other = KvAccess::new(stores.clone(), &["sessions".into()]);
        api.open("sessions").unwrap().set("k", b"v").unwrap();
        assert_eq!(
            other.open("sessions").unwrap().get("k").unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(
            stores.get("sessions").unwrap().get("k").unwrap(),
            Some(b"v".to_vec())
        );
    }

    #[test]
    fn compare_and_swap_through_the_host_functions() {
        use atomics::{Host as _, HostCas as _};
        let stores = Arc::new(Stores::new(["s"], |_| TestKv::new()));
        let access = KvAccess::new(stores.clone(), &["s".into()]);
        let mut table = ResourceTable::new();
        let mut host = KvHost {
            access: &access,
            table: &mut table,
        };
        let bucket = wasi_kv::Host::open(&mut host, "s".into()).unwrap().unwrap();
        let kv = stores.get("s").unwrap();

        assert_eq!(
            host.increment(Resource::new_borrow(bucket.rep()), "n".into(), 5)
                .unwrap()
                .unwrap(),
            5
        );
        assert_eq!(kv.get("n").unwrap(), Some(5i64.to_le_bytes().to_vec()));

        kv.set("k", b"old").unwrap();
        let cas = host
            .new(Resource::new_borrow(bucket.rep()), "k".into())
            .unwrap()
            .unwrap();
        let rep = cas.rep();
        assert_eq!(
            host.current(Resource::new_borrow(rep)).unwrap().unwrap(),
            Some(b"old".to_vec())
        );
        kv.set("k", b"changed").unwrap();
        let failed = host.swap(cas, b"new".to_vec()).unwrap();
        let Err(atomics::CasError::CasFailed(cas)) = failed else {
            panic!("a swap after a concurrent change must fail");
        };
        assert_eq!(kv.get("k").unwrap(), Some(b"changed".to_vec()));
        host.current(Resource::new_borrow(cas.rep()))
            .unwrap()
            .unwrap();
        host.swap(cas, b"new".to_vec()).unwrap().unwrap();
        assert_eq!(kv.get("k").unwrap(), Some(b"new".to_vec()));
    }
}
