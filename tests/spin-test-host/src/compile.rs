//! One wasmtime engine and linker per test process, and each component
//! compiled once: a wasip1 module made a component with WASI's reactor
//! adapter, then compiled by Cranelift.
//!
//! Compiling a component takes ~0.15 s in an optimised build but tens of
//! seconds in a debug one, and every test binary is its own process, so the
//! compiled code is also kept on disk beside the `.wasm`, keyed by the
//! module's hash and the engine's settings.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::instance::State;
use crate::kv::{self, KvHost};
use crate::variables::ComponentVariables;

/// Where compiled components are kept, inside the folder of the `.wasm` files.
const CACHE_DIR: &str = "spin-test-host";

pub(crate) struct Runtime {
    pub engine: Engine,
    linker: Linker<State>,
}

pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| new_runtime().expect("the wasmtime engine and linker build"))
}

fn new_runtime() -> anyhow::Result<Runtime> {
    // Pooling makes a fresh instance per request cheap (Spin pools too). Its
    // defaults reserve address space for 1,000 instances; tests need at most
    // a chain of a few live instances per test thread, and test threads
    // default to one per CPU. A component (module plus WASI adapter) takes
    // several core instances, two memories and a few tables.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as u32;
    let instances = (16 * cpus).max(64);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(10 * instances)
        .total_memories(2 * instances)
        .total_tables(4 * instances)
        .total_stacks(instances);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    kv::add_to_linker(&mut linker, |s: &mut State| KvHost {
        access: &s.kv,
        table: &mut s.table,
    })?;
    crate::bindings::fermyon::spin::variables::add_to_linker::<State, HasSelf<ComponentVariables>>(
        &mut linker,
        |s: &mut State| &mut s.variables,
    )?;
    Ok(Runtime { engine, linker })
}

/// The component built from `wasm`, ready to instantiate.
pub(crate) fn compiled(wasm: &Path) -> anyhow::Result<ProxyPre<State>> {
    static LOADED: Mutex<BTreeMap<PathBuf, ProxyPre<State>>> = Mutex::new(BTreeMap::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pre) = loaded.get(wasm) {
        return Ok(pre.clone());
    }
    let module = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let runtime = runtime();
    let cached = cache_file(wasm, &module, &runtime.engine);
    let component = match load_cached(&runtime.engine, &cached) {
        Some(component) => component,
        None => {
            let component = compile(&runtime.engine, &module)
                .with_context(|| format!("cannot make a component of {}", wasm.display()))?;
            store_cached(&component, &cached);
            component
        }
    };
    let pre = runtime
        .linker
        .instantiate_pre(&component)
        .and_then(ProxyPre::new)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} cannot run here", wasm.display()))?;
    loaded.insert(wasm.to_owned(), pre.clone());
    Ok(pre)
}

fn compile(engine: &Engine, module: &[u8]) -> anyhow::Result<Component> {
    Ok(Component::new(engine, componentize(module)?)?)
}

/// The component Spin makes of a wasip1 module when it loads it: the module
/// plus WASI's reactor adapter (a Spin component exports a handler, not `_start`).
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()
}

fn cache_file(wasm: &Path, module: &[u8], engine: &Engine) -> PathBuf {
    let mut settings = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let digest = Sha256::new()
        .chain_update(module)
        .chain_update(settings.finish().to_le_bytes())
        .finalize();
    let stem = wasm.file_stem().unwrap_or_default().to_string_lossy();
    let dir = wasm.parent().unwrap_or(Path::new(".")).join(CACHE_DIR);
    dir.join(format!("{stem}-{}.cwasm", &hex::encode(digest)[..16]))
}

fn load_cached(engine: &Engine, file: &Path) -> Option<Component> {
    if !file.is_file() {
        return None;
    }
    // SAFETY: the file was written by `store_cached` from a component this
    // harness compiled (its name carries the module's hash and the engine's
    // settings, and wasmtime refuses one built for another engine). A
    // malicious file in the build directory is outside a test harness's concern.
    unsafe { Component::deserialize_file(engine, file) }.ok()
}

/// Best effort: a cache that cannot be written only costs the next process a compile.
fn store_cached(component: &Component, file: &Path) {
    let Ok(bytes) = component.serialize() else {
        return;
    };
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    // Written aside and renamed, so a concurrent reader never sees half a file.
    let partial = file.with_extension(format!("{}.partial", std::process::id()));
    if std::fs::write(&partial, bytes).is_err() || std::fs::rename(&partial, file).is_err() {
        let _ = std::fs::remove_file(&partial);
        return;
    }
    remove_older_builds(file);
}

/// Each build of a `.wasm` leaves a compiled file of several MB: keep the newest only.
fn remove_older_builds(kept: &Path) {
    let (Some(dir), Some(name)) = (kept.parent(), kept.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let Some((stem, _)) = name.rsplit_once('-') else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        let same_module = other
            .rsplit_once('-')
            .is_some_and(|(s, rest)| s == stem && rest.ends_with(".cwasm"));
        if same_module && other != name {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
